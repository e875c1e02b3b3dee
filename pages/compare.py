"""Compare: stored runs side by side, and a comparison grid launched from one form."""

import streamlit as st

from pruneviz.ui import compare, state

state.routed(__file__)

store, queue = state.get_store(), state.get_queue()
st.title("Compare")
compare.selection_from_url(store)
selected = state.selected_runs()
with st.expander("Launch a comparison: several methods x rates (x seeds) on the same dense "
                 "start, data order and budget", expanded=not selected,
                 icon=":material/rocket_launch:"):
    compare.grid_form(queue)
with st.expander("A paper's comparison, one click: the method against its baselines on its "
                 "preset, ending in the paired verdict", expanded=not selected,
                 icon=":material/science:"):
    compare.paper_form(queue)
compare.sweep_progress(store)
compare.sweep_picker(store)
if selected:
    compare.compare_view(store, selected, queue)
else:
    st.info("Pick runs in the sidebar, compare a stored sweep, or launch a comparison above.")
