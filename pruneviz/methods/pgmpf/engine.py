"""PGMPF, with SFP and ASFP on the same code path: soft filter pruning with per-epoch masks.

PGMPF: Cai, An, Yang, Yan, Xu, "Prior Gradient Mask Guided Pruning-aware Fine-tuning", AAAI-22,
DOI 10.1609/aaai.v36i1.19888; authors' code cailinhang/PGMPF, pruning_train_gd_prune_bn.py.
SFP: He, Kang, Dong, Fu, Yang, "Soft Filter Pruning", IJCAI-18, arXiv 1808.06866.
ASFP: He, Dong, Kang, Fu, Yan, Yang, "Asymptotic Soft Filter Pruning", IEEE TCYB 2019,
arXiv 1808.07471.

What is implemented (METHODS.md sec. 1; E epochs, e the 0-based epoch, r = 1 - config.rate):

- Keep rate, asymptotic: r_e = r + (1 - r) exp(-k e), k = ln 4 / (D E), D = 1/8, r_e = r
  exactly from e >= 0.9 E (schedules.asymptotic_keep_rate). SFP: r_e = r for every e.
- Gradient suppression: lambda_e = 1 - (1 - (e + 1) / E)^3, forced to lambda_final (1) from
  e >= 0.8 E when fine-tuning a trained model (config.start == "dense"), 0.9 E from scratch.
- Weight-decay mask: alpha_e = alpha_0 exp(-a e), a = -ln(sigma / (alpha_0 + 0.01 sigma)) / E,
  sigma = 1e-5 fine-tuning a trained model, 1e-3 from scratch; alpha_e = 0 from e >= 0.8 E.
  SFP and ASFP: alpha_e = 0 always (pruned filters are zeroed each epoch and keep training).
- Mask update, end of epoch e: in every prunable conv of N filters the floor(N (1 - r_e))
  filters of lowest L2 norm (current weights) get m = 0, the rest m = 1; filters may leave and
  re-enter the pruned set. Each pruned filter's conv weights (and bias) and its BatchNorm gamma
  and beta are multiplied by alpha_e, hard zero when alpha_e < 1e-4. The factor multiplies the
  *current* weights, so it compounds across epochs.
- Prior gradient mask, every step (after backward, before optimizer.step) while some filter is
  pruned: grad W_i *= m_i + (1 - m_i) (1 - lambda_e) [u_i < 0.5], u_i ~ U(0, 1) per filter,
  fresh every step, drawn from ctx.gen with torch ops on the model's device (the authors' code
  round-trips through NumPy every step). Only the conv weights are masked, as in the authors'
  code; BatchNorm gamma/beta only see the per-epoch alpha decay. SFP/ASFP: no gradient mask.

Timing: schedules are computed at the end of epoch e and used during epoch e + 1; nothing is
pruned during epoch 0. With r_0 = 1 (asymptotic) the first filters go at the end of epoch 1, as
in the authors' code (which initialises the mask with r_0 = 1 before training: a no-op). SFP
first prunes at the end of epoch 0, not before training as SFP's code does: zeroing filters
(and their BN) on a fresh optimizer leaves no momentum to move them off zero, and an exactly
zero channel followed by ReLU gets exactly zero gradient, so SFP would become one-shot hard
pruning.

Number pruned: floor(N (1 - r_e)) per layer (the authors' int()), computed as
floor(N (1 - r_e) + 1e-9) so a product that is an integer on paper is not floored one short by
float error (10 (1 - 0.9) = 0.9999999999999998). Every prunable layer ends with exactly
floor(N * config.rate) zero filters.

Prunable layers: every conv except downsample/shortcut convs; the first conv is included; the
final linear layer is not (the default filter selection of methods/base.py).

Fidelity notes:
- Weight decay and momentum are NOT masked: SGD adds them inside optimizer.step(), after the
  gradient mask, exactly as in the authors' code. Pruned filters therefore still move a little
  through their momentum buffers while lambda_e = 1.
- Final mask: the first end of epoch where r_e = r, the effective alpha is 0 and pruned filters
  get no gradient (gradient mask on and lambda_e = 1), or the last epoch, whichever comes first
  (E = 100: e = 90). From then on the mask is frozen and held by ctx.masks after every step, so
  the pruned filters (conv weights, bias, BN gamma/beta) stay exactly zero; the authors keep
  recomputing it, which only differs through the momentum leak above. Turning the gradient mask
  off, or lambda_final < 1, or SFP/ASFP, leaves pruned filters trainable, so their mask becomes
  final only at the last epoch.
- SFP and ASFP are PGMPF's code path with alpha_e = 0 every epoch and no gradient mask, so
  their hard zero also reaches BN gamma and beta, as the PGMPF authors' _bn script does for
  its baselines. Zeroed filters stay trainable (nothing holds them at zero), but an exactly
  zero channel under BN + ReLU gets no gradient until momentum moves it off zero (or, for a
  residual block's second conv, the shortcut opens the ReLU). SFP's own code zeroes only the
  conv weights; `decay_bn` off gives that, at a price: BN beta keeps a constant channel
  alive during training, which no physically pruned network has, so the final mask (which
  always zeroes gamma and beta) then costs accuracy at the very end (see the shock records).
- Short sessions (E < 10): the last epoch's update always uses r exactly and alpha = 0, so the
  session ends on its target (the paper's 0.9 E / 0.8 E thresholds fall past the last epoch).
- The dense start is config.start == "dense" (the session's cached trained baseline); this is
  what selects sigma = 1e-5 and lambda's 0.8 E.

Records (store tables; "epoch" is the epoch whose end computed the value, used in epoch e + 1):
- scalars, per epoch: `r_e` (keep rate), `lambda_e` (0 without a gradient mask), `alpha_e`
  (schedule value; the applied factor is 0 below alpha_min), `mask_flips` (filters whose mask
  changed, all layers), `accuracy_before_decay` / `accuracy_after_decay` (held-out accuracy just
  before and after the epoch's weight-decay mask, "pruning shock"; only in epochs where the
  decay changes weights).
- scalars, sampled steps (at most ~200 per run, only while some filter is pruned):
  `grad_norm_pruned_before`, `grad_norm_pruned_after`, `grad_norm_kept_before`,
  `grad_norm_kept_after`: L2 norm of the conv-weight gradient of all pruned (resp. kept) filters
  of all prunable layers, before and after the prior gradient mask (equal without it).
- filters, per epoch (each prunable conv, each filter): `l2_norm` (the ranking score: the
  filter's weight norm at the end of the epoch, before the decay), `mask` (the new mask, 1 kept),
  `bn_gamma` (its BatchNorm gamma before the decay; absent for convs without BN).
- layers, per epoch: `mask_flips` (filters whose mask changed), `filters_revived` (0 -> 1),
  `filters_pruned` (count with m = 0).
- table `mask_updates`, one row per epoch (stamped with it): r, lambda, alpha, alpha_applied,
  pruned (filters with m = 0, all layers), flips, final (the final mask is held from then on).
Summary: filters_total, filters_pruned, filter_count_rule, and from the last epoch's weights
flops_compact, params_compact, filters_removed: the network with the dead filters physically
removed (pruneviz.surgery.compact, Torch-Pruning's dependency graph; FLOPs as in metrics, 2 per
multiply-add). A filter is removed only if it is dead in every conv its channel is summed with:
in a ResNet the pruned filters of the convs that feed a residual addition (each block's second
conv, the stem) differ from block to block and stay, so compact FLOPs there fall short of the
papers' SFP convention, which counts every pruned filter as removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ...config import SessionConfig, param
from ...masks import Layer, Masks, apply_masks, filter_mask, filter_norms, filter_param_masks
from ...metrics import count_flops
from ...schedules import asymptotic_keep_rate
from ...surgery import compact
from ..base import Context, Method, register

DROP_PROB = 0.5          # channel-wise dropout of the suppressed gradient (the authors' value)
GRAD_SAMPLES = 200       # at most about this many sampled gradient-norm steps per run


# -- schedules (pure functions of the epoch) -------------------------------------------------
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


def n_pruned_filters(n: int, keep: float) -> int:
    """floor(N (1 - r)), with 1e-9 of slack for float error in products that are integers."""
    return max(0, min(n, math.floor(n * (1.0 - keep) + 1e-9)))


@dataclass(frozen=True)
class Knobs:
    """Every switch of the shared code path, resolved for one config (auto values filled in)."""

    asymptotic: bool = True          # keep-rate schedule: asymptotic (PGMPF, ASFP) or constant
    d: float = 1 / 8
    exact_from: float = 0.9
    gradient_mask: bool = True
    dropout: bool = True
    lambda_final: float = 1.0
    lambda_from: float = 0.8
    alpha_decay: bool = True         # False: alpha_e = 0 every epoch (SFP, ASFP)
    decay_bn: bool = True            # the decay also scales BN gamma/beta (authors' _bn script)
    alpha0: float = 1.0
    sigma: float = 1e-5
    alpha_zero_from: float = 0.8
    alpha_min: float = 1e-4
    shock_eval: bool = True


@dataclass(frozen=True)
class EpochValues:
    keep: float      # r_e
    lam: float       # lambda_e
    alpha: float     # alpha_e (schedule value)
    applied: float   # the factor pruned filters are multiplied by (0 below alpha_min)


def epoch_values(k: Knobs, e: int, epochs: int, keep: float) -> EpochValues:
    """The schedules at the end of epoch e; the last epoch lands exactly on the target."""
    final_epoch = e >= epochs - 1
    if final_epoch or not k.asymptotic:
        r = keep
    else:
        r = asymptotic_keep_rate(e, epochs, keep, k.d, k.exact_from)
    lam = cubic_lambda(e, epochs, k.lambda_final, k.lambda_from) if k.gradient_mask else 0.0
    alpha = decay_alpha(e, epochs, k.sigma, k.alpha0, k.alpha_zero_from) if k.alpha_decay else 0.0
    if final_epoch:
        alpha = 0.0
    return EpochValues(r, lam, alpha, 0.0 if alpha < k.alpha_min else alpha)


# -- parameters ------------------------------------------------------------------------------
def _shock_field() -> bool:
    return param(True, "Evaluate held-out accuracy just before and after each epoch's "
                       "weight-decay mask (pruning shock); two extra evaluations per epoch.")


def _bn_field() -> bool:
    return param(True, "The weight-decay mask (hard zero for SFP/ASFP) also multiplies the pruned "
                       "filters' BatchNorm gamma and beta, as the PGMPF authors' _bn script does; "
                       "off = conv weights only (SFP's own code): BN beta then keeps a constant "
                       "channel alive that the final mask removes, a shock at the end.")


def _d_field() -> float:
    return param(1 / 8, "D of the asymptotic keep rate: 3/4 of the pruning is reached at "
                        "e = D E (k = ln 4 / (D E)).", min=0.01, max=1.0)


def _exact_field() -> float:
    return param(0.9, "Fraction of the epochs from which the keep rate is exactly the target.",
                 min=0.0, max=1.0)


@dataclass(frozen=True)
class Params:
    d: float = _d_field()
    exact_from: float = _exact_field()
    gradient_mask: bool = param(True, "Prior gradient mask on pruned filters every step; off = "
                                      "ablation (pruned filters train freely, like ASFP with "
                                      "the alpha decay).")
    dropout: bool = param(True, "Channel-wise random dropout of the suppressed gradient "
                                "(probability 0.5, fresh each step); off = every pruned filter "
                                "gets (1 - lambda_e).")
    lambda_final: float = param(1.0, "Value lambda is forced to late in training; 1 freezes "
                                     "pruned filters, 0 = the authors' ablation that never "
                                     "fully freezes them (70.21% on ResNet-34).",
                                min=0.0, max=1.0)
    lambda_from: float = param(0.0, "Fraction of the epochs from which lambda = lambda_final; "
                                    "0 = auto (0.8 fine-tuning a trained model, 0.9 from "
                                    "scratch).", min=0.0, max=1.0)
    alpha0: float = param(1.0, "alpha_0, the weight-decay mask's first factor.", min=0.0,
                          max=1.0)
    sigma: float = param(0.0, "About the factor alpha reaches at e = E; 0 = auto (1e-5 "
                              "fine-tuning a trained model, 1e-3 from scratch).",
                         min=0.0, max=0.5)
    alpha_zero_from: float = param(0.8, "Fraction of the epochs from which alpha = 0 (pruned "
                                        "filters hard-zeroed).", min=0.0, max=1.0)
    alpha_min: float = param(1e-4, "alpha below this is applied as a hard zero.", min=0.0,
                             max=1.0)
    decay_bn: bool = _bn_field()
    shock_eval: bool = _shock_field()


@dataclass(frozen=True)
class ASFPParams:
    d: float = _d_field()
    exact_from: float = _exact_field()
    decay_bn: bool = _bn_field()
    shock_eval: bool = _shock_field()


@dataclass(frozen=True)
class SFPParams:
    decay_bn: bool = _bn_field()
    shock_eval: bool = _shock_field()


CIFAR_RECIPE = dict(start="scratch", epochs=200, lr=0.1, lr_schedule="step",
                    lr_milestones=(0.3, 0.6, 0.8), lr_gamma=0.2, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, batch_size=128, rate=0.4)
INTERACTIVE = dict(start="dense", epochs=10, lr=0.01, lr_schedule="cosine", rate=0.4)


# -- the method --------------------------------------------------------------------------------
@register
class PGMPF(Method):
    name = "pgmpf"
    summary = ("Soft filter pruning with an asymptotic rate, a decaying weight mask and a "
               "prior gradient mask with channel dropout (AAAI-22).")
    kind = "filter"
    Params = Params
    presets = {"paper": CIFAR_RECIPE, "interactive": INTERACTIVE}

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.k: Knobs | None = None
        self.keep = 1.0                     # keep rate of the mask in force
        self.lam = 0.0                      # lambda_e in force
        self.fmasks: list[torch.Tensor] = []   # per prunable layer, 1 = kept
        self.final = False                  # final mask reached and held in ctx.masks
        self._kept = self._pruned = self._factor = None
        self._params: list[torch.nn.Parameter] = []
        self._sizes: list[int] = []

    @classmethod
    def knobs(cls, config: SessionConfig, p: Params) -> Knobs:
        dense = config.start == "dense"
        return Knobs(asymptotic=True, d=p.d, exact_from=p.exact_from,
                     gradient_mask=p.gradient_mask, dropout=p.dropout,
                     lambda_final=p.lambda_final,
                     lambda_from=p.lambda_from or (0.8 if dense else 0.9),
                     alpha_decay=True, alpha0=p.alpha0,
                     sigma=p.sigma or (1e-5 if dense else 1e-3),
                     alpha_zero_from=p.alpha_zero_from, alpha_min=p.alpha_min,
                     decay_bn=p.decay_bn, shock_eval=p.shock_eval)

    @classmethod
    def values(cls, config: SessionConfig, params: Params, e: int) -> EpochValues:
        return epoch_values(cls.knobs(config, params), e, config.epochs, 1.0 - config.rate)

    @classmethod
    def schedule(cls, config: SessionConfig, params: Params) -> pd.DataFrame:
        """r_e, lambda_e and alpha_e against the epoch e whose end computes them."""
        rows = []
        for e in range(config.epochs):
            v = cls.values(config, params, e)
            rows += [(e, "keep rate r_e", v.keep), (e, "lambda_e", v.lam), (e, "alpha_e", v.alpha)]
        return pd.DataFrame(rows, columns=["epoch", "series", "value"])

    def target(self, ctx: Context) -> float:
        """Fraction of prunable weights in the filters the mask in force prunes."""
        total = sum(l.module.weight.numel() for l in ctx.layers)
        pruned = sum(n_pruned_filters(l.module.weight.shape[0], self.keep)
                     * l.module.weight[0].numel() for l in ctx.layers)
        return pruned / total if total else 0.0

    # -- hooks -------------------------------------------------------------------------------
    def before_training(self, ctx: Context) -> None:
        self.k = self.knobs(ctx.config, self.p)
        self.fmasks = [torch.ones(l.module.weight.shape[0], device=l.module.weight.device)
                       for l in ctx.layers]
        self._params = [l.module.weight for l in ctx.layers]
        self._sizes = [m.numel() for m in self.fmasks]
        ctx.summary.update(filters_total=sum(self._sizes), filters_pruned=0,
                           filter_count_rule="floor(N (1 - r)) per layer")

    @torch.no_grad()
    def after_backward(self, ctx: Context) -> None:
        if self._pruned is None:          # nothing pruned: the gradient mask is the identity
            return
        k = self.k
        every = max(1, math.ceil(ctx.total_steps / GRAD_SAMPLES))
        sample = ctx.step % every == 0
        if not (sample or k.gradient_mask):
            return
        grads = [p.grad for p in self._params]
        if sample:
            sq = torch.cat([g.flatten(1).square().sum(1) for g in grads])
        factor = None
        if k.gradient_mask:
            factor = self._factor
            if k.dropout:                # fresh per filter and step: passes with prob 0.5
                u = torch.rand(self._pruned.numel(), generator=ctx.gen, device=ctx.gen.device)
                factor = gradient_factor(self._kept, self._pruned, self.lam, u)
            torch._foreach_mul_(grads, [f.view(-1, 1, 1, 1) for f in factor.split(self._sizes)])
        if sample:
            after = sq * self._pruned * (factor.square() if factor is not None else 1.0)
            norms = torch.stack([(sq * self._pruned).sum(), after.sum(),
                                 (sq * self._kept).sum()]).sqrt().tolist()
            ctx.record.scalars({"grad_norm_pruned_before": norms[0],
                                "grad_norm_pruned_after": norms[1],
                                "grad_norm_kept_before": norms[2],
                                "grad_norm_kept_after": norms[2]})

    @torch.no_grad()
    def end_of_epoch(self, ctx: Context) -> None:
        """Recompute the mask from current L2 norms, apply the decay, record, maybe finalise."""
        k, rec, e = self.k, ctx.record, ctx.epoch
        assert k is not None
        v = epoch_values(k, e, ctx.epochs, 1.0 - ctx.config.rate)
        rec.scalars({"r_e": v.keep, "lambda_e": v.lam, "alpha_e": v.alpha})
        scores = [filter_norms(l.module.weight) for l in ctx.layers]
        old = self.fmasks
        if self.final:                    # frozen: the held mask keeps pruned filters at zero
            new = old
        else:
            new = [filter_mask(s, n_pruned_filters(s.numel(), v.keep)) for s in scores]
        n_pruned = sum(int((m == 0).sum().item()) for m in new)
        flips = [int((a != b).sum().item()) for a, b in zip(old, new)]
        for layer, s, m, a, f in zip(ctx.layers, scores, new, old, flips):
            rec.filters(layer.name, "l2_norm", s)
            rec.filters(layer.name, "mask", m)
            if layer.bn is not None:
                rec.filters(layer.name, "bn_gamma", layer.bn.weight.detach())
            rec.layer(layer.name, "mask_flips", f)
            rec.layer(layer.name, "filters_revived", int(((a == 0) & (m == 1)).sum().item()))
            rec.layer(layer.name, "filters_pruned", int((m == 0).sum().item()))
        rec.scalar("mask_flips", sum(flips))
        final_now = not self.final and (
            e >= ctx.epochs - 1
            or (v.keep == 1.0 - ctx.config.rate and v.applied == 0.0
                and k.gradient_mask and v.lam >= 1.0))
        if n_pruned > 0 and v.applied < 1.0 and not self.final:
            if k.shock_eval:
                rec.scalar("accuracy_before_decay", ctx.evaluate()["accuracy"])
            decay: Masks = {}
            for layer, m in zip(ctx.layers, new):    # the final mask always zeroes BN too
                decay.update(filter_factors(layer, m + v.applied * (1.0 - m),
                                            bn=k.decay_bn or final_now))
            apply_masks(ctx.model, decay)
            if k.shock_eval:
                rec.scalar("accuracy_after_decay", ctx.evaluate()["accuracy"])
        self.fmasks, self.keep, self.lam = new, v.keep, v.lam
        self._kept = torch.cat(new) if n_pruned else None
        self._pruned = 1.0 - self._kept if n_pruned else None
        self._factor = None
        if n_pruned and k.gradient_mask and not k.dropout:
            self._factor = gradient_factor(self._kept, self._pruned, v.lam)
        rec.row("mask_updates", r=v.keep, **{"lambda": v.lam}, alpha=v.alpha,
                alpha_applied=v.applied, pruned=n_pruned, flips=sum(flips),
                final=final_now or self.final)
        ctx.summary["filters_pruned"] = n_pruned
        if final_now:
            held: Masks = {}
            for layer, m in zip(ctx.layers, new):
                held.update(filter_param_masks(layer, m))
            ctx.masks = held
            apply_masks(ctx.model, held)
            self.final = True
            ctx.mark_pruned()
        if e >= ctx.epochs - 1:
            ctx.summary.update(compact_size(ctx.model, ctx.data.input_shape))


def compact_size(model: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """FLOPs and parameters of `model` with its dead filters physically removed (surgery.compact
    checks the removal against the masked model before it reports). A model the surgery cannot
    handle gets `compact_error` instead: the trained run is kept, and no size is guessed."""
    try:
        small, report = compact(model, input_shape)
    except Exception as e:     # any tracing or surgery failure: the trained run stays valid
        return {"compact_error": f"{type(e).__name__}: {e}"}
    return {"flops_compact": count_flops(small, input_shape),
            "params_compact": sum(p.numel() for p in small.parameters()),
            "filters_removed": report["filters_removed"]}


def filter_factors(layer: Layer, factor: torch.Tensor, *, bn: bool) -> Masks:
    """Per-parameter multipliers for one conv's filters: weight (and bias), plus BN gamma/beta
    when `bn`."""
    out = filter_param_masks(layer, factor)
    if not bn and layer.bn_name is not None:
        del out[f"{layer.bn_name}.weight"], out[f"{layer.bn_name}.bias"]
    return out


@register
class ASFP(PGMPF):
    name = "asfp"
    summary = ("Asymptotic soft filter pruning: zero the lowest-L2 filters each epoch, keep "
               "them trainable, keep rate r_e decays to the target (TCYB-19).")
    Params = ASFPParams

    @classmethod
    def knobs(cls, config: SessionConfig, p: ASFPParams) -> Knobs:
        return Knobs(asymptotic=True, d=p.d, exact_from=p.exact_from, gradient_mask=False,
                     dropout=False, alpha_decay=False, decay_bn=p.decay_bn,
                     shock_eval=p.shock_eval)


@register
class SFP(PGMPF):
    name = "sfp"
    summary = ("Soft filter pruning: zero the lowest-L2 filters each epoch at a constant rate "
               "and keep them trainable (IJCAI-18).")
    Params = SFPParams

    @classmethod
    def knobs(cls, config: SessionConfig, p: SFPParams) -> Knobs:
        return Knobs(asymptotic=False, gradient_mask=False, dropout=False, alpha_decay=False,
                     decay_bn=p.decay_bn, shock_eval=p.shock_eval)


__all__ = ["ASFP", "PGMPF", "SFP", "EpochValues", "Knobs", "cubic_lambda", "decay_alpha",
           "epoch_values", "gradient_factor", "n_pruned_filters"]
