"""Toy computations of the Learn page "Why sparsity is not speed": the FLOPs a dense kernel runs
on zeros, then this machine's kernels timed (metrics.measure_latency: models interleaved,
medians of paired ratios, a hard time budget) on scattered zeros, filter counts around the
vector block, round_to (schedules.round_kept, as the filter methods round) and 2:4 patterns.

No streamlit here: pages/learn_speed.py draws what these return with pruneviz/plots_learn.py.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from .masks import apply_masks, filter_mask, filter_norms, layerwise_magnitude, n_prune, nm_mask
from .metrics import (
    NOISY,
    count_flops,
    cpu_vector_block,
    effective_flops,
    measure_latency,
    paired_ratio,
)
from .schedules import round_kept
from .semistructured import kernel_support, measure

__all__ = ["SWEEP", "cpu_vector_block", "measure_speed", "measure_two_four", "round_to_speed",
           "sparse_conv", "sparsity_flops", "two_four_linear", "two_four_pattern"]


# -- why sparsity is not speed ----------------------------------------------------------------
def sparse_conv(channels: int, rate: float, seed: int = 0) -> dict[str, nn.Module]:
    """A 3x3 conv (channels -> channels) three ways: dense; unstructured (masks.layerwise_magnitude
    zeros, same shape); structured (the lowest-L2 filters gone: a conv with fewer outputs)."""
    torch.manual_seed(seed)
    dense = nn.Conv2d(channels, channels, 3, padding=1)
    zeros = nn.Conv2d(channels, channels, 3, padding=1)
    zeros.load_state_dict(dense.state_dict())
    apply_masks(zeros, layerwise_magnitude({"weight": dense.weight.detach()}, rate))
    kept = filter_mask(filter_norms(dense.weight), n_prune(channels, rate)).bool()
    small = nn.Conv2d(channels, int(kept.sum()), 3, padding=1)
    with torch.no_grad():
        small.weight.copy_(dense.weight[kept])
        small.bias.copy_(dense.bias[kept])
    return {"dense": dense, f"{rate:.0%} zeros (unstructured)": zeros,
            f"{rate:.0%} filters removed (structured)": small}


def sparsity_flops(channels: int = 64, size: int = 16, rate: float = 0.5) -> pd.DataFrame:
    """FLOPs (torch.utils.flop_counter) and nonzero-touching FLOPs of sparse_conv's three convs:
    the count a dense kernel executes vs what a perfect sparse kernel could skip."""
    shape = (channels, size, size)
    rows = []
    for name, m in sparse_conv(channels, rate).items():
        rows.append({"conv": name, "weights": m.weight.numel(),
                     "nonzero weights": int(torch.count_nonzero(m.weight)),
                     "FLOPs a dense kernel runs": count_flops(m, shape),
                     "FLOPs on nonzero weights": effective_flops(m, shape)})
    return pd.DataFrame(rows)


SWEEP = (8, 12, 16, 17, 24, 32, 33, 40, 48, 49, 56, 64)


def _timed(models: dict[str, nn.Module], shape: tuple[int, ...], batch: int, budget_s: float,
           deadline: float) -> dict[str, dict[str, Any]]:
    return measure_latency(models, shape, batch, budget_s=budget_s, warmup=2, min_reps=5,
                           max_reps=400, deadline=deadline)


def _rows(res: dict[str, dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    """Per model: median ms, the median of its paired per-repetition ratios to `ref` (timed back
    to back, so a load spike hits both alike), repetitions and spread (IQR / median)."""
    base = res[ref]["times"]
    return [{"name": k, "ms": v["median_s"] * 1e3,
             "relative": paired_ratio(v["times"], base),
             "reps": v["reps"], "spread": v["iqr_s"] / v["median_s"]} for k, v in res.items()]


def measure_speed(channels: int = 64, size: int = 16, rate: float = 0.5, batch: int = 8,
                  budget_s: float = 2.0) -> dict[str, Any]:
    """Three timings on this machine with metrics.measure_latency (models interleaved, medians),
    within about `budget_s` seconds in all (a hard cap: a busy machine gets fewer repetitions):
    - zeros: sparse_conv's dense / unstructured / structured convs at `batch`, relative to dense;
    - channels: convs channels -> c for c in SWEEP, relative to the widest (oneDNN pads output
      channels to its vector block: 16 floats on AVX-512, 8 on AVX2);
    - launch: a tiny 3-layer CNN and the same with half the filters at batch 1 and 64 (per-image
      time: fixed per-layer costs dominate small batches).
    `relative` is the median of paired ratios; `noisy` says some spread exceeded NOISY.
    Returns DataFrames and the machine facts needed to read them."""
    t0 = time.perf_counter()
    share = budget_s / 3
    shape = (channels, size, size)
    zeros = _timed(sparse_conv(channels, rate), shape, batch, share * 0.8, t0 + share)
    zeros_df = pd.DataFrame(_rows(zeros, "dense")).rename(columns={"name": "conv"})
    torch.manual_seed(0)
    sweep = {str(c): nn.Conv2d(channels, c, 3, padding=1) for c in SWEEP}
    t1 = time.perf_counter()
    ch = _timed(sweep, shape, batch, share * 0.8, t1 + share)
    ch_df = pd.DataFrame(_rows(ch, str(SWEEP[-1]))).rename(columns={"name": "filters"})
    ch_df["filters"] = ch_df.filters.astype(int)
    rows = []
    t2 = time.perf_counter()
    nets = {"tiny CNN": _tiny_cnn(16), "half the filters": _tiny_cnn(8)}
    for b in (1, 64):
        left = t2 + share - time.perf_counter()
        res = _timed(nets, (1, 8, 8), b, max(left, 0.05) * 0.45, time.perf_counter() + left / 2)
        for row in _rows(res, "tiny CNN"):
            model = row.pop("name")
            rows.append({"model": model, "batch": b, "us per image": row["ms"] * 1e3 / b, **row,
                         "FLOPs per image": count_flops(nets[model], (1, 8, 8))})
    launch = pd.DataFrame(rows)
    capability, block = cpu_vector_block()
    frames = {"zeros": zeros_df, "channels": ch_df, "launch": launch}
    return {**frames, "capability": capability, "block": block,
            "threads": torch.get_num_threads(), "seconds": time.perf_counter() - t0,
            "noisy": any((f.spread > NOISY).any() for f in frames.values()),
            "min_reps": min(int(f.reps.min()) for f in frames.values())}


def _tiny_cnn(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, 10))


def round_to_speed(channels: int = 64, size: int = 16, rate: float = 0.4, block: int = 16,
                   batch: int = 8, budget_s: float = 1.5) -> pd.DataFrame:
    """A conv of `channels` filters pruned at `rate` (torch's count, as l2_filter) and the same
    with its kept count rounded as round_to=`block` rounds it (schedules.round_kept), timed
    against the dense conv like measure_speed (interleaved, medians of paired ratios): filters,
    FLOPs and time relative to dense, and time per FLOP relative to dense (1 = the FLOPs'
    promise kept)."""
    asked = channels - n_prune(channels, rate)
    rounded = round_kept(asked, channels, block)
    kept = {"dense": channels, f"{asked} kept (as asked)": asked,
            f"{rounded} kept (round_to={block})": rounded}
    torch.manual_seed(0)
    convs = {name: nn.Conv2d(channels, k, 3, padding=1) for name, k in kept.items()}
    shape = (channels, size, size)
    res = _timed(convs, shape, batch, budget_s * 0.8, time.perf_counter() + budget_s)
    df = pd.DataFrame(_rows(res, "dense")).rename(columns={"name": "conv"})
    df.insert(1, "filters", list(kept.values()))
    df["FLOPs relative"] = [count_flops(convs[k], shape) / count_flops(convs["dense"], shape)
                            for k in kept]
    df["time per FLOP"] = df.relative / df["FLOPs relative"]
    return df


# -- 2:4 semi-structured sparsity ---------------------------------------------------------------
def two_four_pattern(rows: int = 4, cols: int = 16, seed: int = 0) -> str:
    """A small random weight matrix after 2:4 magnitude pruning (masks.nm_mask), as text: kept
    weights printed, pruned ones as dots, groups of 4 separated by bars."""
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    keep = nm_mask(w.abs(), 2, 4)
    lines = []
    for r in range(rows):
        cells = [f"{w[r, c].item():+.2f}" if keep[r, c] else "  .  " for c in range(cols)]
        lines.append(" | ".join(" ".join(cells[g:g + 4]) for g in range(0, cols, 4)))
    return "\n".join(lines)


def two_four_linear(features: int, seed: int = 0) -> dict[str, nn.Module]:
    """A Linear features -> features two ways: dense, and its 2:4 twin (the 2 largest |w| of
    every 4 along the input kept by masks.nm_mask: half the weights zero, same shape)."""
    torch.manual_seed(seed)
    dense = nn.Linear(features, features)
    masked = nn.Linear(features, features)
    masked.load_state_dict(dense.state_dict())
    with torch.no_grad():
        masked.weight.mul_(nm_mask(dense.weight.abs(), 2, 4))
    return {"dense": dense, "2:4 zeros, dense kernel": masked}


def measure_two_four(features: int = 1024, batch: int = 256, budget_s: float = 2.0
                     ) -> dict[str, Any]:
    """Dense vs 2:4-zeroed Linear on this machine's CPU (metrics.measure_latency, interleaved,
    within about `budget_s`), and where CUDA has 2:4 kernels the zeroed layer dense in fp16 vs
    on the kernels (semistructured.measure); `kernel` is None elsewhere and `reason` says why."""
    t0 = time.perf_counter()
    layers = two_four_linear(features)
    share = budget_s / 2
    res = _timed(layers, (features,), batch, share * 0.8, t0 + share)
    cpu = pd.DataFrame(_rows(res, "dense")).rename(columns={"name": "layer"})
    backend, reason = kernel_support()
    kernel = None
    if backend is not None:
        out = measure(layers["2:4 zeros, dense kernel"], (features,), (batch,),
                      budget_s=share * 0.8, backend=backend)
        if out["rows"]:
            r = out["rows"][0]
            kernel = pd.DataFrame({"layer": ["dense fp16", f"2:4 kernels ({backend})"],
                                   "ms": [r["dense_ms"], r["sparse_ms"]],
                                   "relative": [1.0, 1.0 / r["speedup"]],
                                   "reps": [r["reps"]] * 2, "spread": [0.0, 0.0]})
        else:
            reason = out.get("error") or "; ".join(out["skipped"].values())
    return {"cpu": cpu, "kernel": kernel, "reason": reason, "features": features,
            "batch": batch, "threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - t0, "noisy": bool((cpu.spread > NOISY).any()),
            "min_reps": int(cpu.reps.min())}
