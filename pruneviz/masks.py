"""Masks keyed by parameter name ("layer1.0.conv1.weight"); pure helpers to build and apply them.

A mask is a float tensor of 0s and 1s shaped like its parameter. A filter mask is a 1-D tensor
over a conv's output channels. Which layers are prunable is decided here, once, for every method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .config import ConfigError

Masks = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Layer:
    """A prunable layer: its weight's parameter name, module, and its BatchNorm (convs only)."""

    name: str                       # module name, e.g. "layer1.0.conv1"
    module: nn.Module
    bn_name: str | None = None      # the BatchNorm right after a conv, if any
    bn: nn.BatchNorm2d | None = None

    @property
    def param(self) -> str:
        return f"{self.name}.weight"

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)


def is_shortcut(name: str) -> bool:
    """Whether a module name is a residual block's projection shortcut (downsample) conv."""
    return "downsample" in name or "shortcut" in name


def conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """Map each conv to the BatchNorm that directly consumes its output: the next child of the
    same parent when it is a BatchNorm2d of the conv's width.

    That holds for every model pruneviz builds (a test checks it against an FX trace of each).
    No tracing here: torch.fx.symbolic_trace patches nn.Module.__call__ process-wide while it
    runs, which breaks forward passes in other threads (a training session, the dashboard).
    """
    pairs = {}
    for parent, module in model.named_modules():
        children = list(module.named_children())
        for (a, ma), (b, mb) in zip(children, children[1:]):
            if (isinstance(ma, nn.Conv2d) and isinstance(mb, nn.BatchNorm2d)
                    and mb.num_features == ma.out_channels):
                prefix = f"{parent}." if parent else ""
                pairs[prefix + a] = prefix + b
    return pairs


def prunable_layers(model: nn.Module, *, convs: bool = True, linears: bool = True,
                    first_conv: bool = True, last_linear: bool = False,
                    shortcuts: bool = False) -> list[Layer]:
    """The layers a method prunes, in module order.

    first_conv: include the network's first conv; last_linear: include the classifier;
    shortcuts: include downsample/shortcut convs of residual blocks. A model that is not built
    in gets the answer found by tracing it (structure.py; convs only = a filter method, which
    also skips the convs whose filters cannot be removed safely); layers matching ignore= are
    left out on every model.
    """
    from .structure import ignored, lookup, matches

    traced = lookup(model)
    out = (_heuristic_layers(model, convs, linears, first_conv, last_linear, shortcuts)
           if traced is None else
           _traced_layers(model, traced, convs, linears, first_conv, last_linear, shortcuts))
    patterns = ignored(model)
    return [l for l in out if not matches(l.name, patterns)] if patterns else out


def _traced_layers(model: nn.Module, st, convs: bool, linears: bool, first_conv: bool,
                   last_linear: bool, shortcuts: bool) -> list[Layer]:
    """prunable_layers from a traced structure: "first conv" is an input conv and "the
    classifier" the layer producing the logits (a linear or a conv), as the graph shows them."""
    modules = dict(model.named_modules())
    skip = st.unpruned("filter" if not linears else "unstructured")
    out = []
    for name in st.layers:
        m = modules[name]
        conv = isinstance(m, nn.Conv2d)
        if (not convs and conv) or (not linears and not conv) or name in skip:
            continue
        # an input conv (a stem) is first_conv's; an input linear (an MLP's) is pruned as on mlp
        if (conv and name in st.inputs and not first_conv) or (name == st.classifier
                                                               and not last_linear):
            continue
        if name in st.shortcuts and not shortcuts:
            continue
        norm = st.norms.get(name) if conv else None
        out.append(Layer(name, m, norm, modules[norm] if norm else None))
    return out


def _heuristic_layers(model: nn.Module, convs: bool, linears: bool, first_conv: bool,
                      last_linear: bool, shortcuts: bool) -> list[Layer]:
    """prunable_layers by module names and order, for the built-in models (the same answer as
    their trace: tests/test_structure.py)."""
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    conv_names = [n for n, m in mods if isinstance(m, nn.Conv2d)]
    linear_names = [n for n, m in mods if isinstance(m, nn.Linear)]
    first = conv_names[0] if conv_names else None
    last = linear_names[-1] if linear_names else None
    bns = conv_bn_pairs(model) if convs and conv_names else {}
    all_modules = dict(model.named_modules())
    out = []
    for name, m in mods:
        if isinstance(m, nn.Conv2d):
            if not convs or (name == first and not first_conv):
                continue
            if is_shortcut(name) and not shortcuts:
                continue
            bn = bns.get(name)
            out.append(Layer(name, m, bn, all_modules[bn] if bn else None))
        else:
            if not linears or (name == last and not last_linear):
                continue
            out.append(Layer(name, m))
    return out


