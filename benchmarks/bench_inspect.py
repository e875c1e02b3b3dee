"""Inspect benchmarks (issue 9); prints times and ratios measured side by side in one run.

1. Sensitivity scan of the tiny CNN on digits (trained dense baseline, all 359 held-out images)
   at 5 rates, unstructured and filter: wall time (target <= 10 s on 2 cores), and its ratio to
   the bare evaluations it runs (one forward per layer x nonzero rate, plus the dense one, timed
   interleaved), at the default thread count and at 1 thread, interleaved.
2. The same scan of a CIFAR ResNet-20 on a 512-image batch. CIFAR-10 cannot be downloaded
   offline, so the batch is synthetic CIFAR-shaped data (3 x 32 x 32 uint8, 10 classes) and the
   model is randomly initialised: the time is what it measures, not the accuracies.
3. The attribution views of a digits run (IG + saliency of 4 images, agreement, layer
   conductance), wall time each.

    python benchmarks/bench_inspect.py [--dense-epochs 20] [--repeats 3] [--resnet-threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from pruneviz import inspect as ins
from pruneviz.config import SessionConfig
from pruneviz.data import DataBundle
from pruneviz.models import build_model
from pruneviz.session import run_session
from pruneviz.store import Store

RATES = (0.0, 0.25, 0.5, 0.75, 0.9)


def synthetic_cifar(n: int = 512) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataBundle("synthetic", x, y, x, y, [str(i) for i in range(10)], False)


def timed(fn, *args, **kw) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def scan_vs_evals(model, x, y, kind: str, threads: list[int], repeats: int) -> dict:
    """Per thread count: median scan wall time and median single-evaluation time, interleaved."""
    out = {n: {"scan": [], "eval": []} for n in threads}
    for _ in range(repeats):
        for n in threads:
            torch.set_num_threads(n)
            t, scan = timed(ins.sensitivity_scan, model, x, y, rates=RATES, kind=kind)
            out[n]["scan"].append(t)
            out[n]["eval"].append(timed(ins.evaluate_batch, model, x, y)[0])
    n_evals = 1 + int((scan.pruned_params > 0).sum())     # rate 0 reuses the dense evaluation
    return {n: (statistics.median(v["scan"]), statistics.median(v["eval"]), n_evals)
            for n, v in out.items()}


def report(label: str, results: dict, target: str = "") -> None:
    for n, (scan, ev, n_evals) in results.items():
        print(f"[{label}] {n} thread(s): scan {scan:.2f} s{target}; scan / ({n_evals} "
              f"evaluations x {ev * 1e3:.0f} ms for one) = {scan / (n_evals * ev):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dense-epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--resnet-threads", type=int, default=0,
                    help="Threads for the ResNet-20 scan (0: torch's default).")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    threads = sorted({default_threads, 1}, reverse=True)
    print(f"torch {torch.__version__}, default {default_threads} threads, CPU")

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        t, s = timed(run_session, SessionConfig(method="l2_filter", rate=0.5, epochs=2,
                                                dense_epochs=args.dense_epochs, device="cpu"),
                     store)
        print(f"[setup] digits dense baseline ({args.dense_epochs} epochs) + l2_filter run: "
              f"{t:.1f} s; dense accuracy {s['dense_accuracy']:.4f}")
        torch.set_num_threads(default_threads)
        t_load, rm = timed(ins.load_run, store, s["run_id"])
        x, y = ins.heldout_batch(rm.data, limit=0)
        for kind in ins.KINDS:
            report(f"digits tiny_cnn {kind}", scan_vs_evals(rm.dense, x, y, kind, threads,
                                                            args.repeats),
                   " (target <= 10 s on 2 cores)")
        torch.set_num_threads(default_threads)
        xs, ys = ins.held_out_images(rm.data, 4)
        base = ins.black_baseline(rm.data, xs)
        parts = {"load run": t_load}
        for method in ins.ATTRIBUTIONS:
            parts[method] = timed(ins.compare_attributions, rm.dense, rm.pruned, xs, ys, method,
                                  baseline=base)[0]
        parts["agreement"] = timed(ins.agreement, rm.dense, rm.pruned, rm.data)[0]
        parts["conductance conv2"] = timed(ins.layer_contributions, rm.dense, "conv2", xs, ys,
                                           rm.masks, baseline=base)[0]
        print("[digits views] " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
              + f"; total {sum(parts.values()):.2f} s")

    data = synthetic_cifar(512)
    torch.manual_seed(0)
    model = build_model("resnet20", data.input_shape, 10).eval()
    x, y = ins.heldout_batch(data, limit=512)
    for kind in ins.KINDS:
        report(f"resnet20 512 synthetic CIFAR {kind}",
               scan_vs_evals(model, x, y, kind, [args.resnet_threads or default_threads], 1))


if __name__ == "__main__":
    main()
