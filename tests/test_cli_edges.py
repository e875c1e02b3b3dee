"""CLI edges: bad seconds, cancels of finished runs, mistyped stores, run name lengths, read-only
stores, stray folders in a store, N:M patterns out of range, delete of a running run."""

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pruneviz.cli import main
from pruneviz.config import MAX_NAME_CHARS, ConfigError, SessionConfig
from pruneviz.records import Scalar
from pruneviz.store import Store

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dense-epochs", "3", "--epochs", "1", "--device", "cpu"]


def _one_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def _running(store) -> str:
    run_id = store.create_run(SessionConfig())
    store.start_run(run_id, 10)                      # this process: alive, so really running
    return run_id


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_a_worker_idle_exit_that_is_not_a_finite_count_of_seconds_is_refused(store, value):
    # In a process of its own, with a timeout: a worker given nan used to serve forever.
    out = subprocess.run([sys.executable, "-m", "pruneviz", "worker", "--store",
                          str(store.root), f"--idle-exit={value}"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:"), err
    assert "--idle-exit is a number of seconds" in err[0] and repr(value) in err[0]
    assert store.workers().empty


@pytest.mark.parametrize("value", ["-5", "nan", "inf"])
def test_a_cancel_grace_that_is_not_a_finite_count_of_seconds_is_refused(store, capsys, value):
    run_id = _running(store)
    assert main(["cancel", run_id, "--store", str(store.root), f"--grace={value}"]) == 2
    _one_error(capsys, "--grace is a number of seconds", repr(value))
    assert store.run(run_id)["cancel"] == 0 and store.run(run_id)["status"] == "running"


def test_cancelling_a_finished_run_writes_nothing_and_says_so(store, capsys):
    run_id = store.create_run(SessionConfig())
    store.finish_run(run_id, "completed", summary={"final_accuracy": 0.5})
    before = store.run(run_id)
    assert main(["cancel", run_id, "--store", str(store.root)]) == 0
    assert "already finished (completed)" in capsys.readouterr().out
    assert store.run(run_id) == before               # no cancel=1 in a completed run


@pytest.mark.parametrize("command", [["cancel", "20260101-000000-abcd"], ["worker", "--once"]])
def test_cancel_and_worker_on_a_mistyped_store_create_nothing(tmp_path, capsys, command):
    typo = tmp_path / "typo"
    assert main([*command, "--store", str(typo)]) == 2
    _one_error(capsys, f"no run store at {typo}", "--store", "start a run to create one")
    assert list(tmp_path.iterdir()) == []


# -- run names ----------------------------------------------------------------------------------
def test_a_too_long_run_name_is_refused_before_anything_is_stored(tmp_path, capsys):
    root = tmp_path / "runs"
    name = "n" * (MAX_NAME_CHARS + 1)
    assert main(["run", "--store", str(root), "--name", name, *FAST]) == 2
    _one_error(capsys, f"at most {MAX_NAME_CHARS} characters", f"has {MAX_NAME_CHARS + 1}")
    assert not root.exists()


def test_rename_and_create_refuse_a_too_long_name(store):
    run_id = store.create_run(SessionConfig(name="short"))
    with pytest.raises(ConfigError, match=f"at most {MAX_NAME_CHARS} characters"):
        store.rename(run_id, "x" * 1_000_000)
    assert store.run(run_id)["name"] == "short"
    store.rename(run_id, "y" * MAX_NAME_CHARS)       # the limit itself is fine
    assert store.run(run_id)["name"] == "y" * MAX_NAME_CHARS
    with pytest.raises(ConfigError, match="run name"):
        store.create_run(SessionConfig(name="z" * (MAX_NAME_CHARS + 1)))
    assert len(store.runs()) == 1


# -- read-only stores ---------------------------------------------------------------------------
def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


def _make_read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _as_one_bound_by_permissions() -> list[str]:
    """A command prefix under which file permissions apply: none for a normal user; for root,
    which ignores them, the root user less the capabilities that override them."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    if shutil.which("setpriv") is None or subprocess.run(
            [*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("root here cannot drop the capabilities that override file permissions")
    return prefix


@pytest.fixture
def read_only_store(tmp_path):
    store = Store(tmp_path / "runs")
    run_id = store.create_run(SessionConfig(name="kept"))
    store.start_run(run_id, 10)
    store.write(run_id, [Scalar(0, 0, "loss", 1.0)])
    store.finish_run(run_id, "completed", summary={"final_accuracy": 0.5})
    store.close()
    _make_read_only(store.root)
    yield store.root, run_id
    _make_writable(store.root)


@pytest.mark.parametrize("command", [["list"], ["show", "RUN"]])
def test_list_and_show_read_a_store_they_may_not_write(read_only_store, command):
    # A real permission check by the kernel: the CLI runs as a process that cannot write the
    # store's files (root without the override capabilities), and must read them all the same.
    root, run_id = read_only_store
    before = _tree(root)
    args = [run_id if a == "RUN" else a for a in command]
    out = subprocess.run([*_as_one_bound_by_permissions(), sys.executable, "-m", "pruneviz",
                          *args, "--store", str(root)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert run_id in out.stdout and "kept" in out.stdout
    assert _tree(root) == before                      # nothing written, not even a lock file


def test_a_reader_opens_an_unwritable_store_through_sqlites_read_only_mode(read_only_store,
                                                                          monkeypatch):
    # What this proves: when the OS says the store may not be written, the reader's connection
    # is SQLite's read-only one (a write through it fails), whoever runs the test.
    root, run_id = read_only_store
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    store = Store(root, create=False, reader=True)
    assert store.read_only and "mode=ro" in store._uri
    assert store.run(run_id)["name"] == "kept"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._conn().execute("UPDATE runs SET name='changed'")


# -- stray folders ------------------------------------------------------------------------------
def test_folders_without_a_run_file_do_not_make_a_store_look_damaged(tmp_path, capsys):
    root = tmp_path / "runs"
    for name in ("logs", "data", "20260101-000000-abcd"):
        (root / name).mkdir(parents=True)
    assert main(["list", "--store", str(root)]) == 2
    _one_error(capsys, "no run store")                # not "damaged"
    Store(root).create_run(SessionConfig())           # and a store can be started there
    assert len(Store(root).runs()) == 1


# -- N:M patterns and delete --------------------------------------------------------------------
def test_an_nm_pattern_out_of_range_is_named_as_the_pattern(tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["run", "--store", str(root), "--param", "nm=1:1000000000", *FAST]) == 2
    err = _one_error(capsys, "nm=1:1000000000 is out of range", "2:4")
    assert "0.999999999" not in err                   # a rate the user never typed
    assert not root.exists()


def test_deleting_a_running_run_names_the_cli_cancel(store, capsys):
    run_id = _running(store)
    assert main(["delete", run_id, "--store", str(store.root)]) == 2
    err = _one_error(capsys, f"python -m pruneviz cancel {run_id}")
    assert "dashboard" not in err
    assert store.run(run_id)["status"] == "running"
