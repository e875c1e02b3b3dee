"""Worker processes and the queue they serve: the store holds the jobs (queued runs), workers
claim them atomically and train them through the one Session loop, heartbeating as they go.

The dashboard and the CLI only submit, cancel and start workers; they never train in their own
process, so a crash inside torch takes down one worker, not the server. Workers are detached
OS processes: a dashboard restart finds them (and the queue) where they were.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import check_backend, load_backend
from .config import NM_RATE_TOLERANCE, ConfigError, SessionConfig, nm_rate, parse_nm
from .store import ACTIVE, Store, pid_alive

HEARTBEAT_SECONDS = 0.5      # also how soon a cancel reaches a busy worker
POLL_SECONDS = 0.2           # an idle worker looks for a job this often (one indexed query)
REAP_SECONDS = 2.0           # ... and for dead workers' runs this often
GRACE_SECONDS = 10.0         # a cancelled run not stopped by then: SIGTERM; again: SIGKILL
IDLE_EXIT_SECONDS = 600.0    # a worker a dashboard started leaves after this long without work
# A dashboard's workers yield the CPU to its pages: on 2 cores a page switch while a run trained
# took p95 1 s at equal priority.
NICE = 5
WORKERS_ENV = "PRUNEVIZ_WORKERS"
MAX_WORKERS = 16
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])

_SPAWNED: list[subprocess.Popen] = []     # the workers this process started


# -- submitting ----------------------------------------------------------------------------------
def submit(store: Store, config: SessionConfig, sweep_id: str | None = None, *,
           checked: bool = False) -> str:
    """Validate (ConfigError on bad input, nothing stored) and queue; returns the run id.
    `checked`: the caller has just passed `config` through `session.check` (the Live form, the
    CLI's prepare), so it is not checked a second time for the same click or command."""
    from .session import check

    if not checked:
        check(config)
    return store.create_run(config, status="queued", sweep_id=sweep_id)


def submit_grid(store: Store, configs: list[SessionConfig]) -> tuple[str, list[str]]:
    """Queue several sessions as one sweep; all are validated before any is stored."""
    from .session import check

    for config in configs:
        check(config)
    sweep_id = "sweep-" + secrets.token_hex(3)
    return sweep_id, [store.create_run(c, status="queued", sweep_id=sweep_id) for c in configs]


def grid(base: SessionConfig, methods: list[str], rates: list[float], seeds: list[int],
         scoped: Mapping[str, Mapping[str, Any]] | None = None) -> list[SessionConfig]:
    """Methods x rates x seeds on one base config: same data, dense start and budget for all.
    `base.params` go to every listed method (each must have them, see method_params) and
    `scoped` adds parameters for one method; ConfigError before any config is made."""
    per_method = method_params(methods, base.params, scoped or {})
    for m, r in itertools.product(methods, rates):
        _check_grid_pattern(m, per_method[m], r)
    return [base.replace(method=m, rate=r, seed=s, params=per_method[m])
            for s, m, r in itertools.product(seeds, methods, rates)]


def method_params(methods: list[str], shared: Mapping[str, Any],
                  scoped: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each listed method's parameters for a grid: every `shared` one (a sweep's `--param`),
    which every listed method must have, plus its own `scoped` ones (`--param-for`). A value
    given to only some methods is refused rather than dropped for the others, so a sweep never
    silently trains something other than what was asked; values are checked as `run` checks
    them (make_params)."""
    from .methods import get_method, make_params

    classes = {m: get_method(m) for m in methods}
    names = {m: {f.name for f in dataclasses.fields(cls.Params)} for m, cls in classes.items()}
    listed = ", ".join(methods)
    for key, value in shared.items():
        have = [m for m in methods if key in names[m]]
        lack = [m for m in methods if key not in names[m]]
        if not have:
            raise ConfigError(f"--param {key}={value}: none of the listed methods ({listed}) has "
                              f"a parameter {key!r}; `python -m pruneviz methods` lists each "
                              f"method's parameters.")
        if lack:
            raise ConfigError(
                f"--param {key}={value}: only some of the listed methods have {key!r} "
                f"({', '.join(have)} {'has' if len(have) == 1 else 'have'} it, "
                f"{', '.join(lack)} {'does' if len(lack) == 1 else 'do'} not); give it to those "
                f"that have it with --param-for METHOD:{key}={value} (e.g. --param-for "
                f"{have[0]}:{key}={value}), or drop {', '.join(lack)} from --methods.")
    for m in scoped:
        if m not in classes:
            raise ConfigError(f"--param-for {m}:...: {m!r} is not one of --methods ({listed}); "
                              f"add it to --methods or drop that --param-for.")
    out = {}
    for m, cls in classes.items():
        values = {**shared, **scoped.get(m, {})}
        make_params(cls, values)      # unknown names and bad values: the errors `run` gives
        out[m] = values
    return out


def _check_grid_pattern(method: str, params: Mapping[str, Any], rate: float) -> None:
    """An N:M pattern fixes its method's rate (1 - N/M); a grid rate that disagrees is refused
    here in the sweep's terms (the config's own error says to leave out --rate, which a sweep
    does not have)."""
    pattern = parse_nm(params.get("nm", ""))
    if pattern is None:
        return
    fixed = nm_rate(pattern)
    if abs(rate - fixed) > NM_RATE_TOLERANCE:
        n, m = pattern
        raise ConfigError(f"{method} with nm={n}:{m} prunes {fixed:.4g} of every layer "
                          f"(1 - N/M), so it cannot train at rate {rate:g} from --rates; sweep it "
                          f"with --rates {fixed:.4g}, or leave nm out.")


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


# What the Compare form proposes on first launch: offline (the embedded CIFAR-10 sample), the
# four papers' methods (fggp, slr: weights; pgmpf, pgp: filters) beside gmp, the magnitude
# baseline they are measured against, at rates where none of them cuts the network in two (at
# 0.98 gmp emptied conv3 and "far apart" measured that). Time and spread:
# benchmarks/bench_default_compare.py, numbers in the README. The papers' own comparisons
# (each method against its baselines on its preset) are the Compare page's one-click claims.
DEFAULT_COMPARISON = Proposal(methods=("gmp", "fggp", "slr", "pgmpf", "pgp"), rates=(0.5, 0.8),
                              seeds=(0, 1), base=dict(dataset="cifar10_small", epochs=4))


def cancel(store: Store, run_id: str, *, grace: float = GRACE_SECONDS,
           wait: bool = False) -> bool:
    """Stop a run: the store flag (a queued run ends at once, a running one within a step);
    a process on this host that has not stopped after `grace` seconds gets SIGTERM, then
    SIGKILL. In the background unless `wait`. False (and nothing written) if the run had
    already finished."""
    if not store.request_cancel(run_id):
        return False
    run = store.run(run_id)
    if run["status"] not in ACTIVE or run["host"] != socket.gethostname() or not run["worker"]:
        return True
    escalate = threading.Thread(target=_escalate, args=(store, run_id, run["pid"], grace),
                                daemon=True, name=f"pruneviz-cancel-{run_id}")
    escalate.start()
    if wait:
        escalate.join()
    return True


def _stopped(store: Store, run_id: str, pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store.run(run_id)["status"] not in ACTIVE or not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _escalate(store: Store, run_id: str, pid: int, grace: float) -> None:
    sent = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _stopped(store, run_id, pid, grace):
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        sent = sig
    if sent is None:
        return
    _stopped(store, run_id, pid, grace)
    if store.run(run_id)["status"] in (*ACTIVE, "interrupted"):    # not one that just completed
        store.finish_run(run_id, "interrupted",
                         error=f"cancelled; its process did not stop within {grace:g} s and was "
                               f"stopped with {sent.name}. Every step it committed is kept.")


# -- starting and stopping workers ---------------------------------------------------------------
def wanted_workers(raw: str | None = None) -> int:
    """$PRUNEVIZ_WORKERS (default 1): how many runs train at once; ConfigError if not 1-16."""
    raw = os.environ.get(WORKERS_ENV, "1") if raw is None else raw
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ConfigError(f"{WORKERS_ENV} is the number of runs trained at once, a whole number "
                          f"from 1 to {MAX_WORKERS}; got {raw!r}. Unset it to train one at a "
                          f"time.")
    return int(raw)


def spawn_worker(store: Store, backend: str = "local",
                 idle_exit: float = IDLE_EXIT_SECONDS) -> str:
    """Start a detached worker process on `store` (its log in <store>/logs); returns its id."""
    worker_id = new_worker_id()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
    # On CPU leave a core to the dashboard: two intra-op threads fighting its redraws on a
    # 2-core machine made steps several times slower.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
    logs = store.root / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{worker_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pruneviz", "worker", "--store", str(store.root),
             "--backend", backend, "--worker-id", worker_id, "--idle-exit", str(idle_exit),
             "--nice", str(NICE)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)      # a Ctrl-C or restart of the dashboard leaves it be
    store.register_worker(worker_id, proc.pid, backend)
    _SPAWNED.append(proc)
    # Reap it when it exits: a zombie's pid still looks alive.
    threading.Thread(target=proc.wait, daemon=True, name=f"pruneviz-reap-{proc.pid}").start()
    return worker_id


def ensure_workers(store: Store, wanted: int, backend: str = "local") -> int:
    """Start workers until the queue has one per queued or running run, at most `wanted` and
    at least one (kept warm, so a first Run is quick); counted from the store, so dashboards
    sharing it share the pool. Returns how many were started."""
    with store.file_lock("workers"):
        live = store.workers()
        busy = int(live.run_id.notna().sum())
        target = min(wanted, max(1, busy + store.queued_count()))
        started = max(0, target - len(live))
        for _ in range(started):
            spawn_worker(store, backend)
    return started


def stop_workers(store: Store, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every worker of the store on this host (its run ends interrupted, every step
    kept), SIGKILL those still alive after `grace`; for tests and shutdown scripts."""
    host = socket.gethostname()
    pids = [int(p) for p, h in store.workers()[["pid", "host"]].itertuples(index=False)
            if h == host]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    store.workers()      # reaps the rows (and runs) of the ones killed


