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
