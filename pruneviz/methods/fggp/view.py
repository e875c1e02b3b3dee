"""FGGP, GraNet and GMP internals: the |g| vs |w| selection with its cuts, target vs achieved
density with the pruning events, per-layer density, and the overlap of the gradient-first choice
with plain magnitude pruning. Records: records.py (GMP's table prune_steps and layer key
density, one set per pruning step; FGGP's and GraNet's tables fggp_steps and fggp_scatter);
docs/methods.md, FGGP.

The slider offers the pruning steps; the scatter shows the last selection at or before it.
Many layers (ResNet-20 has 19 prunable ones and the classifier): per-layer density is a layer x
step heatmap, one row per layer, so it stays one figure of fixed width.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...plots import (
    ACHIEVED,
    TARGET,
    UNIT_RANGE,
    axis,
    figure,
    line,
    log_axis,
    marker,
    method_color,
)
from ...schedules import cubic_density
from ...views import (
    Panel,
    at,
    cached,
    distinct_steps,
    grid,
    index_key,
    method_rows,
    numbers,
    table,
    upto,
    waiting,
    x_range,
)
from .records import PRUNE_STEPS, SCATTER, STEPS

TITLE = "Gradient-first selection"      # the heading the dashboard gives this view
MAX_POINTS = 400            # per pruning step (the methods record at most 400)
# The Learn page's colours (pruneviz/plots_learn.py), so an outcome reads the same there.
OUTCOME_COLORS = {"kept": "#d0d0d0", "candidate": "#b8e0b0", "pruned": "#404040",
                  "restored": "#1b7837", "regrown": "#ff7f0e"}
OUTCOME_NAMES = {"kept": "kept", "candidate": "candidate, kept", "pruned": "pruned",
                 "restored": "cut and regrown at once", "regrown": "regrown"}
WAIT = "waiting for the first pruning step"
RULES = {
    "gradient_first": "FGGP takes the half with the smallest |g| (left of the vertical cut) as "
                      "candidates and prunes the smallest |w| among them (below the horizontal "
                      "cut).",
    "gw": "this run prunes the smallest |g·w|, the weights below the dashed curve.",
    "rank_sum": "this run prunes the smallest rank(|w|) + rank(|g|), the weights nearest the "
                "bottom left corner (no single line separates them).",
    "granet": "GraNet cuts the smallest |w| (below the horizontal cut) and regrows the removed "
              "weights with the largest |g| (right of the vertical cut).",
}


def load(store, run_id: str) -> dict[str, pd.DataFrame]:
    """The pruning-step tables (a few dozen rows, plus <= 400 scatter points per step, read
    incrementally) and the per-layer densities (re-read after each new pruning step)."""
    prune = method_rows(store, run_id, PRUNE_STEPS.name, PRUNE_STEPS.names)
    layers = cached(store, run_id, "fggp.layers", index_key(prune), lambda: dict(
        layers=table(store.layers(run_id, ["density"]), ("layer", "value"))))
    return dict(prune=prune, selection=method_rows(store, run_id, STEPS.name, STEPS.names),
                scatter=method_rows(store, run_id, SCATTER.name, SCATTER.names), **layers)


def steps(frames: dict[str, pd.DataFrame]) -> list[int]:
    """The pruning steps."""
    return distinct_steps(frames["prune"], frames["selection"])


def default_step(frames: dict[str, pd.DataFrame]) -> int | None:
    """Where a finished run's view opens: the last pruning step that cut at least a quarter as
    many weights as the largest one (the cubic schedule's last steps cut a handful, and a
    scatter of one cut weight shows no selection)."""
    cuts = frames["prune"]
    if cuts.empty or "pruned" not in cuts:
        return None
    pruned = numbers(cuts.pruned)
    ok = np.isfinite(pruned) & (pruned >= 0.25 * np.nanmax(pruned, initial=0)) & (pruned > 0)
    return int(cuts.step.to_numpy()[ok][-1]) if ok.any() else None


def panels(frames: dict[str, pd.DataFrame], run: dict, step: int | None = None) -> list[Panel]:
    method = run["config"].method
    if step is None:
        step = max(steps(frames), default=0)
    xr = x_range(run, step, frames["prune"])
    density = Panel("fggp.density", density_figure(frames, run, step, xr),
                    "The fraction of prunable weights still active: the cubic schedule's target "
                    "(dashed; dotted ahead of the slider) and what the masks achieve, one "
                    "marker per pruning step; grey bars count the weights each step removed.")
    layers = Panel("fggp.layers", layers_figure(frames, step, xr),
                   "One row per layer: the fraction of its weights still active after each "
                   "pruning step (the ranking is global, so layers thin out at different "
                   "speeds).")
    if method == "gmp":
        return [density, layers]
    # Pairs for a two-column page: the two tall figures, then the two curves over steps.
    return [
        Panel("fggp.scatter", scatter_figure(frames, step, method),
              "A sample of the weights at the last pruning step: gradient magnitude |g| across, "
              "weight magnitude |w| up (log scales), coloured by what the step did; "
              + RULES[_criterion(frames, run, method)]),
        layers,
        density,
        Panel("fggp.overlap", overlap_figure(frames, step, xr, method),
              "How many of the weights the step removed plain magnitude pruning (GMP) would "
              "have removed too, as |A ∩ B| / |A ∪ B|: 1 means the gradient changed nothing, "
              "low values mean the gradient picked other weights."
              + (" The dotted line is GraNet's regrowth fraction c(t)." if method == "granet"
                 else "")),
    ]


def _criterion(frames: dict[str, pd.DataFrame], run: dict, method: str) -> str:
    """The selection rule of the run: as recorded, else as configured."""
    recorded = frames["selection"].criterion.dropna()
    if len(recorded):
        return str(recorded.iloc[-1])
    if method == "granet":
        return "granet"
    return str(run["config"].params.get("criterion", "gradient_first"))


def _floor(values: np.ndarray) -> float:
    """A log axis' lower end: half the smallest positive value (zeros are drawn there)."""
    pos = values[np.isfinite(values) & (values > 0)]
    return float(pos.min()) / 2 if len(pos) else 1e-8


