"""pruneviz dashboard: st.navigation router and the shared sidebar; no logic here."""

import streamlit as st

st.set_page_config(page_title="pruneviz", page_icon="✂️", layout="wide")
page = st.navigation([st.Page("pages/home.py", title="Home", default=True)])
page.run()
