"""Dashboard figures: tidy DataFrames from the store in, plotly Figures out (no streamlit here).

Every figure colours a method the same way (`method_color`) and, where runs differ by rate, draws
each rate with its own line dash (`rate_dashes`), so a method reads the same on every page.
Callers downsample long curves before plotting (`Store.scalars(..., max_points=...)`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

METHOD_COLORS = {
    "dense": "#7f7f7f", "random": "#bcbd22", "l1": "#1f77b4", "global_l1": "#17becf",
    "l2_filter": "#9467bd", "gmp": "#ff7f0e", "pgmpf": "#d62728", "sfp": "#e377c2",
    "asfp": "#f7b6d2", "fggp": "#2ca02c", "granet": "#98df8a", "pgp": "#8c564b",
    "psfp": "#c49c94", "slr": "#7b4173", "admm": "#ce6dbd",
}
_FALLBACK = plotly.colors.qualitative.Dark24
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
TEMPLATE = "plotly_white"
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


def _style(fig: go.Figure, height: int = 320, title: str | None = None) -> go.Figure:
    """House look: white template, title top left, horizontal legend under the plot."""
    fig.update_layout(template=TEMPLATE, height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
                      title=dict(text=title, x=0, xanchor="left", font=dict(size=15))
                      if title else None)
    return fig


def _empty(message: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(color="#888", size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, height)


def _key(scalars: pd.DataFrame, key: str) -> pd.DataFrame:
    return scalars[scalars.key == key].sort_values("step")


def smooth(values: pd.Series, points: int = 40) -> pd.Series:
    """Rolling mean over about 1/`points` of the curve (per-step losses are noisy)."""
    return values.rolling(max(1, len(values) // points), min_periods=1).mean()


# -- one run, live -----------------------------------------------------------------------------
def schedule_figure(preview: pd.DataFrame, title: str = "Schedule preview") -> go.Figure:
    """A method's schedule before running: columns epoch, series, value."""
    fig = go.Figure()
    for i, (series, df) in enumerate(preview.groupby("series", sort=False)):
        fig.add_scatter(x=df.epoch, y=df.value, name=str(series), mode="lines",
                        line=dict(color=TARGET if i == 0 else _FALLBACK[i], width=2.5))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(showlegend=preview.series.nunique() > 1)
    return _style(fig, 240, title)


def training_figure(scalars: pd.DataFrame) -> go.Figure:
    """Loss (raw and smoothed per step, held-out per epoch) and accuracy, side by side."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                        horizontal_spacing=0.08)
    loss = _key(scalars, "loss")
    fig.add_scatter(x=loss.step, y=loss.value, name="train loss", mode="lines",
                    line=dict(color=_rgba(ACHIEVED, 0.25), width=1), showlegend=False,
                    row=1, col=1)
    fig.add_scatter(x=loss.step, y=smooth(loss.value), name="train loss (smoothed)",
                    mode="lines", line=dict(color=ACHIEVED, width=2), row=1, col=1)
    test_loss = _key(scalars, "test_loss")
    fig.add_scatter(x=test_loss.step, y=test_loss.value, name="held-out loss",
                    mode="lines+markers", line=dict(color="#ff7f0e"), row=1, col=1)
    train_acc = _key(scalars, "train_accuracy")
    fig.add_scatter(x=train_acc.step, y=smooth(train_acc.value), name="train accuracy",
                    mode="lines", line=dict(color=_rgba(ACHIEVED, 0.5), width=1.5),
                    row=1, col=2)
    test_acc = _key(scalars, "test_accuracy")
    fig.add_scatter(x=test_acc.step, y=test_acc.value, name="held-out accuracy",
                    mode="lines+markers", line=dict(color="#2ca02c", width=2.5), row=1, col=2)
    for key, label, color in (("dense_accuracy", "dense", "#7f7f7f"),
                              ("pruned_accuracy", "just pruned", TARGET)):
        point = _key(scalars, key)
        if len(point):
            fig.add_scatter(x=point.step, y=point.value, name=label, mode="markers",
                            marker=dict(color=color, size=10, symbol="diamond"), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    return _style(fig, 360)


def sparsity_figure(scalars: pd.DataFrame) -> go.Figure:
    """Target (the method's schedule) vs achieved sparsity of the prunable weights."""
    fig = go.Figure()
    target = _key(scalars, "target_sparsity")
    achieved = _key(scalars, "sparsity")
    fig.add_scatter(x=target.step, y=target.value, name="target", mode="lines",
                    line=dict(color=TARGET, dash="dash", width=2))
    fig.add_scatter(x=achieved.step, y=achieved.value, name="achieved", mode="lines",
                    line=dict(color=ACHIEVED, width=2.5))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[0, 1.02], title_text="sparsity")
    return _style(fig, 330, "Target vs achieved sparsity")


