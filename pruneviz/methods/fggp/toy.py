"""FGGP on the Learn page: one pruning step's two cuts (gradient, then magnitude) on a small
matrix, beside plain magnitude pruning, through the engine's own gradient_first."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch

from ...learn import Control, Drawn, Toy
from ...plots import category_heatmap, house_layout, method_color
from .math import gradient_first, smallest

OUTCOMES = ("kept", "candidate", "pruned by both", "FGGP only", "GMP only")


@dataclass
class TwoCuts:
    """One FGGP pruning step on a small matrix, beside plain magnitude pruning (GMP)."""

    w: torch.Tensor            # |w|, (rows, cols)
    g: torch.Tensor            # |g|
    outcome: torch.Tensor      # index into OUTCOMES, (rows, cols)
    to_prune: int
    candidates: int            # floor(rho * remain)
    grad_cut: float            # largest |g| in the candidate set
    mag_cut: float             # largest |w| FGGP prunes
    gmp_cut: float             # largest |w| GMP prunes
    jaccard: float             # |FGGP & GMP| / |FGGP | GMP|
    error: str | None          # the schedule asks for more than the candidate set holds

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"g": self.g.flatten().tolist(), "w": self.w.flatten().tolist(),
                             "outcome": [OUTCOMES[i] for i in self.outcome.flatten().tolist()]})


def fggp_two_cuts(rho: float, prune_fraction: float, rows: int = 12, cols: int = 16,
                  coupling: float = 0.0, seed: int = 0) -> TwoCuts:
    """FGGP's selection (fggp.gradient_first) of floor(prune_fraction * N) weights of a random
    rows x cols matrix, and GMP's (the same count of smallest |w|, fggp.smallest). |w| and |g|
    are magnitudes of Gaussians with correlation `coupling` (|g| scaled down, as gradients are)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(rows * cols, generator=gen)
    b = coupling * a + math.sqrt(1.0 - coupling ** 2) * torch.randn(rows * cols, generator=gen)
    w, g = a.abs(), 0.05 * b.abs()
    active = torch.ones_like(w, dtype=torch.bool)
    remain = int(active.sum())
    to_prune = math.floor(prune_fraction * remain)
    n_cand = math.floor(rho * remain)
    idx = active.nonzero().squeeze(1)
    gmp = smallest(w, idx, to_prune)
    error = None
    if to_prune > n_cand:
        error = (f"The step asks to prune {to_prune} of {remain} weights but the rho = {rho:g} "
                 f"candidate set holds {n_cand}: FGGP stops with a ConfigError here (prune more "
                 f"often, raise rho, or lower the rate).")
        pruned, cand = torch.empty(0, dtype=torch.long), smallest(g, idx, n_cand)
    else:
        pruned, cand = gradient_first(w, g, active, to_prune, rho)
    code = torch.zeros(w.numel(), dtype=torch.long)
    code[cand] = 1
    in_f = torch.zeros_like(active)
    in_f[pruned] = True
    in_g = torch.zeros_like(active)
    in_g[gmp] = True
    code[in_f & in_g] = 2
    code[in_f & ~in_g] = 3
    code[~in_f & in_g] = 4
    union = int((in_f | in_g).sum())
    return TwoCuts(
        w.view(rows, cols), g.view(rows, cols), code.view(rows, cols), to_prune, n_cand,
        grad_cut=g[cand].max().item() if cand.numel() else 0.0,
        mag_cut=w[pruned].max().item() if pruned.numel() else 0.0,
        gmp_cut=w[gmp].max().item() if gmp.numel() else 0.0,
        jaccard=int((in_f & in_g).sum()) / union if union else 1.0, error=error)


