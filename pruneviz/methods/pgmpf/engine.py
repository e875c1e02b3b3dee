"""PGMPF, with SFP and ASFP on the same code path: soft filter pruning with per-epoch masks.

PGMPF: Cai, An, Yang, Yan, Xu, "Prior Gradient Mask Guided Pruning-aware Fine-tuning", AAAI-22,
DOI 10.1609/aaai.v36i1.19888. SFP: He et al., IJCAI-18, arXiv 1808.06866. ASFP: He et al.,
IEEE TCYB 2019, arXiv 1808.07471.

Implements (E epochs, e the 0-based epoch, r = 1 - config.rate; schedules in math.py):
r_e = r + (1 - r) exp(-k e) (ASFP's asymptotic keep rate); lambda_e = 1 - (1 - (e + 1) / E)^3;
alpha_e = alpha_0 exp(-a e); at each epoch's end the floor(N (1 - r_e)) lowest-L2 filters of
every prunable conv get m = 0 and are multiplied (with their BN gamma, beta) by alpha_e; every
step grad W_i *= m_i + (1 - m_i)(1 - lambda_e)[u_i < 0.5]. SFP: r_e = r, alpha_e = 0, no
gradient mask; ASFP: the asymptotic r_e with SFP's hard zero. Records: records.py.
On vit_tiny and gpt_tiny the filters are each block's attention heads and MLP neurons (class
Structures over methods/structures.py; docs/methods.md, "Filter methods on transformers").
Defaults, timing and fidelity choices: docs/methods.md, "PGMPF, SFP, ASFP".

The final mask is held by the session (conv weights and BN gamma, beta), so pruned channels
stay exactly zero to the end. The authors' code masks only the conv weights' gradients: the BN
beta of a pruned channel, zeroed at each epoch's end, trains again within the next epoch, the
last included (the channel outputs the constant ReLU(beta)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from ...config import SessionConfig, param
from ...masks import (
    Layer,
    Masks,
    apply_masks,
    filter_mask,
    filter_norms,
    filter_param_masks,
    prunable_layers,
)
from .. import structures as st
from ..base import Context, Method, register
from ..roundto import RoundTo, preview_rows, round_mode_field, round_to_field
from .math import (
    EpochValues,
    Knobs,
    epoch_values,
    gradient_factor,
    is_final,
    n_pruned_filters,
)
from .records import MASK_UPDATES

GRAD_SAMPLES = 200       # at most about this many sampled gradient-norm steps per run


# -- parameters: one base class per family, as SLR's (CommonParams) -------------------------------
@dataclass(frozen=True)
class SFPParams:
    """What SFP, ASFP and PGMPF share; ASFP adds the asymptotic keep rate, PGMPF the prior
    gradient mask and the weight-decay mask's schedule."""

    decay_bn: bool = param(True, "The weight-decay mask (hard zero for SFP/ASFP) also multiplies "
                                 "the pruned filters' BatchNorm gamma and beta, as the PGMPF "
                                 "authors' _bn script does; off = conv weights only (SFP's own "
                                 "code): BN beta then keeps a constant channel alive that the "
                                 "final mask removes, a shock at the end.")
    shock_eval: bool = param(True, "Evaluate held-out accuracy just before and after each "
                                   "epoch's weight-decay mask (pruning shock); two extra "
                                   "evaluations per epoch.")
    recovery: float = param(0.0, "Fraction of the epochs left to recover at the end: the mask "
                                 "becomes final (pruned filters held at zero) at the end of "
                                 "epoch ceil(E (1 - recovery)) - 1 at the latest; 0 = at the "
                                 "last epoch, as the papers (no epoch to recover from the last "
                                 "hard zero).", min=0.0, max=0.9, step=0.05)
    round_to: str = round_to_field()
    round_mode: str = round_mode_field()


@dataclass(frozen=True)
class ASFPParams(SFPParams):
    d: float = param(1 / 8, "D of the asymptotic keep rate: 3/4 of the pruning is reached at "
                            "e = D E (k = ln 4 / (D E)).", min=0.01, max=1.0)
    exact_from: float = param(0.9, "Fraction of the epochs from which the keep rate is exactly "
                                   "the target.", min=0.0, max=1.0)


