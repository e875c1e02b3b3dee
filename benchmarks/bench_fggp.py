"""FGGP benchmarks (issue 4); prints ratios measured side by side in one run.

1. FGGP session step, its pruning steps amortised, / plain dense step: ResNet-20 shape, batch
   128, CPU, interleaved (bench_core.step_times). The 4000-step session prunes every
   dT = T_end // 50 = 64 steps; the window holds whole dT periods, so the amortised ratio is
   (median non-pruning step * (dT - 1) + mean pruning step) / dT / median dense step.
2. Digits accuracy at 90% and 95% for fggp, gmp and granet over 3 seeds (real run_session, the
   same budget and dense start for all), as mean, standard deviation and range.

    python benchmarks/bench_fggp.py [--periods 2] [--epochs 10] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import pandas as pd
import torch
from bench_core import step_times

from pruneviz.config import SessionConfig
from pruneviz.methods.fggp import prune_every
from pruneviz.session import run_session
from pruneviz.store import Store

WARMUP = 3           # bench_core.step_times drops the first 3 steps
TOTAL = 4000         # steps of bench_core's ResNet-20 session


def amortised_ratio(method: str, periods: int, rate: float = 0.9) -> tuple[float, ...]:
    """(amortised ratio, non-pruning ms, pruning ms, dense ms, dT) for `periods` whole dT."""
    every = prune_every(TOTAL, 0.8, 0)
    masked, dense = step_times(periods * every, method, rate)
    pruning = [m for i, m in enumerate(masked) if (i + WARMUP) % every == 0]
    plain = [m for i, m in enumerate(masked) if (i + WARMUP) % every]
    m, p, d = statistics.median(plain), statistics.mean(pruning), statistics.median(dense)
    return (m * (every - 1) + p) / every / d, m * 1e3, p * 1e3, d * 1e3, every


def digits_table(methods: list[str], rates: list[float], seeds: list[int],
                 epochs: int) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for seed in seeds:
            for rate in rates:
                for method in methods:
                    s = run_session(SessionConfig(method=method, rate=rate, seed=seed,
                                                  epochs=epochs, device="cpu"), store)
                    assert s["status"] == "completed", s.get("error")
                    rows.append({k: s.get(k) for k in ("method", "rate", "dense_accuracy",
                                                       "pruned_accuracy", "final_accuracy",
                                                       "sparsity", "wall_s")} | {"seed": seed})
    df = pd.DataFrame(rows)
    acc = df.groupby(["rate", "method"], sort=False)
    return pd.DataFrame({
        "final_mean": acc.final_accuracy.mean(), "final_std": acc.final_accuracy.std(ddof=1),
        "final_min": acc.final_accuracy.min(), "final_max": acc.final_accuracy.max(),
        "pruned_mean": acc.pruned_accuracy.mean(), "dense_mean": acc.dense_accuracy.mean(),
        "sparsity": acc.sparsity.mean(), "wall_s": acc.wall_s.mean()}).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--periods", type=int, default=2, help="dT periods timed per method")
    ap.add_argument("--step-methods", default="fggp,granet,gmp")
    ap.add_argument("--methods", default="fggp,gmp,granet")
    ap.add_argument("--rates", default="0.9,0.95")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--skip-step", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if not args.skip_step:
        for method in args.step_methods.split(","):
            ratio, m, p, d, every = amortised_ratio(method, args.periods)
            print(f"[step] {method} session step, pruning steps amortised (every {every}) / plain "
                  f"dense step (ResNet-20, batch 128, 90%): {ratio:.3f}  ({m:.0f} ms, pruning "
                  f"step {p:.0f} ms, vs {d:.0f} ms; target <= 1.03)")
    seeds = [int(s) for s in args.seeds.split(",")]
    table = digits_table(args.methods.split(","), [float(r) for r in args.rates.split(",")],
                         seeds, args.epochs)
    print(f"[digits] tiny_cnn, {args.epochs} epochs after the cached dense start, seeds "
          f"{args.seeds} (std over seeds, ddof 1):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
