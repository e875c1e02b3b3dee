"""Dashboard figures: tidy DataFrames from the store in, plotly Figures out (no streamlit here).

Every figure colours a method the same way (`method_color`) and, where runs differ by rate, draws
each rate with its own line dash (`rate_dashes`), so a method reads the same on every page.
Callers downsample long curves before plotting (`Store.scalars(..., max_points=...)`).

Figures are built without plotly's per-property validation (`_figure`): it costs about 5x the
rest of a live redraw, and the tests validate every figure's output against plotly's schema.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from .methods.base import RECOVERY

# Colour-blind-safe: the methods people compare most take Okabe & Ito's eight colours (told
# apart under deuteranopia, protanopia and tritanopia); the baselines that share a method's code
# path take Paul Tol's "muted" colours next to their method's. The one source for every page.
METHOD_COLORS = {
    "dense": "#7f7f7f", "random": "#BBBBBB", "l1": "#56B4E9", "global_l1": "#332288",
    "l2_filter": "#999933", "gmp": "#E69F00", "pgmpf": "#D55E00", "sfp": "#CC6677",
    "asfp": "#882255", "fggp": "#009E73", "granet": "#117733", "pgp": "#0072B2",
    "psfp": "#88CCEE", "slr": "#CC79A7", "admm": "#AA4499",
}
_FALLBACK = plotly.colors.qualitative.Dark24
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
ACHIEVED, TARGET = "#1f77b4", "#d62728"


def method_color(name: str) -> str:
    """The method's colour on every page (a stable hash picks one for methods added later)."""
    return METHOD_COLORS.get(name) or _FALLBACK[zlib.crc32(name.encode()) % len(_FALLBACK)]


def method_colors(names: Iterable[str]) -> dict[str, str]:
    return {n: method_color(n) for n in names}


def rate_dashes(rates: Iterable[float]) -> dict[float, str]:
    """Line dash per rate, lowest rate solid."""
    return {r: DASHES[i % len(DASHES)] for i, r in enumerate(sorted(set(rates)))}


def _rgba(color: str, alpha: float) -> str:
    r, g, b = plotly.colors.hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


LEGEND_COLUMNS = 3      # legend entries per row under a half-width chart
LEGEND_ROW_PX = 21


def _figure(traces: list[dict], layout: dict | None = None, *, height: int = 320,
            title: str | None = None) -> go.Figure:
    """A figure in the house look (title top left, legend at the bottom, below the axis title),
    built in one go without validation; the page's theme styles it. The figure grows by the
    legend's rows so the plot keeps its height."""
    layout = layout or {}
    entries = sum(1 for t in traces if t.get("name") and t.get("showlegend", True))
    shown = layout.get("showlegend", entries > 1)
    rows = -(-entries // LEGEND_COLUMNS) if shown else 0
    legend_px = LEGEND_ROW_PX * rows
    base = dict(template={}, height=height + legend_px,
                margin=dict(l=10, r=10, t=40, b=10 + legend_px),
                legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom",
                            yref="container"))
    if title:
        base["title"] = dict(text=title, x=0, xanchor="left", font=dict(size=15))
    return go.Figure(data=traces, layout={**base, **layout}, _validate=False)


def _empty(message: str, height: int = 320) -> go.Figure:
    return _figure([], dict(annotations=[dict(text=message, showarrow=False,
                                              font=dict(color="#888", size=14))],
                            xaxis=dict(visible=False), yaxis=dict(visible=False)), height=height)


def _line(x, y, name: str | None, color: str, *, width: float = 2, dash: str = "solid",
          mode: str = "lines", **kw) -> dict:
    return dict(type="scatter", x=np.asarray(x), y=np.asarray(y), name=name, mode=mode,
                line=dict(color=color, width=width, dash=dash), **kw)


def _axis(title: str | None = None, **kw) -> dict:
    return dict(title=dict(text=title), **kw) if title else kw


_NONE = pd.DataFrame({"step": [], "value": []})


def log_axis(values) -> dict:
    """A log axis that labels only powers of ten, with no minor tick labels, when the values
    span decades (plotly otherwise labels 2..9 of every decade); 3 significant digits else."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > 20:
        return dict(type="log", dtick=1, minor=dict(showgrid=False, ticks=""))
    return dict(type="log", tickformat=".3g", minor=dict(showgrid=False, ticks=""))


def by_key(scalars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The long scalar table split per key, each sorted by step (one pass, not one per key)."""
    return {k: g.sort_values("step") for k, g in scalars.groupby("key", sort=False)}


