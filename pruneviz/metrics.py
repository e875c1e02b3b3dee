"""FLOPs (torch.utils.flop_counter), parameter counts, sparsity and held-out evaluation.

FLOPs are what torch.utils.flop_counter counts: 2 per multiply-add of convs and matmuls (BN,
ReLU and adds are not counted). Pruning papers' "FLOPs" are multiply-adds, half of these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .masks import Layer, sparsity

if TYPE_CHECKING:
    from .data import DataBundle


@torch.no_grad()
def flops_by_module(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs of one forward pass of a single input, per module name ("" = the whole model)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    root = type(model).__name__
    out = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            out[""] = sum(ops.values())
        elif key.startswith(root + "."):
            out[key[len(root) + 1:]] = sum(ops.values())
    out.setdefault("", 0)
    return out


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of one input."""
    return flops_by_module(model, input_shape)[""]


def effective_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs that touch a nonzero weight: each conv/linear's FLOPs times its weight density."""
    per = flops_by_module(model, input_shape)
    total = per[""]
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and name in per:
            total -= per[name] * sparsity(m.weight)
    return int(round(total))


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters, nonzero parameters)."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p).item())
    return total, nonzero


def prunable_sparsity(layers: Iterable[Layer],
                      dense_shapes: dict[str, torch.Size] | None = None) -> float:
    """Fraction of zeros over the prunable weights (biases and unpruned layers excluded).

    With `dense_shapes` (layer name -> weight shape at the dense start), weights a method has
    physically removed count as pruned, so shrunk and masked networks report alike.
    """
    zeros = total = 0
    for layer in layers:
        w = layer.module.weight
        n = math.prod(dense_shapes[layer.name]) if dense_shapes and layer.name in dense_shapes \
            else w.numel()
        total += n
        zeros += n - int(torch.count_nonzero(w).item())
    return zeros / total if total else 0.0


def layer_stats(layer: Layer, dense_shape: torch.Size | None = None) -> dict[str, float]:
    """Per-layer record values: weight sparsity, filter keep rate, weight L2 norm (sparsity and
    keep rate relative to `dense_shape` when the layer has been physically shrunk)."""
    w = layer.module.weight.detach()
    shape = dense_shape or w.shape
    alive = int((w.flatten(1) != 0).any(dim=1).sum().item())
    return {"sparsity": 1.0 - int(torch.count_nonzero(w).item()) / math.prod(shape),
            "keep_rate": alive / shape[0], "norm": w.norm().item()}


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, device: torch.device,
             limit: int = 0) -> dict[str, float]:
    """Held-out top-1 accuracy, loss and (with more than 5 classes) top-5 accuracy."""
    was_training = model.training
    model.eval()
    n = correct = correct5 = 0
    loss = 0.0
    for x, y in data.test_batches(device, limit=limit):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        if logits.shape[1] > 5:
            correct5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum().item()
        n += len(y)
    model.train(was_training)
    out = {"accuracy": correct / n, "loss": loss / n}
    if data.num_classes > 5:
        out["top5"] = correct5 / n
    return out
