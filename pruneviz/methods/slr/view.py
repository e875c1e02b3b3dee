"""SLR and ADMM internals: the Lagrangian residuals, step sizes and surrogate conditions, CE vs
penalty, soft accuracy vs "accuracy if hard-pruned now", weight histograms with the projection
threshold. Records: records.py (tables slr_epochs, slr_layers, slr_hist, one row set per epoch
end); docs/methods.md, SLR.

The overlay figures (residual_figure, accuracy_figure, loss_figure) take several runs' frames
(RunFrames), so the Compare page can draw slr and admm in one chart; `panels` draws one run.
Every figure shows the records at or before the slider's step on the whole run's x range.

Many layers (ResNet-20 has 19 prunable ones): per-layer residuals are a layer x step heatmap,
one row per layer, coloured relative to the layer's starting gap (layers differ in size, so raw
norms would show only the largest); the weight histograms are stacked ridges, one per layer, on a
common x axis, the weight divided by the layer's largest |w|.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...plots import (
    ACHIEVED,
    DASHES,
    FALLBACK,
    TARGET,
    axis,
    figure,
    line,
    log_axis,
    marker,
    method_color,
)
from ...views import (
    Panel,
    at,
    distinct_steps,
    finite,
    grid,
    method_rows,
    numbers,
    table,
    upto,
    waiting,
    x_range,
)
from .records import EPOCHS, HIST, LAYERS

TITLE = "Lagrangian residuals"      # the heading the dashboard gives this view
SCALARS = ("test_accuracy", "dense_accuracy")

CONDITION_COLUMNS = ("step", "k", "s", "alpha1", "alpha2", "cond1", "cond1_forced", "cond1_L",
                     "cond1_L_prev", "cond2", "cond2_L", "cond2_L_prev")
PASSED, FAILED, FORCED = "#2ca02c", "#d62728", "#9e9e9e"
LAMBDA, Z_MOVE, PENALTY, SOFT = "#9467bd", "#7f7f7f", "#ff7f0e", "#2ca02c"


class RunFrames(NamedTuple):
    """One run's frames (as `load` returns them) with its legend label and method."""

    label: str
    method: str
    frames: dict[str, pd.DataFrame]


def load(store, run_id: str) -> dict[str, pd.DataFrame]:
    """The run's SLR tables (O(layers) rows per epoch, read incrementally) and its held-out
    accuracy curve."""
    return dict(epochs=method_rows(store, run_id, EPOCHS.name, EPOCHS.names),
                layers=method_rows(store, run_id, LAYERS.name, LAYERS.names),
                hist=method_rows(store, run_id, HIST.name, HIST.names),
                scalars=table(store.scalars(run_id, list(SCALARS), max_points=400),
                              ("key", "value")))


def steps(frames: dict[str, pd.DataFrame]) -> list[int]:
    """The epoch ends (SLR's records, and the held-out evaluations: ADMM's retraining epochs
    record only those) and the record before training."""
    scalars = frames["scalars"]
    return distinct_steps(frames["epochs"], scalars[scalars.key == "test_accuracy"])


