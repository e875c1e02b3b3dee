"""Method internals views: what each method recorded, as figures, at any recorded step.

Each method family's package has a `view.py` (found from the method's class, so a new family is
one folder); each exposes a TITLE and the same three functions, so the dashboard draws live and
finished runs alike and a step slider scrubs through history:

    load(store, run_id) -> dict[str, DataFrame]   everything the view needs, bounded in size
                                                  (a live redraw reads it twice a second)
    steps(frames) -> list[int]                    the recorded steps the slider offers, ascending
    panels(frames, run, step) -> list[Panel]      figures of the run as it was at `step`
    default_step(frames) -> int | None            optional: a finished run's most telling
                                                  step, offered as "Show step N" (the view
                                                  opens at the last step, as the charts end)

`run` is `Store.run(run_id)` (its `config` is the SessionConfig, `config.params` the method's
parameters as given; unset ones take the method's Params defaults). No streamlit here.

Below the contract: helpers the views share (method tables read incrementally and per-filter
records cached between redraws, records up to the slider's step, the x range of a whole run,
the figure shown while a table has no rows yet, and a run's method parameters). The step
markers (`marker`, `vline`, `markers`, MARKER) are the figure kit's (plots.py), importable from
here too.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .config import ConfigError
from .methods import family_module
from .methods.base import Method, get_method, make_params
from .plots import MARKER, empty_figure, marker, markers, vline  # noqa: F401


@dataclass
class Panel:
    """One figure of an internals view and one plain sentence on how to read it."""

    key: str                # unique within the view; the page's widget key
    figure: go.Figure
    caption: str = ""
    wide: bool = False      # full width instead of half


def view(method: str) -> ModuleType | None:
    """The internals view of `method`: the `view` module of the family package that defines the
    method's class (None for methods without one, e.g. one-shot l1, or unknown to this build)."""
    try:
        cls = get_method(method)
    except ConfigError:
        return None
    return family_module(cls, "view")

CACHED = 64                 # (run, table) entries kept: a few MB at most
_cache: OrderedDict[tuple[str, str, str], tuple] = OrderedDict()
_lock = threading.Lock()


