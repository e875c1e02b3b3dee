"""Worker processes and the store as the queue: claims are atomic across processes, a killed
worker's run ends interrupted with its steps kept, cancels reach queued, running and hung runs,
the dense baseline trains once across processes, and bad input is one clear error."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruneviz import workers
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.store import Store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def start_worker(tmp_path):
    """Start `python -m pruneviz worker` processes on a store; every one is killed at the end."""
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


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pruneviz", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_a_worker_process_trains_a_queued_run(store, fast_config, start_worker):
    run_id = workers.submit(store, fast_config())
    assert store.run(run_id)["status"] == "queued"
    proc = start_worker(store.root, "--once")
    assert proc.wait(timeout=300) == 0, proc.log.read_text()
    run = store.run(run_id)
    assert run["status"] == "completed"
    assert len(store.scalars(run_id, ["loss"])) == run["total_steps"]
    assert {k: run["summary"][k] for k in ("backend", "pid")} == {"backend": "local",
                                                                   "pid": proc.pid}
    assert run["summary"]["host"] == os.uname().nodename
    assert store.workers().empty              # a worker that leaves takes its row with it


def _claim_all(root, worker_id, out):
    store = Store(root)
    store.register_worker(worker_id, os.getpid(), "local")
    claimed = []
    while (job := store.claim(worker_id)) is not None:
        claimed.append(job["run_id"])
    out.put(claimed)


def test_concurrent_claims_never_hand_out_a_run_twice(store):
    queued = {store.create_run(SessionConfig(seed=i)) for i in range(200)}
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(store.root, f"w{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    flat = [r for c in claimed for r in c]
    assert len(flat) == len(set(flat)) == len(queued) and set(flat) == queued
    assert store.claim("late") is None


def test_two_workers_train_each_queued_run_exactly_once(store, fast_config, start_worker):
    ids = [workers.submit(store, fast_config(method=m, epochs=1))
           for m in ("l1", "random", "gmp", "l1", "random", "gmp")]
    procs = [start_worker(store.root, "--idle-exit", "0") for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.log.read_text()
    trained = [line.split()[-1] for proc in procs for line in proc.log.read_text().splitlines()
               if " training " in line]
    assert sorted(trained) == sorted(ids)
    runs = store.runs(include_dense=True)
    assert set(runs[runs.run_id.isin(ids)].status) == {"completed"}
    pids = {store.run(r)["summary"]["pid"] for r in ids}
    assert pids <= {p.pid for p in procs}
    assert (runs.kind == "dense").sum() == 1      # both waited on one dense baseline


def test_concurrent_foreground_runs_on_a_fresh_store_train_the_dense_baseline_once(tmp_path):
    root = tmp_path / "runs"
    args = ["run", "--store", str(root), "--epochs", "1", "--dense-epochs", "3", "--device",
            "cpu", "--json"]
    procs = [subprocess.Popen([sys.executable, "-m", "pruneviz", *args, "--seed", "0",
                               "--method", m], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for m in ("l1", "random")]
    summaries = [json.loads(p.communicate(timeout=300)[0].splitlines()[-1]) for p in procs]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert summaries[0]["dense_run"] == summaries[1]["dense_run"]
    runs = Store(root).runs(include_dense=True)
    assert (runs.kind == "dense").sum() == 1


def test_a_killed_worker_leaves_its_run_interrupted_and_the_queue_goes_on(
        store, fast_config, start_worker):
    long = workers.submit(store, fast_config(epochs=500))
    nxt = workers.submit(store, fast_config(method="random"))
    proc = start_worker(store.root)
    _wait_step(store, long, 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(store.scalars(long, ["loss"]))
    start_worker(store.root, "--idle-exit", "0")
    assert _wait(store, nxt, ("completed",)) == "completed"
    run = store.run(long)
    assert run["status"] == "interrupted" and "killed" in run["error"]
    assert len(store.scalars(long, ["loss"])) == committed >= 5


def test_cancelling_a_queued_run_marks_it_interrupted_at_once(store, fast_config):
    queued = workers.submit(store, fast_config())
    workers.cancel(store, queued)
    run = store.run(queued)
    assert run["status"] == "interrupted" and "before it started" in run["error"]
    assert store.claim("w") is None                 # no worker will pick it up


def test_cancelling_a_running_run_stops_it_within_steps_and_the_worker_goes_on(
        store, fast_config, start_worker):
    running = workers.submit(store, fast_config(epochs=500))
    nxt = workers.submit(store, fast_config(method="random"))
    proc = start_worker(store.root, "--idle-exit", "0")
    _wait_step(store, running, 3)
    workers.cancel(store, running)
    assert _wait(store, running, ("interrupted",), timeout=60) == "interrupted"
    run = store.run(running)
    assert run["error"] == "cancelled by the user" and 3 <= run["step"] < run["total_steps"]
    assert _wait(store, nxt, ("completed",)) == "completed"
    assert proc.wait(timeout=60) == 0


def test_a_hung_worker_is_killed_after_the_grace_period(store, fast_config, start_worker):
    running = workers.submit(store, fast_config(epochs=500))
    proc = start_worker(store.root)
    _wait_step(store, running, 3)
    proc.send_signal(signal.SIGSTOP)                # deaf to the flag and to SIGTERM
    workers.cancel(store, running, grace=1.0, wait=True)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    run = store.run(running)
    assert run["status"] == "interrupted" and "did not stop within 1 s" in run["error"]
    assert run["step"] >= 3 and store.workers().empty


def test_cancel_while_the_dense_baseline_trains_ends_interrupted(store, fast_config,
                                                                 start_worker):
    run_id = workers.submit(store, fast_config(dense_epochs=500))
    start_worker(store.root)
    deadline = time.time() + 120
    while time.time() < deadline:
        dense = store.runs(include_dense=True).query("kind == 'dense'")
        if len(dense) and dense.iloc[0].step > 0:
            break
        time.sleep(0.05)
    workers.cancel(store, run_id)
    assert _wait(store, run_id, ("interrupted", "failed"), timeout=60) == "interrupted"
    assert "dense baseline" in store.run(run_id)["error"]


def test_sweep_runs_measure_their_metrics_panel_when_first_asked(store, fast_config,
                                                                 start_worker):
    from pruneviz.report import PANEL_FILE, metrics_panel

    single = workers.submit(store, fast_config(method="l2_filter", rate=0.5))
    _, (swept,) = workers.submit_grid(store, [fast_config(method="l2_filter", rate=0.5, seed=1)])
    proc = start_worker(store.root, "--idle-exit", "0")
    assert proc.wait(timeout=300) == 0
    assert "panel" in store.run(single)["summary"]
    assert "panel" not in store.run(swept)["summary"]
    panel = metrics_panel(store, swept)                  # measured now, then cached
    assert panel["filters_removed"] > 0 and panel["latency"]
    assert (store.run_dir(swept, create=False) / PANEL_FILE).exists()


def test_ensure_workers_keeps_one_warm_and_never_more_than_wanted(store, fast_config):
    assert workers.ensure_workers(store, wanted=2) == 1      # nothing queued: one kept warm
    assert workers.ensure_workers(store, wanted=2) == 0      # a second dashboard: none more
    for seed in range(3):
        workers.submit(store, fast_config(seed=seed, epochs=50))
    assert workers.ensure_workers(store, wanted=2) == 1
    assert workers.ensure_workers(store, wanted=2) == 0
    assert len(store.workers()) == 2
    workers.stop_workers(store)
    assert store.workers().empty


def test_run_queue_returns_at_once_with_the_queued_run(tmp_path):
    out = _cli("run", "--queue", "--json", "--store", str(tmp_path), "--method", "l1")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout.splitlines()[-1])["run_id"]
    assert Store(tmp_path).run(run_id)["status"] == "queued"


def test_sweep_queue_queues_the_grid_as_one_sweep(tmp_path):
    out = _cli("sweep", "--queue", "--json", "--store", str(tmp_path), "--methods", "l1,gmp",
               "--rates", "0.5,0.9")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout.splitlines()[-1])
    runs = Store(tmp_path).runs()
    assert set(runs.run_id) == set(printed["run_ids"]) and len(runs) == 4
    assert set(runs.sweep_id) == {printed["sweep_id"]} and set(runs.status) == {"queued"}


@pytest.mark.parametrize("args, message", [
    (["worker", "--backend", "gpu"], "--backend must be one of local, ray"),
    (["worker", "--idle-exit", "soon"], "--idle-exit"),
    (["worker", "--nice", "40"], "--nice is a niceness from 0 to 19"),
    (["run", "--queue", "--backend", "ray"], "--queue"),
    (["run", "--backend", "nope"], "--backend must be one of"),
])
def test_bad_worker_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = _cli(*args, "--store", str(tmp_path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pruneviz: error:") and message in lines[0]
    assert Store(tmp_path).runs().empty


@pytest.mark.parametrize("raw", ["0", "17", "two", "", "-1"])
def test_a_bad_worker_count_names_the_variable_and_the_range(raw):
    with pytest.raises(ConfigError, match=f"PRUNEVIZ_WORKERS.*1 to 16.*{raw!r}"):
        workers.wanted_workers(raw)


def test_a_run_id_drawn_twice_is_drawn_again(store, monkeypatch):
    ids = iter(["20260101-000000-aaaa", "20260101-000000-aaaa", "20260101-000000-bbbb"])
    monkeypatch.setattr("pruneviz.store.runs.new_run_id", lambda: next(ids))
    first, second = store.create_run(SessionConfig()), store.create_run(SessionConfig())
    assert (first, second) == ("20260101-000000-aaaa", "20260101-000000-bbbb")
