"""The store's database file: its schema, the run statuses, run ids and folders, and the errors
that say what a failure means for the user."""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import time
from pathlib import Path

ENV_VAR = "PRUNEVIZ_STORE"
DB_NAME = "pruneviz.sqlite"
STATUSES = ("queued", "running", "completed", "interrupted", "failed", "diverged")
ACTIVE = ("queued", "running")
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
RECORD_TABLES = ("scalars", "layers", "filters", "rows")


# Run ids name folders under the store: letters, digits, '-' and '_' only, so no stored or typed id
# can reach outside its own folder ('../x', '/abs', '.').
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
RUN_FILE = "run.json"     # the run's row, kept in its folder so `doctor` can rebuild the index
# <store>/open.lock: held by every opening of the store, and by `doctor --repair` throughout.
OPEN_LOCK = "open"
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
