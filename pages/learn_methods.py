"""Learn, the method families: a paragraph, the equations and one live toy each (PGMPF's
gradient factor, FGGP's two cuts, PGP's hard/soft split, SLR's residual). Each tab is a family's
toy.py (methods/<family>/toy.py: TOY), so a new family folder is a new tab."""

import streamlit as st

from pruneviz.learn import toys
from pruneviz.ui.learn import toy_tab
from pruneviz.ui.state import routed

routed(__file__)

st.set_page_config(layout="wide")
st.title("The four methods, one toy each")
st.caption("Each toy runs the method's own functions (pruneviz.methods) on a small tensor; the "
           "equations are those of the project's method reference, docs/methods.md.")

found = toys()
for tab, (family, toy) in zip(st.tabs([toy.title for _, toy in found]), found):
    with tab:
        toy_tab(toy, family)
