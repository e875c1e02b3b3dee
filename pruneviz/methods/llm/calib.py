"""Calibration for the llm family: the samples, the order layers are pruned in, the forward
passes that collect each layer's input statistics, and the gates of head importance.

Sequential, as the authors' default (sparsegpt opt.py lines 82-126, wanda lib/prune.py lines
137-207): layers are pruned group by group, a group being one block of `model.blocks` (every
layer of a block is scored from the inputs collected before the block is pruned) or one layer
outside blocks; each group's inputs come from a forward pass through the model whose earlier
groups are already pruned. Where the authors cache each block's input and run the block alone
(once to collect, once more pruned to feed the next), we run the model once on all calibration
samples and do both inside a forward pre-hook on each block (sequential()): the same inputs and
the same two passes per block, with no assumption on how blocks are chained or called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ConfigError
from ...data import DataBundle
from ...masks import Layer
from .math import InputStats, input_rows, matrix_weight, weight_matrix

CHUNK = 32       # samples per batch (head importance's gradients; the prune takes all at once)


class _Stop(Exception):
    """Raised once the last group has run: the rest of the model is not needed."""


def calibration(data: DataBundle, n: int, seed: int, device: torch.device
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` training examples drawn with the session's seed (the same for every method of a
    comparison), prepared as the training batches are (no augmentation), in chunks; for text,
    `n` windows of the model's context at seeded offsets of the training stream."""
    if getattr(data, "modality", "image") == "text":     # windows of a byte stream
        x, y = data.sample(n, seed)
        return [(x[i:i + CHUNK].to(device), y[i:i + CHUNK].to(device))
                for i in range(0, n, CHUNK)]
    total = len(data.train_x)
    if n > total:
        raise ConfigError(f"calib_samples={n} is more than the {total} training examples of "
                          f"{data.name}; set calib_samples to at most {total}.")
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    x, y = data.train_x[idx], data.train_y[idx]
    if x.dtype == torch.uint8 or x.is_floating_point():     # images; token ids pass as they are
        x = data.normalize(x.float().div(255) if x.dtype == torch.uint8 else x)
    return [(x[i:i + CHUNK].to(device), y[i:i + CHUNK].to(device)) for i in range(0, n, CHUNK)]


def task_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a classifier (N, C) or of a language model's (N, T, V) next tokens."""
    if logits.dim() == 3 and y.dim() == 2:
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())
    return F.cross_entropy(logits, y)


def groups(model: nn.Module, layers: list[Layer]) -> list[tuple[str, list[Layer]]]:
    """(name, layers) in pruning order: one group per block of `model.blocks` (nanoGPT's
    layout), one per layer elsewhere; ordered by the first layer of each in module order."""
    blocks = getattr(model, "blocks", None)
    prefixes: list[str] = []
    if isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        base = next(n for n, m in model.named_modules() if m is blocks)
        prefixes = [f"{base}.{i}" for i in range(len(blocks))]
    out: dict[str, list[Layer]] = {}
    for layer in layers:
        key = next((p for p in prefixes if layer.name.startswith(p + ".")), layer.name)
        out.setdefault(key, []).append(layer)
    return list(out.items())


@dataclass
class Pruned:
    """One layer as the sequential prune left it."""

    group: str
    layer: Layer
    w: torch.Tensor               # its weight matrix before pruning (weight_matrix order)
    stats: InputStats             # its calibration inputs
    keep: torch.Tensor            # keep mask, matrix order
    mask: torch.Tensor            # keep mask, weight shape
    extra: dict[str, float]       # what the scorer adds to llm_layers


Scorer = Callable[[torch.Tensor, InputStats],
                  tuple[torch.Tensor | None, torch.Tensor, dict[str, float]]]


def _stats_of(layer: Layer, hessian: bool) -> InputStats:
    return InputStats(weight_matrix(layer.module.weight).shape[1], hessian,
                      layer.module.weight.device)


def _group_stats(module: nn.Module, group: list[Layer], args: tuple, kwargs: dict,
                 hessian: bool, inside: list[bool]) -> dict[str, InputStats]:
    """The input statistics of each layer of a group, given the group's input: a lone layer's
    input is its own; a block runs once more on it (inside[0] set meanwhile) with hooks that
    collect each layer's input."""
    stats = {l.name: _stats_of(l, hessian) for l in group}
    if len(group) == 1 and group[0].module is module:
        stats[group[0].name].add(input_rows(module, args[0]), args[0].shape[0])
        return stats
    inner = [l.module.register_forward_hook(
        lambda m, a, o, s=stats[l.name]: s.add(input_rows(m, a[0]), a[0].shape[0]))
        for l in group]
    inside[0] = True
    try:
        module(*args, **kwargs)
    finally:
        inside[0] = False
        for h in inner:
            h.remove()
    return stats


