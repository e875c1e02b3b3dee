"""A method family's Learn toy (pruneviz.learn.Toy) as a tab: text, equations, controls, figures."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ..learn import Control, Toy

ICONS = {"info": ":material/info:", "warning": ":material/warning:"}


def toy_tab(toy: Toy, family: str) -> None:
    """Draw one family's toy; widget and chart keys are learn.<family>.<name>."""
    text, eqs = st.columns([1.4, 1], gap="large")
    with text:
        st.markdown(toy.text)
        st.caption(toy.citation)
    with eqs:
        for eq in toy.equations:
            st.latex(eq)
        if toy.equation_note:
            st.markdown(toy.equation_note)
    controls, left, right = st.columns(list(toy.widths), gap="medium")
    values: dict[str, Any] = {}
    with controls:
        for c in toy.controls:
            values[c.name] = _widget(c, values, f"learn.{family}.{c.name}")
    drawn = toy.draw(values)
    # Two metrics a row: three side by side in the narrow controls column cut their labels
    # and values off ("0…").
    for i in range(0, len(drawn.metrics), 2):
        row = drawn.metrics[i:i + 2]
        for col, (label, value, help_) in zip(controls.columns(2), row):
            col.metric(label, value, help=help_)
    figures = list(drawn.figures)
    for col, (key, fig) in zip((left, right), figures[:2]):
        col.plotly_chart(fig, key=f"learn.{family}.{key}")
    asides = [t for kind, t in drawn.notes if kind == "aside"]
    for key, fig in figures[2:]:
        main, side = st.columns([2, 1], gap="large")
        main.plotly_chart(fig, key=f"learn.{family}.{key}")
        for t in asides:
            side.markdown(t)
        asides = []
    for kind, t in drawn.notes:
        if kind == "caption":
            st.caption(t)
        elif kind in ICONS:
            getattr(st, kind)(t, icon=ICONS[kind])
    if drawn.table is not None:
        title, rows = drawn.table
        with st.expander(title):
            st.dataframe(rows, hide_index=True, key=f"learn.{family}.table")


def _widget(c: Control, values: dict[str, Any], key: str) -> Any:
    default = c.resolve("default", values)
    if c.kind == "select":
        return st.select_slider(c.label, list(c.options), default, key=key, help=c.help)
    if c.kind == "radio":
        return st.radio(c.label, list(c.options), key=key, help=c.help)
    lo, hi = c.resolve("lo", values), c.resolve("hi", values)
    if c.kind == "number":
        return st.number_input(c.label, lo, hi, default, key=key, help=c.help)
    if c.step is None:
        return st.slider(c.label, lo, hi, default, key=key, help=c.help)
    return st.slider(c.label, lo, hi, default, c.step, key=key, help=c.help)