def table(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """`df` with every column in `columns` (missing ones all null: a table a live run has not
    written yet, or a method that records fewer fields) and a numeric, ascending `step`."""
    columns = list(columns)
    df = df.reindex(columns=list(dict.fromkeys(["step", *columns, *df.columns])))
    df["step"] = pd.to_numeric(df["step"], errors="coerce")
    return df.dropna(subset=["step"]).astype({"step": "int64"}).sort_values(
        "step", kind="stable").reset_index(drop=True)


def numbers(values) -> np.ndarray:
    """A column (or any sequence) as floats: None, text and missing values become NaN, bools
    0/1 (JSON tables give None for missing numbers)."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def upto(df: pd.DataFrame, step: int) -> pd.DataFrame:
    """Rows recorded at or before `step`: a slice when the frame is sorted by step (as the
    store and `method_rows` return them), not a copy of every column."""
    steps = df.step.to_numpy()
    if df.step.is_monotonic_increasing:
        return df.iloc[:int(np.searchsorted(steps, step, side="right"))]
    return df[steps <= step]


def last_step(df: pd.DataFrame, step: int) -> int | None:
    """The last recorded step at or before `step` (None if there is none)."""
    s = df.step[df.step <= step]
    return int(s.max()) if len(s) else None


def at(df: pd.DataFrame, step: int) -> tuple[int | None, pd.DataFrame]:
    """(the last recorded step at or before `step`, the rows recorded at it)."""
    s = last_step(df, step)
    return s, (df[df.step == s] if s is not None else df.iloc[:0])


def distinct_steps(*frames: pd.DataFrame) -> list[int]:
    """The distinct steps of the given tables, ascending."""
    steps: set[int] = set()
    for df in frames:
        steps.update(int(s) for s in df.step.dropna())
    return sorted(steps)


def x_range(run: dict | None, step: int, *frames: pd.DataFrame) -> list[float]:
    """The whole run's steps (so scrubbing does not rescale the x axis): up to the run's last
    step when it is known, else the last recorded one."""
    last = max([step, (run or {}).get("total_steps", 0) - 1,
                *(int(df.step.max()) for df in frames if len(df))])
    return [-0.01 * max(last, 1), last * 1.01 + (1 if last == 0 else 0)]


def waiting(message: str = "waiting for the first epoch", height: int = 320) -> go.Figure:
    return empty_figure(message, height)


def finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _recall(key: tuple):
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
        return hit


def _remember(key: tuple, value: tuple) -> None:
    with _lock:
        _cache[key] = value
        _cache.move_to_end(key)
        while len(_cache) > CACHED:
            _cache.popitem(last=False)


def _run_key(store, run_id: str, name: str) -> tuple[str, str, str]:
    return (str(getattr(store, "db_path", id(store))), run_id, name)


def method_rows(store, run_id: str, name: str, columns: Iterable[str]) -> pd.DataFrame:
    """A method table as `table` returns it, read incrementally: the rows of earlier steps seen
    by an earlier call are kept and only the last step seen and later ones are read again (a
    live view redraws twice a second, and decoding thousands of JSON rows costs more than the
    rest of the view).

    Records are append-only, but one step's rows may come from two hooks committed apart (SLR's
    first epoch row and its start row when an epoch is one step): the last step seen is read
    again, so rows of it that arrived later are never lost."""
    key = _run_key(store, run_id, "rows:" + name)
    hit = _recall(key)
    last = hit[1] if hit else None
    raw = store.rows(run_id, name, after=None if last is None else last - 1)
    kept = hit[0] if hit is not None else None
    if kept is not None and not kept.empty:
        kept = kept[kept.step < last]
    new = table(raw, columns)
    frame = new if kept is None or kept.empty else pd.concat([kept, new], ignore_index=True)
    _remember(key, (frame, int(frame.step.max()) if len(frame) else None))
    return frame


def index_key(*frames: pd.DataFrame) -> tuple:
    """What changes when a run records another epoch end or pruning step: each index table's
    row count and last step."""
    return tuple((len(df), int(df.step.max()) if len(df) else -1) for df in frames)


def cached(store, run_id: str, name: str, key: tuple,
           read: Callable[[], dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """`read()`'s frames, reused while `key` (from tables read before) is unchanged: for
    records written together with those tables, in the same transaction."""
    k = _run_key(store, run_id, name)
    hit = _recall(k)
    if hit is not None and hit[0] == key:
        return dict(hit[1])
    frames = read()
    _remember(k, (key, frames))
    return dict(frames)


def grid(df: pd.DataFrame, rows: list[str], columns: list[str]
         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """(distinct steps, one layer x step matrix per column) of a long per-layer table; faster
    than DataFrame.pivot_table, which a live redraw would pay for every heatmap."""
    steps = np.unique(df.step.to_numpy())
    r = pd.Index(rows).get_indexer(df.layer)
    c = np.searchsorted(steps, df.step.to_numpy())
    out = []
    for col in columns:
        z = np.full((len(rows), len(steps)), np.nan)
        z[r, c] = numbers(df[col])
        out.append(z)
    return steps, out


def filter_pair(store, run_id: str, keys: tuple[str, str], key: tuple) -> pd.DataFrame:
    """Two per-filter keys side by side: step, epoch, layer, row (the layer's position in the
    model, first recorded first), filter and one column per key.

    Reading a ResNet-20's per-epoch filter records costs ~100 ms, most of a redraw's budget, and
    a live page redraws twice a second; but methods write them only at epoch ends, in the same
    transaction as their per-epoch table row. So `key` (`index_key` of that table) unchanged
    means the records are unchanged, and the frame read last time is reused (shared between
    redraws and threads: read it, never modify it in place)."""
    return cached(store, run_id, "filters:" + ",".join(keys), key,
                  lambda: {"filters": _read_pair(store, run_id, keys)})["filters"]


def _read_pair(store, run_id: str, keys: tuple[str, str]) -> pd.DataFrame:
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
    return out


def layer_order(filters: pd.DataFrame) -> list[str]:
    """Layer names in the model's order (the `row` codes of filter_pair)."""
    first = filters.drop_duplicates("row").sort_values("row")
    return first.layer.tolist()


def method_params(run: dict[str, Any]) -> tuple[type[Method] | None, Any]:
    """The run's method class and its Params (defaults filled in); (None, None) when the config
    names a method this build does not know or parameters it no longer accepts."""
    config = run["config"]
    try:
        cls = get_method(config.method)
        return cls, make_params(cls, dict(config.params))
    except Exception:          # an old run's stale parameters must not break the view
        return None, None


