"""SLR's and ADMM's pure pieces: the projection Pi, the step size alpha_k, the Lagrangian and the
surrogate multiplier step, over lists of layer tensors; shared by the engine and the Learn toy
(docs/methods.md, "SLR, ADMM")."""

from __future__ import annotations

import torch

from ...masks import keep_top, n_prune, nm_mask


def step_alpha(k: int, M: float, r: float) -> float:
    """SLR's step-size factor alpha_k = 1 - 1 / (M k^(1 - 1/k^r))."""
    return 1.0 - 1.0 / (M * k ** (1.0 - 1.0 / k ** r))


def project(t: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pi: (t with all but its top-(1 - rate) magnitudes zeroed, the 0/1 keep mask)."""
    mask = keep_top(t.detach().abs(), t.numel() - n_prune(t.numel(), rate))
    return t.detach() * mask, mask


def project_nm(t: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pi onto the N:M set: (t with all but the n largest |t| of every group of m zeroed, the
    0/1 keep mask); the exact Euclidean projection, as the groups are disjoint."""
    mask = nm_mask(t.detach().abs(), n, m)
    return t.detach() * mask, mask


def kept_min(t: torch.Tensor, mask: torch.Tensor) -> float:
    """Smallest |t| among kept entries: the projection's magnitude threshold (0 if none kept)."""
    kept = t.detach().abs()[mask.bool()]
    return kept.min().item() if kept.numel() else 0.0


def sq_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-tensor squared Frobenius norms, as one 1-D tensor."""
    return torch.stack(torch._foreach_norm(tensors)).square()


def norm(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """||a - b||_F over all layers together."""
    return sq_norms(torch._foreach_sub(a, b)).sum().sqrt().item()


def lagrangian(ce: float, W: list[torch.Tensor], Z: list[torch.Tensor], U: list[torch.Tensor],
               rho: float) -> float:
    """L(W, Z) = CE + sum (rho/2)||W - Z + U||^2 + sum (rho/2)||U||^2."""
    d = torch._foreach_sub(W, Z)
    torch._foreach_add_(d, U)
    return ce + rho / 2 * (sq_norms(d).sum() + sq_norms(U).sum()).item()


def multiplier_step(U: list[torch.Tensor], W: list[torch.Tensor], Z_res: list[torch.Tensor],
                    W_prev: list[torch.Tensor], Z_prev: list[torch.Tensor], s: float, k: int,
                    rho: float, M: float, r: float) -> tuple[float, float]:
    """One surrogate multiplier update, U changed in place: s_k = alpha_k s ||W_prev - Z_prev|| /
    ||W - Z_res|| (s kept when a norm is zero, as the authors), Lambda += s_k (W - Z_res), i.e.
    U += s_k / rho (W - Z_res). Returns (s_k, alpha_k)."""
    alpha = step_alpha(k, M, r)
    n_prev, n_now = norm(W_prev, Z_prev), norm(W, Z_res)
    if n_prev > 0 and n_now > 0:
        s = alpha * s * n_prev / n_now
    torch._foreach_add_(U, torch._foreach_sub(W, Z_res), alpha=s / rho)
    return s, alpha
