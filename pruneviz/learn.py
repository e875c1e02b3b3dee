"""Toy computations behind the Learn pages, and the contract a method family's Learn toy meets.

No streamlit here (the pages in pages/learn_*.py draw what these return with
pruneviz/plots_learn.py; pruneviz/ui/learn.py draws a family's `Toy`). Every toy calls the
function the engine calls: the masks helpers, the schedules, and the pure functions of the
method families (each family's toy.py, beside the math.py its engine uses), and
`metrics.measure_latency` for timings. Nothing here re-derives a method's selection rule; what is
toy-specific (random tensors, a least-squares "layer" for SLR) says so in its docstring.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from .config import SessionConfig
from .masks import (
    Layer,
    apply_masks,
    filter_mask,
    filter_norms,
    filter_param_masks,
    global_magnitude,
    layerwise_magnitude,
    n_prune,
)
from .methods import families
from .methods.pgmpf import PGMPF
from .methods.pgmpf import Params as PGMPFParams
from .metrics import count_flops, effective_flops
from .schedules import cubic_density, exponential_count
from .surgery import compact

# -- a family's toy: what methods/<family>/toy.py exports as TOY ------------------------------
Value = Any | Callable[[dict[str, Any]], Any]    # constant, or computed from earlier controls


@dataclass(frozen=True)
class Control:
    """One widget of a toy: a slider (lo, hi, step), a select slider or radio (options), or a
    number box; lo, hi and default may depend on the controls above it."""

    name: str                    # the value's name; the widget key is learn.<family>.<name>
    label: str
    default: Value
    lo: Value = None
    hi: Value = None
    step: float | None = None
    options: tuple = ()
    kind: str = "slider"         # slider, select, radio or number
    help: str | None = None

    def resolve(self, field: str, values: dict[str, Any]) -> Any:
        v = getattr(self, field)
        return v(values) if callable(v) else v


@dataclass
class Drawn:
    """What a toy shows for one setting of its controls."""

    figures: list[tuple[str, Any]]                 # (key, plotly figure): two beside the controls
    notes: list[tuple[str, str]] = field(default_factory=list)   # (caption|info|warning|aside,
    #                                                             text)
    metrics: list[tuple[str, Any, str]] = field(default_factory=list)   # (label, value, help)
    table: tuple[str, pd.DataFrame] | None = None   # (expander title, rows)


@dataclass(frozen=True)
class Toy:
    """A family's Learn tab: a paragraph, its equations, the controls and what they draw."""

    title: str
    text: str
    citation: str
    equations: tuple[str, ...]
    equation_note: str
    controls: tuple[Control, ...]
    draw: Callable[[dict[str, Any]], Drawn]
    widths: tuple[float, float, float] = (1, 2, 2)    # controls | first figure | second figure
    order: int = 100                                   # tabs ascend by it, then by name


def toys() -> list[tuple[str, Toy]]:
    """(family, TOY) of every method family with a toy.py, in tab order."""
    found = []
    for family in families():
        module = importlib.util.find_spec(f"pruneviz.methods.{family}.toy")
        if module is not None:
            found.append((family, importlib.import_module(module.name).TOY))
    return sorted(found, key=lambda ft: (ft[1].order, ft[0]))


