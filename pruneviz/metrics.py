"""FLOPs (torch.utils.flop_counter), parameter counts, sparsity and held-out evaluation.

FLOPs are what torch.utils.flop_counter counts: 2 per multiply-add of convs and matmuls (BN,
ReLU and adds are not counted). Pruning papers' "FLOPs" are multiply-adds, half of these.
Latency is measured, never estimated: interleaved, warmed up, median of repetitions.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

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


NOISY = 0.25     # interquartile range over this fraction of the median: the machine was busy

def cpu_vector_block() -> tuple[str, int | None]:
    """This CPU's vector ISA as PyTorch sees it, and the channel block its oneDNN convolution
    kernels pad to (16 floats for AVX-512, 8 for AVX2; None when unknown)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability, {"AVX512": 16, "AVX2": 8}.get(capability)


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


def _nonzero(w: torch.Tensor, dense_shape: torch.Size | None) -> int:
    """Nonzero weights of `w` counted as its masked twin (same function, dense shape) would.

    A physically shrunk layer has lost whole filters (rows) and, when a producer lost filters,
    input columns of its kept filters. The masked twin would hold those columns as ordinary
    (nonzero) weights multiplying dead inputs, so they count as kept here, except in filters
    that are entirely zero (a masked filter is zero in every column): only removed or zeroed
    filters and zero weights count as pruned, and a filter method reports the same sparsity
    whether it masks or removes.
    """
    nonzero = int(torch.count_nonzero(w).item())
    if dense_shape is not None and w.dim() > 1:
        missing = math.prod(dense_shape[1:]) - math.prod(w.shape[1:])
        if missing:
            alive = int((w.detach().flatten(1) != 0).any(dim=1).sum().item())
            nonzero += alive * missing
    return nonzero


def prunable_sparsity(layers: Iterable[Layer],
                      dense_shapes: dict[str, torch.Size] | None = None) -> float:
    """Fraction of zeros over the prunable weights (biases and unpruned layers excluded).

    With `dense_shapes` (layer name -> weight shape at the dense start), filters a method has
    physically removed count as pruned, so shrunk and masked networks report alike.
    """
    zeros = total = 0
    for layer in layers:
        w = layer.module.weight
        shape = dense_shapes.get(layer.name) if dense_shapes else None
        n = math.prod(shape) if shape is not None else w.numel()
        total += n
        zeros += n - _nonzero(w, shape)
    return zeros / total if total else 0.0


def layer_stats(layer: Layer, dense_shape: torch.Size | None = None) -> dict[str, float]:
    """Per-layer record values: weight sparsity, filter keep rate, weight L2 norm (sparsity and
    keep rate relative to `dense_shape` when the layer has been physically shrunk)."""
    w = layer.module.weight.detach()
    shape = dense_shape or w.shape
    alive = int((w.flatten(1) != 0).any(dim=1).sum().item())
    return {"sparsity": 1.0 - _nonzero(w, dense_shape) / math.prod(shape),
            "keep_rate": alive / shape[0], "norm": w.norm().item()}


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, device: torch.device,
             limit: int = 0) -> dict[str, float]:
    """Held-out top-1 accuracy, loss and (with more than 5 classes) top-5 accuracy; a language
    model's (text data): next-token accuracy, loss per token and perplexity = exp(loss)."""
    was_training = model.training
    model.eval()
    n = correct = correct5 = 0
    loss = 0.0
    text = getattr(data, "modality", "image") == "text"
    for x, y in data.test_batches(device, limit=limit):
        logits = model(x)
        if text:
            logits, y = logits.flatten(0, 1), y.flatten()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        if logits.shape[1] > 5:
            correct5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum().item()
        n += len(y)
    model.train(was_training)
    out = {"accuracy": correct / n, "loss": loss / n}
    if text:
        out["perplexity"] = math.exp(min(out["loss"], 50.0))    # capped: exp overflows
        return out
    if data.num_classes > 5:
        out["top5"] = correct5 / n
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_ratio(times: Iterable[float], ref: Iterable[float]) -> float:
    """Median of per-repetition ratios times / ref of two models measure_latency timed back to
    back: a load spike hits both sides of a pair alike, so this resists drift better than a
    ratio of medians."""
    return statistics.median(t / r for t, r in zip(times, ref))


@torch.inference_mode()
def measure_latency(models: dict[str, nn.Module], input_shape: tuple[int, ...], batch: int, *,
                    device: torch.device | str = "cpu", budget_s: float = 0.5, warmup: int = 2,
                    min_reps: int = 3, max_reps: int = 100, deadline: float | None = None,
                    dtype: torch.dtype = torch.float32) -> dict[str, dict[str, Any]]:
    """Median wall seconds of one eval-mode forward pass of a `batch` of random inputs, for
    each model.

    The models run in turn within each repetition (interleaved, in alternating order), so a
    load spike on a shared machine hits all of them alike; after `warmup` untimed rounds,
    repetitions continue until `budget_s` has passed (at least `min_reps`, at most `max_reps`;
    past `deadline`, a time.perf_counter() value, no new repetition starts after the first).
    The inputs are of `dtype` (float16 for half-precision models).
    Returns, per model, the median and the interquartile range in seconds, the repetitions
    timed, and the times themselves (in repetition order, so ratios can be taken pair by pair).
    """
    device = torch.device(device)
    x = torch.randn(batch, *input_shape, device=device, dtype=dtype)
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    times: dict[str, list[float]] = {k: [] for k in models}
    try:
        for _ in range(warmup):
            for m in models.values():
                m(x)
        _sync(device)
        started = time.perf_counter()
        reps = 0
        while reps < max_reps and (reps < min_reps or time.perf_counter() - started < budget_s):
            if reps and deadline is not None and time.perf_counter() > deadline:
                break
            # the order flips every repetition: whoever runs first in a time slice is favoured
            order = list(models.items()) if reps % 2 == 0 else list(models.items())[::-1]
            for k, m in order:
                t = time.perf_counter()
                m(x)
                _sync(device)
                times[k].append(time.perf_counter() - t)
            reps += 1
    finally:
        for k, m in models.items():
            m.train(modes[k])
    out = {}
    for k, ts in times.items():
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out[k] = {"median_s": statistics.median(ts), "iqr_s": q[2] - q[0], "reps": len(ts),
                  "times": ts}
    return out
