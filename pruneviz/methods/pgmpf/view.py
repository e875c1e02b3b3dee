"""PGMPF, SFP and ASFP internals: the gradient-mask evolution, epoch by epoch.

Panels (docs/methods.md, "PGMPF, SFP, ASFP"; the records they read: records.py):
- filter L2 norms at the slider's epoch as a layer x filter heatmap, kept filters in blues and
  pruned ones in reds, filters whose mask changed that epoch outlined. Layers are stacked (first
  on top) with the filter index on x, so a ResNet-20 (about 20 convs of 16-64 filters) stays one
  readable grid; the epoch axis is the slider;
- the epoch axis for one layer: filter x epoch heatmap of the layer whose mask changed most so
  far (the one worth watching), in the same colours;
- r_e, lambda_e and alpha_e as recorded, over the planned schedule, with the thresholds from
  which alpha = 0, lambda = lambda_final and r_e = r (0.8 E / 0.9 E by default);
- gradient norm of the pruned and kept filters before and after the prior gradient mask;
- the pruning shock: held-out accuracy just before and after each epoch's weight-decay mask;
- mask flips per epoch (pruned anew, revived) and the number of pruned filters.

Every figure shows only records made at or before the slider's step; axes span the whole run
so they stay put while the slider moves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...plots import (
    ACHIEVED,
    MARKER,
    TARGET,
    UNIT_RANGE,
    axis,
    figure,
    line,
    markers,
    method_color,
    rgba,
    vline,
)
from ...store import Store
from ...transformers import TRANSFORMERS
from ...views import (
    Panel,
    filter_pair,
    index_key,
    last_step,
    layer_order,
    method_params,
    method_rows,
    numbers,
    upto,
    waiting,
)
from ..roundto import asks_rounding
from ..structures import label as unit_label
from .records import GRADS, MASK_UPDATES, SHOCK

TITLE = "Gradient-mask evolution"      # the heading the dashboard gives this view
SCALARS = (*GRADS, *SHOCK, "dense_accuracy")
KEPT_SCALE = [[0, "#d6e6f5"], [1, "#08306b"]]       # light = small norm, dark = large
PRUNED_SCALE = [[0, "#fcc5b0"], [1, "#67000d"]]
REVIVED = "#2ca02c"
ROUNDED = "#9467bd"         # the kept share once counts are rounded (round_to)
HISTORY_ROWS_WITH_GAPS = 128   # more filters than this: the history's rows touch
MAX_EPOCH_COLUMNS = 80      # the one-layer history thins longer runs to this many epochs
WAIT = "waiting for the first epoch: the mask is computed at the end of each epoch"


# -- load --------------------------------------------------------------------------------------
def load(store: Store, run_id: str) -> dict[str, pd.DataFrame]:
    """Per-epoch mask updates, sampled gradient norms, shock pairs, per-layer flips and the
    per-filter norm and mask (two keys only: bn_gamma is not drawn)."""
    scalars = store.scalars(run_id, list(SCALARS), max_points=400)
    updates = method_rows(store, run_id, MASK_UPDATES.name, MASK_UPDATES.names)
    filters = filter_pair(store, run_id, ("mask", "l2_norm"), index_key(updates))
    order = layer_order(filters)
    layers = store.layers(run_id, ["mask_flips", "filters_revived"])
    layers["row"] = layers.layer.map({n: i for i, n in enumerate(order)})
    return dict(scalars=scalars, updates=updates, layers=layers, filters=filters,
                order=pd.DataFrame({"layer": order}))


def steps(frames: dict[str, pd.DataFrame]) -> list[int]:
    """The epoch ends: one step per mask update."""
    s = set(frames["updates"].step.tolist()) | set(frames["filters"].step.unique().tolist())
    return sorted(int(x) for x in s)


# -- panels ------------------------------------------------------------------------------------
def panels(frames: dict[str, pd.DataFrame], run: dict[str, Any], step: int) -> list[Panel]:
    config = run["config"]
    method = config.method
    cls, params = method_params(run)
    knobs = cls.knobs(config, params) if cls is not None and hasattr(cls, "knobs") else None
    planned = cls.schedule(config, params) if cls is not None else None
    updates = upto(frames["updates"], step)
    epoch = int(updates.epoch.iloc[-1]) if len(updates) else None
    total = int(run.get("total_steps") or 0)
    gradient_mask = bool(knobs.gradient_mask) if knobs is not None else method == "pgmpf"
    soft = "SFP" if method == "sfp" else "ASFP" if method == "asfp" else None
    rounded = asks_rounding(params)
    many = "heads and neurons" if config.model in TRANSFORMERS else "filters"
    return [*norms_panels(frames, step, many == "filters"), *(_words(p, many) for p in [
        Panel("pgmpf.history", history_figure(frames["filters"], frames["layers"],
                                              frames["order"], step, config.epochs),
              "One layer's filters across epochs (the layer whose mask changed most so far): "
              + ("pruned filters (red) fade as the weight-decay mask shrinks them epoch after "
                 "epoch." if soft is None else
                 "pruned filters (red) are zeroed at each epoch's end and may regrow during the "
                 "next, since " + soft + " keeps them trainable.")),
        Panel("pgmpf.flips", flips_figure(frames["layers"], updates, step, config.epochs,
                                          many),
              "Bars count the filters whose mask changed at each epoch's end (newly pruned or "
              "revived); the line is how many filters are pruned in all."),
        Panel("pgmpf.schedules", schedule_figure(updates, planned, knobs, epoch, config.epochs,
                                                 rounded),
              "The keep rate r_e (share of filters kept), the gradient suppression lambda_e and "
              "the weight-decay factor alpha_e as recorded at each epoch's end (dashed: the "
              "plan), with the epochs from which they reach their final values."
              + (" The share of filters actually kept, each layer's count rounded to a "
                 "multiple of round_to, sits at or below r_e (rounding down prunes a little "
                 "more)." if rounded else "")),
        Panel("pgmpf.grads", grads_figure(frames["scalars"], step, total, gradient_mask,
                                          many),
              ("Gradient norm of the pruned and kept filters before and after the prior "
               "gradient mask: the mask shrinks the pruned filters' gradient (by 1 - lambda_e, "
               "or to 0 at random) and leaves the kept ones alone, so their two lines coincide."
               if gradient_mask else
               (soft or method.upper()) + " has no gradient mask, so the before and after lines "
               "coincide: pruned filters keep their full gradient and can regrow.")),
        Panel("pgmpf.shock", shock_figure(frames["scalars"], step, config.epochs),
              "Held-out accuracy just before (blue) and just after (red) each epoch's "
              "weight-decay mask: the drop between a pair is the pruning shock, and the "
              "training in the next epoch has to recover it."),
    ])]


def _words(panel: Panel, many: str) -> Panel:
    """The panel's caption with "filters" as `many` (heads and neurons on a transformer)."""
    if many == "filters":
        return panel
    return Panel(panel.key, panel.figure, panel.caption.replace("filters", many)
                 .replace("filter", "head or neuron"), panel.wide)


