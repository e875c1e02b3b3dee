"""Wanda and SparseGPT on the Learn page: one small layer whose inputs the student shapes; scaling
one input channel's activations parts magnitude's and Wanda's choices, and SparseGPT's update is
drawn as the reconstruction error it removes. Every number comes from the engine's math.py
(InputStats, wanda_scores, prune_mask, sparsegpt, reconstruction_error); the layer and its
inputs are seeded Gaussians (toy-specific)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch

from ...learn import Control, Drawn, Toy
from ...plots import category_heatmap, house_layout
from .math import InputStats, prune_mask, reconstruction_error, sparsegpt, wanda_scores
from .records import OUTCOMES
from .view import ERRORS, OUTCOME_COLORS

ROWS, COLS, TOKENS = 8, 12, 96


@dataclass
class Parting:
    """One layer pruned by magnitude (per row), Wanda and SparseGPT on the same inputs."""

    w: torch.Tensor              # (ROWS, COLS)
    norms: torch.Tensor          # ||X_j|| per input column
    outcome: torch.Tensor        # index into OUTCOMES per weight
    errors: dict[str, float]     # ERRORS' keys -> ||WX - W'X||^2
    moved: torch.Tensor          # SparseGPT's update on the kept weights: W' - W (0 where cut)


def parting(channel: int, scale: float, sparsity: float, seed: int = 0) -> Parting:
    """The layer W (Gaussian), inputs X (TOKENS x COLS: Gaussian noise plus 3 shared factors,
    so channels correlate, as real activations do, and SparseGPT has something to compensate
    with) with column `channel` multiplied by `scale`."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(ROWS, COLS, generator=g)
    x = (0.5 * torch.randn(TOKENS, COLS, generator=g)
         + torch.randn(TOKENS, 3, generator=g) @ torch.randn(3, COLS, generator=g))
    x[:, channel] *= scale
    stats = InputStats(COLS, hessian=True)
    stats.add(x, TOKENS)
    magnitude = prune_mask(w.abs(), sparsity, None) == 0
    wanda = prune_mask(wanda_scores(w, stats.norms), sparsity, None) == 0
    outcome = torch.where(magnitude & wanda, 1, torch.where(magnitude, 2, torch.where(
        wanda, 3, 0)))
    new, keep, _ = sparsegpt(w, stats.H, sparsity, blocksize=COLS)
    errors = {"err_magnitude": reconstruction_error(w, w * ~magnitude, stats.H, stats.nsamples),
              "err_wanda": reconstruction_error(w, w * ~wanda, stats.H, stats.nsamples),
              "err_mask": reconstruction_error(w, w * keep, stats.H, stats.nsamples),
              "err_sparsegpt": reconstruction_error(w, new, stats.H, stats.nsamples)}
    return Parting(w, stats.norms, outcome, errors, (new - w) * keep)


def matrix_figure(p: Parting, channel: int) -> go.Figure:
    text = [[f"{abs(v):.2f}" for v in row] for row in p.w.tolist()]
    fig = go.Figure(category_heatmap(
        p.outcome.tolist(), list(OUTCOMES), [OUTCOME_COLORS[o] for o in OUTCOMES], text=text,
        texttemplate="%{text}",
        hovertemplate="row %{y}, input %{x}: |W| %{text}, %{customdata}<extra></extra>"))
    fig.add_vrect(x0=channel - 0.5, x1=channel + 0.5, line=dict(color="#CC79A7", width=3))
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="output row")
    # Upright: 16 level labels side by side ran into each other at a 1400-px window.
    fig.update_xaxes(showgrid=False, title_text="input channel's ||X_j|| (the scaled one framed)",
                     tickvals=list(range(COLS)), tickangle=-90, tickfont=dict(size=10),
                     ticktext=[f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in p.norms.tolist()])
    return house_layout(fig, "|W| of each weight, by outcome", height=420)


