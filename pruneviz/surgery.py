"""Physical filter removal: shrink convs, their BatchNorms and their consumers' inputs.

Torch-Pruning's dependency graph (Fang et al., CVPR 2023) finds every tensor dimension coupled
to a conv's output channels, including residual additions, and slices them together. This module
adds what training needs on top: the kept indices of every parameter (so masks and optimizer
state follow the surgery), a rebuilt optimizer with the same hyper-parameters and sliced state,
and `compact`, which removes every provably dead filter and checks the result against the
masked model before reporting it.

A channel is *dead* when its conv weight (and bias) and its BatchNorm gamma and beta are all
zero: its output is then exactly zero, so removing it cannot change the network's function.
Channels coupled by a residual addition form one group and are removable only if dead in every
member of the group.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .metrics import count_flops
from .structure import dependency_graph as _graph
from .transformers import is_transformer, remove_dead_structures

Kept = dict[str, dict[int, torch.Tensor]]   # param/buffer name -> {dim: kept original indices}


@dataclass
class Removal:
    """What a surgery kept: for each changed parameter or buffer, the surviving indices per dim."""

    kept: Kept = field(default_factory=dict)

    def slice(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` (shaped like the parameter before surgery) cut like the parameter was."""
        for dim, idx in self.kept.get(name, {}).items():
            tensor = tensor.index_select(dim, idx.to(tensor.device))
        return tensor


def channel_groups(model: nn.Module, example_input: torch.Tensor) -> list[list[str]]:
    """Convs whose output channels are coupled (summed together), as lists of module names.

    A plain conv is a group of one; in a residual stage every block's last conv and the stage's
    projection shortcut form one group.
    """
    import torch_pruning as tp

    graph = _graph(model, example_input)
    names = {m: n for n, m in model.named_modules()}
    seen: set[str] = set()
    groups = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or name in seen:
            continue
        group = graph.get_pruning_group(m, tp.prune_conv_out_channels, list(range(m.out_channels)))
        members = [names[dep.target.module] for dep, _ in group
                   if isinstance(dep.target.module, nn.Conv2d)
                   and graph.is_out_channel_pruning_fn(dep.handler)]
        members = sorted(set(members), key=list(names.values()).index)
        seen.update(members)
        groups.append(members)
    return groups


def remove_filters(model: nn.Module, example_input: torch.Tensor,
                   remove: dict[str, Sequence[int]],
                   optimizer: torch.optim.Optimizer | None = None
                   ) -> tuple[Removal, torch.optim.Optimizer | None]:
    """Remove output channels `remove[conv_name]` (and every coupled dimension) in place.

    Convs of one coupled group must ask for the same indices (or only one of them may ask).
    Returns the kept indices and, if an optimizer was given, a new optimizer over the new
    parameters with the same hyper-parameters and its state sliced to the kept channels.
    """
    import torch_pruning as tp
    from torch_pruning._helpers import to_plain_idxs

    graph = _graph(model, example_input)
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    param_names = {p: n for n, p in model.named_parameters()}
    old_params = dict(model.named_parameters())
    removal = Removal()
    done: dict[str, tuple[int, ...]] = {}
    for conv_name, idxs in remove.items():
        idxs = tuple(sorted(int(i) for i in idxs))
        if not idxs:
            continue
        conv = modules[conv_name]
        if idxs[-1] >= conv.out_channels or len(idxs) >= conv.out_channels:
            raise ValueError(f"{conv_name} has {conv.out_channels} filters; cannot remove "
                             f"{len(idxs)} of them (at least one must stay).")
        if conv_name in done:
            if done[conv_name] != idxs:
                raise ValueError(f"{conv_name} is coupled to another conv that asked to remove "
                                 f"different channels; coupled convs must agree.")
            continue
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, list(idxs))
        for dep, item_idxs in group:
            module = dep.target.module
            plain = to_plain_idxs(item_idxs)
            mname = names.get(module)
            if mname is None:
                continue
            out = graph.is_out_channel_pruning_fn(dep.handler)
            if isinstance(module, nn.Conv2d) and out:
                done[mname] = tuple(sorted(plain))
            _record_kept(removal, mname, module, out, plain)
        group.prune()
    if optimizer is not None:
        optimizer = _rebuild_optimizer(optimizer, model, old_params, param_names, removal)
    return removal, optimizer


