"""SLR: surrogate Lagrangian relaxation weight pruning, and the ADMM baseline on the same code path.

Gurevin, Bragin, Ding, Zhou, Pepin, Li, Miao, "Enabling Retrain-free Deep Neural Network Pruning
Using Surrogate Lagrangian Relaxation", IJCAI 2021, pp. 2497-2504, arXiv 2012.10079.

Implements min_W f(W) s.t. card(W_l) <= l_l, relaxed: every step loss = CE(W) + sum_l (rho/2)
||W_l - Z_l + U_l||^2 (its gradient added in after_backward, exact, by one foreach op); once
per penalty epoch condition 1 L(W, Z_prev) < L(W_prev, Z_prev) (forced at k = 1) gates
Lambda += s_k (W - Z_prev), then Z = Pi(W + U), then condition 2 L(W, Z) < L(W_prev, Z_prev)
gates Lambda += s_k (W - Z), with s_k = alpha_k s_{k-1} ||W_prev - Z_prev|| / ||W - Z||,
alpha_k = 1 - 1 / (M k^(1 - 1/k^r)) (math.py); then hard prune W = Pi(W) and masked
retraining. ADMM (admm.py): every admm_every epochs Z = Pi(W + U), U += W - Z. With an N:M
pattern (`nm`) Pi keeps the N largest |.| of every group of M instead. Records: records.py.
Defaults, the order of the updates and fidelity choices (copies of W_prev, Z_prev; the first
update; condition 2): docs/methods.md, "SLR, ADMM".

Condition 2 as the paper writes it, L(W, Z) < L(W, Z_prev) with one CE, cannot fail: Z = Pi(W +
U) minimises the penalty exactly. We follow the intent of surrogate Lagrangian relaxation (the
new iterate must beat the last one that earned a multiplier update, under the current
multipliers, as condition 1 asks of the W-step) and compare with L(W_prev, Z_prev) at CE_prev:
after an accepted W-step that is the paper's check, and when condition 1 failed it asks
whether the Z-step made up for the W-step, which it may not. `cond2=authors` reproduces the
authors' Lagrangian2: L(W, Z_prev) with the previous epoch's CE (0 at the first check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from ...config import ConfigError, SessionConfig, nm_rate, param, parse_layer_rates
from ...masks import Layer, n_prune, prunable_layers
from ..base import Context, Method, nm_field, register
from .math import kept_min, lagrangian, multiplier_step, project, project_nm, sq_norms
from .records import EPOCHS, HIST, LAYERS

COND2 = ("accepted", "authors")


@dataclass(frozen=True)
class CommonParams:
    rho: float = param(0.1, "Penalty weight rho of (rho/2)||W - Z + U||^2 (constant).",
                       min=1e-6, max=100.0)
    retrain_epochs: int = param(0, "Final epochs of the session spent in masked retraining "
                                   "after the hard prune (capped at epochs - 1, so at least "
                                   "one epoch trains with the penalty).", min=0, max=1000)
    layer_rates: str = param("", "Per-layer prune rates overriding --rate, e.g. "
                                 "'layer1.0.conv1=0.5,fc=0.2'; naming the first conv or the "
                                 "classifier prunes it, rate 0 leaves a layer dense.")
    first_conv: bool = param(False, "Also prune the network's first conv at --rate.")
    last_linear: bool = param(False, "Also prune the classifier layer at --rate.")
    hist_bins: int = param(40, "Bins of the per-layer weight histograms recorded every epoch.",
                           min=4, max=200)
    nm: str = nm_field()

    def __post_init__(self) -> None:
        parse_layer_rates(self.layer_rates)
        if self.nm and self.layer_rates:
            raise ConfigError(f"nm={self.nm} prunes every layer by the same 1 - N/M, so it cannot "
                              f"follow layer_rates too; clear one of them.")


@dataclass(frozen=True)
class Params(CommonParams):
    M: float = param(300.0, "M of the step-size rule alpha_k = 1 - 1/(M k^(1 - 1/k^r)).",
                     min=1.0, max=1e6)
    r: float = param(0.1, "r of the step-size rule alpha_k = 1 - 1/(M k^(1 - 1/k^r)).",
                     min=1e-3, max=1.0)
    s0: float = param(0.01, "Initial multiplier step size s_0.", min=1e-8, max=100.0)
    alias_prev: bool = param(False, "Ablation: reproduce the authors' code, where W_prev is a "
                                    "reference to the live weights (condition 1 then only "
                                    "compares epoch CE and its norm ratio is 1).")
    cond2: str = param("accepted", "Condition 2's right side: accepted = L(W_prev, Z_prev), the "
                                   "last iterate that earned a multiplier update, with its own "
                                   "CE (can fail when condition 1 failed); authors = the "
                                   "authors' Lagrangian2, L(W, Z_prev) with the previous "
                                   "epoch's CE (0 at the first check).",
                       choices=COND2)


# The SLR authors' optimiser, shared by ADMM's paper preset (admm.py). Their main.py steps
# CosineAnnealingLR(T_max = epochs x batches) once per epoch, so their LR ends at
# cos(pi / batches) of its start (> 0.9999 of it): constant, as here.
PAPER_OPT = dict(lr=0.01, momentum=0.5, nesterov=True, weight_decay=5e-4, batch_size=128,
                 optimizer="sgd", lr_schedule="constant")


def retrain_epochs(epochs: int, wanted: int) -> int:
    """Masked-retraining epochs actually used: at least one epoch keeps the penalty."""
    return max(0, min(wanted, epochs - 1))


@register
class SLR(Method):
    name = "slr"
    zeros = "deferred"
    summary = ("Surrogate Lagrangian relaxation: penalty pulls W to its sparse projection Z, "
               "multipliers updated under surrogate conditions; hard prune, no retraining.")
    Params = Params
    presets = {
        "paper": dict(rho=0.1, M=300.0, r=0.1, s0=0.01, **PAPER_OPT),
        # Short digits sessions: a stronger penalty and step so the gap closes in ~10 epochs.
        # retrain_epochs 2, as ADMM's default: the hard prune lands after epoch 8 of 10, its
        # retrain-free accuracy is recorded then, and two epochs show what retraining recovers.
        "interactive": dict(epochs=10, rho=1.0, M=300.0, r=0.1, s0=0.1, lr=0.01, momentum=0.9,
                            nesterov=True, weight_decay=5e-4, retrain_epochs=2),
    }
    recovery_hint = ("set retrain_epochs=2 for masked retraining after the hard prune; with "
                     "none the final accuracy is the retrain-free result, which is the point of "
                     "SLR's paper, so read it as that.")
    surrogate = True     # False: ADMM's plain dual ascent

    # -- layers and schedule -------------------------------------------------------------------
    def _rates(self, model: nn.Module, rate: float) -> dict[str, float]:
        """Prune rate of every pruned layer: `rate` on the default layers, then the overrides
        (a layer overridden to 0 is left out, so it does not count as a pruned layer)."""
        rates = {l.name: rate for l in prunable_layers(model, first_conv=self.p.first_conv,
                                                        last_linear=self.p.last_linear)}
        overrides = parse_layer_rates(self.p.layer_rates)
        rates.update(overrides)
        return {k: v for k, v in rates.items() if not (k in overrides and v == 0)}

    def select_layers(self, model: nn.Module) -> list[Layer]:
        names = self._rates(model, 0.0)       # which layers only; rates are set per session
        candidates = prunable_layers(model, first_conv=True, last_linear=True, shortcuts=True)
        return self.patterned([l for l in candidates if l.name in names])

    def check(self, model: nn.Module) -> None:
        super().check(model)
        known = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        unknown = sorted(set(parse_layer_rates(self.p.layer_rates)) - set(known))
        if unknown:
            listing = ", ".join(known[:40]) + (", ..." if len(known) > 40 else "")
            raise ConfigError(f"layer_rates names {', '.join(map(repr, unknown))}, which this "
                              f"model does not have; its conv and linear layers are: {listing}.")
        if not self.select_layers(model):
            raise ConfigError(f"{self.name} has no layer to prune on this model; set "
                              f"last_linear=true or name layers in layer_rates.")

    @classmethod
    def schedule(cls, config: SessionConfig, params: Any) -> pd.DataFrame:
        e = float(config.epochs)
        hard = e - retrain_epochs(config.epochs, params.retrain_epochs)
        rows = [(0.0, "target sparsity", 0.0), (hard, "target sparsity", 0.0),
                (hard, "target sparsity", config.rate), (e, "target sparsity", config.rate),
                (0.0, "Z sparsity (penalty target)", config.rate),
                (hard, "Z sparsity (penalty target)", config.rate)]
        return pd.DataFrame(rows, columns=["epoch", "series", "value"])

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Any) -> float | None:
        return float(config.epochs - retrain_epochs(config.epochs, params.retrain_epochs))

    def target(self, ctx: Context) -> float:
        if not getattr(self, "hard", False):
            return 0.0
        n = [l.module.weight.numel() for l in ctx.layers]
        return sum(n_prune(k, p) for k, p in zip(n, self.rates)) / sum(n)

    # -- hooks ---------------------------------------------------------------------------------
    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.hard = False     # True once hard-pruned: no penalty, masks hold

    def before_training(self, ctx: Context) -> None:
        pattern = self.pattern
        rates = self._rates(ctx.model, ctx.config.rate if pattern is None else nm_rate(pattern))
        self.rates = [rates[l.name] for l in ctx.layers]
        ctx.summary.update(self.pattern_summary())
        self.W = [l.module.weight for l in ctx.layers]
        self.rho = self.p.rho
        self.hard = False
        self.retrain = retrain_epochs(ctx.epochs, self.p.retrain_epochs)
        self.last_penalty_epoch = ctx.epochs - self.retrain - 1        # 0-based
        self.Z = [self._project(w, p)[0] for w, p in zip(self.W, self.rates)]
        self.z_threshold = [kept_min(w, z != 0) for w, z in zip(self.W, self.Z)]
        self.U = [torch.zeros_like(z) for z in self.Z]
        self._refresh_target()
        self.diff: list[torch.Tensor] = []
        # The epoch's per-step losses and penalties, kept as 0-dim tensors (no sync, no op per
        # step) and summed at the epoch's end for the conditions' mean CE.
        self.losses: list[torch.Tensor] = []
        self.pens: list[torch.Tensor] = []
        if self.surrogate:
            self.s, self.k = self.p.s0, 1
            # Copies (see Fidelity); alias_prev keeps a reference to the live weights instead.
            self.W_prev = self._w() if self.p.alias_prev else [w.clone() for w in self._w()]
            self.Z_prev = [z.clone() for z in self.Z]
            self.ce_prev: float | None = None
            self.ce_last = 0.0        # the previous check's epoch CE (the authors' ce_prev)
            self.passed = [0, 0]
        ctx.summary["retrain_epochs"] = self.retrain
        masks = self._prune_masks()
        stats = self._stats(masks, None)
        self._emit(ctx, 0, "init", self._state_info(), stats, self.hard_prune_now(ctx, masks))

    def loss_penalty(self, ctx: Context) -> torch.Tensor | None:
        if self.hard:
            return None
        with torch.no_grad():
            self.diff = torch._foreach_sub(self._w(), self.C)          # W - Z + U
            pen = sq_norms(self.diff).sum().mul_(self.rho / 2)
        self.pens.append(pen)
        return pen

    def after_backward(self, ctx: Context) -> None:
        if self.hard:
            return
        # The penalty's gradient rho (W - Z + U), added where autograd would have put it: one
        # fused op instead of a backward through per-layer norms (see Implementation notes).
        grads = [w.grad for w in self.W]
        if any(g is None for g in grads):
            for w, d in zip(self.W, self.diff):
                w.grad = d * self.rho if w.grad is None else w.grad.add_(d, alpha=self.rho)
        else:
            torch._foreach_add_(grads, self.diff, alpha=self.rho)
        self.diff = []

    def after_step(self, ctx: Context) -> None:
        if not self.hard:
            self.losses.append(ctx.loss.detach())

    def end_of_epoch(self, ctx: Context) -> None:
        if self.hard:
            return
        loss, pen = (torch.stack(v).mean().item() if v else math.nan
                     for v in (self.losses, self.pens))
        info: dict[str, Any] = {"ce": loss - pen, "penalty": pen}
        self.losses, self.pens = [], []
        if ctx.epoch >= self.last_penalty_epoch:
            self.hard_prune(ctx, info)
            return
        z_change = self.update(ctx, info)
        masks = self._prune_masks()
        stats = self._stats(masks, z_change)
        self._emit(ctx, ctx.epoch + 1, "train" if z_change is None else "update", info, stats,
                   self.hard_prune_now(ctx, masks))

    # -- the algorithm ---------------------------------------------------------------------------
    def update(self, ctx: Context, info: dict[str, Any]) -> tuple[list, list] | None:
        """SLR's once-per-epoch multiplier and Z updates (docs/methods.md, SLR a-c); returns the
        Z change per layer (||Z_k - Z_{k-1}||, support flips)."""
        ce, W = info["ce"], self._w()
        # a. condition 1: L(W, Z_prev) < L(W_prev, Z_prev), forced at k = 1.
        L1 = self._lagrangian(ce, W, self.Z_prev)
        L1_prev = (None if self.ce_prev is None
                   else self._lagrangian(self.ce_prev, self.W_prev, self.Z_prev))
        ok1 = L1_prev is not None and L1 < L1_prev
        info.update(cond1=None if L1_prev is None else ok1, cond1_forced=self.k == 1,
                    cond1_L=L1, cond1_L_prev=L1_prev, alpha1=None, alpha2=None)
        if ok1 or self.k == 1:
            info["alpha1"] = self._multiplier_step(W, self.Z_prev, ce)
            self.passed[0] += ok1
        # b. Z-subproblem.
        z_change = self._project_z(W)
        # c. condition 2: L(W, Z) < its right side (docs/methods.md, SLR: "accepted" compares
        # with the last accepted iterate; "authors" is their Lagrangian2).
        L2 = self._lagrangian(ce, W, self.Z)
        L2_prev = self._cond2_right(W)
        ok2 = L2_prev is not None and L2 < L2_prev
        info.update(cond2=None if L2_prev is None else ok2, cond2_L=L2, cond2_L_prev=L2_prev)
        if ok2 or self.k == 1:
            info["alpha2"] = self._multiplier_step(W, self.Z, ce)
            self.passed[1] += ok2
        if self.p.alias_prev:
            self.ce_prev = ce          # the authors' main.py: the previous epoch's mean CE
        self.ce_last = ce
        info.update(self._state_info())
        self._refresh_target()
        return z_change

    def _cond2_right(self, W: list[torch.Tensor]) -> float | None:
        """Condition 2's right side under the current multipliers. accepted: L(W_prev, Z_prev)
        with CE_prev, which after an accepted W-step is L(W, Z_old) (so Pi, the exact minimiser,
        passes unless Z did not move) and otherwise the last accepted iterate (fails when the
        Z-step does not make up for a W-step that raised L). authors: L(W, Z_prev) with the
        previous check's epoch CE, 0 at the first (their Lagrangian2 in slr/admm.py)."""
        if self.p.cond2 == "authors":
            return self._lagrangian(self.ce_last, W, self.Z_prev)
        if self.ce_prev is None:       # alias_prev before its first CE: nothing accepted yet
            return None
        return self._lagrangian(self.ce_prev, self.W_prev, self.Z_prev)

    def _multiplier_step(self, W: list[torch.Tensor], Z_res: list[torch.Tensor],
                         ce: float) -> float:
        """math.multiplier_step, then k += 1 and (W_prev, Z_prev) = (W, Z); returns alpha_k."""
        self.s, alpha = multiplier_step(self.U, W, Z_res, self.W_prev, self.Z_prev, self.s,
                                        self.k, self.rho, self.p.M, self.p.r)
        self.k += 1
        if not self.p.alias_prev:
            torch._foreach_copy_(self.W_prev, W)
            self.ce_prev = ce
        torch._foreach_copy_(self.Z_prev, self.Z)
        return alpha

    def _project_z(self, W: list[torch.Tensor]) -> tuple[list[float], list[int]]:
        """Z = Pi(W + U); returns per-layer ||Z_new - Z_old|| and support flips."""
        old, self.Z, self.z_threshold = self.Z, [], []
        for w, u, p in zip(W, self.U, self.rates):
            z, mask = self._project(w + u, p)
            self.Z.append(z)
            self.z_threshold.append(kept_min(w + u, mask))
        change = sq_norms(torch._foreach_sub(self.Z, old)).sqrt().tolist()
        flips = torch.stack([((a != 0) != (b != 0)).sum() for a, b in zip(self.Z, old)])
        return change, flips.tolist()

    def _lagrangian(self, ce: float, W: list[torch.Tensor], Z: list[torch.Tensor]) -> float:
        return lagrangian(ce, W, Z, self.U, self.rho)

    def _refresh_target(self) -> None:
        self.C = torch._foreach_sub(self.Z, self.U)

    def _state_info(self) -> dict[str, Any]:
        return dict(k=self.k, s=self.s) if self.surrogate else {}

    def _w(self) -> list[torch.Tensor]:
        return [w.detach() for w in self.W]

    def _prune_masks(self) -> list[torch.Tensor]:
        return [self._project(w, p)[1] for w, p in zip(self.W, self.rates)]

    def _project(self, t: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Pi onto the layer's sparse set: top-(1 - rate) |t|, or the N:M pattern's top N."""
        return project(t, rate) if self.pattern is None else project_nm(t, *self.pattern)

    # -- hard prune and probes -----------------------------------------------------------------
    @torch.no_grad()
    def hard_prune_now(self, ctx: Context, masks: list[torch.Tensor]) -> float:
        """Held-out accuracy of Pi(W), leaving W, BN statistics and the optimizer as they were."""
        saved = [w.clone() for w in self._w()]
        torch._foreach_mul_(self._w(), masks)
        try:
            return ctx.evaluate()["accuracy"]
        finally:
            torch._foreach_copy_(self._w(), saved)

    @torch.no_grad()
    def hard_prune(self, ctx: Context, info: dict[str, Any]) -> None:
        """W = Pi(W) with hard masks from now on; records the retrain-free accuracy."""
        masks = self._prune_masks()
        stats = self._stats(masks, None)
        torch._foreach_mul_(self._w(), masks)
        ctx.masks = {l.param: m for l, m in zip(ctx.layers, masks)}
        self.hard = True
        ctx.mark_pruned()
        acc = ctx.evaluate()["accuracy"]
        ctx.summary.update(hard_prune_accuracy=acc, hard_prune_epochs=ctx.epoch + 1)
        if self.surrogate:
            ctx.summary.update(slr_k=self.k, slr_s=self.s, cond1_passed=self.passed[0],
                               cond2_passed=self.passed[1])
        self._emit(ctx, ctx.epoch + 1, "hard_prune", {**info, **self._state_info()}, stats, acc)
        # The relaxation's state is not needed any more.
        self.Z = self.U = self.C = []
        if self.surrogate:
            self.W_prev = self.Z_prev = []

    # -- records ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _stats(self, masks: list[torch.Tensor], z_change: tuple[list, list] | None
               ) -> dict[str, Any]:
        W = self._w()
        residual = sq_norms(torch._foreach_sub(W, self.Z)).sqrt().tolist()
        gap = sq_norms([w * (1 - m) for w, m in zip(W, masks)]).sqrt().tolist()
        lam = (sq_norms(self.U).sqrt() * self.rho).tolist()
        change, flips = z_change if z_change is not None else (None, None)
        layers, hists = [], []
        for i, w in enumerate(W):
            threshold = kept_min(w, masks[i])
            layers.append(dict(rate=self.rates[i], residual=residual[i], prune_gap=gap[i],
                               z_change=None if change is None else change[i],
                               support_changes=None if flips is None else flips[i],
                               lambda_norm=lam[i], threshold=threshold,
                               z_threshold=self.z_threshold[i]))
            hi = w.abs().max().item() or 1.0
            counts = torch.histc(w.float(), bins=self.p.hist_bins, min=-hi, max=hi)
            hists.append(dict(lo=-hi, hi=hi, counts=[int(c) for c in counts.tolist()],
                              threshold=threshold, z_threshold=self.z_threshold[i]))

        def total(values: list[float] | None) -> float | None:
            return None if values is None else math.sqrt(sum(v * v for v in values))

        totals = dict(residual=total(residual), prune_gap=total(gap), z_change=total(change),
                      support_changes=None if flips is None else sum(flips),
                      lambda_norm=total(lam))
        return dict(totals=totals, layers=layers, hists=hists)

    def _emit(self, ctx: Context, done: int, phase: str, info: dict[str, Any],
              stats: dict[str, Any], accuracy: float) -> None:
        rec = ctx.record
        rec.scalar("hard_prune_now_accuracy", accuracy)
        rec.scalar("primal_residual", stats["totals"]["residual"])
        EPOCHS.write(rec, epochs_done=done, phase=phase, **info, **stats["totals"],
                     hard_prune_now_accuracy=accuracy)
        for layer, values, hist in zip(ctx.layers, stats["layers"], stats["hists"]):
            LAYERS.write(rec, epochs_done=done, layer=layer.name, **values)
            HIST.write(rec, epochs_done=done, layer=layer.name, **hist)
