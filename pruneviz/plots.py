"""Dashboard figures: tidy DataFrames from the store in, plotly Figures out (no streamlit here).

Every figure colours a method the same way (`method_color`) and, where runs differ by rate, draws
each rate with its own line dash (`rate_dashes`), so a method reads the same on every page.
Callers downsample long curves before plotting (`Store.scalars(..., max_points=...)`).

The figure kit below (`figure`, `house_layout`, `line`, `axis`, `rgba`, `empty_figure`,
`category_heatmap`, `unit_domain`, the step markers `marker`, `vline`, `markers`, FALLBACK) is
public: the method views and toys, the Learn, Compare and Inspect figures all draw with it, in
one house look (`house`). Figures are built without plotly's per-property validation
(`figure`): it costs about 5x the rest of a live redraw, and the tests validate every figure's
output against plotly's schema.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from .schedules import RECOVERY

# Colour-blind-safe: the methods people compare most take Okabe & Ito's eight colours (told
# apart under deuteranopia, protanopia and tritanopia); the baselines that share a method's code
# path take Paul Tol's "muted" colours next to their method's. The one source for every page.
METHOD_COLORS = {
    "dense": "#7f7f7f", "random": "#BBBBBB", "l1": "#56B4E9", "global_l1": "#332288",
    "l2_filter": "#999933", "gmp": "#E69F00", "pgmpf": "#D55E00", "sfp": "#CC6677",
    "asfp": "#882255", "fggp": "#009E73", "granet": "#117733", "pgp": "#0072B2",
    "psfp": "#88CCEE", "slr": "#CC79A7", "admm": "#AA4499",
}
FALLBACK = plotly.colors.qualitative.Dark24
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
ACHIEVED, TARGET = "#1f77b4", "#d62728"


def method_color(name: str) -> str:
    """The method's colour on every page (a stable hash picks one for methods added later)."""
    return METHOD_COLORS.get(name) or FALLBACK[zlib.crc32(name.encode()) % len(FALLBACK)]


def method_colors(names: Iterable[str]) -> dict[str, str]:
    return {n: method_color(n) for n in names}


def rate_dashes(rates: Iterable[float]) -> dict[float, str]:
    """Line dash per rate, lowest rate solid."""
    return {r: DASHES[i % len(DASHES)] for i, r in enumerate(sorted(set(rates)))}


# -- the figure kit: every page's figures are built from these, in one house look ---------------
def rgba(color: str, alpha: float) -> str:
    """A hex colour with transparency (bands, faded raw curves)."""
    r, g, b = plotly.colors.hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


LEGEND_COLUMNS = 3      # legend entries per row under a half-width chart
LEGEND_ROW_PX = 21


