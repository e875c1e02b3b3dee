"""Figures of the Learn pages: what pruneviz.learn returns in, plotly figures out (no streamlit).

Methods keep the dashboard's colours (METHOD_COLORS, the same values as pruneviz/plots.py on the
dashboard branch), so a schedule or a method reads the same here as on the live and compare
pages.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .learn import (
    ACTIVE,
    HARD_NOW,
    OUTCOMES,
    SCHEDULES,
    SOFT,
    GradientMask,
    OneLayer,
    PGPToy,
    TwoCuts,
)

METHOD_COLORS = {
    "dense": "#7f7f7f", "random": "#bcbd22", "l1": "#1f77b4", "global_l1": "#17becf",
    "l2_filter": "#9467bd", "gmp": "#ff7f0e", "pgmpf": "#d62728", "sfp": "#e377c2",
    "asfp": "#f7b6d2", "fggp": "#2ca02c", "granet": "#98df8a", "pgp": "#8c564b",
    "psfp": "#c49c94", "slr": "#7b4173", "admm": "#ce6dbd",
}
SCHEDULE_COLORS = dict(zip(SCHEDULES, ("#7f7f7f", METHOD_COLORS["gmp"], METHOD_COLORS["pgmpf"],
                                       METHOD_COLORS["pgp"])))
SCHEME_COLORS = {"layer-wise": METHOD_COLORS["l1"], "global": METHOD_COLORS["global_l1"]}
PRUNED = "#d9d9d9"          # a pruned cell: light grey, "gone"
OUTCOME_COLORS = dict(zip(OUTCOMES, ("#d0d0d0", "#b8e0b0", "#404040", "#1b7837",
                                     METHOD_COLORS["gmp"])))
STATUS_COLORS = {ACTIVE: "#1f77b4", SOFT: "#ffbb78", HARD_NOW: "#d62728"}


def _layout(fig: go.Figure, title: str, height: int = 340, top: int = 48, **kw) -> go.Figure:
    """The house look: title top left, horizontal legend under the plot."""
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)),
                      height=height, margin=dict(l=10, r=10, t=top, b=10),
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.2, yanchor="top"),
                      **kw)
    return fig


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
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16, subplot_titles=(
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
    return _layout(fig, "Which weights go (grey = pruned)", height=100 + 34 * w.shape[0],
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
    return _layout(fig, "Per-layer sparsity: same total, different spread", barmode="group")


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
    fig.update_yaxes(type="log", title_text="|w| (log scale)")
    return _layout(fig, "Where each scheme cuts: weights below the line go")


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
    fig.add_vline(x=d * epochs, line=dict(color=METHOD_COLORS["pgmpf"], dash="dot", width=1),
                  annotation_text="D·E", annotation_position="top right")
    fig.update_xaxes(title_text="epoch", range=[0, epochs])
    fig.update_yaxes(title_text="target sparsity", tickformat=".0%")
    return _layout(fig, "Target sparsity during training", height=380)


# -- PGMPF ----------------------------------------------------------------------------------------
def pgmpf_curves(df: pd.DataFrame, epochs: int, dense: bool, inspect: int | None = None
                 ) -> go.Figure:
    """r_e, lambda_e, alpha_e (and 1 - lambda_e) over epochs, with the 0.8 E / 0.9 E markers."""
    colors = {"keep rate r_e": "#1f77b4", "lambda_e": METHOD_COLORS["pgmpf"],
              "1 - lambda_e": "#ff9896", "alpha_e": "#2ca02c"}
    fig = go.Figure()
    for series, color in colors.items():
        d = df[df.series == series]
        fig.add_scatter(x=d.epoch, y=d.value, name=series, mode="lines+markers",
                        line=dict(color=color, width=2.5,
                                  dash="dot" if series == "1 - lambda_e" else "solid"),
                        marker=dict(size=4))
    marks = [(0.8 * epochs, "0.8 E: α = 0" + (", λ = 1" if dense else ""), "dash", "right"),
             (0.9 * epochs, "0.9 E: r_e = r" + ("" if dense else ", λ = 1"), "dot", "left")]
    if inspect is not None:
        marks.append((inspect - 1, f"mask of epoch {inspect}", "solid", "left"))
    for x, text, dash, side in marks:
        fig.add_vline(x=x, line=dict(color="#888", dash=dash, width=1.5))
        fig.add_annotation(x=x, y=1.0, yref="paper", yanchor="bottom", text=text,
                           showarrow=False, xanchor=side, font=dict(size=12, color="#555"))
    fig.update_xaxes(title_text="epoch e (value computed at its end, used in e + 1)")
    fig.update_yaxes(range=[-0.03, 1.05])
    return _layout(fig, "PGMPF's three schedules", height=400, top=70)


def gradient_factor_heatmap(gm: GradientMask) -> go.Figure:
    """What each filter's gradient is multiplied by at every step of one epoch (kept rows 1,
    pruned rows 1 - lambda or 0 at random)."""
    order = torch.argsort(gm.norms, descending=True)
    labels = [f"{'kept' if gm.kept[i] else 'pruned'} {int(i)}" for i in order]
    z = gm.factors[:, order].T
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), y=labels, x=list(range(1, z.shape[1] + 1)), zmin=0, zmax=1,
        colorscale=[[0, "#ffffff"], [0.5, "#fc9272"], [1, METHOD_COLORS["pgmpf"]]],
        colorbar=dict(title=dict(text="factor"), thickness=12),
        hovertemplate="%{y}, step %{x}: x%{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="filter (by L2 norm)")
    fig.update_xaxes(showgrid=False, title_text="step of the epoch")
    return _layout(fig, f"Gradient factor during epoch {gm.epoch} (λ = {gm.lam:.3f}, "
                        f"pruned filters get {1 - gm.lam:.3f} or 0)", height=80 + 18 * len(labels))


def factor_means_figure(df: pd.DataFrame) -> go.Figure:
    """Sampled mean factor of the pruned filters per epoch against (1 - lambda) / 2."""
    fig = go.Figure()
    fig.add_scatter(x=df.epoch, y=df.expected, name="expected (1 - λ) / 2", mode="lines",
                    line=dict(color="#444", dash="dash"))
    fig.add_scatter(x=df.epoch, y=df.sampled, name="sampled mean over the epoch", mode="markers",
                    marker=dict(color=METHOD_COLORS["pgmpf"], size=8))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="mean factor, pruned filters", rangemode="tozero")
    return _layout(fig, "Pruned filters: gradient let through, on average")


# -- FGGP -----------------------------------------------------------------------------------------
def two_cuts_scatter(tc: TwoCuts) -> go.Figure:
    """(|g|, |w|) of every weight by outcome (log axes), with the gradient cut (vertical), FGGP's
    magnitude cut inside the candidates and GMP's magnitude cut (horizontal)."""
    t = tc.table()
    fig = go.Figure()
    for outcome in OUTCOMES:
        d = t[t.outcome == outcome]
        fig.add_scatter(x=d.g, y=d.w, mode="markers", name=f"{outcome} ({len(d)})",
                        marker=dict(color=OUTCOME_COLORS[outcome], size=8,
                                    line=dict(color="white", width=0.5)),
                        hovertemplate="|g| %{x:.4f}, |w| %{y:.3f}<extra>" + outcome + "</extra>")
    g = t.g[t.g > 0]
    w = t.w[t.w > 0]
    glo, ghi = g.min() / 1.5, g.max() * 1.5
    wlo, whi = w.min() / 1.5, w.max() * 1.5
    if tc.candidates:
        fig.add_scatter(x=[tc.grad_cut] * 2, y=[wlo, whi], mode="lines", name="gradient cut",
                        line=dict(color=METHOD_COLORS["fggp"], width=2))
    if tc.mag_cut:
        fig.add_scatter(x=[glo, tc.grad_cut], y=[tc.mag_cut] * 2, mode="lines",
                        name="FGGP's magnitude cut",
                        line=dict(color="#1b7837", width=3))
    if tc.gmp_cut:
        fig.add_scatter(x=[glo, ghi], y=[tc.gmp_cut] * 2, mode="lines",
                        name="GMP's magnitude cut", line=dict(color=METHOD_COLORS["gmp"],
                                                                width=2, dash="dash"))
    fig.update_xaxes(type="log", range=[math.log10(glo), math.log10(ghi)], dtick=1,
                     title_text="|g|, gradient of this minibatch (log scale)")
    fig.update_yaxes(type="log", range=[math.log10(wlo), math.log10(whi)], dtick=1,
                     title_text="|w| (log scale)")
    _layout(fig, "Two cuts: gradient first, magnitude next", height=440)
    fig.update_layout(legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top"))
    return fig


def two_cuts_matrix(tc: TwoCuts) -> go.Figure:
    """The weight matrix coloured by outcome."""
    n = len(OUTCOMES)
    scale = []
    for i, o in enumerate(OUTCOMES):
        scale += [[i / n, OUTCOME_COLORS[o]], [(i + 1) / n, OUTCOME_COLORS[o]]]
    names = [[OUTCOMES[v] for v in row] for row in tc.outcome.tolist()]
    fig = go.Figure(go.Heatmap(
        z=tc.outcome.tolist(), zmin=-0.5, zmax=n - 0.5, colorscale=scale, customdata=names,
        xgap=1, ygap=1, colorbar=dict(tickvals=list(range(n)), ticktext=list(OUTCOMES),
                                      thickness=12),
        hovertemplate="row %{y}, col %{x}: %{customdata}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="row")
    fig.update_xaxes(showgrid=False, title_text="column")
    return _layout(fig, "The same step on the weight matrix", height=420)


# -- PGP ------------------------------------------------------------------------------------------
def pgp_scores_figure(toy: PGPToy, epoch: int) -> go.Figure:
    """The epoch's scores of the filters still present, sorted, coloured by what happens to
    them; weak and hard cuts as vertical lines between ranks; zero scores marked."""
    s = toy.scores[toy.scores.epoch == epoch].sort_values("score", kind="stable")
    cut = toy.cuts[toy.cuts.epoch == epoch].iloc[0]
    names = [f"f{i}" for i in s["filter"]]
    fig = go.Figure()
    for status, color in STATUS_COLORS.items():
        d = s[s.status == status]
        fig.add_bar(x=[f"f{i}" for i in d["filter"]], y=d.score, name=f"{status} ({len(d)})",
                    marker_color=color,
                    customdata=d.was_soft.map({True: "(soft-reset last epoch)", False: ""}),
                    hovertemplate="filter %{x}: %{y:.4f} %{customdata}<extra></extra>")
    zero = s[s.score == 0]
    if len(zero):
        fig.add_scatter(x=[f"f{i}" for i in zero["filter"]], y=[0] * len(zero), mode="markers",
                        name="score exactly 0", marker=dict(symbol="x", size=9, color="#222"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=names,
                     title_text="filters still present, weakest first", tickangle=-90,
                     tickfont=dict(size=9))
    for n, text, color, dash in ((cut.n_hard, "hard cut", STATUS_COLORS[HARD_NOW], "solid"),
                                 (cut.n_weak, "weak cut", "#ff7f0e", "dash")):
        if n:
            fig.add_vline(x=n - 0.5, line=dict(color=color, width=2, dash=dash))
            fig.add_annotation(x=n - 0.5, y=1.0, yref="paper", yanchor="bottom", text=text,
                               showarrow=False, xanchor="right" if text == "hard cut" else "left",
                               font=dict(size=12, color=color))
    fig.update_yaxes(title_text="score s_i (filter change)")
    return _layout(fig, f"Pruning epoch {epoch}: {int(cut.n_weak)} weak = {int(cut.n_hard)} "
                        f"hard + {int(cut.n_weak - cut.n_hard)} soft", height=400, top=70,
                   barmode="overlay")


def pgp_counts_figure(toy: PGPToy) -> go.Figure:
    """Active / soft / removed filters after each pruning epoch, with the exponential target."""
    c = toy.counts
    fig = go.Figure()
    for key, name, color in (("active", ACTIVE, STATUS_COLORS[ACTIVE]),
                             ("soft", SOFT, STATUS_COLORS[SOFT]),
                             ("removed", "removed", STATUS_COLORS[HARD_NOW])):
        fig.add_bar(x=c.epoch, y=c[key], name=name, marker_color=color)
    fig.add_scatter(x=c.epoch, y=c.target, name="target n(e)", mode="lines+markers",
                    line=dict(color="#222", width=2))
    fig.update_xaxes(title_text="pruning epoch e", dtick=1)
    fig.update_yaxes(title_text="filters")
    return _layout(fig, "Filters after each pruning epoch", barmode="stack", height=380)


# -- SLR ------------------------------------------------------------------------------------------
def slr_residual_figure(df: pd.DataFrame) -> go.Figure:
    """||W - Z|| per iteration for SLR and ADMM (log scale)."""
    fig = go.Figure()
    for method, d in df.groupby("method", sort=False):
        fig.add_scatter(x=d.iteration, y=d.residual, name=method.upper(), mode="lines+markers",
                        line=dict(color=METHOD_COLORS[method], width=2.5))
    fig.update_xaxes(title_text="iteration (one epoch of the W-subproblem, then the update)")
    fig.update_yaxes(type="log", dtick=1, title_text="||W − Z|| (log scale)")
    return _layout(fig, "Primal residual ||W − Z||", height=360)


def slr_loss_figure(df: pd.DataFrame) -> go.Figure:
    """Loss of W and of Pi(W) ("if hard-pruned now") per iteration, with the dense optimum and
    one-shot pruning of it as reference lines."""
    fig = go.Figure()
    for method, d in df.groupby("method", sort=False):
        color = METHOD_COLORS[method]
        fig.add_scatter(x=d.iteration, y=d.loss, name=f"{method.upper()}: f(W)",
                        mode="lines", line=dict(color=color, width=2, dash="dot"))
        fig.add_scatter(x=d.iteration, y=d.loss_hard, name=f"{method.upper()}: f(Π(W)), "
                        "hard-pruned now", mode="lines+markers", line=dict(color=color, width=2.5))
    fig.add_hline(y=df.attrs["dense_loss"], line=dict(color="#999", dash="dash"),
                  annotation_text="dense optimum", annotation_position="bottom right")
    fig.add_hline(y=df.attrs["one_shot_loss"], line=dict(color="#444", dash="dash"),
                  annotation_text="one-shot: prune the dense optimum",
                  annotation_position="top right")
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text="loss f")
    return _layout(fig, "Loss now vs loss if hard-pruned now", height=360)


# -- speed ----------------------------------------------------------------------------------------
def timing_bars(df: pd.DataFrame, label: str, title: str) -> go.Figure:
    """Measured time relative to the first (dense) conv as bars, median ms in the hover."""
    colors = ["#7f7f7f", METHOD_COLORS["l1"], METHOD_COLORS["l2_filter"]]
    fig = go.Figure(go.Bar(x=[v.replace(" (", "<br>(") for v in df[label]], y=df.relative,
                           marker_color=colors[:len(df)], customdata=df.ms,
                           text=[f"{v:.2f}x" for v in df.relative], textposition="outside",
                           hovertemplate="%{y:.2f}x dense (median %{customdata:.3f} ms)"
                                         "<extra></extra>"))
    fig.update_yaxes(title_text="time relative to dense", rangemode="tozero")
    return _layout(fig, title, height=340)


def channel_sweep_figure(df: pd.DataFrame, block: int | None) -> go.Figure:
    """Time relative to the widest conv against its filter count, block boundaries dotted."""
    widest = int(df.filters.max())
    fig = go.Figure(go.Scatter(x=df.filters, y=df.relative, mode="lines+markers",
                               line=dict(color=METHOD_COLORS["l2_filter"], width=2.5),
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
    return _layout(fig, "Time vs filters kept" + (f" (dotted: multiples of {block})"
                                                 if block else ""), height=340)


def launch_figure(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for model, d in df.groupby("model", sort=False):
        fig.add_bar(x=[f"batch {b}" for b in d.batch], y=d["us per image"], name=model,
                    text=[f"{v:.0f} µs" for v in d["us per image"]], textposition="outside",
                    marker_color="#7f7f7f" if model == "tiny CNN" else METHOD_COLORS["l2_filter"])
    fig.update_yaxes(title_text="µs per image", rangemode="tozero")
    return _layout(fig, "Time per image: small batches pay fixed costs", barmode="group",
                   height=340)
