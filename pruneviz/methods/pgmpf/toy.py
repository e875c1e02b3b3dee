"""PGMPF on the Learn page: the gradient factor on a toy layer, through the engine's own
epoch_values, filter_mask and gradient_factor, and the figures that draw it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch

from ...config import SessionConfig
from ...learn import Control, Drawn, Toy
from ...masks import filter_mask
from ...plots import house_layout, method_color
from .engine import PGMPF
from .engine import Params as PGMPFParams
from .math import gradient_factor, n_pruned_filters


def pgmpf_schedule(epochs: int, rate: float, dense: bool = True) -> pd.DataFrame:
    """r_e, lambda_e, alpha_e of PGMPF against the epoch e whose end computes them: the
    method's own preview (PGMPF.schedule), plus 1 - lambda_e."""
    config = SessionConfig(epochs=epochs, rate=rate, start="dense" if dense else "scratch")
    df = PGMPF.schedule(config, PGMPFParams())
    lam = df[df.series == "lambda_e"]
    extra = lam.assign(series="1 - lambda_e", value=1.0 - lam.value)
    return pd.concat([df, extra], ignore_index=True)


@dataclass
class GradientMask:
    """The per-filter factor on one toy layer over the steps of one epoch."""

    epoch: int               # the epoch trained with this mask
    keep: float              # r_{e-1}: keep rate of the mask in force
    lam: float               # lambda_{e-1}
    norms: torch.Tensor      # filter L2 norms (the ranking)
    kept: torch.Tensor       # 1 = kept filter
    factors: torch.Tensor    # (steps, filters): what grad W_i is multiplied by at each step


def pgmpf_gradient_mask(epochs: int, rate: float, epoch: int, n_filters: int = 16,
                        steps: int = 40, dense: bool = True, seed: int = 0) -> GradientMask:
    """PGMPF's gradient factor m + (1 - m)(1 - lambda)[u < 0.5] for every filter of a random
    layer at every step of `epoch` (>= 1; the mask and lambda used during epoch e are computed at
    the end of e - 1), with the method's epoch_values, filter_mask and gradient_factor."""
    config = SessionConfig(epochs=epochs, rate=rate, start="dense" if dense else "scratch")
    v = PGMPF.values(config, PGMPFParams(), max(epoch - 1, 0))
    g = torch.Generator().manual_seed(seed)
    norms = torch.exp(0.5 * torch.randn(n_filters, generator=g))
    kept = filter_mask(norms, n_pruned_filters(n_filters, v.keep))
    if epoch < 1:                         # nothing is pruned during epoch 0
        kept = torch.ones(n_filters)
    factors = torch.stack([gradient_factor(kept, 1.0 - kept, v.lam,
                                           torch.rand(n_filters, generator=g))
                           for _ in range(steps)])
    return GradientMask(epoch, v.keep, v.lam, norms, kept, factors)


def pgmpf_factor_means(epochs: int, rate: float, n_filters: int = 16, steps: int = 40,
                       dense: bool = True, seed: int = 0) -> pd.DataFrame:
    """Per epoch: the mean factor the pruned filters' gradients got over the epoch's steps
    (sampled) against its expectation (1 - lambda) / 2. Columns: epoch, sampled, expected."""
    rows = []
    for e in range(1, epochs):
        gm = pgmpf_gradient_mask(epochs, rate, e, n_filters, steps, dense, seed + e)
        pruned = gm.kept == 0
        if pruned.any():
            rows.append({"epoch": e, "sampled": gm.factors[:, pruned].mean().item(),
                         "expected": (1.0 - gm.lam) / 2})
    return pd.DataFrame(rows, columns=["epoch", "sampled", "expected"])


def pgmpf_curves(df: pd.DataFrame, epochs: int, dense: bool, inspect: int | None = None
                 ) -> go.Figure:
    """r_e, lambda_e, alpha_e (and 1 - lambda_e) over epochs, with the 0.8 E / 0.9 E markers."""
    colors = {"keep rate r_e": "#1f77b4", "lambda_e": method_color("pgmpf"),
              "1 - lambda_e": "#ff9896", "alpha_e": "#2ca02c"}
    fig = go.Figure()
    for series, color in colors.items():
        d = df[df.series == series]
        fig.add_scatter(x=d.epoch, y=d.value, name=series, mode="lines+markers",
                        line=dict(color=color, width=2.5,
                                  dash="dot" if series == "1 - lambda_e" else "solid"),
                        marker=dict(size=4))
    # Both late marks are labelled leftwards, one above the other: a label anchored at 0.9 E
    # and running right is cut off at the figure's edge.
    marks = [(0.8 * epochs, "0.8 E: α = 0" + (", λ = 1" if dense else ""), "dash", "right", 0),
             (0.9 * epochs, "0.9 E: r_e = r" + ("" if dense else ", λ = 1"), "dot", "right",
              16)]
    if inspect is not None:
        marks.append((inspect - 1, f"mask of epoch {inspect}", "solid", "left", 0))
    for x, text, dash, side, lift in marks:
        fig.add_vline(x=x, line=dict(color="#888", dash=dash, width=1.5))
        fig.add_annotation(x=x, y=1.0, yref="paper", yanchor="bottom", text=text, yshift=lift,
                           showarrow=False, xanchor=side, font=dict(size=12, color="#555"))
    fig.update_xaxes(title_text="epoch e (computed at its end, used in e + 1)")
    fig.update_yaxes(range=[-0.03, 1.05])
    return house_layout(fig, "PGMPF's three schedules", height=400, top=70)


