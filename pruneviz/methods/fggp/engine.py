"""FGGP: Fixed-rate Gradient-First Gradual Pruning, and GraNet, both on GMP's code path.

Zhu, Bezek, Goksel, "Fixed-rate Gradient-First Gradual Pruning", SCIA 2025, arXiv 2411.05500.
GraNet: Liu et al., "Sparse Training via Boosting Pruning Plasticity with Neuroregeneration",
NeurIPS 2021, arXiv 2106.10404.

Both subclass GMP (gmp.py) and replace only `choose`. FGGP, one pruning step of N weights,
`already` pruned: to_prune = floor(N (1 - d(t))) - already; the candidates are the
floor(rho * remain) active weights with the smallest |g| (rho fixed, 0.5); prune the to_prune
smallest |w| among them (|w| before the optimizer step by default, as the authors; `weights`);
no regrowth, and to_prune > floor(rho * remain) is a ConfigError.
GraNet: prune the to_prune + to_add smallest |w|, regrow the to_add inactive weights with the
largest |g|, to_add = floor((remain - to_prune) c(t)), c(t) = c_f + (c_i - c_f)(1 + cos(pi t /
T_end)) / 2. With an N:M pattern (`nm`) both work layer by layer as GMP does: FGGP's score
(candidates first, each by |w|) or GraNet's cut and regrowth pick which weights go, never below
N of a group of M. Records: records.py. Criterion toggles, defaults and fidelity choices:
docs/methods.md, "FGGP, GMP, GraNet".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from ...config import ConfigError, SessionConfig, param
from ...masks import Masks, nm_prune, nm_pruned
from ..base import Context, register
from .gmp import GMP
from .gmp import Params as GMPParams
from .math import (
    gradient_first,
    prune_every,
    pruning_steps,
    ranks,
    regrow_fraction,
    smallest,
    t_end,
    too_aggressive,
)
from .records import OUTCOMES, SCATTER, STEPS

CRITERIA = ("gradient_first", "gw", "rank_sum")

# The paper's protocol (docs/methods.md, FGGP); dT = 2000 at batch 64.
PAPER = dict(epochs=160, batch_size=64, start="scratch", optimizer="sgd", lr=0.1, momentum=0.9,
             nesterov=True, weight_decay=5e-4, lr_schedule="step", lr_milestones=(0.5, 0.75),
             lr_gamma=0.1, label_smoothing=0.1, end=0.8, every=2000, init_density=1.0)
# A short digits session from the cached dense start; every=0 is T_end // 50, the paper's share.
INTERACTIVE = dict(epochs=10, batch_size=64, start="dense", optimizer="sgd", lr=0.01,
                   momentum=0.9, nesterov=True, weight_decay=5e-4, lr_schedule="cosine",
                   label_smoothing=0.1, end=0.8, every=0, init_density=1.0)


@dataclass(frozen=True)
class FGGPParams(GMPParams):
    rho: float = param(0.5, "Fixed fraction of the remaining weights, those with the smallest "
                            "|g|, that form the candidate set (the paper's 0.5, not annealed).",
                       min=0.01, max=1.0, step=0.05)
    criterion: str = param("gradient_first", "gradient_first: smallest |w| among the rho "
                                             "smallest |g| (FGGP); gw: smallest |g*w|; "
                                             "rank_sum: smallest rank(|w|) + rank(|g|).",
                           choices=CRITERIA)
    scatter: int = param(200, "Weights sampled per pruning step for the (|g|, |w|, outcome) "
                              "scatter; 0 records none.", min=0, max=400)
    weights: str = param("pre", "Which |w| a pruning step ranks: pre = the weights the "
                                "minibatch's gradient was taken at, before the optimizer step "
                                "(the authors' code); post = after the step.",
                         choices=("pre", "post"))


@dataclass(frozen=True)
class GraNetParams(GMPParams):
    c_init: float = param(0.5, "Regrowth fraction c(t) at the first pruning step (of the weights "
                               "left after the increment).", min=0.0, max=1.0)
    c_final: float = param(0.005, "Regrowth fraction c(t) at T_end (cosine decay in between).",
                           min=0.0, max=1.0)
    scatter: int = param(200, "Weights sampled per pruning step for the (|g|, |w|, outcome) "
                              "scatter; 0 records none.", min=0, max=400)


# -- the prunable weights as one vector (global ranking) ---------------------------------------
@dataclass
class Flat:
    """|w|, |g| and the current mask of every prunable weight, concatenated in layer order."""

    w: torch.Tensor
    g: torch.Tensor
    active: torch.Tensor       # bool: mask before this pruning step
    names: list[str]
    shapes: list[torch.Size]

    @classmethod
    def of(cls, ctx: Context, weights: list[torch.Tensor] | None = None) -> Flat:
        """From the layers' weights (or `weights`, one per layer), gradients and masks."""
        ws, gs = [], []
        for i, layer in enumerate(ctx.layers):
            weight = layer.module.weight if weights is None else weights[i]
            grad = layer.module.weight.grad
            grad = grad if grad is not None else torch.zeros_like(weight)
            ws.append(weight.detach().abs().flatten())
            gs.append(grad.detach().abs().flatten())
        names = [layer.param for layer in ctx.layers]
        return cls(torch.cat(ws), torch.cat(gs),
                   torch.cat([ctx.masks[n].flatten() for n in names]) > 0, names,
                   [ctx.masks[n].shape for n in names])

    def protected(self, floor: dict[str, torch.Tensor] | None) -> torch.Tensor | None:
        """GMP.floor's per-layer protection as one vector in this order (None: no floor)."""
        return None if floor is None else torch.cat([floor[n].flatten() for n in self.names])

    def masks(self, keep: torch.Tensor) -> Masks:
        return {k: v.to(self.w.dtype) for k, v in self.split(keep).items()}

    def split(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """A vector in this order as one weight-shaped view per layer."""
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = math.prod(shape)
            out[name] = vector[i:i + n].view(shape)
            i += n
        return out

    def keep(self, masks: Masks) -> torch.Tensor:
        """Per-layer masks as one bool vector in this order."""
        return torch.cat([masks[n].flatten() for n in self.names]) > 0


# -- the methods ---------------------------------------------------------------------------------
class SelectionRecords:
    """Writes `fggp_steps` and `fggp_scatter` (shared by FGGP and GraNet)."""

    p: FGGPParams | GraNetParams

    def record_selection(self, ctx: Context, f: Flat, keep: torch.Tensor, to_prune: int,
                         cut: torch.Tensor, candidates: torch.Tensor | None = None,
                         **fields: float | str | None) -> None:
        """`keep`: mask after the step; `cut`: indices removed by the cut (before any regrowth);
        `candidates`: FGGP's gradient-first candidate indices."""
        n = f.w.numel()
        cut_b = torch.zeros(n, dtype=torch.bool, device=f.w.device)
        cut_b[cut] = True
        removed = f.active & ~keep
        plain = torch.zeros_like(cut_b)
        plain[smallest(f.w, f.active.nonzero().squeeze(1), to_prune)] = True
        union = int((removed | plain).sum())
        jaccard = int((removed & plain).sum()) / union if union else 1.0
        remain = int(f.active.sum())
        restored = int((keep & (cut_b | ~f.active)).sum())
        STEPS.write(ctx.record, remain=remain, to_prune=to_prune,
                       candidates=remain if candidates is None else candidates.numel(),
                       pruned=cut.numel(), restored=restored,
                       revived=int((keep & ~f.active).sum()),
                       mag_cut=f.w[cut].max().item() if cut.numel() else None,
                       jaccard=jaccard, **{"regrow_fraction": None, "grad_cut": None,
                                           "score_cut": None, **fields})
        if self.p.scatter:
            self.record_scatter(ctx, f, keep, cut_b, candidates)

    def record_scatter(self, ctx: Context, f: Flat, keep: torch.Tensor, cut_b: torch.Tensor,
                       candidates: torch.Tensor | None) -> None:
        pool = (f.active | keep).nonzero().squeeze(1)
        pick = torch.randperm(pool.numel(), generator=ctx.gen, device=ctx.gen.device)
        idx = pool[pick[:self.p.scatter].to(pool.device)]
        code = torch.zeros(idx.numel(), dtype=torch.long, device=idx.device)   # kept
        if candidates is not None:
            cand_b = torch.zeros_like(cut_b)
            cand_b[candidates] = True
            code[cand_b[idx]] = 1
        was, now = f.active[idx], keep[idx]
        code[was & ~now] = 2
        code[was & now & cut_b[idx]] = 3
        code[~was & now] = 4
        for g, w, c in zip(f.g[idx].tolist(), f.w[idx].tolist(), code.tolist()):
            SCATTER.write(ctx.record, g=float(f"{g:.4g}"), w=float(f"{w:.4g}"),
                           outcome=OUTCOMES[c])


@register
class FGGP(SelectionRecords, GMP):
    name = "fggp"
    summary = ("Gradual pruning, gradient first: the smallest |w| among the fixed fraction rho "
               "of weights with the smallest |g|; cubic schedule, no regrowth.")
    Params = FGGPParams
    presets = {"paper": {**PAPER, "rho": 0.5, "criterion": "gradient_first"},
               "interactive": {**INTERACTIVE, "rho": 0.5, "criterion": "gradient_first"}}
    p: FGGPParams

    def before_training(self, ctx: Context) -> None:
        super().before_training(ctx)
        self.pre_step: list[torch.Tensor] | None = None
        if self.p.criterion == "gradient_first":
            self.check_plan(ctx)

    def after_backward(self, ctx: Context) -> None:
        # weights=pre: keep the weights this step's gradient belongs to, for the ranking.
        if self.p.weights == "pre" and self.is_pruning_step(ctx):
            self.pre_step = [l.module.weight.detach().clone() for l in ctx.layers]

    def check_plan(self, ctx: Context) -> None:
        """Fail before training if some pruning step would need more than the candidate set
        (exact: without regrowth every step lands on floor(N (1 - d(t))))."""
        n = sum(m.numel() for m in ctx.masks.values())
        already = n - int(sum(m.sum().item() for m in ctx.masks.values()))
        every = prune_every(ctx.total_steps, self.p.end, self.p.every)
        for t in pruning_steps(ctx.total_steps, self.p.end, self.p.every):
            to_prune = max(0, math.floor(n * (1.0 - self.density(ctx, t))) - already)
            if to_prune > math.floor(self.p.rho * (n - already)):
                raise ConfigError(too_aggressive(self.name, t, to_prune, n - already,
                                                 self.p.rho, every))
            already += to_prune

    def choose(self, ctx: Context, to_prune: int) -> Masks:
        pre, self.pre_step = getattr(self, "pre_step", None), None
        if to_prune == 0 and self.pattern is None:
            return ctx.masks
        # Without a snapshot (choose called outside a step) the weights have not moved yet.
        f = Flat.of(ctx, pre if self.p.weights == "pre" else None)
        if self.pattern is not None:
            return self.choose_nm(ctx, f)
        candidates, fields = None, {}
        w, g = f.w, f.g
        protect = f.protected(self.floor(ctx))
        if protect is not None:         # the floor's weights are never candidates nor cut
            w, g = torch.where(protect, torch.inf, w), torch.where(protect, torch.inf, g)
        if self.p.criterion == "gradient_first":
            remain = int(f.active.sum())
            if to_prune > math.floor(self.p.rho * remain):
                every = prune_every(ctx.total_steps, self.p.end, self.p.every)
                raise ConfigError(too_aggressive(self.name, ctx.step, to_prune, remain,
                                                 self.p.rho, every))
            cut, candidates = gradient_first(w, g, f.active, to_prune, self.p.rho)
            fields["grad_cut"] = f.g[candidates].max().item()
        else:
            idx = f.active.nonzero().squeeze(1)
            if self.p.criterion == "gw":
                score = f.w * f.g
            else:
                score = torch.zeros_like(f.w)
                score[idx] = (ranks(f.w[idx]) + ranks(f.g[idx])).to(score.dtype)
            if protect is not None:
                score = torch.where(protect, torch.inf, score)
            cut = smallest(score, idx, to_prune)
            fields["score_cut"] = score[cut].max().item()
        keep = f.active.clone()
        keep[cut] = False
        self.record_selection(ctx, f, keep, to_prune, cut, candidates,
                              criterion=self.p.criterion, **fields)
        return f.masks(keep)

    def choose_nm(self, ctx: Context, f: Flat) -> Masks:
        """The N:M step: the criterion's score (gradient_first: the rho candidates first, each
        by |w|; gw: |g*w|; rank_sum) prunes layer by layer (GMP.choose_layerwise)."""
        idx = f.active.nonzero().squeeze(1)
        candidates, fields = None, {}
        if self.p.criterion == "gradient_first":
            candidates = smallest(f.g, idx, math.floor(self.p.rho * idx.numel()))
            # non-candidates rank after every candidate, among themselves by |w|
            score = f.w + (f.w.max() + 1.0)
            score[candidates] = f.w[candidates]
            fields["grad_cut"] = f.g[candidates].max().item() if candidates.numel() else None
        elif self.p.criterion == "gw":
            score = f.w * f.g
        else:
            score = torch.zeros_like(f.w)
            score[idx] = (ranks(f.w[idx]) + ranks(f.g[idx])).to(score.dtype)
        masks = self.choose_layerwise(ctx, f.split(score))
        if masks is ctx.masks:
            return masks
        keep = f.keep(masks)
        cut = (f.active & ~keep).nonzero().squeeze(1)
        if self.p.criterion != "gradient_first":
            fields["score_cut"] = score[cut].max().item() if cut.numel() else None
        self.record_selection(ctx, f, keep, cut.numel(), cut, candidates,
                              criterion=self.p.criterion, **fields)
        return masks


@register
class GraNet(SelectionRecords, GMP):
    name = "granet"
    summary = ("Gradual magnitude pruning with gradient regrowth: cut to_prune + to_add smallest "
               "|w|, regrow the to_add largest |g|, to_add cosine-decayed (GraNet).")
    Params = GraNetParams
    presets = {"paper": {**PAPER, "c_init": 0.5, "c_final": 0.005},
               "interactive": {**INTERACTIVE, "c_init": 0.5, "c_final": 0.005}}
    p: GraNetParams

    @classmethod
    def schedule(cls, config: SessionConfig, params: GraNetParams) -> pd.DataFrame:
        base = super().schedule(config, params)
        end = params.end * config.epochs
        c = [regrow_fraction(e, end, params.c_init, params.c_final) if e <= end else None
             for e in base.epoch]
        return pd.concat([base, pd.DataFrame({"epoch": base.epoch, "series": "regrowth fraction",
                                              "value": c}).dropna()], ignore_index=True)

    def regrow_fraction(self, ctx: Context) -> float:
        return regrow_fraction(ctx.step, t_end(ctx.total_steps, self.p.end), self.p.c_init,
                               self.p.c_final)

    def choose(self, ctx: Context, to_prune: int) -> Masks:
        f = Flat.of(ctx)
        if self.pattern is not None:
            return self.choose_nm(ctx, f)
        idx = f.active.nonzero().squeeze(1)
        c = self.regrow_fraction(ctx)
        to_add = math.floor((idx.numel() - to_prune) * c)
        w, protect = f.w, f.protected(self.floor(ctx))
        if protect is not None:         # cut (and so regrow) only what the floor leaves
            w = torch.where(protect, torch.inf, w)
            to_add = max(0, min(to_add, idx.numel() - int(protect.sum()) - to_prune))
        if to_prune + to_add == 0:
            return ctx.masks
        cut = smallest(w, idx, to_prune + to_add)
        keep = f.active.clone()
        keep[cut] = False
        fields = {"regrow_fraction": c, "criterion": "granet"}
        if to_add:
            dead = (~keep).nonzero().squeeze(1)
            grow = dead[torch.topk(f.g[dead], to_add, sorted=False).indices]
            keep[grow] = True
            fields["grad_cut"] = f.g[grow].min().item()
            self.reset_state(ctx, f, keep & ~f.active)
        self.record_selection(ctx, f, keep, to_prune, cut, **fields)
        return f.masks(keep)

    def choose_nm(self, ctx: Context, f: Flat) -> Masks:
        """The N:M step, layer by layer: cut the layer's increment plus to_add smallest |w| that
        are not among their group's N largest (masks.nm_prune), then regrow the to_add dead
        weights with the largest |g|. to_add is capped by what the pattern leaves free, so at
        T_end, where every group must hold exactly N, nothing regrows."""
        n, m = self.pattern
        density, c = self.density(ctx, ctx.step), self.regrow_fraction(ctx)
        w, g, before = f.split(f.w), f.split(f.g), f.split(f.active)
        keep, pruned_total, cut_total = {}, 0, []
        for name in f.names:
            mask, remain = ctx.masks[name], int(before[name].sum())
            to_prune = max(0, nm_pruned(mask.numel(), density, n, m) - (mask.numel() - remain))
            free = remain - mask.numel() // m * n
            to_add = max(0, min(math.floor((remain - to_prune) * c), free - to_prune))
            new = nm_prune(w[name], mask, n, m, to_prune + to_add).flatten()
            cut_total.append(before[name].flatten() & (new == 0))
            if to_add:
                dead = (new == 0).nonzero().squeeze(1)
                new[dead[torch.topk(g[name].flatten()[dead], to_add, sorted=False).indices]] = 1.0
            keep[name] = new.view_as(mask)
            pruned_total += to_prune
        keep_v = f.keep(keep)
        if torch.equal(keep_v, f.active):
            return ctx.masks
        cut = torch.cat(cut_total).nonzero().squeeze(1)
        self.reset_state(ctx, f, keep_v & ~f.active)
        self.record_selection(ctx, f, keep_v, pruned_total, cut, regrow_fraction=c,
                              criterion="granet")
        return keep

    @staticmethod
    @torch.no_grad()
    def reset_state(ctx: Context, f: Flat, revived: torch.Tensor) -> None:
        """Zero the optimizer state (momentum) of weights regrown after an earlier prune: their
        buffers kept collecting gradients while masked."""
        masks = f.masks(revived)
        params = dict(ctx.model.named_parameters())
        for name, m in masks.items():
            for value in ctx.optimizer.state.get(params[name], {}).values():
                if torch.is_tensor(value) and value.shape == m.shape:
                    value.mul_(1 - m)
