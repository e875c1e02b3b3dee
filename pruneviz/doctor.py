"""`python -m pruneviz doctor`: check a run store, and rebuild a damaged or lost database from what
is still readable in it and from the run folders (each finished run keeps its row in run.json)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .store import Store, StoreError, pid_alive
from .store.db import DB_NAME, OPEN_LOCK, RUN_FILE, RUN_ID, STATUSES, create_schema, run_folders
from .store.queue import STALE_SECONDS, WORKER_STALE_SECONDS

TABLES = ("runs", "scalars", "layers", "filters", "rows", "dense")
CHUNK = 2000     # rows read per query while salvaging: a damaged page costs one chunk, not all


def _read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection that also works in a read-only folder: a WAL database there cannot
    get its -shm file, so one with no -wal beside it (nothing uncommitted) is read as is."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if Path(f"{db}-wal").exists() or os.access(db.parent, os.W_OK):
            raise
        return sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)


def _db_problem(db: Path) -> str | None:
    """Why the database at `db` cannot be trusted, or None."""
    if not db.exists() or db.stat().st_size == 0:
        return f"{DB_NAME} is missing or empty"
    try:
        conn = _read_only(db)
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
    conn = _read_only(db)
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


def _salvage(conn: sqlite3.Connection, table: str, known: dict[str, Any]
             ) -> tuple[list[str], list[tuple], int]:
    """This version's columns of `table` that the old database has, the rows that can still be
    read, and the count of chunks lost. Column names come from the schema, never from the old
    file (a tampered one could name anything)."""
    try:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}
        top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return [], [], 1
    cols = [c for c in known if c in have]
    if not cols:
        return [], [], 0
    select = ",".join(f'"{c}"' for c in cols)
    rows: list[tuple] = []
    lost = 0
    for lo in range(0, top + 1, CHUNK):
        try:
            rows += conn.execute(f"SELECT {select} FROM {table} WHERE rowid >= ? AND rowid < ?",
                                 (lo, lo + CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            lost += 1
    return cols, rows, lost


def _salvage_into(new: sqlite3.Connection, old: Path, columns: dict[str, dict[str, Any]],
                  report: list[str]) -> dict[str, int]:
    """Copy what is readable of the old database into `new`; the chunks lost per table."""
    lost: dict[str, int] = {}
    if not old.exists() or old.stat().st_size == 0:
        return lost
    try:
        conn = _open_old(old)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        report.append(f"the old database could not be read at all ({e})")
        return lost
    # Read errors are the old file's (a chunk lost, counted); a write error is the new index's
    # (a full disk, say) and stops the repair.
    try:
        for table in TABLES:
            cols, rows, lost[table] = _salvage(conn, table, columns[table])
            if not cols:
                continue
            if table == "runs":
                if "run_id" not in cols:
                    continue
                i = cols.index("run_id")
                # a tampered id is dropped, never written back
                report += [f"dropped a row with the invalid run id {r[i]!r}" for r in rows
                           if not RUN_ID.fullmatch(str(r[i]))]
                rows = [r for r in rows if RUN_ID.fullmatch(str(r[i]))]
            quoted = ",".join(f'"{c}"' for c in cols)
            new.execute("BEGIN")
            new.executemany(f"INSERT OR IGNORE INTO {table} ({quoted}) "
                            f"VALUES ({','.join('?' * len(cols))})", rows)
            new.execute("COMMIT")
    finally:
        conn.close()
    return lost


# Store.__init__ holds <store>/open.lock while it opens the database: a repair holds it from its
# checks until the rebuilt index is in place, so no process opens the store meanwhile (a new
# worker, run or dashboard waits, then opens the new index) and two repairs never overlap.
LOCK_WAIT_S = 10.0
REBUILD = f".{DB_NAME}.rebuild"     # the new index, built beside the old one, renamed over it


def _refusal(root: Path, why: str) -> StoreError:
    return StoreError(f"`doctor --repair` changed nothing in {root}: {why}")


def _check_writable(root: Path) -> None:
    """StoreError (one line, the fix) unless the store folder takes new files."""
    probe = root / f".doctor-write-test-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise _refusal(root, f"the store folder cannot be written ({e.strerror or e}); a repair "
                             f"writes a backup and a new index there. Make it writable, or copy "
                             f"the store to a writable folder and repair the copy.") from None


@contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """Hold the store's open lock (see LOCK_WAIT_S); StoreError if another repair holds it."""
    path = root / f"{OPEN_LOCK}.lock"
    with open(path, "a+") as f:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _refusal(root, f"another process holds {path} (a repair still at "
                                         f"work); wait for it to finish, then run `doctor` "
                                         f"again.") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _where(pid: Any, host: Any) -> str:
    return f"pid {pid}" + ("" if host == socket.gethostname() else f" on {host}")


