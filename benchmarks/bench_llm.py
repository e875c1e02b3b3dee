"""llm family benchmark (issue 26): the one-shot prune's wall time, side by side in one run, on
a gpt_tiny-sized causal LM (4 blocks, width 128, 4 heads, context 128, 256-byte vocabulary) with
the papers' 128 calibration sequences: Wanda at 50 % and SparseGPT at 50 % and 2:4, beside
per-row magnitude (same calibration path) and plain layer-wise magnitude (l1: no calibration).

What is timed is the engine's own path, calib.sequential with each method's `prune`: the
calibration forwards (early-stopped per block), the scores, SparseGPT's Hessians and updates;
not the records the session writes for the view (timed apart, once, as `records`). The model is
random-initialised (no gpt_tiny in this branch; its layout is the one gpt_tiny follows) and the
tokens random bytes: timing does not depend on what the weights have learned.
Methods run interleaved, `--repeats` times each; medians are printed beside the targets
(Wanda <= 2 s, SparseGPT <= 10 s on 2 cores) and in units of one forward pass of the
calibration set measured in the same run (a ratio a busy machine changes less than seconds).

    python benchmarks/bench_llm.py [--repeats 3] [--threads 2] [--samples 128]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from pruneviz.masks import layerwise_magnitude
from pruneviz.methods.base import make_params
from pruneviz.methods.llm.calib import CHUNK, sequential
from pruneviz.methods.llm.engine import MagnitudeRow, SparseGPT, Wanda, _layers

TARGETS = {"wanda": 2.0, "sparsegpt": 10.0}


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.head_dim = n_head, n_embd, n_embd // n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
                   for z in self.c_attn(x).split(self.n_embd, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


class TinyLM(nn.Module):
    """nanoGPT's layout at gpt_tiny's size."""

    def __init__(self, vocab: int = 256, n_layer: int = 4, n_embd: int = 128, n_head: int = 4,
                 block_size: int = 128) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02 / math.sqrt(1 if m.out_features != n_embd
                                                               else 2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


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
    model = TinyLM().eval()
    tokens = torch.randint(0, 256, (args.samples, 128))
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
          f"{len(_layers(model))} pruned linears, {args.samples} x 128 calibration tokens; "
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
