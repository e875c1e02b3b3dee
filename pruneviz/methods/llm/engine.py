"""Wanda, SparseGPT, per-row magnitude and gradient head importance: the language-model era's
one-shot pruning, on any model with linear layers (and convs, an extension).

Wanda: Sun, Liu, Bair, Kolter, "A Simple and Effective Pruning Approach for Large Language
Models", ICLR 2024, arXiv 2306.11695. Score S_ij = |W_ij| * ||X_j||_2 (eq. 1), compared within
each output row (eq. 2: the floor(s * columns) lowest of a row are pruned); no weight update.
SparseGPT: Frantar, Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot", ICML 2023, arXiv 2301.00774. H = 2 X X^T (running average), damped by 0.01 mean(diag
H); mask by w^2 / [H^-1]_jj^2 per block of 128 columns; the optimal-brain-surgeon update
delta = -(w_j / [H^-1]_jj) H^-1_{j,:} through the upper Cholesky factor of H^-1 (Algorithm 1).
Row magnitude: S_ij = |W_ij| in Wanda's groups (the paper's comparison, its Table 7).
Head importance: Michel, Levy, Neubig, "Are Sixteen Heads Really Better than One?", NeurIPS
2019, arXiv 1905.10650. I_h = E_x |dL/d xi_h| (eq. 2) for a gate xi_h on each head, normalised
per layer by its L2 norm, the least important heads masked in rounds, importance recomputed each
round (sec. 4.2).

Calibration: `calib_samples` training examples drawn with the session's seed; layers pruned in
order, each from the inputs the already-pruned earlier layers produce (calib.py). One-shot before
training, then the session's epochs fine-tune with the mask held; `retrain_free` holds every
weight as pruned instead (the papers' setting). Math: math.py; records: records.py; every
difference from the authors' code: docs/methods.md, "Wanda, SparseGPT, head importance".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ...config import ConfigError, SessionConfig, param
from ...masks import Layer, Masks, apply_masks, filter_param_masks, n_prune, prunable_layers
from ..base import Context, Method, nm_field, register
from .calib import Gates, Pruned, attention_modules, calibration, importance, sequential
from .math import (
    BLOCKSIZE,
    PERCDAMP,
    InputStats,
    least_important,
    normalize_importance,
    prune_mask,
    reconstruction_error,
    round_counts,
    sparsegpt,
    wanda_scores,
)
from .records import CHANNELS, HEAD_ROUNDS, HEAD_SCORES, LAYER_STATS, OUTCOMES, POINTS


def calib_field() -> int:
    return param(128, "Training examples the one-shot prune calibrates on (the papers: 128 "
                      "sequences), drawn with the session's seed; more: steadier input norms "
                      "and Hessians, slower.", min=1, max=1_000_000)


def retrain_free_field() -> bool:
    return param(False, "Hold every weight as pruned for the whole session (the papers' "
                        "retrain-free setting: the epochs run but change no weight and no "
                        "BatchNorm statistic); off: the epochs fine-tune the pruned model.")


@dataclass(frozen=True)
class Params:
    calib_samples: int = calib_field()
    retrain_free: bool = retrain_free_field()
    points: int = param(300, "Weights sampled per layer for the |W| vs ||X_j|| scatter; 0 "
                             "records none.", min=0, max=2000)
    nm: str = nm_field()


@dataclass(frozen=True)
class SparseGPTParams(Params):
    blocksize: int = param(BLOCKSIZE, "Columns whose mask is chosen together and whose update "
                                      "is applied lazily (the authors' 128).", min=1, max=65536)
    percdamp: float = param(PERCDAMP, "Damping added to diag H, as a fraction of its mean (the "
                                      "authors' 0.01): larger is steadier, less exact.",
                            min=0.0, max=1.0, step=0.005)


@dataclass(frozen=True)
class HeadParams:
    calib_samples: int = calib_field()
    retrain_free: bool = retrain_free_field()
    rounds: int = param(5, "Rounds the heads are removed in, importance recomputed before "
                           "each (5 at rate 0.5 removes 10% of the heads a round, the "
                           "bertology script's step).", min=1, max=100)


PAPER = dict(retrain_free=True, calib_samples=128)
INTERACTIVE = dict(retrain_free=False, calib_samples=128)


class RetrainFree:
    """The `retrain_free` switch: after the prune, no optimizer step changes a weight (every
    gradient is dropped, so SGD and Adam skip the parameter: no update, no momentum, no weight
    decay) and BatchNorm statistics are frozen (momentum 0)."""

    p: Any

    def freeze(self, ctx: Context) -> None:
        if not self.p.retrain_free:
            return
        for m in ctx.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0
        ctx.summary["retrain_free"] = True

    def after_backward(self, ctx: Context) -> None:
        if self.p.retrain_free:
            for p in ctx.model.parameters():
                p.grad = None


class Calibrated(RetrainFree, Method):
    """One-shot, layer by layer from calibration inputs; subclasses score (and update) a layer."""

    Params = Params
    hessian: ClassVar[bool] = False        # collect SparseGPT's H (else input norms only)
    presets = {"paper": PAPER, "interactive": INTERACTIVE}
    recovery_hint = ("turn retrain_free off, or give the session more epochs to fine-tune.")

    def select_layers(self, model: nn.Module) -> list[Layer]:
        return self.patterned(_layers(model))

    def check(self, model: nn.Module) -> None:
        if not _layers(model):
            raise ConfigError(f"{self.name} prunes linear layers (and convs), but this model has "
                              f"none besides its classifier; pick a model with hidden linear "
                              f"layers (mlp, a transformer) or convs.")
        super().check(model)

    def target(self, ctx: Context) -> float:
        return ctx.config.rate

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Any) -> float | None:
        return 0.0

    def prune(self, w: torch.Tensor, stats: InputStats
              ) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, float]]:
        """(the updated weight matrix or None, the keep mask, extra llm_layers fields) at the
        session's rate (self.rate, set before the prune)."""
        raise NotImplementedError

    def before_training(self, ctx: Context) -> None:
        started = time.perf_counter()
        ctx.summary.update(self.pattern_summary())
        batches = calibration(ctx.data, self.p.calib_samples, ctx.config.seed, ctx.device)
        self.rate = ctx.config.rate
        masks: Masks = {}
        for order, done in enumerate(sequential(ctx.model, ctx.layers, batches, self.hessian,
                                                self.prune)):
            masks[done.layer.param] = done.mask
            if order == 0:
                ctx.record.scalar("calib_tokens", done.stats.tokens)
            self.record_layer(ctx, done, order)
        ctx.masks = masks
        apply_masks(ctx.model, masks)
        seconds = time.perf_counter() - started
        ctx.record.scalar("oneshot_seconds", seconds)
        ctx.summary["oneshot_seconds"] = round(seconds, 3)
        ctx.mark_pruned()
        self.freeze(ctx)

    def record_layer(self, ctx: Context, done: Pruned, order: int) -> None:
        """llm_layers, llm_channels, llm_points and the layer's outlier ratio."""
        layer, w, stats, keep = done.layer, done.w, done.stats, done.keep
        norms = stats.norms
        magnitude = prune_mask(w.abs(), ctx.config.rate, self.pattern) == 0
        wanda = prune_mask(wanda_scores(w, norms), ctx.config.rate, self.pattern) == 0
        saved, lost = magnitude & ~wanda, wanda & ~magnitude
        LAYER_STATS.write(
            ctx.record, layer=layer.name, order=order, group=done.group, rows=w.shape[0],
            columns=w.shape[1], tokens=stats.tokens, sparsity=float((keep == 0).float().mean()),
            disagree=float((saved | lost).float().mean()),
            dead_inputs=int((stats.sq_norms == 0).sum()), **done.extra)
        median = float(norms.median())
        if median > 0:
            ctx.record.layer(layer.name, "input_norm_max_ratio", float(norms.max()) / median)
        cols = zip(norms.tolist(), w.abs().mean(0).tolist(), (keep == 0).float().mean(0).tolist(),
                   saved.sum(0).tolist(), lost.sum(0).tolist())
        for j, (norm, w_mean, pruned, s, lo) in enumerate(cols):
            CHANNELS.write(ctx.record, layer=layer.name, column=j, norm=norm, w_mean=w_mean,
                           pruned=pruned, saved=int(s), lost=int(lo))
        n = w.numel()
        if self.p.points <= 0 or n == 0:
            return
        idx = torch.randperm(n, generator=ctx.gen, device=ctx.gen.device)[:self.p.points].cpu()
        outcome = (magnitude.flatten().long() + 2 * wanda.flatten().long()).cpu()
        names = (OUTCOMES[0], OUTCOMES[2], OUTCOMES[3], OUTCOMES[1])   # by mag + 2 wanda
        flat_w, flat_n = w.abs().flatten().cpu(), norms.cpu().repeat(w.shape[0])
        for i in idx.tolist():
            POINTS.write(ctx.record, layer=layer.name, w=float(flat_w[i]), norm=float(flat_n[i]),
                         outcome=names[int(outcome[i])])


