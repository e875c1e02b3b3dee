"""The dense start a run pruned from, checked: its own train and held-out curves before any
pruning, and a warning when it was under-trained (guards.dense_start_warnings)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..guards import dense_curves, dense_start_warnings
from ..plots_compare import dense_start_figure
from ..session import dense_config, dense_key
from ..store import Store


def dense_check(store: Store, config) -> tuple[str | None, pd.DataFrame, list[str]]:
    """(the dense baseline's run id, its per-epoch curves, its warnings) for a run's config;
    (None, empty, []) when the run starts from scratch or its baseline is not trained yet."""
    if config.start != "dense":
        return None, pd.DataFrame(), []
    dense = dense_config(config)
    hit = store.dense_lookup(dense_key(dense))
    if hit is None:
        return None, pd.DataFrame(), []
    curves = dense_curves(store.scalars([hit[0]], ["train_accuracy", "test_accuracy"]))
    return hit[0], curves, dense_start_warnings(curves, dense.epochs)


def dense_start_view(store: Store, config, key: str) -> None:
    """An expander with the dense start's curves, open when they warn."""
    run_id, curves, warnings = dense_check(store, config)
    if run_id is None:
        return
    with st.expander("Dense start, before pruning" + (" (under-trained)" if warnings else ""),
                     expanded=bool(warnings), icon=":material/school:"):
        for w in warnings:
            st.warning(w, icon=":material/warning:")
        st.plotly_chart(dense_start_figure(curves), key=f"{key}.dense")
        st.caption(f"Dense baseline run `{run_id}`: shared by every run of this model, data, "
                   f"seed and dense epochs.")


def dense_warnings(store: Store, configs: dict[str, dict]) -> list[str]:
    """Each distinct dense start's warnings among compared runs' configs, once per start."""
    from ..config import SessionConfig

    seen, out = set(), []
    for config in configs.values():
        run_id, _, warnings = dense_check(store, SessionConfig.from_dict(config))
        if run_id is not None and run_id not in seen:
            seen.add(run_id)
            out += [f"(dense start `{run_id}`) {w}" for w in warnings]
    return out
