"""pruneviz dashboard: st.navigation router and the shared sidebar; no logic here."""

import streamlit as st

from pruneviz.ui.sidebar import sidebar
from pruneviz.ui.state import resume

st.set_page_config(page_title="pruneviz", page_icon="✂️", layout="wide")
page = st.navigation({
    "Run": [st.Page("pages/live.py", title="Live session", icon=":material/play_circle:",
                    default=True)],
    "Analyse": [st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
                st.Page("pages/runs.py", title="Runs", icon=":material/list:"),
                st.Page("pages/inspect.py", title="Inspect", icon=":material/search:")],
    "Learn": [st.Page("pages/learn_basics.py", title="What gets pruned", icon=":material/grid_on:"),
              st.Page("pages/learn_schedules.py", title="When to prune",
                      icon=":material/show_chart:"),
              st.Page("pages/learn_methods.py", title="The four methods",
                      icon=":material/school:"),
              st.Page("pages/learn_speed.py", title="Sparsity is not speed",
                      icon=":material/speed:")],
})
resume()
sidebar()
page.run()
