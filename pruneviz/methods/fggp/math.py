"""FGGP's, GraNet's and GMP's pure pieces: the pruning steps of the cubic schedule, the
gradient-first selection and the smallest-score cuts; shared by the engines and the Learn toy
(docs/methods.md, "FGGP, GMP, GraNet")."""

from __future__ import annotations

import math

import torch

from ...masks import Masks


def regrow_fraction(t: int, t_end: int, c_init: float, c_final: float) -> float:
    """GraNet's c(t): cosine decay from c_init at t = 0 to c_final at t_end, flat after."""
    frac = min(max(t / t_end, 0.0), 1.0) if t_end > 0 else 1.0
    return c_final + (c_init - c_final) * 0.5 * (1.0 + math.cos(math.pi * frac))


def too_aggressive(name: str, t: int, to_prune: int, remain: int, rho: float, every: int) -> str:
    return (f"{name}: at step {t} the schedule asks to prune {to_prune} of the {remain} remaining "
            f"weights ({to_prune / remain:.0%}), more than the rho = {rho:g} candidate set "
            f"({math.floor(rho * remain)}) can hold. Prune more often (a smaller `every`, now "
            f"dT = {every} steps; 0 picks T_end / 50), raise `rho`, give pruning more of the "
            f"session (a larger `end` or more epochs), or lower the rate.")


def smallest(score: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
    """The entries of `idx` holding the `k` smallest `score[idx]`."""
    return idx[torch.topk(score[idx], k, largest=False, sorted=False).indices]


def gradient_first(w: torch.Tensor, g: torch.Tensor, active: torch.Tensor, to_prune: int,
                   rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pruned, candidates) indices: the `to_prune` smallest |w| among the floor(rho * remain)
    active entries with the smallest |g|. `w`, `g` are magnitudes, `active` a bool vector."""
    idx = active.nonzero().squeeze(1)
    candidates = smallest(g, idx, math.floor(rho * idx.numel()))
    return smallest(w, candidates, to_prune), candidates


def ranks(x: torch.Tensor) -> torch.Tensor:
    """0-based ascending rank of each entry (ties broken by position)."""
    out = torch.empty_like(x, dtype=torch.long)
    out[torch.argsort(x, stable=True)] = torch.arange(x.numel(), device=x.device)
    return out


def t_end(total_steps: int, end: float) -> int:
    """Step at which the final density is reached; at most the last step, so end = 1 works."""
    return min(math.floor(end * total_steps), max(total_steps - 1, 0))


def prune_every(total_steps: int, end: float, every: int) -> int:
    return every or max(1, t_end(total_steps, end) // 50)


def pruning_steps(total_steps: int, end: float, every: int) -> list[int]:
    """The steps at which a pruning step runs: every dT steps up to T_end, and T_end itself."""
    last = t_end(total_steps, end)
    steps = list(range(0, last + 1, prune_every(total_steps, end, every)))
    return steps if steps[-1] == last else [*steps, last]


def prune_smallest(scores: dict[str, torch.Tensor], masks: Masks, k: int) -> Masks:
    """Prune the `k` smallest scores among entries still active in `masks` (global ranking)."""
    flat = torch.cat([torch.where(masks[n] > 0, s, torch.inf).flatten()
                      for n, s in scores.items()])
    idx = torch.topk(flat, k, largest=False, sorted=False).indices
    keep = torch.cat([masks[n].flatten() for n in scores])
    keep[idx] = 0.0
    out, i = {}, 0
    for n, s in scores.items():
        out[n] = keep[i:i + s.numel()].view_as(s)
        i += s.numel()
    return out