@dataclass(frozen=True)
class Params(ASFPParams):
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


CIFAR_RECIPE = dict(start="scratch", epochs=200, lr=0.1, lr_schedule="step",
                    lr_milestones=(0.3, 0.6, 0.8), lr_gamma=0.2, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, batch_size=128, rate=0.4)
# recovery 0.2: the mask is final at the end of epoch 7 of 10, two epochs before the end (with
# the papers' timing the last hard zero lands in the last epoch, with nothing left to recover).
INTERACTIVE = dict(start="dense", epochs=10, lr=0.01, lr_schedule="cosine", rate=0.4,
                   recovery=0.2)


# -- the method --------------------------------------------------------------------------------
@register
class PGMPF(RoundTo, Method):
    name = "pgmpf"
    zeros = "soft"
    summary = ("Soft filter pruning with an asymptotic rate, a decaying weight mask and a "
               "prior gradient mask with channel dropout (AAAI-22).")
    kind = "filter"
    Params = Params
    SWITCHES: dict[str, bool] = dict(asymptotic=True, alpha_decay=True)   # fixed per member
    presets = {"paper": CIFAR_RECIPE, "interactive": INTERACTIVE}
    recovery_hint = ("set recovery=0.2 (the interactive preset's value) so the mask is final "
                     "with a fifth of the epochs left to recover.")
    structures = True       # on vit_tiny and gpt_tiny: attention heads and MLP neurons

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.k: Knobs | None = None
        self.units: Convs | Structures | None = None   # what a "filter" is on this model
        self.keep = 1.0                     # keep rate of the mask in force
        self.lam = 0.0                      # lambda_e in force
        self.fmasks: list[torch.Tensor] = []   # per prunable layer, 1 = kept
        self.final = False                  # final mask reached and held in ctx.masks
        self._kept = self._pruned = self._factor = None
        self._sizes: list[int] = []

    @classmethod
    def knobs(cls, config: SessionConfig, p: SFPParams) -> Knobs:
        """The shared code path's switches for this member: its Params over PGMPF's (a field
        it does not have takes PGMPF's default), the auto values resolved, then its SWITCHES."""
        full = Params(**{f.name: getattr(p, f.name) for f in fields(p)})
        dense = config.start == "dense"
        own = {f.name: getattr(full, f.name) for f in fields(Knobs) if hasattr(full, f.name)}
        return Knobs(**{**own, "lambda_from": full.lambda_from or (0.8 if dense else 0.9),
                        "sigma": full.sigma or (1e-5 if dense else 1e-3), **cls.SWITCHES})

    @classmethod
    def values(cls, config: SessionConfig, params: Params, e: int) -> EpochValues:
        return epoch_values(cls.knobs(config, params), e, config.epochs, 1.0 - config.rate)

    @classmethod
    def schedule(cls, config: SessionConfig, params: Params) -> pd.DataFrame:
        """r_e, lambda_e and alpha_e against the epoch e whose end computes them, and the
        model's kept filters once rounded (round_to)."""
        rows, plan = [], []
        for e in range(config.epochs):
            v = cls.values(config, params, e)
            rows += [(e, "keep rate r_e", v.keep), (e, "lambda_e", v.lam), (e, "alpha_e", v.alpha)]
            plan.append((e, lambda n, r=v.keep: n - n_pruned_filters(n, r)))
        rows += preview_rows(cls, config, params, plan, sparsity=False)
        return pd.DataFrame(rows, columns=["epoch", "series", "value"])

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Params) -> float | None:
        k, keep = cls.knobs(config, params), 1.0 - config.rate
        for e in range(config.epochs):
            if is_final(k, epoch_values(k, e, config.epochs, keep), e, config.epochs, keep):
                return e + 1.0
        return None

    def select_layers(self, model: nn.Module) -> list[Layer]:
        if st.uses_structures(model):       # the blocks' linears: heads' and neurons' weights
            return prunable_layers(model, first_conv=False, last_linear=False)
        return Method.select_layers(self, model)

    def target(self, ctx: Context) -> float:
        """Fraction of prunable weights in the filters the mask in force prunes."""
        if self.units is None:
            return 0.0
        total = sum(l.module.weight.numel() for l in ctx.layers)
        pruned = sum(self.n_pruned(n, self.keep) * per
                     for n, per in zip(self.units.sizes, self.units.per))
        return pruned / total if total else 0.0

    def n_pruned(self, n: int, keep: float) -> int:
        pruned = n_pruned_filters(n, keep, self.block, self.p.round_mode)
        # a block keeps one head and one neuron (as l2_filter): it never becomes empty
        return min(pruned, n - 1) if isinstance(self.units, Structures) else pruned

    # -- hooks -------------------------------------------------------------------------------
    def before_training(self, ctx: Context) -> None:
        self.k = self.knobs(ctx.config, self.p)
        self.units = (Structures(ctx.model) if st.uses_structures(ctx.model)
                      else Convs(ctx.layers))
        self.fmasks = [torch.ones(n, device=d)
                       for n, d in zip(self.units.sizes, self.units.devices)]
        self._sizes = [m.numel() for m in self.fmasks]
        self.resolve_round_to(ctx)
        ctx.summary.update(filters_total=sum(self._sizes), filters_pruned=0,
                           filter_count_rule="floor(N (1 - r)) per layer" + (
                               f", kept rounded {self.p.round_mode} to a multiple of "
                               f"{self.block}" if self.block > 1 else ""))

    @torch.no_grad()
    def after_backward(self, ctx: Context) -> None:
        if self._pruned is None:          # nothing pruned: the gradient mask is the identity
            return
        k = self.k
        every = max(1, math.ceil(ctx.total_steps / GRAD_SAMPLES))
        sample = ctx.step % every == 0
        if not (sample or k.gradient_mask):
            return
        if sample:
            sq = self.units.grad_sq()
        factor = None
        if k.gradient_mask:
            factor = self._factor
            if k.dropout:                # fresh per filter and step: passes with prob 0.5
                u = torch.rand(self._pruned.numel(), generator=ctx.gen, device=ctx.gen.device)
                factor = gradient_factor(self._kept, self._pruned, self.lam, u)
            self.units.scale_grads(factor)
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
        units = self.units
        scores = units.scores()
        old = self.fmasks
        if self.final:                    # frozen: the held mask keeps pruned filters at zero
            new = old
        else:
            new = [filter_mask(s, self.n_pruned(s.numel(), v.keep)) for s in scores]
        n_pruned = sum(int((m == 0).sum().item()) for m in new)
        flips = [int((a != b).sum().item()) for a, b in zip(old, new)]
        for i, (name, s, m, a, f) in enumerate(zip(units.names, scores, new, old, flips)):
            rec.filters(name, "l2_norm", s)
            rec.filters(name, "mask", m)
            gamma = units.bn_gamma(i)
            if gamma is not None:
                rec.filters(name, "bn_gamma", gamma)
            rec.layer(name, "mask_flips", f)
            rec.layer(name, "filters_revived", int(((a == 0) & (m == 1)).sum().item()))
            rec.layer(name, "filters_pruned", int((m == 0).sum().item()))
        rec.scalar("mask_flips", sum(flips))
        final_now = not self.final and is_final(k, v, e, ctx.epochs, 1.0 - ctx.config.rate)
        if n_pruned > 0 and v.applied < 1.0 and not self.final:
            if k.shock_eval:
                rec.scalar("accuracy_before_decay", ctx.evaluate()["accuracy"])
            decay: Masks = {}
            for i, m in enumerate(new):              # the final mask always zeroes BN too
                decay.update(units.factors(i, m + v.applied * (1.0 - m),
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
        MASK_UPDATES.write(rec, r=v.keep, **{"lambda": v.lam}, alpha=v.alpha,
                           alpha_applied=v.applied, pruned=n_pruned, flips=sum(flips),
                           final=final_now or self.final,
                           kept_share=1.0 - n_pruned / sum(self._sizes))
        ctx.summary["filters_pruned"] = n_pruned
        self.achieved(ctx, n_pruned, sum(self._sizes))
        if final_now:
            held: Masks = {}
            for i, m in enumerate(new):
                held.update(units.factors(i, m, bn=True))
            ctx.masks = held
            apply_masks(ctx.model, held)
            self.final = True
            ctx.mark_pruned()


def filter_factors(layer: Layer, factor: torch.Tensor, *, bn: bool) -> Masks:
    """Per-parameter multipliers for one conv's filters: weight (and bias), plus BN gamma/beta
    when `bn`."""
    out = filter_param_masks(layer, factor)
    if not bn and layer.bn_name is not None:
        del out[f"{layer.bn_name}.weight"], out[f"{layer.bn_name}.bias"]
    return out


class Convs:
    """The papers' unit: the filters of the prunable convs (ctx.layers); the gradient mask
    scales their conv weights' gradients only, the decay their weights, bias and BN."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.names = [l.name for l in layers]
        self.sizes = [l.module.weight.shape[0] for l in layers]
        self.per = [l.module.weight[0].numel() for l in layers]
        self.devices = [l.module.weight.device for l in layers]

    def scores(self) -> list[torch.Tensor]:
        return [filter_norms(l.module.weight) for l in self.layers]

    def grad_sq(self) -> torch.Tensor:
        return torch.cat([l.module.weight.grad.flatten(1).square().sum(1) for l in self.layers])

    def scale_grads(self, factor: torch.Tensor) -> None:
        torch._foreach_mul_([l.module.weight.grad for l in self.layers],
                            [f.view(-1, 1, 1, 1) for f in factor.split(self.sizes)])

    def factors(self, i: int, factor: torch.Tensor, *, bn: bool) -> Masks:
        return filter_factors(self.layers[i], factor, bn=bn)

    def bn_gamma(self, i: int) -> torch.Tensor | None:
        bn = self.layers[i].bn
        return None if bn is None else bn.weight.detach()


class Structures:
    """A transformer's heads and MLP neurons (methods/structures.py) as the filters: a score,
    the decay, the held mask and the gradient mask cover every slice a structure owns (q, k, v
    rows with their biases and c_proj columns; c_fc row, bias and c_proj column)."""

    def __init__(self, model: nn.Module) -> None:
        self.units = st.units(model)
        self.weights = st.params(model)
        self.names = [u.name for u in self.units]
        self.sizes = [u.count for u in self.units]
        self.per = [u.weights for u in self.units]
        self.devices = [self.weights[u.parts[0].param].device for u in self.units]

    def scores(self) -> list[torch.Tensor]:
        return [st.norms(u, self.weights) for u in self.units]

    def grad_sq(self) -> torch.Tensor:
        grads = {k: p.grad for k, p in self.weights.items()}
        return torch.cat([st.reduce(u, grads, torch.square) for u in self.units])

    def scale_grads(self, factor: torch.Tensor) -> None:
        for u, f in zip(self.units, factor.split(self.sizes)):
            st.scale_grads(u, self.weights, f)

    def factors(self, i: int, factor: torch.Tensor, *, bn: bool) -> Masks:
        return st.factors(self.units[i], self.weights, factor)

    def bn_gamma(self, i: int) -> torch.Tensor | None:
        return None


@register
class ASFP(PGMPF):
    name = "asfp"
    summary = ("Asymptotic soft filter pruning: zero the lowest-L2 filters each epoch, keep "
               "them trainable, keep rate r_e decays to the target (TCYB-19).")
    Params = ASFPParams

    SWITCHES = dict(asymptotic=True, gradient_mask=False, dropout=False, alpha_decay=False)


@register
class SFP(PGMPF):
    name = "sfp"
    summary = ("Soft filter pruning: zero the lowest-L2 filters each epoch at a constant rate "
               "and keep them trainable (IJCAI-18).")
    Params = SFPParams

    SWITCHES = dict(asymptotic=False, gradient_mask=False, dropout=False, alpha_decay=False)
