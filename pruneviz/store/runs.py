"""The run store: one SQLite database (WAL) for runs and their records, plus a folder per run for
large artifacts (weights, masks). Safe for one writer per run and many readers at once."""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError, SessionConfig
from ..records import FilterRow, LayerRow, Record, Row, Scalar

ENV_VAR = "PRUNEVIZ_STORE"
DB_NAME = "pruneviz.sqlite"
STATUSES = ("queued", "running", "completed", "interrupted", "failed", "diverged")
ACTIVE = ("queued", "running")
# A running session commits at least every step; one silent this long has lost its process even
# if its pid was reused (after a reboot, say).
STALE_SECONDS = 15 * 60
# Workers beat from a thread of their own, whatever the step costs: one silent this long is gone
# (on another host, where its pid cannot be checked, or hung on this one).
WORKER_STALE_SECONDS = 30
FOREGROUND = "foreground"    # runs.worker of a run trained by the process that created it

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    method TEXT, model TEXT, dataset TEXT, rate REAL, seed INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    config TEXT NOT NULL,
    summary TEXT,
    sweep_id TEXT,
    created REAL, started REAL, finished REAL, heartbeat REAL,
    pid INTEGER, host TEXT,
    step INTEGER DEFAULT 0, total_steps INTEGER DEFAULT 0,
    cancel INTEGER DEFAULT 0,
    worker TEXT, backend TEXT
);
CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, pid INTEGER, host TEXT,
                                    backend TEXT, started REAL, heartbeat REAL, run_id TEXT);
CREATE TABLE IF NOT EXISTS scalars (rid INTEGER, step INTEGER, epoch INTEGER, key TEXT, value REAL);
CREATE INDEX IF NOT EXISTS scalars_idx ON scalars (rid, key, step);
CREATE TABLE IF NOT EXISTS layers (rid INTEGER, step INTEGER, epoch INTEGER, layer TEXT, key TEXT,
                                   value REAL);
CREATE INDEX IF NOT EXISTS layers_idx ON layers (rid, key, step);
CREATE TABLE IF NOT EXISTS filters (rid INTEGER, step INTEGER, epoch INTEGER, layer TEXT,
                                    filter INTEGER, key TEXT, value REAL);
