"""A run's method internals (pruneviz.views) in the page: a step slider and the panels.

The slider follows the newest record while a run trains (unless the user has moved it back) and
scrubs through the recorded history of live and finished runs alike. Methods without a view of
their own (one-shot baselines) get their recorded tables drawn generically.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import views
from ..plots import table_figure
from ..plots_transformers import head_grid_figure, neuron_counts_figure
from ..store import ACTIVE, Store
from ..transformers import TRANSFORMERS

TABLE_ROWS = 2000            # newest rows of a generic method table


def step_slider(steps: list[int], key: str, *, label: str = "Step",
                opening: int | None = None) -> int:
    """A select slider over `steps` that follows the newest step (a live run adds steps under
    it, and it lands on the last one when the run ends) until the user moves it; a moved
    slider stays where it was put until "Latest step" is pressed. `opening` is where a view
    opens when it is not following (a finished run's most telling step)."""
    if len(steps) == 1:
        st.caption(f"{label}: {steps[0]} (the only one recorded so far)")
        return steps[0]
    # Following is decided here, never from the widget's value sent back by the browser: a poll
    # cut short by the next one leaves the browser holding an older step, which read as "the
    # user picked it" and froze the slider mid-run. So a following slider gets a new widget key
    # whenever the newest step changes (a fresh widget starts at the value given here).
    state = st.session_state.setdefault(f"{key}.state", {
        "follow": opening not in steps, "picked": opening, "pins": 0})
    follow = state["follow"] or state["picked"] not in steps
    widget = f"{key}.at{steps[-1]}" if follow else f"{key}.pin{state['pins']}"
    value = steps[-1] if follow else state["picked"]

    def moved() -> None:
        picked = st.session_state[widget]
        if state["follow"] or state["picked"] not in steps:
            state["pins"] += 1            # a new pinned widget: no stale value from an old pin
        state.update(picked=picked, follow=picked == steps[-1])

    slider, latest = st.columns([12, 2], vertical_alignment="bottom")
    step = slider.select_slider(label, steps, value=value, key=widget, on_change=moved,
                                help="Drag back to see the method's state at an earlier step; "
                                     "it then stays there until you press Latest step.")
    latest.button("Latest step", key=f"{key}.latest", icon=":material/skip_next:",
                  disabled=follow, on_click=state.update, kwargs={"follow": True},
                  help="Follow the newest recorded step again (a live run's, as it trains).")
    return step


def pin_step(key: str, step: int) -> None:
    """Move the step slider `key` to `step` and keep it there (as a user's drag does); call
    it from a widget callback."""
    state = st.session_state.setdefault(f"{key}.state", {"follow": True, "picked": None,
                                                        "pins": 0})
    state.update(follow=False, picked=step, pins=state["pins"] + 1)


def internals_view(store: Store, run: dict, key: str = "internals") -> None:
    run_id, method = run["run_id"], run["config"].method
    if run["config"].model in TRANSFORMERS:
        _structures(store, run_id, key)
    module = views.view(method)
    if module is None:
        _generic_tables(store, run_id, key)
        return
    frames = module.load(store, run_id)
    steps = module.steps(frames)
    st.markdown(f"#### {module.TITLE} ({method})")
    if not steps:
        st.info("Waiting for the method's first records (they come at the first epoch or "
                "pruning step)." if run["status"] in ACTIVE else
                "This run recorded no internals (it ended before the method's first record).")
        return
    # A finished run opens on its last step, as its charts above end there (opening on the
    # view's telling step read as a run shown mid-way); that step is one click away.
    telling = None
    if run["status"] not in ACTIVE and hasattr(module, "default_step"):
        telling = module.default_step(frames)
    step = step_slider(steps, f"{key}.step.{run_id}")
    if telling in steps and telling != steps[-1] and step != telling:
        st.button(f"Show step {telling}", key=f"{key}.telling.{run_id}",
                  icon=":material/center_focus_strong:", on_click=pin_step,
                  args=(f"{key}.step.{run_id}", telling),
                  help="The step this view shows best (FGGP and GMP: the last pruning step "
                       "that cut many weights; the schedule's final steps cut a handful, too "
                       "few to show a selection).")
    panels = module.panels(frames, run, step)
    half: list[views.Panel] = []
    for panel in panels:
        if panel.wide:
            _draw(panel, key)
        else:
            half.append(panel)
    for i in range(0, len(half), 2):
        for col, panel in zip(st.columns(2), half[i:i + 2]):
            with col:
                _draw(panel, key)


def _structures(store: Store, run_id: str, key: str) -> None:
    """A transformer run's heads and neurons, where its method scores and masks them."""
    filters = store.filters(run_id, ["l2_norm", "mask"])
    filters = filters[filters.layer.str.endswith((".attn", ".mlp"))]
    if filters.empty:
        return
    left, right = st.columns(2)
    left.plotly_chart(head_grid_figure(filters), key=f"{key}.heads")
    right.plotly_chart(neuron_counts_figure(filters), key=f"{key}.neurons")


def _draw(panel: views.Panel, key: str) -> None:
    st.plotly_chart(panel.figure, key=f"{key}.{panel.key}")
    if panel.caption:
        st.caption(panel.caption)


def _generic_tables(store: Store, run_id: str, key: str) -> None:
    tables = {t: store.rows(run_id, t).tail(TABLE_ROWS) for t in store.tables(run_id)}
    if not tables:
        st.caption("This method records no internals beyond sparsity: it prunes by magnitude "
                   "in one shot (see the per-layer views above).")
        return
    for tab, (name, rows) in zip(st.tabs(list(tables)), tables.items()):
        with tab:
            st.plotly_chart(table_figure(rows, name), key=f"{key}.table.{name}")
            st.dataframe(_tail(rows), hide_index=True)


def _tail(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.drop(columns="run_id").tail(200)
