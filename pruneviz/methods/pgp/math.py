"""PGP's own computations: the number of pruning epochs, whole filters from a float target, the
filter-change criterion pass, the hybrid hard/soft split, the soft reset and the rank
correlation it reports; shared by the engine and the Learn toy (docs/methods.md, "PGP, RPGP,
PSFP")."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...masks import Layer, is_shortcut
from ...schedules import round_kept


def pruning_epochs(epochs: int, fraction: float, count: int = 0) -> int:
    """E: `count` if given, else round(fraction x epochs) (halves up); within [1, epochs]."""
    e = count if count else math.floor(fraction * epochs + 0.5)
    return max(1, min(epochs, e))


def whole(n: float) -> int:
    """Whole filters kept for a float target: ceil, ignoring float noise; at least one."""
    return max(1, math.ceil(n - 1e-9))


def preview_removal(n0: int, kept: list[int], hard_fraction: float, block: int, mode: str
                    ) -> list[tuple[float, str, float]]:
    """Schedule-preview rows: the share of an n0-filter conv removed after each pruning epoch
    when the schedule keeps `kept` (rounded to `block`, round_to), PGP removing the weakest
    hard_fraction of the weak set, all of it at the last epoch."""
    series = f"removed ({n0}-filter conv)"
    rows, current = [(0.0, series, 0.0)], n0
    for e, k in enumerate(kept):
        weak = max(0, current - round_kept(k, n0, block, mode))
        current -= weak if e == len(kept) - 1 else math.floor(weak * hard_fraction)
        rows.append((e + 1.0, series, 1.0 - current / n0))
    return rows


def hybrid_split(score: torch.Tensor, n_weak: int, hard_fraction: float,
                 last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """PGP's weak set and hybrid split (steps 3-4): the `n_weak` lowest-score filters, the
    weakest floor(n_weak * hard_fraction) of them hard (all of them at the last pruning epoch),
    the rest soft. Returns (hard, soft) filter indices, weakest first (ties: lower index)."""
    weak = torch.argsort(score, stable=True)[:max(0, n_weak)]
    n_hard = len(weak) if last else math.floor(len(weak) * hard_fraction)
    return weak[:n_hard], weak[n_hard:]


def lead_conv(group: list[str]) -> str:
    """The conv that leads a residual group (the authors' choice of who picks its channels):
    the projection shortcut where there is one, else the first in module order (the stem)."""
    return next((name for name in group if is_shortcut(name)), group[0])


def group_scores(scores: dict[str, torch.Tensor], group: list[str], how: str) -> torch.Tensor:
    """One score per shared channel of a group: the lead conv's (`lead`) or the members' sum
    (`sum`)."""
    if how == "lead":
        return scores[lead_conv(group)].detach().float()
    return sum(scores[m].detach().float() for m in group)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman rank correlation with average ranks for ties; None when undefined."""
    if a.numel() < 2:
        return None
    ra, rb = _ranks(a.detach().double().flatten()), _ranks(b.detach().double().flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return None if denom == 0 else (ra @ rb).item() / denom


def _ranks(x: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(x)
    ranks[torch.argsort(x, stable=True)] = torch.arange(len(x), dtype=x.dtype, device=x.device)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=x.dtype, device=x.device).index_add_(0, inverse, ranks)
    return (sums / counts)[inverse]


@torch.no_grad()
def soft_reset(layer: Layer, idx: torch.Tensor) -> list[nn.Parameter]:
    """PGP's soft reset (step 4) of filters `idx` of one conv: weight, bias, BN gamma, beta,
    running mean and variance set to 0, parameters left trainable; returns those parameters."""
    conv, bn = layer.module, layer.bn
    params = [conv.weight, conv.bias]
    if bn is not None:
        params += [bn.weight, bn.bias]
    params = [p for p in params if p is not None]
    for p in params:
        p[idx] = 0
    if bn is not None and bn.running_mean is not None:
        bn.running_mean[idx] = 0
        bn.running_var[idx] = 0
    return params


def criterion_pass(model: nn.Module, weights: dict[str, torch.Tensor],
                   batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """PGP's filter change || sum_b grad_b W ||_1 per filter of each weight in `weights`."""
    sums = gradient_sums(model, weights, batches, label_smoothing)
    return {n: s.flatten(1).abs().sum(1) for n, s in sums.items()}


def gradient_sums(model: nn.Module, weights: dict[str, torch.Tensor],
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """sum_b grad_b W of each tensor in `weights` over `batches`: the filter change before any
    per-filter reduction (criterion_pass's; a transformer's structures reduce it over their own
    slices, methods/structures.py).

    Gradients start from zero (nothing carried over from training) and BatchNorms in training
    mode normalize with batch statistics without updating their running statistics. A language
    model's logits [B, T, V] are scored at every position, as the session trains it.
    """
    for p in model.parameters():
        p.grad = None
    frozen = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
              and m.track_running_stats]
    names = list(weights)
    params = [weights[n] for n in names]
    sums = [torch.zeros_like(p) for p in params]
    for m in frozen:
        m.track_running_stats = False   # batch statistics, running buffers left alone
    try:
        with torch.enable_grad():
            for x, y in batches:
                logits = model(x)
                if logits.dim() == 3:
                    logits, y = logits.flatten(0, 1), y.flatten()
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for s, g in zip(sums, grads):
                    if g is not None:
                        s.add_(g)
    finally:
        for m in frozen:
            m.track_running_stats = True
    return dict(zip(names, sums))
