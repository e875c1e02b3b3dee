"""Wanda, SparseGPT, row magnitude and head importance internals: per layer |W| against the
input-channel norm ||X_j|| with the weights magnitude would cut but Wanda keeps marked, the
input-channel norm profile, SparseGPT's reconstruction error before and after its update beside
magnitude's and Wanda's masks on the same inputs, and head importance's layer x head grid per
round with the held-out quality after each round. Records: records.py; docs/methods.md, "Wanda,
SparseGPT, head importance".

Everything is recorded once, at step 0 (the one-shot prune), so the slider has one stop; the
per-layer figures show the layer whose input norms stand out most (its largest over its median
||X_j||), where the two scores part most visibly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...plots import ACHIEVED, TARGET, axis, figure, line, log_axis, method_color
from ...views import Panel, distinct_steps, method_rows, numbers, upto, waiting
from .records import CHANNELS, HEAD_ROUNDS, HEAD_SCORES, LAYER_STATS, OUTCOMES, POINTS

TITLE = "Calibration, scores and updates"
WAIT = "waiting for the one-shot prune"
OUTCOME_COLORS = dict(zip(OUTCOMES, ("#d0d0d0", "#404040", "#009E73", "#D55E00")))
ERRORS = (("err_magnitude", "magnitude (per row)", "#56B4E9"),
          ("err_wanda", "Wanda", "#009E73"),
          ("err_mask", "SparseGPT's mask, no update", "#E69F00"),
          ("err_sparsegpt", "SparseGPT (mask + update)", "#D55E00"))
MAX_COLUMNS = 512          # columns drawn in the profile of one layer


def load(store, run_id: str) -> dict[str, pd.DataFrame]:
    """The one-shot tables (a few rows per layer and input column, a few hundred points per
    layer; head tables: one row per head and round)."""
    out = {t.name: method_rows(store, run_id, t.name, t.names)
           for t in (LAYER_STATS, CHANNELS, POINTS, HEAD_SCORES, HEAD_ROUNDS)}
    layers = store.layers(run_id, ["input_norm_max_ratio"])
    out["ratio"] = layers if len(layers) else pd.DataFrame(
        {"step": [], "layer": [], "value": []})
    return out


def steps(frames: dict[str, pd.DataFrame]) -> list[int]:
    return distinct_steps(frames[LAYER_STATS.name], frames[HEAD_ROUNDS.name])


def panels(frames: dict[str, pd.DataFrame], run: dict, step: int | None = None) -> list[Panel]:
    method = run["config"].method
    if step is None:
        step = max(steps(frames), default=0)
    if method == "head_importance":
        return [
            Panel("llm.heads", heads_figure(frames, step),
                  "One row per round and layer, one cell per head (per output unit for a "
                  "model without attention): its importance, mean |dL/dξ| over the "
                  "calibration batches normalised per layer. ✕ marks the heads the round "
                  "removed; blank cells were removed in an earlier round.", wide=True),
            Panel("llm.quality", quality_figure(frames, step),
                  "Held-out accuracy and loss after each round (round 0: before any head is "
                  "removed); Michel et al. find the quality flat over the first rounds."),
        ]
    layer = outlier_layer(frames, step)
    out = [
        Panel("llm.scatter", scatter_figure(frames, step, layer),
              "A sample of the layer's weights: |W| up, the norm of the input channel each "
              "multiplies across (log scales). Green: weights magnitude would cut but Wanda "
              "keeps (small weights on loud input channels); orange: the reverse."),
        Panel("llm.profile", profile_figure(frames, step, layer),
              "The layer's input-channel norms ||X_j|| over the calibration tokens (bars) and, "
              "per channel, how many of its weights magnitude would cut but Wanda keeps "
              "(green) or the reverse (orange)."),
        Panel("llm.norms", norms_figure(frames, step),
              "Every pruned layer's input-channel norms, sorted, over the layer's median: "
              "a long head is a few outlier channels, the case Wanda was made for."),
    ]
    if method == "sparsegpt":
        out.append(Panel("llm.errors", errors_figure(frames, step),
                         "Per layer, ||WX − W'X||² over the calibration tokens (log scale) "
                         "when W' is W under each mask at the same sparsity and inputs; "
                         "SparseGPT's update removes most of its own mask's error."))
    else:
        out.append(Panel("llm.disagree", disagree_figure(frames, step, method),
                         "Per layer, the fraction of weights on which magnitude (per row) and "
                         "Wanda disagree: the more outlier input channels, the more."))
    return out


def outlier_layer(frames: dict[str, pd.DataFrame], step: int) -> str | None:
    """The layer with the largest max/median input norm (else the first pruned)."""
    ratio = upto(frames["ratio"], step) if len(frames["ratio"]) else frames["ratio"]
    if len(ratio):
        values = numbers(ratio.value)
        if np.isfinite(values).any():
            return str(ratio.layer.iloc[int(np.nanargmax(values))])
    stats = upto(frames[LAYER_STATS.name], step)
    return str(stats.layer.iloc[0]) if len(stats) else None


def _floor(values: np.ndarray) -> float:
    pos = values[np.isfinite(values) & (values > 0)]
    return float(pos.min()) / 2 if len(pos) else 1e-8


def scatter_figure(frames: dict[str, pd.DataFrame], step: int, layer: str | None) -> go.Figure:
    pts = upto(frames[POINTS.name], step)
    pts = pts[pts.layer == layer] if layer is not None else pts.iloc[:0]
    if pts.empty:
        return waiting(WAIT, 400)
    w, n = numbers(pts.w), numbers(pts.norm)
    wlo, nlo = _floor(w), _floor(n)
    traces = []
    for outcome, color in OUTCOME_COLORS.items():
        d = (pts.outcome == outcome).to_numpy()
        if not d.any():
            continue
        traces.append(dict(type="scatter", x=np.maximum(n[d], nlo), y=np.maximum(w[d], wlo),
                           mode="markers", name=f"{outcome} ({int(d.sum())})",
                           marker=dict(color=color, size=7, line=dict(color="white", width=0.5)),
                           hovertemplate="||X_j|| %{x:.3g}, |W| %{y:.3g}"
                                         f"<extra>{outcome}</extra>"))
    layout = dict(xaxis=axis("input-channel norm ||X_j|| (log)", **log_axis(n)),
                  yaxis=axis("|W_ij| (log)", **log_axis(w)), showlegend=True)
    return figure(traces, layout, height=400, title=f"{layer}: |W| against ||X_j||")


def profile_figure(frames: dict[str, pd.DataFrame], step: int, layer: str | None) -> go.Figure:
    ch = upto(frames[CHANNELS.name], step)
    ch = ch[ch.layer == layer] if layer is not None else ch.iloc[:0]
    if ch.empty:
        return waiting(WAIT)
    ch = ch.head(MAX_COLUMNS)
    col = numbers(ch.column)
    traces = [dict(type="bar", x=col, y=numbers(ch.norm), name="||X_j||",
                   marker=dict(color="rgba(127,127,127,0.5)"),
                   hovertemplate="column %{x}: ||X_j|| %{y:.3g}<extra></extra>"),
              line(col, numbers(ch.saved), "magnitude cuts, Wanda keeps", "#009E73",
                   mode="markers", yaxis="y2", marker=dict(size=5)),
              line(col, numbers(ch.lost), "Wanda cuts, magnitude keeps", "#D55E00",
                   mode="markers", yaxis="y2", marker=dict(size=5))]
    layout = dict(xaxis=axis("input column"), yaxis=axis("||X_j||"),
                  yaxis2=axis("weights", overlaying="y", side="right", showgrid=False,
                              rangemode="tozero"), bargap=0.1, showlegend=True)
    return figure(traces, layout, title=f"{layer}: input-channel norm profile")


def norms_figure(frames: dict[str, pd.DataFrame], step: int) -> go.Figure:
    ch = upto(frames[CHANNELS.name], step)
    if ch.empty:
        return waiting(WAIT)
    traces = []
    for i, (layer, d) in enumerate(ch.groupby("layer", sort=False)):
        v = np.sort(numbers(d.norm))[::-1]
        med = np.median(v)
        if not med > 0:
            continue
        traces.append(line(np.arange(len(v)) / max(len(v) - 1, 1), v / med, layer,
                           method_color(f"layer{i}"), width=1.5))
    if not traces:
        return waiting("no layer with a nonzero median input norm")
    y = np.concatenate([t["y"] for t in traces])
    return figure(traces, dict(xaxis=axis("input channels, sorted (fraction)"),
                               yaxis=axis("||X_j|| / median (log)", **log_axis(y)),
                               showlegend=len(traces) <= 12),
                  title="Input-channel norm profiles")


def errors_figure(frames: dict[str, pd.DataFrame], step: int) -> go.Figure:
    st = upto(frames[LAYER_STATS.name], step)
    st = st[st.err_sparsegpt.notna()] if "err_sparsegpt" in st else st.iloc[:0]
    if st.empty:
        return waiting(WAIT)
    traces = [dict(type="bar", x=st.layer.tolist(), y=numbers(st[key]), name=name,
                   marker=dict(color=color),
                   hovertemplate="%{x}: %{y:.4g}" + f"<extra>{name}</extra>")
              for key, name, color in ERRORS]
    values = np.concatenate([numbers(st[k]) for k, _, _ in ERRORS])
    return figure(traces, dict(barmode="group", xaxis=axis(None, type="category"),
                               yaxis=axis("||WX − W'X||² (log)", **log_axis(values)),
                               showlegend=True),
                  title="Layer reconstruction error, same mask sparsity")


def disagree_figure(frames: dict[str, pd.DataFrame], step: int, method: str) -> go.Figure:
    st = upto(frames[LAYER_STATS.name], step)
    if st.empty:
        return waiting(WAIT)
    traces = [dict(type="bar", x=st.layer.tolist(), y=numbers(st.disagree),
                   name="weights the two masks disagree on",
                   marker=dict(color=method_color(method)),
                   hovertemplate="%{x}: %{y:.3f}<extra></extra>")]
    return figure(traces, dict(xaxis=axis(None, type="category"),
                               yaxis=axis("fraction of the layer's weights",
                                          rangemode="tozero")),
                  title="Magnitude vs Wanda, per layer")


def heads_figure(frames: dict[str, pd.DataFrame], step: int) -> go.Figure:
    hs = upto(frames[HEAD_SCORES.name], step)
    if hs.empty:
        return waiting(WAIT, 360)
    hs = hs.assign(row=[f"round {int(r)} · {layer}" for r, layer in zip(hs["round"], hs.layer)])
    rows = list(pd.unique(hs.row))
    heads = int(numbers(hs["head"]).max()) + 1
    z = np.full((len(rows), heads), np.nan)
    text = np.full((len(rows), heads), "", dtype=object)
    index = {r: i for i, r in enumerate(rows)}
    for r, h, imp, status in zip(hs.row, numbers(hs["head"]), numbers(hs.importance), hs.status):
        i, j = index[r], int(h)
        if status != "gone":
            z[i, j] = imp
        if status == "removed":
            text[i, j] = "✕"
    heat = dict(type="heatmap", z=z, x=list(range(heads)), y=rows, text=text,
                texttemplate="%{text}", colorscale="Viridis", zmin=0,
                colorbar=dict(title=dict(text="importance"), thickness=12),
                hovertemplate="%{y}<br>head %{x}: %{z:.3f}<extra></extra>")
    return figure([heat], dict(xaxis=axis("head (unit)"),
                               yaxis=dict(autorange="reversed", type="category")),
                  height=max(260, 60 + 18 * len(rows)), title="Head importance per round")


def quality_figure(frames: dict[str, pd.DataFrame], step: int) -> go.Figure:
    q = upto(frames[HEAD_ROUNDS.name], step)
    if q.empty:
        return waiting(WAIT)
    x = numbers(q.removed)
    total = numbers(q.total)
    frac = np.where(total > 0, x / np.where(total > 0, total, 1), np.nan)
    traces = [line(frac, numbers(q.accuracy), "held-out accuracy", ACHIEVED,
                   mode="lines+markers", customdata=numbers(q["round"]),
                   hovertemplate="round %{customdata:.0f}: accuracy %{y:.4f}<extra></extra>"),
              line(frac, numbers(q.loss), "held-out loss", TARGET, mode="lines+markers",
                   yaxis="y2", dash="dash")]
    unit = str(q.unit.dropna().iloc[-1]) if q.unit.notna().any() else "head"
    return figure(traces, dict(xaxis=axis(f"fraction of {unit}s removed"),
                               yaxis=axis("accuracy"),
                               yaxis2=axis("loss", overlaying="y", side="right",
                                           showgrid=False), showlegend=True),
                  title="Quality after each round")
