"""Streamlit helpers shared by the pages (the only place in the library that imports streamlit).

state: the cached store and run queue, the shared run selection; forms: widgets
generated from SessionConfig and method Params; live, compare, runs: the pages' views.
"""

from .state import (
    POLL_SECONDS,
    get_queue,
    get_store,
    list_runs,
    select_runs,
    selected_runs,
)

__all__ = ["POLL_SECONDS", "get_queue", "get_store", "list_runs", "select_runs",
           "selected_runs"]
