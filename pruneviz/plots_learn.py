"""Figures of the Learn pages: what pruneviz.learn returns in, plotly figures out (no streamlit).

Methods keep the dashboard's colours (plots.method_color), so a schedule or a method reads the
same here as on the live and compare pages. Each family's own toy figures live in its toy.py.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .learn import SCHEDULES, OneLayer
from .plots import house_layout, log_axis, method_color

SCHEDULE_COLORS = dict(zip(SCHEDULES, ("#7f7f7f", method_color("gmp"), method_color("pgmpf"),
                                       method_color("pgp"))))
SCHEME_COLORS = {"layer-wise": method_color("l1"), "global": method_color("global_l1")}
PRUNED = "#d9d9d9"          # a pruned cell: light grey, "gone"


# -- unstructured vs structured -------------------------------------------------------------------
def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    return t.detach().flatten(1)


def mask_heatmaps(one: OneLayer) -> go.Figure:
    """The conv's weights as a filters x (input channel, 3x3) matrix, twice: kept cells coloured
    by |w|, pruned cells grey; left unstructured, right structured."""
    w = _as_matrix(one.weight).abs()
    per_channel = one.weight[0, 0].numel()
    labels = [f"filter {i}  (L2 {n:.2f})" for i, n in enumerate(one.norms.tolist())]
    cols = list(range(w.shape[1]))
    # One set of filter labels, on the left: the right plot's own sat over the left heatmap
    # at a 1400-px window with the sidebar open.
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(
        "unstructured: the smallest |w| of the layer", "structured: the lowest-L2 filters"))
    zmax = w.max().item()
    for col, mask in ((1, one.unstructured), (2, one.structured)):
        m = _as_matrix(mask)
        kept = torch.where(m > 0, w, torch.nan)
        gone = torch.where(m > 0, torch.nan, 1.0)
        fig.add_trace(go.Heatmap(
            z=kept.tolist(), x=cols, y=labels, zmin=0, zmax=zmax, colorscale="Blues",
            showscale=col == 2, colorbar=dict(title=dict(text="|w| kept"), thickness=12),
            hovertemplate="%{y}<br>weight %{x}<br>|w| = %{z:.3f}<extra>kept</extra>"),
            row=1, col=col)
        fig.add_trace(go.Heatmap(
            z=gone.tolist(), x=cols, y=labels, colorscale=[[0, PRUNED], [1, PRUNED]],
            showscale=False, hovertemplate="%{y}<br>weight %{x}<extra>pruned</extra>"),
            row=1, col=col)
        for c in range(per_channel, w.shape[1], per_channel):     # input-channel boundaries
            fig.add_vline(x=c - 0.5, line=dict(color="white", width=2), row=1, col=col)
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False, title_text=f"weights of a filter (input channel x "
                                                f"{one.weight.shape[2]}x{one.weight.shape[3]})")
    return house_layout(fig, "Which weights go (grey = pruned)", height=100 + 34 * w.shape[0],
                   top=80)


# -- layer-wise vs global -------------------------------------------------------------------------
def sparsity_bars(df: pd.DataFrame, rate: float) -> go.Figure:
    """Per-layer sparsity under each scheme, the target as a line."""
    fig = go.Figure()
    for scheme, d in df.groupby("scheme", sort=False):
        fig.add_bar(x=d.layer, y=d.sparsity, name=scheme, marker_color=SCHEME_COLORS[scheme],
                    text=[f"{v:.0%}" for v in d.sparsity], textposition="outside",
                    hovertemplate="%{x}: %{y:.1%} pruned<extra>" + scheme + "</extra>")
    fig.add_scatter(x=list(df.layer.unique()), y=[rate] * df.layer.nunique(), mode="lines",
                    name=f"target {rate:.0%}", line=dict(color="#444", dash="dash"))
    fig.update_yaxes(title_text="sparsity of the layer", range=[0, 1.12], tickformat=".0%")
    return house_layout(fig, "Per-layer sparsity: same total, different spread", barmode="group")


def weight_cuts(weights: dict[str, torch.Tensor], df: pd.DataFrame) -> go.Figure:
    """|w| of each layer as a box, the layer-wise cut of each layer as a marker and the one
    global cut as a line (log scale)."""
    fig = go.Figure()
    for name, w in weights.items():
        fig.add_box(y=w.abs().flatten().clamp_min(1e-4).tolist(), name=name, boxpoints=False,
                    marker_color="#9e9e9e", showlegend=False, hoverinfo="skip")
    lw = df[df.scheme == "layer-wise"]
    fig.add_scatter(x=lw.layer, y=lw.cut, mode="markers", name="layer-wise cut (one per layer)",
                    marker=dict(color=SCHEME_COLORS["layer-wise"], size=44, symbol="line-ew",
                                line=dict(width=5, color=SCHEME_COLORS["layer-wise"])))
    cut = df[df.scheme == "global"].cut.max()
    fig.add_scatter(x=list(weights), y=[cut] * len(weights), mode="lines", name="global cut",
                    line=dict(color=SCHEME_COLORS["global"], dash="dash", width=3))
    fig.update_yaxes(title_text="|w| (log scale)", **log_axis(df.cut))
    return house_layout(fig, "Where each scheme cuts: weights below the line go")


# -- schedules ------------------------------------------------------------------------------------
def schedule_figure(curves: pd.DataFrame, epochs: int, end: float, d: float) -> go.Figure:
    """Target sparsity against epochs for every schedule (per-epoch ones as steps)."""
    fig = go.Figure()
    for name, c in curves.groupby("schedule", sort=False):
        shape = "linear" if name == SCHEDULES[1] else "hv"
        fig.add_scatter(x=c.epoch, y=c.sparsity, name=name, mode="lines",
                        line=dict(color=SCHEDULE_COLORS[name], width=3, shape=shape,
                                  dash="dot" if name == SCHEDULES[0] else "solid"),
                        hovertemplate="epoch %{x:.1f}: %{y:.1%}<extra>" + name + "</extra>")
    fig.add_vline(x=end * epochs, line=dict(color="#999", dash="dash"),
                  annotation_text="end (T_end)", annotation_position="bottom right")
    fig.add_vline(x=d * epochs, line=dict(color=method_color("pgmpf"), dash="dot", width=1),
                  annotation_text="D·E", annotation_position="top right")
    fig.update_xaxes(title_text="epoch", range=[0, epochs])
    fig.update_yaxes(title_text="target sparsity", tickformat=".0%")
    return house_layout(fig, "Target sparsity during training", height=380)


# -- speed ----------------------------------------------------------------------------------------
def timing_bars(df: pd.DataFrame, label: str, title: str) -> go.Figure:
    """Measured time relative to the first (dense) conv as bars, median ms in the hover."""
    colors = ["#7f7f7f", method_color("l1"), method_color("l2_filter")]
    fig = go.Figure(go.Bar(x=[v.replace(" (", "<br>(") for v in df[label]], y=df.relative,
                           marker_color=colors[:len(df)], customdata=df.ms,
                           text=[f"{v:.2f}x" for v in df.relative], textposition="outside",
                           hovertemplate="%{y:.2f}x dense (median %{customdata:.3f} ms)"
                                         "<extra></extra>"))
    fig.update_yaxes(title_text="time relative to dense", rangemode="tozero")
    return house_layout(fig, title, height=340)


def channel_sweep_figure(df: pd.DataFrame, block: int | None) -> go.Figure:
    """Time relative to the widest conv against its filter count, block boundaries dotted."""
    widest = int(df.filters.max())
    fig = go.Figure(go.Scatter(x=df.filters, y=df.relative, mode="lines+markers",
                               line=dict(color=method_color("l2_filter"), width=2.5),
                               customdata=df.ms, name="measured",
                               hovertemplate="%{x} filters: %{y:.2f}x (median %{customdata:.3f} "
                                             "ms)<extra></extra>"))
    fig.add_scatter(x=[0, widest], y=[0, 1], mode="lines", name="proportional to filters",
                    line=dict(color="#999", dash="dash"))
    if block:
        for b in range(block, widest + 1, block):
            fig.add_vline(x=b + 0.5, line=dict(color="#bbb", dash="dot"))
    fig.update_xaxes(title_text="output channels (filters) of the conv", range=[0, widest + 2])
    fig.update_yaxes(title_text=f"time relative to {widest} filters", rangemode="tozero")
    return house_layout(fig, "Time vs filters kept" + (f" (dotted: multiples of {block})"
                                                       if block else ""), height=340)


def launch_figure(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for model, d in df.groupby("model", sort=False):
        fig.add_bar(x=[f"batch {b}" for b in d.batch], y=d["us per image"], name=model,
                    text=[f"{v:.0f} µs" for v in d["us per image"]], textposition="outside",
                    marker_color="#7f7f7f" if model == "tiny CNN" else method_color("l2_filter"))
    fig.update_yaxes(title_text="µs per image", rangemode="tozero")
    return house_layout(fig, "Time per image: small batches pay fixed costs", barmode="group",
                   height=340)


def round_to_figure(df: pd.DataFrame) -> go.Figure:
    """FLOPs and measured time relative to dense, side by side per conv (learn.round_to_speed)."""
    fig = go.Figure()
    for col, name, color in (("FLOPs relative", "FLOPs", "#7f7f7f"),
                             ("relative", "time (measured)", method_color("l2_filter"))):
        fig.add_bar(x=df.conv, y=df[col], name=name, marker_color=color,
                    text=[f"{v:.2f}" for v in df[col]], textposition="outside")
    fig.update_yaxes(title_text="relative to dense", rangemode="tozero")
    return house_layout(fig, "FLOPs promised vs time measured", barmode="group", height=340)


GROUP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#17becf", "#bcbd22", "#7f7f7f")
ALONE, DENSE = "#c7c7c7", "#555555"


def structure_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """One bar per traced conv/linear layer (learn.model_structure), top to bottom in module
    order, its length the layer's width: coloured by coupled group (layers whose output
    channels must be removed together), grey when alone, hatched and dark when it stays dense
    (the reason in its label and hover). Names are user text: escape them before (chart_text)."""
    layers = table[table.width > 0]
    if layers.empty:
        return go.Figure().update_layout(title=title)
    traces = []

    def bar(rows: pd.DataFrame, name: str, color: str, **marker) -> None:
        notes = [" · ".join(t for t in (f"group {g}" if g else "", r, f"dense: {d}" if d else "")
                            if t) for g, r, d in zip(rows.group, rows.role, rows["stays dense"])]
        short = [" · ".join(t for t in (f"group {g}" if g else "", "dense" if d else "") if t)
                 for g, d in zip(rows.group, rows["stays dense"])]
        traces.append(go.Bar(
            x=rows.width, y=rows.layer, orientation="h", name=name, text=short,
            customdata=notes, textposition="outside", cliponaxis=False,
            hovertemplate="%{y}: %{x} outputs<br>%{customdata}<extra></extra>",
            marker=dict(color=color, **marker)))

    dense = layers["stays dense"] != ""
    for g in sorted(set(layers.group[~dense]) - {0}):
        rows = layers[(layers.group == g) & ~dense]
        bar(rows, f"coupled group {g} ({(layers.group == g).sum()} layers)",
            GROUP_COLORS[(g - 1) % len(GROUP_COLORS)])
    alone = layers[(layers.group == 0) & ~dense]
    if not alone.empty:
        bar(alone, "pruned on its own", ALONE)
    if dense.any():
        bar(layers[dense], "stays dense (filter methods or all)", DENSE,
            pattern=dict(shape="/"))
    # Log widths (16 to 2048 channels in one zoo model), every bar from 1: plotly would start
    # the axis near the narrowest layer, drawing a 10-wide classifier as a sliver.
    widest = float(layers.width.max())
    ticks = [v for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if v <= widest]
    # The house legend sits under the axis title (a legend under the bars met it in short
    # charts), the figure taller by its rows.
    fig = house_layout(go.Figure(traces), title, height=max(320, 22 * len(layers) + 140),
                       barmode="overlay",
                       xaxis=dict(title="output channels / features", type="log",
                                  range=[0, math.log10(widest) + 0.1], tickvals=ticks),
                       yaxis=dict(categoryorder="array", categoryarray=list(layers.layer)[::-1]))
    return fig.update_layout(margin=dict(r=90))
