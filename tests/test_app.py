"""Every dashboard page under streamlit's AppTest: renders, has its widgets, runs through the UI,
queues a grid, and shows bad input inline (never a traceback)."""

import ast
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pruneviz.config import SessionConfig, param
from pruneviz.methods import REGISTRY, Method
from pruneviz.store import ACTIVE, Store  # noqa: F401 (ACTIVE: used in a query string)
from pruneviz.workers import stop_workers
from tests.helpers import wait_done as _wait_done

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"pages/live.py": "Live session", "pages/compare.py": "Compare", "pages/runs.py": "Runs",
         "pages/inspect.py": "Inspect", "pages/learn_basics.py": "What gets pruned",
         "pages/learn_schedules.py": "When to prune: one-shot or gradual",
         "pages/learn_methods.py": "The four methods, one toy each",
         "pages/learn_speed.py": "Why sparsity is not speed"}
TIMEOUT = 60


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory):
    """One store for this module's UI runs, so the dense baseline trains once; the worker
    processes the dashboard started on it are stopped at the end."""
    root = tmp_path_factory.mktemp("ui") / "runs"
    yield root
    stop_workers(Store(root))


@pytest.fixture
def app(ui_root, monkeypatch):
    monkeypatch.setenv("PRUNEVIZ_STORE", str(ui_root))
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()


def _page(app, path):
    return app.switch_page(path).run()


def _fast_live_form(at, epochs=2):
    at.number_input(key="live.epochs").set_value(epochs)
    at.number_input(key="live.dense_epochs").set_value(3)
    at.selectbox(key="live.device").set_value("cpu")
    return at.run()


def _errors(at):
    return [e.value for e in at.error]


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_without_exceptions(app, path):
    at = _page(app, path)
    assert not at.exception
    assert at.title[0].value == PAGES[path]


