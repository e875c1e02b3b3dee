"""Toy computations behind the Learn pages: small tensors through the engine's own functions.

No streamlit here (the pages in pages/learn_*.py draw what these return with
pruneviz/plots_learn.py). Every toy calls the function the engine calls: the masks helpers,
the schedules, and the pure functions of the method modules (PGMPF's `epoch_values` and
`gradient_factor`, FGGP's `gradient_first`, PGP's `criterion_pass`, `hybrid_split` and
`soft_reset`, SLR's `step_alpha` and `project`), and `metrics.measure_latency` for timings.
Nothing here re-derives a method's selection rule; what is toy-specific (random tensors, a
least-squares "layer" for SLR) says so in its docstring.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from .config import SessionConfig
from .masks import (
    Layer,
    apply_masks,
    filter_mask,
    filter_norms,
    filter_param_masks,
    global_magnitude,
    layerwise_magnitude,
    n_prune,
)
from .methods.fggp import gradient_first, smallest
from .methods.pgmpf import PGMPF, gradient_factor, n_pruned_filters
from .methods.pgmpf import Params as PGMPFParams
from .methods.pgp import criterion_pass, hybrid_split, soft_reset, spearman, whole
from .methods.slr import project, step_alpha
from .metrics import count_flops, effective_flops, measure_latency
from .report import cpu_vector_block
from .schedules import cubic_density, exponential_count
from .surgery import compact


# -- unstructured vs structured on one layer ----------------------------------------------------
def toy_conv_net(out_channels: int = 8, in_channels: int = 4, spread: float = 0.8,
                 seed: int = 0) -> nn.Sequential:
    """conv1 (the layer we prune) -> BN -> ReLU -> conv2 -> BN -> ReLU -> pool -> linear, in
    eval mode. conv1's filters get scales exp(spread * N(0, 1)), so some filters are weak."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        bn1=nn.BatchNorm2d(out_channels), relu1=nn.ReLU(),
        conv2=nn.Conv2d(out_channels, 8, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(8), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 10)))
    with torch.no_grad():
        for m in (net.conv1, net.conv2, net.fc):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
        scale = torch.exp(spread * torch.randn(out_channels, generator=g))
        net.conv1.weight.mul_(scale.view(-1, 1, 1, 1))
    return net.eval()


def conv1_layer(net: nn.Sequential) -> Layer:
    return Layer("conv1", net.conv1, "bn1", net.bn1)


@dataclass
class OneLayer:
    """One conv pruned two ways at the same rate."""

    weight: torch.Tensor        # conv1's weight (out, in, k, k)
    norms: torch.Tensor         # L2 norm of each filter
    unstructured: torch.Tensor  # 0/1, weight-shaped: masks.layerwise_magnitude
    structured: torch.Tensor    # 0/1, weight-shaped: filter_mask + filter_param_masks
    hardware: pd.DataFrame      # what each leaves for the hardware, one row per scheme


def one_layer(rate: float, out_channels: int = 8, in_channels: int = 4, spread: float = 0.8,
              seed: int = 0, size: int = 8) -> OneLayer:
    """Prune conv1 of `toy_conv_net` unstructured (smallest |w| of the layer) and structured
    (lowest-L2 filters, with their BN gamma and beta), then ask surgery.compact what can be
    physically removed and metrics for the FLOPs."""
    shape = (in_channels, size, size)
    net = toy_conv_net(out_channels, in_channels, spread, seed)
    layer = conv1_layer(net)
    w = net.conv1.weight.detach().clone()
    unstructured = layerwise_magnitude({layer.param: w}, rate)
    norms = filter_norms(w)
    structured = filter_param_masks(layer, filter_mask(norms, n_prune(out_channels, rate)))
    flops_dense = count_flops(net, shape)
    rows = []
    for scheme, masks in (("unstructured", unstructured), ("structured", structured)):
        pruned = toy_conv_net(out_channels, in_channels, spread, seed)
        apply_masks(pruned, masks)
        small, rep = compact(pruned, shape)
        rows.append({
            "scheme": scheme,
            "zero weights in conv1": int((masks[layer.param] == 0).sum()),
            "conv1 weight after compaction": "x".join(map(str, small.conv1.weight.shape)),
            "conv2 input channels": small.conv2.in_channels,
            "FLOPs, dense kernels": count_flops(pruned, shape),
            "FLOPs after compaction": count_flops(small, shape),
            "FLOPs touching a nonzero weight": effective_flops(pruned, shape),
            "filters removed": rep["filters_removed"],
        })
    hardware = pd.DataFrame(rows).set_index("scheme")
    hardware.attrs["flops_dense"] = flops_dense
    return OneLayer(w, norms, unstructured[layer.param], structured[layer.param], hardware)


