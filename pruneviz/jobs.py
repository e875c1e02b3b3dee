"""Background runner: queues sessions, runs them in worker threads, cancels them.

Pages never hold a session: they submit a config, get a run id back at once, and poll the store.
On a 2-core CPU one worker (the default) runs the queue one session at a time.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import queue
import secrets
import threading
from dataclasses import dataclass, field

import torch

from .config import SessionConfig
from .session import check, run_session
from .store import Store


@dataclass
class _Job:
    run_id: str
    config: SessionConfig
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    panel: bool = True          # sweeps measure their metrics panels when first viewed


class Runner:
    """A queue of sessions run by `workers` background threads against one store."""

    def __init__(self, store: Store, workers: int = 1) -> None:
        self.store = store
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"pruneviz-{i}")
                         for i in range(workers)]
        for t in self._threads:
            t.start()
        # A daemon thread killed inside a torch op at interpreter exit aborts the process
        # ("terminate called without an active exception"); stop the workers first.
        atexit.register(self.shutdown)

    def submit(self, config: SessionConfig, sweep_id: str | None = None) -> str:
        """Validate (raises ConfigError on bad input, storing nothing), queue, return the run id."""
        check(config)
        run_id = self.store.create_run(config, status="queued", sweep_id=sweep_id)
        job = _Job(run_id, config, panel=sweep_id is None)
        with self._lock:
            self._jobs[run_id] = job
        self._queue.put(job)
        return run_id

    def submit_grid(self, configs: list[SessionConfig]) -> tuple[str, list[str]]:
        """Queue several sessions as one sweep; all are validated before any is stored."""
        for config in configs:
            check(config)
        sweep_id = "sweep-" + secrets.token_hex(3)
        return sweep_id, [self.submit(c, sweep_id) for c in configs]

    def cancel(self, run_id: str) -> None:
        """Stop a running session within one step, or drop a queued one; both end interrupted."""
        with self._lock:
            job = self._jobs.get(run_id)
            queued = job is not None and not job.started
            if job is not None:
                job.cancel.set()
        self.store.request_cancel(run_id)
        if queued:
            # Mark it now rather than when a worker reaches it: behind a long queue the run
            # would otherwise show "queued" for minutes after the user cancelled it.
            self.store.finish_run(run_id, "interrupted", error="cancelled before it started")

    def active(self) -> list[str]:
        """Run ids queued or running in this runner, oldest first."""
        with self._lock:
            return list(self._jobs)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every queued and running session and stop the workers."""
        for run_id in self.active():
            self.cancel(run_id)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                job.started = not job.cancel.is_set()
            try:
                if not job.started:
                    pass                    # cancel() already marked it interrupted
                elif self.store.cancel_requested(job.run_id):
                    self.store.finish_run(job.run_id, "interrupted",
                                          error="cancelled before it started")
                else:
                    run_session(job.config, self.store, run_id=job.run_id, cancel=job.cancel,
                                panel=job.panel)
            except Exception:  # noqa: BLE001 - the run's status and error are already stored
                pass
            finally:
                with self._lock:
                    self._jobs.pop(job.run_id, None)
                del job
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


@dataclass(frozen=True)
class Proposal:
    """A comparison grid: methods x rates x seeds on one base config."""

    methods: tuple[str, ...]
    rates: tuple[float, ...]
    seeds: tuple[int, ...]
    base: dict = field(default_factory=dict)     # SessionConfig fields

    def configs(self, **changes: object) -> list[SessionConfig]:
        return grid(SessionConfig(**{**self.base, **changes}), list(self.methods),
                    list(self.rates), list(self.seeds))


# What the Compare form proposes on first launch: offline (the embedded CIFAR-10 sample), done
# in <= 90 s on 2 cores with its dense baselines, and its methods' accuracies at the top rate
# spread by more than 3x their seed-to-seed spread (benchmarks/bench_default_compare.py).
DEFAULT_COMPARISON = Proposal(methods=("random", "l1", "global_l1", "gmp"), rates=(0.9, 0.98),
                              seeds=(0, 1), base=dict(dataset="cifar10_small", epochs=4))


def grid(base: SessionConfig, methods: list[str], rates: list[float],
         seeds: list[int]) -> list[SessionConfig]:
    """Methods x rates x seeds on one base config: same data, dense start and budget for all."""
    return [base.replace(method=m, rate=r, seed=s, params={} if m != base.method else base.params)
            for s, m, r in itertools.product(seeds, methods, rates)]
