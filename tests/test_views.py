"""The view contract, over every method family: its view is found from each of its methods'
classes, has a title, and draws a run that has recorded nothing yet (a live run's first redraw)
as panels with unique keys; its Learn toy draws its default setting."""

import importlib

import plotly.graph_objects as go
import pytest

from pruneviz import learn, views
from pruneviz.config import SessionConfig
from pruneviz.methods import families, family_module, load_all

FAMILIES = families()


def _methods(family: str) -> list[str]:
    view = importlib.import_module(f"pruneviz.methods.{family}.view")
    return sorted(n for n, cls in load_all().items() if family_module(cls, "view") is view)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_of_the_family_finds_the_familys_view(family):
    names = _methods(family)
    assert names, f"no registered method of {family} draws with its view"
    for name in names:
        view = views.view(name)
        assert view.__name__ == f"pruneviz.methods.{family}.view" and view.TITLE


@pytest.mark.parametrize("family", FAMILIES)
def test_the_view_draws_a_run_that_has_recorded_nothing(family, store):
    for name in _methods(family):
        run_id = store.create_run(SessionConfig(method=name), status="running")
        view = views.view(name)
        frames = view.load(store, run_id)
        assert view.steps(frames) == []
        panels = view.panels(frames, store.run(run_id), 0)
        assert panels and len({p.key for p in panels}) == len(panels)
        assert all(isinstance(p.figure, go.Figure) for p in panels)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_learn_toy_draws_its_default_setting(family):
    toy = dict(learn.toys())[family]
    values = {}
    for c in toy.controls:
        values[c.name] = c.options[0] if c.kind == "radio" else c.resolve("default", values)
    drawn = toy.draw(values)
    keys = [key for key, _ in drawn.figures]
    assert len(keys) >= 2 and len(set(keys)) == len(keys)
    assert all(isinstance(fig, go.Figure) for _, fig in drawn.figures)
