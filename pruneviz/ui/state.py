"""The server's shared store and background runner, and the selection shared by all pages."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from ..data import load_dataset
from ..jobs import Runner
from ..metrics import count_flops
from ..models import build_model
from ..plots import run_label
from ..store import ACTIVE, Store, StoreError, default_root
from .text import plain

POLL_SECONDS = 0.5           # live views redraw twice a second (a redraw costs ~20-80 ms)
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


@st.cache_resource(show_spinner=False)
def _runner(root: str, workers: int) -> Runner:
    # On CPU keep a core for the server: on 2 cores two intra-op threads fight the page
    # redraws (and each other under load) and steps get several times slower.
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1)))
    warm = threading.Thread(target=_warm_up, daemon=True, name="pruneviz-warmup")
    warm.start()
    # A daemon thread killed inside a torch op at exit aborts the process ("terminate called
    # without an active exception"): a server stopped in its first seconds waits for it.
    atexit.register(warm.join, 60)
    return Runner(_store(root), workers=workers)


def _warm_up() -> None:
    """Do the one-time work of a first session in the background at server start, so the
    first Run is as quick as later ones: load the embedded dataset (held in memory) and
    import what building an optimizer and counting FLOPs pull in (torch._dynamo: seconds)."""
    data = load_dataset()
    model = build_model("tiny_cnn", data.input_shape, data.num_classes)
    torch.optim.SGD(model.parameters(), lr=0.1)
    count_flops(model, data.input_shape)


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
    raw = os.environ.get("PRUNEVIZ_WORKERS", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 16:
        st.error(f"PRUNEVIZ_WORKERS is the number of runs trained at once, a whole number from 1 "
                 f"to 16; got {raw!r}. Unset it to train one at a time.")
        st.stop()
    return int(raw)


def get_runner() -> Runner:
    """The server's background runner: `workers()` threads (one by default)."""
    get_store()
    return _runner(store_root(), workers())


def device_label() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores)"


def list_runs(store: Store) -> pd.DataFrame:
    """Session runs, newest first, with a `label` column for pickers and legends."""
    runs = store.runs()
    runs["label"] = [run_label(r) for _, r in runs.iterrows()]
    return runs


def active_runs(store: Store) -> pd.DataFrame:
    runs = list_runs(store)
    return runs[runs.status.isin(ACTIVE)].iloc[::-1]     # oldest first: the queue's order


def selected_runs() -> list[str]:
    return list(st.session_state.get(_SELECTION, []))


def select_runs(run_ids: list[str]) -> None:
    """Make `run_ids` the shared selection (the sidebar shows it from the next run on)."""
    st.session_state[_SELECTION] = list(dict.fromkeys(run_ids))


def _picked() -> None:
    st.session_state[_SELECTION] = list(st.session_state[SELECTED])


def default_selection(runs: pd.DataFrame, limit: int = 6) -> list[str]:
    """What a new browser session compares: the newest run's sweep, else the newest runs;
    runs that failed, diverged or were interrupted only when picked by hand."""
    runs = runs[~runs.status.isin(("failed", "diverged", "interrupted"))]
    if runs.empty:
        return []
    sweep = runs.sweep_id.iloc[0]
    if isinstance(sweep, str):
        return list(runs[runs.sweep_id == sweep].run_id)
    return list(runs.run_id.head(limit))


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
