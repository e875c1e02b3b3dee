"""One-shot baselines: prune once at the start, then fine-tune with the mask held fixed.

- dense: no pruning; the control every comparison needs (also trains the dense baselines).
- random: each layer loses the same fraction of weights, chosen uniformly at random.
- l1: each layer loses its smallest-|w| fraction (torch.nn.utils.prune.l1_unstructured).
  Both take an N:M pattern (`nm`): every group of M weights along the input dimension keeps
  its N largest |w| (random: N chosen at random).
- global_l1: one |w| ranking across layers (torch.nn.utils.prune.global_unstructured).
- l2_filter: each conv loses the fraction of filters with the smallest L2 norm
  (torch.nn.utils.prune.ln_structured(n=2, dim=0)), with their BatchNorm gamma and beta; the
  kept count rounded to a multiple of round_to (methods/roundto.py).

Counts follow torch.nn.utils.prune: round(rate * n) units pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from ..config import SessionConfig, param
from ..masks import (
    Layer,
    Masks,
    apply_masks,
    check_floor,
    filter_mask,
    filter_norms,
    filter_param_masks,
    global_magnitude,
    keep_top,
    layer_floor,
    layerwise_magnitude,
    n_prune,
    nm_mask,
    prunable_layers,
)
from ..records import declare
from ..transformers import is_transformer, structure_param_masks, structure_scores
from .base import Context, Method, nm_field, register
from .roundto import RoundTo, preview_rows, round_mode_field, round_to_field

LAYERS = declare("layer", {
    "filters_kept": "filters the one-shot filter prune keeps in the layer (after round_to)",
})


@register
class Dense(Method):
    name = "dense"
    summary = "No pruning: the dense control (rate is ignored)."

    def target(self, ctx: Context) -> float:
        return 0.0


@dataclass(frozen=True)
class Params:
    first_conv: bool = param(False, "Also prune the network's first conv (it has few weights "
                                    "and every later layer depends on it).")
    last_linear: bool = param(False, "Also prune the classifier layer.")


def max_layer_sparsity_field() -> float:
    return param(1.0, "No layer is pruned past this fraction: a per-layer density floor for the "
                      "global ranking, which otherwise can empty a layer at high rates and cut "
                      "the network in two; 1 = no floor, 0.99 keeps at least 1% of every layer.",
                 min=0.5, max=1.0, step=0.005)


@dataclass(frozen=True)
class LayerParams(Params):
    nm: str = nm_field()


@dataclass(frozen=True)
class GlobalParams(Params):
    max_layer_sparsity: float = max_layer_sparsity_field()


class OneShot(Method):
    """Prune to the target before training; the mask then stays fixed while fine-tuning."""

    Params = LayerParams

    def select_layers(self, model: nn.Module) -> list[Layer]:
        return self.patterned(prunable_layers(model, first_conv=self.p.first_conv,
                                              last_linear=self.p.last_linear))

    def masks(self, ctx: Context) -> Masks:
        raise NotImplementedError

    def target(self, ctx: Context) -> float:
        return ctx.config.rate

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Any) -> float | None:
        return 0.0

    def before_training(self, ctx: Context) -> None:
        ctx.summary.update(self.pattern_summary())
        ctx.masks = self.masks(ctx)
        apply_masks(ctx.model, ctx.masks)
        ctx.mark_pruned()


@register
class Random(OneShot):
    name = "random"
    summary = "Prune the same fraction of every layer uniformly at random (the floor to beat)."

    def masks(self, ctx: Context) -> Masks:
        out = {}
        for layer in ctx.layers:
            w = layer.module.weight
            scores = torch.rand(w.shape, generator=ctx.gen, device=ctx.gen.device).to(w.device)
            out[layer.param] = (keep_top(scores, w.numel() - n_prune(w.numel(), ctx.config.rate))
                                if self.pattern is None else nm_mask(scores, *self.pattern))
        return out


@register
class L1(OneShot):
    name = "l1"
    summary = "Layer-wise unstructured magnitude pruning, one-shot, then fine-tune."

    def masks(self, ctx: Context) -> Masks:
        weights = {l.param: l.module.weight.detach() for l in ctx.layers}
        if self.pattern is not None:
            return {k: nm_mask(w.abs(), *self.pattern) for k, w in weights.items()}
        return layerwise_magnitude(weights, ctx.config.rate)


@register
class GlobalL1(OneShot):
    name = "global_l1"
    summary = "Global unstructured magnitude pruning (one ranking over all layers), then fine-tune."
    Params = GlobalParams

    def masks(self, ctx: Context) -> Masks:
        scores = {l.param: l.module.weight.detach().abs() for l in ctx.layers}
        if self.p.max_layer_sparsity < 1.0:
            check_floor([s.numel() for s in scores.values()], ctx.config.rate,
                        self.p.max_layer_sparsity, self.name)
            floor = layer_floor(scores, self.p.max_layer_sparsity)
            scores = {k: torch.where(floor[k], torch.inf, s) for k, s in scores.items()}
        return global_magnitude(scores, ctx.config.rate)


@dataclass(frozen=True)
class FilterParams:
    round_to: str = round_to_field()
    round_mode: str = round_mode_field()


@register
class L2Filter(RoundTo, OneShot):
    name = "l2_filter"
    summary = "Per-layer filter pruning by L2 norm (with BN gamma/beta), one-shot, then fine-tune."
    kind = "filter"
    Params = FilterParams

    structures = True       # on vit_tiny and gpt_tiny: attention heads and MLP neurons

    def select_layers(self, model: nn.Module) -> list[Layer]:
        if is_transformer(model):       # the blocks' linears: heads' and neurons' weights
            return prunable_layers(model, first_conv=False, last_linear=False)
        return Method.select_layers(self, model)

    @classmethod
    def schedule(cls, config: SessionConfig, params: Any) -> Any:
        """The target, and the model's pruned filters once rounded (round_to)."""
        df = super().schedule(config, params)
        plan = [(x, lambda n: n - n_prune(n, config.rate)) for x in (0.0, float(config.epochs))]
        rows = preview_rows(cls, config, params, plan, sparsity=True)
        return pd.concat([df, pd.DataFrame(rows, columns=df.columns)], ignore_index=True) \
            if rows else df

    def masks(self, ctx: Context) -> Masks:
        if is_transformer(ctx.model):
            return self.structure_masks(ctx)
        self.resolve_round_to(ctx)
        out: Masks = {}
        pruned = total = 0
        for layer in ctx.layers:
            w = layer.module.weight
            n = w.shape[0]
            kept = self.rounded(n - n_prune(n, ctx.config.rate), n)
            fmask = filter_mask(filter_norms(w), n - kept)
            out.update(filter_param_masks(layer, fmask))
            ctx.record.layer(layer.name, "filters_kept", kept)    # the rounded count
            pruned, total = pruned + n - kept, total + n
        self.achieved(ctx, pruned, total)
        return out

    def structure_masks(self, ctx: Context) -> Masks:
        """A transformer's heads and MLP neurons, each block's own `rate` of them (kept count
        rounded to round_to, at least one) with the lowest L2 norm over all of a structure's
        weights (the filter's norm, extended: q, k, v rows and c_proj columns of a head; c_fc
        row and c_proj column of a neuron)."""
        self.resolve_round_to(ctx)
        out: Masks = {}
        pruned = total = 0
        for name, kind, scores in structure_scores(ctx.model):
            n = scores.numel()
            kept = self.rounded(n - min(n_prune(n, ctx.config.rate), n - 1), n)
            keep = filter_mask(scores, n - kept)
            out.update(structure_param_masks(ctx.model, name, kind, keep))
            ctx.record.filters(name, "l2_norm", scores)
            ctx.record.filters(name, "mask", keep)
            pruned, total = pruned + int((keep == 0).sum().item()), total + n
        self.achieved(ctx, pruned, total)
        return out
