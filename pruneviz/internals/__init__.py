"""Method internals views: what each method recorded, as figures, at any recorded step.

One module per method family (pgmpf, pgp, slr, fggp); each exposes the same three functions, so
the dashboard draws live and finished runs alike and a step slider scrubs through history:

    load(store, run_id) -> dict[str, DataFrame]   everything the view needs, bounded in size
                                                  (a live redraw reads it twice a second)
    steps(frames) -> list[int]                    the recorded steps the slider offers, ascending
    panels(frames, run, step) -> list[Panel]      figures of the run as it was at `step`

`run` is `Store.run(run_id)` (its `config` is the SessionConfig, `config.params` the method's
parameters as given; unset ones take the method's Params defaults). No streamlit here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import plotly.graph_objects as go

FAMILIES = {
    "pgmpf": "pgmpf", "sfp": "pgmpf", "asfp": "pgmpf",
    "pgp": "pgp", "rpgp": "pgp", "psfp": "pgp",
    "slr": "slr", "admm": "slr",
    "fggp": "fggp", "granet": "fggp", "gmp": "fggp",
}
TITLES = {"pgmpf": "Gradient-mask evolution", "pgp": "Filter-change scores",
          "slr": "Lagrangian residuals", "fggp": "Gradient-first selection"}


@dataclass
class Panel:
    """One figure of an internals view and one plain sentence on how to read it."""

    key: str                # unique within the view; the page's widget key
    figure: go.Figure
    caption: str = ""
    wide: bool = False      # full width instead of half


def view(method: str) -> ModuleType | None:
    """The internals module for `method` (None for methods without one, e.g. one-shot l1)."""
    family = FAMILIES.get(method)
    return importlib.import_module(f"{__name__}.{family}") if family else None