@pytest.mark.parametrize("path", ["pages/runs.py", "pages/learn_basics.py"])
def test_a_first_request_for_a_page_url_still_goes_through_the_router(ui_root, monkeypatch, path):
    """Streamlit starts in its legacy pages/ mode: the first request of a fresh server for a
    page's URL would run the page alone (no sidebar, no wide layout)."""
    monkeypatch.setenv("PRUNEVIZ_STORE", str(ui_root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page(path).run()        # the first run asks for the page, as a deep link does
    assert not at.exception
    assert at.title[0].value == PAGES[path]
    assert at.multiselect(key="selected_runs") is not None      # app.py's sidebar ran


def test_every_page_is_in_the_navigation():
    app_py = (ROOT / "app.py").read_text()
    assert {p.name for p in (ROOT / "pages").glob("*.py")} == {Path(p).name for p in PAGES}
    assert all(f'"{p}"' in app_py for p in PAGES)


def test_rates_suggested_on_inspect_prefill_the_live_form(app):
    app.session_state["prefill"] = {"layer_rates": "conv2=0.3, fc1=0.9", "rate": 0.7}
    at = _page(app, "pages/live.py")
    assert not at.exception
    assert at.selectbox(key="live.method").value == "slr"
    assert at.number_input(key="live.rate").value == pytest.approx(0.7)
    assert at.text_input(key="live.slr.layer_rates").value == "conv2=0.3, fc1=0.9"
    assert any("Per-layer rates from Inspect" in i.value for i in at.info)
    assert "prefill" not in at.session_state          # taken once


def test_sidebar_shows_the_selection_store_and_device(app, ui_root):
    assert app.multiselect(key="selected_runs") is not None
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert str(ui_root.resolve()) in captions and "Device:" in captions
    assert "Runs train 1 at a time" in captions


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_worker_count_is_one_inline_error(ui_root, monkeypatch, value):
    monkeypatch.setenv("PRUNEVIZ_STORE", str(ui_root))
    monkeypatch.setenv("PRUNEVIZ_WORKERS", value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("PRUNEVIZ_WORKERS" in e and repr(value) in e for e in _errors(at))


def test_live_page_has_the_form_preview_and_run_button(app):
    assert app.selectbox(key="live.method").value == "gmp"
    # a rate at which a newcomer's first run shows the accuracy dip and recover (issue 27, #10)
    assert app.number_input(key="live.rate").value == pytest.approx(0.95)
    assert any(c.value.startswith("What to watch") for c in app.caption)
    assert app.button(key="live.run").disabled is False
    assert any(c.proto.spec for c in app.get("plotly_chart"))        # the schedule preview
    assert "gmp parameters" in [e.label for e in app.expander]


def test_method_form_is_generated_from_params(app):
    app.selectbox(key="live.method").set_value("gmp").run()
    end = app.number_input(key="live.gmp.end") if _has(app, "number_input", "live.gmp.end") \
        else app.slider(key="live.gmp.end")
    assert end.value == pytest.approx(0.8)
    assert app.checkbox(key="live.gmp.last_linear").value is True
    app.selectbox(key="live.method").set_value("dense").run()       # no parameters: no section
    assert not app.exception and "dense parameters" not in [e.label for e in app.expander]
    app.selectbox(key="live.method").set_value("l2_filter").run()
    assert app.text_input(key="live.l2_filter.round_to").value == "1"


@dataclass(frozen=True)
class ToyParams:
    strength: float = param(0.1, "How hard the toy prunes.", min=0.0, max=1.0)
    every: int = param(5, "Steps between toy prunings.", min=1, max=100)


class Toy(Method):
    name = "toy_preset"
    summary = "A test method with presets."
    Params = ToyParams
    presets = {"paper": {"epochs": 30, "strength": 0.3}, "interactive": {"every": 2}}


def test_a_preset_fills_session_fields_and_method_parameters(app, monkeypatch):
    monkeypatch.setitem(REGISTRY, Toy.name, Toy)
    app.run()
    app.selectbox(key="live.method").set_value(Toy.name).run()
    assert app.number_input(key="live.toy_preset.strength").value == pytest.approx(0.1)
    app.radio(key="live.preset").set_value("paper").run()
    assert not app.exception
    assert app.number_input(key="live.epochs").value == 30
    assert app.number_input(key="live.toy_preset.strength").value == pytest.approx(0.3)
    assert app.number_input(key="live.toy_preset.every").value == 5
    app.radio(key="live.preset").set_value("interactive").run()
    assert app.number_input(key="live.toy_preset.every").value == 2


def _has(at, kind, key):
    return any(getattr(w, "key", None) == key for w in at.get(kind))


def test_the_form_remembers_its_values_across_pages(app):
    app.number_input(key="live.epochs").set_value(7).run()
    _page(app, "pages/compare.py")
    at = _page(app, "pages/live.py")
    assert at.number_input(key="live.epochs").value == 7


def test_bad_input_is_an_inline_error_and_disables_run(app, ui_root):
    before = _configs(ui_root)
    app.text_input(key="live.lr_milestones").input("0.5, 1.5").run()
    assert any("lr_milestones" in e for e in _errors(app))
    assert app.button(key="live.run").disabled
    app.text_input(key="live.lr_milestones").input("half").run()
    assert any("lr milestones" in e for e in _errors(app))
    assert not app.exception
    assert _configs(ui_root) == before          # nothing stored, nothing touched


def _configs(root):
    store = Store(root)
    return [store.run(r)["config"] for r in store.runs().run_id]


def test_a_run_started_from_the_ui_records_and_draws_its_charts(app, ui_root):
    at = _fast_live_form(app)
    at.button(key="live.run").click().run()
    assert not at.exception
    run_id = at.query_params["run"][0] if isinstance(at.query_params["run"], list) \
        else at.query_params["run"]
    store = Store(ui_root)
    run = _wait_done(store, [run_id]).loc[run_id]
    assert run.status == "completed"
    assert len(store.scalars(run_id, ["loss"])) == run.total_steps
    at.run()
    assert not at.exception
    charts = {c.proto.id: c for c in at.get("plotly_chart")}
    assert len(charts) >= 5       # preview, training, sparsity, heatmap, history
    assert [m.label for m in at.metric][:3] == ["Dense accuracy", "Held-out accuracy",
                                                  "Sparsity"]
    assert any((s.key or "").startswith(f"live.history.{run_id}.") for s in at.select_slider)
    at = _page(at, "pages/compare.py")                  # runs started here are selected there
    assert run_id in set(_compared(at))


def _compared(at):
    """Run ids in the Compare page's run table."""
    tables = [d.value for d in at.dataframe if "run_id" in d.value.columns]
    return tables[0].run_id.tolist() if tables else []


def _long_run_training(app, ui_root):
    """Press Run on a 500-epoch session and wait until it has recorded steps; returns the
    page, the store and the run id."""
    at = _fast_live_form(app, epochs=500)
    at.button(key="live.run").click().run()
    store = Store(ui_root)
    run_id = store.runs().run_id.iloc[0]
    deadline = time.time() + 120
    while not (store.run(run_id)["step"] or 0) >= 2 and time.time() < deadline:
        time.sleep(0.05)      # training, with steps recorded (running comes before step 0)
    return at, store, run_id


def _shown(at) -> str:
    run = at.query_params["run"]
    return run[0] if isinstance(run, list) else run


def test_run_again_once_the_run_ended_queues_a_new_run(app, ui_root):
    store = Store(ui_root)
    before = set(store.runs().run_id)
    at = _fast_live_form(app, epochs=300)
    at.button(key="live.run").click().run()
    time.sleep(2.5)                          # past the double-click window: it still trains
    at.button(key="live.run").click().run()
    first = set(store.runs().run_id) - before
    assert len(first) == 1, "a second click of the same config while it trains queued another"
    (run_id,) = first
    store.request_cancel(run_id)
    assert _wait_done(store, [run_id], timeout=60).loc[run_id].status == "interrupted"
    at.button(key="live.run").click().run()  # it ended: Run means run it again
    again = set(store.runs().run_id) - before - first
    assert len(again) == 1 and _shown(at) in again
    store.request_cancel(_shown(at))
    _wait_done(store, list(again), timeout=60)


def test_cancel_from_the_live_page_keeps_the_run_interrupted(app, ui_root):
    at, store, run_id = _long_run_training(app, ui_root)
    at.run()
    at.button(key="live.cancel").click().run()
    run = _wait_done(store, [run_id], timeout=60).loc[run_id]
    assert run.status == "interrupted"
    assert 2 <= run.step < run.total_steps


def test_a_restarted_dashboard_reattaches_to_the_run_its_worker_trains(app, ui_root):
    _, store, run_id = _long_run_training(app, ui_root)
    pool = set(store.workers().worker_id)
    st.cache_resource.clear()                    # the server restarted: nothing cached
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not fresh.exception
    assert fresh.query_params["run"] in (run_id, [run_id])      # the running run is shown
    assert "**running**" in " ".join(m.value for m in fresh.markdown)
    assert fresh.button(key="live.cancel").disabled is False
    assert set(store.workers().worker_id) == pool         # the same worker, no second pool
    step = store.run(run_id)["step"]
    time.sleep(1.5)
    assert store.run(run_id)["step"] > step               # still training through it all
    fresh.button(key="live.cancel").click().run()
    assert _wait_done(store, [run_id], timeout=60).loc[run_id].status == "interrupted"


def test_compare_form_queues_the_grid(app, ui_root):
    at = _page(app, "pages/compare.py")
    at.multiselect(key="cmp.methods").set_value(["l1", "gmp"])
    at.selectbox(key="cmp.dataset").set_value("digits")     # the proposal's CIFAR sample is slower
    at.text_input(key="cmp.rates").input("0.5, 0.9")
    at.text_input(key="cmp.seeds").input("0, 1")
    at.number_input(key="cmp.epochs").set_value(1)
    at.number_input(key="cmp.dense_epochs").set_value(3)
    at.button[0].click().run()         # the form's submit button
    assert not at.exception and not _errors(at)
    store = Store(ui_root)
    runs = store.runs()
    sweep = runs[runs.sweep_id.notna()]
    assert len(sweep) == 8 and sweep.sweep_id.nunique() == 1
    assert set(zip(sweep.method, sweep.rate, sweep.seed)) == {
        (m, r, s) for m in ("l1", "gmp") for r in (0.5, 0.9) for s in (0, 1)}
    configs = [store.run(r)["config"] for r in sweep.run_id]
    assert {(c.epochs, c.dense_epochs) for c in configs} == {(1, 3)}
    assert set(_compared(at)) == set(sweep.run_id)
    done = _wait_done(store, list(sweep.run_id), timeout=300)
    assert set(done.status) == {"completed"}
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 6
    assert any("mean of 2 seeds" in str(c.proto.spec) for c in at.get("plotly_chart"))
    curve = at.selectbox(key="cmp.curve")       # gmp's own records can be overlaid too
    assert curve.value == "density" and "lr" in curve.options and "loss" not in curve.options


def test_compare_form_rejects_bad_rates_inline(app, ui_root):
    before = len(Store(ui_root).runs())
    at = _page(app, "pages/compare.py")
    at.text_input(key="cmp.rates").input("0.5, 1.2")
    at.button[0].click().run()
    assert not at.exception
    assert any("rate" in e for e in _errors(at))
    assert len(Store(ui_root).runs()) == before


def test_runs_page_renames_deletes_after_confirming_and_shows_errors(app, ui_root):
    store = Store(ui_root)
    failed = store.create_run(SessionConfig(method="l1", name="broken"), status="failed")
    store.finish_run(failed, "failed", error="RuntimeError: out of memory")
    at = _page(app, "pages/runs.py")
    next(s for s in at.selectbox if (s.key or "").startswith("runs.card.")).set_value(
        failed).run()
    assert any("out of memory" in e for e in _errors(at))
    at.text_input(key=f"runs.name.{failed}").input("renamed")
    at.button(key=f"runs.rename.{failed}").click().run()
    assert store.run(failed)["name"] == "renamed"
    at.button(key=f"runs.delete.{failed}").click().run()
    assert store.run(failed)                          # nothing deleted before confirming
    at.button(key="runs.confirm.yes").click().run()
    assert not at.exception
    assert failed not in set(store.runs().run_id)


def test_streamlit_is_imported_only_by_the_app_pages_and_ui():
    allowed = ("app.py", "pages/", "pruneviz/ui/", "tests/")
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".", "build/")) or "/." in rel or rel.startswith(allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(rel)
    assert offenders == []