def _layers(model: nn.Module) -> list[Layer]:
    """Hidden linear layers and convs (not the first conv, not the classifier); grouped or
    depthwise convs are left out (their unfolded input is not one matrix)."""
    return [l for l in prunable_layers(model, first_conv=False, last_linear=False)
            if not (l.is_conv and l.module.groups != 1)]


@register
class MagnitudeRow(Calibrated):
    name = "magnitude_row"
    summary = ("One-shot per-output-row magnitude (Wanda's groups, score |W|): the comparison "
               "the Wanda paper draws.")

    def prune(self, w, stats):
        return None, prune_mask(w.abs(), self.rate, self.pattern), {}


@register
class Wanda(Calibrated):
    name = "wanda"
    summary = ("Wanda: one-shot, prune the lowest |W| * ||X_j|| in each output row (input "
               "norms from calibration), no weight update.")

    def prune(self, w, stats):
        return None, prune_mask(wanda_scores(w, stats.norms), self.rate, self.pattern), {}


@register
class SparseGPT(Calibrated):
    name = "sparsegpt"
    summary = ("SparseGPT: one-shot, layer by layer, mask and optimal-brain-surgeon weight "
               "update from the calibration inputs' Hessian.")
    Params = SparseGPTParams
    hessian = True

    def prune(self, w, stats):
        rate = self.rate
        new, keep, losses = sparsegpt(w, stats.H, rate, self.pattern, self.p.blocksize,
                                      self.p.percdamp)
        magnitude = prune_mask(w.abs(), rate, self.pattern)
        wanda = prune_mask(wanda_scores(w, stats.norms), rate, self.pattern)

        def err(w_new: torch.Tensor) -> float:
            return reconstruction_error(w, w_new, stats.H, stats.nsamples)

        return new, keep, dict(err_magnitude=err(w * magnitude), err_wanda=err(w * wanda),
                               err_mask=err(w * keep), err_sparsegpt=err(new),
                               loss_sparsegpt=float(losses.sum()))


