"""Figures of a transformer run's structures: the layer x head grid (score and mask per head)
and the MLP neurons kept per block, from the filter rows a structure method records (layer
`blocks.i.attn` for heads, `blocks.i.mlp` for neurons, keys l2_norm and mask)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def structure_rows(filters: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The newest step's rows of `kind` ("attn": heads, "mlp": neurons), one per structure,
    with columns block, index, l2_norm, mask."""
    rows = filters[filters.layer.str.endswith(f".{kind}")]
    if rows.empty:
        return pd.DataFrame(columns=["block", "index", "l2_norm", "mask"])
    rows = rows[rows.step == rows.step.max()]
    wide = rows.pivot_table(index=["layer", "filter"], columns="key", values="value").reset_index()
    wide["block"] = wide.layer.str.split(".").str[1].astype(int)
    return wide.rename(columns={"filter": "index"})[["block", "index", "l2_norm", "mask"]]


def head_grid_figure(filters: pd.DataFrame) -> go.Figure:
    """Blocks (rows) x heads (columns), coloured by each head's L2 norm over its weights; a
    pruned head is crossed out."""
    heads = structure_rows(filters, "attn")
    z = heads.pivot(index="block", columns="index", values="l2_norm")
    mask = heads.pivot(index="block", columns="index", values="mask")
    fig = go.Figure(go.Heatmap(
        z=z.values, x=[f"head {h}" for h in z.columns], y=[f"block {b}" for b in z.index],
        colorscale="Viridis", colorbar={"title": "L2 norm"},
        text=[["pruned" if m == 0 else "kept" for m in row] for row in mask.values],
        texttemplate="%{text}", hovertemplate="%{y}, %{x}: norm %{z:.3f}, %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Attention heads: score and mask per head", height=120 + 60 * len(z))
    return fig


def neuron_counts_figure(filters: pd.DataFrame) -> go.Figure:
    """MLP hidden neurons kept and pruned per block."""
    n = structure_rows(filters, "mlp")
    per = n.groupby("block")["mask"].agg(["sum", "count"])
    fig = go.Figure([go.Bar(x=[f"block {b}" for b in per.index], y=per["sum"], name="kept"),
                     go.Bar(x=[f"block {b}" for b in per.index], y=per["count"] - per["sum"],
                            name="pruned")])
    fig.update_layout(barmode="stack", title="MLP neurons per block", yaxis_title="neurons")
    return fig
