"""PGP, RPGP and PSFP internals: the filter-change scores and what each pruning epoch did.

Panels (docs/methods.md, PGP; the records they read: records.py):
- the scores of the filters present at the slider's pruning epoch, sorted weakest first, per
  channel group (a conv, or the convs a residual addition ties together, which share one
  score), groups side by side in rows of six, each relative to its largest score (the ranking
  is within a group), coloured by fate (removed now, reset now, kept) with the hard and weak
  cut lines. Past 12 groups (ResNet-56) twelve evenly spaced through the network are shown, so
  early, middle and late layers are all there;
- active / soft-reset / removed filters of all convs after each pruning epoch, stacked, against
  the schedule's target n(e) (dashed ahead: the plan);
- Spearman rank correlation of the criterion with the L2 ranking PSFP would use, per group and
  averaged (PGP and RPGP; PSFP ranks by L2 itself, so it has no such panel);
- the optimizer momentum of the filters reset each epoch, before and after PGP's adaptation;
- FLOPs and parameters of the network each epoch trained, and that epoch's wall time.

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
    axis,
    figure,
    line,
    markers,
    method_color,
    rgba,
    unit_domain,
    vline,
)
from ...store import Store
from ...transformers import TRANSFORMERS
from ...views import (
    Panel,
    filter_pair,
    index_key,
    last_step,
    method_params,
    method_rows,
    numbers,
    upto,
    waiting,
)
from ..roundto import asks_rounding
from ..structures import label as unit_label
from .records import ACTIVE, EPOCHS, HARD, LAYERS, SOFT

TITLE = "Filter-change scores"      # the heading the dashboard gives this view
# The Learn page's colours for the same three fates (toy.STATUS_COLORS).
FATE = {ACTIVE: ("kept", "#1f77b4"), SOFT: ("reset now (soft)", "#ffbb78"),
        HARD: ("removed now (hard)", "#d62728")}
MAX_GROUPS = 12
GROUPS_PER_ROW = 6
WAIT = "waiting for the first pruning epoch: filters are scored at the end of each epoch"


# -- load --------------------------------------------------------------------------------------
def load(store: Store, run_id: str) -> dict[str, pd.DataFrame]:
    """The two PGP tables and the score and status of every group's filters (a group's members
    carry the same values, so only its first conv is kept)."""
    layers = method_rows(store, run_id, LAYERS.name, LAYERS.names)
    epochs = method_rows(store, run_id, EPOCHS.name, EPOCHS.names)
    filters = filter_pair(store, run_id, ("pgp_score", "pgp_status"), index_key(layers))
    leads = set(layers.group.dropna())
    filters = filters[filters.layer.isin(leads)].rename(
        columns={"pgp_score": "score", "pgp_status": "status"})
    return dict(layers=layers, epochs=epochs, filters=filters)


def steps(frames: dict[str, pd.DataFrame]) -> list[int]:
    """Every epoch end (pruning and fine-tuning epochs)."""
    s = set(frames["epochs"].step.tolist()) | set(frames["layers"].step.tolist())
    return sorted(int(x) for x in s)


# -- panels ------------------------------------------------------------------------------------
def panels(frames: dict[str, pd.DataFrame], run: dict[str, Any], step: int) -> list[Panel]:
    config = run["config"]
    method = config.method
    cls, params = method_params(run)
    n_prune = cls.n_pruning_epochs(config.epochs, params) if cls is not None \
        and hasattr(cls, "n_pruning_epochs") else config.epochs
    layers, epochs = upto(frames["layers"], step), upto(frames["epochs"], step)
    psfp = method == "psfp"
    many = "heads and neurons" if config.model in TRANSFORMERS else "filters"
    out = [
        *scores_panels(frames["filters"], layers, step, psfp, many == "filters"),
        Panel("pgp.counts", counts_figure(layers, cls, params, config, n_prune, many),
              "Filters of all convs after each pruning epoch: kept (active), reset to zero "
              "(soft) and removed for good; the line is the schedule's target of filters to "
              "keep, dashed where it is still ahead"
              + ("; dotted, the counts kept once each is rounded to a multiple of round_to "
                 "(the active filters follow it)." if asks_rounding(params) else ".")),
    ]
    if not psfp:
        out.append(Panel("pgp.spearman", spearman_figure(layers, n_prune),
                         "Rank correlation between the score and the L2 norm ranking PSFP would "
                         "use, per group (dots) and averaged (line): near 1 the two criteria "
                         "would prune the same filters, near 0 they disagree."))
    out += [
        Panel("pgp.momentum", momentum_figure(epochs, n_prune, method),
              "Size of the optimizer momentum of the filters reset in each epoch, before and "
              "after the reset: " + ("PSFP leaves it, so the momentum pushes the zeroed "
                                     "filters back." if psfp else
                                     "PGP zeroes it, so reset filters restart from rest "
                                     "(PSFP leaves it, and the zeroed filters are pushed "
                                     "back).")),
        Panel("pgp.size", size_figure(epochs, n_prune, config.epochs, method),
              "Lines: FLOPs and parameters of the network each epoch trained, as a fraction "
              "of the dense one; bars: the epoch's wall time"
              + (" (PSFP only zeroes filters, so its network keeps its size until it is "
                 "compacted after training)." if psfp else
                 ", which falls as removed filters leave the network.")),
    ]
    return out if many == "filters" else [Panel(
        p.key, p.figure, p.caption.replace("filters", many).replace("filter", "head or neuron")
        .replace("convs", "blocks"), p.wide) if not p.key.startswith("pgp.scores") else p
        for p in out]


OWNS = {"head": "its q, k, v rows and c_proj columns", "neuron": "its c_fc row and c_proj column"}
WHERE = {"head": ("blocks.i.attn", "attention"), "neuron": ("blocks.i.mlp", "MLP")}


def scores_panels(filters: pd.DataFrame, layers: pd.DataFrame, step: int, psfp: bool,
                  convs: bool) -> list[Panel]:
    """The sorted scores: one figure of a CNN's groups of filters, or on a transformer one of
    each block's heads and one of its MLP neurons (4 heads beside 256 neurons would not show)."""
    score = "L2 norm" if psfp else "score"
    if convs:
        return [Panel("pgp.scores", scores_figure(filters, layers, step, score),
                      scores_caption(psfp), wide=True)]
    out = []
    for unit, suffix in (("head", ".attn"), ("neuron", ".mlp")):
        mine = layers[layers["group"].astype(str).str.endswith(suffix)]
        out.append(Panel(f"pgp.scores.{unit}s", scores_figure(
            filters[filters.layer.str.endswith(suffix)], mine, step, score, f", {unit}s"),
            scores_caption(psfp, unit), wide=True))
    return out


