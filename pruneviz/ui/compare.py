"""Compare stored runs side by side, and launch a methods x rates x seeds grid from one form."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..config import ConfigError, SessionConfig
from ..methods import load_all
from ..plots import (
    config_diff,
    curves_figure,
    layer_profile_figure,
    pareto_figure,
    seed_groups,
)
from ..store import ACTIVE, Store
from ..workers import Queue, grid
from .forms import dataclass_widgets
from .state import POLL_SECONDS, list_runs, select_runs

CURVE_POINTS = 400
REDRAW_SECONDS = 2.0     # the comparison redraws while any of its runs trains
DEFAULT_METHODS = ("l1", "global_l1", "gmp")
SHOWN_CURVES = {"loss", "test_accuracy", "sparsity"}      # drawn above in any case
PREFERRED_CURVES = ("hard_prune_now_accuracy", "primal_residual", "density", "r_e")
GRID_FIELDS = ("model", "dataset", "epochs")
_LAUNCHED = "cmp.launched"


def compare_data(store: Store, run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Runs (with label and seed group), downsampled curves and per-layer records."""
    runs = list_runs(store)
    runs = runs.set_index("run_id").loc[[r for r in run_ids if r in set(runs.run_id)]]
    runs = runs.reset_index()
    configs = {r: store.run(r)["config"].to_dict() for r in runs.run_id}
    groups = seed_groups(configs)
    runs["group"] = runs.run_id.map(groups)
    ids = list(runs.run_id)
    return {"runs": runs,
            "scalars": store.scalars(ids, ["loss", "test_accuracy", "sparsity"],
                                     max_points=CURVE_POINTS) if ids else pd.DataFrame(),
            "layers": store.layers(ids, ["sparsity"]) if ids else pd.DataFrame(),
            "config": config_diff({runs.label[i]: configs[r] for i, r in enumerate(ids)})}


def compare_view(store: Store, run_ids: list[str]) -> None:
    """The comparison; redraws every couple of seconds while a compared run is active."""
    runs = list_runs(store)
    busy = bool(runs[runs.run_id.isin(run_ids)].status.isin(ACTIVE).any())
    st.fragment(_compare_body, run_every=REDRAW_SECONDS if busy else None)(store, run_ids)


def _compare_body(store: Store, run_ids: list[str]) -> None:
    d = compare_data(store, run_ids)
    runs, scalars = d["runs"], d["scalars"]
    if runs.empty:
        st.info("The selected runs were deleted; pick others in the sidebar.")
        return
    st.dataframe(runs[["label", "status", "method", "rate", "seed", "final_accuracy",
                       "sparsity", "flops_effective", "wall_s", "run_id"]],
                 hide_index=True, key="cmp.table")
    c1, c2 = st.columns(2)
    c1.plotly_chart(curves_figure(scalars, runs, "loss", title="Training loss (smoothed)",
                                  smoothed=True), key="cmp.loss")
    c2.plotly_chart(curves_figure(scalars, runs, "test_accuracy", title="Held-out accuracy"),
                    key="cmp.acc")
    c1, c2 = st.columns(2)
    c1.plotly_chart(curves_figure(scalars, runs, "sparsity", title="Sparsity",
                                  y_range=(0, 1.02)), key="cmp.sparsity")
    c2.plotly_chart(layer_profile_figure(d["layers"], runs), key="cmp.layers")
    done = runs[runs.status == "completed"]
    left, right = st.columns(2)
    left.plotly_chart(pareto_figure(done, "sparsity", maximize_x=True,
                                    title="Accuracy vs sparsity"), key="cmp.pareto.sparsity")
    right.plotly_chart(pareto_figure(done, "flops_effective", maximize_x=False,
                                     title="Accuracy vs FLOPs",
                                     x_title="effective FLOPs per image"),
                       key="cmp.pareto.flops")
    _any_curve(store, runs)
    st.markdown("#### Config fields that differ")
    if d["config"].empty or len(runs) < 2:
        st.caption("Select at least two runs.")
    elif d["config"].shape[1] == 0:
        st.caption("The runs share every config field.")
    else:
        st.dataframe(d["config"], key="cmp.config")


