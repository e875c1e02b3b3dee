"""Core engine benchmarks (issue 2); prints ratios measured side by side in one run.

1. Masked session step / plain dense step, ResNet-20 shape, batch 128, CPU, interleaved.
2. Wall time and peak resident memory of the default `python -m pruneviz run` on a fresh store.
3. Store growth per 1000 recorded steps of a ResNet-20 session.

    python benchmarks/bench_core.py [--steps 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from pruneviz.config import SessionConfig
from pruneviz.data import DataBundle
from pruneviz.loop import Prepared, Session
from pruneviz.methods import get_method, make_params
from pruneviz.models import build_model
from pruneviz.store import Store


def synthetic_cifar(n: int = 512) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataBundle("synthetic", x, y, x[:128], y[:128], [str(i) for i in range(10)], False)


@contextmanager
def bench_session(method: str = "l1", rate: float = 0.8, *,
                  params: dict[str, Any] | None = None, device: str = "cpu",
                  batch: int = 128) -> Iterator[tuple[Session, Callable[[], None],
                                                      torch.Tensor, torch.Tensor]]:
    """A begun ResNet-20 session of 4000 steps (1000 epochs of 4 batches) on synthetic CIFAR,
    a plain dense step to compare it with, and the batch both train on."""
    torch.manual_seed(0)
    dev = torch.device(device)
    data = synthetic_cifar(4 * batch)
    config = SessionConfig(method=method, rate=rate, model="resnet20", batch_size=batch,
                           epochs=1000, device=device, start="scratch", params=params or {})
    cls = get_method(method)
    params = dict(params or {})
    if "calib_samples" in {f.name for f in dataclasses.fields(cls.Params)}:
        # one-shot methods that calibrate (llm family) draw at most the synthetic set's size
        params.setdefault("calib_samples", min(cls.Params().calib_samples, len(data.train_x)))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        run_id = store.create_run(config)
        session = Session(Prepared(config, cls(make_params(cls, params)), data,
                                   build_model("resnet20", (3, 32, 32), 10), dev),
                          store, run_id)
        session.begin()
        plain = build_model("resnet20", (3, 32, 32), 10).to(dev)
        opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        x, y = next(data.train_batches(0, 0, batch, dev))

        def plain_step() -> None:
            loss = F.cross_entropy(plain(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss.item()
            opt.step()

        yield session, plain_step, x, y
        session.finish("completed", None)


def step_times(steps: int, method: str = "l1", rate: float = 0.8, *,
               params: dict[str, Any] | None = None,
               setup: Callable[[Session], None] | None = None, device: str = "cpu",
               batch: int = 128) -> tuple[list[float], list[float]]:
    """Seconds of each session step (with masks, hooks, records) and of each plain dense step,
    interleaved on the same batch after 3 warm-up steps: entry i is optimizer step i + 3 of a
    ResNet-20 session of 4000 steps (1000 epochs of 4 batches of 128).

    `params`: the method's parameters; `setup(session)` runs after `begin()`, e.g. to put a
    method in the state to measure (a mask in force)."""
    # CUDA runs ahead of the host: wait for it, or the timers read the launch time only
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    with bench_session(method, rate, params=params, device=device, batch=batch) as (
            session, plain_step, x, y):
        if setup is not None:
            setup(session)
        return interleaved(session, plain_step, x, y, steps, sync=sync)


def interleaved(session: Session, plain_step: Callable[[], None], x: torch.Tensor,
                y: torch.Tensor, steps: int, *, warmup: int = 3,
                sync: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """Seconds of `steps` session steps (masks, hooks, records) and of as many plain dense
    steps, one of each in turn on the same batch, after `warmup` pairs: (masked, dense)."""
    masked, dense = [], []
    for i in range(steps + warmup):
        sync()
        t = time.perf_counter()
        plain_step()
        sync()
        d = time.perf_counter() - t
        session.ctx.step = session.rec.step = i
        t = time.perf_counter()
        session.step(x, y)
        session.flush()
        sync()
        m = time.perf_counter() - t
        if i >= warmup:
            dense.append(d)
            masked.append(m)
    return masked, dense


def step_ratio(steps: int, method: str = "l1", rate: float = 0.8, *,
               params: dict[str, Any] | None = None,
               setup: Callable[[Session], None] | None = None) -> tuple[float, float, float]:
    """Median session step (with masks, hooks, records) / median plain step, interleaved."""
    masked, dense = step_times(steps, method, rate, params=params, setup=setup)
    return statistics.median(masked) / statistics.median(dense), statistics.median(masked), \
        statistics.median(dense)


# The child reports its own peak RSS as VmHWM (the high-water mark of its own address space):
# RUSAGE_CHILDREN, and even RUSAGE_SELF (Linux carries ru_maxrss across execve), count the
# pages the fork copied from this already large process (1.37 GB reported for a 0.8 GB run).
_CHILD = ("import atexit, sys, runpy; atexit.register(lambda: print('MAXRSS', next("
          "l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')), "
          "file=sys.stderr)); "
          "sys.argv = ['pruneviz'] + sys.argv[1:]; "
          "runpy.run_module('pruneviz', run_name='__main__')")


def default_run() -> tuple[float, float, dict]:
    """Wall seconds and peak RSS (GB) of the default CLI run on a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _CHILD, "run", "--store", tmp, "--json"],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t
    kb = int(out.stderr.split("MAXRSS")[-1].split()[0])
    return wall, kb / 1024 ** 2, json.loads(out.stdout.strip().splitlines()[-1])


def store_growth(steps: int = 1000) -> float:
    """MB the store grows per 1000 recorded steps of a ResNet-20 session (gmp, digits)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        from pruneviz.session import run_session

        base = SessionConfig(model="resnet20", method="gmp", rate=0.9, dense_epochs=1,
                             epochs=1, device="cpu")
        run_session(base, store)          # dense baseline + warm store, not counted
        store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = store.size_bytes()
        epochs = -(-steps // 22)          # digits at batch 64: 22 steps per epoch
        s = run_session(base.replace(epochs=epochs), store)
        store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grown = store.size_bytes() - before
        return grown / 1e6 * 1000 / s["steps"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--growth-steps", type=int, default=1000)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for method in ("l1", "gmp"):
        ratio, m, d = step_ratio(args.steps, method)
        print(f"[step] {method} session step / plain dense step (ResNet-20, batch 128): "
              f"{ratio:.3f}  ({m * 1e3:.0f} ms vs {d * 1e3:.0f} ms; target <= 1.03)")
    wall, peak, summary = default_run()
    print(f"[cli] default `python -m pruneviz run` on a fresh store: {wall:.1f} s wall "
          f"(target <= 30), peak RSS {peak:.2f} GB (target <= 1.2); final accuracy "
          f"{summary['final_accuracy']:.4f}")
    mb = store_growth(args.growth_steps)
    print(f"[store] growth per 1000 recorded ResNet-20 steps: {mb:.2f} MB (target <= 5)")


if __name__ == "__main__":
    main()