def scores_caption(psfp: bool, unit: str | None = None) -> str:
    """How to read the sorted scores: a conv's filters, or a transformer's heads or neurons
    (each block's attention or MLP a group)."""
    score = "L2 norm" if psfp else "score (how much the filter changed in the epoch)"
    if unit is not None:
        name, part = WHERE[unit]
        return (f"Each block of bars is one block's {part} ({name}), its {unit}s sorted by "
                + score.replace("filter", unit) + f" over all of a {unit}'s weights ("
                + OWNS[unit] + ") relative to the block's largest, weakest on the left: red "
                "bars left of the hard cut are masked for good (removed when the model is "
                "compacted), orange ones between the hard and weak cuts are reset to zero, blue "
                f"ones are kept. A {unit} reset to zero gets exactly zero gradient, so it scores "
                "0 and goes at a later epoch.")
    return ("Each block of bars is one conv, or the convs a residual addition ties together "
            "(pruned as one group), its filters sorted by " + score + " relative to the "
            "group's largest, weakest on the left: red bars left of the hard cut are removed, "
            "orange ones between the hard and weak cuts are reset to zero, blue ones are kept. "
            "A reset filter competes again, but behind a BatchNorm it cannot regrow: its "
            "weights, γ and β get exactly zero gradient (in the authors' code too), so it "
            "scores 0 and goes at a later epoch.")


