"""The Store: opening the database, runs from created to ended (rows, folders, notes, tags) and
the cached dense baselines; its records and its queue are mixed in from their own modules.
Safe for one writer per run and many readers at once."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError, SessionConfig, check_name
from .db import (
    ACTIVE,
    DB_NAME,
    ENV_VAR,
    OPEN_LOCK,
    RECORD_TABLES,
    RESERVE,
    RESERVE_BYTES,
    RUN_FILE,
    STATUSES,
    StoreError,
    check_run_id,
    create_schema,
    damaged,
    default_root,
    new_run_id,
    run_folders,
    sqlite_error,
)
from .queue import QueueMixin
from .records import RecordsMixin

log = logging.getLogger(__name__)

MAX_TAG_CHARS, MAX_TAGS, MAX_NOTES_CHARS = 40, 20, 20_000
# Summary numbers runs() lists as columns (the dashboard's compare views plot them).
SUMMARY_COLUMNS = ("dense_accuracy", "pruned_accuracy", "final_accuracy", "sparsity",
                   "global_sparsity", "params_nonzero", "flops_dense", "flops_effective",
                   "wall_s", "warnings", "dense_perplexity", "final_perplexity")



def parse_tags(text: str) -> list[str]:
    """Comma-separated tags -> the list stored (trimmed, blanks and repeats dropped); bad input
    raises ConfigError saying which tag and the limit."""
    tags = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    long = [t for t in tags if len(t) > MAX_TAG_CHARS]
    if long:
        raise ConfigError(f"tags are at most {MAX_TAG_CHARS} characters each; {long[0][:60]!r} "
                          f"has {len(long[0])}. Shorten it or split it at a comma.")
    if len(tags) > MAX_TAGS:
        raise ConfigError(f"a run takes at most {MAX_TAGS} tags; got {len(tags)}.")
    return tags




def _file_ident(path: Path) -> tuple[int, int]:
    """The file's device and inode: what stays the same while it is the same file."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Store(RecordsMixin, QueueMixin):
    """Runs and records under `root` (default ./runs, or $PRUNEVIZ_STORE)."""

    def __init__(self, root: str | Path | None = None, *, create: bool = True,
                 check: bool = True, reader: bool = False) -> None:
        """Open (and with `create`, make) the store; `check` runs SQLite's quick integrity check
        first, so a damaged database is refused before anything is written to it. A `reader`
        (list, show) writes nothing to open it, and a store it may not write (permissions, a
        read-only mount) is opened read-only (`read_only`: its dead runs are not reaped)."""
        self.root = Path(root) if root else default_root()
        self.db_path = self.root / DB_NAME
        self._local = threading.local()
        self._uri: str | None = None         # set for a read-only open
        self.read_only = False
        exists = self.db_path.exists() and self.db_path.stat().st_size > 0
        # Folders holding a run's row file, not any folder named like a run id (logs/, data/):
        # only those would be orphaned by starting a new index.
        orphans = [f for f in run_folders(self.root)
                   if (f / RUN_FILE).is_file()] if not exists and check else []
        if orphans:
            # An empty index beside run folders is a lost database, not a new store: starting
            # over would orphan every run folder.
            raise damaged(self.root, f"{DB_NAME} is missing or empty but "
                                     f"{len(orphans)} run folders are beside it")
        if not exists and not create:
            raise StoreError(f"no run store at {self.root} (no {DB_NAME} there); check --store "
                             f"or {ENV_VAR}, or start a run to create one.")
        if reader and not (os.access(self.root, os.W_OK) and os.access(self.db_path, os.W_OK)):
            self._open_read_only(check)
            return
        if not reader:      # a reader's store exists, and a full disk must not stop a read
            self._make_root()
        try:
            # One opener at a time: SQLite answers "database is locked" at once, without
            # waiting out busy_timeout, to a connection that switches a fresh file to WAL or
            # creates the schema while another does (2 of 24 processes opening one new store).
            with self.file_lock(OPEN_LOCK):
                if exists and check:
                    bad = self._conn().execute("PRAGMA quick_check(1)").fetchone()[0]
                    if bad != "ok":
                        self.close()
                        raise damaged(self.root, bad)
                self._conn().execute("PRAGMA journal_mode = WAL")     # kept in the file
                create_schema(self._conn())
                self._keep_reserve()
            self._ident = _file_ident(self.db_path)
        except sqlite3.DatabaseError as e:
            raise self._open_error(e) from None

    def _open_error(self, e: sqlite3.DatabaseError) -> StoreError:
        """The one error an open that SQLite refused ends with (the connection closed)."""
        self.close()
        if "not a database" in str(e):
            return StoreError(f"{self.db_path} is not a readable pruneviz store ({e}); move it "
                              f"aside or pass --store DIR to use another folder.")
        return sqlite_error(e, self.root)

    def _make_root(self) -> None:
        """Create the store folder and prove it writable, or StoreError naming the fix."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # A name of its own: processes opening one store at once (workers) must not
            # remove each other's probe.
            probe = self.root / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"cannot write to the store folder {self.root} ({e.strerror or e}); "
                             f"pass --store DIR or set {ENV_VAR} to a writable folder.") from None

    def _open_read_only(self, check: bool) -> None:
        """Open a store this process may not write, for reading: SQLite's read-only mode needs
        the WAL index file a live writer keeps (-shm); with no -wal file there is nothing
        outside the database file to read, so it is opened immutable (no lock, no index)."""
        quoted = urllib.parse.quote(str(self.db_path.resolve()))
        wal = self.db_path.with_name(DB_NAME + "-wal")
        self._uri = f"file:{quoted}?mode=ro" + ("" if wal.exists() else "&immutable=1")
        self.read_only = True
        try:
            if check:
                bad = self._conn().execute("PRAGMA quick_check(1)").fetchone()[0]
                if bad != "ok":
                    raise damaged(self.root, bad)
            self._conn().execute("SELECT 1 FROM runs LIMIT 1").fetchall()
            self._ident = _file_ident(self.db_path)
        except sqlite3.DatabaseError as e:
            raise self._open_error(e) from None
        except StoreError:
            self.close()
            raise

    def lost(self) -> str | None:
        """Why the database this Store opened is no longer at its path (deleted with the store,
        or replaced by another file), None while it is: an open connection keeps reading and
        writing a deleted file, so a long-lived process (a worker) must ask."""
        try:
            ident = _file_ident(self.db_path)
        except FileNotFoundError:
            return f"its database {self.db_path} was deleted"
        except OSError:
            return None       # cannot tell (a flaky mount): keep going rather than stop
        if ident != getattr(self, "_ident", ident):
            return f"its database {self.db_path} was replaced by another file"
        return None

    def _keep_reserve(self) -> None:
        path = self.root / RESERVE
        if path.exists():
            return
        try:
            path.write_bytes(bytes(RESERVE_BYTES))
        except OSError:
            path.unlink(missing_ok=True)     # a disk already full: nothing to keep

    def release_reserve(self) -> None:
        """Free the reserved space (the disk is full and a run must still be marked ended)."""
        (self.root / RESERVE).unlink(missing_ok=True)

    # -- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = (sqlite3.connect(self._uri, uri=True, timeout=30, isolation_level=None)
                    if self._uri else
                    sqlite3.connect(self.db_path, timeout=30, isolation_level=None))
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _rid(self, run_id: str) -> int:
        check_run_id(run_id)
        row = self._conn().execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.root}; `python -m pruneviz list` shows "
                             f"the runs there.")
        return row[0]

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, config: SessionConfig, *, kind: str = "session", status: str = "queued",
                   sweep_id: str | None = None, worker: str | None = None) -> str:
        """Insert a run; a queued session with no `worker` is a job any worker may claim."""
        check_name(config.name)
        for attempt in range(5):      # ids carry 40 random bits; a collision draws again
            run_id = new_run_id()
            now = time.time()
            try:
                with self._tx() as c:
                    c.execute(
                        "INSERT INTO runs (run_id, name, kind, method, model, dataset, rate, "
                        "seed, status, config, sweep_id, created, heartbeat, pid, host, worker) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (run_id, config.name, kind, config.method, config.model, config.dataset,
                         config.rate, config.seed, status, config.to_json(), sweep_id, now, now,
                         os.getpid(), socket.gethostname(), worker))
                return run_id
            except sqlite3.IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def start_run(self, run_id: str, total_steps: int) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE runs SET status='running', started=?, heartbeat=?, pid=?, host=?, "
                      "total_steps=? WHERE run_id=?",
                      (now, now, os.getpid(), socket.gethostname(), total_steps, run_id))

    def finish_run(self, run_id: str, status: str, *, summary: dict | None = None,
                   error: str | None = None, only_active: bool = False) -> bool:
        """Set the run's final status; `only_active` leaves a run that has already ended as it
        is (a reaper or a cancel racing the worker). True if the row changed."""
        assert status in STATUSES, status
        active = " AND status IN ('queued','running')" if only_active else ""
        with self._tx() as c:
            cur = c.execute(f"UPDATE runs SET status=?, error=?, summary=COALESCE(?, summary), "
                            f"finished=? WHERE run_id=?{active}",
                            (status, error, json.dumps(summary) if summary is not None else None,
                             time.time(), run_id))
        self._save_run_file(run_id)
        return cur.rowcount > 0

    def _save_run_file(self, run_id: str) -> None:
        """The run's row as JSON in its folder (written to a temporary name, then renamed), so
        `python -m pruneviz doctor --repair` can rebuild the index if the database is lost.
        Best effort: a full disk must not turn a finished run into a failed one."""
        row = self._conn().execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        values = row.fetchone()
        if values is None:
            return
        data = dict(zip([d[0] for d in row.description], values))
        data.pop("id", None)
        try:
            folder = self.run_dir(run_id)
        except (OSError, StoreError):      # the store is gone: nothing to keep the row beside
            return
        tmp = folder / f".{RUN_FILE}.partial"
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, folder / RUN_FILE)
        except OSError:
            tmp.unlink(missing_ok=True)


    def runs(self, *, include_dense: bool = False) -> pd.DataFrame:
        """One row per run, newest first, with the run's config fields and summary numbers."""
        self.reap()
        where = "" if include_dense else "WHERE kind = 'session'"
        df = pd.read_sql_query(
            f"SELECT run_id, name, kind, method, model, dataset, rate, seed, status, error, "
            f"sweep_id, created, started, finished, step, total_steps, notes, tags, summary "
            f"FROM runs {where} ORDER BY id DESC", self._conn())
        df["tags"] = [json.loads(t) for t in df.tags]
        # pandas 3 reads a text column with NULLs as str dtype with NaN for the missing values
        summaries = [json.loads(s) if isinstance(s, str) and s else {} for s in df.pop("summary")]
        for key in SUMMARY_COLUMNS:
            df[key] = [s.get(key) for s in summaries]
        return df

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's row as a dict, with `config` (SessionConfig) and `summary` (dict) parsed."""
        check_run_id(run_id)
        self.reap()
        cur = self._conn().execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        row = cur.fetchone()
        if row is None:
            self._rid(run_id)  # raises the standard message
        out = dict(zip([d[0] for d in cur.description], row))
        out["config"] = SessionConfig.from_dict(json.loads(out["config"]))
        out["summary"] = json.loads(out["summary"]) if out["summary"] else {}
        out["tags"] = json.loads(out["tags"])
        return out

    def status(self, run_id: str) -> str:
        """The run's status alone: readable even when its stored config is not (a row queued by
        another version), unlike run()."""
        self._rid(run_id)
        return self._conn().execute("SELECT status FROM runs WHERE run_id=?",
                                    (run_id,)).fetchone()[0]

    def rename(self, run_id: str, name: str) -> None:
        """Set the run's name; a too long one raises ConfigError and stores nothing."""
        check_name(name)
        with self._tx() as c:
            c.execute("UPDATE runs SET name=? WHERE id=?", (name, self._rid(run_id)))

    def annotate(self, run_id: str, *, notes: str | None = None,
                 tags: list[str] | None = None) -> None:
        """Set a run's notes and/or tags (each left as is when None); too long raises
        ConfigError and stores nothing."""
        if notes is not None and len(notes) > MAX_NOTES_CHARS:
            raise ConfigError(f"notes are at most {MAX_NOTES_CHARS:,} characters; these have "
                              f"{len(notes):,}.")
        if tags is not None:
            tags = parse_tags(",".join(tags))
        rid = self._rid(run_id)
        with self._tx() as c:
            if notes is not None:
                c.execute("UPDATE runs SET notes=? WHERE id=?", (notes, rid))
            if tags is not None:
                c.execute("UPDATE runs SET tags=? WHERE id=?", (json.dumps(tags), rid))

    def delete(self, run_id: str) -> None:
        """Remove a finished run's records and folder; a queued or running run is refused."""
        status = self.run(run_id)["status"]     # reaps a run whose process is gone first
        if status in ACTIVE:
            raise StoreError(f"run {run_id} is {status}; cancel it first (`python -m pruneviz "
                             f"cancel {run_id} --store {self.root}`), then delete it.")
        rid = self._rid(run_id)
        with self._tx() as c:
            for table in RECORD_TABLES:
                c.execute(f"DELETE FROM {table} WHERE rid=?", (rid,))
            c.execute("DELETE FROM dense WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM runs WHERE id=?", (rid,))
        folder = self.run_dir(run_id, create=False)
        if folder.is_symlink():
            folder.unlink()      # a link is removed, never what it points at
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def request_cancel(self, run_id: str) -> bool:
        """Ask the run to stop: its worker stops within a step; a run no worker has claimed yet
        ends interrupted at once (behind a long queue it would show queued for minutes). A run
        that has already ended is left as it is (a cancel flag on a completed run would read as
        one that was stopped); returns whether the run was still queued or running."""
        rid = self._rid(run_id)
        self.reap()      # a run whose process is gone has ended, whatever its row still says
        with self._tx() as c:
            if not c.execute("UPDATE runs SET cancel=1 WHERE id=? AND status IN "
                             "('queued','running')", (rid,)).rowcount:
                return False
            c.execute("UPDATE runs SET status='interrupted', error='cancelled before it started', "
                      "finished=? WHERE id=? AND status='queued' AND worker IS NULL",
                      (time.time(), rid))
        return True

    def cancel_requested(self, run_id: str) -> bool:
        row = self._conn().execute("SELECT cancel FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return bool(row and row[0])

    def run_dir(self, run_id: str, *, create: bool = True) -> Path:
        """The run's folder, `root/run_id`; StoreError for an id that is not a run id, or (with
        `create`) for a store deleted while in use: recreating its folders would leave run
        folders without a database, which reads as a damaged store."""
        path = self.root / check_run_id(run_id)
        if create and not path.is_dir():
            why = self.lost()
            if why is None and not self.root.is_dir():
                why = f"its folder {self.root} was deleted"
            if why is not None:
                raise StoreError(f"the run store {self.root} is gone ({why}); nothing was "
                                 f"recreated there.")
            path.mkdir(exist_ok=True)
        return path


    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(DB_NAME + "*"))

    # -- stored paths ----------------------------------------------------------------------------
    def relative_path(self, path: str | Path) -> str:
        """`path`, a file under this store, as the database stores it: relative to the store's
        root ('/'-separated), so a store opened from another directory, moved or copied finds
        its own files. StoreError for a path outside the store."""
        root = self.root.resolve()
        full = Path(path).resolve()
        if not full.is_relative_to(root):
            raise StoreError(f"{path} is not inside the run store {self.root}; only the store's "
                             f"own files are referenced from its database.")
        return full.relative_to(root).as_posix()

    def stored_file(self, text: str, run_id: str) -> Path | None:
        """The file a stored path names, inside this store, or None when it is missing or would
        lie outside the store (a tampered row: never read, a warning names it).

        Rows written before paths were relative hold the path as their writer saw it (absolute,
        or relative to its working directory): such a path is read as the same file name in
        its run's folder of this store, never as the file it named elsewhere (a copied store
        would otherwise read the original's weights)."""
        root = self.root.resolve()
        given = Path(text)
        candidates = [given if given.is_absolute() else root / given]
        if given.parent.name == run_id and check_run_id(run_id) and \
                given.name not in ("", ".", ".."):
            candidates.append(root / run_id / given.name)
        inside = [c.resolve() for c in candidates if c.resolve().is_relative_to(root)]
        if not inside:
            log.warning("pruneviz: warning: the store %s refers to %s, which is outside it; "
                        "not read (treated as missing).", self.root, text)
            return None
        return next((c for c in inside if c.is_file()), None)

    # -- dense baselines -----------------------------------------------------------------------
    def dense_lookup(self, key: str) -> tuple[str, Path, float] | None:
        """The cached dense baseline of `key`: its run, weights file (inside this store) and
        accuracy; None when there is none, its file is gone or its path leads outside."""
        row = self._conn().execute("SELECT run_id, path, accuracy FROM dense WHERE key=?",
                                   (key,)).fetchone()
        if row is None:
            return None
        try:
            path = self.stored_file(row[1], row[0])
        except StoreError:          # a row whose run id is not one: never a path
            log.warning("pruneviz: warning: the store %s holds a dense baseline with the "
                        "invalid run id %r; not read (treated as missing).", self.root, row[0])
            return None
        if path is None:
            return None
        relative = self.relative_path(path)
        if relative != row[1]:
            # An older row (an absolute or working-directory path): stored relative from now
            # on. Best effort: a store that is busy or read-only still reads the file found.
            with contextlib.suppress(sqlite3.Error):
                with self._tx() as c:
                    c.execute("UPDATE dense SET path=? WHERE key=? AND path=?",
                              (relative, key, row[1]))
        return row[0], path, row[2]

    def dense_save(self, key: str, run_id: str, path: Path, accuracy: float) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO dense VALUES (?,?,?,?)",
                      (key, run_id, self.relative_path(path), accuracy))
