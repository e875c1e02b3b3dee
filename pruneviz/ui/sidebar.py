"""The sidebar every page shares: the store, the device, and the runs selected for comparison."""

from __future__ import annotations

import streamlit as st

from ..store import ACTIVE
from .state import device_label, get_queue, get_store, list_runs, selection_picker, workers
from .text import plain


def sidebar() -> None:
    store = get_store()
    get_queue()             # a worker kept warm, so the first Run is quick
    runs = list_runs(store)
    with st.sidebar:
        selection_picker(runs)
        active = int(runs.status.isin(ACTIVE).sum())
        if active:
            st.caption(f":material/pending: {active} run(s) queued or running")
        st.caption(f"Store: {plain(store.root.expanduser().resolve())}  \n"
                   f"({len(runs)} runs; set PRUNEVIZ_STORE to use another folder)")
        live = store.workers()
        busy = int(live.run_id.notna().sum())
        st.caption(f"Device: {device_label()}  \n"
                   f"Runs train {workers()} at a time (set PRUNEVIZ_WORKERS to change)  \n"
                   f"Workers: {len(live)} ({busy} training)")