def panels(frames: dict[str, pd.DataFrame], run: dict, step: int | None = None) -> list[Panel]:
    method = run["config"].method
    if step is None:
        step = max(steps(frames), default=0)
    one = [RunFrames(method, method, frames)]
    xr = x_range(run, step, frames["epochs"], frames["scalars"])
    out = [
        Panel("slr.residuals", residual_figure(one, step, xr),
              "‖W − Z‖ is how far the weights still are from their sparse copy Z (it should "
              "shrink), ‖W − Π(W)‖ what a hard prune now would cut off, ‖Λ‖ the size of the "
              "multipliers pulling W towards Z, and ‖Z_k − Z_k−1‖ how far the last update "
              "moved Z."),
        Panel("slr.accuracy", accuracy_figure(one, step, xr),
              "Green: held-out accuracy of the soft (still dense) model; red: its accuracy if "
              "every layer were hard-pruned right now. The penalty works when red catches up "
              "with green before the hard prune (diamond); "
              + ("SLR reports that accuracy without retraining." if method == "slr" else
                 "ADMM then retrains with the mask.")),
    ]
    if method == "slr":
        out.append(Panel(
            "slr.conditions", conditions_figure(frames, step, xr),
            "Top: each surrogate-condition check at an epoch end, green passed (the Lagrangian "
            "went down, so the multipliers were updated and k grew), red failed (multipliers "
            "kept), grey forced at k = 1; hover for the two values compared. Middle: how much "
            "L went down, in % of the value it was compared with (above 0 passes). Bottom: "
            "the step size s_k and the factor α_k the rule multiplies it by.", wide=True))
    # Pairs for a two-column page: the two tall figures (one row per layer), then the loss.
    out += [
        Panel("slr.histogram", histogram_figure(frames, step),
              "Each layer's weights at the chosen epoch end, as a histogram over [−max|w|, "
              "max|w|]; red ticks mark the hard-prune cut (weights between them would be "
              "zeroed), grey dotted ticks the cut of the last Z projection (on |W + U|). The "
              "method is ready to prune when few weights sit near the red ticks."),
        Panel("slr.layers", layers_figure(frames, step, xr),
              "One row per layer: its ‖W − Z‖ divided by its value before training (1 = no "
              "progress, 0 = the weights already are sparse); hover for the raw norms and "
              "‖Λ‖."),
        Panel("slr.loss", loss_figure(one, step, xr),
              "Per-epoch means of the cross-entropy and of the penalty (ρ/2)‖W − Z + U‖² (log "
              "scale): the penalty is what the weights pay for being away from Z. "
              + penalty_reading(frames["epochs"], step)),
    ]
    return out


def penalty_reading(epochs: pd.DataFrame, step: int) -> str:
    """One sentence on the size of the penalty against the CE, from the run's own last epoch
    record at or before `step`."""
    e = upto(epochs, step)
    ce, penalty = numbers(e.ce), numbers(e.penalty)
    ok = np.isfinite(ce) & np.isfinite(penalty) & (ce > 0)
    if not ok.any():
        return "No epoch has recorded both yet."
    i = np.flatnonzero(ok)[-1]
    ratio, at_step = penalty[i] / ce[i], int(e.step.iloc[i])
    if ratio >= 2:
        how = "it dominates the loss, so training mostly moves W towards Z"
    elif ratio > 0.5:
        how = "the two pull about equally"
    else:
        how = "it steers training only gently"
    return (f"At step {at_step} the penalty is {ratio:.2g}× the CE ({penalty[i]:.3g} vs "
            f"{ce[i]:.3g}): {how}.")


# -- several runs ------------------------------------------------------------------------------
def _run_colors(runs: list[RunFrames]) -> list[str]:
    """A method's colour per run; a second run of the same method takes a palette colour."""
    out: list[str] = []
    for i, r in enumerate(runs):
        color = method_color(r.method)
        out.append(color if color not in out else FALLBACK[i % len(FALLBACK)])
    return out


def _series(runs: list[RunFrames], quantities: list[tuple[str, str]]):
    """(run, quantity index, name, colour, dash) of every curve: one run draws each quantity in
    its own colour; several runs draw each run in its colour, each quantity in its own dash."""
    colors = _run_colors(runs)
    for i, r in enumerate(runs):
        for q, (label, color) in enumerate(quantities):
            if len(runs) == 1:
                yield r, q, label, color, "solid"
            else:
                yield r, q, f"{r.label} · {label}", colors[i], DASHES[q % len(DASHES)]


RESIDUALS = [("residual", "‖W − Z‖", ACHIEVED), ("prune_gap", "‖W − Π(W)‖", TARGET),
             ("lambda_norm", "‖Λ‖", LAMBDA), ("z_change", "‖Z_k − Z_k−1‖", Z_MOVE)]


def residual_figure(runs: list[RunFrames], step: int, xr: list[float] | None = None
                    ) -> go.Figure:
    """Total primal residual, prune gap, multiplier norm and Z change per epoch end."""
    traces = []
    for r, q, name, color, dash in _series(runs, [(lab, c) for _, lab, c in RESIDUALS]):
        e = upto(r.frames["epochs"], step)
        col = RESIDUALS[q][0]
        y = numbers(e[col])
        ok = np.isfinite(y)
        if not ok.any():
            continue
        extra = {}
        if col == "z_change":
            extra = dict(customdata=numbers(e.support_changes)[ok],
                         hovertemplate="step %{x}<br>%{y:.4g}, %{customdata:.0f} support "
                                       "flips<extra>" + name + "</extra>")
        traces.append(line(e.step[ok], y[ok], name, color, dash=dash,
                           width=1.5 if col == "z_change" else 2, mode="lines+markers",
                           marker=dict(size=5), **extra))
    if not traces:
        return waiting()
    return figure(traces, dict(xaxis=axis("step", range=xr),
                               yaxis=axis("Frobenius norm", rangemode="tozero"),
                               shapes=[marker(step)], showlegend=True),
                  title="Residuals: W vs its sparse copy Z")