def stop_spawned(grace: float = GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL after `grace`, the workers this process started (tests end theirs;
    a dashboard leaves its workers running for the next one)."""
    procs = [p for p in _SPAWNED if p.poll() is None]
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _SPAWNED.clear()


class Queue:
    """What a dashboard holds: submit and cancel against the store, and the workers it needs
    started on demand (`wanted` at most)."""

    def __init__(self, store: Store, wanted: int = 1, backend: str = "local") -> None:
        self.store, self.wanted, self.backend = store, wanted, check_backend(backend)

    def submit(self, config: SessionConfig, *, checked: bool = False) -> str:
        run_id = submit(self.store, config, checked=checked)
        self.ensure()
        return run_id

    def submit_grid(self, configs: list[SessionConfig]) -> tuple[str, list[str]]:
        out = submit_grid(self.store, configs)
        self.ensure()
        return out

    def cancel(self, run_id: str) -> None:
        cancel(self.store, run_id)

    def ensure(self) -> int:
        return ensure_workers(self.store, self.wanted, self.backend)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


# -- the worker ----------------------------------------------------------------------------------
class Worker:
    """One worker process: claims queued runs from the store one at a time and trains them."""

    def __init__(self, store: Store, backend: str = "local", *, worker_id: str | None = None,
                 **options: Any) -> None:
        self.store, self.backend = store, check_backend(backend)
        self.id = worker_id or new_worker_id()
        self.train = load_backend(backend, **options)
        self.cancel = threading.Event()     # the current run's; set by a cancel or SIGTERM
        self.stopping = threading.Event()
        self.current: str | None = None
        # Why the worker stopped on its own (a signal, its store deleted); None for a user's
        # cancel, whose run says "cancelled by the user".
        self.stop_reason: str | None = None
        self.lost: str | None = None        # why its store is gone, once the heartbeat sees it
        store.register_worker(self.id, os.getpid(), backend)
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name="pruneviz-heartbeat")
        self._beat.start()

    def _heartbeat(self) -> None:
        """Beat and pass cancels on, from its own thread: a long step never looks like death."""
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            lost = self.store.lost()
            if lost is not None:
                # An open connection writes on into a deleted database, unseen: stop the run
                # and leave rather than train into nothing (and recreate its folders).
                self.lost = lost
                print(f"{time.strftime('%H:%M:%S')} the run store {self.store.root} is gone "
                      f"({lost}); stopping", flush=True)
                self.stop(f"its worker stopped: the run store was deleted ({lost})")
                return
            try:
                run_id, cancelled = self.store.beat(self.id)
            except Exception as e:  # noqa: BLE001 - a busy store: the next beat tries again
                print(f"heartbeat: {e}", file=sys.stderr, flush=True)
                continue
            if cancelled and run_id is not None and run_id == self.current:
                self.cancel.set()

    def on_sigterm(self, signum: int = signal.SIGTERM, *_: Any) -> None:
        """Stop after the current run, which is stopped (kept interrupted) and says which signal
        stopped it: a user's cancel and a signal are different stories for whoever reads it."""
        name = signal.Signals(signum).name
        self.stop(f"stopped by {name} sent to its worker (pid {os.getpid()}), not by a cancel; "
                  f"every step it committed is kept.")

    def stop(self, reason: str) -> None:
        """Stop after the current run, which ends interrupted with `reason` as its error."""
        self.stop_reason = self.stop_reason or reason
        self.stopping.set()
        self.cancel.set()

    def serve(self, *, once: bool = False, idle_exit: float | None = None,
              poll: float = POLL_SECONDS) -> int:
        """Train queued runs until stopped; `once`: at most one run; `idle_exit`: leave after
        that many seconds with an empty queue. Returns how many runs it trained."""
        trained, reaped = 0, 0.0
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                if time.monotonic() - reaped >= REAP_SECONDS:
                    self.store.reap()      # a dead worker's run ends; the queue goes on
                    reaped = time.monotonic()
                job = self.store.claim(self.id, self.backend)
                if job is None:
                    if once or (idle_exit is not None
                                and time.monotonic() - idle_since >= idle_exit):
                        break
                    self.stopping.wait(poll)
                    continue
                self.run(job)
                trained += 1
                if once:
                    break
                idle_since = time.monotonic()
        finally:
            self.stopping.set()
            self.store.unregister_worker(self.id)
        return trained

    def run(self, job: dict[str, Any]) -> None:
        """Train one claimed run; whatever happens, the run ends with a status and the worker
        is free again."""
        run_id = job["run_id"]
        self.cancel.clear()
        self.current = run_id
        print(f"{time.strftime('%H:%M:%S')} training {run_id}", flush=True)
        try:
            if job["config"] is None:       # a row this version cannot read fails alone
                self.store.finish_run(run_id, "failed", error=job["error"])
            elif self.store.cancel_requested(run_id) or self.stopping.is_set():
                self.store.finish_run(run_id, "interrupted", error="cancelled before it started")
            else:
                self.train(job["config"], self.store, run_id=run_id, cancel=self.cancel,
                           panel=job["sweep_id"] is None)   # sweeps measure panels on demand
        except Exception as e:  # noqa: BLE001 - stored with the run; the worker goes on
            self.store.finish_run(run_id, "failed", error=f"{type(e).__name__}: {e}",
                                  only_active=True)
        finally:
            self._name_the_stop(run_id)
            self.current = None
            self.store.release(self.id)
            print(f"{time.strftime('%H:%M:%S')} {run_id} {self.store.status(run_id)}",
                  flush=True)
            gc.collect()
            _empty_cuda_cache()


    def _name_the_stop(self, run_id: str) -> None:
        """A run interrupted because the worker itself was stopped (not by a user's cancel)
        says so: the session only knows its cancel event was set."""
        if (self.stop_reason is None or self.store.cancel_requested(run_id)
                or self.store.status(run_id) != "interrupted"):
            return
        summary = self.store.run(run_id)["summary"]
        self.store.finish_run(run_id, "interrupted", error=self.stop_reason,
                              summary={**summary, "error": self.stop_reason} if summary else None)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def warm_up() -> None:
    """The one-time work of a first session, done before claiming anything so the first Run
    is as quick as later ones: import the loop, load the embedded dataset (held in memory),
    and what building an optimizer and counting FLOPs pull in (torch._dynamo: seconds)."""
    import torch

    from .data import load_dataset
    from .metrics import count_flops
    from .models import build_model
    from .session import run_session  # noqa: F401 - imports every method

    data = load_dataset()
    model = build_model("tiny_cnn", data.input_shape, data.num_classes)
    torch.optim.SGD(model.parameters(), lr=0.1)
    count_flops(model, data.input_shape)
