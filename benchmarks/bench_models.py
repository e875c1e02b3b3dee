"""Any-model benchmarks (issue 24), side by side in one run, per zoo model at 32x32 on CPU:

1. Seconds to build the model from its spec and to trace it (layers, norms, coupled groups);
   target <= 2 s each on 2 cores.
2. Masked session step / plain dense step for l1 and pgmpf (interleaved, same batch); target
   <= 1.05, as for the built-in models.
3. The compact model at 50 % of the filter-prunable convs' filters (smallest L2 norm, BN
   zeroed): its FLOPs and batch-32 eval latency over the masked model's (reported).

    python benchmarks/bench_models.py [--steps 10] [--models mobilenet_v3_small,...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_core import interleaved

from pruneviz.config import SessionConfig
from pruneviz.data import DataBundle
from pruneviz.loop import Prepared, Session
from pruneviz.masks import (
    apply_masks,
    filter_mask,
    filter_norms,
    filter_param_masks,
    n_prune,
    prunable_layers,
)
from pruneviz.methods import get_method, make_params
from pruneviz.metrics import count_flops
from pruneviz.modelspec import build_spec, torchvision_names
from pruneviz.store import Store
from pruneviz.structure import trace
from pruneviz.surgery import compact

ZOO = ("mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf", "convnext_tiny",
       "shufflenet_v2_x0_5", "densenet121", "squeezenet1_0")
SHAPE = (3, 32, 32)


def synthetic(n: int = 128) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataBundle("synthetic", x, y, x[:32], y[:32], [str(i) for i in range(10)], False)


def build_and_trace(spec: str) -> tuple[float, float | str]:
    t = time.perf_counter()
    model = build_spec(spec, SHAPE, 10)
    built = time.perf_counter() - t
    t = time.perf_counter()
    try:
        trace(model, torch.zeros(1, *SHAPE))
    except Exception as e:     # Torch-Pruning cannot trace it (shufflenet's channel shuffle)
        return built, f"n/a ({type(e).__name__})"
    return built, time.perf_counter() - t


def step_ratio(spec: str, method: str, steps: int, batch: int = 32) -> float | str:
    """Median session step with the method's hooks / median plain step, interleaved."""
    torch.manual_seed(0)
    data = synthetic(4 * batch)
    config = SessionConfig(method=method, rate=0.5, model=spec, batch_size=batch, epochs=100,
                           device="cpu", start="scratch")
    cls = get_method(method)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        run_id = store.create_run(config)
        try:
            session = Session(Prepared(config, cls(make_params(cls, {})), data,
                                       build_spec(spec, SHAPE, 10), torch.device("cpu")),
                              store, run_id)
            session.begin()
        except Exception as e:     # e.g. a filter method on a model it cannot prune
            return f"n/a ({type(e).__name__})"
        plain = build_spec(spec, SHAPE, 10)
        opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        x, y = next(data.train_batches(0, 0, batch, torch.device("cpu")))

        def plain_step() -> None:
            loss = F.cross_entropy(plain(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss.item()
            opt.step()

        masked, dense = interleaved(session, plain_step, x, y, steps, warmup=2)
        session.finish("completed", None)
    return statistics.median(masked) / statistics.median(dense)


def latency(model: torch.nn.Module, x: torch.Tensor, reps: int = 5) -> float:
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def compact_ratios(spec: str) -> tuple[float, float] | str:
    """(FLOPs, latency) of the compact model over the masked one at 50 % of filters."""
    torch.manual_seed(0)
    model = build_spec(spec, SHAPE, 10).eval()
    layers = prunable_layers(model, linears=False, first_conv=True)
    if not layers:
        return "n/a (no filter-prunable conv)"
    masks = {}
    for layer in layers:
        scores = filter_norms(layer.module.weight)
        masks.update(filter_param_masks(layer, filter_mask(scores, n_prune(len(scores), 0.5))))
    apply_masks(model, masks)
    try:
        small, _ = compact(model, SHAPE)
    except Exception as e:
        return f"n/a ({type(e).__name__}: {str(e)[:60]})"
    x = torch.randn(32, *SHAPE)
    return (count_flops(small, SHAPE) / count_flops(model, SHAPE),
            latency(small.eval(), x) / latency(model, x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--models", default=",".join(ZOO))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torchvision_names()      # import torchvision once, outside the build times
    print(f"{'model':<20} {'build s':>8} {'trace s':>8} {'l1 step':>10} {'pgmpf step':>16} "
          f"{'compact FLOPs':>14} {'latency':>8}")
    print(f"{'target':<20} {'<= 2':>8} {'<= 2':>8} {'<= 1.05':>10} {'<= 1.05':>16} "
          f"{'report':>14} {'report':>8}")
    for name in args.models.split(","):
        spec = f"torchvision:{name}"
        built, traced = build_and_trace(spec)
        l1 = step_ratio(spec, "l1", args.steps)
        pgmpf = step_ratio(spec, "pgmpf", args.steps)
        ratios = compact_ratios(spec)
        flops, lat = ratios if isinstance(ratios, tuple) else (ratios, "")

        def f(v: float | str) -> str:
            return f"{v:.3f}" if isinstance(v, float) else str(v)

        print(f"{name:<20} {built:>8.2f} {f(traced):>8} {f(l1):>10} {f(pgmpf):>16} "
              f"{f(flops):>14} {f(lat):>8}", flush=True)


if __name__ == "__main__":
    main()