def accuracy_figure(runs: list[RunFrames], step: int, xr: list[float] | None = None
                    ) -> go.Figure:
    """Held-out accuracy of the soft model vs of its hard projection, per epoch end."""
    lines, points = [], []
    quantities = [("held-out (soft)", SOFT), ("if hard-pruned now", TARGET)]
    for r, q, name, color, dash in _series(runs, quantities):
        if q == 0:
            s = upto(r.frames["scalars"], step)
            s = s[s.key == "test_accuracy"]
            x, y = s.step.to_numpy(), numbers(s.value)
        else:
            e = upto(r.frames["epochs"], step)[["step", "phase", "hard_prune_now_accuracy"]]
            e = e[e.hard_prune_now_accuracy.notna()]
            x, y = e.step.to_numpy(), numbers(e.hard_prune_now_accuracy)
            hard = e[e.phase == "hard_prune"]
            if len(hard):
                points.append(dict(type="scatter", x=hard.step.to_numpy(),
                                   y=numbers(hard.hard_prune_now_accuracy),
                                   name=("" if len(runs) == 1 else f"{r.label} · ")
                                   + "hard prune", mode="markers",
                                   marker=dict(color=color, size=12, symbol="diamond",
                                               line=dict(color="white", width=1))))
        if len(x):
            lines.append(line(x, y, name, color, dash=dash, mode="lines+markers",
                              marker=dict(size=5)))
    if not lines:
        return waiting()
    dense = runs[0].frames["scalars"]
    dense = dense[(dense.key == "dense_accuracy") & (dense.step <= step)]
    if len(dense):
        points.append(dict(type="scatter", x=dense.step.to_numpy(), y=numbers(dense.value),
                           name="dense start", mode="markers",
                           marker=dict(color="#7f7f7f", size=9, symbol="circle-open")))
    return figure(lines + points, dict(xaxis=axis("step", range=xr),
                                       yaxis=axis("held-out accuracy", tickformat=".1%"),
                                       shapes=[marker(step)], showlegend=True),
                  title="Soft vs hard-pruned accuracy")


def loss_figure(runs: list[RunFrames], step: int, xr: list[float] | None = None) -> go.Figure:
    """Per-epoch mean cross-entropy and penalty (log scale)."""
    traces = []
    for r, q, name, color, dash in _series(runs, [("cross-entropy", ACHIEVED),
                                                  ("penalty", PENALTY)]):
        e = upto(r.frames["epochs"], step)
        y = numbers(e["ce" if q == 0 else "penalty"])
        ok = np.isfinite(y) & (y > 0)       # a log axis cannot show 0
        if ok.any():
            traces.append(line(e.step[ok], y[ok], name, color, dash=dash,
                               mode="lines+markers", marker=dict(size=5)))
    if not traces:
        return waiting()
    values = np.concatenate([t["y"] for t in traces])
    return figure(traces, dict(xaxis=axis("step", range=xr),
                               yaxis=axis("epoch mean (log scale)", **log_axis(values)),
                               shapes=[marker(step)], showlegend=True),
                  title="Cross-entropy vs penalty")


# -- one run -----------------------------------------------------------------------------------
def _condition_points(e: pd.DataFrame) -> pd.DataFrame:
    """One row per surrogate-condition check: step, which (1 or 2), outcome, L, L_prev."""
    parts = []
    for which in (1, 2):
        L, prev = numbers(e[f"cond{which}_L"]), numbers(e[f"cond{which}_L_prev"])
        ok = numbers(e[f"cond{which}"])
        # No previous Lagrangian to compare with: SLR forces its first update (k = 1).
        forced = (numbers(e.cond1_forced) == 1) & np.isnan(ok) if which == 1 else False
        keep = np.isfinite(L) & (np.isfinite(ok) | forced)
        outcome = np.where(np.isnan(ok), "forced", np.where(ok == 1, "passed", "failed"))
        parts.append(pd.DataFrame(dict(step=e.step.to_numpy()[keep], which=which,
                                       outcome=outcome[keep], L=L[keep], L_prev=prev[keep])))
    return pd.concat(parts, ignore_index=True)


