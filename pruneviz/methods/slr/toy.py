"""SLR and ADMM on the Learn page: the residual ||W - Z|| on a least-squares layer, through the
engine's own projection, step size and multiplier update (math.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch

from ...learn import Control, Drawn, Toy
from ...plots import house_layout, method_color
from .math import lagrangian, multiplier_step, project


@dataclass
class LeastSquares:
    """A toy "layer": f(W) = ||X W^T - Y||^2 / (2 n), Y from a sparse W_true plus noise, X with
    correlated features (so magnitude pruning of the dense optimum is not the sparse optimum)."""

    X: torch.Tensor
    Y: torch.Tensor
    W_true: torch.Tensor
    W0: torch.Tensor              # the dense least-squares solution (the "trained model")

    def loss(self, W: torch.Tensor) -> float:
        return ((self.X @ W.T - self.Y).square().sum() / (2 * len(self.X))).item()

    def grad(self, W: torch.Tensor) -> torch.Tensor:
        return (self.X @ W.T - self.Y).T @ self.X / len(self.X)


def least_squares(rate: float, d_out: int = 8, d_in: int = 24, n: int = 400,
                  correlation: float = 0.6, noise: float = 0.3, seed: int = 0) -> LeastSquares:
    g = torch.Generator().manual_seed(seed)
    W_true = torch.randn(d_out, d_in, generator=g)
    W_true = project(W_true, rate)[0]
    base = torch.randn(n, 1, generator=g)
    X = correlation * base + math.sqrt(1 - correlation ** 2) * torch.randn(n, d_in, generator=g)
    Y = X @ W_true.T + noise * torch.randn(n, d_out, generator=g)
    W0 = torch.linalg.lstsq(X, Y).solution.T.contiguous()
    return LeastSquares(X, Y, W_true, W0)


def relax(problem: LeastSquares, rate: float, surrogate: bool = True, iterations: int = 15,
          steps: int = 20, lr: float = 0.05, rho: float = 1.0, s0: float = 0.1,
          M: float = 300.0, r: float = 0.1) -> pd.DataFrame:
    """SLR (surrogate=True) or ADMM on the toy problem, following docs/methods.md, SLR, as the
    engine does, with its math.py (projection Pi, alpha_k, the Lagrangian, the multiplier step):
    each iteration runs `steps` gradient steps on f(W) + (rho/2)||W - Z + U||^2 (the
    W-subproblem; the session's epoch), then SLR's condition 1 / Z = Pi(W + U) / condition 2
    multiplier updates, or ADMM's Z = Pi(W + U), U += W - Z. Returns one row per iteration
    (0 = the start): residual ||W - Z||, prune_gap ||W - Pi(W)||, loss f(W), loss_hard
    f(Pi(W)) ("loss if hard-pruned now"), lambda_norm rho ||U||, and for SLR k, s, alpha,
    cond1, cond2."""
    W = problem.W0.clone()
    Z = project(W, rate)[0]
    U = torch.zeros_like(W)
    s, k = s0, 1
    W_prev, Z_prev, f_prev = W.clone(), Z.clone(), None

    def row(i: int, **extra: Any) -> dict[str, Any]:
        hard = project(W, rate)[0]
        return {"iteration": i, "residual": (W - Z).norm().item(),
                "prune_gap": (W - hard).norm().item(), "loss": problem.loss(W),
                "loss_hard": problem.loss(hard), "lambda_norm": rho * U.norm().item(),
                "k": k if surrogate else None, "s": s if surrogate else None, **extra}

    def update(Z_res: torch.Tensor, f: float) -> float:
        nonlocal s, k, W_prev, Z_prev, f_prev
        s, alpha = multiplier_step([U], [W], [Z_res], [W_prev], [Z_prev], s, k, rho, M, r)
        k += 1
        W_prev, f_prev, Z_prev = W.clone(), f, Z.clone()
        return alpha

    rows = [row(0)]
    for i in range(1, iterations + 1):
        losses = []
        for _ in range(steps):
            losses.append(problem.loss(W))
            W = W - lr * (problem.grad(W) + rho * (W - Z + U))
        f = sum(losses) / len(losses)
        if not surrogate:
            Z = project(W + U, rate)[0]
            U = U + W - Z
            rows.append(row(i))
            continue
        L1 = lagrangian(f, [W], [Z_prev], [U], rho)
        L1_prev = None if f_prev is None else lagrangian(f_prev, [W_prev], [Z_prev], [U], rho)
        ok1 = L1_prev is not None and L1 < L1_prev
        alpha = None
        if ok1 or k == 1:
            alpha = update(Z_prev, f)
        Z = project(W + U, rate)[0]
        # condition 2 against the last accepted iterate, as the engine's default cond2
        ok2 = f_prev is not None and (lagrangian(f, [W], [Z], [U], rho)
                                      < lagrangian(f_prev, [W_prev], [Z_prev], [U], rho))
        if ok2 or k == 1:
            alpha = update(Z, f)
        rows.append(row(i, alpha=alpha, cond1=None if L1_prev is None else ok1, cond2=ok2))
    return pd.DataFrame(rows)


def slr_vs_admm(rate: float = 0.75, iterations: int = 15, rho: float = 1.0, s0: float = 0.1,
                steps: int = 20, seed: int = 0) -> pd.DataFrame:
    """Both relaxations on the same toy problem, stacked with a `method` column, plus the
    dense optimum's loss and the loss of hard-pruning it at once (attrs)."""
    problem = least_squares(rate, seed=seed)
    out = pd.concat([relax(problem, rate, True, iterations, steps, rho=rho, s0=s0)
                     .assign(method="slr"),
                     relax(problem, rate, False, iterations, steps, rho=rho)
                     .assign(method="admm")], ignore_index=True)
    out.attrs.update(dense_loss=problem.loss(problem.W0),
                     one_shot_loss=problem.loss(project(problem.W0, rate)[0]))
    return out


def slr_residual_figure(df: pd.DataFrame) -> go.Figure:
    """||W - Z|| per iteration for SLR and ADMM (log scale)."""
    fig = go.Figure()
    for method, d in df.groupby("method", sort=False):
        fig.add_scatter(x=d.iteration, y=d.residual, name=method.upper(), mode="lines+markers",
                        line=dict(color=method_color(method), width=2.5))
    fig.update_xaxes(title_text="iteration (W-subproblem epoch + update)")
    fig.update_yaxes(type="log", dtick=1, title_text="||W − Z|| (log scale)")
    return house_layout(fig, "Primal residual ||W − Z||", height=360)


def slr_loss_figure(df: pd.DataFrame) -> go.Figure:
    """Loss of W and of Pi(W) ("if hard-pruned now") per iteration, with the dense optimum and
    one-shot pruning of it as reference lines."""
    fig = go.Figure()
    for method, d in df.groupby("method", sort=False):
        color = method_color(method)
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
    return house_layout(fig, "Loss now vs loss if hard-pruned now", height=360)


def draw(v: dict[str, Any]) -> Drawn:
    runs = slr_vs_admm(v["rate"], v["iterations"], v["rho"], v["s0"])
    steps = runs[runs.method == "slr"][["iteration", "k", "s", "alpha", "cond1", "cond2"]]
    return Drawn(
        figures=[("residual", slr_residual_figure(runs)), ("loss", slr_loss_figure(runs))],
        notes=[("caption", "Try s₀: too small and Λ hardly moves, so only the penalty closes the "
                           "gap; too large and Λ overshoots and the residual grows. ρ sets how "
                           "hard the penalty pulls, for both methods."),
               ("caption", "The toy layer is least squares, f(W) = ||XWᵀ − Y||² / 2n, with "
                           "correlated inputs and a sparse true W; each iteration is 20 gradient "
                           "steps on the penalised loss, then the update. The projection Π, α_k "
                           "and the multiplier step are pruneviz.methods.slr's own (math.py); the "
                           "update order follows docs/methods.md (SLR) as the session's SLR "
                           "does.")],
        table=("SLR's step sizes and surrogate conditions, iteration by iteration",
               steps.iloc[1:]))


TOY = Toy(
    title="SLR: Lagrangian relaxation",
    order=4,
    text=("SLR treats pruning as a constrained problem: minimise the loss subject to at most "
          "$l$ nonzero weights per layer. It keeps a sparse copy $Z$ of the weights $W$, and "
          "a penalty pulls $W$ towards $Z$ while training; multipliers $\\Lambda$ "
          "($U = \\Lambda / \\rho$) accumulate how far apart they have been. Once per epoch "
          "$Z$ is re-projected onto the sparse set ($\\Pi$ keeps the largest magnitudes) and "
          "$\\Lambda$ moves, but only when a *surrogate condition* says the Lagrangian went "
          "down, by a step $s_k$ rescaled by $\\alpha_k$ and the ratio of the last two "
          "residuals. Once $W$ has reached $Z$, hard-pruning costs nothing: the paper's point "
          "is accuracy **without retraining**. ADMM uses the same penalty with an "
          "unconditional step: $\\Lambda \\mathrel{+}= \\rho (W - Z)$, i.e. $s_k = \\rho$."),
    citation=("Gurevin, Bragin, Ding, Zhou, Pepin, Li, Miao, Enabling Retrain-free Deep "
              "Neural Network Pruning Using Surrogate Lagrangian Relaxation, IJCAI 2021, "
              "pp. 2497-2504, arXiv 2012.10079 (docs/methods.md, SLR)."),
    # One short equation per line: a column a third of the page wide cuts off longer ones.
    equations=(r"\min_W f(W) + \tfrac{\rho}{2}\lVert W - Z + U \rVert^2",
               r"Z = \Pi(W + U)",
               r"s_k = \alpha_k\, s_{k-1} \frac{\lVert W_{prev} - Z_{prev} \rVert}"
               r"{\lVert W - Z \rVert}",
               r"\Lambda \mathrel{+}= s_k (W - Z)",
               r"\alpha_k = 1 - \frac{1}{M\, k^{\,1 - 1/k^{r}}}\quad(M = 300,\ r = 0.1)",
               r"\text{ADMM: } Z = \Pi(W + U),\ U \mathrel{+}= W - Z"),
    equation_note="",
    controls=(
        Control("rate", "Prune rate", 0.75, 0.3, 0.99, 0.01),
        Control("rho", "ρ (penalty)", 1.0, kind="select", options=(0.1, 0.3, 1.0, 3.0, 10.0)),
        Control("s0", "s₀ (first multiplier step)", 0.1, kind="select",
                options=(0.01, 0.03, 0.1, 0.3, 1.0)),
        Control("iterations", "Iterations (epochs)", 15, 3, 40),
    ),
    draw=draw,
)