CREATE INDEX IF NOT EXISTS filters_idx ON filters (rid, key, step);
CREATE TABLE IF NOT EXISTS rows (rid INTEGER, step INTEGER, epoch INTEGER, tbl TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS rows_idx ON rows (rid, tbl, step);
CREATE TABLE IF NOT EXISTS dense (key TEXT PRIMARY KEY, run_id TEXT, path TEXT, accuracy REAL);
"""
# Columns added after the first release: a store made before them gains them on open.
ADDED_COLUMNS = {"runs": {"worker": "TEXT", "backend": "TEXT",
                          "notes": "TEXT NOT NULL DEFAULT ''",
                          "tags": "TEXT NOT NULL DEFAULT '[]'"}}
MAX_TAG_CHARS, MAX_TAGS, MAX_NOTES_CHARS = 40, 20, 20_000
RECORD_TABLES = ("scalars", "layers", "filters", "rows")
# Summary numbers runs() lists as columns (the dashboard's compare views plot them).
SUMMARY_COLUMNS = ("dense_accuracy", "pruned_accuracy", "final_accuracy", "sparsity",
                   "global_sparsity", "params_nonzero", "flops_dense", "flops_effective",
                   "wall_s", "warnings")


# Run ids name folders under the store: letters, digits, '-' and '_' only, so no stored or typed id
# can reach outside its own folder ('../x', '/abs', '.').
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
RUN_FILE = "run.json"     # the run's row, kept in its folder so `doctor` can rebuild the index
# Space kept free in the store folder: when the disk fills up at a run's final commit, deleting it
# lets the run still be marked ended instead of staying `running`.
RESERVE, RESERVE_BYTES = ".reserve", 256 * 1024


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, and give a store made by an older pruneviz the columns added since (its
    rows get the defaults); two processes opening it at once may both try, the second finds it
    done."""
    conn.executescript(SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name in have:
                continue
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e):
                    raise


class StoreError(RuntimeError):
    """The store cannot be used as asked; the message names the folder and the fix."""


def default_root() -> Path:
    return Path(os.environ.get(ENV_VAR) or "runs")


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


def new_run_id() -> str:
    # 40 random bits: a burst of 10,000 creates in one second collides with odds ~5e-5 (and a
    # collision is retried, see create_run).
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(5)


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a well-formed run id, else StoreError (it would name a path outside its
    run's folder)."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise StoreError(f"{run_id!r} is not a run id (letters, digits, '-' and '_'); "
                         f"`python -m pruneviz list` shows the runs.")
    return run_id


def run_folders(root: Path) -> list[Path]:
    """Folders under `root` named like run ids (run folders, with or without a database row)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                  and RUN_ID.fullmatch(p.name))


def damaged(root: Path, why: str) -> StoreError:
    """The one message for a store whose database cannot be trusted: what and how to recover."""
    why = " ".join(str(why).split())      # SQLite's report spans lines; the error is one
    return StoreError(f"the run store {root} is damaged ({why}); nothing was written to it. "
                      f"`python -m pruneviz doctor --store {root}` checks it and `--repair` backs "
                      f"it up and rebuilds the index from the run folders.")


def sqlite_error(e: sqlite3.Error, root: Path) -> StoreError:
    """A StoreError saying what an SQLite failure means for the user (full disk, damage, lock)."""
    text = str(e)
    if "full" in text:
        return StoreError(f"the disk holding the run store {root} is full ({text}); free some "
                          f"space and try again (what was committed before is kept).")
    if "locked" in text or "busy" in text:
        return StoreError(f"the run store {root} is busy ({text}); try again in a moment.")
    return damaged(root, text)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:        # a zombie (exited, not yet waited for by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Store:
    """Runs and records under `root` (default ./runs, or $PRUNEVIZ_STORE)."""

    def __init__(self, root: str | Path | None = None, *, create: bool = True,
                 check: bool = True) -> None:
        """Open (and with `create`, make) the store; `check` runs SQLite's quick integrity check
        first, so a damaged database is refused before anything is written to it."""
        self.root = Path(root) if root else default_root()
        self.db_path = self.root / DB_NAME
        self._local = threading.local()
        exists = self.db_path.exists() and self.db_path.stat().st_size > 0
        if not exists and check and run_folders(self.root):
            # An empty index beside run folders is a lost database, not a new store: starting
            # over would orphan every run folder.
            raise damaged(self.root, f"{DB_NAME} is missing or empty but "
                                     f"{len(run_folders(self.root))} run folders are beside it")
        if not exists and not create:
            raise StoreError(f"no run store at {self.root} (no {DB_NAME} there); check --store "
                             f"or {ENV_VAR}, or start a run to create one.")
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
        try:
            if exists and check:
                bad = self._conn().execute("PRAGMA quick_check(1)").fetchone()[0]
                if bad != "ok":
                    self.close()
                    raise damaged(self.root, bad)
            create_schema(self._conn())
            self._keep_reserve()
        except sqlite3.DatabaseError as e:
            self.close()
            if "not a database" in str(e):
                raise StoreError(f"{self.db_path} is not a readable pruneviz store ({e}); move "
                                 f"it aside or pass --store DIR to use another folder.") from None
            raise sqlite_error(e, self.root) from None

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
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
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
        folder = self.run_dir(run_id)
        tmp = folder / f".{RUN_FILE}.partial"
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, folder / RUN_FILE)
        except OSError:
            tmp.unlink(missing_ok=True)

    def write(self, run_id: str, records: Iterable[Record], *, step: int | None = None) -> None:
        """Append records (one transaction) and refresh the run's heartbeat and progress."""
        rid = self._rid(run_id)
        buckets: dict[str, list[tuple]] = {t: [] for t in RECORD_TABLES}
        for r in records:
            if isinstance(r, Scalar):
                buckets["scalars"].append((rid, r.step, r.epoch, r.key, r.value))
            elif isinstance(r, LayerRow):
                buckets["layers"].append((rid, r.step, r.epoch, r.layer, r.key, r.value))
            elif isinstance(r, FilterRow):
                buckets["filters"].append((rid, r.step, r.epoch, r.layer, r.filter, r.key,
                                           r.value))
            elif isinstance(r, Row):
                buckets["rows"].append((rid, r.step, r.epoch, r.table,
                                        json.dumps(r.data, default=float)))
        with self._tx() as c:
            c.executemany("INSERT INTO scalars VALUES (?,?,?,?,?)", buckets["scalars"])
            c.executemany("INSERT INTO layers VALUES (?,?,?,?,?,?)", buckets["layers"])
            c.executemany("INSERT INTO filters VALUES (?,?,?,?,?,?,?)", buckets["filters"])
            c.executemany("INSERT INTO rows VALUES (?,?,?,?,?)", buckets["rows"])
            c.execute("UPDATE runs SET heartbeat=?, step=COALESCE(?, step) WHERE id=?",
                      (time.time(), step, rid))

    def reap(self) -> None:
        """Mark runs whose training process is gone (killed, crashed, hung) as interrupted and
        forget dead workers; every step a run committed is kept. Unclaimed queued runs wait."""
        host, now = socket.gethostname(), time.time()
        conn = self._conn()
        dead_workers = {w for w, pid, w_host, beat in conn.execute(
                            "SELECT worker_id, pid, host, heartbeat FROM workers")
                        if (w_host == host and not pid_alive(pid))
                        or (beat or 0) < now - WORKER_STALE_SECONDS}
        live_workers = {r[0] for r in conn.execute("SELECT worker_id FROM workers")} - dead_workers
        rows = conn.execute(
            "SELECT run_id, pid, host, status, heartbeat, worker FROM runs WHERE status IN "
            "('queued','running') AND NOT (status='queued' AND kind='session' AND worker IS NULL)"
        ).fetchall()
        dead = []
        for run_id, pid, run_host, status, beat, worker in rows:
            if worker in live_workers:
                continue
            if worker in dead_workers or (run_host == host and not pid_alive(pid)) or (
                    status == "running" and (beat or 0) < now - STALE_SECONDS):
                dead.append(run_id)
        for run_id in dead:
            self.finish_run(run_id, "interrupted",
                            error="the process running it stopped (killed or crashed); "
                                  "every step it committed is kept.", only_active=True)
        if dead_workers:
            with self._tx() as c:
                c.executemany("DELETE FROM workers WHERE worker_id=?", [(w,) for w in dead_workers])

    # -- the queue -----------------------------------------------------------------------------
    def claim(self, worker_id: str, backend: str = "local") -> dict[str, Any] | None:
        """Take the oldest unclaimed queued session for `worker_id`, atomically (one writer at a
        time: no run is claimed twice across processes); None when the queue is empty."""
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
        return {"run_id": row[0], "config": SessionConfig.from_dict(json.loads(row[1])),
                "sweep_id": row[2]}

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
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel is not None:
                        cancel()
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

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

    def rename(self, run_id: str, name: str) -> None:
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
            raise StoreError(f"run {run_id} is {status}; cancel it first (the dashboard's Cancel "
                             f"button), then delete it.")
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

    def request_cancel(self, run_id: str) -> None:
        """Ask the run to stop: its worker stops within a step; a run no worker has claimed yet
        ends interrupted at once (behind a long queue it would show queued for minutes)."""
        rid = self._rid(run_id)
        with self._tx() as c:
            c.execute("UPDATE runs SET cancel=1 WHERE id=?", (rid,))
            c.execute("UPDATE runs SET status='interrupted', error='cancelled before it started', "
                      "finished=? WHERE id=? AND status='queued' AND worker IS NULL",
                      (time.time(), rid))

    def cancel_requested(self, run_id: str) -> bool:
        row = self._conn().execute("SELECT cancel FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return bool(row and row[0])

    def run_dir(self, run_id: str, *, create: bool = True) -> Path:
        """The run's folder, `root/run_id`; StoreError for an id that is not a run id."""
        path = self.root / check_run_id(run_id)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    # -- records -------------------------------------------------------------------------------
    def _read(self, table: str, cols: str, run_ids: str | list[str], keys: list[str] | None,
              extra: str = "", args: tuple = ()) -> pd.DataFrame:
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        rids = {self._rid(r): r for r in ids}
        sql = (f"SELECT rid, {cols} FROM {table} WHERE rid IN ({','.join('?' * len(rids))})"
               f"{extra}")
        params: tuple = (*rids, *args)
        if keys is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            params += tuple(keys)
        df = pd.read_sql_query(sql + " ORDER BY rid, step", self._conn(), params=params)
        df.insert(0, "run_id", df.pop("rid").map(rids))
        return df

    def scalars(self, run_ids: str | list[str], keys: list[str] | None = None, *,
                max_points: int | None = None) -> pd.DataFrame:
        """Long table run_id, step, epoch, key, value; `max_points` thins each (run, key) curve
        to about that many evenly spaced steps (the last step always kept)."""
        if max_points is None:
            return self._read("scalars", "step, epoch, key, value", run_ids, keys)
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        conn, rows = self._conn(), []
        for run_id in ids:
            rid = self._rid(run_id)
            where, args = "rid=?", [rid]
            if keys is not None:
                where += f" AND key IN ({','.join('?' * len(keys))})"
                args += list(keys)
            counts = conn.execute(f"SELECT key, COUNT(*), MIN(step), MAX(step) FROM scalars "
                                  f"WHERE {where} GROUP BY key", args).fetchall()
            for key, n, first, last in counts:
                stride = max(1, -(-n // max_points))
                if n == last - first + 1:
                    # One value per step (most curves): thin by step arithmetic along the
                    # index, 10x cheaper than numbering rows with a window function.
                    sql = ("SELECT step, epoch, key, value FROM scalars WHERE rid=? AND key=? "
                           "AND ((step - ?) % ? = 0 OR step = ?) ORDER BY step")
                    params: tuple = (rid, key, first, stride, last)
                else:
                    sql = ("SELECT step, epoch, key, value FROM (SELECT step, epoch, key, "
                           "value, ROW_NUMBER() OVER (ORDER BY step) - 1 AS i FROM scalars "
                           "WHERE rid=? AND key=?) WHERE i % ? = 0 OR step = ? ORDER BY step")
                    params = (rid, key, stride, last)
                rows += [(run_id, *r) for r in conn.execute(sql, params).fetchall()]
        return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value"])

    def scalar_counts(self, run_ids: str | list[str]) -> pd.DataFrame:
        """run_id, key, n: how many values of each scalar each run recorded (one query)."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        rids = {self._rid(r): r for r in ids}
        if not rids:
            return pd.DataFrame({"run_id": [], "key": [], "n": []})
        df = pd.read_sql_query(
            f"SELECT rid, key, COUNT(*) AS n FROM scalars WHERE rid IN "
            f"({','.join('?' * len(rids))}) GROUP BY rid, key", self._conn(), params=list(rids))
        df.insert(0, "run_id", df.pop("rid").map(rids))
        return df

    def scalar_keys(self, run_ids: str | list[str]) -> list[str]:
        """The scalar keys any of the runs recorded, sorted."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        rids = [self._rid(r) for r in ids]
        rows = self._conn().execute(
            f"SELECT DISTINCT key FROM scalars WHERE rid IN ({','.join('?' * len(rids))}) "
            f"ORDER BY key", rids).fetchall()
        return [r[0] for r in rows]

    def layers(self, run_ids: str | list[str], keys: list[str] | None = None) -> pd.DataFrame:
        """Long table run_id, step, epoch, layer, key, value."""
        return self._read("layers", "step, epoch, layer, key, value", run_ids, keys)

    def filters(self, run_ids: str | list[str], keys: list[str] | None = None, *,
                layer: str | None = None) -> pd.DataFrame:
        """Long table run_id, step, epoch, layer, filter, key, value."""
        extra, args = (" AND layer = ?", (layer,)) if layer else ("", ())
        return self._read("filters", "step, epoch, layer, filter, key, value", run_ids, keys,
                          extra, args)

    def rows(self, run_ids: str | list[str], table: str, *, after: int | None = None
             ) -> pd.DataFrame:
        """A method table: run_id, step, epoch and one column per field the method recorded;
        `after` keeps the rows of later steps only (a live view reads just what is new)."""
        extra, args = " AND tbl = ?", (table,)
        if after is not None:
            extra, args = extra + " AND step > ?", (table, after)
        df = self._read("rows", "step, epoch, data", run_ids, None, extra, args)
        # One json.loads over the joined rows: half the time of one call per row.
        data = pd.DataFrame(json.loads("[" + ",".join(df.pop("data")) + "]"), index=df.index)
        return pd.concat([df, data], axis=1)

    def tables(self, run_id: str) -> list[str]:
        """Names of the method tables a run recorded."""
        rows = self._conn().execute("SELECT DISTINCT tbl FROM rows WHERE rid=? ORDER BY tbl",
                                    (self._rid(run_id),)).fetchall()
        return [r[0] for r in rows]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(DB_NAME + "*"))

    # -- dense baselines -----------------------------------------------------------------------
    def dense_lookup(self, key: str) -> tuple[str, Path, float] | None:
        row = self._conn().execute("SELECT run_id, path, accuracy FROM dense WHERE key=?",
                                   (key,)).fetchone()
        if row is None or not Path(row[1]).exists():
            return None
        return row[0], Path(row[1]), row[2]

    def dense_save(self, key: str, run_id: str, path: Path, accuracy: float) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO dense VALUES (?,?,?,?)",
                      (key, run_id, str(path), accuracy))
