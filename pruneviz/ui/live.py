"""The live view of one run: redrawn from the store while it trains, scrubbable when it is done.

Pages never touch the running job: every poll reads the run's row and records from the store,
so a run started from the CLI, a reloaded page and a finished run are all drawn the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..plots import (
    layer_bars,
    layer_heatmap,
    run_label,
    sparsity_figure,
    training_figure,
)
from ..store import ACTIVE, Store
from ..views import method_params
from ..workers import Queue
from .dense import dense_start_view
from .forms import TRAINING, label_of
from .internals import internals_view, step_slider
from .live_pick import show_run
from .panel import metrics_panel_view
from .state import POLL_SECONDS, list_runs
from .text import plain

MAX_POINTS = 400             # per curve: more than a half-width chart has pixels for
SCALAR_KEYS = ["loss", "train_accuracy", "test_accuracy", "test_loss", "sparsity",
               "target_sparsity", "dense_accuracy", "pruned_accuracy", "ce"]
FIRST_POLL_SECONDS = 0.25    # right after Run, until the first records are drawn
_FAST_UNTIL = "live.fast_until"


@dataclass
class LiveData:
    run: dict
    scalars: pd.DataFrame
    layers: pd.DataFrame


def fetch_live(store: Store, run_id: str, max_points: int = MAX_POINTS) -> LiveData:
    """What one redraw's common charts need, downsampled: the run row, curves, layers (the
    method's internals view loads its own records)."""
    run = store.run(run_id)
    return LiveData(run, store.scalars(run_id, SCALAR_KEYS, max_points=max_points),
                    store.layers(run_id, ["sparsity"]))


def live_figures(data: LiveData) -> dict[str, go.Figure]:
    cls, params = method_params(data.run)
    zeros, pulled = getattr(cls, "zeros", "hard"), None
    if zeros == "deferred":
        config, total = data.run["config"], data.run.get("total_steps") or 0
        final = cls.mask_final(config, params)
        pulled = (config.rate, total * (final or config.epochs) / config.epochs)
    return {"training": training_figure(data.scalars),
            "sparsity": sparsity_figure(data.scalars, zeros, pulled),
            "layers": layer_heatmap(data.layers)}


def zeros_note(run: dict) -> str | None:
    """Why achieved sparsity (and the per-layer heatmap) can stay at 0 for most of a run of a
    soft or deferred method, with the step its zeros come at."""
    cls, params = method_params(run)
    zeros = getattr(cls, "zeros", "hard")
    if zeros == "hard":
        return None
    config, total = run["config"], run.get("total_steps") or 0
    final = cls.mask_final(config, params)
    when = ("at the end of the run" if final is None or final >= config.epochs else
            f"at epoch {final:g} (step {int(total * final / config.epochs)})")
    if zeros == "soft":
        return (f"**Soft pruning:** {cls.name} keeps pruned filters in the network, shrunk and "
                f"still trainable, so they are not exact zeros: achieved sparsity and the "
                f"per-layer heatmap stay near 0 until the mask is final, {when}. The dashed "
                f"target is the share of weights the mask in force prunes.")
    return (f"**Deferred pruning:** {cls.name} zeroes nothing while its penalty pulls the "
            f"weights towards a sparse copy Z (dotted, at rate {config.rate:g}); the hard "
            f"prune comes {when}, where achieved sparsity and the heatmap jump.")