def _users_in_db(db: Path) -> tuple[list[str], list[str], set[int]]:
    """Live workers and the runs that are running or claimed, from the database (read only):
    (descriptions, run ids, their pids). A worker or run process that is gone counts for nothing
    (the next open reaps it), one on another host counts while its heartbeat is fresh."""
    host, now = socket.gethostname(), time.time()

    def live(pid: Any, where: Any, beat: Any, stale: float) -> bool:
        return pid_alive(pid) if where == host else (beat or 0) >= now - stale

    def rows(sql: str) -> list[tuple]:
        # Each table on its own: a damaged or old database may lack one and still name the other.
        # Unreadable: the processes holding it open are still found (_holders).
        try:
            conn = _read_only(db)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return []

    workers = rows("SELECT worker_id, pid, host, heartbeat, run_id FROM workers")
    runs = rows("SELECT run_id, status, worker, pid, host, heartbeat FROM runs WHERE "
                "status='running' OR (status='queued' AND worker IS NOT NULL)")
    alive = {w: (pid, where, run) for w, pid, where, beat, run in workers
             if live(pid, where, beat, WORKER_STALE_SECONDS)}
    out, run_ids, pids = [], [], set()
    for run_id, status, worker, pid, where, beat in runs:
        if worker in alive or live(pid, where, beat, STALE_SECONDS):
            state = "running" if status == "running" else "claimed by a worker"
            by = f"worker {worker}" if worker in alive else _where(pid, where)
            out.append(f"run {run_id} is {state} ({by})")
            run_ids.append(str(run_id))
            pids.add(pid)
    for w, (pid, where, run) in alive.items():
        out.append(f"worker {w} is alive ({_where(pid, where)}, "
                   f"{'training ' + str(run) if run else 'idle'})")
        pids.add(pid)
    return out, run_ids, pids


def _holders(db: Path) -> dict[int, str]:
    """Other processes on this host with the database open (a dashboard, a worker, a run), by
    pid: their connections would go on with the old file. Linux /proc; none found elsewhere."""
    names = {str(db.resolve()) + suffix for suffix in ("", "-wal", "-shm")}
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        if proc.name == str(os.getpid()):
            continue
        try:
            held = any(os.readlink(fd) in names for fd in (proc / "fd").iterdir())
            if held:
                cmd = " ".join((proc / "cmdline").read_bytes().decode(errors="replace")
                               .replace("\0", " ").split())      # one line, whatever it ran
                found[int(proc.name)] = f"pid {proc.name} has it open ({cmd[:80]})"
        except OSError:         # gone meanwhile, or not ours to look at
            continue
    return found


def _check_unused(root: Path) -> None:
    """StoreError naming what uses the store (and how to stop it) while anything does."""
    db = root / DB_NAME
    users, run_ids, pids = _users_in_db(db)
    users += [line for pid, line in _holders(db).items() if pid not in pids]
    if not users:
        return
    cancel = (f"`python -m pruneviz cancel {run_ids[0]} --store {root}`"
              + (" (each run)" if len(run_ids) > 1 else "") + ", then stop the workers"
              if run_ids else "stop the workers")
    raise _refusal(root, f"the store is in use: {'; '.join(users)}. A repair now would lose what "
                         f"they write. First {cancel} (Ctrl-C, or `kill PID`; a dashboard's "
                         f"workers leave after 10 idle minutes) and close the dashboards and "
                         f"other processes using it, then run `doctor --repair` again.")


def _columns() -> dict[str, dict[str, tuple[str, bool, bool]]]:
    """Each table's columns in this version's schema: name -> (type, not null, has default)."""
    conn = sqlite3.connect(":memory:")
    try:
        create_schema(conn)
        return {t: {r[1]: (r[2].upper(), bool(r[3]), r[4] is not None)
                    for r in conn.execute(f"PRAGMA table_info({t})")} for t in TABLES}
    finally:
        conn.close()


TYPES = {"TEXT": (str,), "INTEGER": (int,), "REAL": (int, float)}


