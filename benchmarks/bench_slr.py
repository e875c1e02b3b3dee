"""SLR / ADMM benchmarks (issue 6); prints ratios and accuracies measured side by side in one run.

1. Session step between multiplier updates / plain dense step, ResNet-20 shape, batch 128, CPU,
   interleaved (bench_core.step_ratio); l1 is printed as the session's own overhead for scale.
   On a loaded machine that ratio is dominated by noise, so the time spent inside the method's
   per-step hooks (penalty value, injected gradient, CE bookkeeping) is also timed directly,
   as a fraction of the rest of the same step.
2. Digits: hard-prune accuracy without retraining of slr vs admm after the same penalty epochs
   (retrain_epochs=0 for both), rates 0.8 and 0.9, seeds 0-2, mean and sample std; the one-shot
   magnitude prune of the same dense start (the probe before training) for reference.

    python benchmarks/bench_slr.py [--steps 20] [--epochs 10] [--presets paper,interactive]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_core import step_ratio, synthetic_cifar

from pruneviz.config import SessionConfig
from pruneviz.loop import Prepared, Session
from pruneviz.methods import apply_preset, get_method
from pruneviz.models import build_model
from pruneviz.session import run_session
from pruneviz.store import Store


def hook_share(steps: int, method: str) -> tuple[float, float, float]:
    """(median hook time / median rest of the step, hook ms, rest ms) over `steps` steps of a
    ResNet-20 session at batch 128, timing the method's per-step hooks inside the step."""
    torch.manual_seed(0)
    data = synthetic_cifar()
    config = SessionConfig(method=method, rate=0.8, model="resnet20", batch_size=128,
                           epochs=1000, device="cpu", start="scratch")
    cls = get_method(method)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        session = Session(Prepared(config, cls(), data, build_model("resnet20", (3, 32, 32), 10),
                                   torch.device("cpu")), store, store.create_run(config))
        session.begin()
        ctx, m = session.ctx, session.method
        x, y = next(data.train_batches(0, 0, 128, torch.device("cpu")))
        hooks, rest = [], []
        for i in range(steps + 3):
            t0 = time.perf_counter()
            ce = F.cross_entropy(ctx.model(x), y)
            t1 = time.perf_counter()
            pen = m.loss_penalty(ctx)
            t2 = time.perf_counter()
            ctx.loss = ce + pen
            ctx.optimizer.zero_grad(set_to_none=True)
            ctx.loss.backward()
            ctx.loss.item()
            t3 = time.perf_counter()
            m.after_backward(ctx)
            t4 = time.perf_counter()
            ctx.optimizer.step()
            t5 = time.perf_counter()
            m.after_step(ctx)
            t6 = time.perf_counter()
            if i >= 3:
                h = (t2 - t1) + (t4 - t3) + (t6 - t5)
                hooks.append(h)
                rest.append(t6 - t0 - h)
        session.finish("completed", None)
    h, r = statistics.median(hooks), statistics.median(rest)
    return h / r, h, r


def hard_prune_accuracies(store: Store, preset: str, epochs: int, rate: float, seed: int
                          ) -> dict[str, float]:
    """Retrain-free accuracy of slr and admm (and the one-shot prune) for one rate and seed."""
    out = {}
    for method in ("slr", "admm"):
        config = apply_preset(SessionConfig(method=method, rate=rate, seed=seed, device="cpu"),
                              preset)
        config = config.replace(epochs=epochs, params={**config.params, "retrain_epochs": 0})
        s = run_session(config, store)
        assert s["status"] == "completed", s.get("error")
        out[method] = s["hard_prune_accuracy"]
        rows = store.rows(s["run_id"], "slr_epochs")
        out["one-shot"] = float(rows[rows.phase == "init"].hard_prune_now_accuracy.iloc[0])
        out["dense"] = s["dense_accuracy"]
    return out


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--presets", default="paper,interactive")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--skip-step", action="store_true", help="skip the step-time ratios")
    ap.add_argument("--skip-digits", action="store_true", help="skip the digits accuracies")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for method in () if args.skip_step else ("l1", "slr", "admm"):
        ratio, m, d = step_ratio(args.steps, method)
        print(f"[step] {method} session step / plain dense step (ResNet-20, batch 128): "
              f"{ratio:.3f}  ({m * 1e3:.0f} ms vs {d * 1e3:.0f} ms; target <= 1.03)")
    for method in () if args.skip_step else ("slr", "admm"):
        share, h, r = hook_share(args.steps, method)
        print(f"[hooks] {method} per-step hooks / rest of the step (ResNet-20, batch 128): "
              f"1 + {share:.4f}  ({h * 1e3:.2f} ms vs {r * 1e3:.0f} ms)")
    if args.skip_digits:
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for preset in args.presets.split(","):
            print(f"[digits] hard-prune accuracy without retraining, preset {preset}, "
                  f"{args.epochs} penalty epochs, seeds {args.seeds} (mean +- std)")
            print(f"  {'rate':>4}  {'dense':>16}  {'one-shot (no SLR)':>17}  {'slr':>16}  "
                  f"{'admm':>16}")
            for rate in (0.8, 0.9):
                results = [hard_prune_accuracies(store, preset, args.epochs, rate, seed)
                           for seed in seeds]
                cols = {k: fmt([r[k] for r in results])
                        for k in ("dense", "one-shot", "slr", "admm")}
                print(f"  {rate:>4}  {cols['dense']:>16}  {cols['one-shot']:>17}  "
                      f"{cols['slr']:>16}  {cols['admm']:>16}")


if __name__ == "__main__":
    main()
