"""PGMPF benchmarks (issue 3); prints numbers measured side by side in one run.

1. PGMPF session step / plain dense step, ResNet-20 shape, batch 128, CPU, interleaved, with
   the prior gradient mask active (a mask in force at E/4: r_e < 1, dropout drawn every step).
   Target <= 1.05 (the authors' NumPy round-trip cost about +139%). Also the hook alone:
   PGMPF's after_backward time as a share of a plain step (less noisy on a loaded machine).
2. Digits (tiny_cnn, the `interactive` preset: 10 epochs from the cached dense start), keep
   rate 0.6 (rate 0.4): dense, pruned and final accuracy of pgmpf, sfp and asfp, with the
   FLOPs and parameters of the physically compacted network when the run reports them.

    python benchmarks/bench_pgmpf.py [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_core import step_ratio  # this folder is sys.path[0] when run as a script

from pruneviz.config import SessionConfig
from pruneviz.loop import Session
from pruneviz.methods import apply_preset
from pruneviz.session import run_session
from pruneviz.store import Store


def mask_in_force(session: Session) -> None:
    """End epoch E/4 as the loop would, so the gradient mask acts on every following step."""
    ctx = session.ctx
    ctx.epoch = session.rec.epoch = ctx.epochs // 4
    session.method.end_of_epoch(ctx)
    assert session.method._pruned is not None


def hook_share(steps: int) -> tuple[float, float]:
    """Median ms of PGMPF's after_backward alone (mask in force, dropout drawn) and its share of
    a median plain ResNet-20 step (batch 128), measured interleaved."""
    captured: dict = {}

    def keep(session: Session) -> None:
        mask_in_force(session)
        captured["session"] = session

    step_ratio(1, "pgmpf", 0.4, setup=keep)     # builds a session; we reuse its method state
    session = captured["session"]
    ctx, method = session.ctx, session.method
    x, y = next(session.data.train_batches(0, 0, 128, torch.device("cpu")))
    hook, plain = [], []
    for i in range(steps + 3):
        t = time.perf_counter()
        loss = F.cross_entropy(ctx.model(x), y)
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss.item()
        ctx.optimizer.step()
        p = time.perf_counter() - t
        ctx.step = 1                              # not a sampled step: the mask alone
        t = time.perf_counter()
        method.after_backward(ctx)
        h = time.perf_counter() - t
        if i >= 3:
            hook.append(h)
            plain.append(p)
    return statistics.median(hook), statistics.median(hook) / statistics.median(plain)


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
    ms, share = hook_share(args.steps)
    print(f"[hook] pgmpf after_backward alone (gradient mask + dropout draw, ResNet-20): "
          f"{ms * 1e3:.2f} ms per step = {share * 100:.2f}% of a plain step")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for method in ("pgmpf", "sfp", "asfp"):
            s = digits(method, store)
            compact = ""
            if "flops_compact" in s:
                compact = (f", compact FLOPs {s['flops_compact'] / s['flops_dense']:.3f} of "
                           f"dense, compact params {s['params_compact'] / s['params_dense']:.3f}")
            print(f"[digits] {method} keep 0.6, {s['steps']} steps: dense "
                  f"{s['dense_accuracy']:.4f}, pruned {s['pruned_accuracy']:.4f}, final "
                  f"{s['final_accuracy']:.4f}, sparsity {s['sparsity']:.4f}{compact}")


if __name__ == "__main__":
    main()