# -- layer-wise vs global thresholds ------------------------------------------------------------
TOY_LAYERS = {"conv1": (8, 1, 3, 3), "conv2": (16, 8, 3, 3), "conv3": (32, 16, 3, 3),
              "fc": (10, 128)}


def toy_layers(scales: dict[str, float] | None = None, seed: int = 0,
               he_init: bool = True) -> dict[str, torch.Tensor]:
    """Random weights for TOY_LAYERS: std sqrt(2 / fan_in) (He init: wide layers get small
    weights, as in a trained network) or 1 (`he_init` False), times `scales[name]`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in TOY_LAYERS.items():
        std = math.sqrt(2.0 / math.prod(shape[1:])) if he_init else 1.0
        out[name] = torch.randn(shape, generator=g) * std * (scales or {}).get(name, 1.0)
    return out


def threshold(w: torch.Tensor, mask: torch.Tensor) -> float:
    """The cut: largest |w| the mask prunes (0 when it prunes nothing)."""
    pruned = w.abs()[mask == 0]
    return pruned.max().item() if pruned.numel() else 0.0


def layerwise_vs_global(weights: dict[str, torch.Tensor], rate: float) -> pd.DataFrame:
    """Per layer and scheme: weights, pruned count, sparsity and the |w| cut, from
    masks.layerwise_magnitude and masks.global_magnitude (scores |w|)."""
    schemes = {"layer-wise": layerwise_magnitude(weights, rate),
               "global": global_magnitude({k: w.abs() for k, w in weights.items()}, rate)}
    rows = []
    for scheme, masks in schemes.items():
        for name, w in weights.items():
            m = masks[name]
            rows.append({"layer": name, "scheme": scheme, "weights": w.numel(),
                         "pruned": int((m == 0).sum()), "sparsity": float((m == 0).float().mean()),
                         "cut": threshold(w, m), "std": w.std().item()})
    return pd.DataFrame(rows)


# -- schedules --------------------------------------------------------------------------------
SCHEDULES = ("one-shot", "cubic (GMP, FGGP)", "asymptotic (ASFP, PGMPF)", "exponential (PGP)")


def schedule_curves(rate: float, epochs: int, d: float = 1 / 8, end: float = 0.8,
                    points: int = 200) -> pd.DataFrame:
    """Target sparsity against training progress (epochs) for each schedule, from the engine's
    functions: one-shot (all at epoch 0); cubic, schedules.cubic_density with T_end = end * E
    (continuous in steps); asymptotic, the keep rate PGMPF computes at the end of epoch e and
    uses from e + 1 (pgmpf's epoch_values over schedules.asymptotic_keep_rate, with D); and PGP's
    exponential filter count over its round(end * E) pruning epochs (schedules.exponential_count),
    as a fraction of the filters. Columns: epoch, schedule, sparsity."""
    rows = [(0.0, SCHEDULES[0], 0.0), (0.0, SCHEDULES[0], rate),
            (float(epochs), SCHEDULES[0], rate)]
    t_end = end * epochs
    for i in range(points + 1):
        x = epochs * i / points
        rows.append((x, SCHEDULES[1], 1.0 - cubic_density(x, t_end, 1.0, 1.0 - rate)))
    config = SessionConfig(epochs=epochs, rate=rate, start="dense")
    params = PGMPFParams(d=d)
    rows.append((0.0, SCHEDULES[2], 0.0))
    for e in range(epochs):
        rows.append((e + 1.0, SCHEDULES[2], 1.0 - PGMPF.values(config, params, e).keep))
    n_prune_epochs = max(1, min(epochs, math.floor(end * epochs + 0.5)))
    rows.append((0.0, SCHEDULES[3], 0.0))
    for e in range(n_prune_epochs):
        rows.append((e + 1.0, SCHEDULES[3], 1.0 - exponential_count(1, e, n_prune_epochs, rate)))
    rows.append((float(epochs), SCHEDULES[3], rate))
    return pd.DataFrame(rows, columns=["epoch", "schedule", "sparsity"])


def schedule_milestones(curves: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Per schedule, the first epoch at which half, 90% and all of the final sparsity is
    reached (within 1e-6)."""
    rows = []
    for name, c in curves.groupby("schedule", sort=False):
        out = {"schedule": name}
        for label, share in (("half", 0.5), ("90%", 0.9), ("all", 1.0)):
            hit = c[c.sparsity >= share * rate - 1e-6]
            out[f"{label} of the pruning by epoch"] = float(hit.epoch.min()) if len(hit) else None
        rows.append(out)
    return pd.DataFrame(rows)


# -- PGMPF: the prior gradient mask ------------------------------------------------------------
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


# -- FGGP: gradient first, magnitude next ------------------------------------------------------
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


# -- PGP: weak set, hard half, soft half --------------------------------------------------------
ACTIVE, SOFT, HARD_NOW, REMOVED = "active", "soft-reset", "removed now", "removed before"


def toy_pgp_net(n_filters: int = 32, seed: int = 0) -> nn.Sequential:
    """conv1 (1 -> n_filters, the layer PGP prunes) -> BN -> ReLU -> pool -> linear, training
    mode; filter scales vary so the scores spread."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, n_filters, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(n_filters),
        relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(n_filters, 10)))
    with torch.no_grad():
        net.conv1.weight.copy_(torch.randn(net.conv1.weight.shape, generator=g) / 3
                               * torch.exp(0.6 * torch.randn(n_filters, 1, 1, 1, generator=g)))
        net.fc.weight.copy_(torch.randn(net.fc.weight.shape, generator=g) / math.sqrt(n_filters))
    return net.train()


def toy_batches(epoch: int, seed: int = 0, n: int = 4,
                batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` minibatches of random 8x8 images with random labels for epoch `epoch`."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return [(torch.randn(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n)]


@dataclass
class PGPToy:
    """PGP on one toy conv over its pruning epochs (weights frozen: no training between)."""

    scores: pd.DataFrame     # epoch, filter, score, status (every filter still present at e)
    counts: pd.DataFrame     # epoch, active, soft, removed, target (after epoch e's pruning)
    cuts: pd.DataFrame       # epoch, n_weak, n_hard, weak_cut, hard_cut, spearman


def pgp_toy(rate: float, epochs: int, hard_fraction: float = 0.5, n_filters: int = 32,
            seed: int = 0) -> PGPToy:
    """Run PGP's per-epoch steps 1-4 on one toy conv: criterion_pass (filter change on the
    epoch's batches), the target count whole(exponential_count(...)), hybrid_split, soft_reset
    of the soft ones; hard ones are reset too and leave the ranking (a removed filter is a dead
    channel: it changes no other filter's gradient). Nothing trains between epochs."""
    net = toy_pgp_net(n_filters, seed)
    layer = Layer("conv1", net.conv1, "bn1", net.bn1)
    present = torch.arange(n_filters)             # original indices still in the layer
    soft_now = torch.empty(0, dtype=torch.long)
    score_rows, count_rows, cut_rows = [], [], []
    removed = 0
    for e in range(epochs):
        last = e == epochs - 1
        score = criterion_pass(net, {"conv1": net.conv1.weight}, toy_batches(e, seed))["conv1"]
        l2 = filter_norms(net.conv1.weight)
        target = exponential_count(n_filters, e, epochs, rate)
        n_keep = whole(target)
        s = score[present]
        hard, soft = hybrid_split(s, len(present) - n_keep, hard_fraction, last)
        hard_o, soft_o = present[hard], present[soft]
        status = {int(i): ACTIVE for i in present}
        status.update({int(i): SOFT for i in soft_o})
        status.update({int(i): HARD_NOW for i in hard_o})
        for i in present.tolist():
            score_rows.append({"epoch": e, "filter": i, "score": score[i].item(),
                               "status": status[i], "was_soft": bool((soft_now == i).any())})
        weak = torch.cat([hard, soft])
        cut_rows.append({"epoch": e, "n_weak": len(weak), "n_hard": len(hard),
                         "weak_cut": s[weak].max().item() if len(weak) else None,
                         "hard_cut": s[hard].max().item() if len(hard) else None,
                         "spearman": spearman(s, l2[present])})
        soft_reset(layer, torch.cat([hard_o, soft_o]))
        removed += len(hard_o)
        keep = torch.ones(len(present), dtype=torch.bool)
        keep[hard] = False
        present, soft_now = present[keep], soft_o
        count_rows.append({"epoch": e, "active": len(present) - len(soft_o), "soft": len(soft_o),
                           "removed": removed, "target": target})
    return PGPToy(pd.DataFrame(score_rows), pd.DataFrame(count_rows), pd.DataFrame(cut_rows))


# -- SLR vs ADMM: the residual ||W - Z|| on a least-squares layer -----------------------------
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


def lagrangian(f: float, W: torch.Tensor, Z: torch.Tensor, U: torch.Tensor, rho: float) -> float:
    """L(W, Z) = f + (rho/2)||W - Z + U||^2 + (rho/2)||U||^2 (METHODS.md sec. 4)."""
    return f + rho / 2 * ((W - Z + U).square().sum() + U.square().sum()).item()


def relax(problem: LeastSquares, rate: float, surrogate: bool = True, iterations: int = 15,
          steps: int = 20, lr: float = 0.05, rho: float = 1.0, s0: float = 0.1,
          M: float = 300.0, r: float = 0.1) -> pd.DataFrame:
    """SLR (surrogate=True) or ADMM on the toy problem, following METHODS.md sec. 4 as
    methods/slr.py does (projection Pi = slr.project, step factor alpha_k = slr.step_alpha):
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

    def multiplier_step(Z_res: torch.Tensor, f: float) -> float:
        nonlocal s, k, U, W_prev, Z_prev, f_prev
        alpha = step_alpha(k, M, r)
        n_prev, n_now = (W_prev - Z_prev).norm().item(), (W - Z_res).norm().item()
        k += 1
        if n_prev > 0 and n_now > 0:
            s = alpha * s * n_prev / n_now
        U = U + s / rho * (W - Z_res)
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
        L1 = lagrangian(f, W, Z_prev, U, rho)
        L1_prev = None if f_prev is None else lagrangian(f_prev, W_prev, Z_prev, U, rho)
        ok1 = L1_prev is not None and L1 < L1_prev
        alpha = None
        if ok1 or k == 1:
            alpha = multiplier_step(Z_prev, f)
        Z = project(W + U, rate)[0]
        ok2 = lagrangian(f, W, Z, U, rho) < lagrangian(f, W, Z_prev, U, rho)
        if ok2 or k == 1:
            alpha = multiplier_step(Z, f)
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


# -- why sparsity is not speed ----------------------------------------------------------------
def sparse_conv(channels: int, rate: float, seed: int = 0) -> dict[str, nn.Module]:
    """A 3x3 conv (channels -> channels) three ways: dense; unstructured (masks.layerwise_magnitude
    zeros, same shape); structured (the lowest-L2 filters gone: a conv with fewer outputs)."""
    torch.manual_seed(seed)
    dense = nn.Conv2d(channels, channels, 3, padding=1)
    zeros = nn.Conv2d(channels, channels, 3, padding=1)
    zeros.load_state_dict(dense.state_dict())
    apply_masks(zeros, layerwise_magnitude({"weight": dense.weight.detach()}, rate))
    kept = filter_mask(filter_norms(dense.weight), n_prune(channels, rate)).bool()
    small = nn.Conv2d(channels, int(kept.sum()), 3, padding=1)
    with torch.no_grad():
        small.weight.copy_(dense.weight[kept])
        small.bias.copy_(dense.bias[kept])
    return {"dense": dense, f"{rate:.0%} zeros (unstructured)": zeros,
            f"{rate:.0%} filters removed (structured)": small}


def sparsity_flops(channels: int = 64, size: int = 16, rate: float = 0.5) -> pd.DataFrame:
    """FLOPs (torch.utils.flop_counter) and nonzero-touching FLOPs of sparse_conv's three convs:
    the count a dense kernel executes vs what a perfect sparse kernel could skip."""
    shape = (channels, size, size)
    rows = []
    for name, m in sparse_conv(channels, rate).items():
        rows.append({"conv": name, "weights": m.weight.numel(),
                     "nonzero weights": int(torch.count_nonzero(m.weight)),
                     "FLOPs a dense kernel runs": count_flops(m, shape),
                     "FLOPs on nonzero weights": effective_flops(m, shape)})
    return pd.DataFrame(rows)


SWEEP = (8, 12, 16, 17, 24, 32, 33, 40, 48, 49, 56, 64)


NOISY = 0.25     # interquartile range above this fraction of the median: the machine was busy


def _timed(models: dict[str, nn.Module], shape: tuple[int, ...], batch: int, budget_s: float,
           deadline: float) -> dict[str, dict[str, Any]]:
    return measure_latency(models, shape, batch, budget_s=budget_s, warmup=2, min_reps=5,
                           max_reps=400, deadline=deadline)


def _rows(res: dict[str, dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    """Per model: median ms, the median of its paired per-repetition ratios to `ref` (timed back
    to back, so a load spike hits both alike), repetitions and spread (IQR / median)."""
    base = res[ref]["times"]
    return [{"name": k, "ms": v["median_s"] * 1e3,
             "relative": statistics.median(t / b for t, b in zip(v["times"], base)),
             "reps": v["reps"], "spread": v["iqr_s"] / v["median_s"]} for k, v in res.items()]


def measure_speed(channels: int = 64, size: int = 16, rate: float = 0.5, batch: int = 8,
                  budget_s: float = 2.0) -> dict[str, Any]:
    """Three timings on this machine with metrics.measure_latency (models interleaved, medians),
    within about `budget_s` seconds in all (a hard cap: a busy machine gets fewer repetitions):
    - zeros: sparse_conv's dense / unstructured / structured convs at `batch`, relative to dense;
    - channels: convs channels -> c for c in SWEEP, relative to the widest (oneDNN pads output
      channels to its vector block: 16 floats on AVX-512, 8 on AVX2);
    - launch: a tiny 3-layer CNN and the same with half the filters at batch 1 and 64 (per-image
      time: fixed per-layer costs dominate small batches).
    `relative` is the median of paired ratios; `noisy` says some spread exceeded NOISY.
    Returns DataFrames and the machine facts needed to read them."""
    t0 = time.perf_counter()
    share = budget_s / 3
    shape = (channels, size, size)
    zeros = _timed(sparse_conv(channels, rate), shape, batch, share * 0.8, t0 + share)
    zeros_df = pd.DataFrame(_rows(zeros, "dense")).rename(columns={"name": "conv"})
    torch.manual_seed(0)
    sweep = {str(c): nn.Conv2d(channels, c, 3, padding=1) for c in SWEEP}
    t1 = time.perf_counter()
    ch = _timed(sweep, shape, batch, share * 0.8, t1 + share)
    ch_df = pd.DataFrame(_rows(ch, str(SWEEP[-1]))).rename(columns={"name": "filters"})
    ch_df["filters"] = ch_df.filters.astype(int)
    rows = []
    t2 = time.perf_counter()
    nets = {"tiny CNN": _tiny_cnn(16), "half the filters": _tiny_cnn(8)}
    for b in (1, 64):
        left = t2 + share - time.perf_counter()
        res = _timed(nets, (1, 8, 8), b, max(left, 0.05) * 0.45, time.perf_counter() + left / 2)
        for row in _rows(res, "tiny CNN"):
            model = row.pop("name")
            rows.append({"model": model, "batch": b, "us per image": row["ms"] * 1e3 / b, **row,
                         "FLOPs per image": count_flops(nets[model], (1, 8, 8))})
    launch = pd.DataFrame(rows)
    capability, block = cpu_vector_block()
    frames = {"zeros": zeros_df, "channels": ch_df, "launch": launch}
    return {**frames, "capability": capability, "block": block,
            "threads": torch.get_num_threads(), "seconds": time.perf_counter() - t0,
            "noisy": any((f.spread > NOISY).any() for f in frames.values()),
            "min_reps": min(int(f.reps.min()) for f in frames.values())}


def _tiny_cnn(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, 10))


__all__ = ["OUTCOMES", "SCHEDULES", "GradientMask", "OneLayer", "PGPToy", "TwoCuts",
           "fggp_two_cuts", "layerwise_vs_global", "measure_speed", "one_layer",
           "pgmpf_factor_means", "pgmpf_gradient_mask", "pgmpf_schedule", "pgp_toy",
           "relax", "schedule_curves", "schedule_milestones", "slr_vs_admm", "sparsity_flops",
           "toy_layers"]
