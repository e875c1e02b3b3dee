"""The server's shared store and run queue, and the selection shared by all pages."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from ..config import ConfigError
from ..plots import run_label
from ..store import Store, StoreError, default_root
from ..workers import Queue, wanted_workers
from .text import plain

# Live views redraw once a second: twice a second, the server's redraws and the browser's chart
# renders took 1.2 of 2 cores from the run being watched (it trained 1.4x slower).
POLL_SECONDS = 1.0
SELECTED = "selected_runs"   # key of the sidebar's picker
_SELECTION = "_selection"    # the selection itself: widget state is dropped on runs that do not
                             # draw the widget, plain session state is not


_GOTO = "_goto"              # a page asked for before the router ran (see routed)
_ROUTED = "_routed"          # this browser session has run app.py


def routed(page_file: str) -> None:
    """Make sure the page (its `__file__`) runs under app.py's navigation.

    A server starts in Streamlit's legacy pages/ mode until app.py has run once; if the first
    request after a start is a page's URL (a bookmark, a reloaded tab), Streamlit runs that
    page alone: no sidebar, no wide layout, file names as navigation. Go through app.py, which
    comes back here (`resume`)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get(_ROUTED):
        path = Path(page_file).resolve()
        # pages/x.py and the link's query (a shared ?runs=...), which switching drops
        st.session_state[_GOTO] = (path.relative_to(path.parents[1]).as_posix(),
                                   st.query_params.to_dict())
        st.switch_page("app.py")


def resume() -> None:
    """In app.py after st.navigation: go on to the page `routed` was asked for, if any."""
    st.session_state[_ROUTED] = True
    goto = st.session_state.pop(_GOTO, None)
    if goto:
        st.switch_page(goto[0], query_params=goto[1])


@st.cache_resource(show_spinner=False)
def _store(root: str) -> Store:
    return Store(root)


def store_root() -> str:
    return str(default_root().expanduser().resolve())


def get_store() -> Store:
    """The run store ($PRUNEVIZ_STORE or ./runs); stops the page with the fix if unusable."""
    try:
        return _store(store_root())
    except StoreError as e:
        st.error(plain(e))
        st.stop()


def workers() -> int:
    """Runs trained at once: $PRUNEVIZ_WORKERS, default 1 (queued runs train one at a time; on
    a 2-core CPU two at once only make each slower). Bad values stop the page with the fix."""
    try:
        return wanted_workers()
    except ConfigError as e:
        st.error(str(e))
        st.stop()


@st.cache_resource(show_spinner=False)
def _queue(root: str, wanted: int) -> Queue:
    return Queue(_store(root), wanted)


def get_queue() -> Queue:
    """The store's queue, with its workers started (one kept warm, up to `workers()`): the
    server submits and cancels, worker processes train."""
    get_store()
    queue = _queue(store_root(), workers())
    try:
        queue.ensure()
    except OSError as e:
        st.error(f"could not start a worker process ({e}); start one yourself with `python -m "
                 f"pruneviz worker --store {store_root()}`.")
    return queue


def device_label() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores)"


def list_runs(store: Store) -> pd.DataFrame:
    """Session runs, newest first, with a `label` column for pickers and legends."""
    runs = store.runs()
    runs["label"] = [run_label(r) for _, r in runs.iterrows()]
    return runs


def selected_runs() -> list[str]:
    return list(st.session_state.get(_SELECTION, []))


def select_runs(run_ids: list[str]) -> None:
    """Make `run_ids` the shared selection (the sidebar shows it from the next run on)."""
    st.session_state[_SELECTION] = list(dict.fromkeys(run_ids))


SELECTION_LIMIT = 12         # runs a run started elsewhere keeps in the selection, newest kept


def grown_selection(selected: list[str], runs: pd.DataFrame, new: list[str],
                    limit: int = SELECTION_LIMIT) -> list[str]:
    """The selection after runs started on another page (`new`): the earlier picks that train
    the same model on the same dataset as the newest of them, then `new`, at most `limit` runs
    (the oldest picks leave first). A Live run on other data starts a fresh selection instead
    of piling a digits/CIFAR/ResNet mix onto Compare."""
    pair = runs.set_index("run_id")[["model", "dataset"]].apply(tuple, axis=1).to_dict()
    want = pair.get(new[-1]) if new else None
    kept = [r for r in selected if r not in new and pair.get(r) == want]
    return (kept + list(dict.fromkeys(new)))[-limit:]


def add_to_selection(runs: pd.DataFrame, new: list[str]) -> None:
    """Add runs started on another page to the shared selection (see grown_selection)."""
    select_runs(grown_selection(selected_runs(), runs, new))


def _picked() -> None:
    st.session_state[_SELECTION] = list(st.session_state[SELECTED])


def default_selection(runs: pd.DataFrame, limit: int = 6) -> list[str]:
    """What a new browser session compares: the newest run's sweep, else the newest runs of
    the newest run's model and dataset (a mix of datasets does not compare); runs that
    failed, diverged or were interrupted only when picked by hand."""
    runs = runs[~runs.status.isin(("failed", "diverged", "interrupted"))]
    if runs.empty:
        return []
    sweep = runs.sweep_id.iloc[0]
    if isinstance(sweep, str):
        return list(runs[runs.sweep_id == sweep].run_id)
    same = (runs.model == runs.model.iloc[0]) & (runs.dataset == runs.dataset.iloc[0])
    return list(runs[same].run_id.head(limit))


def selection_picker(runs: pd.DataFrame) -> None:
    """The sidebar's run picker: a new session starts from the default selection; deleted runs
    drop out; pages change it with select_runs."""
    if _SELECTION not in st.session_state:
        select_runs(default_selection(runs))
    existing = set(runs.run_id)
    select_runs([r for r in selected_runs() if r in existing])
    st.session_state[SELECTED] = selected_runs()
    labels = dict(zip(runs.run_id, runs.label))
    st.multiselect("Selected runs", list(runs.run_id), key=SELECTED, on_change=_picked,
                   format_func=lambda r: labels.get(r, r), placeholder="Pick runs to compare",
                   help="Runs the Compare page shows. Runs you start are added here.")
