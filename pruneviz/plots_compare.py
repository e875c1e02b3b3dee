"""Figures of several runs (the Compare page): curves over a shared x, Pareto fronts, layer
profiles, parallel coordinates and the table of what differs between configs. Same colours and
dashes as every page (plots.py), no streamlit here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .plots import (
    DASHES,
    UNIT_RANGE,
    axis,
    category_scale,
    empty_figure,
    figure,
    line,
    method_color,
    rate_dashes,
    rgba,
    smooth,
)


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
        return empty_figure(f"no {key} records", 320)
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
            traces += [line(wide.index, wide.max(axis=1), None, color, width=0, **band),
                       line(wide.index, wide.min(axis=1), None, color, width=0,
                            fill="tonexty", fillcolor=rgba(color, 0.18), **band)]
        traces.append(line(wide.index, wide.mean(axis=1), _group_name(members, wide.shape[1]),
                           color, dash=dash, legendgroup=group, mode=mode))
    if not traces:
        return empty_figure(f"no {key} records", 320)
    y = axis(range=list(y_range)) if y_range else {}
    xaxis = axis(X_AXES[x], range=[0, 1.02]) if x == "fraction" else axis(X_AXES[x])
    return figure(traces, dict(xaxis=xaxis, yaxis=y, showlegend=True), height=380,
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
        return empty_figure("no finished runs with a summary", 340)
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
    return figure(traces, dict(xaxis=axis(x_title or x),
                               yaxis=axis(y_title or y.replace("_", " "))),
                  height=340, title=title)


def layer_profile_figure(layers: pd.DataFrame, runs: pd.DataFrame, key: str = "sparsity",
                         title: str | None = None) -> go.Figure:
    """Each run's last per-layer record as grouped bars (colour = method, pattern = rate);
    runs that differ only by seed are one bar, their mean. `runs` as for curves_figure, all
    of one model (layer names of different models do not line up)."""
    df = layers[layers.key == key]
    if df.empty:
        return empty_figure("no per-layer records", 340)
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
    y = axis(key, range=UNIT_RANGE) if key in ("sparsity", "keep_rate") else axis(key)
    return figure(traces, dict(barmode="group", yaxis=y, showlegend=True), height=340,
                  title=title or f"Per-layer {key} at the end of each run")


def parallel_figure(runs: pd.DataFrame, inputs: list[str], outputs: list[str]) -> go.Figure:
    """Parallel coordinates, one line per run coloured by method: the inputs every run has and
    that vary across them (always the method; a parameter of one method only is left out),
    then every output. Text columns become category axes."""
    d = runs.dropna(subset=outputs)
    if len(d) < 2:
        return empty_figure("parallel coordinates need at least two finished runs", 380)
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
    scale = category_scale(method_color(m) for m in methods)
    line = dict(color=[methods.index(m) for m in d.method], colorscale=scale, cmin=-0.5,
                cmax=n - 0.5)
    return figure([dict(type="parcoords", dimensions=dims, line=line)],
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


RATE_CURVE_MIN_RATES = 3      # a sweep is drawn as a curve from this many rates on
RATE_X = {"sparsity": "achieved sparsity", "flops_effective": "effective FLOPs per image"}


def rate_curve_figure(table: pd.DataFrame, x: str = "sparsity", *, y_title: str,
                      scale: float = 1.0, title: str | None = None) -> go.Figure:
    """Quality against achieved sparsity (or FLOPs) per method: the mean over seeds at each
    rate as a line through its points, the 95 % t-interval as a band where a rate has two or
    more seeds. `table` is stats.aggregate's output (method, rate, n, mean, lo, hi and the
    mean `x`); series split by every other setting column it has."""
    d = table.dropna(subset=[x, "mean"])
    if d.empty:
        return empty_figure("no finished runs with a summary", 360)
    fixed = {"method", "rate", "n", "seeds", "mean", "sd", "lo", "hi", "drop_mean", "drop_sd",
             "drop_lo", "drop_hi", "sparsity", "flops_effective"}
    split = ["method"] + [c for c in d.columns if c not in fixed]
    traces = []
    for i, (key, sub) in enumerate(d.groupby(split, sort=False, dropna=False)):
        key = key if isinstance(key, tuple) else (key,)
        sub = sub.sort_values(x)
        color = method_color(str(key[0]))
        name = str(key[0]) + "".join(f" · {c}={v}" for c, v in zip(split[1:], key[1:]))
        group = f"rate-curve-{i}"
        band = sub.dropna(subset=["lo", "hi"])
        if len(band) >= 2:
            common = dict(legendgroup=group, showlegend=False, hoverinfo="skip")
            traces += [line(band[x], band.hi * scale, None, color, width=0, **common),
                       line(band[x], band.lo * scale, None, color, width=0, fill="tonexty",
                            fillcolor=rgba(color, 0.18), **common)]
        text = [f"rate {r:g}, {n} seed(s)" for r, n in zip(sub.rate.astype(float), sub.n)]
        traces.append(dict(type="scatter", x=sub[x].to_numpy(float),
                           y=(sub["mean"] * scale).to_numpy(float), name=name,
                           mode="lines+markers", legendgroup=group, text=text,
                           hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>",
                           line=dict(color=color, width=2), marker=dict(color=color, size=8)))
    return figure(traces, dict(xaxis=axis(RATE_X.get(x, x)), yaxis=axis(y_title),
                               showlegend=True),
                  height=360, title=title or f"{y_title.capitalize()} vs {RATE_X.get(x, x)}")


def dense_start_figure(curves: pd.DataFrame, title: str = "Dense start, before pruning"
                       ) -> go.Figure:
    """The dense run's train and held-out accuracy per epoch (guards.dense_curves)."""
    if curves.empty:
        return empty_figure("no dense start records", 280)
    traces = [line(curves.index + 1, curves[col], name, color, mode="lines+markers")
              for col, name, color in (("train", "train (epoch mean)", "#7f7f7f"),
                                       ("held_out", "held-out", "#0072B2"))
              if curves[col].notna().any()]
    return figure(traces, dict(xaxis=axis("dense epoch"), yaxis=axis("accuracy"),
                               showlegend=True), height=280, title=title)
