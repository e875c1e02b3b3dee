"""PGMPF benchmarks (issue 3); prints numbers measured side by side in one run.

1. PGMPF session step / plain dense step, ResNet-20 shape, batch 128, CPU, interleaved, with
   the prior gradient mask active (a mask in force at E/4: r_e < 1, dropout drawn every step).
   Target <= 1.05 (the authors' NumPy round-trip cost about +139%).
2. Digits (tiny_cnn, the `interactive` preset: 10 epochs from the cached dense start), keep
   rate 0.6 (rate 0.4): dense, pruned and final accuracy of pgmpf, sfp and asfp, with the
   FLOPs and parameters of the physically compacted network when the run reports them.

    python benchmarks/bench_pgmpf.py [--steps 40]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from bench_core import step_ratio  # this folder is sys.path[0] when run as a script

from pruneviz.config import SessionConfig
from pruneviz.methods import apply_preset
from pruneviz.session import Session, run_session
from pruneviz.store import Store


def mask_in_force(session: Session) -> None:
    """End epoch E/4 as the loop would, so the gradient mask acts on every following step."""
    ctx = session.ctx
    ctx.epoch = session.rec.epoch = ctx.epochs // 4
    session.method.end_of_epoch(ctx)
    assert session.method._pruned is not None


def digits(method: str, store: Store) -> dict:
    config = apply_preset(SessionConfig(method=method, rate=0.4, device="cpu", seed=0),
                          "interactive")
    return run_session(config, store)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    ratio, m, d = step_ratio(args.steps, "pgmpf", 0.4, setup=mask_in_force)
    print(f"[step] pgmpf session step (gradient mask active) / plain dense step (ResNet-20, "
          f"batch 128): {ratio:.3f}  ({m * 1e3:.0f} ms vs {d * 1e3:.0f} ms; target <= 1.05)")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for method in ("pgmpf", "sfp", "asfp"):
            s = digits(method, store)
            compact = ""
            if "flops_compact" in s:
                compact = (f", compact FLOPs {s['flops_compact'] / s['flops_dense']:.3f} of "
                           f"dense, compact params {s['params_compact'] / s['params_total']:.3f}")
            print(f"[digits] {method} keep 0.6, {s['steps']} steps: dense "
                  f"{s['dense_accuracy']:.4f}, pruned {s['pruned_accuracy']:.4f}, final "
                  f"{s['final_accuracy']:.4f}, sparsity {s['sparsity']:.4f}{compact}")


if __name__ == "__main__":
    main()
