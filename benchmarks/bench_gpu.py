"""GPU benchmark (issue 18), ready for a CUDA machine as is (about 2 minutes; <= 5).

1. Step time of every registered method's session step vs a plain dense step (ResNet-20,
   batch 128, synthetic CIFAR-shaped data), interleaved, CUDA synchronized around each timer.
2. Host syncs per step (torch.cuda.set_sync_debug_mode counts every op that waits for the GPU):
   the session step of each method vs the plain step.
3. Worker start-up: `python -m pruneviz worker --once` on an empty store where that command
   exists, else the import time of pruneviz.session in a fresh interpreter.
4. 2:4 kernels (issue 16): fp16 Linear layers of transformer-MLP shapes, and pruneviz's `mlp`
   model at CIFAR size, dense vs the same 2:4-masked weights on torch's semi-structured kernels
   (pruneviz.semistructured.measure: outputs checked, then interleaved medians), where the GPU
   has them (compute capability 8.0+).

Without CUDA it still runs (so CI keeps it working): the step times on CPU at a small batch,
the sync counts and the 2:4 section skipped, each skip printed.

    python benchmarks/bench_gpu.py [--steps 20] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
import torch.nn as nn
from bench_core import bench_session, step_times

from pruneviz.masks import nm_mask
from pruneviz.methods import load_all
from pruneviz.models import build_model
from pruneviz.semistructured import kernel_support, measure
from pruneviz.store import Store

RATE = 0.8
# (out, in) of Linear layers as in a transformer MLP (BERT-base, a 4k-wide model), at 2048 tokens
TWO_FOUR_SHAPES = ((3072, 768), (768, 3072), (4096, 4096), (11008, 4096))


def step_section(methods: list[str], device: str, steps: int, batch: int) -> None:
    print(f"[step] session step / plain dense step, ResNet-20, batch {batch}, {device}, median "
          f"of {steps} interleaved steps")
    print(f"{'method':<10} {'session ms':>11} {'plain ms':>9} {'ratio':>6}")
    for method in methods:
        masked, dense = step_times(steps, method, RATE, device=device, batch=batch)
        m, d = statistics.median(masked), statistics.median(dense)
        print(f"{method:<10} {m * 1e3:11.2f} {d * 1e3:9.2f} {m / d:6.2f}")


def _syncs(step: object) -> int:
    """Ops in one call of `step` that made the host wait for the GPU."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()  # type: ignore[operator]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def sync_section(methods: list[str], batch: int) -> None:
    print(f"[syncs] host syncs in one step (after 3 warm-up steps), batch {batch}, cuda")
    print(f"{'method':<10} {'session':>8} {'plain':>6}")
    for method in methods:
        with bench_session(method, RATE, device="cuda", batch=batch) as (session, plain, x, y):
            def one() -> None:
                session.step(x, y)
                session.flush()
            for i in range(3):
                session.ctx.step = session.rec.step = i
                one()
                plain()
            session.ctx.step = session.rec.step = 3
            print(f"{method:<10} {_syncs(one):8d} {_syncs(plain):6d}")


def startup_section(repeats: int) -> None:
    has_worker = subprocess.run([sys.executable, "-m", "pruneviz", "worker", "--help"],
                                capture_output=True).returncode == 0
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            if has_worker:
                Store(tmp)      # a worker serves an existing store only (no store at a typo)
            cmd = ([sys.executable, "-m", "pruneviz", "worker", "--once", "--store", tmp]
                   if has_worker else [sys.executable, "-c", "import pruneviz.session"])
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
    what = ("`python -m pruneviz worker --once` on an empty store" if has_worker else
            "import of pruneviz.session in a fresh interpreter (no `worker` command here)")
    print(f"[startup] {what}: median {statistics.median(times):.2f} s of {repeats}")


def _two_four(model: nn.Module) -> nn.Module:
    """`model` with every Linear weight masked to 2:4 by magnitude (groups along the input)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.in_features % 4 == 0:
                m.weight.mul_(nm_mask(m.weight.abs(), 2, 4))
    return model


def two_four_section(quick: bool) -> None:
    backend, reason = kernel_support()
    if backend is None:
        print(f"[2:4] skipped: {reason}")
        return
    print(f"[2:4] {reason}: fp16, dense vs the same 2:4 weights on the kernels, outputs checked, "
          f"median of interleaved runs (speed-up = median of paired ratios)")
    print(f"{'what':<24} {'batch':>6} {'dense ms':>9} {'2:4 ms':>8} {'speedup':>8}")
    torch.manual_seed(0)
    cases = [(f"linear {o}x{i}", _two_four(nn.Linear(i, o)), (i,), (2048,))
             for o, i in TWO_FOUR_SHAPES[:1 if quick else None]]
    cases.append(("mlp model, 3x32x32", _two_four(build_model("mlp", (3, 32, 32), 10)),
                  (3, 32, 32), (1, 256)))
    for what, model, shape, batches in cases:
        res = measure(model, shape, batches, budget_s=0.2 if quick else 1.0, backend=backend)
        if "error" in res or not res["rows"]:
            why = res.get("error") or "; ".join(f"{k}: {v}" for k, v in res["skipped"].items())
            print(f"{what:<24} not timed: {why}")
        for r in res["rows"]:
            print(f"{what:<24} {r['batch']:6d} {r['dense_ms']:9.3f} {r['sparse_ms']:8.3f} "
                  f"{r['speedup']:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="Timed steps per method (default 20).")
    ap.add_argument("--quick", action="store_true",
                    help="2 steps at batch 8, 1 start-up sample: checks the script runs.")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    methods = sorted(load_all())
    print(f"torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if cuda else 'no CUDA device'}")
    if cuda and not args.quick:
        step_section(methods, "cuda", args.steps, 128)
        sync_section(methods, 128)
    else:
        print("[step] " + ("--quick" if cuda else "no CUDA") + ": the step times below are on "
              "CPU at batch 8, a check that the script runs, not a measurement")
        step_section(methods, "cpu", 2, 8)
        print("[syncs] skipped: host syncs are counted on CUDA only")
    two_four_section(args.quick)
    startup_section(1 if args.quick else 5)


if __name__ == "__main__":
    main()