_COMPARED = {1: ("L(W, Z_prev)", "L(W_prev, Z_prev)"), 2: ("L(W, Z)", "L(W, Z_prev)")}


_CONDITIONS = {1: "condition 1", 2: "condition 2"}


def _check_strip(checks: pd.DataFrame) -> list[dict]:
    """The pass/fail strip: one square per condition check, coloured by its outcome."""
    traces = []
    for outcome, color in (("passed", PASSED), ("failed", FAILED), ("forced", FORCED)):
        d = checks[checks.outcome == outcome]
        if d.empty:
            continue
        text = []
        for at_step, which, L, L_prev in zip(d.step, d.which, d.L, d.L_prev):
            now, prev = _COMPARED[which]
            vs = (f"{now} = {L:.6g}<br>{prev} = {L_prev:.6g}" if np.isfinite(L_prev) else
                  f"{now} = {L:.6g}<br>no previous Lagrangian: forced at k = 1")
            text.append(f"{_CONDITIONS[which]} at step {at_step}: {outcome}<br>{vs}")
        traces.append(dict(type="scatter", x=d.step.to_numpy(),
                           y=[_CONDITIONS[w] for w in d.which], mode="markers",
                           name=outcome if outcome != "forced" else "forced (k = 1)",
                           text=text, hovertemplate="%{text}<extra></extra>",
                           marker=dict(color=color, size=13, symbol="square")))
    return traces


def conditions_figure(frames: dict[str, pd.DataFrame], step: int,
                      xr: list[float] | None = None) -> go.Figure:
    """SLR's condition checks (pass/fail strip, relative drop of L) and its step size s_k, α_k."""
    e = upto(frames["epochs"], step)[list(CONDITION_COLUMNS)]
    checks = _condition_points(e)
    s = e[e.s.notna()]
    if checks.empty and s.empty:
        return waiting("waiting for the first condition check (end of the first epoch)", 460)
    traces = _check_strip(checks)
    labels = _CONDITIONS
    for which, color in ((1, "#1f77b4"), (2, "#ff7f0e")):
        d = checks[(checks.which == which) & checks.L_prev.notna()]
        if d.empty:
            continue
        prev = d.L_prev.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            drop = np.where(prev != 0, (prev - d.L.to_numpy()) / np.abs(prev) * 100, np.nan)
        now, before = _COMPARED[which]
        traces.append(line(d.step, drop, f"{labels[which]}: drop of L", color,
                           mode="lines+markers", marker=dict(size=6), xaxis="x", yaxis="y2",
                           hovertemplate=f"step %{{x}}<br>{before} − {now}: %{{y:.3g}}% of "
                                         f"{before}<extra></extra>"))
    if len(s):
        traces.append(line(s.step, numbers(s.s), "step size s_k", "#7b4173",
                           mode="lines+markers", marker=dict(size=5), yaxis="y3",
                           customdata=numbers(s.k),
                           hovertemplate="step %{x}<br>s = %{y:.4g}, k = %{customdata:.0f}"
                                          "<extra></extra>"))
        for col, name, symbol in (("alpha1", "α_k (condition 1 update)", "triangle-up"),
                                  ("alpha2", "α_k (condition 2 update)", "triangle-down")):
            a = s[s[col].notna()]
            if len(a):
                traces.append(dict(type="scatter", x=a.step.to_numpy(), y=numbers(a[col]),
                                   name=name, mode="markers", yaxis="y4",
                                   marker=dict(color="#17becf", size=8, symbol=symbol)))
    layout = dict(
        xaxis=axis("step", range=xr, anchor="y3"),
        yaxis=dict(domain=[0.82, 1.0], anchor="x", type="category",
                   categoryorder="array", categoryarray=["condition 2", "condition 1"]),
        yaxis2=axis("L drop, %", domain=[0.42, 0.74], anchor="x", zeroline=True,
                    zerolinecolor="#888", zerolinewidth=1),
        yaxis3=axis("s_k", domain=[0.0, 0.34], anchor="x", rangemode="tozero"),
        yaxis4=axis("α_k", overlaying="y3", side="right", anchor="x", showgrid=False,
                    tickformat=".3g"),
        shapes=[marker(step)], showlegend=True)
    return figure(traces, layout, height=460, title="Surrogate conditions and step size")


