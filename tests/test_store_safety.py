"""Issue 22, the store's own safety: exports onto a disk that fills, dense baselines found by
paths relative to the store (moved, copied, opened from elsewhere, tampered), and
`doctor --repair` that refuses a store in use, holds its lock and survives its own bad inputs.
Each case: one clear `pruneviz: error:` line (exit 2) or the right result, nothing stored lost."""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruneviz.cli import main
from pruneviz.store import Store
from pruneviz.store.db import DB_NAME

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dense-epochs", "3", "--epochs", "2", "--device", "cpu"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A store holding one completed run and its dense baseline; tests work on copies."""
    root = tmp_path_factory.mktemp("safety") / "runs"
    assert main(["run", "--store", str(root), "--json", *FAST]) == 0
    store = Store(root)
    run_id = store.runs().run_id.iloc[0]
    store.close()
    conn = sqlite3.connect(root / DB_NAME)       # fold the WAL in, as a closed store leaves it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return root, run_id


def _copy(finished, dst):
    root, run_id = finished
    shutil.copytree(root, dst)
    return dst, run_id


def _files(root):
    """Every stored byte (SQLite's -wal/-shm scratch files aside), by relative path."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def _one_error(text, *needles):
    err = text.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:"), err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


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


# -- item 3: exports onto a disk that fills -------------------------------------------------------
@pytest.mark.parametrize("free", [20_000, 90_000])
def test_a_pt2_export_onto_a_really_full_disk_is_one_error_not_an_abort(finished, tmp_path, free):
    """torch.export.save aborted the process (SIGABRT, rc 134) on a short write and left
    .partial-model_compact.pt2; run in a subprocess so an abort cannot take pytest down."""
    root, run_id = finished
    with _tmpfs(tmp_path / "small", "256k") as disk:
        (disk / "filler").write_bytes(b"x" * (256 * 1024 - free))
        proc = subprocess.run([sys.executable, "-m", "pruneviz", "export", run_id, "--store",
                               str(root), "--out", str(disk / "out"), "--formats", "pt2"],
                              env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        _one_error(proc.stderr, "No space left", "nothing of this export")
        assert sorted(p.name for p in disk.rglob("*")) == ["filler"]


def test_a_full_disk_at_any_export_file_leaves_nothing_of_the_export(finished, tmp_path, capsys,
                                                                     monkeypatch):
    """ENOSPC when the data reaches the disk (fsync) fails the export whole: no partial file, no
    half set of files, the folder it made removed, the store untouched."""
    import pruneviz.export as export

    root, run_id = finished
    calls = []

    def full(fd):
        calls.append(fd)
        if len(calls) == 3:           # the first two files are whole; the third fills the disk
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.os, "fsync", full)
    before = _files(root)
    out = tmp_path / "out"
    assert main(["export", run_id, "--store", str(root), "--out", str(out)]) == 2
    _one_error(capsys.readouterr().err, "No space left", str(out))
    assert len(calls) == 3 and not out.exists()
    assert _files(root) == before


def test_a_failed_export_keeps_the_earlier_export_beside_it_whole(finished, tmp_path, capsys,
                                                                  monkeypatch):
    import pruneviz.export as export

    root, run_id = finished
    out = tmp_path / "out"
    assert main(["export", run_id, "--store", str(root), "--out", str(out), "--formats",
                 "card"]) == 0
    earlier = _files(out)
    capsys.readouterr()

    def full(data_path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(data_path))

    monkeypatch.setattr(export, "write_file", full)
    assert main(["export", run_id, "--store", str(root), "--out", str(out), "--formats",
                 "card,pt2"]) == 2
    _one_error(capsys.readouterr().err, "No space left")
    assert _files(out) == earlier and not list(out.glob(".partial-*"))


# -- item 4: dense baselines found inside the store, wherever it is ------------------------------
def _dense_rows(root):
    conn = sqlite3.connect(root / DB_NAME)
    try:
        return conn.execute("SELECT key, run_id, path FROM dense").fetchall()
    finally:
        conn.close()


def _set_dense_path(root, path):
    conn = sqlite3.connect(root / DB_NAME)
    conn.execute("UPDATE dense SET path=?", (str(path),))
    conn.commit()
    conn.close()


def _fake_dense(store):
    """A dense run with a weights file and its cached row; returns (key, run_id, file)."""
    from pruneviz.config import SessionConfig

    run_id = store.create_run(SessionConfig(), kind="dense", status="completed")
    weights = store.run_dir(run_id) / "weights.pt"
    weights.write_bytes(b"this store's weights")
    store.dense_save("k" * 16, run_id, weights, 0.9)
    return "k" * 16, run_id, weights


def test_dense_paths_are_stored_relative_to_the_store(tmp_path):
    store = Store(tmp_path / "runs")
    key, run_id, _ = _fake_dense(store)
    assert _dense_rows(store.root) == [(key, run_id, f"{run_id}/weights.pt")]


def test_a_store_opened_from_another_directory_finds_its_dense_baseline(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    key, run_id, _ = _fake_dense(Store("runs"))
    monkeypatch.chdir(tmp_path)
    hit = Store("a/runs").dense_lookup(key)
    assert hit is not None and hit[0] == run_id
    assert hit[1] == (tmp_path / "a" / "runs" / run_id / "weights.pt").resolve()


@pytest.mark.parametrize("row", ["relative", "absolute (before this fix)", "cwd (before this fix)"])
def test_a_copied_store_reads_its_own_dense_weights(tmp_path, row):
    original = Store(tmp_path / "original")
    key, run_id, weights = _fake_dense(original)
    original.close()
    if row.startswith("absolute"):
        _set_dense_path(original.root, weights.resolve())
    elif row.startswith("cwd"):
        _set_dense_path(original.root, Path("original") / run_id / "weights.pt")
    shutil.copytree(original.root, tmp_path / "copy")
    weights.write_bytes(b"changed in the original after the copy")
    hit = Store(tmp_path / "copy").dense_lookup(key)
    assert hit is not None and hit[1].read_bytes() == b"this store's weights"
    assert hit[1].is_relative_to((tmp_path / "copy").resolve())
    assert _dense_rows(tmp_path / "copy")[0][2] == f"{run_id}/weights.pt"     # converted


@pytest.mark.parametrize("tampered", ["../victim/weights.pt", "ABSOLUTE"])
def test_a_dense_path_outside_the_store_is_never_loaded(tmp_path, tampered, caplog):
    store = Store(tmp_path / "runs")
    key, _, weights = _fake_dense(store)
    weights.unlink()          # only the outside file exists: the old code loaded it
    victim = tmp_path / "victim" / "weights.pt"
    victim.parent.mkdir()
    victim.write_bytes(b"not this store's")
    _set_dense_path(store.root, victim if tampered == "ABSOLUTE" else tampered)
    assert store.dense_lookup(key) is None
    assert "outside" in caplog.text and "not read" in caplog.text


def test_a_moved_store_reuses_its_dense_baseline_instead_of_retraining(finished, tmp_path,
                                                                       capsys):
    """End to end, with a row as the old code wrote it (the path the first process saw): the
    store is moved and the original's files are gone; the next run trains no second baseline."""
    root, _ = _copy(finished, tmp_path / "before")
    [(key, dense_run, _)] = _dense_rows(root)
    _set_dense_path(root, (root / dense_run / "weights.pt").resolve())
    moved = tmp_path / "after"
    shutil.move(root, moved)
    assert main(["run", "--store", str(moved), "--json", "--method", "random", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dense_run"] == dense_run
    runs = Store(moved).runs(include_dense=True)
    assert (runs.kind == "dense").sum() == 1


# -- items 2 and 7: doctor --repair ---------------------------------------------------------------
def _lose_index(root):
    """The database emptied (lost), as `doctor` finds it; SQLite's scratch files gone too."""
    (root / DB_NAME).write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (root / (DB_NAME + suffix)).unlink(missing_ok=True)


def _orphan(store):
    """A finished run whose row is gone from the database (its folder and run.json kept): a
    problem `doctor` finds and `--repair` would fix."""
    from pruneviz.config import SessionConfig

    run_id = store.create_run(SessionConfig(), status="queued")
    store.finish_run(run_id, "completed", summary={})
    conn = sqlite3.connect(store.root / DB_NAME)
    conn.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
    conn.commit()
    conn.close()
    return run_id


def _dense_folder(root):
    conn = sqlite3.connect(root / DB_NAME)
    try:
        return conn.execute("SELECT run_id FROM runs WHERE kind='dense'").fetchone()[0]
    finally:
        conn.close()


def _edit_run_file(folder, edit):
    data = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps(edit(data)))


def _backups(root):
    return sorted(p.name for p in Path(root).glob("backup.*"))


def test_repair_refuses_while_a_worker_trains_in_the_store(store, fast_config, tmp_path, capsys):
    """The issue's case: the database moved aside under a training worker lost its run from the
    index. Now nothing is touched, and the message names the run, the worker and the fix."""
    from pruneviz import workers

    orphan = _orphan(store)
    run_id = workers.submit(store, fast_config(epochs=500))
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pruneviz", "worker", "--store",
                             str(store.root)], cwd=ROOT, env=ENV, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while (store.run(run_id)["step"] or 0) < 3:
            assert time.time() < deadline and proc.poll() is None, \
                (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.1)
        inode = (store.root / DB_NAME).stat().st_ino
        capsys.readouterr()
        assert main(["doctor", "--store", str(store.root), "--repair"]) == 2
        line = _one_error(capsys.readouterr().err, run_id, "running", "worker",
                          f"python -m pruneviz cancel {run_id}", "changed nothing")
        assert str(proc.pid) in line
        assert (store.root / DB_NAME).stat().st_ino == inode and not _backups(store.root)
        step = store.run(run_id)["step"]
        deadline = time.time() + 120
        while store.run(run_id)["step"] <= step:        # it trains on, into the same index
            assert time.time() < deadline
            time.sleep(0.1)
        workers.cancel(store, run_id)
        deadline = time.time() + 120
        while store.run(run_id)["status"] != "interrupted":     # ended in the index, kept
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert orphan not in set(store.runs().run_id)      # still only found, not repaired


