"""pruneviz dashboard: st.navigation router and the shared sidebar; no logic here."""

import streamlit as st

from pruneviz.ui.sidebar import sidebar

st.set_page_config(page_title="pruneviz", page_icon="✂️", layout="wide")
page = st.navigation({
    "Run": [st.Page("pages/live.py", title="Live session", icon=":material/play_circle:",
                    default=True)],
    "Analyse": [st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
                st.Page("pages/runs.py", title="Runs", icon=":material/list:")],
})
sidebar()
page.run()