def histogram_figure(frames: dict[str, pd.DataFrame], step: int) -> go.Figure:
    """Stacked per-layer weight histograms at the last epoch end at or before `step`, each
    scaled to its layer's largest |w|, with the hard-prune and Z-projection cuts."""
    at_step, h = at(frames["hist"], step)
    if h.empty:
        return waiting(height=280)
    n = len(h)
    traces, cuts, zcuts = [], [], []
    for i, r in enumerate(h.itertuples(index=False)):
        counts = np.asarray(r.counts, dtype=float)
        hi = float(r.hi) or 1.0
        base = n - 1 - i                         # the first layer on top
        top = counts.max() if len(counts) and counts.max() > 0 else 1.0
        height = 0.85 * counts / top
        edges = np.linspace(float(r.lo) / hi, 1.0, len(counts) + 1)
        # A closed step outline: up and across every bin, then back along the baseline.
        xs = np.concatenate([np.repeat(edges, 2)[1:-1], [1.0, edges[0]]])
        ys = np.concatenate([np.repeat(height, 2) + base, [base, base]])
        raw = np.concatenate([np.repeat(counts, 2), [np.nan, np.nan]])
        traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", fill="toself",
                           name=r.layer, showlegend=False, customdata=raw * 1.0,
                           line=dict(color=ACHIEVED, width=1), fillcolor="rgba(31,119,180,0.35)",
                           hovertemplate=f"{r.layer}<br>w / {hi:.3g} = %{{x:.2f}}<br>"
                                         f"%{{customdata:.0f}} weights<extra></extra>"))
        for values, cut in ((cuts, r.threshold), (zcuts, r.z_threshold)):
            if cut is not None and not pd.isna(cut):
                t = float(cut) / hi
                values += [(-t, base), (-t, base + 0.95), (None, None),
                           (t, base), (t, base + 0.95), (None, None)]
    for values, name, dash, color in ((cuts, "hard-prune cut ±min kept |w|", "solid", TARGET),
                                      (zcuts, "last Z projection cut (|W + U|)", "dot",
                                       "#555555")):
        if values:
            xs, ys = zip(*values)
            traces.append(dict(type="scatter", x=list(xs), y=list(ys), mode="lines", name=name,
                               line=dict(color=color, width=1.5, dash=dash),
                               hoverinfo="skip"))
    layout = dict(xaxis=axis("weight ÷ the layer's largest |w|", range=[-1.02, 1.02]),
                  yaxis=dict(tickvals=[n - 1 - i + 0.4 for i in range(n)],
                             ticktext=list(h.layer), range=[-0.1, n], showgrid=False),
                  showlegend=True)
    return figure(traces, layout, height=max(240, 70 + 30 * n),
                  title=f"Weight histograms at step {at_step}")


def layers_figure(frames: dict[str, pd.DataFrame], step: int,
                  xr: list[float] | None = None) -> go.Figure:
    """Layer x step heatmap of ||W - Z|| relative to the layer's first record."""
    all_layers = frames["layers"]
    lay = upto(all_layers, step)
    if lay.empty:
        return waiting(height=260)
    order = list(pd.unique(all_layers.layer))
    first = all_layers.drop_duplicates("layer").set_index("layer").residual
    start = numbers(first.reindex(order))
    x, (raw, lam) = grid(lay, order, ["residual", "lambda_norm"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(start[:, None] > 0, raw / start[:, None], np.nan)
    zmax = max([1.0, *finite(rel.ravel())])
    heat = dict(type="heatmap", z=rel, x=x, y=order, zmin=0,
                zmax=zmax, colorscale="Viridis", customdata=np.dstack([raw, lam]),
                colorbar=dict(title=dict(text="÷ start"), thickness=12),
                hovertemplate="%{y}<br>step %{x}<br>‖W − Z‖ = %{customdata[0]:.4g} "
                              "(%{z:.0%} of the start)<br>‖Λ‖ = %{customdata[1]:.4g}"
                              "<extra></extra>")
    return figure([heat], dict(xaxis=axis("step", range=xr),
                               yaxis=dict(autorange="reversed", type="category"),
                               shapes=[marker(step)]),
                  height=max(240, 70 + 24 * len(order)), title="Per-layer ‖W − Z‖")