def test_repair_refuses_a_running_run_of_a_live_process(store, capsys):
    from pruneviz.config import SessionConfig

    _orphan(store)
    run_id = store.create_run(SessionConfig(), worker="foreground")
    store.start_run(run_id, 10)                 # this process: alive, so really running
    before = _files(store.root)
    assert main(["doctor", "--store", str(store.root), "--repair"]) == 2
    _one_error(capsys.readouterr().err, run_id, "running", "cancel")
    assert _files(store.root) == before and not _backups(store.root)


def test_repair_refuses_while_another_process_has_the_store_open(store, capsys):
    """A dashboard or a script with the database open would go on with the old file."""
    _orphan(store)
    store.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(store.root / DB_NAME)!r})\n"
         "c.execute('SELECT count(*) FROM runs').fetchone()\n"
         "print('ready', flush=True)\n"
         "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = _files(store.root)
        assert main(["doctor", "--store", str(store.root), "--repair"]) == 2
        _one_error(capsys.readouterr().err, f"pid {holder.pid}", "in use")
        assert _files(store.root) == before and not _backups(store.root)
    finally:
        holder.kill()
        holder.wait()


def test_two_repairs_never_overlap(store, capsys, monkeypatch):
    import pruneviz.doctor as doctor

    _orphan(store)
    store.close()
    monkeypatch.setattr(doctor, "LOCK_WAIT_S", 0.3)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         f"f = open({str(store.root / 'open.lock')!r}, 'a+')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('ready', flush=True)\n"
         "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = _files(store.root)
        assert main(["doctor", "--store", str(store.root), "--repair"]) == 2
        _one_error(capsys.readouterr().err, "open.lock", "changed nothing")
        assert _files(store.root) == before and not _backups(store.root)
    finally:
        holder.kill()
        holder.wait()


