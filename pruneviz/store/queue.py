"""The store's queue and its workers: claiming queued runs, worker rows and heartbeats, and
reaping the runs of processes that are gone. Mixed into `Store` (its connection and runs)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import SessionConfig

# A running session commits at least every step; one silent this long has lost its process even
# if its pid was reused (after a reboot, say).
STALE_SECONDS = 15 * 60
# Workers beat from a thread of their own, whatever the step costs: one on another host silent
# this long is gone (there its pid cannot be checked; on this host the pid is the truth).
WORKER_STALE_SECONDS = 30
# A process that started this long after a worker registered cannot be that worker: its pid was
# reused (after the worker died, or a reboot). The slack covers /proc's whole-second boot time.
PID_REUSE_SLACK = 5.0


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)     # a zombie (exited, not yet waited for by its parent) is gone too
    return stat is None or stat[0] != "Z"


def pid_stopped(pid: int | None) -> bool:
    """Whether `pid` is stopped (Ctrl-Z, SIGSTOP, a debugger's breakpoint): alive, but silent."""
    stat = _proc_stat(pid) if pid else None
    return stat is not None and stat[0] in ("T", "t")


def process_started(pid: int) -> float | None:
    """When process `pid` started, in seconds since the epoch (None where /proc cannot say)."""
    stat = _proc_stat(pid)
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, TypeError, IndexError, ValueError):
        return None


def worker_gone(pid: int | None, host: str | None, started: float | None,
                heartbeat: float | None, now: float | None = None) -> bool:
    """A worker is gone when, on this host, its pid is (a zombie counts, and so does a pid a
    later process took over); on another host, where no pid can be checked, when its beat is
    older than WORKER_STALE_SECONDS. A stopped worker (Ctrl-Z, a suspended laptop, a debugger)
    is alive: its run resumes with it, so it is neither reaped nor replaced."""
    now = time.time() if now is None else now
    if host != socket.gethostname():
        return (heartbeat or 0) < now - WORKER_STALE_SECONDS
    if not pid_alive(pid):
        return True
    began = process_started(pid) if started else None
    return began is not None and began > started + PID_REUSE_SLACK


