"""The run store: round trips, concurrent readers, deletes, corrupt files, killed runs."""

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from pruneviz.config import ConfigError, SessionConfig
from pruneviz.records import FilterRow, LayerRow, Row, Scalar
from pruneviz.store import Store, StoreError, parse_tags
from pruneviz.store.db import DB_NAME, SCHEMA


def test_round_trip_of_every_record_kind(store):
    config = SessionConfig(method="gmp", rate=0.5, name="trial", params={"every": 3})
    run_id = store.create_run(config)
    store.start_run(run_id, 10)
    store.write(run_id, [Scalar(0, 0, "loss", 2.5), Scalar(1, 0, "loss", 2.0),
                         LayerRow(1, 0, "conv2", "sparsity", 0.25),
                         FilterRow(1, 0, "conv2", 3, "norm", 0.5),
                         Row(1, 0, "prune_steps", {"t": 1, "pruned": 12})], step=1)
    store.finish_run(run_id, "completed", summary={"final_accuracy": 0.9})
    run = store.run(run_id)
    assert run["config"] == config
    assert run["status"] == "completed" and run["step"] == 1
    assert store.scalars(run_id)["value"].tolist() == [2.5, 2.0]
    assert store.layers(run_id).iloc[0][["layer", "key", "value"]].tolist() == \
        ["conv2", "sparsity", 0.25]
    assert store.filters(run_id).iloc[0][["filter", "value"]].tolist() == [3, 0.5]
    assert store.rows(run_id, "prune_steps")[["t", "pruned"]].values.tolist() == [[1, 12]]
    assert store.tables(run_id) == ["prune_steps"]
    assert store.scalar_keys(run_id) == ["loss"]
    other = store.create_run(config)
    store.write(other, [Scalar(0, 0, "density", 1.0)], step=0)
    assert store.scalar_keys([run_id, other]) == ["density", "loss"]
    listed = store.runs()
    listed = listed.set_index("run_id")
    assert listed.loc[run_id, "final_accuracy"] == 0.9


def test_rows_after_a_step_reads_only_later_rows(store):
    run_id = store.create_run(SessionConfig())
    store.write(run_id, [Row(step, 0, "t", {"v": step}) for step in (0, 2, 2, 5)] +
                [Row(7, 0, "other", {"v": 7})])
    assert store.rows(run_id, "t", after=2).v.tolist() == [5]
    assert store.rows(run_id, "t", after=-1).v.tolist() == [0, 2, 2, 5]
    assert store.rows(run_id, "t", after=5).empty


def test_runs_lists_the_summary_numbers_compare_plots(store):
    run_id = store.create_run(SessionConfig())
    store.finish_run(run_id, "completed", summary={"flops_effective": 1200, "flops_dense": 4000,
                                                   "params_nonzero": 50, "sparsity": 0.7})
    row = store.runs().iloc[0]
    assert (row.flops_effective, row.flops_dense, row.params_nonzero, row.sparsity) == \
        (1200, 4000, 50, 0.7)


def test_runs_lists_queued_runs_next_to_finished_ones(store):
    queued = store.create_run(SessionConfig())
    done = store.create_run(SessionConfig())
    store.finish_run(done, "completed", summary={"final_accuracy": 0.9})
    listed = store.runs().set_index("run_id")
    assert listed.loc[done, "final_accuracy"] == 0.9
    assert pd.isna(listed.loc[queued, "final_accuracy"])


def test_downsampled_scalars_keep_the_last_step(store):
    run_id = store.create_run(SessionConfig())
    store.write(run_id, [Scalar(i, 0, "loss", float(i)) for i in range(10_000)])
    df = store.scalars(run_id, ["loss"], max_points=500)
    assert 450 <= len(df) <= 520
    assert df.step.iloc[-1] == 9999 and df.step.iloc[0] == 0


def test_downsampling_thins_sparse_and_dense_curves_alike(store):
    run_id = store.create_run(SessionConfig())
    store.write(run_id, [Scalar(i, 0, "loss", 1.0) for i in range(3000)] +
                [Scalar(i, 0, "sparsity", 0.5) for i in range(0, 30_000, 10)] +
                [Scalar(i, 0, "test_accuracy", 0.9) for i in range(0, 3000, 300)])
    df = store.scalars(run_id, ["loss", "sparsity", "test_accuracy"], max_points=100)
    for key, last in (("loss", 2999), ("sparsity", 29_990)):
        steps = df[df.key == key].step
        assert 90 <= len(steps) <= 110 and steps.iloc[-1] == last
        assert steps.diff().dropna().iloc[:-1].nunique() == 1      # evenly spaced
    assert len(df[df.key == "test_accuracy"]) == 10                # short curves untouched
    assert df.run_id.unique().tolist() == [run_id]


def test_reader_sees_writes_while_a_writer_holds_the_file(store):
    run_id = store.create_run(SessionConfig())
    other = Store(store.root)   # a second connection, like a page polling a live run
    store.write(run_id, [Scalar(0, 0, "loss", 1.0)])
    assert len(other.scalars(run_id)) == 1
    store.write(run_id, [Scalar(1, 0, "loss", 0.5)])
    assert len(other.scalars(run_id)) == 2