@register
class HeadImportance(RetrainFree, Method):
    name = "head_importance"
    summary = ("Michel et al.'s gradient head importance: the least important attention heads "
               "(|dL/d gate|) removed in rounds; models without attention: output units.")
    Params = HeadParams
    presets = {"paper": PAPER, "interactive": INTERACTIVE}
    recovery_hint = Calibrated.recovery_hint

    def select_layers(self, model: nn.Module) -> list[Layer]:
        attn = attention_modules(model)
        if attn:
            return [Layer(f"{n}.{part}", getattr(m, part)) for n, m in attn
                    for part in ("c_attn", "c_proj")]
        return _layers(model)

    def check(self, model: nn.Module) -> None:
        if not self.select_layers(model):
            raise ConfigError("head_importance gates attention heads (modules with n_head, "
                              "c_attn, c_proj) or, without them, the output units of hidden "
                              "linear layers and convs; this model has neither besides its "
                              "classifier.")

    def target(self, ctx: Context) -> float:
        return ctx.config.rate

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Any) -> float | None:
        return 0.0

    def before_training(self, ctx: Context) -> None:
        started = time.perf_counter()
        batches = calibration(ctx.data, self.p.calib_samples, ctx.config.seed, ctx.device)
        attn = attention_modules(ctx.model)
        heads = bool(attn)
        units = ([(n, m, m.n_head) for n, m in attn] if heads else
                 [(l.name, l.module, l.module.weight.shape[0]) for l in ctx.layers])
        active = [torch.ones(n, dtype=torch.bool) for _, _, n in units]
        total = sum(n for _, _, n in units)
        rounds = self.p.rounds
        if heads:     # one ranking over every head (Michel et al.)
            plan = [round_counts(n_prune(total, ctx.config.rate), rounds)]
        else:         # every layer loses the rate of its units, so the weight rate is met
            plan = [round_counts(n_prune(n, ctx.config.rate), rounds) for _, _, n in units]
        rounds = max(len(p) for p in plan)
        plan = [p + [0] * (rounds - len(p)) for p in plan]
        label = "head" if heads else "unit"
        self.round_row(ctx, 0, 0, total, label)
        for r in range(rounds):
            scores = [normalize_importance(s).cpu() for s in
                      importance(ctx.model, Gates(units, heads), batches)]
            if heads:
                cut = least_important(torch.cat(scores), torch.cat(active), plan[0][r])
                cut_per = list(torch.split(cut, [n for _, _, n in units]))
            else:
                cut_per = [least_important(s, a, plan[i][r])
                           for i, (s, a) in enumerate(zip(scores, active))]
            for i, (name, _, _) in enumerate(units):
                status = ["removed" if c else "active" if a else "gone"
                          for a, c in zip(active[i].tolist(), cut_per[i].tolist())]
                for h, (imp, st) in enumerate(zip(scores[i].tolist(), status)):
                    HEAD_SCORES.write(ctx.record, round=r + 1, layer=name, head=h,
                                      importance=imp, status=st)
                active[i] = active[i] & ~cut_per[i]
            ctx.masks = self.masks(ctx, units, active, heads)
            apply_masks(ctx.model, ctx.masks)
            removed = total - sum(int(a.sum()) for a in active)
            self.round_row(ctx, r + 1, removed, total, label)
        seconds = time.perf_counter() - started
        ctx.record.scalar("oneshot_seconds", seconds)
        ctx.summary["oneshot_seconds"] = round(seconds, 3)
        ctx.summary[f"{label}s_gated"] = total - sum(int(a.sum()) for a in active)
        ctx.mark_pruned()
        self.freeze(ctx)

    def round_row(self, ctx: Context, r: int, removed: int, total: int, unit: str) -> None:
        quality = ctx.evaluate()
        HEAD_ROUNDS.write(ctx.record, round=r, removed=removed, total=total,
                          accuracy=quality["accuracy"], loss=quality["loss"], unit=unit)

    def masks(self, ctx: Context, units: list, active: list[torch.Tensor], heads: bool
              ) -> Masks:
        out: Masks = {}
        if heads:
            for (name, m, _n), keep in zip(units, active):
                out.update(head_masks(name, m, keep))
            return out
        for layer, keep in zip(ctx.layers, active):
            out.update(filter_param_masks(layer, keep.to(layer.module.weight)))
        return out


def head_masks(name: str, attn: nn.Module, keep: torch.Tensor) -> Masks:
    """Masks removing the heads `keep` marks False: their q, k and v rows of c_attn (and bias)
    and their input columns of c_proj."""
    w = attn.c_attn.weight
    per_head = keep.to(w).repeat_interleave(attn.head_dim)          # (n_embd,)
    rows = per_head.repeat(3)                                        # [q | k | v]
    out = {f"{name}.c_attn.weight": rows.view(-1, 1).expand_as(w).clone(),
           f"{name}.c_proj.weight": per_head.view(1, -1).expand_as(attn.c_proj.weight).clone()}
    if attn.c_attn.bias is not None:
        out[f"{name}.c_attn.bias"] = rows.clone()
    return out