# -- unstructured vs structured on one layer ----------------------------------------------------
def toy_conv_net(out_channels: int = 8, in_channels: int = 4, spread: float = 0.8,
                 seed: int = 0) -> nn.Sequential:
    """conv1 (the layer we prune) -> BN -> ReLU -> conv2 -> BN -> ReLU -> pool -> linear, in
    eval mode. conv1's filters get scales exp(spread * N(0, 1)), so some filters are weak."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        bn1=nn.BatchNorm2d(out_channels), relu1=nn.ReLU(),
        conv2=nn.Conv2d(out_channels, 8, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(8), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 10)))
    with torch.no_grad():
        for m in (net.conv1, net.conv2, net.fc):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
        scale = torch.exp(spread * torch.randn(out_channels, generator=g))
        net.conv1.weight.mul_(scale.view(-1, 1, 1, 1))
    return net.eval()


def conv1_layer(net: nn.Sequential) -> Layer:
    return Layer("conv1", net.conv1, "bn1", net.bn1)


@dataclass
class OneLayer:
    """One conv pruned two ways at the same rate."""

    weight: torch.Tensor        # conv1's weight (out, in, k, k)
    norms: torch.Tensor         # L2 norm of each filter
    unstructured: torch.Tensor  # 0/1, weight-shaped: masks.layerwise_magnitude
    structured: torch.Tensor    # 0/1, weight-shaped: filter_mask + filter_param_masks
    hardware: pd.DataFrame      # what each leaves for the hardware, one row per scheme


def one_layer(rate: float, out_channels: int = 8, in_channels: int = 4, spread: float = 0.8,
              seed: int = 0, size: int = 8) -> OneLayer:
    """Prune conv1 of `toy_conv_net` unstructured (smallest |w| of the layer) and structured
    (lowest-L2 filters, with their BN gamma and beta), then ask surgery.compact what can be
    physically removed and metrics for the FLOPs."""
    shape = (in_channels, size, size)
    net = toy_conv_net(out_channels, in_channels, spread, seed)
    layer = conv1_layer(net)
    w = net.conv1.weight.detach().clone()
    unstructured = layerwise_magnitude({layer.param: w}, rate)
    norms = filter_norms(w)
    structured = filter_param_masks(layer, filter_mask(norms, n_prune(out_channels, rate)))
    flops_dense = count_flops(net, shape)
    rows = []
    for scheme, masks in (("unstructured", unstructured), ("structured", structured)):
        pruned = toy_conv_net(out_channels, in_channels, spread, seed)
        apply_masks(pruned, masks)
        small, rep = compact(pruned, shape)
        rows.append({
            "scheme": scheme,
            "zero weights in conv1": int((masks[layer.param] == 0).sum()),
            "conv1 weight after compaction": "x".join(map(str, small.conv1.weight.shape)),
            "conv2 input channels": small.conv2.in_channels,
            "FLOPs, dense kernels": count_flops(pruned, shape),
            "FLOPs after compaction": count_flops(small, shape),
            "FLOPs touching a nonzero weight": effective_flops(pruned, shape),
            "filters removed": rep["filters_removed"],
        })
    hardware = pd.DataFrame(rows).set_index("scheme")
    hardware.attrs["flops_dense"] = flops_dense
    return OneLayer(w, norms, unstructured[layer.param], structured[layer.param], hardware)


# -- layer-wise vs global thresholds ------------------------------------------------------------
TOY_LAYERS = {"conv1": (8, 1, 3, 3), "conv2": (16, 8, 3, 3), "conv3": (32, 16, 3, 3),
              "fc": (10, 128)}


def toy_layers(scales: dict[str, float] | None = None, seed: int = 0,
               he_init: bool = True) -> dict[str, torch.Tensor]:
    """Random weights for TOY_LAYERS: std sqrt(2 / fan_in) (He init: wide layers get small
    weights, as in a trained network) or 1 (`he_init` False), times `scales[name]`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in TOY_LAYERS.items():
        std = math.sqrt(2.0 / math.prod(shape[1:])) if he_init else 1.0
        out[name] = torch.randn(shape, generator=g) * std * (scales or {}).get(name, 1.0)
    return out


def threshold(w: torch.Tensor, mask: torch.Tensor) -> float:
    """The cut: largest |w| the mask prunes (0 when it prunes nothing)."""
    pruned = w.abs()[mask == 0]
    return pruned.max().item() if pruned.numel() else 0.0


def layerwise_vs_global(weights: dict[str, torch.Tensor], rate: float) -> pd.DataFrame:
    """Per layer and scheme: weights, pruned count, sparsity and the |w| cut, from
    masks.layerwise_magnitude and masks.global_magnitude (scores |w|)."""
    schemes = {"layer-wise": layerwise_magnitude(weights, rate),
               "global": global_magnitude({k: w.abs() for k, w in weights.items()}, rate)}
    rows = []
    for scheme, masks in schemes.items():
        for name, w in weights.items():
            m = masks[name]
            rows.append({"layer": name, "scheme": scheme, "weights": w.numel(),
                         "pruned": int((m == 0).sum()), "sparsity": float((m == 0).float().mean()),
                         "cut": threshold(w, m), "std": w.std().item()})
    return pd.DataFrame(rows)


# -- schedules --------------------------------------------------------------------------------
SCHEDULES = ("one-shot", "cubic (GMP, FGGP)", "asymptotic (ASFP, PGMPF)", "exponential (PGP)")


