"""Runs: every stored run; filter, rename, annotate, delete, download its card, add it to a
comparison."""

import streamlit as st

from pruneviz.store import STATUSES
from pruneviz.ui import runs as runs_ui
from pruneviz.ui import state

state.routed(__file__)

store, queue = state.get_store(), state.get_queue()
st.title("Runs")
runs = state.list_runs(store)
if runs.empty:
    st.info("No runs yet: start one on the Live session page or with `python -m pruneviz run`.")
    st.stop()

text_col, method_col, status_col, tag_col = st.columns([2, 1, 1, 1])
text = text_col.text_input("Filter", key="runs.filter",
                           placeholder="name, method, id, sweep, notes or tag")
methods = method_col.multiselect("Method", sorted(runs.method.unique()), key="runs.methods")
statuses = status_col.multiselect("Status", STATUSES, key="runs.statuses")
tags = tag_col.multiselect("Tagged", runs_ui.all_tags(runs), key="runs.tag_filter",
                           placeholder="any tag", help="Runs carrying any of these tags.")
shown = runs_ui.filter_runs(runs, text, methods, statuses, tags)
st.dataframe(shown[runs_ui.LIST_COLUMNS], hide_index=True, key="runs.table",
             column_config={"label": st.column_config.TextColumn("run", pinned=True),
                            "tags": st.column_config.ListColumn("tags", width="medium"),
                            "notes": st.column_config.TextColumn("notes", width="medium")})
if st.button("Compare this run" if len(shown) == 1 else f"Compare these {len(shown)} runs",
             key="runs.compare_all",
             disabled=shown.empty):
    state.select_runs(list(shown.run_id))
    st.rerun()

if not shown.empty:
    st.divider()
    run_id = runs_ui.card_picker(shown)
    runs_ui.run_card(store, queue, run_id)
