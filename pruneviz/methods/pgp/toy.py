"""PGP on the Learn page: one conv scored, split into hard and soft halves and reset, epoch by
epoch, through the engine's own criterion_pass, hybrid_split and soft_reset."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch
import torch.nn as nn

from ...learn import Control, Drawn, Toy
from ...masks import Layer, filter_norms
from ...plots import house_layout
from ...schedules import exponential_count
from .math import criterion_pass, hybrid_split, soft_reset, spearman, whole

ACTIVE, SOFT, HARD_NOW, REMOVED = "active", "soft-reset", "removed now", "removed before"


def toy_pgp_net(n_filters: int = 32, seed: int = 0) -> nn.Sequential:
    """conv1 (1 -> n_filters, the layer PGP prunes) -> BN -> ReLU -> pool -> linear, training
    mode; filter scales vary so the scores spread."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, n_filters, 3, padding=1, bias=False), bn1=nn.BatchNorm2d(n_filters),
        relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(n_filters, 10)))
    with torch.no_grad():
        net.conv1.weight.copy_(torch.randn(net.conv1.weight.shape, generator=g) / 3
                               * torch.exp(0.6 * torch.randn(n_filters, 1, 1, 1, generator=g)))
        net.fc.weight.copy_(torch.randn(net.fc.weight.shape, generator=g) / math.sqrt(n_filters))
    return net.train()