def _groups(layers: pd.DataFrame) -> list[str]:
    leads = list(pd.unique(layers.group.dropna()))
    if len(leads) > MAX_GROUPS:
        pick = np.unique(np.linspace(0, len(leads) - 1, MAX_GROUPS).round().astype(int))
        leads = [leads[i] for i in pick]
    return leads


CUT_STYLE = {"hard cut": (TARGET, "solid"), "weak cut": ("#ff7f0e", "dash")}


def scores_figure(filters: pd.DataFrame, layers: pd.DataFrame, step: int,
                  score_name: str = "score", what: str = "") -> go.Figure:
    """Per group, the present filters' scores sorted (relative to the group's largest), side by
    side, up to GROUPS_PER_ROW groups a row; bars coloured by fate, hard and weak cuts drawn.

    One x axis per row, not one per group: a dozen small subplots cost plotly ~100 ms of
    object building and serialising per redraw, a row of groups a few."""
    at = last_step(layers, step)
    if at is None:
        return waiting(WAIT)
    rows = layers[layers.step == at]
    leads = _groups(rows)
    heads = rows[rows.layer == rows.group].drop_duplicates("layer").set_index("layer")
    members = rows.group.value_counts()
    now = filters[filters.step == at]
    # The legend: one entry per fate and cut, from traces that draw nothing.
    traces: list[dict] = [dict(type="scatter", x=[None], y=[None], mode="markers", name=name,
                               marker=dict(symbol="square", size=10, color=color))
                          for name, color in FATE.values()]
    traces += [dict(type="scatter", x=[None], y=[None], mode="lines", name=name,
                    line=dict(color=color, width=2, dash=dash))
               for name, (color, dash) in CUT_STYLE.items()]
    chunks = [leads[i:i + GROUPS_PER_ROW] for i in range(0, len(leads), GROUPS_PER_ROW)]
    gap_y = 0.22 / max(len(chunks), 1)
    height = (1 - gap_y * (len(chunks) - 1)) / len(chunks)
    layout: dict[str, Any] = {}
    any_tiny = False
    for r, chunk in enumerate(chunks):
        sfx = "" if r == 0 else str(r + 1)
        gap = max(3, round(0.08 * max(int(heads.loc[g].before) for g in chunk)))
        row = _score_row(chunk, heads, members, now, gap)
        row_traces, tiny = _row_traces(row, r, dict(xaxis=f"x{sfx}", yaxis=f"y{sfx}"),
                                       score_name)
        traces += row_traces
        any_tiny = any_tiny or tiny
        y1 = 1 - r * (height + gap_y)
        layout[f"xaxis{sfx}"] = dict(domain=[0, 1], anchor=f"y{sfx}", showgrid=False,
                                     range=[-1, row["offset"] - gap + 1], tickvals=row["ticks"],
                                     ticktext=row["labels"], tickfont=dict(size=10))
        layout[f"yaxis{sfx}"] = dict(domain=unit_domain(y1 - height, y1), anchor=f"x{sfx}",
                                     range=[0, 1.05], tickformat=".0%",
                                     title=dict(text=f"{score_name} / group max"))
    if any_tiny:
        traces.append(dict(type="scatter", x=[None], y=[None], mode="markers",
                           name="≈ 0 (marked on the axis)",
                           marker=dict(symbol="x", size=8, color="#444")))
    epoch = int(rows.epoch.iloc[0])
    total = rows.group.nunique()
    shown = "" if len(leads) == total else f", {len(leads)} of {total} groups"
    layout.update(bargap=0.15, showlegend=True)
    return figure(traces, layout, height=60 + 250 * len(chunks),
                  title=f"Sorted scores at pruning epoch {epoch}{shown}{what}")


