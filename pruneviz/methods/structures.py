"""A transformer's attention heads and MLP neurons seen as filters: the one view through which
the filter methods (pgmpf, sfp, asfp, pgp, rpgp, psfp) score, mask, scale and reset them.

A *unit* is one block's heads (`blocks.i.attn`) or its MLP neurons (`blocks.i.mlp`); each of its
structures owns slices of several parameters (transformers.py's layout): a head its q, k, v rows
of c_attn (weight and bias) and its input columns of c_proj; a neuron its row of c_fc (weight and
bias) and its column of mlp.c_proj. The shared output biases (c_proj.bias) belong to no
structure. A `Part` says, for one parameter, along which dimension and which structure owns each
index, so that every per-filter operation of a filter method becomes a reduction over the parts
(scores) or a broadcast onto them (masks, factors, gradient scaling, resets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..masks import Masks
from ..transformers import is_transformer

LABELS = {"attn": "head", "mlp": "neuron"}


@dataclass(frozen=True)
class Part:
    param: str               # parameter name in the model
    dim: int                 # the dimension the structures index
    owner: torch.Tensor      # long [param.shape[dim]]: the structure owning each index


@dataclass(frozen=True)
class Unit:
    name: str                # module name: blocks.i.attn or blocks.i.mlp
    kind: str                # "head" or "neuron"
    count: int               # structures in the unit
    weights: int             # weight elements (2-D parameters only) per structure
    parts: tuple[Part, ...]


def label(layer: str) -> str:
    """What one index of a per-filter record of `layer` is: head, neuron or filter."""
    return LABELS.get(layer.rpartition(".")[2], "filter")


def _unit(name: str, kind: str, count: int, parts: list[tuple[nn.Parameter | None, str, int,
                                                               torch.Tensor]]) -> Unit:
    out, weights = [], 0
    for p, param, dim, owner in parts:
        if p is None:
            continue
        out.append(Part(param, dim, owner.to(p.device)))
        if p.dim() >= 2:
            weights += p.numel() // count
    return Unit(name, kind, count, weights, tuple(out))


def units(model: nn.Module) -> list[Unit]:
    """Every block's heads, then its neurons, in block order."""
    out = []
    for i, block in enumerate(model.blocks):
        attn, mlp, a, m = block.attn, block.mlp, f"blocks.{i}.attn", f"blocks.{i}.mlp"
        inner, d = attn.n_head * attn.head_dim, attn.head_dim
        rows = (torch.arange(3 * inner) % inner) // d        # [q | k | v], head h's d rows each
        cols = torch.arange(inner) // d
        out.append(_unit(a, "head", attn.n_head, [
            (attn.c_attn.weight, f"{a}.c_attn.weight", 0, rows),
            (attn.c_attn.bias, f"{a}.c_attn.bias", 0, rows),
            (attn.c_proj.weight, f"{a}.c_proj.weight", 1, cols)]))
        hidden = torch.arange(mlp.c_fc.out_features)
        out.append(_unit(m, "neuron", mlp.c_fc.out_features, [
            (mlp.c_fc.weight, f"{m}.c_fc.weight", 0, hidden),
            (mlp.c_fc.bias, f"{m}.c_fc.bias", 0, hidden),
            (mlp.c_proj.weight, f"{m}.c_proj.weight", 1, hidden)]))
    return out


def _shape(part: Part, t: torch.Tensor) -> list[int]:
    return [-1 if d == part.dim else 1 for d in range(t.dim())]


@torch.no_grad()
def reduce(unit: Unit, tensors: dict[str, torch.Tensor],
           fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per structure, the sum of fn(t) over all its slices of `tensors` (keyed by parameter
    name: the weights, their gradients, ...); a missing tensor (None) adds nothing."""
    out = None
    for part in unit.parts:
        t = tensors.get(part.param)
        if t is None:
            continue
        per = fn(t.detach()).movedim(part.dim, 0).reshape(t.shape[part.dim], -1).sum(1)
        if out is None:
            out = torch.zeros(unit.count, dtype=per.dtype, device=per.device)
        out.index_add_(0, part.owner, per)
    return out


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def norms(unit: Unit, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The L2 norm of each structure over all its weights and biases (l2_filter's score)."""
    return reduce(unit, weights, torch.square).sqrt()


def factors(unit: Unit, weights: dict[str, torch.Tensor], factor: torch.Tensor) -> Masks:
    """Parameter-shaped multipliers that scale every slice of structure j by factor[j]: a 0/1
    keep mask gives the held mask, m + alpha (1 - m) PGMPF's weight-decay mask."""
    out = {}
    for part in unit.parts:
        w = weights[part.param]
        f = factor.to(w.device, w.dtype)[part.owner]
        out[part.param] = f.view(_shape(part, w)).expand_as(w).clone()
    return out


@torch.no_grad()
def scale_grads(unit: Unit, weights: dict[str, torch.Tensor], factor: torch.Tensor) -> None:
    """grad *= factor[j] on every slice of structure j (PGMPF's prior gradient mask)."""
    for part in unit.parts:
        g = weights[part.param].grad
        if g is not None:
            g.mul_(factor.to(g.device, g.dtype)[part.owner].view(_shape(part, g)))


def positions(unit: Unit, idx: torch.Tensor) -> list[tuple[str, int, torch.Tensor]]:
    """(parameter, dim, indices along dim) of the slices of the structures `idx`."""
    pick = torch.zeros(unit.count, dtype=torch.bool)
    pick[idx.cpu()] = True
    return [(p.param, p.dim, torch.nonzero(pick[p.owner.cpu()]).flatten().to(p.owner.device))
            for p in unit.parts]


def uses_structures(model: nn.Module) -> bool:
    """Whether a filter method prunes `model`'s heads and neurons rather than conv filters."""
    return is_transformer(model)
