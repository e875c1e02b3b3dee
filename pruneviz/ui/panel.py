"""A run's metrics panel (pruneviz.report): is the pruned model really smaller and faster?"""

from __future__ import annotations

import streamlit as st

from ..panel_text import speed_verdict
from ..report import metrics_panel, panel_frame
from .text import plain


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def metrics_panel_view(store, run_id: str, key: str) -> None:
    """Headline ratios, the plain-language notes and the full table of a completed run."""
    st.markdown("#### Smaller and faster?")
    with st.spinner("Compacting the model and timing it (sweep runs are measured when first "
                    "viewed)..."):
        panel = metrics_panel(store, run_id)
    for warning in panel.get("warnings", []):
        st.warning(warning, icon=":material/warning:")
    if "error" in panel:
        st.warning(f"No metrics panel for this run: {plain(panel['error'])}")
        return
    p = panel
    cols = st.columns(4)
    same = p["params_compact"] == p["params_dense"] and p["flops_compact"] == p["flops_dense"]
    cols[0].metric("Parameters, compact", f"{p['params_compact']:,}",
                   f"{_ratio(p['params_dense'], p['params_compact'])} fewer",
                   delta_color="off", delta_arrow="off", border=True,
                   help=f"Dense: {p['params_dense']:,}. Zero filters are physically removed; "
                        "unstructured zeros stay in place.")
    cols[1].metric("FLOPs, compact", f"{p['flops_compact'] / 1e6:,.2f} M",
                   f"{_ratio(p['flops_dense'], p['flops_compact'])} fewer",
                   delta_color="off", delta_arrow="off", border=True,
                   help=f"Dense: {p['flops_dense'] / 1e6:,.2f} M per image "
                        "(torch.utils.flop_counter).")
    for col, batch in zip(cols[2:], (1, 64)):
        rows = [r for r in p["latency"] if r["batch"] == batch and r["device"] == "cpu"]
        if rows:
            r = rows[0]
            col.metric(f"CPU latency, batch {batch}", f"{r['compact_ms']:.2f} ms",
                       speed_verdict(r, same), delta_color="off", delta_arrow="off",
                       border=True,
                       help=f"Dense: {r['dense_ms']:.2f} ms. Median of {r['reps']} runs after "
                            f"warm-up, {r['threads']} threads, measured when the run finished. "
                            f"A speed change is named only outside the measured noise "
                            f"(interquartile range {r.get('spread', 0):.0%} of the median) and "
                            f"10 %.")
    for note in p["notes"]:
        st.caption(f":material/info: {note}")
    with st.expander("All numbers"):
        st.dataframe(panel_frame(p).astype({"dense": str, "compact": str}), hide_index=True,
                     key=f"{key}.table")