def error_figure(p: Parting) -> go.Figure:
    names = [name for _, name, _ in ERRORS]
    values = [p.errors[k] for k, _, _ in ERRORS]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[c for _, _, c in ERRORS],
                           hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    removed = p.errors["err_mask"] - p.errors["err_sparsegpt"]
    fig.add_annotation(x=names[3], y=p.errors["err_mask"], ax=0, ay=0, showarrow=False,
                       text=f"update removes {removed:.3g}", yshift=12)
    fig.add_shape(type="line", x0=2.6, x1=3.4, y0=p.errors["err_mask"],
                  y1=p.errors["err_mask"], line=dict(color="#E69F00", dash="dot", width=2))
    # Labelled at 1, 2 and 5 of each decade: 3..9 ran into each other in a short chart.
    fig.update_yaxes(title_text="||WX − W'X||² over the tokens (log)", type="log", dtick="D2")
    return house_layout(fig, "Reconstruction error of each choice", height=420)


def draw(v: dict[str, Any]) -> Drawn:
    channel = int(v["channel"])
    p = parting(channel, float(v["scale"]), float(v["sparsity"]), int(v["seed"]))
    parted = int((p.outcome >= 2).sum())
    return Drawn(
        figures=[("matrix", matrix_figure(p, channel)), ("errors", error_figure(p))],
        metrics=[("parted", parted,
                  "Weights one of magnitude and Wanda cuts and the other keeps."),
                 ("Wanda keeps, framed",
                  int(((p.outcome[:, channel] == 0) | (p.outcome[:, channel] == 2)).sum()),
                  "Of the framed column's weights, those Wanda keeps."),
                 ("update removes",
                  f"{1 - p.errors['err_sparsegpt'] / max(p.errors['err_mask'], 1e-12):.0%}",
                  "Of the error its mask alone leaves.")],
        notes=[("caption", "Turn the scale up: the framed input channel grows loud, so its "
                           "small weights matter to the output; magnitude still cuts them, "
                           "Wanda keeps them (green: magnitude cuts, Wanda keeps; orange: the "
                           "reverse). "
                           "SparseGPT picks its own mask and then moves the kept weights "
                           "to undo most of the error the cut leaves.")])


TOY = Toy(
    title="Wanda and SparseGPT: calibration",
    order=5,
    text=("Language models are pruned once, from a few calibration inputs. **Wanda** scores a "
          "weight by $|W_{ij}|$ times the norm of the input channel it reads, "
          "$\\|X_j\\|_2$, and prunes the lowest scores in each output row: a small weight on "
          "a loud channel survives. **SparseGPT** also uses the inputs, through their Hessian "
          "$H = 2XX^\\top$: it prunes the weights whose removal costs least, "
          "$w^2 / [H^{-1}]_{jj}^2$, and updates the rest so the layer's output $WX$ changes "
          "as little as possible."),
    citation=("Sun, Liu, Bair, Kolter, ICLR 2024, arXiv 2306.11695; Frantar & Alistarh, ICML "
              "2023, arXiv 2301.00774 (docs/methods.md, Wanda, SparseGPT)."),
    equations=(r"S_{ij} = |W_{ij}| \cdot \|X_j\|_2",
               r"\delta = -\frac{w_j}{[H^{-1}]_{jj}}\, H^{-1}_{j,:}"),
    equation_note="Wanda compares $S$ within each output row; SparseGPT updates column by "
                  "column through the Cholesky factor of $H^{-1}$.",
    controls=(
        Control("channel", "Input channel to scale", 3, 0, COLS - 1, 1),
        Control("scale", "Scale of its activations", 8.0, 1.0, 30.0, 0.5,
                help="Multiplies that channel of every calibration token: 1 leaves it as the "
                     "others."),
        Control("sparsity", "Sparsity (per row)", 0.5, 0.25, 0.75, 0.25),
        Control("seed", "Seed", 0, 0, 999, kind="number"),
    ),
    draw=draw,
    widths=(1, 2.8, 1.6),     # the heatmap's 16 channel labels need the room
)
