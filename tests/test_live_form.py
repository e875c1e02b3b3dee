"""The Live form checks every field before Run, follows the run shown (edit and re-run, more
seeds), and the live charts explain what would otherwise look empty or wrong."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pruneviz.config import SessionConfig
from pruneviz.data import folder_problem, missing_files
from pruneviz.methods import get_method, load_all
from pruneviz.methods.fggp import view as fggp_view
from pruneviz.methods.pgp.view import momentum_figure
from pruneviz.methods.slr.view import penalty_reading
from pruneviz.models import build_model
from pruneviz.modelspec import layer_names
from pruneviz.plots import log_axis, sparsity_figure, training_figure
from pruneviz.store import Store
from pruneviz.ui import forms
from pruneviz.ui.live import zeros_note
from tests.helpers import recorded_run, wait_done

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def live(tmp_path, monkeypatch):
    """The Live page on an empty store of its own."""
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    return at


def _errors(at) -> str:
    return " ".join(e.value for e in at.error)


# -- checks of the form, without loading data --------------------------------------------------
def test_layer_names_from_the_meta_device_match_a_real_model():
    real = build_model("resnet20", (3, 32, 32), 10)
    convs = [n for n, m in real.named_modules() if type(m).__name__ in ("Conv2d", "Linear")]
    assert list(layer_names("resnet20", (3, 32, 32))) == convs


def test_missing_torchvision_files_name_the_folder_they_belong_in(tmp_path):
    assert missing_files("cifar10", str(tmp_path)) == tmp_path / "cifar-10-batches-py"
    assert missing_files("mnist", str(tmp_path)) == tmp_path / "MNIST" / "raw"
    assert missing_files("digits", str(tmp_path)) is None
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"")
    assert missing_files("cifar10", str(tmp_path)) is None


def test_a_folder_dataset_needs_two_class_subfolders(tmp_path):
    assert "does not exist" in folder_problem(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "a").mkdir()
    assert "1 class folder" in folder_problem(f"folder:{tmp_path}")
    (tmp_path / "b").mkdir()
    assert folder_problem(f"folder:{tmp_path}") is None


def test_form_problems_name_the_forms_own_controls(tmp_path):
    config = SessionConfig(dataset="cifar10", data_root=str(tmp_path))
    message = " ".join(forms.problems(config))
    assert "**download**" in message and "**data root**" in message
    assert "--" not in message                      # no CLI flags in the form
    assert forms.problems(config.replace(download=True)) == []
    bad = SessionConfig(method="slr", params={"layer_rates": "conv2=0.5, conv9=0.3"})
    message = " ".join(forms.problems(bad))
    assert "conv9" in message and "conv1, conv2, conv3, fc" in message
    assert "conv2," not in message.split("names")[1].split("which")[0]


def test_an_out_of_range_parameter_is_an_inline_error_that_disables_run(live):
    at = live
    at.number_input(key="live.gmp.end").set_value(0.01).run()
    assert not at.exception
    assert "**end** (under *gmp parameters*) must be between 0.05 and 1; got 0.01" in _errors(at)
    assert at.button(key="live.run").disabled


def test_a_missing_dataset_is_an_inline_error_that_disables_run(live, tmp_path):
    at = live
    at.text_input(key="live.data_root").input(str(tmp_path / "empty")).run()
    at.selectbox(key="live.dataset").set_value("cifar10").run()
    assert not at.exception
    assert "Tick **download**" in _errors(at) and "**data root**" in _errors(at)
    assert at.button(key="live.run").disabled
    at.checkbox(key="live.download").check().run()
    assert not at.button(key="live.run").disabled


def test_a_folder_dataset_without_a_path_is_a_form_problem_naming_the_dataset_box():
    (message,) = forms.problems(SessionConfig(dataset="folder:"))
    assert message.startswith("**dataset**") and "needs the path" in message


def test_the_rate_box_takes_099_and_0999(live):
    at = live
    for rate in (0.99, 0.999):
        at.number_input(key="live.rate").set_value(rate).run()
        assert at.number_input(key="live.rate").value == pytest.approx(rate)
        assert not at.button(key="live.run").disabled, _errors(at)
    at.number_input(key="live.rate").set_value(1.0).run()
    assert "**rate**" in _errors(at) and at.button(key="live.run").disabled


# -- the form follows the run shown ---------------------------------------------------------------
def test_the_preset_resets_when_the_method_changes(live):
    at = live
    at.selectbox(key="live.method").set_value("pgmpf").run()
    at.radio(key="live.preset").set_value("interactive").run()
    at.selectbox(key="live.method").set_value("slr").run()
    assert at.radio(key="live.preset").value == forms.NO_PRESET


def test_the_schedule_preview_names_the_forms_method_and_rate(live):
    at = live
    at.selectbox(key="live.method").set_value("pgmpf").run()
    at.number_input(key="live.rate").set_value(0.97).run()
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Schedule of the form: pgmpf at rate 0.97" in t for t in titles)


def test_edit_and_rerun_loads_the_shown_runs_config_into_the_form(live, tmp_path):
    store = Store(tmp_path / "runs")
    config = SessionConfig(method="pgmpf", rate=0.93, epochs=6, seed=4, lr=0.02,
                           params={"d": 0.25, "gradient_mask": False}, name="shown")
    run_id = recorded_run(store, config)
    at = live
    at.query_params["run"] = run_id
    at.run()
    at.button(key="live.edit").click().run()
    assert not at.exception
    assert at.selectbox(key="live.method").value == "pgmpf"
    assert at.number_input(key="live.rate").value == pytest.approx(0.93)
    assert at.number_input(key="live.epochs").value == 6
    assert at.number_input(key="live.seed").value == 4
    assert at.number_input(key="live.lr").value == pytest.approx(0.02)
    assert at.number_input(key="live.pgmpf.d").value == pytest.approx(0.25)
    assert at.checkbox(key="live.pgmpf.gradient_mask").value is False
    assert at.radio(key="live.preset").value == forms.NO_PRESET


def test_a_capped_evaluation_says_so_beside_the_accuracy(tmp_path, monkeypatch):
    store = Store(tmp_path / "runs")
    capped = recorded_run(store, SessionConfig(eval_limit=50))
    full = recorded_run(store, SessionConfig())
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    helps = {}
    for run_id in (capped, full):         # a fresh session on each run's link
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.query_params["run"] = run_id
        at.run()
        helps[run_id] = next(m.help for m in at.metric if m.label == "Held-out accuracy")
    assert "at most 50 held-out images, every class in turn" in helps[capped]
    assert "eval limit" in helps[capped]                 # the control's own label
    assert not helps[full]


def test_a_fresh_session_on_a_run_url_starts_the_form_from_that_run(tmp_path, monkeypatch):
    store = Store(tmp_path / "runs")
    run_id = recorded_run(store, SessionConfig(method="slr", rate=0.95, epochs=3))
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    assert at.selectbox(key="live.method").value == "slr"
    assert at.number_input(key="live.rate").value == pytest.approx(0.95)


def test_run_again_with_more_seeds_queues_one_run_per_new_seed(live, tmp_path):
    store = Store(tmp_path / "runs")
    config = SessionConfig(method="l1", rate=0.5, epochs=1, seed=0, dense_epochs=1,
                           max_steps_per_epoch=2, device="cpu")
    run_id = recorded_run(store, config)
    at = live
    at.query_params["run"] = run_id
    at.run()
    at.text_input(key="live.more_seeds").input("1, x").run()
    assert "**More seeds**" in _errors(at) and at.button(key="live.run_seeds").disabled
    at.text_input(key="live.more_seeds").input("0, 1, 2, 2").run()
    at.button(key="live.run_seeds").click().run()
    assert not at.exception
    # they ran: the box is empty and Run seeds disabled, not offering 1, 2 again (#11)
    assert at.text_input(key="live.more_seeds").value == ""
    assert at.button(key="live.run_seeds").disabled
    new = [r for r in store.runs().run_id if r != run_id]
    try:
        configs = sorted((store.run(r)["config"] for r in new), key=lambda c: c.seed)
        assert [c.seed for c in configs] == [1, 2]          # seed 0 exists: not run again
        assert all(c.replace(seed=0) == config for c in configs)
    finally:
        for r in new:
            store.request_cancel(r)
        wait_done(store, new)


# -- charts that would look empty or wrong -------------------------------------------------------
def _run(method: str, rate: float = 0.9, epochs: int = 10, **params) -> dict:
    return dict(config=SessionConfig(method=method, rate=rate, epochs=epochs, params=params),
                total_steps=10 * epochs, run_id="r", status="completed")


def test_soft_and_deferred_methods_say_why_achieved_sparsity_stays_at_zero():
    assert zeros_note(_run("gmp")) is None
    soft = zeros_note(_run("pgmpf"))
    assert soft.startswith("**Soft pruning:**") and "trainable" in soft
    deferred = zeros_note(_run("slr", retrain_epochs=2))
    assert deferred.startswith("**Deferred pruning:**")
    final = get_method("slr").mask_final(_run("slr").get("config"),
                                         get_method("slr").Params(retrain_epochs=2))
    assert f"epoch {final:g} (step {int(10 * final)})" in deferred


def test_the_deferred_sparsity_chart_draws_the_sparse_copy_it_pulls_towards():
    scalars = pd.DataFrame({"step": [0, 1], "key": ["sparsity"] * 2, "value": [0.0, 0.0]})
    fig = sparsity_figure(scalars, "deferred", (0.9, 80))
    z = [t for t in fig.data if t.name.startswith("sparse copy Z")]
    assert len(z) == 1 and list(z[0].y) == [0.9, 0.9] and list(z[0].x) == [0, 80]
    assert "soft" in sparsity_figure(scalars, "soft").data[0].name


def test_the_loss_curve_says_when_it_includes_a_penalty():
    rows = [(s, k, v) for s in range(5) for k, v in (("loss", 3.0), ("ce", 1.0))]
    fig = training_figure(pd.DataFrame(rows, columns=["step", "key", "value"]))
    names = [t.name for t in fig.data]
    assert "train loss: CE + penalty (smoothed)" in names and "train CE alone (smoothed)" in names
    plain = training_figure(pd.DataFrame([(0, "loss", 1.0)], columns=["step", "key", "value"]))
    assert "train loss (smoothed)" in [t.name for t in plain.data]


@pytest.mark.parametrize("ce, penalty, words", [(0.1, 3.0, "30× the CE"),
                                                 (1.0, 0.01, "0.01× the CE")])
def test_the_slr_penalty_caption_is_computed_from_the_runs_numbers(ce, penalty, words):
    epochs = pd.DataFrame({"step": [9, 19], "ce": [2.0, ce], "penalty": [0.5, penalty]})
    text = penalty_reading(epochs, 19)
    assert words in text and "step 19" in text
    assert ("dominates" in text) == (penalty > 2 * ce)


def test_fggp_opens_on_a_step_that_cut_many_weights_not_the_last_one():
    prune = pd.DataFrame({"step": [10, 20, 30, 40], "pruned": [400, 300, 120, 1]})
    assert fggp_view.default_step({"prune": prune}) == 30
    assert fggp_view.default_step({"prune": prune.iloc[:0]}) is None


def test_log_axes_label_only_decades_when_they_span_decades():
    wide = log_axis([1e-4, 1.0])
    assert wide["dtick"] == 1 and wide["minor"]["ticks"] == ""
    assert log_axis([1.0, 3.0])["tickformat"] == ".3g"


def test_a_zero_momentum_bar_is_labelled():
    epochs = pd.DataFrame({"phase": ["prune"] * 3, "epoch": [0, 1, 2],
                           "momentum_before": [0.5, 0.4, 0.0], "momentum_after": [0.0] * 3})
    after = momentum_figure(epochs, 3, "pgp").data[1]
    assert list(after.text) == ["0: reset", "0: reset", ""]     # epoch 2 had none to reset
    assert np.all(np.asarray(after.y) == 0)


def test_a_repeated_click_with_the_same_config_queues_one_run(live, tmp_path):
    """A click repeated by a rerun (or a double click) is one run; the view shows it."""
    store = Store(tmp_path / "runs")
    at = live
    at.number_input(key="live.epochs").set_value(1)
    at.number_input(key="live.dense_epochs").set_value(1)
    at.number_input(key="live.max_steps_per_epoch").set_value(2).run()
    at.button(key="live.run").click().run()
    at.button(key="live.run").click().run()
    runs = store.runs().run_id.tolist()
    try:
        assert len(runs) == 1
        assert at.query_params["run"] in (runs[0], [runs[0]])
        at.number_input(key="live.seed").set_value(1).run()       # a new config is a new run
        at.button(key="live.run").click().run()
        assert len(store.runs()) == 2
    finally:
        runs = store.runs().run_id.tolist()
        for r in runs:
            store.request_cancel(r)
        wait_done(store, runs)


def _slider_app():
    import streamlit as st

    from pruneviz.ui.internals import step_slider

    st.session_state["picked"] = step_slider(st.session_state["steps"], "s",
                                             opening=st.session_state.get("opening"))


def _steps(at, steps):
    at.session_state["steps"] = steps
    return at.run().session_state["picked"]


def test_the_step_slider_follows_new_steps_until_moved_and_again_after_latest_step():
    at = AppTest.from_function(_slider_app)
    assert _steps(at, [0, 10, 20]) == 20
    assert _steps(at, [0, 10, 20, 30]) == 30                 # a live run adds a step: follows
    at.select_slider(key="s.at30").set_value(10).run()
    assert at.session_state["picked"] == 10
    assert _steps(at, [0, 10, 20, 30, 40]) == 10             # moved back: stays there
    at.button(key="s.latest").click().run()
    assert at.session_state["picked"] == 40
    assert _steps(at, [0, 10, 20, 30, 40, 50]) == 50         # following again


def test_a_finished_run_opens_the_step_slider_on_its_opening_step():
    at = AppTest.from_function(_slider_app)
    at.session_state["opening"] = 20
    assert _steps(at, [0, 10, 20, 30]) == 20
    assert not at.button(key="s.latest").disabled


def test_the_compare_form_says_inline_when_the_dataset_files_are_missing(live, tmp_path):
    at = live.switch_page("pages/compare.py").run()
    at.multiselect(key="cmp.methods").set_value(["l1"])
    at.selectbox(key="cmp.dataset").set_value("cifar10")
    at.text_input(key="cmp.data_root").input(str(tmp_path / "empty"))
    at.text_input(key="cmp.rates").input("0.999")
    at.button[0].click().run()           # the form's submit button
    assert not at.exception
    assert "Tick **download**" in _errors(at)
    assert Store(tmp_path / "runs").runs().empty


def test_a_train_val_folder_is_checked_in_its_train_split(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
    assert "train has 1 class folder" in folder_problem(f"folder:{tmp_path}")
    (tmp_path / "train" / "b").mkdir()
    assert folder_problem(f"folder:{tmp_path}") is None


def test_a_split_folder_the_loader_refuses_is_an_inline_error_naming_the_fix(tmp_path,
                                                                             monkeypatch):
    for split in ("train", "holdout"):          # no val/, valid/, validation/ or test/
        for cls in ("a", "b"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["live.dataset"] = f"folder:{tmp_path / 'data'}"
    at.run()
    assert not at.exception
    errors = _errors(at)
    assert "**dataset**" in errors and "no held-out split" in errors
    assert "name the held-out folder val, valid, validation or test" in errors
    assert at.button(key="live.run").disabled


def test_a_folder_that_does_not_exist_is_an_inline_error_that_disables_run(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    # As typed into the box (AppTest cannot type a new option into a box it has drawn).
    at.session_state["live.dataset"] = "folder:/nonexistent"
    at.run()
    assert not at.exception
    assert at.selectbox(key="live.dataset").value == "folder:/nonexistent"
    assert "image folder /nonexistent does not exist" in _errors(at)
    assert at.button(key="live.run").disabled


def test_the_history_follows_new_snapshots_of_a_watched_run(tmp_path, monkeypatch):
    """Issue 27, #3: the History panel stayed on its first snapshot (step 21 of 440) while the
    charts above showed the run at step 439."""
    from pruneviz.records import LayerRow, Scalar
    from tests.helpers import decode_plotly

    store = Store(tmp_path / "runs")
    run_id = store.create_run(SessionConfig(epochs=1))
    store.start_run(run_id, 100)

    def snapshot(step: int) -> None:
        store.write(run_id, [Scalar(step, 0, "loss", 1.0)]
                    + [LayerRow(step, 0, layer, "sparsity", step / 100)
                       for layer in ("conv1", "conv2")], step=step)

    snapshot(10)
    snapshot(21)
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()

    def history_title() -> str:
        import json

        titles = [decode_plotly(json.loads(c.proto.spec))["layout"].get("title", {})
                  .get("text", "") for c in at.get("plotly_chart")]
        return next(t for t in titles if t.startswith("Per-layer sparsity at step"))

    assert history_title() == "Per-layer sparsity at step 21"
    snapshot(60)
    snapshot(99)
    store.finish_run(run_id, "completed", summary={"final_accuracy": 0.9})
    at.run()
    assert not at.exception
    assert history_title() == "Per-layer sparsity at step 99"


def test_range_and_type_messages_read_as_a_person_writes_them():
    import dataclasses

    from pruneviz.config import ConfigError, coerce

    seed = next(f for f in dataclasses.fields(SessionConfig) if f.name == "seed")
    message = forms.check_range(seed, -1)
    assert "between 0 and 2,147,483,647" in message and "e+09" not in message
    with pytest.raises(ConfigError, match="expects numbers separated by commas"):
        coerce("a, b", (1.0,), "lr milestones")


def test_a_finished_gmp_run_opens_its_internals_at_the_last_step(tmp_path, monkeypatch,
                                                                 fast_config):
    """Not mid-run (the view's telling step): the charts above end at the last step; the
    telling step is one button away and pins the slider there."""
    from pruneviz.session import run_session

    store = Store(tmp_path / "runs")
    summary = run_session(fast_config(method="gmp", rate=0.9, epochs=4, start="scratch",
                                      max_steps_per_epoch=6), store)
    run_id = summary["run_id"]
    frames = fggp_view.load(store, run_id)
    steps, telling = fggp_view.steps(frames), fggp_view.default_step(frames)
    assert telling is not None and telling != steps[-1]     # the case the view opened on
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()

    def slider():
        return next(s for s in at.select_slider if s.key.startswith("live.internals.step."))

    assert not at.exception
    assert list(slider().options) == [str(s) for s in steps]
    assert slider().value == steps[-1]
    at.button(key=f"live.internals.telling.{run_id}").click().run()
    assert slider().value == telling
    at.button(key=f"live.internals.step.{run_id}.latest").click().run()
    assert slider().value == steps[-1]


def test_the_preset_is_kept_across_a_page_switch(live):
    """A user who watches the run end on the Runs page comes back to the preset it ran with,
    not "(defaults)" beside the preset's values."""
    at = live
    at.selectbox(key="live.method").set_value("pgmpf").run()
    at.radio(key="live.preset").set_value("interactive").run()
    epochs = at.number_input(key="live.epochs").value
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/live.py").run()
    assert not at.exception
    assert at.radio(key="live.preset").value == "interactive"
    assert at.number_input(key="live.epochs").value == epochs


def test_a_run_made_with_a_preset_loads_into_the_form_with_that_preset(tmp_path, monkeypatch):
    from pruneviz.methods import apply_preset

    store = Store(tmp_path / "runs")
    preset = recorded_run(store, apply_preset(SessionConfig(method="pgmpf", rate=0.5),
                                              "interactive"))
    edited = apply_preset(SessionConfig(method="pgmpf", rate=0.5), "interactive")
    edited = recorded_run(store, edited.replace(epochs=edited.epochs + 1))
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    for run_id, want in ((preset, "interactive"), (edited, forms.NO_PRESET)):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.query_params["run"] = run_id
        at.run()
        assert not at.exception
        assert at.radio(key="live.preset").value == want


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+|python -m pruneviz")


def _texts(at) -> list[str]:
    """Every help, label, body and value text of the page as drawn."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        for attr in ("help", "body", "label", "placeholder", "value"):
            value = getattr(proto, attr, None)
            if isinstance(value, str):
                out.append(value)
        children = getattr(node, "children", None)
        for child in (children.values() if isinstance(children, dict) else ()):
            walk(child)

    walk(at._tree)
    return out


def test_the_ui_names_its_own_controls_never_cli_flags(live):
    """Help shared with the CLI (--rate) reads **rate** in the form, for every method's
    parameters, and the Learn page on speed names the controls too."""
    at = live
    assert forms.no_flags("overriding --rate, e.g. --no-such") == \
        "overriding **rate**, e.g. --no-such"
    found = []
    for method in sorted(load_all()):
        at.selectbox(key="live.method").set_value(method).run()
        found += [(method, t) for t in _texts(at) if _FLAG.search(t)]
    at.switch_page("pages/learn_speed.py").run()
    found += [("learn_speed", t) for t in _texts(at) if _FLAG.search(t)]
    assert not at.exception
    assert found == []


def test_form_errors_are_named_at_the_top_and_the_schedule_preview_stays(live):
    """An error in the form (drawn in red above Run, below the fold of a 900-px window) is
    also said at the top of the view, naming the control; the schedule of the last valid form
    stays in view, titled as such."""
    at = live
    at.number_input(key="live.rate").set_value(0.9).run()
    at.number_input(key="live.gmp.end").set_value(0.01).run()
    assert not at.exception and at.button(key="live.run").disabled
    top = " ".join(w.value for w in at.warning)
    assert "**Run is off**" in top and "**end**" in top and "1 problem " in top
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Schedule of the last valid form: gmp at rate 0.9," in t for t in titles)
    at.number_input(key="live.gmp.end").set_value(0.8).run()      # fixed: the form's own
    assert not any("Run is off" in w.value for w in at.warning)
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Schedule of the form: gmp at rate 0.9," in t for t in titles)


def test_a_history_slider_move_reads_no_curves_and_shows_the_values_at_its_step(tmp_path,
                                                                              monkeypatch):
    """The history table holds each curve's value at or before the chosen step; a slider
    move reuses the curves read for the newest snapshot (it re-read every step of every curve,
    68 ms at 11,000 steps), and a new snapshot or the run's end reads them again."""
    from pruneviz.records import LayerRow, Scalar

    store = Store(tmp_path / "runs")
    run_id = store.create_run(SessionConfig(epochs=1))
    store.start_run(run_id, 100)

    def snapshot(step: int) -> None:
        store.write(run_id, [Scalar(s, 0, "loss", 1.0 / (s + 1)) for s in range(step - 9,
                                                                              step + 1)]
                    + [LayerRow(step, 0, layer, "sparsity", step / 100)
                       for layer in ("conv1", "conv2")], step=step)

    for step in (9, 19, 29):
        snapshot(step)
    reads = []
    real = Store.scalars

    def counted(self, run_ids, keys=None, **kw):
        reads.append(kw.get("max_points"))
        return real(self, run_ids, keys, **kw)

    monkeypatch.setattr(Store, "scalars", counted)
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()

    def history_loss() -> float:
        table = next(d.value for d in at.dataframe
                     if "value at or before this step" in d.value.columns)
        return float(table.loc["loss"].iloc[0])

    slider = next(s for s in at.select_slider if s.key.startswith(f"live.history.{run_id}"))
    assert history_loss() == pytest.approx(1 / 30)
    full = reads.count(None)
    slider.set_value(19).run()
    assert not at.exception and history_loss() == pytest.approx(1 / 20)
    assert reads.count(None) == full            # the move read no curves
    snapshot(39)
    store.finish_run(run_id, "completed", summary={"final_accuracy": 0.9})
    at.run()
    slider = next(s for s in at.select_slider if s.key.startswith(f"live.history.{run_id}"))
    slider.set_value(39).run()
    assert history_loss() == pytest.approx(1 / 40)
