"""The Ray task side: what runs on the node. The task trains one session (or only a dense
baseline) against a `_Sink`, a Store-shaped object that turns each call into a message the task
yields; the pump in raybackend.py writes them into the real store."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import SessionConfig

LOCAL_PREFIX = "task:"    # ids of runs a task created, until the pump gives them real ones
STOP_NAMESPACE = "pruneviz-stop"
STOP_POLL_SECONDS = 0.25  # how often a task looks for its stop request


# -- the cooperative stop ------------------------------------------------------------------------
# A running task is stopped by a key in the cluster's own key-value store (the GCS, which driver
# and every node already talk to), which the task polls and answers by ending its session within
# a step: its generator then ends as a finished task does. Not ray.cancel: in Ray 2.60 a cancel
# that races the task's completion reply aborts the whole submitting process (RAY_CHECK "Tried to
# complete task that was not pending", ray-project/ray#54846), and the submitting process can be
# the dashboard's server. Ray has no public key-value API; its own libraries use this one.
def _kv() -> Any:
    from ray.experimental import internal_kv

    return internal_kv


def request_stop(key: str) -> None:
    _kv()._internal_kv_put(key, b"1", namespace=STOP_NAMESPACE)


def stop_requested(key: str) -> bool:
    return bool(_kv()._internal_kv_exists(key, namespace=STOP_NAMESPACE))


def forget_stop(key: str) -> None:
    _kv()._internal_kv_del(key, namespace=STOP_NAMESPACE)


class _Sink:
    """A RunSink (store/sink.py): every call a session makes becomes a message; artifacts live
    in a temp folder until their run finishes, then travel as bytes."""

    def __init__(self, folder: Path, dense: tuple[str, str, bytes, float] | None) -> None:
        self.folder, self.count = folder, 0
        self.outbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.dense: dict[str, tuple[str, Path, float]] = {}
        if dense is not None:
            key, run_id, weights, accuracy = dense
            path = self.run_dir(run_id) / "weights.pt"
            path.write_bytes(weights)
            self.dense[key] = (run_id, path, accuracy)

    def create_run(self, config: SessionConfig, *, kind: str = "session",
                   status: str = "queued", sweep_id: str | None = None,
                   worker: str | None = None) -> str:
        self.count += 1
        run_id = f"{LOCAL_PREFIX}{self.count}"
        self.outbox.put(("create", run_id, config.to_dict(), kind, status, sweep_id))
        return run_id

    def start_run(self, run_id: str, total_steps: int) -> None:
        self.outbox.put(("start", run_id, total_steps))

    def write(self, run_id: str, records: list, *, step: int | None = None) -> None:
        self.outbox.put(("write", run_id, list(records), step))

    def finish_run(self, run_id: str, status: str, *, summary: dict | None = None,
                   error: str | None = None) -> None:
        folder = self.run_dir(run_id, create=False)
        files = {str(p.relative_to(folder)): p.read_bytes()
                 for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}
        self.outbox.put(("finish", run_id, status, summary, error, files))

    def cancel_requested(self, run_id: str) -> bool:
        return False     # the pump cancels through ray.cancel

    @property
    def root(self) -> Path:
        return self.folder

    def trainer(self, run_id: str) -> dict[str, Any]:
        return {"backend": "ray", "host": socket.gethostname(), "pid": os.getpid()}

    @contextmanager
    def file_lock(self, name: str, cancel: Any = None) -> Iterator[None]:
        yield            # one task, one sink: the pump trains each dense baseline once

    def release_reserve(self) -> None:
        pass             # the task writes no database

    def run_dir(self, run_id: str, *, create: bool = True) -> Path:
        path = self.folder / run_id.replace(":", "-")
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def dense_lookup(self, key: str) -> tuple[str, Path, float] | None:
        return self.dense.get(key)

    def dense_save(self, key: str, run_id: str, path: Path, accuracy: float) -> None:
        self.dense[key] = (run_id, path, accuracy)
        self.outbox.put(("dense", key, run_id, path.name, accuracy))


def _task_device(config: SessionConfig) -> SessionConfig:
    """The GPU Ray gave the task, or the CPU when it gave none: Ray no longer hides GPUs from
    tasks that asked for none, so `auto` would otherwise grab one it was not given."""
    import ray

    if config.device == "auto" and not ray.get_gpu_ids():
        return config.replace(device="cpu")
    return config


def _session_task(config_dict: dict, run_id: str | None, dense: tuple | None, panel: bool,
                  num_cpus: float, stop_key: str) -> Iterator[tuple]:
    """The Ray task body: train one session (or, with run_id None, only the dense baseline)
    and yield the sink's messages as they come; `request_stop(stop_key)` ends it within a
    step, its runs interrupted."""
    import ray

    yield ("hello", socket.gethostname(), os.getpid(), time.time(), ray.get_gpu_ids())
    import torch

    from . import session
    from .local import train_local

    # Ray sizes OMP_NUM_THREADS to the task's CPUs, but torch may already run in this reused
    # worker; a thread count the task was not given would also change float reductions.
    torch.set_num_threads(max(1, int(num_cpus)))
    config = _task_device(SessionConfig.from_dict(config_dict))
    folder = Path(tempfile.mkdtemp(prefix="pruneviz-ray-"))
    sink = _Sink(folder, dense)
    stop = threading.Event()
    error: list[BaseException] = []

    def work() -> None:
        try:
            if run_id is None:
                session.dense_start(session.prepare(config), sink, None, stop)
            else:      # as a local worker runs it, its panel measured on this node
                train_local(config, sink, run_id=run_id, cancel=stop, panel=panel)
        except BaseException as e:  # noqa: BLE001 - re-raised in the task's own thread below
            error.append(e)
        finally:
            sink.outbox.put(None)     # the end: after every message the session sent

    # The session runs beside the generator, so records leave while it trains.
    thread = threading.Thread(target=work, name="pruneviz-session", daemon=True)
    thread.start()
    look = 0.0
    try:
        while True:
            if not stop.is_set() and time.monotonic() >= look:
                look = time.monotonic() + STOP_POLL_SECONDS
                if stop_requested(stop_key):
                    stop.set()      # the session ends its runs interrupted, then sends the end
            try:
                # a timeout, so the stop key is read and ray.cancel's KeyboardInterrupt (the
                # pump's fallback) lands while nothing arrives
                msg = sink.outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if msg is None:
                break
            yield msg
        if error:
            raise error[0]
    finally:
        # ray.cancel lands here as KeyboardInterrupt: stop the session too, within a step, so
        # this worker (Ray reuses it) does not go on training for nobody.
        stop.set()
        thread.join(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


_remote: Any = None


def remote_task() -> Any:
    """The task body as a Ray remote function (a streaming generator), made once."""
    global _remote
    if _remote is None:
        import ray

        _remote = ray.remote(num_returns="streaming", max_retries=0)(_session_task)
    return _remote