def test_delete_removes_records_and_folder(store):
    run_id = store.create_run(SessionConfig(), status="completed")
    store.write(run_id, [Scalar(0, 0, "loss", 1.0)])
    (store.run_dir(run_id) / "weights.pt").write_bytes(b"x")
    keep = store.create_run(SessionConfig(), status="completed")
    store.write(keep, [Scalar(0, 0, "loss", 1.0)])
    store.delete(run_id)
    assert not store.run_dir(run_id, create=False).exists()
    assert store.runs().run_id.tolist() == [keep]
    assert len(store.scalars(keep)) == 1
    with pytest.raises(StoreError, match="no run"):
        store.run(run_id)


def test_corrupt_database_is_a_clear_error(tmp_path):
    (tmp_path / "pruneviz.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable pruneviz store"):
        Store(tmp_path)


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store folder should be")
    with pytest.raises(StoreError, match="--store"):
        Store(blocker / "runs")


def test_killed_run_is_listed_interrupted_with_its_steps_kept(tmp_path):
    root = tmp_path / "runs"
    env = {**os.environ, "PRUNEVIZ_STORE": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "pruneviz", "run", "--epochs", "500",
                             "--dense-epochs", "2", "--device", "cpu", "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        committed = 0
        while time.time() < deadline:
            time.sleep(0.5)
            if not (root / "pruneviz.sqlite").exists():
                continue
            runs = Store(root).runs()
            if len(runs) and runs.loc[0, "status"] == "running":
                committed = len(Store(root).scalars(runs.loc[0, "run_id"], ["loss"]))
                if committed >= 20:
                    break
        assert committed >= 20, "the run never committed steps"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = Store(root)
    runs = store.runs()
    assert runs.loc[0, "status"] == "interrupted"
    assert "killed" in store.run(runs.loc[0, "run_id"])["error"]
    assert len(store.scalars(runs.loc[0, "run_id"], ["loss"])) >= committed


def test_running_run_silent_too_long_is_interrupted_even_if_its_pid_lives(store):
    run_id = store.create_run(SessionConfig())
    store.start_run(run_id, 10)
    store._conn().execute("UPDATE runs SET heartbeat = heartbeat - 3600 WHERE run_id = ?",
                          (run_id,))
    assert store.runs().loc[0, "status"] == "interrupted"
    queued = store.create_run(SessionConfig())      # queued runs wait without heartbeats
    store._conn().execute("UPDATE runs SET heartbeat = heartbeat - 3600 WHERE run_id = ?",
                          (queued,))
    assert store.run(queued)["status"] == "queued"


def test_notes_and_tags_are_stored_and_listed(store):
    run_id = store.create_run(SessionConfig(method="l1"))
    assert store.runs().loc[0, "notes"] == "" and store.runs().loc[0, "tags"] == []
    store.annotate(run_id, notes="lr 0.1 diverged at first", tags=["baseline", "paper"])
    store.annotate(run_id, tags=["paper"])             # notes left as they were
    listed = store.runs().iloc[0]
    assert listed.notes == "lr 0.1 diverged at first" and listed.tags == ["paper"]
    assert store.run(run_id)["tags"] == ["paper"]


def test_parse_tags_trims_and_drops_blanks_and_repeats():
    assert parse_tags(" a, b ,, a,c ") == ["a", "b", "c"]
    assert parse_tags("") == []


def test_a_too_long_tag_is_a_clear_error_and_stores_nothing(store):
    run_id = store.create_run(SessionConfig(method="l1"))
    store.annotate(run_id, tags=["kept"])
    with pytest.raises(ConfigError, match="at most 40 characters"):
        store.annotate(run_id, notes="new", tags=["x" * 41])
    assert store.run(run_id)["tags"] == ["kept"] and store.run(run_id)["notes"] == ""


def test_a_store_made_before_notes_and_tags_gains_them_and_keeps_its_runs(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    with sqlite3.connect(root / DB_NAME) as conn:     # the runs table as first released
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO runs (run_id, kind, method, status, config) VALUES "
                     "('old-run', 'session', 'l1', 'completed', ?)",
                     (SessionConfig(method="l1").to_json(),))
    assert "notes" not in {r[1] for r in sqlite3.connect(root / DB_NAME).execute(
        "PRAGMA table_info(runs)")}
    store = Store(root)
    assert store.runs().run_id.tolist() == ["old-run"]
    store.annotate("old-run", notes="from before", tags=["legacy"])
    assert Store(root).run("old-run")["notes"] == "from before"     # a second open is fine


def test_scalar_counts_count_each_runs_values_per_key(store):
    a, b = (store.create_run(SessionConfig(method="l1")) for _ in range(2))
    store.write(a, [Scalar(s, 0, "loss", 1.0) for s in range(3)] + [Scalar(0, 0, "lr", 0.1)])
    store.write(b, [Scalar(0, 0, "loss", 1.0)])
    counts = store.scalar_counts([a, b]).set_index(["run_id", "key"]).n.to_dict()
    assert counts == {(a, "loss"): 3, (a, "lr"): 1, (b, "loss"): 1}


def _open_at_once(root, barrier, results):
    barrier.wait()
    try:
        Store(root)
        results.put("ok")
    except StoreError as e:
        results.put(str(e))


def test_processes_opening_one_new_store_at_once_all_get_it(tmp_path):
    # SQLite answers "database is locked" at once (no busy wait) to a second connection that
    # switches a new file to WAL or creates the schema: 2 of 180 opens failed before the
    # store serialised its opening.
    ctx = multiprocessing.get_context("fork")
    failures = []
    for trial in range(40):
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once,
                             args=(tmp_path / f"s{trial}", barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        failures += [r for r in (results.get(timeout=120) for _ in procs) if r != "ok"]
        for p in procs:
            p.join()
    assert failures == []
