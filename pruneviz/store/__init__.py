"""The run store: one SQLite database (WAL) for runs and their records, plus a folder per run for
large artifacts (weights, masks). `Store` is the API; the modules hold its parts."""

from .runs import *  # noqa: F403 - moved here; split next
