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

import torch
import torch.nn as nn

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


def _graph(model: nn.Module, example_input: torch.Tensor):
    import torch_pruning as tp

    with torch.enable_grad():     # the graph is traced through autograd
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                                     verbose=False)


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
            removal.kept.setdefault(f"{mname}.{t}", {})[dim] = keep


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
        if m.bias is not None and conv_bn.get(name) is None:
            dead &= m.bias.detach() == 0
        bn = modules.get(conv_bn.get(name, ""))
        if bn is not None:
            dead &= (bn.weight.detach() == 0) & (bn.bias.detach() == 0)
        out[name] = set(torch.nonzero(dead).flatten().tolist())
    return out


def compact(model: nn.Module, input_shape: tuple[int, ...], *, atol: float = 1e-5
            ) -> tuple[nn.Module, dict]:
    """A copy of `model` with every dead filter physically removed, checked against the masked
    model in eval mode. Returns (compact model, report)."""
    from .masks import conv_bn_pairs

    device = next(model.parameters()).device
    example = torch.randn(2, *input_shape, device=device)
    small = copy.deepcopy(model).eval()
    dead = dead_channels(small, conv_bn_pairs(small))
    remove: dict[str, list[int]] = {}
    for group in channel_groups(small, example[:1]):
        common = set.intersection(*(dead[n] for n in group))
        n_out = small.get_submodule(group[0]).out_channels
        common = set(sorted(common)[:n_out - 1])      # one filter always stays
        if common:
            remove[group[0]] = sorted(common)
    filters_before = _filter_count(small)
    remove_filters(small, example[:1], remove)
    ref = model.training
    model.eval()
    with torch.no_grad():
        diff = (model(example) - small(example)).abs().max().item()
    model.train(ref)
    if diff > atol:
        raise RuntimeError(f"compacted model differs from the masked one by {diff:.3g} "
                           f"(> {atol}); refusing to report its size.")
    return small, {"filters_dead": sum(len(v) for v in dead.values()),
                   "filters_removed": filters_before - _filter_count(small),
                   "max_abs_diff": diff}


def _filter_count(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