def _score_row(chunk: list[str], heads: pd.DataFrame, members: pd.Series, now: pd.DataFrame,
               gap: int) -> dict[str, Any]:
    """One row of groups laid side by side: each group's present filters sorted weakest first
    (relative score, fate, filter and score for the hover), its cuts and its tick label."""
    names, scores = now.layer.to_numpy(), now.score.to_numpy(float)
    status, ids = now.status.to_numpy(float), now["filter"].to_numpy()
    fate_names = np.array([FATE[k][0] for k in (ACTIVE, SOFT, HARD)])
    xs, ys, fates, data, groups = [], [], [], [], []
    cuts: dict[str, list] = {"hard cut": [], "weak cut": []}
    ticks, labels = [], []
    offset = 0
    for lead in chunk:
        sel = (names == lead) & ~np.isnan(scores)
        sc, st, f = scores[sel], status[sel], ids[sel]
        order = np.lexsort((f, sc))          # weakest first; ties by filter index
        sc, st, f = sc[order], st[order], f[order]
        top = sc.max() if len(sc) and sc.max() > 0 else 1.0
        head = heads.loc[lead]
        n_weak, n_hard = int(head.before - head.target_count), int(head.hard_now)
        xs.append(offset + np.arange(len(sc)))
        ys.append(sc / top)
        fates.append(st)
        data.append(np.column_stack([f, sc]))
        groups += [f"{lead}<br>{fate_names[int(v)]}<br>{unit_label(lead)}" for v in st]
        for name, n in (("hard cut", n_hard), ("weak cut", n_weak)):
            if n > 0:
                cuts[name] += [offset + n - 0.5, offset + n - 0.5, None]
        extra = int(members.get(lead, 1)) - 1
        ticks.append(offset + (int(head.before) - 1) / 2)
        labels.append(f"{lead}{f' +{extra}' if extra else ''}<br>"
                      f"{n_hard} hard, {n_weak - n_hard} soft")
        offset += int(head.before) + gap
    return dict(x=np.concatenate(xs), y=np.concatenate(ys), fate=np.concatenate(fates),
                data=np.concatenate(data), groups=groups, cuts=cuts, ticks=ticks,
                labels=labels, offset=offset)


