"""The run store: one SQLite database (WAL) for runs and their records, plus a folder per run for
large artifacts (weights, masks). `Store` and these names are its API; the modules hold its parts
(db: the file and its errors, runs: the Store, records, queue; sink: RunSink, what a session
needs of a store)."""

from .db import ACTIVE, FOREGROUND, STATUSES, StoreError, default_root, sqlite_error
from .queue import pid_alive
from .runs import Store, parse_tags
from .sink import RunSink

__all__ = ["ACTIVE", "FOREGROUND", "STATUSES", "RunSink", "Store", "StoreError", "default_root",
           "parse_tags", "pid_alive", "sqlite_error"]
