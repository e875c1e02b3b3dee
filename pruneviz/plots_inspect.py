"""Figures of the Inspect page: DataFrames and tensors from pruneviz.inspect in, plotly out."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .inspect import Comparison
from .plots import house_layout
from .sensitivity import layer_sensitivity

SIDE_LEGEND = dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top", yref="paper")
STATUS_COLORS = {"kept": "#1f77b4", "partly pruned": "#9467bd", "pruned": "#d62728"}


def _sym(t: torch.Tensor) -> float:
    return float(t.abs().max().clamp_min(1e-12))


def attribution_figure(images: torch.Tensor, comparison: Comparison,
                       classes: list[str]) -> go.Figure:
    """One row per image: the input, the dense and pruned maps (channels summed, one shared
    symmetric colour scale) and their difference (its own symmetric scale)."""
    maps = {k: v.sum(1).cpu() for k, v in comparison.maps.items()}
    table = comparison.table
    n = len(images)
    titles = []
    for label, dense, pruned, cos in zip(table.label, table.dense_pred, table.pruned_pred,
                                         table.similarity):
        titles += [f"label {classes[int(label)]}", f"dense: {classes[int(dense)]}",
                   f"pruned: {classes[int(pruned)]}", f"difference (cos {cos:.2f})"]
    fig = make_subplots(rows=n, cols=4, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.3 / max(n, 1))
    both = _sym(torch.cat([maps["dense"], maps["pruned"]]))
    diff = _sym(maps["difference"])
    for i in range(n):
        img = images[i].clamp(0, 1).cpu()
        if img.shape[0] == 3:
            fig.add_trace(go.Image(z=(img.permute(1, 2, 0) * 255).round().numpy()),
                          row=i + 1, col=1)
        else:
            fig.add_trace(go.Heatmap(z=img[0].flip(0).numpy(), colorscale="gray_r",
                                     showscale=False), row=i + 1, col=1)
        for col, key, zmax in ((2, "dense", both), (3, "pruned", both),
                               (4, "difference", diff)):
            fig.add_trace(go.Heatmap(
                z=maps[key][i].flip(0).numpy(), zmin=-zmax, zmax=zmax, colorscale="RdBu_r",
                showscale=(i == 0 and col in (3, 4)), colorbar=dict(
                    len=min(0.9, 1.5 / n), x=1.02 if col == 3 else 1.16, y=1.0, yanchor="top",
                    thickness=12, title=dict(text="difference" if col == 4 else "maps",
                                             side="top"))),
                row=i + 1, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for k in range(2, 4 * n + 1):       # square pixels in every panel
        fig.update_layout({f"yaxis{k}": dict(scaleanchor=f"x{k}")})
    fig.update_layout(yaxis=dict(scaleanchor="x"))
    fig.update_layout(height=max(220 * n, 260), margin=dict(l=10, r=130, t=40, b=10))
    return fig


def agreement_figure(per_class: pd.DataFrame) -> go.Figure:
    """Per class: dense accuracy, pruned accuracy and agreement of the top-1 predictions."""
    long = per_class.melt(id_vars="class", value_vars=["dense_accuracy", "pruned_accuracy",
                                                       "agreement"], var_name="series")
    fig = px.bar(long, x="class", y="value", color="series", barmode="group",
                 labels={"value": "fraction of the class's held-out images"})
    fig.update_xaxes(type="category")
    return house_layout(fig, None, height=360, top=30, yaxis_range=[0, 1.02])


def contribution_figure(contrib: pd.DataFrame, layer: str) -> go.Figure:
    """Filters of `layer` sorted by |contribution| in the dense model, coloured by what the run
    did to them (kept / pruned, or the fraction of weights kept when it pruned inside filters)."""
    df = contrib.sort_values("abs_contribution", ascending=False).copy()
    df["filter"] = df["filter"].astype(str)
    partly = (df.status == "partly pruned").any()
    fig = px.bar(df, x="filter", y="abs_contribution",
                 color="kept_fraction" if partly else "status",
                 color_discrete_map=STATUS_COLORS, color_continuous_scale="Viridis",
                 range_color=[0, 1], hover_data=["contribution", "kept_fraction", "norm"],
                 labels={"abs_contribution": "mean |attribution| to the true label",
                         "kept_fraction": "weights kept", "filter": f"{layer} filter (sorted)"})
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=df["filter"].tolist())
    return house_layout(fig, None, height=360, top=30)


def sensitivity_heatmap(scan: pd.DataFrame, value: str = "accuracy") -> go.Figure:
    """Layer x rate heatmap of `value` (accuracy, loss or accuracy_drop), layers in model order."""
    table = scan.pivot(index="layer", columns="rate", values=value).loc[scan.layer.unique()]
    fig = px.imshow(table, text_auto=".2f", aspect="auto",
                    color_continuous_scale="Viridis" if value == "accuracy" else "Viridis_r",
                    labels={"x": "rate pruned in this layer alone", "y": "layer", "color": value})
    fig.update_xaxes(type="category")
    return house_layout(fig, None, height=max(260, 28 * len(table) + 120), top=30)


def sensitivity_curves(scan: pd.DataFrame, dense_accuracy: float | None = None) -> go.Figure:
    """Accuracy vs rate, one curve per layer; the dense accuracy as a dashed line."""
    fig = px.line(scan, x="rate", y="accuracy", color="layer", markers=True,
                  labels={"rate": "rate pruned in this layer alone"})
    if dense_accuracy is not None:
        fig.add_hline(y=dense_accuracy, line_dash="dash", annotation_text="dense")
    # One entry per layer (55 in a resnet56): a scrolling column beside the plot, not rows.
    return house_layout(fig, None, height=380, top=30, legend=SIDE_LEGEND)


def suggestion_figure(rates: dict[str, float], scan: pd.DataFrame, target: float) -> go.Figure:
    """Suggested rate per layer with the layer's sensitivity on hover; the target dashed."""
    sens = layer_sensitivity(scan)
    df = pd.DataFrame({"layer": list(rates), "rate": list(rates.values()),
                       "sensitivity": [float(sens[k]) for k in rates]})
    fig = px.bar(df, x="layer", y="rate", hover_data=["sensitivity"], text_auto=".2f",
                 labels={"rate": "suggested rate", "sensitivity": "mean accuracy drop"})
    fig.add_hline(y=target, line_dash="dash", annotation_text=f"global target {target:g}")
    return house_layout(fig, None, height=340, top=30, yaxis_range=[0, 1])


def attention_figure(dense: list[torch.Tensor], pruned: list[torch.Tensor], layer: int
                     ) -> go.Figure:
    """One block's attention maps per head: the dense start's row above the pruned model's (a
    head the run removed or zeroed is marked; it contributes nothing)."""
    d, p = dense[layer], pruned[layer]
    heads = d.shape[0]
    fig = make_subplots(rows=2, cols=heads, horizontal_spacing=0.02, vertical_spacing=0.08,
                        subplot_titles=[f"dense head {h}" for h in range(heads)]
                        + [f"pruned head {h}" for h in range(heads)])
    for row, maps in ((1, d), (2, p)):
        for h in range(heads):
            fig.add_trace(go.Heatmap(z=maps[h].numpy() if h < maps.shape[0] else None,
                                     zmin=0, zmax=1, coloraxis="coloraxis"), row=row, col=h + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return house_layout(fig, f"Block {layer}: attention of one held-out input (rows: queries)",
                        height=200 + 160 * 2, top=64,
                        coloraxis={"colorscale": "Viridis", "colorbar": {"title": "weight"}})