def toy_batches(epoch: int, seed: int = 0, n: int = 4,
                batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` minibatches of random 8x8 images with random labels for epoch `epoch`."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return [(torch.randn(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n)]


@dataclass
class PGPToy:
    """PGP on one toy conv over its pruning epochs (weights frozen: no training between)."""

    scores: pd.DataFrame     # epoch, filter, score, status (every filter still present at e)
    counts: pd.DataFrame     # epoch, active, soft, removed, target (after epoch e's pruning)
    cuts: pd.DataFrame       # epoch, n_weak, n_hard, weak_cut, hard_cut, spearman


def pgp_toy(rate: float, epochs: int, hard_fraction: float = 0.5, n_filters: int = 32,
            seed: int = 0) -> PGPToy:
    """Run PGP's per-epoch steps 1-4 on one toy conv: criterion_pass (filter change on the
    epoch's batches), the target count whole(exponential_count(...)), hybrid_split, soft_reset
    of the soft ones; hard ones are reset too and leave the ranking (a removed filter is a dead
    channel: it changes no other filter's gradient). Nothing trains between epochs."""
    net = toy_pgp_net(n_filters, seed)
    layer = Layer("conv1", net.conv1, "bn1", net.bn1)
    present = torch.arange(n_filters)             # original indices still in the layer
    soft_now = torch.empty(0, dtype=torch.long)
    score_rows, count_rows, cut_rows = [], [], []
    removed = 0
    for e in range(epochs):
        last = e == epochs - 1
        score = criterion_pass(net, {"conv1": net.conv1.weight}, toy_batches(e, seed))["conv1"]
        l2 = filter_norms(net.conv1.weight)
        target = exponential_count(n_filters, e, epochs, rate)
        n_keep = whole(target)
        s = score[present]
        hard, soft = hybrid_split(s, len(present) - n_keep, hard_fraction, last)
        hard_o, soft_o = present[hard], present[soft]
        status = {int(i): ACTIVE for i in present}
        status.update({int(i): SOFT for i in soft_o})
        status.update({int(i): HARD_NOW for i in hard_o})
        for i in present.tolist():
            score_rows.append({"epoch": e, "filter": i, "score": score[i].item(),
                               "status": status[i], "was_soft": bool((soft_now == i).any())})
        weak = torch.cat([hard, soft])
        cut_rows.append({"epoch": e, "n_weak": len(weak), "n_hard": len(hard),
                         "weak_cut": s[weak].max().item() if len(weak) else None,
                         "hard_cut": s[hard].max().item() if len(hard) else None,
                         "spearman": spearman(s, l2[present])})
        soft_reset(layer, torch.cat([hard_o, soft_o]))
        removed += len(hard_o)
        keep = torch.ones(len(present), dtype=torch.bool)
        keep[hard] = False
        present, soft_now = present[keep], soft_o
        count_rows.append({"epoch": e, "active": len(present) - len(soft_o), "soft": len(soft_o),
                           "removed": removed, "target": target})
    return PGPToy(pd.DataFrame(score_rows), pd.DataFrame(count_rows), pd.DataFrame(cut_rows))


STATUS_COLORS = {ACTIVE: "#1f77b4", SOFT: "#ffbb78", HARD_NOW: "#d62728"}


def pgp_scores_figure(toy: PGPToy, epoch: int) -> go.Figure:
    """The epoch's scores of the filters still present, sorted, coloured by what happens to
    them; weak and hard cuts as vertical lines between ranks; zero scores marked."""
    s = toy.scores[toy.scores.epoch == epoch].sort_values("score", kind="stable")
    cut = toy.cuts[toy.cuts.epoch == epoch].iloc[0]
    names = [f"f{i}" for i in s["filter"]]
    fig = go.Figure()
    for status, color in STATUS_COLORS.items():
        d = s[s.status == status]
        fig.add_bar(x=[f"f{i}" for i in d["filter"]], y=d.score, name=f"{status} ({len(d)})",
                    marker_color=color,
                    customdata=d.was_soft.map({True: "(soft-reset last epoch)", False: ""}),
                    hovertemplate="filter %{x}: %{y:.4f} %{customdata}<extra></extra>")
    zero = s[s.score == 0]
    if len(zero):
        fig.add_scatter(x=[f"f{i}" for i in zero["filter"]], y=[0] * len(zero), mode="markers",
                        name="score exactly 0", marker=dict(symbol="x", size=9, color="#222"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=names,
                     title_text="filters still present, weakest first", tickangle=-90,
                     tickfont=dict(size=9))
    for n, text, color, dash in ((cut.n_hard, "hard cut", STATUS_COLORS[HARD_NOW], "solid"),
                                 (cut.n_weak, "weak cut", "#ff7f0e", "dash")):
        if n:
            fig.add_vline(x=n - 0.5, line=dict(color=color, width=2, dash=dash))
            fig.add_annotation(x=n - 0.5, y=1.0, yref="paper", yanchor="bottom", text=text,
                               showarrow=False, xanchor="right" if text == "hard cut" else "left",
                               font=dict(size=12, color=color))
    fig.update_yaxes(title_text="score s_i (filter change)")
    return house_layout(fig, f"Pruning epoch {epoch}: {int(cut.n_weak)} weak = {int(cut.n_hard)} "
                        f"hard + {int(cut.n_weak - cut.n_hard)} soft", height=400, top=70,
                   barmode="overlay")


def pgp_counts_figure(toy: PGPToy) -> go.Figure:
    """Active / soft / removed filters after each pruning epoch, with the exponential target."""
    c = toy.counts
    fig = go.Figure()
    for key, name, color in (("active", ACTIVE, STATUS_COLORS[ACTIVE]),
                             ("soft", SOFT, STATUS_COLORS[SOFT]),
                             ("removed", "removed", STATUS_COLORS[HARD_NOW])):
        fig.add_bar(x=c.epoch, y=c[key], name=name, marker_color=color)
    fig.add_scatter(x=c.epoch, y=c.target, name="target n(e)", mode="lines+markers",
                    line=dict(color="#222", width=2))
    fig.update_xaxes(title_text="pruning epoch e", dtick=1)
    fig.update_yaxes(title_text="filters")
    return house_layout(fig, "Filters after each pruning epoch", barmode="stack", height=380)


def draw(v: dict[str, Any]) -> Drawn:
    toy = pgp_toy(v["rate"], v["epochs"], v["hard"])
    epoch = v["epoch"]
    notes = []
    was_soft = toy.scores[(toy.scores.epoch == epoch) & toy.scores.was_soft]
    if len(was_soft):
        notes.append(("info",
            f"The {len(was_soft)} filters soft-reset at the previous epoch score "
            f"{was_soft.score.max():.3g} now: with their weights and BatchNorm γ at zero, the "
            f"channel outputs a constant zero and the gradient that would train them passes "
            f"through γ = 0, so they get none. A soft-reset filter that is a plain conv + BN "
            f"cannot regrow and is the first in the next weak set (soft = removed one epoch "
            f"later)."))
    notes.append(("caption",
                  "The toy is one 32-filter conv on random 8x8 inputs, scored by PGP's own "
                  "criterion pass on each epoch's batches, split by PGP's hybrid_split and "
                  "reset by its soft_reset. It does not train between epochs; a session does."))
    return Drawn(figures=[("scores", pgp_scores_figure(toy, epoch)),
                          ("counts", pgp_counts_figure(toy))], notes=notes)


TOY = Toy(
    title="PGP: hard and soft",
    order=3,
    text=("PGP shrinks the network **while it trains**. After each pruning epoch every filter "
          "is scored by how much it changed, the L1 norm of its summed gradient over the "
          "epoch; the target count falls exponentially; the weakest filters above the target "
          "form the weak set. The weaker half of it is **removed** physically (conv, "
          "BatchNorm and the next layer's input channels), the other half is **soft-reset**: "
          "set to zero, left in place, with its momentum zeroed so stale momentum does not "
          "push it back (PGP's fix over PSFP). It competes again at the next epoch, but "
          "behind a BatchNorm it **cannot regrow**: its weights, γ and β get exactly zero "
          "gradient (in the authors' code too), so it scores 0 and is removed later. The "
          "last pruning epoch removes every weak filter."),
    citation=("Nguyen-Meidine, Granger, Kiran, Pedersoli, Blais-Morin, Progressive Gradient "
              "Pruning, ICPR 2020, arXiv 1906.08746 (docs/methods.md, PGP)."),
    equations=(r"s_i = \Big\lVert \sum_b \nabla_b W_i \Big\rVert_1",
               r"n(e) = N_0\, e^{-\lambda(e + 1)},\quad \lambda = \frac{-\ln(1 - P)}{E}",
               r"\text{weak} = \text{the } (\text{current} - \lceil n(e) \rceil) "
               r"\text{ lowest } s_i",
               r"\text{hard} = \text{the weakest } \lfloor |\text{weak}| / 2 \rfloor",
               r"\text{soft} = \text{the rest of weak}"),
    equation_note="",
    controls=(
        Control("rate", "Filter prune rate P", 0.5, 0.1, 0.99, 0.01),
        Control("epochs", "Pruning epochs E", 6, 2, 12),
        Control("hard", "Hard share of the weak set", 0.5, 0.0, 1.0, 0.05),
        Control("epoch", "Pruning epoch to look at", lambda v: min(1, v["epochs"] - 1), 0,
                lambda v: v["epochs"] - 1),
    ),
    draw=draw,
    widths=(1, 2.2, 1.8),
)
