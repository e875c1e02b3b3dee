"""A comparison as one self-contained HTML file: the aggregated table, the paired verdicts, the
charts (plotly with its JavaScript inlined once, so the file opens offline), every run's row,
its config and its warnings. No streamlit here; every user-written string is HTML-escaped."""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone

import pandas as pd
import plotly.graph_objects as go

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
.warn { background: #fff6e0; border-left: 4px solid #e69f00; padding: 4px 10px; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        # float noise (6e-17 for a zero sd) prints as 0
        text = "" if value != value else f"{0.0 if abs(value) < 1e-12 else value:.4g}"
        return f"<td>{text}</td>"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape("" if value is None else str(value))}</td>'


def table_html(df: pd.DataFrame) -> str:
    """A DataFrame as a plain HTML table, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def report_html(*, title: str, aggregated: pd.DataFrame, verdicts: list[str],
                runs: pd.DataFrame, configs: dict[str, dict], warnings: list[str],
                figures: list[go.Figure]) -> str:
    """The report: `aggregated` (stats.aggregate), `verdicts` (sentences), `runs` (one row per
    run, as the Compare table), `configs` (run id -> config dict), `warnings` (sentences) and
    `figures`; plotly.js is inlined in the first chart only."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by pruneviz: "
             f"{len(runs)} run(s).</p>"]
    if warnings:
        parts.append("<h2>Warnings</h2>" + "".join(
            f'<p class="warn">{html.escape(w)}</p>' for w in warnings))
    parts.append("<h2>Across seeds</h2>")
    parts.append(table_html(aggregated) if not aggregated.empty
                 else "<p>No finished runs to aggregate.</p>")
    parts.append("<p>CI: the mean's 95 % t-interval, mean ± t(0.975, n−1)·sd/√n. Drop: dense "
                 "minus final (positive: quality lost).</p>")
    if verdicts:
        parts.append("<h2>Paired verdicts</h2><ul>" + "".join(
            f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>")
    if figures:
        parts.append("<h2>Charts</h2>")
        for i, fig in enumerate(figures):
            # The page's own theme is absent here: a plain white template, room for the ticks.
            fig = go.Figure(fig).update_layout(template="plotly_white",
                                               margin=dict(l=70, r=20))
            parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                     default_width="100%"))
    parts.append("<h2>Every run</h2>" + table_html(runs))
    parts.append("<h2>Configs</h2>")
    for run_id, config in configs.items():
        parts.append(f"<h3>{html.escape(run_id)}</h3><pre>"
                     f"{html.escape(json.dumps(config, indent=1, default=str))}</pre>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>")