def ones_like_layers(layers: list[Layer]) -> Masks:
    return {l.param: torch.ones_like(l.module.weight) for l in layers}


def keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """0/1 mask shaped like `scores` keeping the `n_keep` largest (ties: lower index first)."""
    flat = scores.flatten()
    mask = torch.zeros_like(flat)
    if n_keep > 0:
        idx = torch.argsort(flat, descending=True, stable=True)[:n_keep]
        mask[idx] = 1.0
    return mask.view_as(scores)


def n_prune(n: int, rate: float) -> int:
    """How many of `n` units a rate prunes: round(n * rate), the rule torch.nn.utils.prune uses."""
    return int(round(n * rate))


def layerwise_magnitude(weights: dict[str, torch.Tensor], rate: float) -> Masks:
    """Each tensor loses its own `rate` of smallest-|w| entries."""
    return {k: keep_top(w.abs(), w.numel() - n_prune(w.numel(), rate)) for k, w in weights.items()}


def global_magnitude(scores: dict[str, torch.Tensor], rate: float) -> Masks:
    """One ranking over all tensors: the `rate` smallest scores overall are pruned."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = keep_top(flat, flat.numel() - n_prune(flat.numel(), rate))
    out, i = {}, 0
    for k, s in scores.items():
        out[k] = keep[i:i + s.numel()].view_as(s)
        i += s.numel()
    return out


def layer_floor(scores: dict[str, torch.Tensor], max_sparsity: float,
                masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """Per tensor, a bool mask of the entries a global ranking must not prune so that no tensor
    is pruned past `max_sparsity`: its n - round(n * max_sparsity) largest active scores."""
    out = {}
    for k, s in scores.items():
        floor = s.numel() - n_prune(s.numel(), max_sparsity)
        active = s if masks is None else torch.where(masks[k] > 0, s, -torch.inf)
        out[k] = keep_top(active, floor).bool() & (active > -torch.inf)
    return out


def check_floor(sizes: list[int], rate: float, max_sparsity: float, method: str) -> None:
    """ConfigError when the per-layer floor leaves the global ranking too few weights to prune."""
    floor = sum(n - n_prune(n, max_sparsity) for n in sizes)
    total = sum(sizes)
    if floor > total - n_prune(total, rate):
        raise ConfigError(f"{method}: max_layer_sparsity={max_sparsity:g} keeps at least "
                          f"{floor} weights, more than rate {rate:g} leaves "
                          f"({total - n_prune(total, rate)}); raise max_layer_sparsity above "
                          f"the rate or lower the rate.")


def filter_norms(weight: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Lp norm of each output channel (filter) of a conv or row of a linear weight."""
    return weight.detach().flatten(1).norm(p=p, dim=1)


def filter_mask(scores: torch.Tensor, n_pruned: int) -> torch.Tensor:
    """1-D keep mask over filters: the `n_pruned` lowest scores get 0."""
    return keep_top(scores, scores.numel() - n_pruned)


