"""A new method family is one folder: a throwaway family written to a temporary directory and put
on pruneviz.methods' search path is listed by the CLI, offered by the dashboard's rendered method
picker, drawn by the rendered internals view and Learn page, and honours the contract tests'
checks, with no edit anywhere else."""

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import pruneviz.methods as methods
from pruneviz import learn, views
from pruneviz.cli import main
from pruneviz.methods import base
from pruneviz.session import run_session
from pruneviz.store import Store
from pruneviz.workers import stop_workers
from tests.helpers import (
    check_declarations,
    check_session_contract,
    declared_tables,
    decode_plotly,
)

ROOT = Path(__file__).resolve().parents[1]

FAMILY = "throwaway"
NAME = "throwaway_l1"
FILES = {
    "__init__.py": '''
        """A throwaway family for tests/test_new_family.py."""

        from .engine import Throwaway

        __all__ = ["Throwaway"]
        ''',
    "records.py": '''
        from pruneviz.records import Table, declare

        CUTS = Table("throwaway_cuts", {"layers": "layers pruned", "rate": "the prune rate"})
        SCALARS = declare("scalar", {"throwaway_layers": "layers pruned before training"})
        ''',
    "engine.py": '''
        from dataclasses import dataclass

        from pruneviz.config import param
        from pruneviz.masks import apply_masks, layerwise_magnitude
        from pruneviz.methods.base import Method, register

        from .records import CUTS


        @dataclass(frozen=True)
        class Params:
            scale: float = param(1.0, "Unused: declared as every family declares its Params.",
                                 min=0.0, max=2.0)


        @register
        class Throwaway(Method):
            name = "throwaway_l1"
            summary = "Layer-wise magnitude before training (a test's throwaway family)."
            Params = Params

            def before_training(self, ctx):
                weights = {l.param: l.module.weight.detach() for l in ctx.layers}
                ctx.masks = layerwise_magnitude(weights, ctx.config.rate)
                apply_masks(ctx.model, ctx.masks)
                ctx.mark_pruned()
                CUTS.write(ctx.record, layers=len(ctx.layers), rate=ctx.config.rate)
                ctx.record.scalar("throwaway_layers", len(ctx.layers))
        ''',
    "view.py": '''
        import plotly.graph_objects as go

        from pruneviz.views import Panel, method_rows

        from .records import CUTS

        TITLE = "Throwaway cuts"


        def load(store, run_id):
            return {"cuts": method_rows(store, run_id, CUTS.name, CUTS.names)}


        def steps(frames):
            return sorted(int(s) for s in frames["cuts"].step)


        def panels(frames, run, step):
            d = frames["cuts"]
            return [Panel("throwaway.cuts", go.Figure(go.Bar(x=d.step, y=d.layers)))]
        ''',
    "toy.py": '''
        import plotly.graph_objects as go

        from pruneviz.learn import Control, Drawn, Toy


        def draw(values):
            return Drawn(figures=[("bars", go.Figure(go.Bar(y=[values["rate"]])))])


        TOY = Toy(title="Throwaway", text="A toy.", citation="None.", equations=("x = 1",),
                  equation_note="", controls=(Control("rate", "Rate", 0.5, 0.1, 0.9, 0.1),),
                  draw=draw)
        ''',
}


@pytest.fixture
def family(tmp_path, monkeypatch):
    """The throwaway family on pruneviz.methods' path; registry and imports undone after."""
    folder = tmp_path / FAMILY
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    yield folder
    base.REGISTRY.pop(NAME, None)
    for module in [m for m in sys.modules if m.startswith(f"pruneviz.methods.{FAMILY}")]:
        del sys.modules[module]


def test_the_cli_lists_the_new_familys_method(family, capsys):
    assert main(["methods", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed[NAME]["params"][0]["name"] == "scale"
    assert NAME in methods.load_all()             # what the dashboard's method picker lists


def test_the_internals_view_and_the_learn_page_find_the_new_family(family):
    view = views.view(NAME)
    assert view is not None and view.TITLE == "Throwaway cuts"
    assert view.__name__ == f"pruneviz.methods.{FAMILY}.view"
    toys = dict(learn.toys())
    assert toys[FAMILY].title == "Throwaway"
    assert toys[FAMILY].draw({"rate": 0.3}).figures[0][0] == "bars"


def test_the_new_family_passes_the_contract_checks_and_its_view_draws_its_run(
        family, shared_store, fast_config, monkeypatch):
    check_declarations(NAME)
    check_session_contract(NAME, shared_store, fast_config, monkeypatch)
    assert set(declared_tables(methods.get_method(NAME))) == {"throwaway_cuts"}
    run_id = shared_store.runs().query("method == @NAME").run_id.iloc[-1]
    view = views.view(NAME)
    frames = view.load(shared_store, run_id)
    panels = view.panels(frames, shared_store.run(run_id), view.steps(frames)[-1])
    assert len(frames["cuts"]) == 1                       # one row, written before training
    assert shared_store.scalars(run_id, ["throwaway_layers"]).value.tolist() == [
        frames["cuts"].layers[0]]                         # its declared scalar, recorded
    assert panels[0].figure.data[0].y[0] == frames["cuts"].layers[0] > 0


@pytest.fixture
def dashboard(family, tmp_path, monkeypatch, fast_config):
    """The dashboard (AppTest) on a store whose one run is a finished run of the throwaway
    method; the workers the dashboard starts on it are stopped after."""
    store = Store(tmp_path / "runs")
    summary = run_session(fast_config(method=NAME, rate=0.5, epochs=1, start="scratch"), store)
    assert summary["status"] == "completed", summary.get("error")
    monkeypatch.setenv("PRUNEVIZ_STORE", str(store.root))
    yield AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run(), store, summary
    stop_workers(store)


def test_the_live_pages_picker_offers_the_new_method_and_its_internals_view_draws_its_run(
        dashboard):
    app, store, summary = dashboard
    at = app.switch_page("pages/live.py").run()
    assert not at.exception
    assert NAME in at.selectbox(key="live.method").options
    assert at.selectbox(key=f"live.show.{summary['run_id']}").value == summary["run_id"]
    assert f"#### Throwaway cuts ({NAME})" in [m.value for m in at.markdown]
    chart = next(c for c in at.get("plotly_chart") if c.key == "live.internals.throwaway.cuts")
    bars = decode_plotly(json.loads(chart.proto.spec))["data"][0]
    cuts = store.rows(summary["run_id"], "throwaway_cuts")
    assert bars["type"] == "bar" and bars["y"] == cuts.layers.tolist() and bars["y"][0] > 0


def test_the_learn_page_renders_a_tab_with_the_new_familys_toy(dashboard):
    app, _, _ = dashboard
    at = app.switch_page("pages/learn_methods.py").run()
    assert not at.exception
    assert "Throwaway" in [t.label for t in at.tabs]
    charts = {c.key: decode_plotly(json.loads(c.proto.spec)) for c in at.get("plotly_chart")}
    assert charts[f"learn.{FAMILY}.bars"]["data"][0]["y"] == [0.5]     # the toy's rate control