def test_a_store_opened_during_a_repair_waits_for_the_rebuilt_index(finished, tmp_path,
                                                                    monkeypatch):
    """New processes (a worker starting, a run, a dashboard) stay out while the index is
    rebuilt, then open the new one, never the old file or half of the new."""
    import threading

    import pruneviz.doctor as doctor

    root, run_id = _copy(finished, tmp_path / "runs")
    store = Store(root)
    orphan = _orphan(store)
    store.close()
    rebuild = doctor._rebuild
    seen, opened = [], threading.Event()

    def open_store():
        seen.append(set(Store(root).runs().run_id))
        opened.set()

    def slow_rebuild(where):
        threading.Thread(target=open_store, daemon=True).start()
        assert not opened.wait(1.0)             # held off while the repair works
        return rebuild(where)

    monkeypatch.setattr(doctor, "_rebuild", slow_rebuild)
    assert main(["doctor", "--store", str(root), "--repair"]) == 0
    assert opened.wait(30) and seen == [{run_id, orphan}]


@pytest.mark.parametrize("bad", ["a list", "a string", "dense config", "no status",
                                 "a number as name", "a list as summary"])
def test_repair_skips_and_names_an_unusable_run_json(finished, tmp_path, capsys, bad):
    """A bad run.json used to raise after the database was moved aside (the store then read
    'no runs yet' beside its run folders, and each retry added a backup)."""
    root, run_id = _copy(finished, tmp_path / "runs")
    folder = root / (_dense_folder(root) if bad == "dense config" else run_id)
    other = {_dense_folder(root), run_id} - {folder.name}
    edits = {"a list": lambda d: [1, 2], "a string": lambda d: "run",
             "dense config": lambda d: {**d, "config": "{not json"},
             "no status": lambda d: {k: v for k, v in d.items() if k != "status"},
             "a number as name": lambda d: {**d, "name": 5},
             "a list as summary": lambda d: {**d, "summary": "[1]"}}
    _edit_run_file(folder, edits[bad])
    _lose_index(root)
    assert main(["doctor", "--store", str(root), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and folder.name in out
    assert set(Store(root).runs(include_dense=True).run_id) == other
    assert len(_backups(root)) == 1


def test_repair_never_leaves_an_empty_index_beside_run_folders(finished, tmp_path, capsys):
    root, run_id = _copy(finished, tmp_path / "runs")
    for folder in (root / run_id, root / _dense_folder(root)):
        (folder / "run.json").write_text("[]")
    _lose_index(root)
    before = _files(root)
    for _ in range(2):                   # a retry adds no backup either
        assert main(["doctor", "--store", str(root), "--repair"]) == 2
        _one_error(capsys.readouterr().err, "nothing to rebuild", run_id, "changed nothing")
        assert _files(root) == before and not _backups(root)


def test_unknown_keys_in_run_json_are_ignored_and_named(finished, tmp_path, capsys):
    """Keys were pasted into the SQL text: an extra key failed the rebuild after the database
    had been moved aside."""
    root, run_id = _copy(finished, tmp_path / "runs")
    evil = 'x) VALUES (1); DROP TABLE scalars; --'
    _edit_run_file(root / run_id, lambda d: {**d, "surprise": 1, evil: 2})
    _lose_index(root)
    assert main(["doctor", "--store", str(root), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "unknown keys" in out and "surprise" in out and evil in out
    store = Store(root)
    assert store.run(run_id)["status"] == "completed"
    assert store.scalars(run_id).empty                  # the table is there (and empty)


def test_a_column_the_schema_lacks_in_the_old_database_is_left_behind(finished, tmp_path,
                                                                      capsys):
    root, run_id = _copy(finished, tmp_path / "runs")
    conn = sqlite3.connect(root / DB_NAME)
    conn.execute('ALTER TABLE runs ADD COLUMN "surprise" TEXT')
    conn.commit()
    conn.close()
    _orphan(Store(root))
    assert main(["doctor", "--store", str(root), "--repair"]) == 0
    store = Store(root)
    assert store.run(run_id)["status"] == "completed"
    assert len(store.scalars(run_id)) > 0               # the records came through


def test_a_read_only_store_is_one_error(finished, tmp_path, capsys):
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        root, _ = _copy(finished, disk / "runs")
        _lose_index(root)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert main(["doctor", "--store", str(root)]) == 1
        capsys.readouterr()
        assert main(["doctor", "--store", str(root), "--repair"]) == 2
        _one_error(capsys.readouterr().err, "cannot be written", "copy the store")


def test_a_full_disk_during_the_repair_changes_nothing(finished, tmp_path, capsys, monkeypatch):
    import pruneviz.doctor as doctor

    root, _ = _copy(finished, tmp_path / "runs")
    _lose_index(root)
    before = _files(root)

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(doctor.shutil, "copy2", full)
    assert main(["doctor", "--store", str(root), "--repair"]) == 2
    _one_error(capsys.readouterr().err, "No space left", "changed nothing")
    assert _files(root) == before and not _backups(root)