OWNS = {"head": "its q, k, v rows and c_proj columns", "neuron": "its c_fc row and c_proj column"}


def norms_panels(frames: dict[str, pd.DataFrame], step: int, convs: bool) -> list[Panel]:
    """The layer x filter grid; on a transformer one grid of heads (a row per block's
    attention) and one of MLP neurons (a row per block's MLP), each labelled as such."""
    if convs:
        return [Panel("pgmpf.norms", norms_figure(frames["filters"], frames["order"], step),
                      "Each row is a conv layer and each cell one of its filters at the chosen "
                      "epoch: blue cells are kept, red cells pruned, darker means a larger L2 "
                      "norm relative to the layer's largest, and outlined cells changed mask "
                      "that epoch.", wide=True)]
    out = []
    for suffix, unit, row in ((".attn", "head", "block's attention"), (".mlp", "neuron",
                                                                       "block's MLP")):
        filters, order = _only(frames["filters"], frames["order"], suffix)
        out.append(Panel(f"pgmpf.{unit}s", norms_figure(filters, order, step, unit),
                         f"Each row is a {row} and each cell one of its {unit}s at the chosen "
                         f"epoch, scored by the L2 norm over all of the {unit}'s weights "
                         f"({OWNS[unit]}): "
                         f"blue cells are kept, red cells pruned, darker means a larger norm "
                         f"relative to the row's largest, and outlined cells changed mask that "
                         f"epoch.", wide=True))
    return out


