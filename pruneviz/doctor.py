"""`python -m pruneviz doctor`: check a run store, and rebuild a damaged or lost database from what
is still readable in it and from the run folders (each finished run keeps its row in run.json)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

from .store import Store, StoreError
from .store.db import DB_NAME, RUN_FILE, RUN_ID, create_schema, run_folders

TABLES = ("runs", "scalars", "layers", "filters", "rows", "dense")
CHUNK = 2000     # rows read per query while salvaging: a damaged page costs one chunk, not all


def _db_problem(db: Path) -> str | None:
    """Why the database at `db` cannot be trusted, or None."""
    if not db.exists() or db.stat().st_size == 0:
        return f"{DB_NAME} is missing or empty"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            found = [r[0] for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return f"{DB_NAME} cannot be read ({e})"
    return None if found == ["ok"] else f"{DB_NAME} fails SQLite's integrity check: " + \
        "; ".join(found)


def check_store(root: str | Path) -> list[str]:
    """Problems found in the store at `root`, in plain sentences (empty when healthy)."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"no run store at {root}; check --store or PRUNEVIZ_STORE.")
    db = root / DB_NAME
    problem = _db_problem(db)
    folders = run_folders(root)
    if problem:
        return [f"{problem} ({len(folders)} run folders beside it)"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in conn.execute("SELECT run_id FROM runs").fetchall()]
    finally:
        conn.close()
    out = [f"the runs table holds {r!r}, which is not a run id (it is never used as a path)"
           for r in ids if not RUN_ID.fullmatch(str(r))]
    orphans = sorted({f.name for f in folders} - set(ids))
    recoverable = [o for o in orphans if (root / o / RUN_FILE).exists()]
    if recoverable:
        out.append(f"{len(recoverable)} run folder(s) have no row in the database: "
                   f"{', '.join(recoverable[:5])}")
    return out


def _salvage(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple], int]:
    """Columns and the rows of `table` that can still be read; the count of chunks lost."""
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
        top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return [], [], 1
    rows: list[tuple] = []
    lost = 0
    for lo in range(0, top + 1, CHUNK):
        try:
            rows += conn.execute(f"SELECT * FROM {table} WHERE rowid >= ? AND rowid < ?",
                                 (lo, lo + CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            lost += 1
    return cols, rows, lost


def repair_store(root: str | Path) -> list[str]:
    """Move the database files into root/backup.TIME/, rebuild pruneviz.sqlite from what is
    readable in them and from the run folders' run.json; returns what was done, line by line."""
    from .config import SessionConfig
    from .session import dense_key

    root = Path(root)
    backup = root / f"backup.{time.strftime('%Y%m%d-%H%M%S')}"
    backup.mkdir()
    moved = []
    for suffix in ("", "-wal", "-shm"):
        src = root / (DB_NAME + suffix)
        if src.exists():
            shutil.move(src, backup / src.name)
            moved.append(src.name)
    report = [f"backed up {', '.join(moved) or 'nothing (no database)'} into {backup}"]
    old = backup / DB_NAME
    new = sqlite3.connect(root / DB_NAME, isolation_level=None)
    create_schema(new)
    salvaged: dict[str, list[tuple]] = {}
    lost: dict[str, int] = {}
    if old.exists() and old.stat().st_size > 0:
        try:
            conn = sqlite3.connect(old)
            for table in TABLES:
                cols, rows, lost[table] = _salvage(conn, table)
                if cols:
                    salvaged[table] = rows
                    new.execute("BEGIN")
                    if table == "runs":
                        # a tampered id is dropped, never written back
                        i = cols.index("run_id")
                        bad = [r for r in rows if not RUN_ID.fullmatch(str(r[i]))]
                        rows = [r for r in rows if RUN_ID.fullmatch(str(r[i]))]
                        salvaged[table] = rows
                        report += [f"dropped a row with the invalid run id {r[i]!r}" for r in bad]
                    marks = ",".join("?" * len(cols))
                    new.executemany(f"INSERT OR IGNORE INTO {table} ({','.join(cols)}) "
                                    f"VALUES ({marks})", rows)
                    new.execute("COMMIT")
            conn.close()
        except sqlite3.DatabaseError as e:
            report.append(f"the old database could not be read at all ({e})")
    have = {r[0] for r in new.execute("SELECT run_id FROM runs")}
    from_db = len(have)
    from_folders = 0
    unknown = []
    for folder in run_folders(root):
        if folder.name in have:
            continue
        try:
            data = json.loads((folder / RUN_FILE).read_text())
        except (OSError, ValueError):
            unknown.append(folder.name)
            continue
        data["run_id"] = folder.name        # the folder's name, never a path from the file
        cols = [c for c in data if c != "id"]
        new.execute(f"INSERT INTO runs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                    [data[c] for c in cols])
        from_folders += 1
        if data.get("kind") == "dense" and data.get("status") == "completed" and \
                (folder / "weights.pt").exists():
            summary = json.loads(data.get("summary") or "{}")
            key = dense_key(SessionConfig.from_dict(json.loads(data["config"])))
            new.execute("INSERT OR IGNORE INTO dense VALUES (?,?,?,?)",
                        (key, folder.name, str(folder / "weights.pt"),
                         summary.get("final_accuracy")))
    new.close()
    report.append(f"rebuilt {root / DB_NAME}: {from_db} run(s) from the old database with the "
                  f"records that could be read, {from_folders} from their folders' {RUN_FILE} "
                  f"(their curves and tables are lost; config, summary, weights and metrics "
                  f"panel are kept)")
    damaged = {t: n for t, n in lost.items() if n}
    if damaged:
        report.append("unreadable parts of the old database skipped: " + ", ".join(
            f"{t} ({n} chunk(s) of {CHUNK} rows)" for t, n in damaged.items()))
    if unknown:
        report.append(f"{len(unknown)} folder(s) have no {RUN_FILE} and were left as they are: "
                      f"{', '.join(unknown[:5])}")
    Store(root)      # opens with the integrity check: raises if the rebuild is not sound
    return report