def schedule_curves(rate: float, epochs: int, d: float = 1 / 8, end: float = 0.8,
                    points: int = 200) -> pd.DataFrame:
    """Target sparsity against training progress (epochs) for each schedule, from the engine's
    functions: one-shot (all at epoch 0); cubic, schedules.cubic_density with T_end = end * E
    (continuous in steps); asymptotic, the keep rate PGMPF computes at the end of epoch e and
    uses from e + 1 (pgmpf's epoch_values over schedules.asymptotic_keep_rate, with D); and PGP's
    exponential filter count over its round(end * E) pruning epochs (schedules.exponential_count),
    as a fraction of the filters. Columns: epoch, schedule, sparsity."""
    rows = [(0.0, SCHEDULES[0], 0.0), (0.0, SCHEDULES[0], rate),
            (float(epochs), SCHEDULES[0], rate)]
    t_end = end * epochs
    for i in range(points + 1):
        x = epochs * i / points
        rows.append((x, SCHEDULES[1], 1.0 - cubic_density(x, t_end, 1.0, 1.0 - rate)))
    config = SessionConfig(epochs=epochs, rate=rate, start="dense")
    params = PGMPFParams(d=d)
    rows.append((0.0, SCHEDULES[2], 0.0))
    for e in range(epochs):
        rows.append((e + 1.0, SCHEDULES[2], 1.0 - PGMPF.values(config, params, e).keep))
    n_prune_epochs = max(1, min(epochs, math.floor(end * epochs + 0.5)))
    rows.append((0.0, SCHEDULES[3], 0.0))
    for e in range(n_prune_epochs):
        rows.append((e + 1.0, SCHEDULES[3], 1.0 - exponential_count(1, e, n_prune_epochs, rate)))
    rows.append((float(epochs), SCHEDULES[3], rate))
    return pd.DataFrame(rows, columns=["epoch", "schedule", "sparsity"])


def schedule_milestones(curves: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Per schedule, the first epoch at which half, 90% and all of the final sparsity is
    reached (within 1e-6)."""
    rows = []
    for name, c in curves.groupby("schedule", sort=False):
        out = {"schedule": name}
        for label, share in (("half", 0.5), ("90%", 0.9), ("all", 1.0)):
            hit = c[c.sparsity >= share * rate - 1e-6]
            out[f"{label} of the pruning by epoch"] = float(hit.epoch.min()) if len(hit) else None
        rows.append(out)
    return pd.DataFrame(rows)


# -- how pruneviz sees a model ------------------------------------------------------------------
MODEL_SHAPES = {"digits (1x8x8)": (1, 8, 8), "cifar (3x16x16)": (3, 16, 16)}


def model_structure(spec: str, input_shape: tuple[int, int, int], num_classes: int = 10
                    ) -> tuple[pd.DataFrame, str]:
    """The spec's model traced on a zero batch of `input_shape` (structure.trace): one row per
    conv/linear layer in module order with its kind, width, coupled group (1-based, 0 for a
    layer alone in its group or a linear), role and why it stays dense (empty if it is
    pruned), plus the trace's error ("" when it traced). ConfigError for a spec that cannot
    build, as a run would raise."""
    from .modelspec import make_model
    from .structure import trace

    example = torch.zeros(2, *input_shape)
    model = make_model(spec, input_shape, num_classes, example=example).eval()
    st = trace(model, example)
    modules = dict(model.named_modules())
    coupled = [g for g in st.groups if len(g) > 1]
    group_of = {name: i for i, members in enumerate(coupled, 1) for name in members}
    rows = []
    for name in st.layers:
        m = modules[name]
        conv = isinstance(m, nn.Conv2d)
        role = [r for r, hit in (("reads the input", name in st.inputs),
                                 ("classifier (its outputs are the classes)",
                                  name == st.classifier),
                                 ("shortcut projection", name in st.shortcuts)) if hit]
        dense = st.dense.get(name) or (f"filter methods: {st.filter_dense[name]}"
                                       if name in st.filter_dense else "")
        rows.append({"layer": name, "kind": "conv" if conv else "linear",
                     "width": m.out_channels if conv else m.out_features,
                     "group": group_of.get(name, 0), "role": ", ".join(role),
                     "stays dense": dense})
    rows += [{"layer": name, "kind": type(modules[name]).__name__ if name in modules else
              "parameter", "width": 0, "group": 0, "role": "", "stays dense": why}
             for name, why in st.dense.items() if name not in st.layers]
    return pd.DataFrame(rows, columns=["layer", "kind", "width", "group", "role",
                                       "stays dense"]), st.error
