"""Ray backend benchmark (issue 18); prints ratios measured side by side in one run.

1. The 6-method x 3-rate digits sweep (the dashboard benchmark's grid, dense baseline cached),
   every session on one thread: local (one after another in this process, as one worker
   process trains them) vs `--backend ray` on a local Ray of 1 CPU (the same parallelism: the
   backend's own cost; target ray / local <= 1.15) and on a Ray of all cores (one task per
   core at once). Ray's start-up is printed apart: a worker or CLI pays it once, not per run.
2. First record of each Ray task visible in the store, after the task started (target <= 1 s).

    python benchmarks/bench_ray.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import threading
import time

import ray
import torch

from pruneviz.config import SessionConfig
from pruneviz.methods import load_all
from pruneviz.raybackend import run_sweep_on_ray
from pruneviz.session import run_session
from pruneviz.store import Store
from pruneviz.workers import grid

RATES = [0.5, 0.8, 0.9]


class FirstRecords:
    """Polls the store's database from a thread: when each run's first scalar became visible."""

    def __init__(self, store: Store) -> None:
        self.path, self.seen, self.stop = store.db_path, {}, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30)
        while not self.stop.is_set():
            now = time.time()
            # EXISTS walks the (rid, ...) index: cheap however many records the runs hold
            for (run_id,) in conn.execute("SELECT run_id FROM runs r WHERE kind='session' AND "
                                          "EXISTS (SELECT 1 FROM scalars s WHERE s.rid = r.id)"):
                self.seen.setdefault(run_id, now)
            time.sleep(0.02)
        conn.close()

    def close(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        return self.seen


def fresh_store(tmp: str, name: str, base: SessionConfig) -> Store:
    """A store with the sweep's dense baseline already trained (not part of any timing)."""
    store = Store(os.path.join(tmp, name))
    run_session(base.replace(method="dense", epochs=1), store)
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8, help="Session epochs (default 8).")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    # One thread per session everywhere: on a busy 2-core machine two OpenMP threads made a
    # session 8-20x slower than one, which would swamp what is measured here.
    torch.set_num_threads(1)
    methods = [m for m in sorted(load_all()) if m != "dense"][:6]
    base = SessionConfig(device="cpu", epochs=args.epochs)
    configs = grid(base, methods, RATES, [0])
    print(f"sweep: {len(methods)} methods ({', '.join(methods)}) x rates {RATES}, digits, "
          f"{args.epochs} epochs, {cores} cores")
    walls, firsts, startups = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cluster_cpus in (("local", 0), ("ray, 1 CPU", 1),
                                   (f"ray, {cores} CPUs", cores)):
            if cluster_cpus:
                t = time.perf_counter()
                ray.init(num_cpus=cluster_cpus, include_dashboard=False, log_to_driver=False)
                startups.append(time.perf_counter() - t)
                # warm the workers (torch and pruneviz imported), as a long-lived cluster has
                run_sweep_on_ray(configs[:cluster_cpus], fresh_store(tmp, f"warm{cluster_cpus}",
                                                                     base))
            store = fresh_store(tmp, name, base)
            watch = FirstRecords(store)
            t = time.perf_counter()
            if cluster_cpus:
                summaries = run_sweep_on_ray(configs, store, num_cpus=1)
            else:
                summaries = [run_session(c, store) for c in configs]
            walls[name] = time.perf_counter() - t
            seen = watch.close()
            bad = [s["run_id"] for s in summaries if s["status"] != "completed"]
            assert not bad, f"{name}: runs did not complete: {bad}"
            if cluster_cpus:
                firsts += [seen[s["run_id"]] - s["task_started"] for s in summaries]
                ray.shutdown()
    print(f"Ray start-up (once per process): {', '.join(f'{s:.1f}' for s in startups)} s")
    local = walls["local"]
    print(f"{'backend':<24} {'wall s':>8} {'/ local':>8}")
    for name, wall in walls.items():
        print(f"{name:<24} {wall:8.1f} {wall / local:8.2f}")
    print("target: ray / local <= 1.15")
    print(f"first record visible after the task started ({len(firsts)} tasks): median "
          f"{statistics.median(firsts):.2f} s, max {max(firsts):.2f} s (target <= 1 s)")


if __name__ == "__main__":
    main()