def _any_curve(store: Store, runs: pd.DataFrame) -> None:
    """Any other recorded scalar overlaid across the runs, e.g. SLR's and ADMM's accuracy if
    hard-pruned now, or FGGP's and GMP's achieved density."""
    keys = [k for k in store.scalar_keys(list(runs.run_id)) if k not in SHOWN_CURVES]
    if not keys:
        return
    default = next((k for k in PREFERRED_CURVES if k in keys), keys[0])
    if st.session_state.get("cmp.curve") not in keys:
        st.session_state["cmp.curve"] = default
    key = st.selectbox("Overlay another recorded curve", keys, key="cmp.curve",
                       help="Every scalar the selected runs recorded; runs without it are "
                            "left out of the chart.")
    scalars = store.scalars(list(runs.run_id), [key], max_points=CURVE_POINTS)
    st.plotly_chart(curves_figure(scalars, runs, key, title=key.replace("_", " ")),
                    key="cmp.any")


def _parse_list(text: str, kind: type, name: str) -> list:
    try:
        values = [kind(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} expects comma-separated numbers, got {text!r}.") from None
    if not values:
        raise ConfigError(f"give at least one value for {name}.")
    return values


def grid_form(queue: Queue) -> None:
    """One form: several methods x rates (x seeds) on the same dense start, data and budget."""
    names = sorted(load_all())
    with st.form("cmp.grid"):
        methods = st.multiselect("methods", names, default=[m for m in DEFAULT_METHODS
                                                            if m in names],
                                 key="cmp.methods")
        a, b, *cols = st.columns(2 + len(GRID_FIELDS))
        rates = a.text_input("rates", "0.5, 0.8, 0.9", key="cmp.rates",
                             help="Fractions pruned, comma-separated; each in [0, 1).")
        seeds = b.text_input("seeds", "0", key="cmp.seeds",
                             help="Comma-separated; with several seeds the curves show the "
                                  "mean and a min/max band.")
        values, errors = {}, []
        for col, name in zip(cols, GRID_FIELDS):
            with col:
                v, e = dataclass_widgets(SessionConfig, "cmp", [name])
                values.update(v)
                errors += e
        with st.expander("Training and data"):
            rest = [n for n in SessionConfig.__dataclass_fields__
                    if n not in {*GRID_FIELDS, "method", "rate", "seed", "params", "name"}]
            more, more_errors = dataclass_widgets(SessionConfig, "cmp", rest)
        submitted = st.form_submit_button("Launch comparison", type="primary")
    if not submitted:
        return
    try:
        if errors or more_errors:
            raise ConfigError(" ".join(errors + more_errors))
        if not methods:
            raise ConfigError("pick at least one method.")
        configs = grid(SessionConfig(**values, **more), methods,
                       _parse_list(rates, float, "rates"), _parse_list(seeds, int, "seeds"))
        sweep_id, ids = queue.submit_grid(configs)
    except ConfigError as e:
        st.error(str(e), icon=":material/error:")
        return
    st.session_state[_LAUNCHED] = sweep_id
    select_runs(ids)
    st.rerun()


def sweep_progress(store: Store) -> None:
    """Progress of the sweep launched from this page; polls until it is done."""
    sweep_id = st.session_state.get(_LAUNCHED)
    if not sweep_id:
        return
    st.fragment(_sweep_body, run_every=POLL_SECONDS)(store, sweep_id)


def _sweep_body(store: Store, sweep_id: str) -> None:
    runs = list_runs(store)
    runs = runs[runs.sweep_id == sweep_id]
    finished = int((~runs.status.isin(ACTIVE)).sum())
    running = runs[runs.status == "running"]
    text = f"Sweep `{sweep_id}`: {finished}/{len(runs)} runs finished"
    if len(running):
        text += f" · training {running.label.iloc[0]}"
    st.progress(finished / max(len(runs), 1), text=text)
    if finished == len(runs):
        st.session_state.pop(_LAUNCHED, None)
        st.rerun()


def sweep_picker(store: Store) -> None:
    """Pick a stored sweep (from this page or `python -m pruneviz sweep`) to compare."""
    runs = list_runs(store)
    sweeps = [s for s in pd.unique(runs.sweep_id.dropna())]
    if not sweeps:
        return
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    counts = runs.groupby("sweep_id").size()
    sweep = a.selectbox("Stored sweeps", sweeps, key="cmp.sweep",
                        format_func=lambda s: f"{s} ({counts[s]} runs)")
    if b.button("Compare this sweep", key="cmp.pick_sweep"):
        select_runs(list(runs[runs.sweep_id == sweep].run_id))
        st.rerun()
