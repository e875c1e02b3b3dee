"""PGMPF's schedules and its gradient factor: pure functions of the epoch, shared by the engine
and the Learn page's toy (docs/methods.md, "PGMPF, SFP, ASFP")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...schedules import asymptotic_keep_rate, round_kept

DROP_PROB = 0.5          # channel-wise dropout of the suppressed gradient (the authors' value)


def cubic_lambda(e: int, epochs: int, final: float = 1.0, final_from: float = 0.8) -> float:
    """Gradient suppression lambda_e = 1 - (1 - (e + 1) / E)^3; `final` from e >= final_from E."""
    if e >= final_from * epochs:
        return final
    return 1.0 - (1.0 - min((e + 1) / epochs, 1.0)) ** 3


def decay_alpha(e: int, epochs: int, sigma: float, alpha0: float = 1.0,
                zero_from: float = 0.8) -> float:
    """Weight-decay-mask factor alpha_e = alpha_0 exp(-a e), a = -ln(sigma / (alpha_0 + 0.01
    sigma)) / E (so alpha reaches about sigma at e = E); 0 from e >= zero_from E."""
    if e >= zero_from * epochs:
        return 0.0
    a = -math.log(sigma / (alpha0 + 0.01 * sigma)) / epochs
    return alpha0 * math.exp(-a * e)


def gradient_factor(kept: torch.Tensor, pruned: torch.Tensor, lam: float,
                    u: torch.Tensor | None = None) -> torch.Tensor:
    """The prior gradient mask per filter, m + (1 - m)(1 - lambda_e)[u < 0.5]: 1 for kept
    filters (`kept` = m), for pruned ones (`pruned` = 1 - m) 1 - lambda_e when u < DROP_PROB, else
    0; `u` None (no dropout) gives every pruned filter 1 - lambda_e."""
    if u is None:
        return kept + pruned * (1.0 - lam)
    return torch.addcmul(kept, pruned, (u < DROP_PROB).to(u.dtype), value=1.0 - lam)


def n_pruned_filters(n: int, keep: float, block: int = 1, mode: str = "down") -> int:
    """floor(N (1 - r)), with 1e-9 of slack for float error in products that are integers; the
    kept rest rounded to a multiple of `block` (round_to, schedules.round_kept)."""
    pruned = max(0, min(n, math.floor(n * (1.0 - keep) + 1e-9)))
    return n - round_kept(n - pruned, n, block, mode)


@dataclass(frozen=True)
class Knobs:
    """Every switch of the shared code path, resolved for one config: engine.py's PGMPF.knobs
    fills it from the method's Params (its defaults are the only ones), the method's fixed
    switches and the auto values."""

    asymptotic: bool                 # keep-rate schedule: asymptotic (PGMPF, ASFP) or constant
    d: float
    exact_from: float
    gradient_mask: bool
    dropout: bool
    lambda_final: float
    lambda_from: float
    alpha_decay: bool                # False: alpha_e = 0 every epoch (SFP, ASFP)
    decay_bn: bool                   # the decay also scales BN gamma/beta (authors' _bn script)
    alpha0: float
    sigma: float
    alpha_zero_from: float
    alpha_min: float
    shock_eval: bool
    recovery: float                  # fraction of the epochs left to recover after the final mask


@dataclass(frozen=True)
class EpochValues:
    keep: float      # r_e
    lam: float       # lambda_e
    alpha: float     # alpha_e (schedule value)
    applied: float   # the factor pruned filters are multiplied by (0 below alpha_min)


def last_epoch(epochs: int, recovery: float) -> int:
    """The epoch whose end makes the mask final at the latest: the session's last, or earlier so
    that `recovery` of the epochs train with the final mask held (E = 10, 0.2: epoch 7)."""
    return max(0, min(epochs - 1, math.ceil(epochs * (1.0 - recovery) - 1e-9) - 1))


def is_final(k: Knobs, v: EpochValues, e: int, epochs: int, keep: float) -> bool:
    """Whether the mask computed at the end of epoch e is final: at the last epoch (see
    last_epoch), or once r_e is the target, alpha is 0 and pruned filters get no gradient."""
    return e >= last_epoch(epochs, k.recovery) or (
        v.keep == keep and v.applied == 0.0 and k.gradient_mask and v.lam >= 1.0)


def epoch_values(k: Knobs, e: int, epochs: int, keep: float) -> EpochValues:
    """The schedules at the end of epoch e; the last epoch (see last_epoch) lands exactly on
    the target."""
    final_epoch = e >= last_epoch(epochs, k.recovery)
    if final_epoch or not k.asymptotic:
        r = keep
    else:
        r = asymptotic_keep_rate(e, epochs, keep, k.d, k.exact_from)
    lam = cubic_lambda(e, epochs, k.lambda_final, k.lambda_from) if k.gradient_mask else 0.0
    alpha = decay_alpha(e, epochs, k.sigma, k.alpha0, k.alpha_zero_from) if k.alpha_decay else 0.0
    if final_epoch:
        alpha = 0.0
    return EpochValues(r, lam, alpha, 0.0 if alpha < k.alpha_min else alpha)
