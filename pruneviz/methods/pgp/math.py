"""PGP's pure pieces: the number of pruning epochs, whole filters from a float target, the
hybrid hard/soft split and the rank correlation it reports; shared by the engine and the Learn
toy (docs/methods.md, "PGP, RPGP, PSFP")."""

from __future__ import annotations

import math

import torch


def pruning_epochs(epochs: int, fraction: float, count: int = 0) -> int:
    """E: `count` if given, else round(fraction x epochs) (halves up); within [1, epochs]."""
    e = count if count else math.floor(fraction * epochs + 0.5)
    return max(1, min(epochs, e))


def whole(n: float) -> int:
    """Whole filters kept for a float target: ceil, ignoring float noise; at least one."""
    return max(1, math.ceil(n - 1e-9))


def hybrid_split(score: torch.Tensor, n_weak: int, hard_fraction: float,
                 last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """PGP's weak set and hybrid split (steps 3-4): the `n_weak` lowest-score filters, the
    weakest floor(n_weak * hard_fraction) of them hard (all of them at the last pruning epoch),
    the rest soft. Returns (hard, soft) filter indices, weakest first (ties: lower index)."""
    weak = torch.argsort(score, stable=True)[:max(0, n_weak)]
    n_hard = len(weak) if last else math.floor(len(weak) * hard_fraction)
    return weak[:n_hard], weak[n_hard:]


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