def _row_traces(row: dict[str, Any], r: int, axes: dict[str, str], score_name: str
                ) -> tuple[list[dict], bool]:
    """A row's bars coloured by fate, its near-zero scores marked on the axis, its cut lines;
    and whether any score was near zero."""
    fate_scale = [[0.0, FATE[ACTIVE][1]], [0.5, FATE[SOFT][1]], [1.0, FATE[HARD][1]]]
    x, y, st = row["x"], row["y"], row["fate"]
    traces = [dict(type="bar", x=x, y=y, customdata=row["data"],
                   text=np.array(row["groups"], dtype=object), textposition="none",
                   name=f"scores, row {r + 1}", showlegend=False, **axes,
                   marker=dict(color=st, cmin=0, cmax=2, colorscale=fate_scale,
                               line=dict(width=0)),
                   hovertemplate="%{text} %{customdata[0]}<br>"
                                 f"{score_name} %{{customdata[1]:.4g}} "
                                 "(%{y:.2f} of the group's largest)<extra></extra>")]
    # A bar under 1% of its group's largest does not show (reset filters score 0 or nearly):
    # mark those on the axis in their fate's colour.
    tiny = y < 0.01
    if tiny.any():
        traces.append(dict(type="scatter", x=x[tiny], y=np.zeros(int(tiny.sum())),
                           mode="markers", name=f"score ≈ 0, row {r + 1}",
                           showlegend=False, hoverinfo="skip", cliponaxis=False,
                           marker=dict(symbol="x", size=7, color=st[tiny], cmin=0, cmax=2,
                                       colorscale=fate_scale, line=dict(width=0)),
                           **axes))
    for name, xs_cut in row["cuts"].items():
        if xs_cut:
            color, dash = CUT_STYLE[name]
            traces.append(line(xs_cut, [0, 1.05, None] * (len(xs_cut) // 3),
                               f"{name}, row {r + 1}", color, dash=dash,
                               showlegend=False, hoverinfo="skip", **axes))
    return traces, bool(tiny.any())


def counts_figure(layers: pd.DataFrame, cls: Any, params: Any, config: Any, n_prune: int,
                  many: str = "filters") -> go.Figure:
    """Stacked active / soft / removed filters (all convs) per pruning epoch, with n(e)."""
    if layers.empty:
        return waiting(WAIT)
    per = layers.groupby("epoch")[["active", "soft", "removed", "target"]].sum()
    x = per.index.to_numpy()
    traces = [dict(type="bar", x=x, y=per[key].to_numpy(), name=name,
                   marker=dict(color=color))
              for key, name, color in (("active", "active", FATE[ACTIVE][1]),
                                       ("soft", "soft (reset)", FATE[SOFT][1]),
                                       ("removed", "removed", FATE[HARD][1]))]
    first = layers[layers.epoch == layers.epoch.min()]
    if cls is not None and hasattr(cls, "keep_target") and first.epoch.iloc[0] == 0:
        n0 = first.before.to_numpy(int)          # filters present before any pruning
        plan = [sum(cls.keep_target(int(n), e, n_prune, config.rate, params) for n in n0)
                for e in range(n_prune)]
        traces.append(line(np.arange(n_prune), plan, "planned target", rgba("#222222", 0.5),
                           dash="dash", width=1.5, hoverinfo="skip"))
    traces.append(line(x, per.target.to_numpy(), "target n(e)", "#222", mode="lines+markers",
                       width=2))
    if asks_rounding(params):
        kept = layers.groupby("epoch").target_count.sum()
        traces.append(line(kept.index.to_numpy(), kept.to_numpy(), "kept, rounded to round_to",
                           "#9467bd", mode="lines+markers", width=2, dash="dot"))
    layout = dict(barmode="stack", showlegend=True,
                  xaxis=axis("pruning epoch", range=[-0.5, max(n_prune, 1) - 0.5],
                             dtick=1 if n_prune <= 20 else None),
                  yaxis=axis(f"{many} (all {'convs' if many == 'filters' else 'blocks'})",
                             rangemode="tozero"))
    return figure(traces, layout, height=320, title=f"Active, soft and removed {many}")


def spearman_figure(layers: pd.DataFrame, n_prune: int) -> go.Figure:
    """Spearman's rho per group (dots, hover names the group) and its mean per epoch."""
    d = layers[layers.layer == layers.group]
    rho = numbers(d.spearman)
    if d.empty or np.isnan(rho).all():
        return waiting(WAIT)
    ok = ~np.isnan(rho)
    x, groups = d.epoch.to_numpy()[ok], d.group.to_numpy()[ok]
    mean = pd.Series(rho[ok]).groupby(x).mean()
    jitter = (pd.Series(groups).astype("category").cat.codes.to_numpy() % 7 - 3) * 0.03
    traces = [dict(type="scatter", x=x + jitter, y=rho[ok], mode="markers", name="each group",
                   text=groups, marker=dict(color=rgba(MARKER, 0.7), size=6),
                   hovertemplate="%{text}<br>rho %{y:.3f}<extra></extra>"),
              line(mean.index.to_numpy(), mean.to_numpy(), "mean over groups",
                   method_color("pgp"), mode="lines+markers", width=2.5)]
    zero = (dict(type="line", x0=0, x1=1, xref="paper", y0=0, y1=0, yref="y",
                 line=dict(color=MARKER, width=1)), None)
    layout = dict(xaxis=axis("pruning epoch", range=[-0.5, max(n_prune, 1) - 0.5],
                             dtick=1 if n_prune <= 20 else None),
                  yaxis=axis("Spearman rho with L2", range=[-1.05, 1.05]), showlegend=True,
                  **markers([zero]))
    return figure(traces, layout, height=320, title="Agreement with the L2 ranking")


def momentum_figure(epochs: pd.DataFrame, n_prune: int, method: str) -> go.Figure:
    """Momentum norm of the filters reset each pruning epoch, before and after adaptation."""
    d = epochs[epochs.phase == "prune"]
    if d.empty:
        return waiting(WAIT)
    x = d.epoch.to_numpy()
    before, after = numbers(d.momentum_before), numbers(d.momentum_after)
    # A zero bar has no height: label it, so "reset to 0" reads as a value, not a gap (only
    # where there was momentum to reset: the last epoch removes its weak filters instead).
    zero = np.isfinite(after) & (after == 0) & (np.nan_to_num(before) > 0)
    traces = [dict(type="bar", x=x, y=before, name="before the reset",
                   marker=dict(color=rgba(ACHIEVED, 0.55))),
              dict(type="bar", x=x, y=after, name="after the reset",
                   marker=dict(color=method_color(method)),
                   text=np.where(zero, "0: reset", ""), textposition="outside",
                   textangle=-90, textfont=dict(color=method_color(method), size=11),
                   cliponaxis=False)]
    layout = dict(barmode="group", showlegend=True,
                  xaxis=axis("pruning epoch", range=[-0.5, max(n_prune, 1) - 0.5],
                             dtick=1 if n_prune <= 20 else None),
                  yaxis=axis("momentum L2 norm", rangemode="tozero"))
    return figure(traces, layout, height=320, title="Momentum of reset filters")


def size_figure(epochs: pd.DataFrame, n_prune: int, n_epochs: int, method: str) -> go.Figure:
    """FLOPs and params of the trained network (fraction of dense) and epoch wall time."""
    if epochs.empty:
        return waiting(WAIT)
    x = epochs.epoch.to_numpy()
    flops, params = numbers(epochs.flops_trained), numbers(epochs.params_trained)
    # Bars on the first y axis (seconds, left), lines on the overlaying one (fraction of dense,
    # right): plotly draws an overlaying axis's traces on top, so the lines stay visible.
    traces = [dict(type="bar", x=x, y=numbers(epochs[key]), name=name, marker=dict(color=color),
                   hovertemplate="%{y:.3f} s<extra>" + name + "</extra>")
              for key, name, color in (("epoch_time", "training time", "#c7c7c7"),
                                       ("criterion_time", "criterion pass", "#ff9896"),
                                       ("surgery_time", "surgery", "#9467bd"))]
    for values, name, color, dash in ((flops, "FLOPs", method_color(method), "solid"),
                                      (params, "parameters", ACHIEVED, "dot")):
        traces.append(line(x, values / values[0], name, color, dash=dash, mode="lines+markers",
                           customdata=values, width=2.5, yaxis="y2",
                           hovertemplate="%{customdata:.4g} (%{y:.1%} of dense)<extra>"
                                          + name + "</extra>"))
    marks = [vline(n_prune - 0.5, "fine-tuning →", dash="dash")] if n_prune < n_epochs else []
    now = numbers(epochs.flops.iloc[-1:])[0] / flops[0]
    layout = dict(barmode="stack", showlegend=True, **markers(marks),
                  xaxis=axis("epoch", range=[-0.5, max(n_epochs, 1) - 0.5],
                             dtick=1 if n_epochs <= 20 else None),
                  yaxis=axis("seconds", rangemode="tozero"),
                  yaxis2=axis("fraction of dense", overlaying="y", side="right",
                              range=[0, 1.05], tickformat=".0%", showgrid=False,
                              tickvals=[0, 0.25, 0.5, 0.75, 1]))
    title = "Network size and epoch time"
    if np.isfinite(now):
        title += f" (now {now:.0%} of dense FLOPs)"
    return figure(traces, layout, height=340, title=title)