def layer_heatmap(layers: pd.DataFrame, key: str = "sparsity") -> go.Figure:
    """Layer x step heatmap of a per-layer record (first layer on top)."""
    df = layers[layers.key == key]
    if df.empty:
        return _empty("no per-layer records yet")
    order = list(pd.unique(df.layer))
    wide = df.pivot_table(index="layer", columns="step", values="value", aggfunc="last")
    wide = wide.reindex(order)
    fig = go.Figure(go.Heatmap(z=wide.values, x=wide.columns, y=wide.index, zmin=0, zmax=1,
                               colorscale="Viridis", colorbar=dict(title=key, thickness=12),
                               hovertemplate="%{y}<br>step %{x}<br>" + key + " %{z:.3f}"
                                             "<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="step")
    return _style(fig, max(260, 60 + 28 * len(order)), f"Per-layer {key}")


def layer_bars(layers: pd.DataFrame, key: str = "sparsity", title: str | None = None
               ) -> go.Figure:
    """One bar per layer: a per-layer record at one step."""
    df = layers[layers.key == key]
    fig = go.Figure(go.Bar(x=df.layer, y=df.value, marker_color=ACHIEVED))
    fig.update_yaxes(range=[0, 1.02] if key in ("sparsity", "keep_rate") else None,
                     title_text=key)
    return _style(fig, 280, title)


def table_figure(rows: pd.DataFrame, title: str | None = None, max_series: int = 8
                 ) -> go.Figure:
    """A method table's numeric columns against the step they were recorded at."""
    cols = [c for c in rows.select_dtypes("number").columns if c not in ("step", "epoch")]
    if rows.empty or not cols:
        return _empty("no numeric columns to plot")
    one_per_step = not rows.step.duplicated().any()
    fig = go.Figure()
    for i, col in enumerate(cols[:max_series]):
        fig.add_scatter(x=rows.step, y=rows[col], name=col,
                        mode="lines+markers" if one_per_step else "markers",
                        line=dict(color=_FALLBACK[i % len(_FALLBACK)]),
                        marker=dict(size=5 if one_per_step else 4))
    fig.update_xaxes(title_text="step")
    return _style(fig, 300, title)


# -- several runs ------------------------------------------------------------------------------
def run_label(row: pd.Series | dict) -> str:
    """A run's legend label: its name, else method, rate and seed, plus its id's tail."""
    tail = str(row["run_id"])[-4:]
    if row.get("name"):
        return f"{row['name']} · {tail}"
    return f"{row['method']} {row['rate']:g} s{row['seed']} · {tail}"


def seed_groups(configs: dict[str, dict]) -> dict[str, str]:
    """Run id -> group id: runs whose configs differ only by seed (and name) share a group."""
    out = {}
    for run_id, config in configs.items():
        rest = {k: v for k, v in config.items() if k not in ("seed", "name")}
        out[run_id] = str(sorted(rest.items(), key=lambda kv: kv[0]))
    return out


def curves_figure(scalars: pd.DataFrame, runs: pd.DataFrame, key: str, *, title: str,
                  smoothed: bool = False, y_range: tuple[float, float] | None = None
                  ) -> go.Figure:
    """One curve per run, or per seed group (mean line, min/max band) where a group has several
    seeds. `runs` has run_id, method, rate, label and group columns."""
    df = scalars[scalars.key == key]
    if df.empty:
        return _empty(f"no {key} records", 320)
    dashes = rate_dashes(runs.rate)
    fig = go.Figure()
    for group, members in runs.groupby("group", sort=False):
        first = members.iloc[0]
        color, dash = method_color(first.method), dashes[first.rate]
        wide = (df[df.run_id.isin(members.run_id)]
                .pivot_table(index="step", columns="run_id", values="value", aggfunc="last")
                .interpolate(limit_area="inside"))
        if smoothed:
            wide = wide.apply(smooth)
        if wide.empty:
            continue
        if wide.shape[1] == 1:
            name = first.label
        else:
            name = f"{first.method} {first.rate:g} (mean of {wide.shape[1]} seeds)"
            fig.add_scatter(x=wide.index, y=wide.max(axis=1), mode="lines", line=dict(width=0),
                            legendgroup=group, showlegend=False, hoverinfo="skip")
            fig.add_scatter(x=wide.index, y=wide.min(axis=1), mode="lines", line=dict(width=0),
                            fill="tonexty", fillcolor=_rgba(color, 0.18), legendgroup=group,
                            showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=wide.index, y=wide.mean(axis=1), name=name, legendgroup=group,
                        mode="lines", line=dict(color=color, dash=dash, width=2))
    fig.update_xaxes(title_text="step")
    if y_range:
        fig.update_yaxes(range=list(y_range))
    return _style(fig, 380, title)


def pareto_front(df: pd.DataFrame, x: str, y: str, *, maximize_x: bool) -> pd.DataFrame:
    """Rows no other row beats on both x and y (y is always maximized), sorted by x."""
    d = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[not maximize_x, False])
    best = d[y].cummax()
    front = d[(d[y] >= best) & ~d[y].duplicated()]
    return front.sort_values(x)


def pareto_figure(runs: pd.DataFrame, x: str, *, maximize_x: bool, title: str,
                  y: str = "final_accuracy", x_title: str | None = None) -> go.Figure:
    """Runs as points coloured by method, with the Pareto front as a step line."""
    d = runs.dropna(subset=[x, y])
    if d.empty:
        return _empty("no finished runs with a summary", 340)
    fig = go.Figure()
    for method, sub in d.groupby("method", sort=False):
        fig.add_scatter(x=sub[x], y=sub[y], name=method, mode="markers",
                        text=sub.label, hovertemplate="%{text}<br>%{x:.4g}, %{y:.4f}"
                                                      "<extra></extra>",
                        marker=dict(color=method_color(method), size=11,
                                    line=dict(color="white", width=1)))
    front = pareto_front(d, x, y, maximize_x=maximize_x)
    fig.add_scatter(x=front[x], y=front[y], name="Pareto front", mode="lines",
                    line=dict(color="#444", dash="dot", shape="hv" if maximize_x else "vh"))
    fig.update_xaxes(title_text=x_title or x)
    fig.update_yaxes(title_text=y.replace("_", " "))
    return _style(fig, 340, title)


def layer_profile_figure(layers: pd.DataFrame, runs: pd.DataFrame, key: str = "sparsity"
                         ) -> go.Figure:
    """Each run's last per-layer record as grouped bars (colour = method, pattern = rate)."""
    df = layers[layers.key == key]
    if df.empty:
        return _empty("no per-layer records", 340)
    last = df[df.step == df.groupby("run_id").step.transform("max")]
    patterns = dict(zip(sorted(set(runs.rate)), ("", "/", ".", "x", "-", "+", "\\", "|")))
    fig = go.Figure()
    for _, run in runs.iterrows():
        sub = last[last.run_id == run.run_id]
        if sub.empty:
            continue
        fig.add_bar(x=sub.layer, y=sub.value, name=run.label,
                    marker=dict(color=method_color(run.method),
                                pattern_shape=patterns.get(run.rate, "")))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.02] if key in ("sparsity", "keep_rate") else None,
                     title_text=key)
    return _style(fig, 340, f"Per-layer {key} at the end of each run")


def config_diff(configs: dict[str, dict]) -> pd.DataFrame:
    """Config fields (method params flattened as params.NAME) whose values differ across runs;
    one row per run, indexed like `configs`."""
    flat = {}
    for label, config in configs.items():
        row = {k: v for k, v in config.items() if k not in ("params", "name")}
        row.update({f"params.{k}": v for k, v in config.get("params", {}).items()})
        flat[label] = {k: str(v) if isinstance(v, (list, tuple, dict)) else v
                       for k, v in row.items()}
    df = pd.DataFrame.from_dict(flat, orient="index")
    if len(df) < 2:
        return df
    differ = [c for c in df.columns if df[c].astype(str).nunique(dropna=False) > 1]
    return df[differ]
