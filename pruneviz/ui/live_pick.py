"""Which run the Live page shows (this session's last, ?run= in the URL, the running one, the
picker, the last Run click) and the form that follows it (loaded from the URL's run, Edit and
re-run, Run seeds)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import streamlit as st

from ..config import ConfigError, SessionConfig, parse_numbers
from ..store import ACTIVE, Store, StoreError
from . import forms
from .state import add_to_selection, get_store, list_runs

RUN_PARAM = "run"            # ?run=<id> in the URL: a reload comes back to the same run
_LAST_VIEWED = "live.last_run"
PICKER = "live.show"
_SUBMITTED = "live.submitted"    # (config JSON, run id, time) of this session's last Run
SAME_CLICK_S = 2.0         # a repeated click this soon is the same click, even of a run that ended


def current_run(runs: pd.DataFrame) -> str | None:
    """The run to show: the one this browser session showed last, else ?run= in the URL (a
    reload), else the running one, else the newest; the URL is kept in step with it."""
    ids = set(runs.run_id)
    chosen = next((c for c in (st.session_state.get(_LAST_VIEWED),
                               st.query_params.get(RUN_PARAM)) if c in ids), None)
    if chosen is None:
        for status in ("running", "queued"):
            active = runs[runs.status == status]
            if len(active):
                chosen = active.run_id.iloc[-1]
                break
        else:
            chosen = runs.run_id.iloc[0] if len(runs) else None
    if chosen is not None:
        show_run(chosen)
    return chosen


def show_run(run_id: str) -> None:
    """Show `run_id` from now on, and put it in the URL so a reload comes back to it."""
    # Session state leads: a run interrupted by another rerun can drop its URL change.
    st.session_state[_LAST_VIEWED] = run_id
    if st.query_params.get(RUN_PARAM) != run_id:
        st.query_params[RUN_PARAM] = run_id


def run_picker(runs: pd.DataFrame, current: str | None, limit: int = 50) -> None:
    """Select box of recent runs; picking one shows it (and puts it in the URL)."""
    if current is None:
        return
    recent = runs.head(limit)
    ids = list(recent.run_id) if current in set(recent.run_id) else [current, *recent.run_id]
    labels = dict(zip(runs.run_id, runs.label + " · " + runs.dataset + " · " + runs.model))
    # A widget per shown run, and a pick honoured only from the picker of the run shown now:
    # after Run the browser can send the old picker's value back (with a poll of the live
    # view), which switched the view back to the previous run a second later.
    key = f"{PICKER}.{current}"
    st.selectbox("Show run", ids, index=ids.index(current), format_func=labels.get, key=key,
                 on_change=_picked, args=(key, current))


def _picked(key: str, drawn_for: str) -> None:
    if st.session_state.get(_LAST_VIEWED) == drawn_for:
        show_run(st.session_state[key])


def submit_once(config: SessionConfig, submit: Callable[[SessionConfig], str],
                store: Store) -> str:
    """Queue `config` for one Run click and show it. The same config again while the run it
    queued is still queued or running, or within SAME_CLICK_S whatever its state, is the same
    click (a click right after editing a field reruns the page twice, and a rerun cut short
    repeats the click), so it shows that run; once it has ended, Run queues a new one."""
    fingerprint, now = config.to_json(), time.time()
    last = st.session_state.get(_SUBMITTED)
    if last and last[0] == fingerprint and (
            now - last[2] < SAME_CLICK_S or _active(store, last[1])):
        run_id = last[1]
    else:
        run_id = submit(config)
        st.session_state[_SUBMITTED] = (fingerprint, run_id, now)
    show_run(run_id)
    return run_id


def _active(store: Store, run_id: str) -> bool:
    try:
        return store.run(run_id)["status"] in ACTIVE
    except StoreError:          # deleted since
        return False


def form_from_url(store: Store, prefix: str) -> None:
    """A new browser session opened on ?run=ID: start the form from that run's config (before
    the form is drawn), so the form and the run beside it agree."""
    run_id = st.query_params.get(RUN_PARAM)
    if not run_id or st.session_state.get(f"{prefix}.from_url") or \
            f"{prefix}.method" in st.session_state.get(forms.MEMORY, {}):
        return
    st.session_state[f"{prefix}.from_url"] = True
    try:
        run = store.run(run_id)
    except Exception:          # an unknown id: the view below says which runs exist
        return
    forms.load_config(prefix, run["config"])


def rerun_controls(run: dict, prefix: str, submit: Callable[[SessionConfig], str]) -> None:
    """Edit and re-run (load the shown run's config into the form) and Run again with more
    seeds (the same config once per listed seed, queued at once)."""
    config = run["config"]
    edit, seeds, run_col = st.columns([2, 2, 1.3], vertical_alignment="bottom")
    edit.button("Edit and re-run", key=f"{prefix}.edit", icon=":material/edit:",
                on_click=forms.load_config, args=(prefix, config), width="stretch",
                help="Load this run's method, parameters and settings into the form.")
    key = f"{prefix}.more_seeds"
    if st.session_state.pop(f"{key}.ran", False):
        st.session_state[key] = ""        # they ran: the box no longer offers them again
    text = seeds.text_input("More seeds", placeholder=f"e.g. {config.seed + 1}, "
                            f"{config.seed + 2}", key=key,
                            help="Seeds to run this exact config with, comma-separated.")
    parsed, problem = _seed_list(text, config.seed)
    if problem:
        seeds.error(problem, icon=":material/error:")
    if run_col.button("Run seeds", key=f"{prefix}.run_seeds", icon=":material/replay:",
                  disabled=not parsed, width="stretch"):
        try:
            ids = [submit(config.replace(seed=s)) for s in parsed]
        except ConfigError as e:
            st.error(str(e), icon=":material/error:")
            return
        add_to_selection(list_runs(get_store()), [run["run_id"], *ids])
        st.session_state[f"{key}.ran"] = True
        show_run(ids[0])
        st.rerun()


def _seed_list(text: str, own: int) -> tuple[list[int], str | None]:
    """The seeds typed (the run's own seed dropped: it exists) or the message saying why not."""
    if not text.strip():
        return [], None
    try:
        seeds = parse_numbers(text, "More seeds", int)
    except ConfigError:
        return [], f"**More seeds** takes whole numbers separated by commas; got {text!r}."
    bad = [s for s in seeds if s < 0]
    if bad:
        return [], f"**More seeds**: seeds are 0 or more; got {bad[0]}."
    return [s for s in dict.fromkeys(seeds) if s != own], None