def _run_row(folder: Path, columns: dict[str, tuple[str, bool, bool]]
             ) -> tuple[dict[str, Any] | None, str, list[str]]:
    """The runs row a folder's run.json holds, checked as the readers will read it: (row, '',
    ignored keys), or (None, why it cannot be used, [])."""
    from .config import ConfigError, SessionConfig

    try:
        data = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError) as e:
        return None, f"{RUN_FILE} cannot be read ({e})", []
    if not isinstance(data, dict):
        return None, f"{RUN_FILE} is not a JSON object (a {type(data).__name__})", []
    # Only this version's columns are kept; the id is the new index's and the run id is the
    # folder's name, never a path from the file.
    ignored = sorted(str(k) for k in data if k not in columns or k == "id")
    row = {k: v for k, v in data.items() if k in columns and k != "id"}
    row["run_id"] = folder.name
    for name, (kind, not_null, default) in columns.items():
        if name == "id":
            continue
        value = row.get(name)
        if value is None:
            if not_null and not default:
                return None, f"{RUN_FILE} has no {name!r}", []
            row.pop(name, None)        # the column's default
            continue
        if isinstance(value, bool) or not isinstance(value, TYPES.get(kind, (str, int, float))):
            return None, f"{RUN_FILE}'s {name!r} is {type(value).__name__}, not {kind}", []
    if row["kind"] not in ("session", "dense"):
        return None, f"{RUN_FILE}'s kind {row['kind'][:40]!r} is not session or dense", []
    if row["status"] not in STATUSES:
        return None, f"{RUN_FILE}'s status {row['status'][:40]!r} is not a run status", []
    # The fields readers parse (Store.run, runs(), the dense key): unreadable here, unreadable
    # there, so the run is skipped now rather than breaking `list` and `show` later.
    try:
        SessionConfig.from_dict(json.loads(row["config"]))
    except (ConfigError, ValueError, TypeError, AttributeError) as e:
        return None, f"{RUN_FILE}'s config cannot be read by this version ({e})", []
    for name, want, empty in (("summary", dict, "{}"), ("tags", list, "[]")):
        try:
            ok = isinstance(json.loads(row.get(name) or empty), want)
        except ValueError:
            ok = False
        if not ok:
            return None, f"{RUN_FILE}'s {name} is not a JSON {want.__name__}", []
    return row, "", ignored


def _backup(root: Path) -> Path:
    """Copy the database files into a new root/backup.TIME[-N]/ (the originals stay in place
    until the new index replaces them)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100):
        backup = root / (f"backup.{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            backup.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise StoreError(f"too many backup.{stamp}* folders in {root}.")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = root / (DB_NAME + suffix)
            if src.exists():
                shutil.copy2(src, backup / src.name)
    except BaseException:
        shutil.rmtree(backup, ignore_errors=True)      # half a backup is no backup
        raise
    return backup


def _open_old(db: Path) -> sqlite3.Connection:
    """The backed-up database, read only (the backup stays as it was) when SQLite allows."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(db)