def scatter_figure(frames: dict[str, pd.DataFrame], step: int, method: str) -> go.Figure:
    """(|g|, |w|) of the sampled weights of the last selection at or before `step`, by outcome,
    with the gradient and magnitude cuts."""
    sel_step, sel = at(frames["selection"], step)
    if sel.empty:
        return waiting(WAIT, 420)
    row = sel.iloc[-1]
    pts = frames["scatter"]
    pts = pts[pts.step == sel_step].head(MAX_POINTS)
    g, w = numbers(pts.g), numbers(pts.w)
    cuts = {k: float(row[k]) for k in ("grad_cut", "mag_cut", "score_cut")
            if row[k] is not None and not pd.isna(row[k]) and float(row[k]) > 0}
    glo = _floor(np.append(g, cuts.get("grad_cut", np.nan)))
    wlo = _floor(np.append(w, cuts.get("mag_cut", np.nan)))
    ghi = max([glo * 10, *g[np.isfinite(g)], cuts.get("grad_cut", 0)]) * 1.5
    whi = max([wlo * 10, *w[np.isfinite(w)], cuts.get("mag_cut", 0)]) * 1.5
    traces = []
    for outcome, color in OUTCOME_COLORS.items():
        d = pts.outcome == outcome
        if not d.any():
            continue
        traces.append(dict(type="scatter", x=np.maximum(g[d], glo), y=np.maximum(w[d], wlo),
                           customdata=np.stack([g[d], w[d]], axis=1), mode="markers",
                           name=f"{OUTCOME_NAMES[outcome]} ({int(d.sum())})",
                           marker=dict(color=color, size=7, line=dict(color="white",
                                                                      width=0.5)),
                           hovertemplate="|g| %{customdata[0]:.3g}, |w| %{customdata[1]:.3g}"
                                         f"<extra>{outcome}</extra>"))
    criterion = row["criterion"] if isinstance(row["criterion"], str) else method
    grad = cuts.get("grad_cut")
    if grad and criterion in ("gradient_first", "granet"):
        name = "gradient cut" if criterion == "gradient_first" else "regrowth cut (min |g| regrown)"
        traces.append(line([grad, grad], [wlo, whi], name, method_color("fggp"), width=2))
    mag = cuts.get("mag_cut")
    if mag and criterion in ("gradient_first", "granet"):
        right = grad if criterion == "gradient_first" and grad else ghi
        traces.append(line([glo, right], [mag, mag], "magnitude cut (max |w| cut)", TARGET,
                           width=2.5))
    if "score_cut" in cuts and criterion == "gw":
        gs = np.geomspace(glo, ghi, 50)
        traces.append(line(gs, cuts["score_cut"] / gs, "|g·w| cut", TARGET, width=2,
                           dash="dash"))
    title = (f"Step {sel_step}: {int(row.pruned)} cut of {int(row.remain)}"
             + (f", {int(row.restored)} regrown" if row.restored else ""))
    layout = dict(xaxis=axis("|g|, gradient of the step's minibatch (log)",
                             **log_axis([glo, ghi]), range=[math.log10(glo), math.log10(ghi)]),
                  yaxis=axis("|w| (log)", **log_axis([wlo, whi]),
                             range=[math.log10(wlo), math.log10(whi)]),
                  showlegend=True)
    return figure(traces, layout, height=420, title=title)


