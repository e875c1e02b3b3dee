"""llm family benchmark (issue 26): the one-shot prune's wall time, side by side in one run, on
pruneviz's own gpt_tiny (pruneviz/transformers.py at its defaults: 4 blocks, width 64, 4 heads,
context 64, 256-byte vocabulary) with the papers' 128 calibration sequences: Wanda at 50 % and SparseGPT at 50 % and 2:4, beside
per-row magnitude (same calibration path) and plain layer-wise magnitude (l1: no calibration).

What is timed is the engine's own path, calib.sequential with each method's `prune`: the
calibration forwards (early-stopped per block), the scores, SparseGPT's Hessians and updates;
not the records the session writes for the view (timed apart, once, as `records`). The model is
random-initialised and the tokens random bytes: timing does not depend on what the weights have
learned.
Methods run interleaved, `--repeats` times each; medians are printed beside the targets
(Wanda <= 2 s, SparseGPT <= 10 s on 2 cores) and in units of one forward pass of the
calibration set measured in the same run (a ratio a busy machine changes less than seconds).

    python benchmarks/bench_llm.py [--repeats 3] [--threads 2] [--samples 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn

from pruneviz.masks import layerwise_magnitude
from pruneviz.methods.base import make_params
from pruneviz.methods.llm.calib import CHUNK, sequential
from pruneviz.methods.llm.engine import MagnitudeRow, SparseGPT, Wanda, _layers
from pruneviz.text import VOCAB
from pruneviz.transformers import GPTConfig, gpt_tiny

TARGETS = {"wanda": 2.0, "sparsegpt": 10.0}


def prune_once(method: str, model: nn.Module, batches: list, rate: float, nm: str) -> float:
    """Seconds one one-shot prune of a copy of `model` takes ("forward": one forward pass of
    the calibration set, the unit the prune's cost is counted in)."""
    model = copy.deepcopy(model)
    if method == "forward":
        started = time.perf_counter()
        with torch.no_grad():
            model(torch.cat([b[0] for b in batches]))
        return time.perf_counter() - started
    layers = _layers(model)
    started = time.perf_counter()
    if method == "l1":
        with torch.no_grad():
            masks = layerwise_magnitude({l.param: l.module.weight for l in layers}, rate)
            for l in layers:
                l.module.weight.mul_(masks[l.param])
        return time.perf_counter() - started
    cls = {"wanda": Wanda, "sparsegpt": SparseGPT, "magnitude_row": MagnitudeRow}[method]
    m = cls(make_params(cls, {"nm": nm}))
    m.rate = rate
    for _ in sequential(model, m.patterned(layers), batches, m.hessian, m.prune):
        pass
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=128, help="calibration sequences")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    context = GPTConfig.block_size
    model = gpt_tiny(0, context, VOCAB).eval()      # what --model gpt_tiny builds on text
    tokens = torch.randint(0, VOCAB, (args.samples, context))
    batches = [(tokens[i:i + CHUNK], tokens[i:i + CHUNK]) for i in range(0, args.samples, CHUNK)]
    runs = [("forward", 0.0, ""), ("l1", 0.5, ""), ("magnitude_row", 0.5, ""), ("wanda", 0.5, ""),
            ("sparsegpt", 0.5, ""), ("wanda", 0.5, "2:4"), ("sparsegpt", 0.5, "2:4")]
    times: dict[tuple, list[float]] = {r: [] for r in runs}
    prune_once("wanda", model, batches, 0.5, "")           # warm-up: first-call allocations
    for _ in range(args.repeats):
        for r in runs:
            times[r].append(prune_once(r[0], model, batches, r[1], r[2]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; model "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{len(_layers(model))} pruned linears, {args.samples} x {context} calibration "
          f"tokens; "
          f"median of {args.repeats}, interleaved")
    base = statistics.median(times[("forward", 0.0, "")])
    for (method, rate, nm), t in times.items():
        med = statistics.median(t)
        target = TARGETS.get(method)
        verdict = "" if target is None else (f"  target <= {target:g} s: "
                                             f"{'met' if med <= target else 'MISSED'}")
        label = (method if method == "forward" else
                 f"{method} {'nm=' + nm if nm else f'{rate:.0%}'}")
        print(f"[prune] {label:22s} {med:7.3f} s  ({med / base:5.2f} forwards; "
              f"{' '.join(f'{x:.2f}' for x in t)}){verdict}")


if __name__ == "__main__":
    main()
