"""GMP: gradual magnitude pruning on the cubic schedule, and the code path of FGGP and GraNet.

Zhu & Gupta, "To prune, or not to prune", ICLR-W 2018, arXiv 1710.01878. Implements the density
d(t) = d_f + (d_i - d_f)(1 - t / T_end)^3, T_end = floor(end * T); every dT steps while t <=
T_end, after optimizer.step(), the floor(N (1 - d(t))) - already smallest |w| among the active
prunable weights are pruned, ranked across layers; nothing regrows. A sparse start
(`init_density` < 1) is a random Erdos-Renyi-Kernel mask. With an N:M pattern (`nm`) every layer
is pruned to floor(n_l (1 - d(t))) on its own, never below N of any group of M, so each group
goes from M kept to exactly N at T_end (d(T_end) = N/M). Records: records.py. Defaults:
docs/methods.md, "FGGP, GMP, GraNet".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn as nn

from ...config import ConfigError, SessionConfig, param
from ...masks import (
    Layer,
    Masks,
    apply_masks,
    check_floor,
    erk_densities,
    layer_floor,
    nm_prune,
    nm_pruned,
    ones_like_layers,
    prunable_layers,
)
from ...schedules import cubic_density
from ..base import Context, Method, nm_field, register
from ..oneshot import max_layer_sparsity_field
from .math import prune_every, prune_smallest, t_end
from .records import PRUNE_STEPS


@dataclass(frozen=True)
class Params:
    end: float = param(0.8, "Fraction of training at which the final sparsity is reached "
                            "(T_end / T); later steps only fine-tune.", min=0.05, max=1.0)
    every: int = param(0, "Steps between pruning steps (dT); 0 = T_end / 50, about the paper's "
                          "50 pruning steps.", min=0, max=100000)
    first_conv: bool = param(False, "Also prune the first conv.")
    last_linear: bool = param(True, "Also prune the classifier layer.")
    init_density: float = param(1.0, "Density when pruning starts: 1 = dense start; below 1 = "
                                     "sparse start from a random ERK mask at this density "
                                     "(FGGP's sparse start uses 0.5).", min=0.01, max=1.0)
    max_layer_sparsity: float = max_layer_sparsity_field()
    nm: str = nm_field()

    def __post_init__(self) -> None:
        if self.nm and self.init_density < 1.0:
            raise ConfigError(f"nm={self.nm} starts from the dense weights and thins every group "
                              f"to N; a sparse start (init_density={self.init_density:g}) has no "
                              f"N:M groups to thin: set init_density=1 or leave nm empty.")


@dataclass(frozen=True)
class GMPParams(Params):
    scope: str = param("global", "global: one |w| ranking across layers (can empty a layer at "
                                 "high rates); layer: every layer pruned to the same density, "
                                 "as Zhu & Gupta's GMP (max_layer_sparsity then has no effect).",
                       choices=("global", "layer"))


@register
class GMP(Method):
    name = "gmp"
    summary = ("Gradual magnitude pruning on the cubic schedule, global ranking (or layer-wise, "
               "scope=layer), no regrowth.")
    Params = GMPParams

    def select_layers(self, model: nn.Module) -> list[Layer]:
        return self.patterned(prunable_layers(model, first_conv=self.p.first_conv,
                                              last_linear=self.p.last_linear))

    def density(self, ctx: Context, t: int) -> float:
        # with a pattern its own N/M, exact, rather than 1 - rate (which agrees within 5e-4)
        final = 1.0 - ctx.config.rate if self.pattern is None else self.pattern[0] / self.pattern[1]
        return cubic_density(t, t_end(ctx.total_steps, self.p.end), self.p.init_density, final)

    def target(self, ctx: Context) -> float:
        return 1.0 - self.density(ctx, ctx.step)

    recovery_hint = ("lower `end` (the fraction of training at which the final sparsity is "
                     "reached; 0.8 leaves a fifth of the session to recover).")

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Params) -> float | None:
        return params.end * config.epochs

    @classmethod
    def schedule(cls, config: SessionConfig, params: Params) -> pd.DataFrame:
        epochs = [config.epochs * i / 100 for i in range(101)]
        end = params.end * config.epochs
        return pd.DataFrame({"epoch": epochs, "series": "target sparsity",
                             "value": [1 - cubic_density(e, end, params.init_density,
                                                         1 - config.rate) for e in epochs]})

    def before_training(self, ctx: Context) -> None:
        d_init, d_final = self.p.init_density, 1.0 - ctx.config.rate
        ctx.summary.update(self.pattern_summary())
        if self.floored():
            check_floor([l.module.weight.numel() for l in ctx.layers], ctx.config.rate,
                        self.p.max_layer_sparsity, self.name)
        if d_init >= 1.0:
            ctx.masks = ones_like_layers(ctx.layers)
            return
        if d_init < d_final:
            raise ConfigError(f"{self.name} starts sparse at density {d_init:g}, already below "
                              f"the target density {d_final:g} (rate {ctx.config.rate:g}); raise "
                              f"the rate above {1 - d_init:g} or set init_density=1 (dense "
                              f"start).")
        ctx.masks = erk_masks(ctx.layers, d_init, ctx.gen)
        apply_masks(ctx.model, ctx.masks)

    def is_pruning_step(self, ctx: Context) -> bool:
        end = t_end(ctx.total_steps, self.p.end)
        every = prune_every(ctx.total_steps, self.p.end, self.p.every)
        return ctx.step <= end and (ctx.step % every == 0 or ctx.step == end)

    def choose(self, ctx: Context, to_prune: int) -> Masks:
        """New masks with `to_prune` more weights pruned: the smallest |w| among active ones.

        Called at every pruning step, also when `to_prune` is 0 (regrowing methods act then);
        returning `ctx.masks` itself means nothing changed."""
        scores = {l.param: l.module.weight.detach().abs() for l in ctx.layers}
        if getattr(self.p, "scope", "global") == "layer" or self.pattern is not None:
            return self.choose_layerwise(ctx, scores)
        if to_prune == 0:
            return ctx.masks
        floor = self.floor(ctx)
        if floor is not None:
            scores = {k: torch.where(floor[k], torch.inf, s) for k, s in scores.items()}
        return prune_smallest(scores, ctx.masks, to_prune)

    def choose_layerwise(self, ctx: Context, scores: dict[str, torch.Tensor]) -> Masks:
        """Zhu & Gupta's form: every layer pruned to floor(n_l (1 - d(t))) by its own `scores`
        (lowest first); with an N:M pattern never below N of any group (masks.nm_prune)."""
        density = self.density(ctx, ctx.step)
        out, changed = {}, False
        for name, score in scores.items():
            mask = ctx.masks[name]
            pruned = mask.numel() - int(mask.sum().item())
            if self.pattern is not None:
                k = nm_pruned(mask.numel(), density, *self.pattern) - pruned
                out[name] = nm_prune(score, mask, *self.pattern, k) if k > 0 else mask
            else:
                k = math.floor(mask.numel() * (1.0 - density)) - pruned
                out[name] = prune_smallest({name: score}, {name: mask}, k)[name] if k > 0 else mask
            changed = changed or k > 0
        return out if changed else ctx.masks

    def floored(self) -> bool:
        return (self.p.max_layer_sparsity < 1.0 and getattr(self.p, "scope", "global") == "global"
                and self.pattern is None)

    def floor(self, ctx: Context) -> dict[str, torch.Tensor] | None:
        """The active weights the per-layer floor protects from this step's cut (None: no
        floor): each layer's largest |w| that keep it at 1 - max_layer_sparsity density."""
        if not self.floored():
            return None
        return layer_floor({l.param: l.module.weight.detach().abs() for l in ctx.layers},
                           self.p.max_layer_sparsity, ctx.masks)

    def after_step(self, ctx: Context) -> None:
        if not self.is_pruning_step(ctx):
            return
        n = sum(m.numel() for m in ctx.masks.values())
        already = n - int(sum(m.sum().item() for m in ctx.masks.values()))
        density = self.density(ctx, ctx.step)
        # max(0, .): a sparse start's ERK rounding may leave it a few weights below d(0)
        to_prune = max(0, math.floor(n * (1.0 - density)) - already)
        masks = self.choose(ctx, to_prune)
        if masks is not ctx.masks:
            ctx.masks = masks
            apply_masks(ctx.model, ctx.masks)
        pruned_now = n - int(sum(m.sum().item() for m in ctx.masks.values()))
        achieved = 1.0 - pruned_now / n
        PRUNE_STEPS.write(ctx.record, t=ctx.step, target_density=density,
                       achieved_density=achieved, remain=n - already,
                       pruned=pruned_now - already)
        ctx.record.scalars({"target_density": density, "density": achieved})
        for layer in ctx.layers:
            ctx.record.layer(layer.name, "density", ctx.masks[layer.param].mean().item())
        if ctx.step == t_end(ctx.total_steps, self.p.end):
            ctx.mark_pruned()


def erk_masks(layers: list[Layer], density: float, gen: torch.Generator) -> Masks:
    """Random masks with Erdos-Renyi-Kernel layer densities and global density `density`: each
    layer keeps round(d_l * n_l) of its weights, chosen uniformly with `gen`."""
    shapes = {l.param: l.module.weight.shape for l in layers}
    densities = erk_densities(shapes, density)
    out = {}
    for l in layers:
        w = l.module.weight
        keep = torch.zeros(w.numel(), device=w.device, dtype=w.dtype)
        idx = torch.randperm(w.numel(), generator=gen, device=gen.device)
        keep[idx[:round(densities[l.param] * w.numel())].to(w.device)] = 1.0
        out[l.param] = keep.view_as(w)
    return out