def _eta(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def progress(run: dict, *, dense: dict | None = None, ahead: int = 0,
             now: float | None = None) -> tuple[float, str]:
    """Progress bar fraction and text (with ETA) from a run row; `dense` is the dense baseline
    this queued run waits for, `ahead` how many runs are queued before it."""
    now = time.time() if now is None else now
    status, total = run["status"], max(int(run.get("total_steps") or 0), 1)
    done = int(run.get("step") or 0) + 1 if run.get("step") else 0
    if status == "queued" and dense is not None:
        d_total = max(int(dense.get("total_steps") or 0), 1)
        d_done = int(dense.get("step") or 0)
        text = f"Training the shared dense baseline: step {d_done}/{d_total}"
        if d_done and dense.get("started") is not None:
            rate = d_done / max((dense.get("heartbeat") or now) - dense["started"], 1e-6)
            text += f" · ETA {_eta((d_total - d_done) / rate)}"
        return min(d_done / d_total, 1.0), text
    if status == "queued":
        return 0.0, f"Queued: {ahead} run(s) ahead" if ahead else "Starting…"
    if status == "running":
        text = f"Step {done}/{total}"
        if done and run.get("started") is not None:
            elapsed = max((run.get("heartbeat") or now) - run["started"], 1e-6)
            text += f" · ETA {_eta((total - done) / (done / elapsed))}"
        return min(done / total, 1.0), text
    frac = 1.0 if status == "completed" else min(done / total, 1.0)
    wall = ""
    if run.get("finished") and run.get("started"):
        wall = f" in {run['finished'] - run['started']:.1f} s"
    return frac, f"{status.capitalize()} after {done}/{total} steps{wall}"


def watch_start() -> None:
    """A run was just started here: poll fast until its first records are drawn, so the first
    chart shows at once; then at the slower POLL_SECONDS, which leaves the CPU to training."""
    st.session_state[_FAST_UNTIL] = time.time() + 20


# -- the view ------------------------------------------------------------------------------------
def live_view(store: Store, queue: Queue, run_id: str) -> None:
    """Progress and the common charts; polls while the run is queued or running and redraws
    once more when it ends."""
    polling = store.run(run_id)["status"] in ACTIVE
    fast = polling and _FAST_UNTIL in st.session_state
    every = (FIRST_POLL_SECONDS if fast else POLL_SECONDS) if polling else None
    st.fragment(_live_body, run_every=every)(store, queue, run_id, polling, fast)


def details_view(store: Store, run_id: str) -> None:
    """The metrics panel of a finished run, the method's internals (polled while it trains)
    and the per-layer history: drawn full width under the form and the live charts."""
    polling = store.run(run_id)["status"] in ACTIVE
    st.fragment(_details_body, run_every=POLL_SECONDS if polling else None)(store, run_id)
    # Polled too: drawn once, the history stayed on its first snapshot (step 21 of 440) under
    # charts at step 439 until a reload.
    st.fragment(_history, run_every=POLL_SECONDS if polling else None)(store, run_id)


def _details_body(store: Store, run_id: str) -> None:
    run = store.run(run_id)
    dense_start_view(store, run["config"], key="live")
    if run["status"] == "completed":
        metrics_panel_view(store, run_id, key="live.panel")
    internals_view(store, run, key="live.internals")


def _status_line(run: dict) -> str:
    c = run["config"]
    return (f"`{run['run_id']}` · {c.method} at rate {c.rate:g} · {plain(c.model)} on "
            f"{plain(c.dataset)} · {c.epochs} epochs · seed {c.seed} · **{run['status']}**")


def _live_body(store: Store, queue: Queue, run_id: str, polling: bool, fast: bool) -> None:
    data = fetch_live(store, run_id)
    run = data.run
    active = run["status"] in ACTIVE
    if polling and not active:
        st.rerun()                      # the run ended: redraw the page without polling
    if fast:
        until = st.session_state.get(_FAST_UNTIL, 0.0)
        if until < 0 or time.time() > until:
            st.session_state.pop(_FAST_UNTIL, None)
            st.rerun()                  # first records drawn (or waited long enough): slow down
        if not data.scalars.empty:
            st.session_state[_FAST_UNTIL] = -1.0       # drawn below; slow down next poll
    head, button = st.columns([5, 1], vertical_alignment="bottom")
    head.subheader(plain(run_label(run)))
    head.markdown(_status_line(run))
    button.button("Cancel", key="live.cancel", disabled=not active, on_click=queue.cancel,
                  args=(run_id,), icon=":material/stop_circle:",
                  help="Stop after the current step; the run is kept as interrupted.")
    st.progress(*_progress_of(store, run))
    if run["error"]:
        (st.warning if run["status"] == "interrupted" else st.error)(plain(run["error"]))
    for warning in (run["summary"] or {}).get("warnings", []):
        st.warning(plain(warning), icon=":material/warning:")
    if data.scalars.empty:
        if active:
            st.info("Waiting for the first records…")
        else:       # it ended before its first step (the error above says why)
            st.info(f"This run recorded nothing: it {run['status']} before its first step.")
        return
    _metrics(data.scalars, run)
    figs = live_figures(data)
    st.plotly_chart(figs["training"], key="live.training")
    left, right = st.columns(2)
    left.plotly_chart(figs["sparsity"], key="live.sparsity")
    right.plotly_chart(figs["layers"], key="live.layers")
    note = zeros_note(run)
    if note:
        st.caption(note)


def _progress_of(store: Store, run: dict) -> tuple[float, str]:
    if run["status"] != "queued":
        return progress(run)
    runs = store.runs(include_dense=True)
    dense = runs[(runs.kind == "dense") & (runs.status == "running")]
    queue = runs[(runs.kind == "session") & runs.status.isin(ACTIVE)]
    ahead = int((queue.created < run["created"]).sum())
    return progress(run, dense=dense.iloc[0].to_dict() if len(dense) and ahead == 0 else None,
                    ahead=ahead)


def _last(scalars: pd.DataFrame, key: str) -> float | None:
    values = scalars[scalars.key == key].value
    return float(values.iloc[-1]) if len(values) else None


def _metrics(scalars: pd.DataFrame, run: dict) -> None:
    dense, test = _last(scalars, "dense_accuracy"), _last(scalars, "test_accuracy")
    sparsity, target = _last(scalars, "sparsity"), _last(scalars, "target_sparsity")
    # Two a row: four side by side in the view column cut the delta chip ("-0.490 vs de…")
    # and the label at a 1280-px window with the sidebar open, and had no room to spare at 1400.
    top, bottom = st.columns(2), st.columns(2)
    cols = [*top, *bottom]
    cols[0].metric("Dense accuracy", "—" if dense is None else f"{dense:.3f}", border=True)
    limit = run["config"].eval_limit
    cols[1].metric("Held-out accuracy", "—" if test is None else f"{test:.3f}",
                   None if test is None or dense is None else f"{test - dense:+.3f} vs dense",
                   border=True, help=None if not limit else
                   f"Measured on at most {limit} held-out images, every class in turn "
                   f"({label_of('eval_limit')}, under {TRAINING}; 0 = all).")
    cols[2].metric("Sparsity", "—" if sparsity is None else f"{sparsity:.3f}",
                   None if target is None else f"target {target:.3f}", delta_color="off",
                   delta_arrow="off", border=True)
    loss = _last(scalars, "loss")
    cols[3].metric("Training loss", "—" if loss is None else f"{loss:.4f}", border=True)


def _history(store: Store, run_id: str) -> None:
    """Scrub the recorded history: per-layer sparsity and the curves' values at a chosen step."""
    layers = store.layers(run_id, ["sparsity"])
    steps = sorted(layers.step.unique().tolist())
    if len(steps) < 2:
        return
    st.markdown("#### History")
    # Follows the newest snapshot until moved back (a keyed slider kept its first value).
    step = step_slider(steps, f"live.history.{run_id}")
    left, right = st.columns([3, 2])
    left.plotly_chart(layer_bars(layers[layers.step == step], title=f"Per-layer sparsity at "
                                                                    f"step {step}"),
                      key="live.history.layers")
    with right:
        upto = _scalars_upto(store, run_id, steps[-1])
        upto = upto[upto.step <= step]
        latest = upto.groupby("key").value.last()
        st.dataframe(latest.rename("value at or before this step").to_frame(), height=250)


_HISTORY_SCALARS = "live.history.scalars"


def _scalars_upto(store: Store, run_id: str, newest: int) -> pd.DataFrame:
    """The run's curves up to its newest per-layer snapshot, read once per snapshot: a slider
    move re-read every step of every curve (68 ms at 11,000 steps, growing with the run), and
    a snapshot's curves are written with it or before (the loop's recorder flushes everything
    it holds at once), so nothing at or before it arrives later while the run trains; what its
    end records (pruned_accuracy) comes with its new status, which reads them again."""
    key = (run_id, newest, store.run(run_id)["status"])
    cached = st.session_state.get(_HISTORY_SCALARS)
    if cached is None or cached[0] != key:
        scalars = store.scalars(run_id, SCALAR_KEYS)
        cached = (key, scalars[scalars.step <= newest])
        st.session_state[_HISTORY_SCALARS] = cached
    return cached[1]


def queue_panel(store: Store, queue: Queue, shown: str | None) -> None:
    """Queued and running runs other than the shown one, each with View and Cancel; polls
    while anything is active."""
    runs = list_runs(store)
    busy = bool(runs.status.isin(ACTIVE).any())
    st.fragment(_queue_body, run_every=POLL_SECONDS if busy else None)(
        store, queue, shown, busy)


def _queue_body(store: Store, queue: Queue, shown: str | None, polling: bool) -> None:
    runs = list_runs(store)
    # Not named `queue`: that is the Queue whose cancel the buttons below call.
    active = runs[runs.status.isin(ACTIVE)].iloc[::-1]
    if polling and active.empty:
        st.rerun()
    others = active[active.run_id != shown]
    if others.empty:
        return
    with st.expander(f"Queue: {len(active)} run(s) queued or running, one trains at a time",
                     icon=":material/pending:"):
        for _, r in others.head(8).iterrows():
            label, view, cancel = st.columns([6, 1, 1], vertical_alignment="center")
            label.markdown(f"{plain(r.label)} · {plain(r.model)} on {plain(r.dataset)} · "
                           f"*{r.status}*")
            if view.button("", key=f"queue.view.{r.run_id}", icon=":material/visibility:",
                           help="Show this run"):
                show_run(r.run_id)
                st.rerun()
            cancel.button("", key=f"queue.cancel.{r.run_id}", icon=":material/close:",
                          help="Cancel this run", on_click=queue.cancel, args=(r.run_id,))
        if len(others) > 8:
            st.caption(f"… and {len(others) - 8} more")
