"""The background runner: queued runs cancel at once, a cancel during the dense start interrupts."""

import time

from pruneviz.jobs import Runner


def _wait(store, run_id, statuses, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = store.run(run_id)["status"]
        if status in statuses:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{run_id} still {store.run(run_id)['status']} after {timeout} s")


def test_cancelling_a_queued_run_marks_it_interrupted_at_once(store, fast_config):
    runner = Runner(store)
    first = runner.submit(fast_config(epochs=200))
    queued = runner.submit(fast_config())
    runner.cancel(queued)
    run = store.run(queued)
    assert run["status"] == "interrupted" and "before it started" in run["error"]
    runner.cancel(first)
    assert _wait(store, first, ("interrupted",)) == "interrupted"
    assert store.run(queued)["started"] is None      # the worker skipped it


def test_queued_runs_train_one_at_a_time_in_order(store, fast_config):
    runner = Runner(store)
    ids = [runner.submit(fast_config(method=m)) for m in ("l1", "random", "gmp")]
    for run_id in ids:
        assert _wait(store, run_id, ("completed",)) == "completed"
    runs = [store.run(r) for r in ids]
    for before, after in zip(runs, runs[1:]):
        assert before["finished"] <= after["started"]


def test_shutdown_interrupts_running_and_queued_runs_and_stops_the_workers(store, fast_config):
    runner = Runner(store)
    running = runner.submit(fast_config(epochs=200))
    queued = runner.submit(fast_config())
    _wait(store, running, ("running",))
    runner.shutdown()
    assert store.run(running)["status"] == "interrupted"
    assert store.run(queued)["status"] == "interrupted"
    assert not any(t.is_alive() for t in runner._threads)


def test_cancel_while_the_dense_baseline_trains_ends_interrupted(store, fast_config):
    runner = Runner(store)
    run_id = runner.submit(fast_config(dense_epochs=500))
    deadline = time.time() + 60
    while time.time() < deadline:
        dense = store.runs(include_dense=True).query("kind == 'dense'")
        if len(dense) and dense.iloc[0].step > 0:
            break
        time.sleep(0.05)
    runner.cancel(run_id)
    assert _wait(store, run_id, ("interrupted", "failed")) == "interrupted"
    assert "dense baseline" in store.run(run_id)["error"]


def test_sweep_runs_measure_their_metrics_panel_when_first_asked(store, fast_config):
    from pruneviz.report import PANEL_FILE, metrics_panel

    runner = Runner(store)
    single = runner.submit(fast_config(method="l2_filter", rate=0.5))
    _, (swept,) = runner.submit_grid([fast_config(method="l2_filter", rate=0.5, seed=1)])
    for run_id in (single, swept):
        assert _wait(store, run_id, ("completed",)) == "completed"
    assert "panel" in store.run(single)["summary"]
    assert "panel" not in store.run(swept)["summary"]
    panel = metrics_panel(store, swept)                  # measured now, then cached
    assert panel["filters_removed"] > 0 and panel["latency"]
    assert (store.run_dir(swept, create=False) / PANEL_FILE).exists()
    assert metrics_panel(store, swept) == panel