def gradient_factor_heatmap(gm: GradientMask) -> go.Figure:
    """What each filter's gradient is multiplied by at every step of one epoch (kept rows 1,
    pruned rows 1 - lambda or 0 at random)."""
    order = torch.argsort(gm.norms, descending=True)
    labels = [f"{'kept' if gm.kept[i] else 'pruned'} {int(i)}" for i in order]
    z = gm.factors[:, order].T
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), y=labels, x=list(range(1, z.shape[1] + 1)), zmin=0, zmax=1,
        colorscale=[[0, "#ffffff"], [0.5, "#fc9272"], [1, method_color("pgmpf")]],
        colorbar=dict(title=dict(text="factor"), thickness=12),
        hovertemplate="%{y}, step %{x}: x%{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="filter (by L2 norm)")
    fig.update_xaxes(showgrid=False, title_text="step of the epoch")
    # Two title lines: one line of this length is cut off in a half-width column.
    return house_layout(fig, f"Gradient factor, epoch {gm.epoch}<br><sup>λ = {gm.lam:.3f}: pruned "
                        f"filters get {1 - gm.lam:.3f} or 0</sup>", height=100 + 18 * len(labels),
                   top=64)


def factor_means_figure(df: pd.DataFrame) -> go.Figure:
    """Sampled mean factor of the pruned filters per epoch against (1 - lambda) / 2."""
    fig = go.Figure()
    fig.add_scatter(x=df.epoch, y=df.expected, name="expected (1 - λ) / 2", mode="lines",
                    line=dict(color="#444", dash="dash"))
    fig.add_scatter(x=df.epoch, y=df.sampled, name="sampled mean over the epoch", mode="markers",
                    marker=dict(color=method_color("pgmpf"), size=8))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="mean factor, pruned filters", rangemode="tozero")
    return house_layout(fig, "Pruned filters: gradient let through, on average")


def draw(v: dict[str, Any]) -> Drawn:
    dense = v["start"].startswith("fine")
    gm = pgmpf_gradient_mask(v["epochs"], v["rate"], v["epoch"], v["filters"], dense=dense)
    return Drawn(
        figures=[("curves", pgmpf_curves(pgmpf_schedule(v["epochs"], v["rate"], dense),
                                         v["epochs"], dense, v["epoch"])),
                 ("factor", gradient_factor_heatmap(gm)),
                 ("means", factor_means_figure(pgmpf_factor_means(v["epochs"], v["rate"],
                                                                  v["filters"], dense=dense)))],
        notes=[("aside",
                "**Reading the toy.** Kept filters' rows are 1 at every step; a pruned filter's "
                "row flickers between $1 - \\lambda$ and 0. Averaged over an epoch, the pruned "
                "filters get $(1 - \\lambda_e)/2$ of their gradient, which falls to 0 as "
                "$\\lambda_e \\to 1$.\n\n"
                "Momentum and weight decay are not masked (SGD adds them after the mask, as in "
                "the authors' code), so a frozen filter still drifts a little until the hard "
                "zero.")])


TOY = Toy(
    title="PGMPF: prior gradient mask",
    order=1,
    text=("PGMPF is **soft filter pruning**: at the end of every epoch the filters with the "
          "lowest L2 norm are marked pruned ($m_i = 0$), but they stay in the network and "
          "may come back if they grow. Three schedules push them out gently: the keep rate "
          "$r_e$ falls towards its target; each epoch the pruned filters (and their "
          "BatchNorm γ, β) are multiplied by $\\alpha_e$; and at every step their gradient "
          "is scaled by $1 - \\lambda_e$, or dropped, with probability 1/2 (the *prior "
          "gradient mask*). As $\\lambda_e \\to 1$ they stop learning, and from $0.8\\,E$ "
          "$\\alpha_e = 0$ zeroes them for good."),
    citation=("Cai, An, Yang, Yan, Xu, Prior Gradient Mask Guided Pruning-aware Fine-tuning, "
              "AAAI-22, DOI 10.1609/aaai.v36i1.19888 (docs/methods.md, PGMPF)."),
    # One short equation per line: a column a third of the page wide cuts off longer ones.
    equations=(r"\lambda_e = 1 - \left(1 - \tfrac{e + 1}{E}\right)^3",
               r"\alpha_e = \alpha_0\, e^{-a e}",
               r"\nabla W_i \leftarrow \nabla W_i \cdot g_i",
               r"g_i = m_i + (1 - m_i)(1 - \lambda_e)\,\mathbb{1}[u_i < 0.5]"),
    equation_note=("with $u_i \\sim U(0, 1)$ drawn per filter at every step: a pruned filter "
                   "gets on average $(1 - \\lambda_e)/2$ of its gradient."),
    controls=(
        Control("epochs", "Epochs E", 20, 4, 100),
        Control("rate", "Filter prune rate", 0.4, 0.1, 0.99, 0.01),
        Control("start", "Start", None, kind="radio",
                options=("fine-tune a trained model", "from scratch"),
                help="Fine-tuning: λ = 1 and α = 0 from 0.8 E, σ = 1e-5; from scratch: λ = 1 "
                     "from 0.9 E, σ = 1e-3."),
        Control("epoch", "Epoch to look at", lambda v: min(3, v["epochs"] - 1), 1,
                lambda v: v["epochs"] - 1),
        Control("filters", "Filters in the toy layer", 16, 4, 32),
    ),
    draw=draw,
)