def repair_store(root: str | Path) -> list[str]:
    """Rebuild pruneviz.sqlite from what is readable in it and from the run folders' run.json,
    after backing the database files up into root/backup.TIME/; returns what was done, line by
    line. Refuses (StoreError, nothing changed) a store that is in use or read only, or whose
    rebuild would leave an empty index beside run folders; the old index stays in place until
    the new one is complete."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"no run store at {root}; check --store or PRUNEVIZ_STORE.")
    _check_writable(root)
    with _store_lock(root):
        _check_unused(root)
        report = _rebuild(root)
    Store(root).close()      # opens with the integrity check: raises if the rebuild is not sound
    return report


def _rebuild(root: Path) -> list[str]:
    columns = _columns()
    folders = run_folders(root)
    checked = {f.name: _run_row(f, columns["runs"]) for f in folders
               if (f / RUN_FILE).exists()}
    unknown = [f.name for f in folders if f.name not in checked]
    tmp = root / REBUILD
    for stale in (tmp, tmp.with_name(tmp.name + "-journal")):
        stale.unlink(missing_ok=True)        # left by a repair that was killed
    backup, report, swapping = None, [], False
    try:
        backup = _backup(root)
        saved = ", ".join(sorted(p.name for p in backup.iterdir()))
        report.append(f"backed up {saved or 'nothing (no database)'} into {backup}")
        new = sqlite3.connect(tmp, isolation_level=None)
        try:
            create_schema(new)
            lost = _salvage_into(new, backup / DB_NAME, columns, report)
            have = {r[0] for r in new.execute("SELECT run_id FROM runs")}
            from_db = len(have)
            new.execute("BEGIN")
            from_folders, skipped, ignored = _insert_folders(new, root, checked, have)
            new.execute("COMMIT")
            total = new.execute("SELECT count(*) FROM runs").fetchone()[0]
            sound = new.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            new.close()
        if not sound:
            raise _refusal(root, "the rebuilt index failed SQLite's integrity check.")
        if total == 0 and folders:
            # An empty index beside run folders would read as "no runs yet" and orphan them.
            why = "; ".join(skipped[:5]) or f"none of them has a {RUN_FILE}"
            raise _refusal(root, f"nothing to rebuild the index from: {len(folders)} run "
                                 f"folder(s) but no readable run ({why}). Fix those {RUN_FILE} "
                                 f"files or move the folders out of the store, then run "
                                 f"`doctor --repair` again.")
        # The new index in place: the old WAL and its index must go first (SQLite would apply
        # the old WAL to the new file); the backup holds copies of all three.
        swapping = True
        for suffix in ("-wal", "-shm"):
            (root / (DB_NAME + suffix)).unlink(missing_ok=True)
        os.replace(tmp, root / DB_NAME)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if swapping:         # the old files may be gone from the store: the backup is their copy
            raise StoreError(f"the repair of {root} stopped while putting the new index in "
                             f"place ({e}); the old database files are in {backup}: copy them "
                             f"back into the store, then run `doctor --repair` again.") from None
        # Nothing was replaced: the copy in the backup is not needed (a retry would otherwise
        # add a backup each time).
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        if isinstance(e, (OSError, sqlite3.Error)):
            raise _refusal(root, f"it could not be written ({getattr(e, 'strerror', None) or e});"
                                 f" the old index is where it was. Free some space and run "
                                 f"`doctor --repair` again.") from None
        raise
    return report + _rebuilt(root, from_db, from_folders, lost, skipped, ignored, unknown)


def _insert_folders(new: sqlite3.Connection, root: Path, checked: dict, have: set[str]
                    ) -> tuple[int, list[str], list[str]]:
    """Insert the rows of the run folders' RUN_FILEs the old database did not have (and a
    completed dense run's baseline entry); (inserted, skipped with why, unknown keys)."""
    from .config import SessionConfig
    from .session import dense_key

    from_folders, skipped, ignored = 0, [], []
    for name, (row, why, extra) in checked.items():
        if name in have:
            continue
        if row is None:
            skipped.append(f"{name} ({why})")
            continue
        if extra:
            ignored.append(f"{name} ({', '.join(extra[:5])})")
        cols = list(row)        # this version's columns only (_run_row)
        quoted = ",".join(f'"{c}"' for c in cols)
        new.execute(f"INSERT INTO runs ({quoted}) VALUES ({','.join('?' * len(cols))})",
                    [row[c] for c in cols])
        from_folders += 1
        if row["kind"] == "dense" and row["status"] == "completed" and \
                (root / name / "weights.pt").exists():
            summary = json.loads(row.get("summary") or "{}")
            key = dense_key(SessionConfig.from_dict(json.loads(row["config"])))
            new.execute("INSERT OR IGNORE INTO dense VALUES (?,?,?,?)",
                        (key, name, f"{name}/weights.pt", summary.get("final_accuracy")))
    return from_folders, skipped, ignored


def _rebuilt(root: Path, from_db: int, from_folders: int, lost: dict, skipped: list[str],
             ignored: list[str], unknown: list[str]) -> list[str]:
    """The repair report's lines after the rebuild."""
    report = []
    report.append(f"rebuilt {root / DB_NAME}: {from_db} run(s) from the old database with the "
                  f"records that could be read, {from_folders} from their folders' {RUN_FILE} "
                  f"(their curves and tables are lost; config, summary, weights and metrics "
                  f"panel are kept)")
    damaged = {t: n for t, n in lost.items() if n}
    if damaged:
        report.append("unreadable parts of the old database skipped: " + ", ".join(
            f"{t} ({n} chunk(s) of {CHUNK} rows)" for t, n in damaged.items()))
    if skipped:
        report.append(f"{len(skipped)} run folder(s) skipped, their {RUN_FILE} unusable (left "
                      f"as they are): {'; '.join(skipped)}")
    if ignored:
        report.append(f"unknown keys in {RUN_FILE} ignored: {'; '.join(ignored)}")
    if unknown:
        report.append(f"{len(unknown)} folder(s) have no {RUN_FILE} and were left as they are: "
                      f"{', '.join(unknown[:5])}")
    return report