def house(height: int, title: str | None = None, *, entries: int = 0, shown: bool = True,
          top: int = 40) -> dict:
    """The house look as layout entries: title top left, legend at the bottom below the axis
    title; the figure grows by the legend's rows (`entries` named traces, LEGEND_COLUMNS a row)
    so the plot keeps its height."""
    legend_px = LEGEND_ROW_PX * (-(-entries // LEGEND_COLUMNS) if shown else 0)
    out: dict[str, Any] = dict(
        height=height + legend_px, margin=dict(l=10, r=10, t=top, b=10 + legend_px),
        legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom",
                    yref="container"))
    if title:
        out["title"] = dict(text=title, x=0, xanchor="left", font=dict(size=15))
    return out


def _legend_entries(traces: Iterable[tuple[Any, Any]]) -> int:
    """Named traces not hidden from the legend, of (name, showlegend) pairs."""
    return sum(1 for name, shown in traces if name and shown is not False)


def figure(traces: list[dict], layout: dict | None = None, *, height: int = 320,
           title: str | None = None) -> go.Figure:
    """A figure in the house look (`house`), built in one go without validation; the page's
    theme styles it."""
    layout = layout or {}
    entries = _legend_entries((t.get("name"), t.get("showlegend")) for t in traces)
    base = house(height, title, entries=entries, shown=layout.get("showlegend", entries > 1))
    return go.Figure(data=traces, layout={"template": {}, **base, **layout}, _validate=False)


def house_layout(fig: go.Figure, title: str | None, height: int = 340, top: int = 48,
                 **kw) -> go.Figure:
    """The house look (`house`) on a figure built trace by trace (make_subplots, add_trace);
    `kw` are further layout entries (a `legend` of its own reserves no legend rows). Returns
    the figure."""
    entries = _legend_entries((getattr(t, "name", None), getattr(t, "showlegend", None))
                              for t in fig.data)
    shown = False if "legend" in kw else kw.get("showlegend", fig.layout.showlegend)
    fig.update_layout(**house(height, title, entries=entries,
                              shown=entries > 1 if shown is None else shown, top=top))
    return fig.update_layout(**kw)


def empty_figure(message: str, height: int = 320) -> go.Figure:
    """A figure that only says `message` (nothing recorded yet, nothing to plot)."""
    return figure([], dict(annotations=[dict(text=message, showarrow=False,
                                             font=dict(color="#888", size=14))],
                           xaxis=dict(visible=False), yaxis=dict(visible=False)), height=height)


def line(x, y, name: str | None, color: str, *, width: float = 2, dash: str = "solid",
         mode: str = "lines", **kw) -> dict:
    """A scatter trace (a curve by default); `kw` are further trace entries."""
    return dict(type="scatter", x=np.asarray(x), y=np.asarray(y), name=name, mode=mode,
                line=dict(color=color, width=width, dash=dash), **kw)


def axis(title: str | None = None, **kw) -> dict:
    """An axis' layout entries with a title."""
    return dict(title=dict(text=title), **kw) if title else kw


def category_scale(colors: Iterable[str]) -> list[list]:
    """A split colour scale: one flat band per colour, for codes 0..n-1 drawn with
    cmin/zmin = -0.5 and cmax/zmax = n - 0.5 (no blending between categories)."""
    colors = list(colors)
    n = len(colors)
    return [[edge, c] for i, c in enumerate(colors) for edge in (i / n, (i + 1) / n)]


def category_heatmap(codes, labels: list[str], colors: list[str], **kw) -> dict:
    """A heatmap of category codes (0..n-1) on a split colour scale, each cell's label in
    customdata and the colour bar naming the categories; `kw` are further trace entries."""
    n = len(labels)
    names = [[labels[v] for v in row] for row in codes]
    return dict(type="heatmap", z=codes, zmin=-0.5, zmax=n - 0.5,
                colorscale=category_scale(colors), customdata=names, xgap=1, ygap=1,
                colorbar=dict(tickvals=list(range(n)), ticktext=list(labels), thickness=12),
                **kw)


# -- step markers: vertical lines at a step (the internals views' slider, an epoch's event) -------
MARKER = "#888888"


def marker(step: int, xref: str = "x") -> dict:
    """A dotted vertical line at the slider's step (a layout shape, not a trace)."""
    return dict(type="line", xref=xref, yref="paper", x0=step, x1=step, y0=0, y1=1,
                line=dict(color=MARKER, width=1, dash="dot"), layer="below")


def vline(x: float, text: str | None = None, *, dash: str = "dot", color: str = MARKER,
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
    traces = [line(df.epoch, df.value, str(series), TARGET if i == 0 else FALLBACK[i],
                   width=2.5)
              for i, (series, df) in enumerate(lines.groupby("series", sort=False))]
    layout: dict[str, Any] = dict(xaxis=axis("epoch"), yaxis=axis(rangemode="tozero"),
                                  showlegend=len(traces) > 1)
    if len(band):
        x0, x1 = float(band.epoch.min()), float(band.epoch.max())
        layout["shapes"] = [dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1,
                                 fillcolor="rgba(44, 160, 44, 0.12)", line_width=0,
                                 layer="below")]
        layout["annotations"] = [dict(x=(x0 + x1) / 2, y=1, xref="x", yref="paper",
                                      text="recovery", showarrow=False, yanchor="top",
                                      font=dict(color="#2ca02c"))]
    return figure(traces, layout, height=240, title=title)


def training_figure(scalars: pd.DataFrame) -> go.Figure:
    """Loss (raw and smoothed per step, held-out per epoch) and accuracy, side by side."""
    k = by_key(scalars)
    loss, test_loss = k.get("loss", _NONE), k.get("test_loss", _NONE)
    train_acc, test_acc = k.get("train_accuracy", _NONE), k.get("test_accuracy", _NONE)
    right = dict(xaxis="x2", yaxis="y2")
    ce = k.get("ce", _NONE)     # recorded only by methods that add a penalty to the loss
    traces = [
        line(loss.step, loss.value, "train loss", rgba(ACHIEVED, 0.25), width=1,
             showlegend=False),
        line(loss.step, smooth(loss.value),
             "train loss: CE + penalty (smoothed)" if len(ce) else "train loss (smoothed)",
             ACHIEVED),
        line(test_loss.step, test_loss.value, "held-out loss", "#ff7f0e", mode="lines+markers"),
        line(train_acc.step, smooth(train_acc.value), "train accuracy", rgba(ACHIEVED, 0.5),
             width=1.5, **right),
        line(test_acc.step, test_acc.value, "held-out accuracy", "#2ca02c", width=2.5,
             mode="lines+markers", **right),
    ]
    if len(ce):
        traces.append(line(ce.step, smooth(ce.value), "train CE alone (smoothed)", "#9467bd",
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
    layout = dict(xaxis=axis("step", domain=[0, 0.46]),
                  xaxis2=axis("step", domain=[0.54, 1], anchor="y2"),
                  yaxis2=dict(anchor="x2", range=UNIT_RANGE), annotations=titles)
    return figure(traces, layout, height=360)


def sparsity_figure(scalars: pd.DataFrame, zeros: str = "hard",
                    pulled: tuple[float, float] | None = None) -> go.Figure:
    """Target (the method's schedule) vs achieved sparsity (exact zeros) of the prunable
    weights; `zeros` is the method's Method.zeros, `pulled` (rate, last step) the sparsity a
    deferred method's penalty pulls the weights towards until its hard prune."""
    k = by_key(scalars)
    target, achieved = k.get("target_sparsity", _NONE), k.get("sparsity", _NONE)
    name = "target (soft: masked, still trainable)" if zeros == "soft" else "target"
    traces = [line(target.step, target.value, name, TARGET, dash="dash"),
              line(achieved.step, achieved.value, "achieved (exact zeros)", ACHIEVED,
                   width=2.5)]
    if pulled is not None:
        traces.append(line([0, pulled[1]], [pulled[0]] * 2, "sparse copy Z (penalty pulls W "
                           "to it)", "#9467bd", dash="dot"))
    return figure(traces, dict(xaxis=axis("step"), yaxis=axis("sparsity", range=UNIT_RANGE)),
                  height=330, title="Target vs achieved sparsity")


def layer_heatmap(layers: pd.DataFrame, key: str = "sparsity") -> go.Figure:
    """Layer x step heatmap of a per-layer record (first layer on top)."""
    df = layers[layers.key == key]
    if df.empty:
        return empty_figure("no per-layer records yet")
    order = list(pd.unique(df.layer))
    # An epoch's last step can be snapshot twice (step and epoch end): keep the later one.
    wide = (df.drop_duplicates(["layer", "step"], keep="last")
            .pivot(index="layer", columns="step", values="value").reindex(order))
    heat = dict(type="heatmap", z=wide.to_numpy(), x=wide.columns.to_numpy(), y=order, zmin=0,
                zmax=1, colorscale="Viridis", colorbar=dict(title=dict(text=key), thickness=12),
                hovertemplate="%{y}<br>step %{x}<br>" + key + " %{z:.3f}<extra></extra>")
    return figure([heat], dict(xaxis=axis("step"), yaxis=dict(autorange="reversed")),
                  height=max(260, 60 + 28 * len(order)), title=f"Per-layer {key}")


def layer_bars(layers: pd.DataFrame, key: str = "sparsity", title: str | None = None
               ) -> go.Figure:
    """One bar per layer: a per-layer record at one step."""
    df = layers[layers.key == key]
    bars = dict(type="bar", x=df.layer.to_numpy(), y=df.value.to_numpy(),
                marker=dict(color=ACHIEVED))
    y = axis(key, range=UNIT_RANGE) if key in ("sparsity", "keep_rate") else axis(key)
    return figure([bars], dict(yaxis=y), height=280, title=title)


def unit_domain(a: float, b: float) -> list[float]:
    return [min(1.0, max(0.0, round(a, 6))), min(1.0, max(0.0, round(b, 6)))]


def table_figure(rows: pd.DataFrame, title: str | None = None, max_series: int = 8,
                 per_row: int = 4) -> go.Figure:
    """A method table's numeric columns against the step they were recorded at: one small
    panel per column (their scales differ: counts next to fractions)."""
    cols = [c for c in rows.select_dtypes("number").columns if c not in ("step", "epoch")]
    if rows.empty or not cols:
        return empty_figure("no numeric columns to plot")
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
        layout[f"xaxis{suffix}"] = dict(domain=unit_domain(x0, x0 + width), anchor=f"y{suffix}")
        layout[f"yaxis{suffix}"] = dict(domain=unit_domain(y1 - height, y1), anchor=f"x{suffix}")
        traces.append(line(rows.step, rows[col], col, FALLBACK[i % len(FALLBACK)],
                           mode="lines+markers" if one_per_step else "markers",
                           marker=dict(size=5 if one_per_step else 4), showlegend=False,
                           xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        notes.append(dict(text=col, x=x0 + width / 2, y=y1, xref="paper", yref="paper",
                          xanchor="center", yanchor="bottom", showarrow=False))
    return figure(traces, {**layout, "annotations": notes}, height=60 + 200 * n_rows,
                  title=title)


# -- any run ------------------------------------------------------------------------------------
def run_label(row: pd.Series | dict) -> str:
    """A run's legend label: its name, else method, rate and seed, plus its id's tail."""
    tail = str(row["run_id"])[-4:]
    if row.get("name"):
        return f"{row['name']} · {tail}"
    return f"{row['method']} {row['rate']:g} s{row['seed']} · {tail}"
