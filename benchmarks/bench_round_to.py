"""round_to benchmark (issue 16): does rounding kept filter counts to the kernels' block buy the
speed the FLOPs promise, without buying a good ratio by pruning less?

Every pruned network here comes out of a real session (the method's own schedule, rounding and
criterion, then `report.load_run_models` compacts it), side by side with round_to=1 in one run:

- P4: ResNet-56, 40% of the filters (PGP, whose groups make residual channels removable),
  batch 64, CPU: latency gain / FLOPs gain (goal >= 0.8) and the absolute speed-up (goal: no
  lower than round_to=1), for round_to = 1, the block (down and nearest) and half the block;
- PGP's training-step time over dense against its FLOPs ratio (rate 0.5, the paper's; goal
  <= 1.15x), timed by interleaved SGD steps at batch 64;
- accuracy at equal latency on the real-image CIFAR-10 subset (ResNet-20 at 16 px, PGP from
  one dense start, a short budget): round_to = block at 40% against round_to=1 at 40 ... 70%,
  whose accuracy is interpolated at the rounded model's latency.

Timings: models interleaved in every repetition, medians (metrics.measure_latency), one torch
thread by default (a shared, loaded machine makes multi-threaded timings meaningless).

`--quick` (ResNet-20, the embedded cifar10_small, tiny budgets) checks that it runs in
seconds; its numbers mean nothing.

    python benchmarks/bench_round_to.py [--quick] [--reps 15] [--threads 1]
        [--subset ../shared/data/cifar10-subset] [--block N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pruneviz.config import SessionConfig
from pruneviz.metrics import count_flops, cpu_vector_block, measure_latency
from pruneviz.models import build_model
from pruneviz.report import load_run_models
from pruneviz.session import run_session
from pruneviz.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (3, 32, 32)
SMALL = (3, 16, 16)      # the subset at 16 px, as bench_claims trains it: minutes, not tens
SPEED = dict(dataset="cifar10_small", start="scratch", epochs=1, batch_size=64, device="cpu",
             method="pgp")


def pruned(store: Store, **fields) -> tuple[nn.Module, dict]:
    """The compact network and summary of a session of `fields`."""
    s = run_session(SessionConfig(**fields), store)
    assert s["status"] == "completed", s.get("error")
    return load_run_models(store, s["run_id"]).compact.eval(), s


def variants(block: int, quick: bool) -> list[tuple[str, dict]]:
    out = [("round_to=1", {"round_to": "1"})]
    if quick:
        return out + [(f"round_to={block} down", {"round_to": str(block)})]
    for n in dict.fromkeys((block, max(block // 2, 2))):
        out += [(f"round_to={n} down", {"round_to": str(n)}),
                (f"round_to={n} nearest", {"round_to": str(n), "round_mode": "nearest"})]
    return out


def train_step_times(models: dict[str, nn.Module], batch: int, reps: int) -> dict[str, float]:
    """Median seconds of one SGD step (forward, cross-entropy, backward, update), interleaved."""
    x, y = torch.randn(batch, *SHAPE), torch.randint(0, 10, (batch,))
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for rep in range(reps + 1):
        order = list(models) if rep % 2 == 0 else list(models)[::-1]
        for k in order:
            m = models[k].train()
            t = time.perf_counter()
            opts[k].zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opts[k].step()
            if rep:              # the first round warms up
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def p4(store: Store, block: int, args: argparse.Namespace) -> None:
    budget = dict(model=args.model, max_steps_per_epoch=1 if args.quick else 2, eval_limit=64)
    torch.manual_seed(0)
    models = {"dense": build_model(args.model, SHAPE, 10).eval()}
    flops = {"dense": count_flops(models["dense"], SHAPE)}
    rates = {}
    for name, params in variants(block, args.quick):
        models[name], s = pruned(store, **SPEED, **budget, rate=0.4,
                                 params={"prune_epochs": 1, **params})
        flops[name] = count_flops(models[name], SHAPE)
        rates[name] = s["filter_rate_achieved"]
    t = measure_latency(models, SHAPE, 64, budget_s=0.0, warmup=1, min_reps=args.reps,
                        max_reps=args.reps)
    base = t["dense"]["median_s"]
    print(f"[P4] {args.model}, PGP at 40% of the filters, batch 64, medians of {args.reps} "
          f"interleaved repetitions; dense {base * 1e3:.1f} ms, {flops['dense'] / 1e6:.1f} MFLOPs")
    gains = {}
    for name in models:
        if name == "dense":
            continue
        lat, fl = base / t[name]["median_s"], flops["dense"] / flops[name]
        gains[name] = lat
        print(f"[P4] {name:>18}: filters pruned {rates[name]:.1%}; FLOPs {fl:.2f}x, latency "
              f"{lat:.2f}x ({t[name]['median_s'] * 1e3:.1f} ms); latency gain / FLOPs gain = "
              f"{lat / fl:.3f}")
    main_name = f"round_to={block} down"
    ratio = gains[main_name] / (flops["dense"] / flops[main_name])
    print(f"[P4] verdict {main_name}: ratio {ratio:.3f} (goal >= 0.8: "
          f"{'met' if ratio >= 0.8 else 'NOT met'}); speed-up {gains[main_name]:.2f}x vs "
          f"{gains['round_to=1']:.2f}x unaligned (goal: no lower: "
          f"{'met' if gains[main_name] >= gains['round_to=1'] else 'NOT met'})")


def pgp_epoch(store: Store, block: int, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    models = {"dense": build_model(args.model, SHAPE, 10)}
    flops = {"dense": count_flops(models["dense"], SHAPE)}
    for name, params in (("round_to=1", {"round_to": "1"}),
                         (f"round_to={block}", {"round_to": str(block)})):
        models[name], _ = pruned(store, **SPEED, model=args.model, rate=0.5, eval_limit=64,
                                 max_steps_per_epoch=1, params={"prune_epochs": 1, **params})
        flops[name] = count_flops(models[name], SHAPE)
    times = train_step_times(models, 64, max(3, args.reps // 3))
    print(f"[PGP] {args.model} at rate 0.5, SGD step at batch 64 (dense "
          f"{times['dense'] * 1e3:.0f} ms):")
    for name in models:
        if name == "dense":
            continue
        time_ratio, flops_ratio = times[name] / times["dense"], flops[name] / flops["dense"]
        print(f"[PGP] {name:>12}: step time {time_ratio:.3f} of dense for a FLOPs ratio of "
              f"{flops_ratio:.3f}: {time_ratio / flops_ratio:.2f}x the FLOPs ratio (goal <= "
              f"1.15x: {'met' if time_ratio / flops_ratio <= 1.15 else 'NOT met'})")


def accuracy(store: Store, block: int, args: argparse.Namespace) -> None:
    dataset = "cifar10_small" if args.quick else f"folder:{args.subset}"
    if not args.quick and not args.subset.is_dir():
        print(f"[acc] skipped: no real-image subset at {args.subset}")
        return
    budget = (dict(epochs=1, dense_epochs=1, max_steps_per_epoch=2, eval_limit=64)
              if args.quick else
              dict(epochs=4, dense_epochs=6, max_steps_per_epoch=20, eval_limit=1000))
    common = dict(method="pgp", model="resnet20", dataset=dataset,
                  image_size=SMALL[1], batch_size=128, device="cpu", lr=0.01,
                  lr_schedule="cosine", **budget)
    runs = {f"round_to={block} 40%": (0.4, {"round_to": str(block)})}
    runs.update({f"round_to=1 {r:.0%}": (r, {"round_to": "1"}) for r in (0.4, 0.5, 0.6, 0.7)})
    models, acc = {}, {}
    for name, (rate, params) in runs.items():
        models[name], s = pruned(store, **common, rate=rate, params={"prune_epochs": 2, **params})
        acc[name] = s["final_accuracy"]
    t = measure_latency(models, SMALL, 64, budget_s=0.0, warmup=1, min_reps=args.reps,
                        max_reps=args.reps)
    lat = {k: v["median_s"] for k, v in t.items()}
    for name in runs:
        print(f"[acc] {name:>16}: held-out accuracy {acc[name]:.3f}, latency "
              f"{lat[name] * 1e3:.2f} ms (batch 64)")
    aligned = next(iter(runs))
    curve = sorted((lat[k], acc[k]) for k in runs if k != aligned)
    at = lat[aligned]
    if at <= curve[0][0] or at >= curve[-1][0]:
        near = min(curve, key=lambda p: abs(p[0] - at))
        same, how = near[1], f"nearest unaligned point ({near[0] * 1e3:.2f} ms)"
    else:
        (l0, a0), (l1, a1) = next((p, q) for p, q in zip(curve, curve[1:]) if p[0] <= at <= q[0])
        same, how = a0 + (a1 - a0) * (at - l0) / (l1 - l0), "interpolated on round_to=1's curve"
    print(f"[acc] at equal latency ({at * 1e3:.2f} ms): round_to={block} {acc[aligned]:.3f} vs "
          f"round_to=1 {same:.3f} ({how}); difference {acc[aligned] - same:+.3f}"
          + (" (quick mode: the numbers mean nothing)" if args.quick else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="seconds: ResNet-20, the embedded set, tiny budgets; no numbers")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--block", type=int, default=0, help="N (default: this CPU's block)")
    ap.add_argument("--subset", type=Path, default=ROOT / "../shared/data/cifar10-subset")
    ap.add_argument("--store", type=Path, default=None)
    args = ap.parse_args()
    args.model = "resnet20" if args.quick else "resnet56"
    if args.quick:
        args.reps = min(args.reps, 3)
    torch.set_num_threads(args.threads)
    capability, cpu_block = cpu_vector_block()
    block = args.block or cpu_block or 8
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU {capability} "
          f"(block {cpu_block}); round_to N = {block}")
    store = Store(args.store or Path(tempfile.mkdtemp(prefix="bench-round-to-")) / "runs")
    started = time.perf_counter()
    p4(store, block, args)
    pgp_epoch(store, block, args)
    accuracy(store, block, args)
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
