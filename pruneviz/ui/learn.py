"""A method family's Learn toy (pruneviz.learn.Toy) as a tab: text, equations, controls, figures."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ..config import ConfigError
from ..learn import MODEL_SHAPES, Control, Toy, model_structure
from ..modelspec import builtin_names, short_name
from ..plots_learn import structure_figure
from .model_box import file_stamp
from .text import chart_text, plain

SHORT_LABEL = 10          # characters of a metric label that fit half the controls column
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
    # and values off ("0…"); one a row when a label is long ("Wanda keeps, framed" was cut
    # at a 1400-px window with the sidebar open).
    per_row = 1 if any(len(label) > SHORT_LABEL for label, _, _ in drawn.metrics) else 2
    for i in range(0, len(drawn.metrics), per_row):
        row = drawn.metrics[i:i + per_row]
        for col, (label, value, help_) in zip(controls.columns(per_row), row):
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


MODEL_EXAMPLES = ("torchvision:mobilenet_v3_small", "torchvision:resnet18")
COUPLING = (
    "A **coupled group** is a set of layers whose output channels must be removed together, "
    "or the network stops adding up. In a **residual add** (`x + f(x)`) channel *k* of the "
    "shortcut is added to channel *k* of the block's last conv, and every block after it adds "
    "to the same stream: dropping channel *k* means dropping it from all of them at once. A "
    "**concatenation** glues channels side by side, so the layer reading it loses the "
    "matching slice of its inputs. A **depthwise conv** filters each channel on its own, so "
    "its channels are simply those of the layer feeding it. Filter methods rank and remove "
    "channels per group; unstructured methods zero single weights and ignore the groups.")


@st.cache_data(max_entries=16, show_spinner="Building and tracing the model...")
def _traced(spec: str, shape: tuple[int, int, int], stamp: float
            ) -> tuple[pd.DataFrame, str] | str:
    """model_structure, or why the spec cannot be built or traced (cached too)."""
    try:
        return model_structure(spec, shape)
    except ConfigError as e:
        return str(e)
    except Exception as e:          # a user's model may fail anywhere in its forward
        return f"tracing failed: {type(e).__name__}: {e}"


def model_section() -> None:
    """How pruneviz sees a model: pick or type a spec and an input shape; the traced layers
    with their coupled groups and what stays dense, and what coupling means."""
    st.header("How pruneviz sees your model")
    controls, figure = st.columns([1, 2.8], gap="large")
    with controls:
        st.markdown("Before pruning, pruneviz traces the model once on a small input: it finds "
                    "every conv and linear layer, which of them are **coupled**, and what "
                    "must stay dense.")
        example = st.selectbox("Example model", [*builtin_names(), *MODEL_EXAMPLES],
                               index=list(builtin_names()).index("resnet20"),
                               key="learn.model.example")
        typed = st.text_input(
            "Model spec", key="learn.model.spec", placeholder="or type one: mynets.py:build",
            help="Overrides the example: a built-in name, torchvision:NAME, MODULE:FACTORY or "
                 "PATH.py:FACTORY (the same specs as the Live form's model box).")
        shape_name = st.radio("Input shape", list(MODEL_SHAPES), horizontal=True,
                              key="learn.model.shape")
    spec = typed.strip() or example
    result = _traced(spec, MODEL_SHAPES[shape_name], file_stamp(spec.rpartition(":")[0]))
    if isinstance(result, str):
        figure.error(f"**{'Model spec' if typed.strip() else 'Example model'}**: "
                     f"{plain(result)}", icon=":material/error:")
        return
    table, error = result
    groups = table.group.max() if len(table) else 0
    dense = int((table["stays dense"] != "").sum())
    with figure:
        shown = table.assign(layer=table.layer.map(chart_text))
        st.plotly_chart(structure_figure(shown, chart_text(
            f"{short_name(spec)}: {len(table[table.width > 0])} layers, {groups} coupled "
            f"groups, {dense} stay dense")), key="learn.model.figure")
        if error:
            st.warning(f"Torch-Pruning could not trace it ({plain(error)}): unstructured "
                       f"methods only.", icon=":material/warning:")
        with st.expander("Every layer, its group and why it stays dense"):
            st.dataframe(table, hide_index=True, key="learn.model.table")
    st.caption(COUPLING)