def _prune_group(name: str, group: list[Layer], stats: dict[str, InputStats],
                 score: Scorer) -> list[Pruned]:
    """Score each layer of a group, write the scorer's update and zero the pruned weights."""
    out = []
    for layer in group:
        weight = layer.module.weight
        # a copy: a Linear's matrix is its weight, which the prune below changes in place
        w = weight_matrix(weight.detach()).float().clone()
        new, keep, extra = score(w, stats[layer.name])
        if new is not None:
            weight.copy_(matrix_weight(new, weight.shape).to(weight.dtype))
        mask = matrix_weight(keep, weight.shape).to(weight.dtype)
        weight.mul_(mask)
        out.append(Pruned(name, layer, w, stats[layer.name], keep, mask, extra))
    return out


@torch.no_grad()
def sequential(model: nn.Module, layers: list[Layer],
               batches: list[tuple[torch.Tensor, torch.Tensor]], hessian: bool,
               score: Scorer) -> list[Pruned]:
    """Prune `layers` group by group in one forward pass of every calibration sample at once.

    A forward pre-hook on each group's module (the block, or the lone layer) takes the group's
    input as the model, pruned so far, delivers it; runs the block once more on it with hooks
    that collect each layer's input statistics (a lone layer's input is its own); then for each
    layer takes `score(w, stats)` -> (updated matrix or None, keep mask, extra), writes the
    update and zeroes the pruned weights; and lets the block's real forward run pruned, so
    later groups see pruned outputs. Two passes per block, as the authors' collect and
    recompute loops; the model after the last group is not run."""
    found = groups(model, layers)
    modules = dict(model.named_modules())
    x = torch.cat([b[0] for b in batches])
    out: list[Pruned] = []
    inside = [False]        # the inner collecting pass is running

    def pre_hook(name: str, group: list[Layer]):
        done = False

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            nonlocal done
            if done:        # the inner pass below, or a module called twice: pruned once
                return
            done = True
            stats = _group_stats(module, group, args, kwargs, hessian, inside)
            out.extend(_prune_group(name, group, stats, score))
        return hook

    def stop(*_: object) -> None:
        if not inside[0]:
            raise _Stop

    owners = [modules[name] if name in modules and not (len(group) == 1 and name ==
                                                        group[0].name) else group[0].module
              for name, group in found]
    handles = [m.register_forward_pre_hook(pre_hook(name, group), with_kwargs=True)
               for m, (name, group) in zip(owners, found)]
    if owners:
        handles.append(owners[-1].register_forward_hook(stop))
    was = model.training
    model.eval()
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return out


# -- head importance's gates -------------------------------------------------------------------
def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with nanoGPT's attention layout: int n_head and head_dim, c_attn (rows [q|k|v],
    head h = rows h*head_dim:(h+1)*head_dim of each) and c_proj (head h = those input
    columns)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "n_head", None), int) and isinstance(
                getattr(m, "c_attn", None), nn.Linear) and isinstance(
                getattr(m, "c_proj", None), nn.Linear)]


class Gates:
    """A gate xi (ones, requires grad) per head of each attention module, applied as a forward
    pre-hook on its c_proj that multiplies head h's input slice by xi_h (no model change); for a
    model without attention, a gate per output unit of each layer (forward hook on its
    output)."""

    def __init__(self, units: list[tuple[str, nn.Module, int]], heads: bool) -> None:
        self.units, self.heads = units, heads
        self.xi = [torch.ones(n, requires_grad=True, device=_device(m)) for _, m, n in units]

    def __enter__(self) -> Gates:
        self.handles = []
        for (_, module, _n), xi in zip(self.units, self.xi):
            if self.heads:
                self.handles.append(module.c_proj.register_forward_pre_hook(_head_gate(xi)))
            else:
                self.handles.append(module.register_forward_hook(_unit_gate(xi)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _head_gate(xi: torch.Tensor):
    def gate(_module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        shape = x.shape
        return (x.view(*shape[:-1], xi.numel(), -1).mul(xi.view(-1, 1)).view(shape),
                *args[1:])
    return gate


def _unit_gate(xi: torch.Tensor):
    def gate(_module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        return out * (xi.view(1, -1, 1, 1) if out.dim() == 4 else xi)
    return gate


def importance(model: nn.Module, gates: Gates,
               batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Per gated module, mean over the calibration batches of |dL/d xi| (Michel et al.: I_h =
    E |dL/d xi_h|; each batch's gradient, as the Transformers bertology script accumulates it),
    with the model in eval mode and its parameters' gradients off."""
    was = model.training
    model.eval()
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    total = [torch.zeros_like(xi) for xi in gates.xi]
    try:
        with torch.enable_grad(), gates:
            for x, y in batches:
                grads = torch.autograd.grad(task_loss(model(x), y), gates.xi, allow_unused=True)
                for t, g in zip(total, grads):
                    if g is not None:
                        t += g.abs()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was)
    return [t / max(len(batches), 1) for t in total]

