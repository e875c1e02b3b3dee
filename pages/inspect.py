"""Inspect: what pruning changed in a run (attributions, agreement, filters) and which layers are
sensitive (per-layer scan and suggested per-layer rates). Loaders and tab bodies:
pruneviz/ui/inspect.py."""

import streamlit as st

from pruneviz.ui import inspect, state

state.routed(__file__)

st.title("Inspect")
st.caption("What pruning changed in a run, and which layers can take it.")
picked = inspect.pick_run()
if picked is None:
    st.stop()
root, run_id, rm = picked
inspect.compact_summary(rm)
inspect.run_tabs(root, run_id, rm)
