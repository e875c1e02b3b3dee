"""Bad input and injected faults: damaged and lost databases, truncated artifacts, full disks,
unwritable export destinations, tampered run ids, id bursts, concurrent processes, kill -9 in each
phase, and user text rendered in the dashboard. Each case: one clear message (CLI: one
`pruneviz: error:` line, exit 2), nothing stored lost or changed, nothing outside the store
touched."""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pruneviz.cli import main
from pruneviz.config import SessionConfig
from pruneviz.records import Scalar
from pruneviz.store import Store, StoreError
from pruneviz.store.db import DB_NAME, RUN_FILE, new_run_id

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dense-epochs", "3", "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A store holding one completed run (and its dense baseline), its panel already cached;
    tests damage copies of it."""
    root = tmp_path_factory.mktemp("faults") / "runs"
    assert main(["run", "--store", str(root), "--json", *FAST]) == 0
    store = Store(root)
    run_id = store.runs().run_id.iloc[0]
    assert main(["report", run_id, "--store", str(root)]) == 0
    store.close()
    _checkpoint(root)
    return root, run_id


def _checkpoint(root):
    """Fold the WAL into the database file, as a closed store leaves it."""
    conn = sqlite3.connect(root / DB_NAME)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _copy(finished, tmp_path):
    root, run_id = finished
    dst = tmp_path / "runs"
    shutil.copytree(root, dst)
    return dst, run_id


def _files(root):
    """Every stored byte (SQLite's -wal/-shm scratch files aside), by relative path."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def _one_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:"), err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


def _damage_page(db, page_no):
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((page_no - 1) * page)
        f.write(b"\xde\xad\xbe\xef" * (page // 4))


def _root_page(db, table):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?",
                            (table,)).fetchone()[0]
    finally:
        conn.close()


# -- damaged and lost databases -----------------------------------------------------------------
@pytest.mark.parametrize("command", [["list"], ["show", "RUN"], ["run", *FAST]])
def test_damaged_runs_table_is_one_error_naming_the_recovery(finished, tmp_path, capsys,
                                                              command):
    root, run_id = _copy(finished, tmp_path)
    _damage_page(root / DB_NAME, _root_page(root / DB_NAME, "runs"))
    before = _files(root)
    args = [run_id if a == "RUN" else a for a in command]
    assert main([args[0], *args[1:], "--store", str(root)]) == 2
    _one_error(capsys, "damaged", "doctor")
    assert _files(root) == before


def test_damage_in_the_middle_of_the_file_is_found_before_anything_is_written(finished, tmp_path,
                                                                              capsys):
    root, _ = _copy(finished, tmp_path)
    db = root / DB_NAME
    pages = db.stat().st_size // sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    _damage_page(db, pages // 2)
    before = _files(root)
    assert main(["run", "--store", str(root), "--method", "random", *FAST]) == 2
    _one_error(capsys, "damaged", "doctor")
    assert _files(root) == before


def test_an_empty_database_beside_run_folders_is_not_started_over(finished, tmp_path, capsys):
    root, _ = _copy(finished, tmp_path)
    (root / DB_NAME).write_bytes(b"")
    before = _files(root)
    assert main(["list", "--store", str(root)]) == 2
    _one_error(capsys, "empty", "doctor")
    assert _files(root) == before and (root / DB_NAME).stat().st_size == 0


def test_doctor_rebuilds_a_lost_database_from_the_run_folders(finished, tmp_path, capsys):
    root, run_id = _copy(finished, tmp_path)
    original = Store(root).run(run_id)
    (root / DB_NAME).write_bytes(b"")
    assert main(["doctor", "--store", str(root)]) == 1          # found, not repaired
    assert (root / DB_NAME).stat().st_size == 0
    assert main(["doctor", "--store", str(root), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "backed up" in out and "from their folders" in out
    store = Store(root)
    rebuilt = store.run(run_id)
    for key in ("status", "name", "method", "summary", "config"):
        assert rebuilt[key] == original[key], key
    assert len(store.runs(include_dense=True)) == 2
    backup = next(root.glob("backup.*"))
    assert (backup / DB_NAME).stat().st_size == 0                # the damaged file is kept
    # the dense baseline is found again: the next run reuses it instead of retraining
    assert store.dense_lookup(next(iter(_dense_keys(finished[0])))) is not None


def _dense_keys(root):
    conn = sqlite3.connect(root / DB_NAME)
    try:
        return [r[0] for r in conn.execute("SELECT key FROM dense")]
    finally:
        conn.close()


def test_doctor_salvages_the_readable_records_of_a_damaged_database(finished, tmp_path, capsys):
    root, run_id = _copy(finished, tmp_path)
    db = root / DB_NAME
    loss = len(Store(root).scalars(run_id, ["loss"]))
    _checkpoint(root)
    _damage_page(db, _root_page(db, "filters"))
    assert main(["doctor", "--store", str(root), "--repair"]) == 0
    assert "unreadable parts" in capsys.readouterr().out
    store = Store(root)
    assert store.run(run_id)["status"] == "completed"
    assert len(store.scalars(run_id, ["loss"])) == loss       # the undamaged tables are whole


def test_doctor_on_a_healthy_store_changes_nothing(finished, tmp_path, capsys):
    root, _ = _copy(finished, tmp_path)
    before = _files(root)
    assert main(["doctor", "--store", str(root)]) == 0
    assert _files(root) == before


# -- bad input touches nothing ------------------------------------------------------------------
def test_unknown_method_with_a_new_store_path_creates_nothing(tmp_path, capsys):
    target = tmp_path / "new" / "runs"
    assert main(["run", "--store", str(target), "--method", "nope", *FAST]) == 2
    _one_error(capsys, "nope")
    assert not (tmp_path / "new").exists()


def test_missing_image_folder_with_a_new_store_path_creates_nothing(tmp_path, capsys):
    target = tmp_path / "runs"
    assert main(["run", "--store", str(target), "--dataset", f"folder:{tmp_path / 'nothing'}",
                 *FAST]) == 2
    _one_error(capsys, "does not exist")
    assert not target.exists()


@pytest.mark.parametrize("command", [["list"], ["show", "20260101-000000-abcd"],
                                     ["report", "20260101-000000-abcd"],
                                     ["delete", "20260101-000000-abcd"],
                                     ["export", "20260101-000000-abcd", "--out", "OUT"]])
def test_reading_a_mistyped_store_path_creates_nothing(tmp_path, capsys, command):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    assert main([*args, "--store", str(tmp_path / "typo")]) == 2
    _one_error(capsys, "no run store")
    assert list(tmp_path.iterdir()) == []


# -- ids ----------------------------------------------------------------------------------------
def test_a_burst_of_ids_does_not_collide():
    ids = [new_run_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)


def test_a_colliding_id_is_retried(store, monkeypatch):
    import pruneviz.store.db as store_module

    first = store.create_run(SessionConfig())
    tail = first.rsplit("-", 1)[1]
    draws = iter([tail, tail, "0123456789"])
    monkeypatch.setattr(store_module.secrets, "token_hex", lambda n: next(draws))
    monkeypatch.setattr(store_module.time, "strftime", lambda fmt: first.rsplit("-", 1)[0])
    second = store.create_run(SessionConfig())
    assert second != first and second.endswith("0123456789")
    assert len(store.runs()) == 2


def test_concurrent_processes_create_distinct_runs(tmp_path):
    code = textwrap.dedent(f"""
        from pruneviz.config import SessionConfig
        from pruneviz.store import Store
        s = Store({str(tmp_path)!r})
        for _ in range(300):
            s.create_run(SessionConfig())
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
             for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    runs = Store(tmp_path).runs()
    assert len(runs) == 900 and runs.run_id.is_unique


# -- tampered run ids ---------------------------------------------------------------------------
@pytest.fixture
def tampered(finished, tmp_path):
    """A copied store whose completed run's id was rewritten to '../../victim' in the database,
    and a victim folder that id would reach."""
    root, run_id = _copy(finished, tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (victim / "weights.pt").write_bytes(b"not yours")
    conn = sqlite3.connect(root / DB_NAME)
    conn.execute("UPDATE runs SET run_id='../../victim' WHERE run_id=?", (run_id,))
    conn.commit()
    conn.close()
    return root, victim


@pytest.mark.parametrize("command", [["delete"], ["show"], ["report", "--recompute"],
                                     ["export", "--out", "OUT"]])
def test_a_tampered_id_never_reaches_outside_the_store(tampered, tmp_path, capsys, command):
    root, victim = tampered
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    before, outside = _files(root), _files(victim)
    assert main([args[0], "../../victim", *args[1:], "--store", str(root)]) == 2
    _one_error(capsys, "not a run id")
    assert _files(root) == before and _files(victim) == outside
    assert not (tmp_path / "out").exists()


def test_delete_removes_a_linked_run_folder_but_not_its_target(store, tmp_path):
    run_id = store.create_run(SessionConfig(), status="completed")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    shutil.rmtree(store.run_dir(run_id), ignore_errors=True)
    store.run_dir(run_id, create=False).symlink_to(outside, target_is_directory=True)
    store.delete(run_id)
    assert (outside / "keep.txt").read_text() == "x"
    assert not store.run_dir(run_id, create=False).exists()


def test_deleting_a_running_run_is_refused(store, capsys):
    run_id = store.create_run(SessionConfig())
    store.start_run(run_id, 10)                      # this process: alive, so really running
    store.write(run_id, [Scalar(0, 0, "loss", 1.0)])
    assert main(["delete", run_id, "--store", str(store.root)]) == 2
    _one_error(capsys, "running", "cancel")
    assert store.run(run_id)["status"] == "running"
    assert len(store.scalars(run_id)) == 1


# -- truncated artifacts ------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["export", "--out", "OUT"], ["report", "--recompute"]])
def test_a_truncated_weights_file_names_the_file_the_run_and_what_still_works(
        finished, tmp_path, capsys, command):
    root, run_id = _copy(finished, tmp_path)
    weights = root / run_id / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    before = _files(root)
    assert main([args[0], run_id, *args[1:], "--store", str(root)]) == 2
    line = _one_error(capsys, "weights.pt", run_id, "--formats card")
    assert "damaged" in line
    assert _files(root) == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # what the message promises still works
    assert main(["export", run_id, "--store", str(root), "--out", str(tmp_path / "card"),
                 "--formats", "card"]) == 0
    assert (tmp_path / "card" / "scalars.csv").exists()


# -- export destinations ------------------------------------------------------------------------
def test_export_onto_an_existing_file_is_one_error(finished, tmp_path, capsys):
    root, run_id = finished
    target = tmp_path / "taken"
    target.write_text("mine")
    before = _files(root)
    assert main(["export", run_id, "--store", str(root), "--out", str(target)]) == 2
    _one_error(capsys, "is a file")
    assert target.read_text() == "mine" and _files(root) == before


def test_export_under_a_file_is_one_error(finished, tmp_path, capsys):
    root, run_id = finished
    (tmp_path / "file").write_text("x")
    assert main(["export", run_id, "--store", str(root), "--out",
                 str(tmp_path / "file" / "out")]) == 2
    _one_error(capsys, "could not write")


def test_a_full_disk_during_export_leaves_no_partial_file(finished, tmp_path, capsys, monkeypatch):
    import pruneviz.export as export

    root, run_id = finished

    def full(model, shape, path, **kw):
        Path(path).write_bytes(b"half an onnx")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export, "export_onnx", full)
    before = _files(root)
    out = tmp_path / "out"
    assert main(["export", run_id, "--store", str(root), "--out", str(out)]) == 2
    _one_error(capsys, "No space left", str(out))
    assert not list(out.glob(".partial-*")) and not (out / "model_compact.onnx").exists()
    assert _files(root) == before


def test_export_replaces_existing_files_whole(finished, tmp_path):
    root, run_id = finished
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks.pt").write_bytes(b"an old export")
    assert main(["export", run_id, "--store", str(root), "--out", str(out),
                 "--formats", "masks"]) == 0
    masks = torch.load(out / "masks.pt", weights_only=True)
    assert masks and all(m.dtype == torch.bool for m in masks.values())
    assert not list(out.glob(".partial-*"))


@contextlib.contextmanager
def _tmpfs(mount, size):
    """A real small disk: a tmpfs of `size` at `mount` (root only; skips elsewhere)."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path):
    with _tmpfs(tmp_path / "small", "256k") as mount:
        yield mount


def test_export_onto_a_really_full_disk_leaves_no_partial_file(finished, small_tmpfs, capsys):
    root, run_id = finished
    (small_tmpfs / "filler").write_bytes(b"x" * 200_000)
    assert main(["export", run_id, "--store", str(root), "--out", str(small_tmpfs / "out")]) == 2
    _one_error(capsys, "could not write")
    left = sorted(p.name for p in small_tmpfs.rglob("*"))
    assert left == ["filler"]


# -- a full disk while a run finishes -----------------------------------------------------------
def test_a_full_disk_at_the_final_commit_ends_the_run_failed_not_running(store, fast_config,
                                                                          monkeypatch):
    from pruneviz.session import run_session

    run_session(fast_config(method="random"), store)     # the dense baseline
    real = Store.finish_run
    calls = []

    def full_once(self, run_id, status, **kw):
        calls.append(status)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, run_id, status, **kw)

    monkeypatch.setattr(Store, "finish_run", full_once)
    summary = run_session(fast_config(method="l1"), store)
    assert summary["status"] == "failed" and "full" in summary["error"]
    run = store.run(summary["run_id"])
    assert run["status"] == "failed" and "full" in run["error"]
    assert len(store.scalars(summary["run_id"], ["loss"])) > 0       # committed steps kept


def test_a_full_disk_saving_the_final_weights_leaves_no_truncated_file(store, fast_config,
                                                                        monkeypatch, capsys):
    import pruneviz.safe_load as safe_load

    main(["run", "--store", str(store.root), "--method", "random", "--json", *FAST])
    real = torch.save

    def half(obj, path, *a, **kw):
        real(obj, path, *a, **kw)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576")

    monkeypatch.setattr(safe_load.torch, "save", half)
    capsys.readouterr()
    assert main(["run", "--store", str(store.root), "--method", "l1", "--json", *FAST]) == 2
    _one_error(capsys, "could not save the final weights")
    run = store.runs().iloc[0]
    assert run.status == "failed"
    folder = store.run_dir(run.run_id, create=False)
    assert not [p.name for p in folder.iterdir() if p.suffix == ".pt" or "partial" in p.name]


def test_a_really_full_disk_at_the_end_of_a_run_ends_it_failed(tmp_path, fast_config, monkeypatch):
    from pruneviz.loop import Session
    from pruneviz.session import run_session

    with _tmpfs(tmp_path / "disk", "4m") as disk:
        store = Store(disk / "runs")
        run_session(fast_config(method="random"), store)     # the dense baseline
        close = Session.close

        def fill_then_close(self, status, error):
            with open(disk / "filler", "wb", buffering=0) as f:
                with contextlib.suppress(OSError):
                    while True:
                        f.write(bytes(4096))
            return close(self, status, error)

        monkeypatch.setattr(Session, "close", fill_then_close)
        summary = run_session(fast_config(method="l1"), store)
        assert summary["status"] == "failed" and summary["storage_error"]
        run = store.run(summary["run_id"])          # this process is alive: no reaping
        assert run["status"] == "failed" and "full" in run["error"]
        folder = store.run_dir(summary["run_id"], create=False)
        assert not [p for p in folder.iterdir() if p.suffix == ".pt" or "partial" in p.name]
        store.close()


# -- kill -9 in each phase ----------------------------------------------------------------------
KILLER = """
import os, signal, sys
import pruneviz.report as report
import pruneviz.loop as loop
from pruneviz.cli import main

def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

phase = sys.argv[1]
if phase == "panel":
    report.panel_for_folder = die
else:
    end_epoch = loop.Session.end_epoch
    def killing_end_epoch(self):
        end_epoch(self)
        if self.phase == phase and self.ctx.epoch == 1:
            die()
    loop.Session.end_epoch = killing_end_epoch
sys.exit(main(sys.argv[2:]))
"""


def _killed(root, phase):
    proc = subprocess.run([sys.executable, "-c", KILLER, phase, "run", "--store", str(root),
                           "--json", "--dense-epochs", "3", "--epochs", "3", "--device", "cpu"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    store = Store(root)
    return store, store.runs(include_dense=True).set_index("kind")


def test_kill_during_the_dense_baseline(tmp_path):
    store, runs = _killed(tmp_path / "runs", "dense baseline")
    assert set(runs.status) == {"interrupted"}
    dense = runs.loc["dense", "run_id"]
    assert len(store.scalars(dense, ["loss"])) > 0                 # committed steps kept
    assert _dense_keys(store.root) == []                            # not cached as if trained


def test_kill_during_the_session(tmp_path):
    store, runs = _killed(tmp_path / "runs", "session")
    assert runs.loc["dense", "status"] == "completed"
    session = runs.loc["session"]
    assert session.status == "interrupted"
    assert store.scalars(session.run_id, ["test_accuracy"]).epoch.max() == 1


def test_kill_during_the_final_panel_gives_no_model_files_or_panel(tmp_path, capsys):
    from pruneviz.export import export_run
    from pruneviz.report import metrics_panel

    store, runs = _killed(tmp_path / "runs", "panel")
    session = runs.loc["session"]
    assert session.status == "interrupted"
    assert "panel" not in store.run(session.run_id)["summary"]
    assert "error" in metrics_panel(store, session.run_id)
    written = export_run(store, session.run_id, tmp_path / "out")
    assert written and not [p for p in written if p.suffix in (".pt", ".pt2", ".onnx")]
    capsys.readouterr()
    assert main(["report", session.run_id, "--store", str(store.root)]) == 2
    _one_error(capsys, "interrupted")


# -- the dashboard ------------------------------------------------------------------------------
EVIL = "![x](http://evil.example/x.png)"


def test_user_text_is_rendered_as_plain_text_on_every_page(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    store = Store(root)
    folder = f"folder:/tmp/{EVIL}"
    run_id = store.create_run(SessionConfig(name=f"mine {EVIL}", dataset=folder))
    store.finish_run(run_id, "failed", error=f"image folder /tmp/{EVIL} does not exist")
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    shown = []
    for page in ("pages/live.py", "pages/runs.py", "pages/compare.py"):
        at.switch_page(page).run()
        assert not at.exception
        for kind in ("markdown", "caption", "subheader", "error", "warning", "info"):
            shown += [str(e.value) for e in getattr(at, kind)]
            shown += [str(e.value) for e in getattr(at.sidebar, kind)]
    assert any("evil" in s for s in shown)             # the text is shown ...
    assert not [s for s in shown if "![x](" in s]      # ... but never as Markdown


def test_the_dashboard_binds_only_the_loopback_interface():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_inspect_loads_weights_through_the_safe_loader(finished, tmp_path):
    import pickle

    from pruneviz.config import ConfigError
    from pruneviz.inspect import load_run

    root, run_id = _copy(finished, tmp_path)

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with open(root / run_id / "weights.pt", "wb") as f:
        pickle.dump(Payload(), f, protocol=2)
    with pytest.raises(ConfigError, match="refused to load"):
        load_run(Store(root), run_id)
    assert not (tmp_path / "pwned").exists()


def test_run_folders_keep_their_row_for_recovery(finished):
    root, run_id = finished
    data = json.loads((root / run_id / RUN_FILE).read_text())
    assert data["run_id"] == run_id and data["status"] == "completed"
    assert json.loads(data["summary"])["final_accuracy"] > 0


def test_store_error_is_raised_for_a_bad_id_before_any_query(store):
    with pytest.raises(StoreError, match="not a run id"):
        store.run_dir("../x")
