"""PGP, RPGP and PSFP internals: the filter-change scores and what each pruning epoch did.

Panels (METHODS.md sec. 3, "Record"):
- the scores of the filters present at the slider's pruning epoch, sorted weakest first, one
  small plot per channel group (a conv, or the convs a residual addition ties together, which
  share one score), coloured by fate (removed now, reset now, kept) with the hard and weak cut
  lines. Small multiples keep every group's own scale; past 12 groups (ResNet-56) twelve evenly
  spaced through the network are shown, so early, middle and late layers are all there;
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

from ..plots import ACHIEVED, TARGET, _axis, _figure, _line, _rgba, _unit, method_color
from ..store import Store
from . import Panel
from ._filter_views import (
    MARK,
    array,
    last_at,
    markers,
    method_params,
    table,
    upto,
    vline,
    waiting,
)

LAYER_COLUMNS = ["layer", "group", "target", "target_count", "before", "soft", "removed",
                 "hard_now", "spearman", "momentum_before", "momentum_after", "active"]
EPOCH_COLUMNS = ["phase", "epoch_time", "flops_trained", "params_trained", "criterion_time",
                 "surgery_time", "momentum_before", "momentum_after", "flops", "params",
                 "filters", "target_sparsity"]
ACTIVE, SOFT, HARD = 0, 1, 2                      # pgp_status, as pruneviz.methods.pgp writes it
# The Learn page's colours for the same three fates (pruneviz.plots_learn.STATUS_COLORS).
FATE = {ACTIVE: ("kept", "#1f77b4"), SOFT: ("reset now (soft)", "#ffbb78"),
        HARD: ("removed now (hard)", "#d62728")}
MAX_GROUPS = 12
WAIT = "waiting for the first pruning epoch: filters are scored at the end of each epoch"


# -- load --------------------------------------------------------------------------------------
def load(store: Store, run_id: str) -> dict[str, pd.DataFrame]:
    """The two PGP tables and the score and status of every group's filters (a group's members
    carry the same values, so only its first conv is kept)."""
    layers = table(store, run_id, "pgp_layers", LAYER_COLUMNS)
    epochs = table(store, run_id, "pgp_epochs", EPOCH_COLUMNS)
    # One key per read keeps each in recording order, so the two line up row for row.
    score = store.filters(run_id, ["pgp_score"])
    status = store.filters(run_id, ["pgp_status"])
    filters = score[["step", "epoch", "layer", "filter"]].reset_index(drop=True)
    filters["score"] = score.value.to_numpy()
    same = (len(score) == len(status)
            and (score.step.to_numpy() == status.step.to_numpy()).all()
            and (score.layer.to_numpy() == status.layer.to_numpy()).all()
            and (score["filter"].to_numpy() == status["filter"].to_numpy()).all())
    if same:
        filters["status"] = status.value.to_numpy()
    else:                      # a read that caught one key's rows without the other's
        filters = filters.merge(status.rename(columns={"value": "status"})
                                [["step", "layer", "filter", "status"]],
                                on=["step", "layer", "filter"], how="inner")
    leads = set(layers.group.dropna())
    filters = filters[filters.layer.isin(leads)].reset_index(drop=True)
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
    out = [
        Panel("pgp.scores", scores_figure(frames["filters"], layers, step,
                                          "L2 norm" if psfp else "score"),
              "Each small plot is one group of convs pruned together, its filters sorted by "
              + ("L2 norm" if psfp else "score (how much the filter changed in the epoch)")
              + ", weakest on the left: red bars left of the hard cut are removed, orange ones "
              "between the hard and weak cuts are reset to zero and may regrow, blue ones are "
              "kept.", wide=True),
        Panel("pgp.counts", counts_figure(layers, cls, params, config, n_prune),
              "Filters of all convs after each pruning epoch: kept (active), reset to zero "
              "(soft) and removed for good; the line is the schedule's target of filters to "
              "keep, dashed where it is still ahead."),
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
    return out


def _groups(layers: pd.DataFrame) -> list[str]:
    leads = list(pd.unique(layers.group.dropna()))
    if len(leads) > MAX_GROUPS:
        pick = np.unique(np.linspace(0, len(leads) - 1, MAX_GROUPS).round().astype(int))
        leads = [leads[i] for i in pick]
    return leads


def scores_figure(filters: pd.DataFrame, layers: pd.DataFrame, step: int,
                  score_name: str = "score") -> go.Figure:
    """Small multiples: per group, the present filters' scores sorted, by fate, with cuts."""
    at = last_at(layers, step)
    if at is None:
        return waiting(WAIT)
    rows = layers[layers.step == at]
    now = filters[(filters.step == at) & filters.score.notna()]
    leads = _groups(rows)
    members = rows.groupby("group").layer.count()
    n = len(leads)
    per_row = 4 if n > 6 else max(1, min(3, n))
    n_rows = -(-n // per_row)
    gap_x, gap_y = 0.05, 0.16 / max(n_rows, 1)
    width = (1 - gap_x * (per_row - 1)) / per_row
    height = (1 - gap_y * (n_rows - 1)) / n_rows
    traces: list[dict] = []
    layout: dict[str, Any] = {}
    notes = []
    named: set[str] = set()

    def first(name: str) -> bool:
        """One legend entry per name across the small plots: the first one that draws it."""
        new = name not in named
        named.add(name)
        return new

    for i, lead in enumerate(leads):
        r, c = divmod(i, per_row)
        x0, y1 = c * (width + gap_x), 1 - r * (height + gap_y)
        sfx = "" if i == 0 else str(i + 1)
        axes = dict(xaxis=f"x{sfx}", yaxis=f"y{sfx}")
        row = rows[rows.layer == lead].iloc[0]
        mine = now[now.layer == lead].sort_values(["score", "filter"], kind="stable")
        rank = np.arange(len(mine))
        for status, (name, color) in FATE.items():
            sel = (mine.status == status).to_numpy()
            if not sel.any():
                continue
            traces.append(dict(type="bar", x=rank[sel], y=mine.score.to_numpy()[sel],
                               customdata=mine["filter"].to_numpy()[sel], name=name,
                               marker=dict(color=color, line=dict(width=0)),
                               legendgroup=name, showlegend=first(name), **axes,
                               hovertemplate=f"{lead}<br>filter %{{customdata}}, rank %{{x}}"
                                             f"<br>score %{{y:.4g}}<br>{name}<extra></extra>"))
        top = float(mine.score.max()) * 1.05 if len(mine) and mine.score.max() > 0 else 1.0
        # A bar under 1% of the plot's height does not show (reset filters score 0 or nearly):
        # mark those on the axis in their fate's colour.
        tiny = (mine.score < 0.01 * top).to_numpy()
        if tiny.any():
            traces.append(dict(type="scatter", x=rank[tiny], y=np.zeros(int(tiny.sum())),
                               mode="markers", name="score ≈ 0", legendgroup="tiny",
                               showlegend=first("score ≈ 0"),
                               marker=dict(symbol="x", size=7, line=dict(width=0),
                                           color=[FATE[int(v)][1] for v in
                                                  mine.status.to_numpy()[tiny]]),
                               cliponaxis=False, customdata=mine.score.to_numpy()[tiny],
                               text=mine["filter"].to_numpy()[tiny], **axes,
                               hovertemplate=f"{lead}<br>filter %{{text}}: score "
                                             "%{customdata:.3g}<extra></extra>"))
        n_weak = int(row.before - row.target_count)
        n_hard = int(row.hard_now)
        for cut, name, color, dash in ((n_hard, "hard cut", TARGET, "solid"),
                                       (n_weak, "weak cut", "#ff7f0e", "dash")):
            if cut > 0:
                traces.append(_line([cut - 0.5, cut - 0.5], [0, top], name, color, dash=dash,
                                    legendgroup=name, showlegend=first(name),
                                    hoverinfo="skip", **axes))
        layout[f"xaxis{sfx}"] = dict(domain=_unit(x0, x0 + width), anchor=f"y{sfx}",
                                     range=[-0.7, max(int(row.before), 1) - 0.3],
                                     title=dict(text="rank, weakest first")
                                     if r == n_rows - 1 else None)
        layout[f"yaxis{sfx}"] = dict(domain=_unit(y1 - height, y1), anchor=f"x{sfx}",
                                     range=[0, top],
                                     title=dict(text=score_name) if c == 0 else None)
        extra = int(members.get(lead, 1)) - 1
        label = lead + (f" +{extra} tied" if extra else "")
        notes.append(dict(text=f"{label}: {n_hard} hard, {n_weak - n_hard} soft",
                          x=x0 + width / 2, y=y1, xref="paper", yref="paper", xanchor="center",
                          yanchor="bottom", showarrow=False, font=dict(size=11)))
    epoch = int(rows.epoch.iloc[0])
    shown = "" if n == rows.group.nunique() else f", {n} of {rows.group.nunique()} groups"
    layout.update(annotations=notes, barmode="overlay", bargap=0.1, showlegend=True)
    return _figure(traces, layout, height=80 + 190 * n_rows,
                   title=f"Sorted scores at pruning epoch {epoch}{shown}")


def counts_figure(layers: pd.DataFrame, cls: Any, params: Any, config: Any, n_prune: int
                  ) -> go.Figure:
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
        traces.append(_line(np.arange(n_prune), plan, "planned target", _rgba("#222222", 0.5),
                            dash="dash", width=1.5, hoverinfo="skip"))
    traces.append(_line(x, per.target.to_numpy(), "target n(e)", "#222", mode="lines+markers",
                        width=2))
    layout = dict(barmode="stack", showlegend=True,
                  xaxis=_axis("pruning epoch", range=[-0.5, max(n_prune, 1) - 0.5],
                              dtick=1 if n_prune <= 20 else None),
                  yaxis=_axis("filters (all convs)", rangemode="tozero"))
    return _figure(traces, layout, height=320, title="Active, soft and removed filters")


def spearman_figure(layers: pd.DataFrame, n_prune: int) -> go.Figure:
    """Spearman's rho per group (dots, hover names the group) and its mean per epoch."""
    d = layers[layers.layer == layers.group]
    rho = array(d.spearman)
    if d.empty or np.isnan(rho).all():
        return waiting(WAIT)
    ok = ~np.isnan(rho)
    x, groups = d.epoch.to_numpy()[ok], d.group.to_numpy()[ok]
    mean = pd.Series(rho[ok]).groupby(x).mean()
    jitter = (pd.Series(groups).astype("category").cat.codes.to_numpy() % 7 - 3) * 0.03
    traces = [dict(type="scatter", x=x + jitter, y=rho[ok], mode="markers", name="each group",
                   text=groups, marker=dict(color=_rgba(MARK, 0.7), size=6),
                   hovertemplate="%{text}<br>rho %{y:.3f}<extra></extra>"),
              _line(mean.index.to_numpy(), mean.to_numpy(), "mean over groups",
                    method_color("pgp"), mode="lines+markers", width=2.5)]
    zero = (dict(type="line", x0=0, x1=1, xref="paper", y0=0, y1=0, yref="y",
                 line=dict(color=MARK, width=1)), None)
    layout = dict(xaxis=_axis("pruning epoch", range=[-0.5, max(n_prune, 1) - 0.5],
                              dtick=1 if n_prune <= 20 else None),
                  yaxis=_axis("Spearman rho with L2", range=[-1.05, 1.05]), showlegend=True,
                  **markers([zero]))
    return _figure(traces, layout, height=320, title="Agreement with the L2 ranking")


def momentum_figure(epochs: pd.DataFrame, n_prune: int, method: str) -> go.Figure:
    """Momentum norm of the filters reset each pruning epoch, before and after adaptation."""
    d = epochs[epochs.phase == "prune"]
    if d.empty:
        return waiting(WAIT)
    x = d.epoch.to_numpy()
    traces = [dict(type="bar", x=x, y=array(d.momentum_before), name="before the reset",
                   marker=dict(color=_rgba(ACHIEVED, 0.55))),
              dict(type="bar", x=x, y=array(d.momentum_after), name="after the reset",
                   marker=dict(color=method_color(method)))]
    layout = dict(barmode="group", showlegend=True,
                  xaxis=_axis("pruning epoch", range=[-0.5, max(n_prune, 1) - 0.5],
                              dtick=1 if n_prune <= 20 else None),
                  yaxis=_axis("momentum L2 norm", rangemode="tozero"))
    return _figure(traces, layout, height=320, title="Momentum of reset filters")


def size_figure(epochs: pd.DataFrame, n_prune: int, n_epochs: int, method: str) -> go.Figure:
    """FLOPs and params of the trained network (fraction of dense) and epoch wall time."""
    if epochs.empty:
        return waiting(WAIT)
    x = epochs.epoch.to_numpy()
    flops, params = array(epochs.flops_trained), array(epochs.params_trained)
    # Bars on the first y axis (seconds, left), lines on the overlaying one (fraction of dense,
    # right): plotly draws an overlaying axis's traces on top, so the lines stay visible.
    traces = [dict(type="bar", x=x, y=array(epochs[key]), name=name, marker=dict(color=color),
                   hovertemplate="%{y:.3f} s<extra>" + name + "</extra>")
              for key, name, color in (("epoch_time", "training time", "#c7c7c7"),
                                       ("criterion_time", "criterion pass", "#ff9896"),
                                       ("surgery_time", "surgery", "#9467bd"))]
    for values, name, color, dash in ((flops, "FLOPs", method_color(method), "solid"),
                                      (params, "parameters", ACHIEVED, "dot")):
        traces.append(_line(x, values / values[0], name, color, dash=dash, mode="lines+markers",
                            customdata=values, width=2.5, yaxis="y2",
                            hovertemplate="%{customdata:.4g} (%{y:.1%} of dense)<extra>"
                                          + name + "</extra>"))
    marks = [vline(n_prune - 0.5, "fine-tuning →", dash="dash")] if n_prune < n_epochs else []
    now = array(epochs.flops.iloc[-1:])[0] / flops[0]
    layout = dict(barmode="stack", showlegend=True, **markers(marks),
                  xaxis=_axis("epoch", range=[-0.5, max(n_epochs, 1) - 0.5],
                              dtick=1 if n_epochs <= 20 else None),
                  yaxis=_axis("seconds", rangemode="tozero"),
                  yaxis2=_axis("fraction of dense", overlaying="y", side="right",
                               range=[0, 1.05], tickformat=".0%", showgrid=False,
                               tickvals=[0, 0.25, 0.5, 0.75, 1]))
    title = "Network size and epoch time"
    if np.isfinite(now):
        title += f" (now {now:.0%} of dense FLOPs)"
    return _figure(traces, layout, height=340, title=title)