OUTCOME_COLORS = dict(zip(OUTCOMES, ("#d0d0d0", "#b8e0b0", "#404040", "#1b7837",
                                     method_color("gmp"))))


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
                        line=dict(color=method_color("fggp"), width=2))
    if tc.mag_cut:
        fig.add_scatter(x=[glo, tc.grad_cut], y=[tc.mag_cut] * 2, mode="lines",
                        name="FGGP's magnitude cut",
                        line=dict(color="#1b7837", width=3))
    if tc.gmp_cut:
        fig.add_scatter(x=[glo, ghi], y=[tc.gmp_cut] * 2, mode="lines",
                        name="GMP's magnitude cut", line=dict(color=method_color("gmp"),
                                                                width=2, dash="dash"))
    fig.update_xaxes(type="log", range=[math.log10(glo), math.log10(ghi)], dtick=1,
                     title_text="|g|, gradient of this minibatch (log scale)")
    fig.update_yaxes(type="log", range=[math.log10(wlo), math.log10(whi)], dtick=1,
                     title_text="|w| (log scale)")
    return house_layout(fig, "Two cuts: gradient first, magnitude next", height=440,
                        legend=dict(orientation="v", x=1.02, xanchor="left", y=1,
                                    yanchor="top", yref="paper"))


def two_cuts_matrix(tc: TwoCuts) -> go.Figure:
    """The weight matrix coloured by outcome."""
    fig = go.Figure(category_heatmap(
        tc.outcome.tolist(), list(OUTCOMES), [OUTCOME_COLORS[o] for o in OUTCOMES],
        hovertemplate="row %{y}, col %{x}: %{customdata}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="row")
    fig.update_xaxes(showgrid=False, title_text="column")
    return house_layout(fig, "The same step on the weight matrix", height=420)


def draw(v: dict[str, Any]) -> Drawn:
    tc = fggp_two_cuts(v["rho"], v["prune"], coupling=v["coupling"], seed=int(v["seed"]))
    notes = [("warning", tc.error)] if tc.error else []
    notes.append(("caption", "At ρ = 1 every active weight is a candidate and FGGP is GMP "
                             "(overlap 1). The smaller ρ, the more of GMP's choices are spared "
                             "because their gradient is large."))
    return Drawn(
        figures=[("scatter", two_cuts_scatter(tc)), ("matrix", two_cuts_matrix(tc))],
        metrics=[("|C|", tc.candidates, "Candidates: the rho fraction with the smallest |g|."),
                 ("pruned", tc.to_prune, "Weights this pruning step removes."),
                 ("overlap", f"{tc.jaccard:.2f}",
                  "Jaccard overlap of FGGP's and GMP's choices: |both| / |either|.")],
        notes=notes)


TOY = Toy(
    title="FGGP: gradient first",
    order=2,
    text=("FGGP prunes **unstructured** weights on the cubic schedule, but picks them in two "
          "cuts. First the gradient: of the weights still active, only the fixed fraction "
          "$\\rho$ with the smallest $|g|$ (this minibatch's gradient) are candidates: weights "
          "the loss is not pushing on right now. Then the magnitude: among the candidates, the "
          "smallest $|w|$ go. Plain magnitude pruning (GMP) would take the smallest $|w|$ "
          "overall, including small weights that are still learning fast. $\\rho = 0.5$ is "
          "fixed, not annealed: that is the paper's point."),
    citation=("Zhu, Bezek, Goksel, Fixed-rate Gradient-First Gradual Pruning, SCIA 2025, "
              "arXiv 2411.05500 (docs/methods.md, FGGP); GMP: Zhu & Gupta, arXiv 1710.01878."),
    equations=(r"\begin{gathered} C = \operatorname{smallest}_{\lfloor \rho \cdot "
               r"\mathrm{remain} \rfloor}\ |g| \\ \text{among the active weights}"
               r"\end{gathered}",       # two lines: one was cut off at 1400 px, sidebar open
               r"\text{pruned} = \operatorname{smallest}_{\mathrm{to\_prune}}\ |w| "
               r"\ \text{ within } C"),
    equation_note=("with $\\mathrm{to\\_prune} = \\lfloor N(1 - d(t)) \\rfloor - "
                   "\\mathrm{already}$, and an error if it exceeds $|C|$."),
    controls=(
        Control("rho", "ρ (candidate fraction)", 0.5, 0.05, 1.0, 0.05),
        Control("prune", "This step prunes (fraction of the active weights)", 0.2, 0.02, 0.6,
                0.02),
        Control("coupling", "Coupling of g to w", 0.0, -0.9, 0.9, 0.1,
                help="Correlation of the Gaussians |w| and |g| are drawn from: positive = big "
                     "weights get big gradients."),
        Control("seed", "Seed", 0, 0, 999, kind="number"),
    ),
    draw=draw,
    widths=(1, 2.7, 1.5),
)