def _only(filters: pd.DataFrame, order: pd.DataFrame, suffix: str
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the layers named *suffix, their `row` codes renumbered from 0."""
    names = [n for n in order.layer if n.endswith(suffix)]
    out = filters[filters.layer.isin(names)].copy()
    out["row"] = out.layer.map({n: i for i, n in enumerate(names)})
    return out, pd.DataFrame({"layer": names})


def _grid(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], values: np.ndarray
          ) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[rows, cols] = values
    return out


def _split_heatmaps(x: Any, y: Any, z: np.ndarray, mask: np.ndarray, raw: np.ndarray, *,
                    zmax: float, hover: str, colorbar: str, ygap: int = 1) -> list[dict]:
    """Kept and pruned cells as two heatmaps (blues, reds) on one grid; NaN cells stay empty."""
    out = []
    for name, keep, scale, y_bar in (("kept", 1.0, KEPT_SCALE, 0.78), ("pruned", 0.0,
                                                                        PRUNED_SCALE, 0.24)):
        cells = np.where(mask == keep, z, np.nan)
        out.append(dict(
            type="heatmap", x=x, y=y, z=cells, customdata=raw, zmin=0, zmax=zmax,
            colorscale=scale, name=name, xgap=1, ygap=ygap, hoverongaps=False,
            colorbar=dict(title=dict(text=f"{name}<br>{colorbar}", side="top"), thickness=10,
                          len=0.45, y=y_bar, yanchor="middle"),
            hovertemplate=hover + f"<br>{name}<extra></extra>"))
    return out


def norms_figure(filters: pd.DataFrame, order: pd.DataFrame, step: int, unit: str = "filter"
                 ) -> go.Figure:
    """Layer x filter (`unit`: head, neuron) heatmap of the L2 norm (relative to the layer's
    largest) at the last epoch end at or before `step`, split by mask, with the filters whose
    mask changed outlined."""
    at = last_step(filters, step)
    if at is None:
        return waiting(WAIT)
    names = list(order.layer)
    now = filters[filters.step == at]
    row, col = now.row.to_numpy(), now["filter"].to_numpy()
    norm, mask_now = now.l2_norm.to_numpy(float), now["mask"].to_numpy(float)
    shape = (len(names), int(col.max()) + 1)
    top = np.zeros(len(names))
    np.maximum.at(top, row, norm)
    rel = np.divide(norm, top[row], out=np.zeros_like(norm), where=top[row] > 0)
    z, mask, raw = (_grid(row, col, shape, v) for v in (rel, mask_now, norm))
    traces = _split_heatmaps(np.arange(shape[1]), names, z, mask, raw, zmax=1.0,
                             colorbar="L2 / layer max",
                             hover=f"%{{y}}, {unit} %{{x}}<br>L2 %{{customdata:.4g}} "
                                   "(%{z:.2f} of the layer's max)")
    before = last_step(filters, at - 1)
    if before is None:        # the mask starts all ones: every pruned filter changed
        old = np.ones(shape)
    else:
        prev = filters[filters.step == before]
        old = _grid(prev.row.to_numpy(), prev["filter"].to_numpy(), shape,
                    prev["mask"].to_numpy(float))
    r, c = np.nonzero((mask != old) & ~np.isnan(mask) & ~np.isnan(old))
    if len(r):
        traces.append(dict(type="scatter", x=c, y=[names[i] for i in r], mode="markers",
                           name=f"mask changed this epoch ({len(r)})", hoverinfo="skip",
                           marker=dict(symbol="square-open", size=11,
                                       color="#111", line=dict(width=2))))
    epoch = int(now.epoch.iloc[0])
    n_pruned = int((mask_now == 0).sum())
    layout = dict(xaxis=axis(f"{unit} index", showgrid=False, range=[-0.5, shape[1] - 0.5]),
                  yaxis=dict(type="category", autorange="reversed", showgrid=False,
                             automargin=True),
                  showlegend=bool(len(r)))
    return figure(traces, layout, height=max(300, 80 + 22 * len(names)),
                  title=f"{unit.capitalize()} norms and mask after epoch {epoch} "
                        f"({n_pruned} of {len(now)} {unit}s pruned)")


def _busiest_layer(layers: pd.DataFrame, n_layers: int) -> int:
    """Position of the layer with the most mask flips (the first on ties, or if none)."""
    d = layers[layers.key == "mask_flips"]
    flips = np.bincount(d.row.to_numpy(int), weights=d.value.to_numpy(float),
                        minlength=n_layers)
    return int(flips.argmax()) if len(flips) else 0


def history_figure(filters: pd.DataFrame, layers: pd.DataFrame, order: pd.DataFrame,
                   step: int, epochs: int) -> go.Figure:
    """Filter x epoch heatmap of one layer's raw L2 norms up to `step`, split by mask."""
    f = upto(filters, step)
    if f.empty:
        return waiting(WAIT)
    names = list(order.layer)
    which = _busiest_layer(upto(layers.dropna(subset=["row"]), step), len(names))
    f = f[f.row == which]
    ends = np.unique(f.epoch.to_numpy())
    if len(ends) > MAX_EPOCH_COLUMNS:     # keep the first and last, evenly spaced between
        ends = ends[np.unique(np.linspace(0, len(ends) - 1, MAX_EPOCH_COLUMNS).round()
                              .astype(int))]
        f = f[f.epoch.isin(ends)]
    col = np.searchsorted(ends, f.epoch.to_numpy())
    rows = f["filter"].to_numpy()
    shape = (int(rows.max()) + 1, len(ends))
    z = _grid(rows, col, shape, f.l2_norm.to_numpy(float))
    mask = _grid(rows, col, shape, f["mask"].to_numpy(float))
    zmax = float(np.nanmax(z)) if np.isfinite(z).any() and np.nanmax(z) > 0 else 1.0
    unit = unit_label(names[which])
    # a row under ~2 px (a 256-neuron MLP) would be all gap: no gap between rows then
    traces = _split_heatmaps(ends, np.arange(shape[0]), z, mask, z, zmax=zmax, colorbar="L2",
                             hover=f"epoch %{{x}}, {unit} %{{y}}<br>L2 %{{customdata:.4g}}",
                             ygap=1 if shape[0] <= HISTORY_ROWS_WITH_GAPS else 0)
    layout = dict(xaxis=axis("epoch", showgrid=False, range=[-0.5, max(epochs, 1) - 0.5]),
                  yaxis=axis(f"{unit} index", autorange="reversed", showgrid=False),
                  showlegend=False)
    return figure(traces, layout, height=min(520, max(300, 120 + 5 * shape[0])),
                  title=f"{names[which]}: {unit} norms over epochs")


def flips_figure(layers: pd.DataFrame, updates: pd.DataFrame, step: int, epochs: int,
                 many: str = "filters") -> go.Figure:
    """Per epoch: filters newly pruned and revived (stacked bars, all layers) and the number of
    pruned filters."""
    d = upto(layers, step)
    if d.empty and updates.empty:
        return waiting(WAIT)
    epoch = d.epoch.to_numpy(int)
    x = np.unique(epoch)
    sums = {}
    for key in ("mask_flips", "filters_revived"):
        sel = (d.key == key).to_numpy()
        sums[key] = np.bincount(epoch[sel], weights=d.value.to_numpy(float)[sel],
                                minlength=int(x.max()) + 1 if len(x) else 0)[x]
    revived = sums["filters_revived"]
    pruned_anew = sums["mask_flips"] - revived
    traces = [dict(type="bar", x=x, y=pruned_anew, name="pruned anew",
                   marker=dict(color=TARGET)),
              dict(type="bar", x=x, y=revived, name="revived",
                   marker=dict(color=REVIVED)),
              line(updates.epoch, numbers(updates.pruned), f"pruned {many}", "#444",
                   mode="lines+markers")]
    x = axis("epoch", range=[-0.5, max(epochs, 1) - 0.5])
    if epochs <= 20:
        x["dtick"] = 1
    return figure(traces, dict(barmode="stack", xaxis=x, showlegend=True,
                               yaxis=axis(many, rangemode="tozero")),
                  height=320, title="Mask changes per epoch")


SERIES = (("r", "keep rate r_e", "keep rate r_e", ACHIEVED),
          ("lambda", "lambda_e", "λ_e (gradient suppression)", method_color("pgmpf")),
          ("alpha", "alpha_e", "α_e (weight-decay mask)", "#2ca02c"))


def schedule_figure(updates: pd.DataFrame, planned: pd.DataFrame | None, knobs: Any,
                    epoch: int | None, epochs: int, rounded: bool = False) -> go.Figure:
    """Recorded r_e, lambda_e, alpha_e per epoch over the planned schedule (dashed), with the
    thresholds as vertical markers and the slider's epoch as a solid one; `rounded`: also the
    share of filters kept once counts are rounded (round_to), planned and recorded."""
    use = {"r"}
    if knobs is None or knobs.gradient_mask:
        use.add("lambda")
    if knobs is None or knobs.alpha_decay:
        use.add("alpha")
    traces = []
    for col, series, label, color in SERIES:
        if col not in use:
            continue
        if planned is not None:
            p = planned[planned.series == series]
            traces.append(line(p.epoch, p.value, "planned", rgba(color, 0.45), width=1.5,
                               dash="dash", legendgroup="planned",
                               showlegend=col == "r", hoverinfo="skip"))
        traces.append(line(updates.epoch, numbers(updates[col]), label, color, width=2.5,
                           mode="lines+markers", marker=dict(size=6)))
    if rounded:
        if planned is not None:
            p = planned[planned.series.str.startswith("kept filters, rounded")]
            traces.append(line(p.epoch, p.value, "planned", rgba(ROUNDED, 0.45), width=1.5,
                               dash="dash", legendgroup="planned", showlegend=False,
                               hoverinfo="skip"))
        traces.append(line(updates.epoch, numbers(updates.kept_share),
                           "kept share (counts rounded to round_to)", ROUNDED, width=2.5,
                           mode="lines+markers", marker=dict(size=6)))
    if knobs is not None:
        at: dict[float, list[str]] = {}
        if knobs.alpha_decay:
            at.setdefault(knobs.alpha_zero_from, []).append("α = 0")
        if knobs.gradient_mask:
            at.setdefault(knobs.lambda_from, []).append(f"λ = {knobs.lambda_final:g}")
        if knobs.asymptotic:
            at.setdefault(knobs.exact_from, []).append("r_e = r")
        # Thresholds as legend entries, not labels over the plot: at small E they sit a few
        # pixels apart and labels would collide.
        for i, (frac, texts) in enumerate(sorted(at.items())):
            x = frac * epochs
            traces.append(line([x, x], [-0.03, 1.05], f"from {frac:g} E: " + ", ".join(texts),
                               MARKER, width=1.5, dash=("dash", "dot", "dashdot")[i % 3],
                               hoverinfo="skip"))
    marks = [] if epoch is None else [vline(epoch, None, dash="solid", color="#444")]
    layout = dict(xaxis=axis("epoch e (computed at its end, used in e + 1)",
                             range=[-0.5, max(epochs, 1)]),
                  yaxis=axis("value", range=[-0.03, 1.05]), showlegend=True, **markers(marks))
    if updates.empty:
        layout["annotations"] = [dict(text=WAIT, showarrow=False, xref="paper", yref="paper",
                                      x=0.5, y=0.5, font=dict(color="#888"))]
    fig = figure(traces, layout, height=340, title="Schedules")
    return fig


def grads_figure(scalars: pd.DataFrame, step: int, total: int, gradient_mask: bool,
                 many: str = "filters") -> go.Figure:
    """The sampled gradient norms of pruned and kept filters, before and after the mask."""
    d = upto(scalars[scalars.key.isin(GRADS)], step)
    if d.empty:
        return waiting("no gradient samples yet: they start once the first filter is pruned")
    style = {"grad_norm_kept_before": ("kept, before mask", ACHIEVED, "solid", 2.5),
             "grad_norm_kept_after": ("kept, after mask", rgba(ACHIEVED, 0.6), "dot", 2),
             "grad_norm_pruned_before": ("pruned, before mask", "#fc9272", "solid", 2.5),
             "grad_norm_pruned_after": ("pruned, after mask", TARGET, "dot" if not gradient_mask
                                        else "solid", 2)}
    traces = []
    for key, (name, color, dash, width) in style.items():
        g = d[d.key == key]
        if len(g):
            traces.append(line(g.step, g.value, name, color, dash=dash, width=width))
    last = max(total, int(scalars.step.max()) if len(scalars) else 0, 1)
    layout = dict(xaxis=axis("step", range=[0, last]),
                  yaxis=axis("gradient L2 norm", rangemode="tozero"), showlegend=True,
                  **markers([vline(step, None, dash="solid", color="#444")]))
    return figure(traces, layout, height=320, title=f"Gradient of pruned vs kept {many}")


def shock_figure(scalars: pd.DataFrame, step: int, epochs: int) -> go.Figure:
    """Accuracy before and after each epoch's weight-decay mask, as one segment per epoch."""
    d = upto(scalars[scalars.key.isin(SHOCK)], step)
    if d.empty:
        return waiting("no decay applied yet: pairs appear once an epoch's mask prunes filters")
    values = [dict(zip(d.epoch[d.key == k], d.value[d.key == k])) for k in SHOCK]
    x = np.array(sorted(set(values[0]) | set(values[1])))
    before, after = (np.array([v.get(e, np.nan) for e in x], dtype=float) for v in values)
    seg_x = np.repeat(x, 3).astype(float)
    seg_y = np.column_stack([before, after, np.full(len(x), np.nan)]).ravel()
    seg_x[2::3] = np.nan
    traces = [dict(type="scatter", x=seg_x, y=seg_y, mode="lines", hoverinfo="skip",
                   line=dict(color="#bbb", width=3), showlegend=False, name="shock"),
              dict(type="scatter", x=x, y=before, mode="markers", name="before the decay mask",
                   marker=dict(color=ACHIEVED, size=9)),
              dict(type="scatter", x=x, y=after, mode="markers", name="after the decay mask",
                   marker=dict(color=TARGET, size=9, symbol="diamond"))]
    dense = scalars[scalars.key == "dense_accuracy"]
    marks = []
    layout: dict[str, Any] = dict(xaxis=axis("epoch", range=[-0.5, max(epochs, 1) - 0.5]),
                                  yaxis=axis("held-out accuracy", range=UNIT_RANGE),
                                  showlegend=True)
    if len(dense):
        marks.append((dict(type="line", x0=0, x1=1, xref="paper", y0=float(dense.value.iloc[0]),
                           y1=float(dense.value.iloc[0]), yref="y",
                           line=dict(color="#7f7f7f", dash="dot", width=1.5)),
                      dict(x=1, xref="paper", xanchor="right", y=float(dense.value.iloc[0]),
                           yref="y", yanchor="bottom", text="dense", showarrow=False,
                           font=dict(size=11, color="#7f7f7f"))))
    layout.update(markers(marks))
    return figure(traces, layout, height=320, title="Pruning shock")