def _record_kept(removal: Removal, mname: str, module: nn.Module, out: bool,
                 pruned: Sequence[int]) -> None:
    """Kept indices of `module`'s tensors for an out- or in-channel prune of `pruned`."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        dim, size, tensors = 0, module.num_features, ("weight", "bias", "running_mean",
                                                       "running_var")
    elif isinstance(module, (nn.Conv2d, nn.Linear)):
        dim = 0 if out else 1
        size = module.weight.shape[dim]
        tensors = ("weight", "bias") if out else ("weight",)
    else:
        return
    drop = set(int(i) for i in pruned)
    keep = torch.tensor([i for i in range(size) if i not in drop], dtype=torch.long)
    for t in tensors:
        if getattr(module, t, None) is not None:
            kept = removal.kept.setdefault(f"{mname}.{t}", {})
            # a second cut of the same dim in one surgery (a linear reading a concatenation of
            # two groups) indexes the survivors of the first, not the original positions
            kept[dim] = kept[dim][keep] if dim in kept else keep


def _rebuild_optimizer(opt: torch.optim.Optimizer, model: nn.Module,
                       old_params: dict[str, nn.Parameter], old_names: dict, removal: Removal
                       ) -> torch.optim.Optimizer:
    """Same optimizer class and hyper-parameters over the new parameters, state sliced."""
    new_params = dict(model.named_parameters())
    groups = []
    for g in opt.param_groups:
        hyper = {k: v for k, v in g.items() if k != "params"}
        groups.append({**hyper, "params": [new_params[old_names[p]] for p in g["params"]]})
    new = type(opt)(groups, **opt.defaults)
    for name, old in old_params.items():
        state = opt.state.get(old)
        if not state:
            continue
        new_state = {}
        for k, v in state.items():
            if torch.is_tensor(v) and v.shape == old.shape:
                new_state[k] = removal.slice(name, v).clone()
            else:
                new_state[k] = v.clone() if torch.is_tensor(v) else copy.deepcopy(v)
        new.state[new_params[name]] = new_state
    return new


def dead_channels(model: nn.Module, conv_bn: dict[str, str]) -> dict[str, set[int]]:
    """Per conv, the output channels whose output is exactly zero (weight, bias, BN gamma and
    beta all zero); convs without a BatchNorm need only weight and bias zero."""
    modules = dict(model.named_modules())
    out = {}
    for name, m in modules.items():
        if not isinstance(m, nn.Conv2d):
            continue
        dead = m.weight.detach().flatten(1).abs().sum(1) == 0
        bn_name = conv_bn.get(name)
        if m.bias is not None and bn_name is None:
            dead &= m.bias.detach() == 0
        bn = modules.get(bn_name) if bn_name else None   # "" would name the model itself
        if bn is not None:
            dead &= (bn.weight.detach() == 0) & (bn.bias.detach() == 0)
        out[name] = set(torch.nonzero(dead).flatten().tolist())
    return out


def zero_filters(model: nn.Module) -> dict[str, set[int]]:
    """Per conv, the output channels whose weights are all zero (dead or not)."""
    return {name: set(torch.nonzero(m.weight.detach().flatten(1).abs().sum(1) == 0)
                      .flatten().tolist())
            for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def compact(model: nn.Module, input_shape: tuple[int, ...], *, atol: float = 1e-5
            ) -> tuple[nn.Module, dict]:
    """A copy of `model` with every dead filter physically removed, checked against the masked
    model in eval mode: max abs difference <= atol (times the largest output magnitude when it
    exceeds 1, as float32 rounding scales with it). Returns (compact model, report).

    The report counts filters (conv output channels) that are: zero (all weights zero), dead
    (zero with BN gamma and beta zero too: the output is exactly zero), removed, and coupled
    (dead, but summed by a residual addition with a member of its group where the same channel
    is alive, so removing it would change the network: zero but not removable). `coupled` maps
    each conv to its count of such filters.
    """
    from .structure import lookup

    device = next(model.parameters()).device
    example = torch.randn(2, *input_shape, device=device)
    traced = lookup(model)     # a model that is not built in: its norms as the trace found them
    small = copy.deepcopy(model).eval()
    # A transformer's one conv (vit_tiny's patch embedding) is never pruned as filters, and
    # Torch-Pruning cannot trace a model-level position parameter: heads and neurons instead.
    transformer = is_transformer(small)
    dead, remove, coupled = ({}, {}, {}) if transformer else _dead_filters(small, traced,
                                                                          example[:1])
    zero = zero_filters(small)
    filters_before = filter_count(small)
    if not transformer:
        remove_filters(small, example[:1], remove)
    # transformers: dead heads and MLP neurons are the coupled groups to remove
    structures = remove_dead_structures(small) if transformer else {}
    ref = model.training
    model.eval()
    with torch.no_grad():
        expected = model(example)
        diff = (expected - small(example)).abs().max().item()
    model.train(ref)
    if not torch.isfinite(expected).all():
        raise RuntimeError("the masked model's own outputs are not finite on a random input in "
                           "eval mode (BatchNorm statistics of a barely trained model?), so "
                           "the compact model cannot be checked against it.")
    # float32 rounding grows with the outputs' magnitude: atol is absolute up to |y| = 1
    scale = max(1.0, expected.abs().max().item())
    if not diff <= atol * scale:
        raise RuntimeError(f"compacted model differs from the masked one by {diff:.3g} "
                           f"(> {atol * scale:.3g}); refusing to report its size.")
    return small, {"filters": filters_before,
                   "filters_zero": sum(len(v) for v in zero.values()),
                   "filters_dead": sum(len(v) for v in dead.values()),
                   "filters_removed": filters_before - filter_count(small),
                   "filters_coupled": sum(coupled.values()), "coupled": coupled,
                   "max_abs_diff": diff, "output_scale": scale, **structures}


def _dead_filters(small: nn.Module, traced: Any, example: torch.Tensor
                  ) -> tuple[dict[str, set[int]], dict[str, list[int]], dict[str, int]]:
    """Per conv, its dead filters; per coupled group (by its first conv), the filters dead in
    every member, removable (one filter always stays); per conv, its dead filters that stay
    because a residual addition sums them with a live channel. A traced model's grouped,
    LayerNorm- or linear-coupled channels stay (structure.py)."""
    from .masks import conv_bn_pairs

    norms = ({k: v for k, v in traced.norms.items()
              if isinstance(small.get_submodule(v), nn.modules.batchnorm._BatchNorm)}
             if traced is not None and not traced.error else conv_bn_pairs(small))
    dead = dead_channels(small, norms)
    remove: dict[str, list[int]] = {}
    coupled: dict[str, int] = {}
    for group in channel_groups(small, example):
        if traced is not None and any(n in traced.filter_dense for n in group):
            continue
        common = set.intersection(*(dead[n] for n in group))
        n_out = small.get_submodule(group[0]).out_channels
        common = set(sorted(common)[:n_out - 1])      # one filter always stays
        if common:
            remove[group[0]] = sorted(common)
        for name in group:
            if dead[name] - common:
                coupled[name] = len(dead[name] - common)
    return dead, remove, coupled


def filter_count(model: nn.Module) -> int:
    """Filters (conv output channels) of a model."""
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def shrink_to(model: nn.Module, state: dict[str, torch.Tensor], input_shape: tuple[int, ...],
              kept_filters: dict[str, torch.Tensor] | None = None) -> tuple[Removal, bool]:
    """Shrink `model` (the dense architecture) in place so that `state` (a state_dict of a
    physically pruned copy, e.g. a PGP run) loads into it, and load it.

    `kept_filters` (conv name -> kept original filter indices) puts every kept filter back at
    its original position in the returned Removal; without it the removed filters are taken to
    be the last ones of each conv, which gives the same function but not the original positions.
    Returns (the removal, whether the original positions are known).
    """
    kept_filters = {k.removesuffix(".weight"): torch.as_tensor(v).long()
                    for k, v in (kept_filters or {}).items()}
    example = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    plan: dict[str, list[int]] = {}
    known = True
    for group in channel_groups(model, example):
        n = model.get_submodule(group[0]).out_channels
        widths = {state[f"{c}.weight"].shape[0] for c in group if f"{c}.weight" in state}
        if len(widths) > 1:
            raise ValueError(f"coupled convs {', '.join(group)} have different widths "
                             f"{sorted(widths)} in the checkpoint; they must shrink together.")
        k = widths.pop() if widths else n
        if k > n:
            raise ValueError(f"{group[0]} has {k} filters in the checkpoint but only {n} in the "
                             f"architecture.")
        if k == n:
            continue
        kept = next((kept_filters[c] for c in group if c in kept_filters), None)
        if kept is not None and len(kept) == k:
            keep = set(kept.tolist())
            plan[group[0]] = [i for i in range(n) if i not in keep]
        else:
            known = False
            plan[group[0]] = list(range(k, n))
    removal, _ = remove_filters(model, example, plan)
    model.load_state_dict(state)
    return removal, known


def expand(tensor: torch.Tensor, kept: dict[int, torch.Tensor], dense_shape: Sequence[int],
           fill: float | bool = 0) -> torch.Tensor:
    """A shrunk tensor put back at its kept indices in a tensor of the dense shape, `fill`
    elsewhere."""
    out = tensor
    for dim, idx in kept.items():       # one dim at a time: index_copy along `dim`
        shape = list(out.shape)
        shape[dim] = dense_shape[dim]
        out = torch.full(shape, fill, dtype=tensor.dtype, device=tensor.device).index_copy_(
            dim, idx.to(tensor.device), out)
    return out


def expand_state_dict(state: dict[str, torch.Tensor], removal: Removal,
                      dense_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict of the dense architecture computing what the shrunk `state` computes:
    removed filters are zero with BN gamma and beta zero (so they output exactly zero) and
    running variance 1; removed input columns are zero."""
    out = {}
    for key, ref in dense_state.items():
        kept = removal.kept.get(key)
        if kept:
            fill = 1.0 if key.endswith("running_var") else 0
            out[key] = expand(state[key], kept, ref.shape, fill)
        else:
            out[key] = state[key]
    return out


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
            "filters_removed": report["filters_removed"], "filters_compact": filter_count(small),
            **{k: report[k] for k in ("heads_removed", "neurons_removed") if k in report}}
