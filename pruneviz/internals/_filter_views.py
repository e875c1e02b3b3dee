"""Helpers shared by the filter-pruning internals views (pgmpf, pgp): reading method tables that
may not exist yet, cutting records at the slider's step, resolving a run's method parameters,
and the small figure pieces both views draw (vertical markers, the "waiting" placeholder)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..methods.base import Method, get_method, make_params
from ..plots import _empty
from ..store import Store

MARK = "#888"        # vertical markers (slider position, schedule thresholds)
CACHED_RUNS = 8      # per-filter frames kept between redraws (a few runs' worth, ~1 MB each)
_cache: OrderedDict[tuple, tuple[Any, pd.DataFrame]] = OrderedDict()
_lock = threading.Lock()


def table(store: Store, run_id: str, name: str, columns: list[str]) -> pd.DataFrame:
    """A method table with at least `columns` (all-NaN when the run has not recorded them yet),
    sorted by step."""
    df = store.rows(run_id, name)
    for col in columns:
        if col not in df.columns:
            df[col] = np.nan
    return df.sort_values("step", kind="stable").reset_index(drop=True)


def filter_pair(store: Store, run_id: str, keys: tuple[str, str], fingerprint: Any
                ) -> pd.DataFrame:
    """Two per-filter keys side by side: step, epoch, layer, row (the layer's position in the
    model, first recorded first), filter and one column per key.

    Reading a ResNet-20's per-epoch filter records costs ~100 ms, most of a redraw's budget, and
    a live page redraws twice a second; but methods write them only at epoch ends, in the same
    transaction as their per-epoch table row. So `fingerprint` (the caller's summary of that
    table, e.g. its row count and last step) unchanged means the records are unchanged, and the
    frame read last time is reused (shared between redraws and threads: read it, never
    modify it in place)."""
    key = (str(store.db_path), run_id, keys)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == fingerprint:
            _cache.move_to_end(key)
            return hit[1]
    # One key per read keeps each in recording order (step, then layer, then filter): the two
    # line up row for row, and the model's layer order is the order of first appearance.
    a, b = (store.filters(run_id, [k]) for k in keys)
    out = a[["step", "epoch", "layer", "filter"]].reset_index(drop=True)
    out[keys[0]] = a.value.to_numpy()
    if (len(a) == len(b) and (a.step.to_numpy() == b.step.to_numpy()).all()
            and (a.layer.to_numpy() == b.layer.to_numpy()).all()
            and (a["filter"].to_numpy() == b["filter"].to_numpy()).all()):
        out[keys[1]] = b.value.to_numpy()
    else:                      # rows of one key without the other's (not written that way)
        out = out.merge(b.rename(columns={"value": keys[1]})
                        [["step", "layer", "filter", keys[1]]],
                        on=["step", "layer", "filter"], how="inner")
    codes, _ = pd.factorize(out.layer, sort=False)
    out["row"] = codes
    with _lock:
        _cache[key] = (fingerprint, out)
        _cache.move_to_end(key)
        while len(_cache) > CACHED_RUNS:
            _cache.popitem(last=False)
    return out


def fingerprint(df: pd.DataFrame) -> tuple[int, int]:
    """Row count and last step of a method's per-epoch table (see filter_pair)."""
    return len(df), int(df.step.max()) if len(df) else -1


def layer_order(filters: pd.DataFrame) -> list[str]:
    """Layer names in the model's order (the `row` codes of filter_pair)."""
    first = filters.drop_duplicates("row").sort_values("row")
    return first.layer.tolist()


def upto(df: pd.DataFrame, step: int) -> pd.DataFrame:
    """Records made at or before `step` (the state the slider shows)."""
    return df[df.step <= step]


def last_at(df: pd.DataFrame, step: int) -> int | None:
    """The last recorded step at or before `step`, None when there is none yet."""
    s = df.step[df.step <= step]
    return int(s.max()) if len(s) else None


def method_params(run: dict[str, Any]) -> tuple[type[Method] | None, Any]:
    """The run's method class and its Params (defaults filled in); (None, None) when the config
    names a method this build does not know or parameters it no longer accepts."""
    config = run["config"]
    try:
        cls = get_method(config.method)
        return cls, make_params(cls, dict(config.params))
    except Exception:          # an old run's stale parameters must not break the view
        return None, None


def waiting(message: str, height: int = 300) -> go.Figure:
    return _empty(message, height)


def vline(x: float, text: str | None = None, *, dash: str = "dot", color: str = MARK,
          anchor: str = "left") -> tuple[dict, dict | None]:
    """A full-height vertical marker at data x (shape) and its label above the plot."""
    shape = dict(type="line", x0=x, x1=x, y0=0, y1=1, xref="x", yref="paper",
                 line=dict(color=color, width=1.5, dash=dash))
    note = None if not text else dict(
        x=x, y=1.0, xref="x", yref="paper", yanchor="bottom", xanchor=anchor, text=text,
        showarrow=False, font=dict(size=11, color=color))
    return shape, note


def markers(marks: list[tuple[dict, dict | None]]) -> dict:
    """Layout entries (shapes, annotations) for a list of vline()s."""
    return dict(shapes=[s for s, _ in marks], annotations=[a for _, a in marks if a])


def array(values: Any) -> np.ndarray:
    """Float array with None -> NaN (JSON tables give None for missing numbers)."""
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