def expand_filter_mask(fmask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Filter mask (out_channels,) -> weight-shaped mask."""
    return fmask.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight).clone()


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """weight *= mask for every masked parameter, in one fused foreach call."""
    if not masks:
        return
    params = dict(model.named_parameters())
    names = list(masks)
    torch._foreach_mul_([params[n] for n in names], [masks[n] for n in names])


def sparsity(t: torch.Tensor) -> float:
    """Fraction of exact zeros."""
    return 1.0 - (torch.count_nonzero(t).item() / t.numel()) if t.numel() else 0.0


def erk_densities(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    """Erdos-Renyi-Kernel layer densities with a global density `density` (Evci et al. 2020).

    Layer density is proportional to sum(shape) / prod(shape); layers that would exceed 1 are
    set dense and the rest rescaled, until every density fits.
    """
    dense: set[str] = set()
    total = sum(math.prod(s) for s in shapes.values())
    while True:
        budget = density * total - sum(math.prod(shapes[k]) for k in dense)
        raw = {k: sum(s) / math.prod(s) for k, s in shapes.items() if k not in dense}
        eps = budget / sum(raw[k] * math.prod(shapes[k]) for k in raw)
        over = [k for k in raw if eps * raw[k] > 1]
        if not over:
            return {k: 1.0 if k in dense else eps * raw[k] for k in shapes}
        dense.update(over)


def filter_param_masks(layer: Layer, fmask: torch.Tensor) -> Masks:
    """Masks that remove whole filters: the conv's weight (and bias) plus its BatchNorm's gamma
    and beta, so a pruned channel outputs exactly zero, as it would once physically removed."""
    conv = layer.module
    out = {layer.param: expand_filter_mask(fmask, conv.weight)}
    if getattr(conv, "bias", None) is not None:
        out[f"{layer.name}.bias"] = fmask.clone()
    if layer.bn_name is not None:
        out[f"{layer.bn_name}.weight"] = fmask.clone()
        out[f"{layer.bn_name}.bias"] = fmask.clone()
    return out


# -- N:M semi-structured sparsity ---------------------------------------------------------------
# A group is M consecutive weights along the input (reduction) dimension. Linear [out, in]: along
# in. Conv [out, in, kh, kw]: along in at each kernel position, i.e. in the channels-last GEMM
# order [out, kh, kw, in] that NVIDIA's 2:4 kernels (and its ASP library) use, not PyTorch's
# (in, kh, kw) flattening, whose groups would straddle input channels.
def nm_fits(shape: torch.Size | tuple[int, ...], m: int) -> bool:
    """Whether a weight of `shape` splits into groups of `m` along its input dimension."""
    return len(shape) >= 2 and shape[1] % m == 0


def nm_groups(t: torch.Tensor, m: int) -> torch.Tensor:
    """A weight-shaped tensor as rows of its N:M groups: (number of groups, m)."""
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(-1, m)


def nm_ungroup(groups: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The inverse of nm_groups: rows of groups back to a weight of `shape`."""
    if len(shape) == 4:
        out, cin, kh, kw = shape
        return groups.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return groups.reshape(shape)


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """0/1 mask shaped like `scores` keeping the `n` largest of every group of `m` (ties: lower
    index first, as keep_top)."""
    groups = nm_groups(scores, m)
    keep = torch.zeros_like(groups)
    keep.scatter_(1, torch.argsort(groups, dim=1, descending=True, stable=True)[:, :n], 1.0)
    return nm_ungroup(keep, scores.shape)


def nm_counts(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Nonzeros in every group of `m` of a weight-shaped tensor."""
    return (nm_groups(mask, m) != 0).sum(1)


def nm_pruned(numel: int, density: float, n: int, m: int) -> int:
    """Weights a gradual schedule at `density` prunes from a layer of `numel` under N:M:
    floor(numel (1 - density)), capped at the pattern's share numel (M - N) / M."""
    return min(math.floor(numel * (1.0 - density) + 1e-9), numel // m * (m - n))


def nm_prune(scores: torch.Tensor, mask: torch.Tensor, n: int, m: int, k: int) -> torch.Tensor:
    """`mask` with its `k` lowest-score active entries pruned, never one of its group's `n`
    highest-scoring active ones (so every group keeps at least `n`); fewer if fewer are free."""
    active = mask > 0
    top = nm_mask(torch.where(active, scores, -torch.inf), n, m).bool()
    free = (active & ~top).flatten().nonzero().squeeze(1)
    out = mask.flatten().clone()
    k = min(k, free.numel())
    if k > 0:
        out[free[torch.topk(scores.flatten()[free], k, largest=False, sorted=False).indices]] = 0
    return out.view_as(mask)


def check_method(model: nn.Module, method_name: str, kind: str) -> None:
    """ConfigError when a filter method cannot run on a traced model: the trace failed, or
    every conv stays dense."""
    from .config import ConfigError
    from .structure import lookup

    st = lookup(model)
    if st is None or kind != "filter":
        return
    if st.error:
        raise ConfigError(f"{method_name} prunes coupled filter groups, which come from tracing "
                          f"the model, and Torch-Pruning could not trace this one ({st.error}); "
                          f"use an unstructured method (l1, gmp, slr), which needs no trace.")
    if not prunable_layers(model, linears=False, first_conv=True):
        why = "; ".join(f"{k}: {v}" for k, v in list(st.filter_dense.items())[:3])
        raise ConfigError(f"{method_name}: no conv of this model can have filters removed "
                          f"safely ({why or 'it has no traced conv besides its classifier'}); "
                          f"use an unstructured method.")
