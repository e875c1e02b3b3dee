"""The Compare form's default proposal (pruneviz.workers.DEFAULT_COMPARISON), run as a first launch
would: a fresh store (dense baselines included), one session at a time as the dashboard's single
worker runs them, sweep runs without their latency panel. Prints the wall time against the 90 s
target and, at the top rate, the spread of the methods' mean final accuracies against 3x their
seed-to-seed spread (the largest max - min over seeds of any method).

    flock /tmp/pruneviz-cpu.lock python benchmarks/bench_default_compare.py
    ... --methods random,l1 --rates 0.9,0.98 --seeds 0,1 --epochs 4,6   # try other proposals
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import pandas as pd
import torch

from pruneviz.config import parse_numbers, split_list
from pruneviz.session import run_session
from pruneviz.store import Store
from pruneviz.workers import DEFAULT_COMPARISON, Proposal

WALL_TARGET_S = 90.0
SPREAD_FACTOR = 3.0


def run_proposal(proposal: Proposal) -> tuple[pd.DataFrame, float]:
    """Every run of the proposal on a fresh store; (one row per run, total wall seconds)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        started = time.perf_counter()
        for config in proposal.configs():
            s = run_session(config, store)
            rows.append(dict(method=config.method, rate=config.rate, seed=config.seed,
                             status=s["status"], dense=s.get("dense_accuracy"),
                             final=s.get("final_accuracy"), wall_s=s.get("wall_s"),
                             warnings=len(s.get("warnings", []))))
        wall = time.perf_counter() - started
    return pd.DataFrame(rows), wall


def separation(runs: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """At the top rate: per-method mean and seed range, the spread of the means, and the largest
    seed range."""
    top = runs[runs.rate == runs.rate.max()]
    per = top.groupby("method", sort=False).final.agg(["mean", "min", "max"])
    per["seed_range"] = per["max"] - per["min"]
    return per, float(per["mean"].max() - per["mean"].min()), float(per.seed_range.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = DEFAULT_COMPARISON
    ap.add_argument("--methods", default=",".join(d.methods))
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in d.rates))
    ap.add_argument("--seeds", default=",".join(map(str, d.seeds)))
    ap.add_argument("--epochs", default=str(d.base.get("epochs", 8)),
                    help="comma-separated: each value is one proposal, on its own fresh store")
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}; targets: wall <= {WALL_TARGET_S:g} s, "
          f"method spread > {SPREAD_FACTOR:g}x seed spread at the top rate")
    for epochs in parse_numbers(args.epochs, "--epochs", int):
        proposal = dataclasses.replace(
            d, methods=tuple(split_list(args.methods)),
            rates=tuple(parse_numbers(args.rates, "--rates")),
            seeds=tuple(parse_numbers(args.seeds, "--seeds", int)),
            base={**d.base, "epochs": epochs})
        runs, wall = run_proposal(proposal)
        print(f"\n{len(runs)} runs: {', '.join(proposal.methods)} x rates {proposal.rates} x "
              f"seeds {proposal.seeds}, {proposal.base}")
        print(runs.pivot_table(index=["method", "rate"], columns="seed", values="final",
                               sort=False).round(4).to_string())
        print(f"runs with warnings: {int((runs.warnings > 0).sum())} of {len(runs)}; "
              f"failed: {int((runs.status != 'completed').sum())}")
        per, spread, noise = separation(runs)
        print(per.round(4).to_string())
        ratio = spread / noise if noise else float("inf")
        print(f"wall {wall:.1f} s (target <= {WALL_TARGET_S:g}: "
              f"{'holds' if wall <= WALL_TARGET_S else 'FAILS'}); at rate {runs.rate.max():g} "
              f"methods spread {spread:.4f} vs seed spread {noise:.4f}: {ratio:.1f}x "
              f"(target > {SPREAD_FACTOR:g}x: {'holds' if ratio > SPREAD_FACTOR else 'FAILS'})")


if __name__ == "__main__":
    main()
