"""pruneviz: run neural-network pruning sessions live and see what each method does.

The library runs headless (no streamlit import outside pruneviz/ui/):
config -> session, loop (the training loop, method hooks) -> store (SQLite) -> plots.
"""

__version__ = "0.1.0"