def smooth(values: pd.Series, points: int = 40) -> pd.Series:
    """Rolling mean over about 1/`points` of the curve (per-step losses are noisy)."""
    return values.rolling(max(1, len(values) // points), min_periods=1).mean()


UNIT_RANGE = [0, 1.02]


# -- one run, live -----------------------------------------------------------------------------
def schedule_figure(preview: pd.DataFrame, title: str = "Schedule preview") -> go.Figure:
    """A method's schedule before running (Method.preview: columns epoch, series, value), the
    recovery phase shaded."""
    band = preview[preview.series == RECOVERY]
    lines = preview[preview.series != RECOVERY]
    traces = [_line(df.epoch, df.value, str(series), TARGET if i == 0 else _FALLBACK[i],
                    width=2.5)
              for i, (series, df) in enumerate(lines.groupby("series", sort=False))]
    layout: dict[str, Any] = dict(xaxis=_axis("epoch"), yaxis=_axis(rangemode="tozero"),
                                  showlegend=len(traces) > 1)
    if len(band):
        x0, x1 = float(band.epoch.min()), float(band.epoch.max())
        layout["shapes"] = [dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1,
                                 fillcolor="rgba(44, 160, 44, 0.12)", line_width=0,
                                 layer="below")]
        layout["annotations"] = [dict(x=(x0 + x1) / 2, y=1, xref="x", yref="paper",
                                      text="recovery", showarrow=False, yanchor="top",
                                      font=dict(color="#2ca02c"))]
    return _figure(traces, layout, height=240, title=title)


def training_figure(scalars: pd.DataFrame) -> go.Figure:
    """Loss (raw and smoothed per step, held-out per epoch) and accuracy, side by side."""
    k = by_key(scalars)
    loss, test_loss = k.get("loss", _NONE), k.get("test_loss", _NONE)
    train_acc, test_acc = k.get("train_accuracy", _NONE), k.get("test_accuracy", _NONE)
    right = dict(xaxis="x2", yaxis="y2")
    ce = k.get("ce", _NONE)     # recorded only by methods that add a penalty to the loss
    traces = [
        _line(loss.step, loss.value, "train loss", _rgba(ACHIEVED, 0.25), width=1,
              showlegend=False),
        _line(loss.step, smooth(loss.value),
              "train loss: CE + penalty (smoothed)" if len(ce) else "train loss (smoothed)",
              ACHIEVED),
        _line(test_loss.step, test_loss.value, "held-out loss", "#ff7f0e", mode="lines+markers"),
        _line(train_acc.step, smooth(train_acc.value), "train accuracy", _rgba(ACHIEVED, 0.5),
              width=1.5, **right),
        _line(test_acc.step, test_acc.value, "held-out accuracy", "#2ca02c", width=2.5,
              mode="lines+markers", **right),
    ]
    if len(ce):
        traces.append(_line(ce.step, smooth(ce.value), "train CE alone (smoothed)", "#9467bd",
                            dash="dot"))
    for key, label, color in (("dense_accuracy", "dense", "#7f7f7f"),
                              ("pruned_accuracy", "just pruned", TARGET)):
        point = k.get(key, _NONE)
        if len(point):
            traces.append(dict(type="scatter", x=point.step.to_numpy(),
                               y=point.value.to_numpy(), name=label, mode="markers",
                               marker=dict(color=color, size=10, symbol="diamond"), **right))
    titles = [dict(text=t, x=x, y=1.0, xref="paper", yref="paper", xanchor="center",
                   yanchor="bottom", showarrow=False, font=dict(size=15))
              for t, x in (("Loss", 0.23), ("Accuracy", 0.77))]
    # Two panels side by side: loss on x/y, accuracy on x2/y2.
    layout = dict(xaxis=_axis("step", domain=[0, 0.46]),
                  xaxis2=_axis("step", domain=[0.54, 1], anchor="y2"),
                  yaxis2=dict(anchor="x2", range=UNIT_RANGE), annotations=titles)
    return _figure(traces, layout, height=360)


def sparsity_figure(scalars: pd.DataFrame, zeros: str = "hard",
                    pulled: tuple[float, float] | None = None) -> go.Figure:
    """Target (the method's schedule) vs achieved sparsity (exact zeros) of the prunable
    weights; `zeros` is the method's Method.zeros, `pulled` (rate, last step) the sparsity a
    deferred method's penalty pulls the weights towards until its hard prune."""
    k = by_key(scalars)
    target, achieved = k.get("target_sparsity", _NONE), k.get("sparsity", _NONE)
    name = "target (soft: masked, still trainable)" if zeros == "soft" else "target"
    traces = [_line(target.step, target.value, name, TARGET, dash="dash"),
              _line(achieved.step, achieved.value, "achieved (exact zeros)", ACHIEVED,
                    width=2.5)]
    if pulled is not None:
        traces.append(_line([0, pulled[1]], [pulled[0]] * 2, "sparse copy Z (penalty pulls W "
                            "to it)", "#9467bd", dash="dot"))
    return _figure(traces, dict(xaxis=_axis("step"), yaxis=_axis("sparsity", range=UNIT_RANGE)),
                   height=330, title="Target vs achieved sparsity")


def layer_heatmap(layers: pd.DataFrame, key: str = "sparsity") -> go.Figure:
    """Layer x step heatmap of a per-layer record (first layer on top)."""
    df = layers[layers.key == key]
    if df.empty:
        return _empty("no per-layer records yet")
    order = list(pd.unique(df.layer))
    # An epoch's last step can be snapshot twice (step and epoch end): keep the later one.
    wide = (df.drop_duplicates(["layer", "step"], keep="last")
            .pivot(index="layer", columns="step", values="value").reindex(order))
    heat = dict(type="heatmap", z=wide.to_numpy(), x=wide.columns.to_numpy(), y=order, zmin=0,
                zmax=1, colorscale="Viridis", colorbar=dict(title=dict(text=key), thickness=12),
                hovertemplate="%{y}<br>step %{x}<br>" + key + " %{z:.3f}<extra></extra>")
    return _figure([heat], dict(xaxis=_axis("step"), yaxis=dict(autorange="reversed")),
                   height=max(260, 60 + 28 * len(order)), title=f"Per-layer {key}")


def layer_bars(layers: pd.DataFrame, key: str = "sparsity", title: str | None = None
               ) -> go.Figure:
    """One bar per layer: a per-layer record at one step."""
    df = layers[layers.key == key]
    bars = dict(type="bar", x=df.layer.to_numpy(), y=df.value.to_numpy(),
                marker=dict(color=ACHIEVED))
    y = _axis(key, range=UNIT_RANGE) if key in ("sparsity", "keep_rate") else _axis(key)
    return _figure([bars], dict(yaxis=y), height=280, title=title)


def _unit(a: float, b: float) -> list[float]:
    return [min(1.0, max(0.0, round(a, 6))), min(1.0, max(0.0, round(b, 6)))]


def table_figure(rows: pd.DataFrame, title: str | None = None, max_series: int = 8,
                 per_row: int = 4) -> go.Figure:
    """A method table's numeric columns against the step they were recorded at: one small
    panel per column (their scales differ: counts next to fractions)."""
    cols = [c for c in rows.select_dtypes("number").columns if c not in ("step", "epoch")]
    if rows.empty or not cols:
        return _empty("no numeric columns to plot")
    cols = cols[:max_series]
    one_per_step = not rows.step.duplicated().any()
    n_rows = -(-len(cols) // per_row)
    gap_x, gap_y = 0.06, 0.22 / max(n_rows, 1)
    width, height = (1 - gap_x * (per_row - 1)) / per_row, (1 - gap_y * (n_rows - 1)) / n_rows
    traces, layout, notes = [], {}, []
    for i, col in enumerate(cols):
        r, c = divmod(i, per_row)
        x0, y1 = c * (width + gap_x), 1 - r * (height + gap_y)
        suffix = "" if i == 0 else str(i + 1)
        # Rounded into [0, 1]: plotly rejects a domain edge of -5e-17.
        layout[f"xaxis{suffix}"] = dict(domain=_unit(x0, x0 + width), anchor=f"y{suffix}")
        layout[f"yaxis{suffix}"] = dict(domain=_unit(y1 - height, y1), anchor=f"x{suffix}")
        traces.append(_line(rows.step, rows[col], col, _FALLBACK[i % len(_FALLBACK)],
                            mode="lines+markers" if one_per_step else "markers",
                            marker=dict(size=5 if one_per_step else 4), showlegend=False,
                            xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        notes.append(dict(text=col, x=x0 + width / 2, y=y1, xref="paper", yref="paper",
                          xanchor="center", yanchor="bottom", showarrow=False))
    return _figure(traces, {**layout, "annotations": notes}, height=60 + 200 * n_rows,
                   title=title)


# -- several runs ------------------------------------------------------------------------------
def run_label(row: pd.Series | dict) -> str:
    """A run's legend label: its name, else method, rate and seed, plus its id's tail."""
    tail = str(row["run_id"])[-4:]
    if row.get("name"):
        return f"{row['name']} · {tail}"
    return f"{row['method']} {row['rate']:g} s{row['seed']} · {tail}"


def seed_groups(configs: dict[str, dict]) -> dict[str, str]:
    """Run id -> group id: runs whose configs are identical but for the seed (and name) share
    a group, one run per seed; a repeat of a seed already in the group (a second seed-0 run)
    is a group of its own, so a mean "of N seeds" is always over N distinct seeds."""
    out: dict[str, str] = {}
    seeds: dict[str, set] = {}
    for run_id, config in configs.items():
        rest = {k: v for k, v in config.items() if k not in ("seed", "name")}
        group = str(sorted(rest.items(), key=lambda kv: kv[0]))
        taken = seeds.setdefault(group, set())
        if config.get("seed") in taken:
            out[run_id] = f"{group} #{run_id}"
        else:
            taken.add(config.get("seed"))
            out[run_id] = group
    return out


X_AXES = {"step": "step", "epoch": "epoch", "fraction": "fraction of training"}


def training_x(scalars: pd.DataFrame, runs: pd.DataFrame, mode: str) -> pd.Series:
    """Each scalar row's x: its step, the epochs done after it, or the fraction of the run's
    planned steps done after it (so runs of 30 and 440 steps both end at 1). `runs` has
    run_id, total_steps and epochs; runs not started yet (no planned steps) get NaN."""
    if mode == "step":
        return scalars.step.astype(float)
    info = runs.set_index("run_id")
    total = scalars.run_id.map(info.total_steps).astype(float).where(lambda t: t > 0)
    done = (scalars.step + 1) / total
    if mode == "fraction":
        return done
    if mode == "epoch":
        return done * scalars.run_id.map(info.epochs).astype(float)
    raise ValueError(f"x axis is one of {', '.join(X_AXES)}; got {mode!r}")


def _group_name(members: pd.DataFrame, n: int) -> str:
    """A group's legend entry: the run's label, or its mean's (plus the optional `where`
    column: the model and dataset, when a selection mixes them)."""
    first = members.iloc[0]
    if n == 1:
        return str(first.label)
    return f"{first.method} {first.rate:g} (mean of {n} seeds){first.get('where', '')}"


FEW_POINTS = 40      # curves this short also draw their points (a one-point curve is a dot)


def curves_figure(scalars: pd.DataFrame, runs: pd.DataFrame, key: str, *, title: str,
                  smoothed: bool = False, y_range: tuple[float, float] | None = None,
                  x: str = "step") -> go.Figure:
    """One curve per run, or per seed group (mean line, min/max band) where a group has several
    seeds; x as `training_x`. `runs` has run_id, method, rate, label, group, total_steps and
    epochs columns."""
    df = scalars[scalars.key == key]
    if df.empty:
        return _empty(f"no {key} records", 320)
    df = df.assign(x=training_x(df, runs, x)).dropna(subset=["x"])
    dashes = rate_dashes(runs.rate)
    traces = []
    for group, members in runs.groupby("group", sort=False):
        first = members.iloc[0]
        color, dash = method_color(first.method), dashes[first.rate]
        wide = (df[df.run_id.isin(members.run_id)]
                .pivot_table(index="x", columns="run_id", values="value", aggfunc="last")
                .interpolate(limit_area="inside"))
        if smoothed:
            wide = wide.apply(smooth)
        if wide.empty:
            continue
        mode = "lines+markers" if len(wide) <= FEW_POINTS else "lines"
        if wide.shape[1] > 1:
            band = dict(legendgroup=group, showlegend=False, hoverinfo="skip")
            traces += [_line(wide.index, wide.max(axis=1), None, color, width=0, **band),
                       _line(wide.index, wide.min(axis=1), None, color, width=0,
                             fill="tonexty", fillcolor=_rgba(color, 0.18), **band)]
        traces.append(_line(wide.index, wide.mean(axis=1), _group_name(members, wide.shape[1]),
                            color, dash=dash, legendgroup=group, mode=mode))
    if not traces:
        return _empty(f"no {key} records", 320)
    y = _axis(range=list(y_range)) if y_range else {}
    xaxis = _axis(X_AXES[x], range=[0, 1.02]) if x == "fraction" else _axis(X_AXES[x])
    return _figure(traces, dict(xaxis=xaxis, yaxis=y, showlegend=True), height=380,
                   title=title)


def pareto_front(df: pd.DataFrame, x: str, y: str, *, maximize_x: bool,
                 maximize_y: bool = True) -> pd.DataFrame:
    """Rows no other row beats on both x and y, sorted by x."""
    sign = 1 if maximize_y else -1
    d = df.dropna(subset=[x, y]).assign(_y=lambda t: sign * t[y])
    d = d.sort_values([x, "_y"], ascending=[not maximize_x, False])
    best = d._y.cummax()
    front = d[(d._y >= best) & ~d._y.duplicated()]
    return front.drop(columns="_y").sort_values(x)


FRONT = "#222222"


def pareto_figure(runs: pd.DataFrame, x: str, *, maximize_x: bool, title: str,
                  y: str = "final_accuracy", maximize_y: bool = True,
                  x_title: str | None = None, y_title: str | None = None,
                  front_by: str | None = None) -> go.Figure:
    """Runs as points coloured by method, and the Pareto front as a step line through ringed
    points (one front per value of `front_by`: fronts across datasets mean nothing).

    Runs at the same point stay visible without moving them: one marker per method there,
    the earlier-drawn methods' markers larger, so they show as concentric rings, and the hover
    lists every run at that point."""
    d = runs.dropna(subset=[x, y]).copy()
    if d.empty:
        return _empty("no finished runs with a summary", 340)
    d["_at"] = list(zip(d[x].round(9), d[y].round(9)))
    here = d.groupby("_at").label.agg(lambda labels: "<br>".join(labels))
    order = list(pd.unique(d.method))
    traces = []
    for method, sub in d.groupby("method", sort=False):
        points = sub.drop_duplicates("_at")
        later = [len({m for m in d.method[d._at == at]
                      if order.index(m) > order.index(method)}) for at in points._at]
        traces.append(dict(
            type="scatter", x=points[x].to_numpy(float), y=points[y].to_numpy(float),
            name=method, mode="markers", text=points._at.map(here).to_numpy(),
            hovertemplate="%{text}<br>%{x:.4g}, %{y:.4f}<extra></extra>",
            marker=dict(color=method_color(method), size=[11 + 7 * n for n in later],
                        opacity=0.9, line=dict(color="white", width=1))))
    worst = d[y].min() if maximize_y else d[y].max()
    for i, (where, sub) in enumerate(d.groupby(front_by, sort=False) if front_by
                                     else [(None, d)]):
        front = pareto_front(sub, x, y, maximize_x=maximize_x, maximize_y=maximize_y)
        xs, ys = list(front[x].astype(float)), list(front[y].astype(float))
        # The boundary of what the front's runs reach, out to the other runs' extent (so a
        # one-run front is a line too): with x maximized a run covers every x below its own,
        # so the line drops at each run first (vh); with x minimized, every x above (hv).
        if maximize_x:
            xs, ys = [d[x].min(), *xs, xs[-1]], [ys[0], *ys, worst]
        else:
            xs, ys = [xs[0], *xs, d[x].max()], [worst, *ys, ys[-1]]
        traces.append(dict(
            type="scatter", x=np.asarray(xs, float), y=np.asarray(ys, float),
            name="Pareto front" + (f" · {where}" if where is not None else ""),
            mode="lines+markers", hoverinfo="skip",
            line=dict(color=FRONT, width=2, dash=DASHES[(i + 1) % len(DASHES)],
                      shape="vh" if maximize_x else "hv"),
            marker=dict(symbol="circle-open", size=[0] + [19] * len(front) + [0],
                        color=FRONT, line=dict(width=2))))
    return _figure(traces, dict(xaxis=_axis(x_title or x),
                                yaxis=_axis(y_title or y.replace("_", " "))),
                   height=340, title=title)


def layer_profile_figure(layers: pd.DataFrame, runs: pd.DataFrame, key: str = "sparsity",
                         title: str | None = None) -> go.Figure:
    """Each run's last per-layer record as grouped bars (colour = method, pattern = rate);
    runs that differ only by seed are one bar, their mean. `runs` as for curves_figure, all
    of one model (layer names of different models do not line up)."""
    df = layers[layers.key == key]
    if df.empty:
        return _empty("no per-layer records", 340)
    last = df[df.step == df.groupby("run_id").step.transform("max")]
    patterns = dict(zip(sorted(set(runs.rate)), ("", "/", ".", "x", "-", "+", "\\", "|")))
    traces = []
    for _, members in runs.groupby("group", sort=False):
        first = members.iloc[0]
        sub = last[last.run_id.isin(members.run_id)]
        if sub.empty:
            continue
        mean = sub.groupby("layer", sort=False).value.mean()
        traces.append(dict(type="bar", x=list(mean.index), y=mean.to_numpy(),
                           name=_group_name(members, sub.run_id.nunique()),
                           marker=dict(color=method_color(first.method),
                                       pattern=dict(shape=patterns.get(first.rate, "")))))
    y = _axis(key, range=UNIT_RANGE) if key in ("sparsity", "keep_rate") else _axis(key)
    return _figure(traces, dict(barmode="group", yaxis=y, showlegend=True), height=340,
                   title=title or f"Per-layer {key} at the end of each run")


def parallel_figure(runs: pd.DataFrame, inputs: list[str], outputs: list[str]) -> go.Figure:
    """Parallel coordinates, one line per run coloured by method: the inputs every run has and
    that vary across them (always the method; a parameter of one method only is left out),
    then every output. Text columns become category axes."""
    d = runs.dropna(subset=outputs)
    if len(d) < 2:
        return _empty("parallel coordinates need at least two finished runs", 380)
    keep = ["method"] + [c for c in inputs if c != "method" and d[c].notna().all()
                         and d[c].astype(str).nunique() > 1]
    methods = list(pd.unique(d.method))
    dims = []
    for col in keep + outputs:
        values = d[col]
        numbers = pd.to_numeric(values, errors="coerce")
        if col == "method" or numbers.isna().any() or \
                values.map(lambda v: isinstance(v, bool)).any():
            cats = list(pd.unique(values.astype(str)))
            dims.append(dict(label=col, values=[cats.index(v) for v in values.astype(str)],
                             tickvals=list(range(len(cats))), ticktext=cats,
                             range=[-0.5, len(cats) - 0.5]))
        else:
            dims.append(dict(label=col.replace("_", " "), values=numbers.to_numpy(float)))
    n = len(methods)
    scale = [[edge, method_color(m)] for i, m in enumerate(methods)
             for edge in (i / n, (i + 1) / n)]
    line = dict(color=[methods.index(m) for m in d.method], colorscale=scale, cmin=-0.5,
                cmax=n - 0.5)
    return _figure([dict(type="parcoords", dimensions=dims, line=line)],
                   dict(margin=dict(l=70, r=70, t=100, b=30)), height=420,
                   title="Parameters and outcomes of the finished runs")


def config_diff(configs: dict[str, dict]) -> pd.DataFrame:
    """Config fields (method params flattened as params.NAME) whose values differ across runs;
    one row per run, indexed like `configs`."""
    flat = {}
    for label, config in configs.items():
        row = {k: v for k, v in config.items() if k not in ("params", "name")}
        row.update({f"params.{k}": v for k, v in config.get("params", {}).items()})
        flat[label] = {k: str(v) if isinstance(v, (list, tuple, dict)) else v
                       for k, v in row.items()}
    # Built as objects: an int field missing from some runs stays 0, not 0.0.
    cols = list(dict.fromkeys(k for row in flat.values() for k in row))
    df = pd.DataFrame([[row.get(c) for c in cols] for row in flat.values()], index=list(flat),
                      columns=cols, dtype=object)
    if len(df) < 2:
        return df
    differ = [c for c in df.columns if df[c].astype(str).nunique(dropna=False) > 1]
    return df[differ]