def _schedule(run: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The cubic target density over the whole run, from the config (None if unknown)."""
    total = run.get("total_steps") or 0
    if total <= 0:
        return None
    # Lazy: the methods package imports torch; the dashboard has it loaded already.
    from ..base import get_method, make_params
    from .gmp import t_end
    config = run["config"]
    try:
        p = make_params(get_method(config.method), dict(config.params))
    except Exception:          # a run of an older or unknown version: no preview, no failure
        return None
    end = t_end(total, p.end)
    x = np.unique(np.linspace(0, total - 1, 200).round().astype(int))
    y = np.array([cubic_density(int(t), end, p.init_density, 1.0 - config.rate) for t in x])
    return x, y


def density_figure(frames: dict[str, pd.DataFrame], run: dict, step: int,
                   xr: list[float] | None = None) -> go.Figure:
    """Target vs achieved global density at the pruning steps, with the weights each removed."""
    p = upto(frames["prune"], step)
    if p.empty:
        return waiting(WAIT)
    traces = []
    plan = _schedule(run)
    if plan is not None:
        ahead = plan[0] >= p.step.max()
        traces.append(line(plan[0][ahead], plan[1][ahead], "schedule ahead", TARGET, width=1,
                           dash="dot", hoverinfo="skip"))
    traces += [
        dict(type="bar", x=p.step.to_numpy(), y=numbers(p.pruned), name="weights removed",
             yaxis="y2", marker=dict(color="rgba(127,127,127,0.35)"),
             hovertemplate="step %{x}: %{y:.0f} weights removed<extra></extra>"),
        line(p.step, numbers(p.target_density), "target", TARGET, dash="dash"),
        line(p.step, numbers(p.achieved_density), "achieved", ACHIEVED, width=2.5,
             mode="lines+markers", marker=dict(size=5), customdata=numbers(p.remain),
             hovertemplate="step %{x}<br>density %{y:.4f}<br>%{customdata:.0f} active "
                            "before the step<extra></extra>"),
    ]
    layout = dict(xaxis=axis("step", range=xr),
                  yaxis=axis("density (fraction kept)", range=UNIT_RANGE),
                  yaxis2=axis("weights removed", overlaying="y", side="right",
                              showgrid=False, rangemode="tozero"),
                  bargap=0.3, shapes=[marker(step)], showlegend=True)
    return figure(traces, layout, title="Target vs achieved density")


def layers_figure(frames: dict[str, pd.DataFrame], step: int,
                  xr: list[float] | None = None) -> go.Figure:
    """Layer x pruning-step heatmap of each layer's density."""
    all_layers = frames["layers"]
    lay = upto(all_layers, step)
    if lay.empty:
        return waiting(WAIT, 260)
    order = list(pd.unique(all_layers.layer))
    x, (z,) = grid(lay, order, ["value"])
    heat = dict(type="heatmap", z=z, x=x, y=order, zmin=0,
                zmax=1, colorscale="Viridis",
                colorbar=dict(title=dict(text="density"), thickness=12),
                hovertemplate="%{y}<br>step %{x}<br>density %{z:.3f}<extra></extra>")
    return figure([heat], dict(xaxis=axis("step", range=xr),
                               yaxis=dict(autorange="reversed", type="category"),
                               shapes=[marker(step)]),
                  height=max(240, 70 + 22 * len(order)), title="Per-layer density")


def overlap_figure(frames: dict[str, pd.DataFrame], step: int, xr: list[float] | None,
                   method: str) -> go.Figure:
    """Jaccard overlap of each step's removed weights with GMP's choice, per pruning step."""
    s = upto(frames["selection"], step)
    s = s[s.jaccard.notna()]
    if s.empty:
        return waiting(WAIT)
    counts = np.stack([numbers(s[c]) for c in ("remain", "to_prune", "candidates", "pruned",
                                               "restored")], axis=1)
    traces = [line(s.step, numbers(s.jaccard), "overlap with GMP's choice",
                   method_color(method) if method != "granet" else "#2ca02c",
                   mode="lines+markers", marker=dict(size=5), customdata=counts,
                   hovertemplate="step %{x}: Jaccard %{y:.3f}<br>%{customdata[0]:.0f} active, "
                                  "%{customdata[1]:.0f} asked<br>%{customdata[2]:.0f} "
                                  "candidates, %{customdata[3]:.0f} cut, %{customdata[4]:.0f} "
                                  "regrown<extra></extra>")]
    c = s[s.regrow_fraction.notna()]
    if len(c):
        traces.append(line(c.step, numbers(c.regrow_fraction), "regrowth fraction c(t)",
                           "#7f7f7f", dash="dot", width=1.5))
    return figure(traces, dict(xaxis=axis("step", range=xr),
                               yaxis=axis("Jaccard |A ∩ B| / |A ∪ B|", range=UNIT_RANGE),
                               shapes=[marker(step)], showlegend=len(traces) > 1),
                  title="Overlap with plain magnitude pruning")