class QueueMixin:
    """Store methods for the queue and its workers."""

    def reap(self) -> None:
        """Mark runs whose training process is gone (killed, crashed) as interrupted and forget
        dead workers (worker_gone); every step a run committed is kept. Unclaimed queued runs
        wait, and so do the runs of stopped processes."""
        if getattr(self, "read_only", False):   # a reader that may not write: show what is stored
            return
        host, now = socket.gethostname(), time.time()
        conn = self._conn()
        dead_workers = {w for w, pid, w_host, started, beat in conn.execute(
                            "SELECT worker_id, pid, host, started, heartbeat FROM workers")
                        if worker_gone(pid, w_host, started, beat, now)}
        live_workers = {r[0] for r in conn.execute("SELECT worker_id FROM workers")} - dead_workers
        rows = conn.execute(
            "SELECT run_id, pid, host, status, heartbeat, worker FROM runs WHERE status IN "
            "('queued','running') AND NOT (status='queued' AND kind='session' AND worker IS NULL)"
        ).fetchall()
        dead = []
        for run_id, pid, run_host, status, beat, worker in rows:
            if worker in live_workers:
                continue
            silent = status == "running" and (beat or 0) < now - STALE_SECONDS
            if run_host == host and pid_stopped(pid):
                silent = False      # paused on this host (Ctrl-Z): alive, it resumes
            if worker in dead_workers or (run_host == host and not pid_alive(pid)) or silent:
                dead.append(run_id)
        for run_id in dead:
            self.finish_run(run_id, "interrupted",
                            error="the process running it stopped (killed or crashed); "
                                  "every step it committed is kept.", only_active=True)
        if dead_workers:
            with self._tx() as c:
                c.executemany("DELETE FROM workers WHERE worker_id=?", [(w,) for w in dead_workers])

    def claim(self, worker_id: str, backend: str = "local") -> dict[str, Any] | None:
        """Take the oldest unclaimed queued session for `worker_id`, atomically (one writer at a
        time: no run is claimed twice across processes); None when the queue is empty. A row
        whose config this version cannot read (queued by another version) comes back with
        `config` None and `error` saying why, for the worker to fail that run and go on."""
        with self._tx() as c:
            row = c.execute("SELECT run_id, config, sweep_id FROM runs WHERE status='queued' AND "
                            "kind='session' AND worker IS NULL AND cancel=0 ORDER BY id LIMIT 1"
                            ).fetchone()
            if row is None:
                return None
            c.execute("UPDATE runs SET worker=?, backend=?, pid=?, host=?, heartbeat=? "
                      "WHERE run_id=?", (worker_id, backend, os.getpid(), socket.gethostname(),
                                         time.time(), row[0]))
            c.execute("UPDATE workers SET run_id=? WHERE worker_id=?", (row[0], worker_id))
        job: dict[str, Any] = {"run_id": row[0], "config": None, "sweep_id": row[2]}
        try:
            job["config"] = SessionConfig.from_dict(json.loads(row[1]))
        except Exception as e:  # noqa: BLE001 - whatever another version stored; said in the run
            job["error"] = (f"this version of pruneviz cannot read the run's stored config "
                            f"({type(e).__name__}: {' '.join(str(e).split())[:300]}); it was "
                            f"likely queued by another version: queue it again with this one, "
                            f"or train it with the version that queued it.")
        return job

    def register_worker(self, worker_id: str, pid: int, backend: str,
                        host: str | None = None) -> None:
        """Add (or refresh) a worker's row; a dashboard adds the row of a worker it spawns at
        once, so a second dashboard counting workers sees it before it has started."""
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO workers VALUES (?,?,?,?,?,?,NULL)",
                      (worker_id, pid, host or socket.gethostname(), backend, now, now))

    def beat(self, worker_id: str) -> tuple[str | None, bool]:
        """A worker's heartbeat: its run (if any) and whether that run's cancel was asked."""
        with self._tx() as c:
            c.execute("UPDATE workers SET heartbeat=? WHERE worker_id=?", (time.time(), worker_id))
            row = c.execute("SELECT w.run_id, r.cancel FROM workers w LEFT JOIN runs r "
                            "ON r.run_id = w.run_id WHERE w.worker_id=?", (worker_id,)).fetchone()
        if row is None:
            return None, False
        return row[0], bool(row[1])

    def release(self, worker_id: str) -> None:
        """The worker is idle again (its run has ended)."""
        with self._tx() as c:
            c.execute("UPDATE workers SET run_id=NULL WHERE worker_id=?", (worker_id,))

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM workers WHERE worker_id=?", (worker_id,))

    def workers(self) -> pd.DataFrame:
        """Live workers (dead ones reaped first): worker_id, pid, host, backend, started,
        heartbeat, run_id (None when idle)."""
        self.reap()
        return pd.read_sql_query("SELECT * FROM workers ORDER BY started", self._conn())

    def queued_count(self) -> int:
        """Queued sessions no worker has claimed yet."""
        return self._conn().execute(
            "SELECT COUNT(*) FROM runs WHERE status='queued' AND kind='session' AND "
            "worker IS NULL AND cancel=0").fetchone()[0]

    def trainer(self, run_id: str) -> dict[str, Any]:
        """backend, host and pid of the process training the run (for its summary)."""
        row = self._conn().execute("SELECT backend, host, pid FROM runs WHERE run_id=?",
                                   (run_id,)).fetchone()
        backend, host, pid = row if row else (None, None, None)
        return {"backend": backend or "local", "host": host, "pid": pid}

    @contextmanager
    def file_lock(self, name: str, cancel: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold `<store>/<name>.lock` (fcntl.flock) across processes; waits, polling `cancel`
        (which raises to stop waiting). The kernel drops it if the holder dies."""
        with open(self.root / f"{name}.lock", "a+") as f:
            while cancel is not None:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    cancel()
                    time.sleep(0.1)
            else:
                fcntl.flock(f, fcntl.LOCK_EX)     # nothing to poll: wait in the kernel
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
