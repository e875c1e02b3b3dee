"""Pruning and learning-rate schedules as pure functions of the step or epoch (docs/methods.md)."""

from __future__ import annotations

import math

# The series of a schedule preview (Method.preview) that marks the recovery phase, drawn as a band.
RECOVERY = "recovery (final mask held)"


def cubic_density(t: int, t_end: int, d_init: float, d_final: float) -> float:
    """Zhu & Gupta's gradual schedule: d(t) = d_f + (d_i - d_f)(1 - t / T_end)^3, flat after."""
    if t_end <= 0:
        return d_final
    frac = min(max(t / t_end, 0.0), 1.0)
    return d_final + (d_init - d_final) * (1.0 - frac) ** 3


def asymptotic_keep_rate(e: int, epochs: int, keep: float, d: float = 1 / 8,
                         exact_from: float = 0.9) -> float:
    """ASFP's keep rate r_e = r + (1 - r) exp(-k e), k = ln 4 / (D E); exactly r from exact_from E.

    3/4 of the pruning is reached at e = D E; r_0 = 1.
    """
    if e >= exact_from * epochs:
        return keep
    k = math.log(4) / (d * epochs)
    return keep + (1.0 - keep) * math.exp(-k * e)


def exponential_count(n0: int, e: int, epochs: int, prune_rate: float) -> float:
    """PGP's target filter count after pruning epoch e (0-based): n0 exp(-lambda (e + 1)),
    lambda = -ln(1 - P) / E, so the last epoch lands exactly on n0 (1 - P)."""
    if e >= epochs - 1:
        return n0 * (1.0 - prune_rate)
    lam = -math.log(1.0 - prune_rate) / epochs
    return n0 * math.exp(-lam * (e + 1))


def lr_at(step: int, total_steps: int, base_lr: float, kind: str,
          milestones: tuple[float, ...] = (), gamma: float = 0.1) -> float:
    """Learning rate for optimizer step `step` of `total_steps` (cosine, step or constant)."""
    frac = step / max(total_steps, 1)
    if kind == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    if kind == "step":
        return base_lr * gamma ** sum(frac >= m for m in milestones)
    return base_lr


ROUND_MODES = ("down", "nearest")


def round_kept(kept: int, n: int, block: int, mode: str = "down") -> int:
    """Filters a layer of `n` keeps once the schedule's `kept` is rounded to a count the kernels
    split evenly (round_to): a multiple of `block`, or below one block a divisor of it (8, 4, 2
    or 1 for 16), so a narrow layer is still pruned as asked and never emptied. `down` prunes a
    little more, never less; `nearest` takes the closest count (a tie goes down). Unchanged
    when block <= 1 or the schedule prunes nothing (kept >= n)."""
    if block <= 1 or kept >= n:
        return kept
    grid = [d for d in range(1, min(block, n + 1)) if block % d == 0]
    grid += range(block, n + 1, block)
    if mode == "nearest":
        return min(grid, key=lambda g: (abs(g - kept), g))
    return max([g for g in grid if g <= kept] or grid[:1])
