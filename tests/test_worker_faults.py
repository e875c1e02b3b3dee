"""Workers under faults: a stopped worker is alive (not reaped, not replaced), a worker whose
store is deleted stops without recreating it, a queued row it cannot read fails that run only,
and a signal that stops a worker is named as such in its run."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruneviz import workers
from pruneviz.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def start_worker(tmp_path):
    """Start `python -m pruneviz worker` processes on a store; every one is killed at the end
    (continued first, in case a test left it stopped)."""
    procs = []

    def start(root, *args):
        log = tmp_path / f"worker-{len(procs)}.log"
        proc = subprocess.Popen([sys.executable, "-m", "pruneviz", "worker", "--store", str(root),
                                 *args], cwd=ROOT, env=ENV, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)
        proc.log = log
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()


def _wait(store, run_id, statuses, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = store.run(run_id)["status"]
        if status in statuses:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{run_id} still {store.run(run_id)['status']} after {timeout} s")


def _wait_step(store, run_id, step, timeout=300.0):
    deadline = time.time() + timeout
    while (store.run(run_id)["step"] or 0) < step:
        assert time.time() < deadline, f"{run_id} did not reach step {step}"
        time.sleep(0.05)


def _stop_and_age(proc, store, run_id, seconds=3600.0):
    """SIGSTOP the worker outside a write transaction (a process stopped while holding SQLite's
    write lock would block this test's own write), then age its beat and its run's by `seconds`,
    as if it had been stopped that long."""
    conn = sqlite3.connect(store.db_path, timeout=1, isolation_level=None)
    try:
        for _ in range(100):
            proc.send_signal(signal.SIGSTOP)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:     # it holds the lock: let it finish, try again
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.05)
                continue
            conn.execute("UPDATE workers SET heartbeat = heartbeat - ?", (seconds,))
            conn.execute("UPDATE runs SET heartbeat = heartbeat - ? WHERE run_id = ?",
                         (seconds, run_id))
            conn.execute("COMMIT")
            return
        raise AssertionError("the worker never let go of the write lock")
    finally:
        conn.close()


# -- a stopped worker is alive ------------------------------------------------------------------
def test_a_stopped_worker_is_neither_reaped_nor_replaced(store, fast_config, start_worker):
    run_id = workers.submit(store, fast_config(epochs=500))
    proc = start_worker(store.root, "--idle-exit", "0")
    _wait_step(store, run_id, 2)
    _stop_and_age(proc, store, run_id)              # paused an hour, as far as beats tell
    store.reap()
    assert store.run(run_id)["status"] == "running"
    assert list(store.workers().pid) == [proc.pid]
    assert workers.ensure_workers(store, wanted=2) == 0      # the pool counts it: no second one
    step = store.run(run_id)["step"]
    proc.send_signal(signal.SIGCONT)
    _wait_step(store, run_id, step + 2)              # it trains on where it stopped
    workers.cancel(store, run_id)
    assert _wait(store, run_id, ("interrupted",), timeout=60) == "interrupted"
    assert store.run(run_id)["error"] == "cancelled by the user"
    assert proc.wait(timeout=60) == 0


def test_a_worker_on_another_host_is_gone_when_its_beat_is_old(store):
    store.register_worker("far", 1, "local", host="elsewhere.invalid")
    store.register_worker("near", 1, "local", host="elsewhere.invalid")
    store._conn().execute("UPDATE workers SET heartbeat = heartbeat - 3600 WHERE worker_id='far'")
    assert list(store.workers().worker_id) == ["near"]


def test_a_pid_taken_over_by_a_later_process_is_not_the_worker(store):
    # This test's pid is alive, but the process holding it started long after the row: the
    # worker that registered it is gone and its pid was reused.
    store.register_worker("old", os.getpid(), "local")
    store._conn().execute("UPDATE workers SET started = started - 86400")
    assert store.workers().empty
    store.register_worker("mine", os.getpid(), "local")
    assert list(store.workers().worker_id) == ["mine"]


# -- a store deleted under a worker ---------------------------------------------------------------
def _remove_tree(root: Path) -> None:
    """rm -rf, retried: the worker may add a file while the tree is being removed."""
    for _ in range(50):
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{root} could not be removed")


def test_a_worker_whose_store_is_deleted_stops_and_recreates_nothing(store, fast_config,
                                                                     start_worker):
    run_id = workers.submit(store, fast_config(epochs=500))
    proc = start_worker(store.root)
    _wait_step(store, run_id, 2)
    store.close()
    _remove_tree(store.root)
    assert proc.wait(timeout=60) == 2, proc.log.read_text()
    log = proc.log.read_text()
    assert f"the run store {store.root} is gone" in log and "was deleted" in log
    errors = [line for line in log.splitlines() if line.startswith("pruneviz: error:")]
    assert len(errors) == 1 and "recreated nothing" in errors[0]
    assert "Traceback" not in log
    assert not store.root.exists()          # no run folder made again, so nothing looks damaged


def test_run_dir_of_a_deleted_store_is_an_error_not_a_new_folder(store, fast_config):
    run_id = store.create_run(fast_config())
    store.close()
    _remove_tree(store.root)
    with pytest.raises(StoreError, match="is gone .*was deleted.*nothing was recreated"):
        store.run_dir(run_id)
    assert not store.root.exists()


def test_a_store_replaced_by_another_database_is_seen_as_lost(store):
    assert store.lost() is None
    store.db_path.rename(store.db_path.with_name("moved.sqlite"))
    assert "deleted" in store.lost()
    Store(store.root)                      # a new, empty store where the old one was
    assert "replaced" in store.lost()


# -- a queued row this version cannot read --------------------------------------------------------
def test_a_queued_row_this_version_cannot_read_fails_alone_and_the_worker_goes_on(
        store, fast_config):
    future = store.create_run(fast_config())
    garbled = store.create_run(fast_config())
    good = workers.submit(store, fast_config(epochs=1, max_steps_per_epoch=2))
    conn = store._conn()
    config = json.loads(conn.execute("SELECT config FROM runs WHERE run_id=?",
                                     (future,)).fetchone()[0])
    conn.execute("UPDATE runs SET config=? WHERE run_id=?",
                 (json.dumps({**config, "field_from_a_later_version": 1}), future))
    conn.execute("UPDATE runs SET config='not json' WHERE run_id=?", (garbled,))
    worker = workers.Worker(store)
    assert worker.serve(idle_exit=0) == 3
    for run_id, why in ((future, "field_from_a_later_version"), (garbled, "JSONDecodeError")):
        row = store._conn().execute("SELECT status, error FROM runs WHERE run_id=?",
                                    (run_id,)).fetchone()      # store.run() cannot parse it
        assert row[0] == "failed"
        assert "cannot read the run's stored config" in row[1] and why in row[1]
    assert store.run(good)["status"] == "completed"
    assert store.workers().empty


# -- a signal is not a cancel ---------------------------------------------------------------------
def test_a_sigterm_to_a_worker_is_named_in_its_run_not_called_a_cancel(store, fast_config,
                                                                       start_worker):
    run_id = workers.submit(store, fast_config(epochs=500))
    proc = start_worker(store.root)
    _wait_step(store, run_id, 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.log.read_text()
    run = store.run(run_id)
    assert run["status"] == "interrupted" and run["cancel"] == 0
    assert "stopped by SIGTERM" in run["error"] and "cancelled by the user" not in run["error"]
    assert run["summary"]["error"] == run["error"]
    assert run["step"] >= 2
