"""Collapse and misleading-result guards (pruneviz/guards.py), the per-layer floor and GMP's
layer-wise scope that remedy them, and interactive presets that leave epochs to recover."""

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from pruneviz.cli import main
from pruneviz.config import SessionConfig
from pruneviz.guards import LayerHealth, output_constant, run_warnings
from pruneviz.methods import apply_preset, load_all, make_params
from pruneviz.methods.base import RECOVERY
from pruneviz.models import build_model
from pruneviz.plots import schedule_figure
from pruneviz.session import run_session
from pruneviz.store import Store

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(dense_epochs=3, epochs=2, device="cpu")
COLLAPSE = "Layer pruned to almost nothing"


@pytest.fixture(scope="module")
def guard_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("guards") / "runs")


@pytest.fixture(scope="module")
def global_098(guard_store):
    """global_l1 at 0.98 on digits: the one ranking leaves conv3 almost empty."""
    return run_session(SessionConfig(method="global_l1", rate=0.98, **FAST), guard_store)


def _layer_density(store, run_id):
    masks = torch.load(store.run_dir(run_id) / "masks.pt")
    return {k.removesuffix(".weight"): m.float().mean().item() for k, m in masks.items()}


def test_a_global_098_run_that_empties_conv3_warns(global_098, guard_store):
    assert _layer_density(guard_store, global_098["run_id"])["conv3"] < 0.01
    collapse = [w for w in global_098["warnings"] if w.startswith(COLLAPSE)]
    assert len(collapse) == 1
    assert "conv3" in collapse[0] and "max_layer_sparsity=0.99" in collapse[0]


def test_the_layer_floor_keeps_every_layer_and_silences_the_warning(guard_store):
    s = run_session(SessionConfig(method="global_l1", rate=0.98,
                                  params={"max_layer_sparsity": 0.99}, **FAST), guard_store)
    assert s["sparsity"] == pytest.approx(0.98, abs=1e-3)
    assert min(_layer_density(guard_store, s["run_id"]).values()) >= 0.0099
    assert not [w for w in s["warnings"] if w.startswith(COLLAPSE)]


def _gradual(store, method, **params):
    s = run_session(SessionConfig(method=method, rate=0.98, max_steps_per_epoch=8,
                                  params=params, **FAST), store)
    assert s["status"] == "completed", s.get("error")
    assert s["sparsity"] == pytest.approx(0.98, abs=1e-3)
    return min(_layer_density(store, s["run_id"]).values())


def test_gmp_global_ranking_empties_a_layer_without_the_floor(guard_store):
    assert _gradual(guard_store, "gmp") < 0.005


@pytest.mark.parametrize("method", ["gmp", "fggp", "granet"])
def test_gradual_global_rankings_honour_the_floor(guard_store, method):
    assert _gradual(guard_store, method, max_layer_sparsity=0.99) >= 0.0099


def test_gmp_layer_scope_prunes_every_layer_to_the_rate(guard_store):
    s = run_session(SessionConfig(method="gmp", rate=0.9, max_steps_per_epoch=6,
                                  params={"scope": "layer"}, **FAST), guard_store)
    for density in _layer_density(guard_store, s["run_id"]).values():
        assert density == pytest.approx(0.1, abs=2e-3)


def test_a_floor_below_the_rate_is_a_config_error(guard_store):
    s = run_session(SessionConfig(method="global_l1", rate=0.95,
                                  params={"max_layer_sparsity": 0.9}, **FAST), guard_store)
    assert s["status"] == "failed" and "max_layer_sparsity" in s["error"]


def test_a_network_with_an_empty_layer_is_cut_in_two():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    x = torch.randn(16, 1, 8, 8)
    assert not output_constant(model, x)
    with torch.no_grad():
        model.conv3.weight.zero_()
    assert output_constant(model, x)
    assert model.training                     # the check leaves the mode as it found it


def _warnings(**kw):
    base = dict(method="gmp", kind="unstructured", rate=0.9, params={"scope": "global"},
                layers=[LayerHealth("conv2", 400, 4608, 30, 32)], cut=False,
                dense_accuracy=0.99, final_accuracy=0.95, num_classes=10, epochs=10,
                recovery_epochs=2, recovery_hint="lower `end`.")
    return run_warnings(**{**base, **kw})


def test_a_healthy_run_has_no_warnings():
    assert _warnings() == []


def test_each_guard_names_its_cause_and_fix():
    cut = _warnings(layers=[LayerHealth("conv3", 0, 18432, 0, 64)], cut=True)
    assert cut[0].startswith("The network is cut in two: conv3") and "scope=layer" in cut[0]
    drop = _warnings(final_accuracy=0.6)
    assert drop == [drop[0]] and "39 points below" in drop[0] and "Fix:" in drop[0]
    chance = _warnings(final_accuracy=0.12)
    assert chance == [chance[0]] and "near chance" in chance[0]
    late = _warnings(recovery_epochs=0)
    assert late == [late[0]] and "last epoch" in late[0] and late[0].endswith("lower `end`.")
    assert len(_warnings(recovery_epochs=0.4)) == 1 and _warnings(recovery_epochs=0.6) == []


def test_recovery_is_counted_from_the_step_of_the_last_mask_change(guard_store):
    """GMP over 4 epochs of 8 steps: T_end = floor(0.8 x 32) = 25, so 6 steps recover."""
    s = run_session(SessionConfig(method="gmp", rate=0.5, dense_epochs=3, epochs=4,
                                  max_steps_per_epoch=8, device="cpu"), guard_store)
    assert s["recovery_epochs"] == pytest.approx(6 / 8)
    assert not [w for w in s["warnings"] if "last epoch" in w]


def test_a_layer_at_a_uniform_099_rate_is_not_a_collapse():
    """Layer-wise pruning at 0.99 keeps 1% of every layer: what was asked, not a collapse."""
    assert _warnings(rate=0.99, final_accuracy=0.9, layers=[LayerHealth("conv3", 184, 18432,
                                                                         60, 64)]) == []


def test_run_show_and_report_print_the_warnings(guard_store, global_098, capsys):
    root = str(guard_store.root)
    assert main(["run", "--store", root, "--method", "global_l1", "--rate", "0.98",
                 "--dense-epochs", "3", "--epochs", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"WARNING: {COLLAPSE}" in out
    run_id = guard_store.runs().run_id.iloc[0]
    for cmd in (["show", run_id], ["report", run_id]):
        assert main([*cmd, "--store", root]) == 0
        assert f"WARNING: {COLLAPSE}" in capsys.readouterr().out


def test_the_live_page_shows_the_warnings(global_098, guard_store, monkeypatch):
    monkeypatch.setenv("PRUNEVIZ_STORE", str(guard_store.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = global_098["run_id"]
    at.run()
    assert not at.exception
    shown = [w.value for w in at.warning]
    assert all(w in shown for w in global_098["warnings"])


INTERACTIVE = sorted(n for n, cls in load_all().items() if "interactive" in cls.presets)


@pytest.mark.parametrize("method", INTERACTIVE)
def test_interactive_presets_leave_epochs_to_recover(guard_store, method):
    """The last change of the mask happens before the last epoch, as the preview shades it."""
    cls = load_all()[method]
    config = apply_preset(SessionConfig(method=method, dense_epochs=3, device="cpu",
                                        max_steps_per_epoch=4), "interactive")
    preview = cls.preview(config, make_params(cls, config.params))
    band = preview[preview.series == RECOVERY].epoch
    assert band.max() == config.epochs and band.min() <= config.epochs - 1
    s = run_session(config, guard_store)
    assert s["status"] == "completed"
    assert s["recovery_epochs"] >= 1
    assert not [w for w in s["warnings"] if "last epoch" in w]


def test_pgmpf_with_the_papers_timing_warns_that_nothing_recovers(guard_store):
    """Rate 0.5, 10 epochs: r_8 is a hair above the target, so one more filter per layer is
    hard-zeroed at the end of the last epoch (the issue's 0.437 run)."""
    config = apply_preset(SessionConfig(method="pgmpf", dense_epochs=3, device="cpu",
                                        max_steps_per_epoch=4), "interactive")
    config = config.replace(rate=0.5, params={**config.params, "recovery": 0.0})
    s = run_session(config, guard_store)
    assert s["recovery_epochs"] == 0
    assert any("last epoch" in w and "recovery=0.2" in w for w in s["warnings"])


def test_the_schedule_preview_shades_the_recovery_phase():
    cls = load_all()["gmp"]
    config = SessionConfig(method="gmp", epochs=10)
    fig = schedule_figure(cls.preview(config, make_params(cls, {})))
    (band,) = fig.layout.shapes
    assert (band.x0, band.x1) == (8.0, 10.0)
    assert all(t.name != RECOVERY for t in fig.data)


def test_compare_lists_the_warnings_above_the_table_and_in_a_column(guard_store, global_098):
    from pruneviz.ui.compare import compare_data, compare_table, warnings_note
    from pruneviz.ui.text import plain

    runs = compare_data(guard_store, [global_098["run_id"]])["runs"]
    note = warnings_note(runs)      # Markdown: each warning escaped as plain() writes it
    assert note is not None and all(plain(w) in note for w in global_098["warnings"])
    assert compare_table(runs).warnings.iloc[0] == " | ".join(global_098["warnings"])


def test_a_rate_of_099_runs_from_the_cli(guard_store, capsys):
    assert main(["run", "--store", str(guard_store.root), "--method", "l1", "--rate", "0.99",
                 "--dense-epochs", "3", "--epochs", "2", "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sparsity"] == pytest.approx(0.99, abs=1e-3)
    assert not [w for w in summary["warnings"] if w.startswith(COLLAPSE)]   # asked, not collapsed


def test_slr_without_retraining_says_its_final_accuracy_is_the_retrain_free_one(guard_store):
    s = run_session(SessionConfig(method="slr", rate=0.5, max_steps_per_epoch=4, **FAST),
                    guard_store)
    assert s["recovery_epochs"] == 0
    (late,) = [w for w in s["warnings"] if "last epoch" in w]
    assert "retrain_epochs=2" in late and "retrain-free" in late


def test_a_held_out_set_of_one_image_is_a_warning_naming_the_fix():
    (one,) = _warnings(heldout=1)
    assert "measured on 1 image(s)" in one and "100%" in one and "holdout" in one
    assert _warnings(heldout=500) == []


def _dense_scalars(held_out, train):
    import pandas as pd

    rows = [dict(run_id="d", step=e * 10 + s, epoch=e, key="train_accuracy", value=t)
            for e, t in enumerate(train) for s in range(10)]
    rows += [dict(run_id="d", step=e * 10 + 9, epoch=e, key="test_accuracy", value=h)
             for e, h in enumerate(held_out)]
    return pd.DataFrame(rows)


def test_a_dense_start_still_rising_or_far_below_train_is_under_trained():
    from pruneviz.guards import dense_curves, dense_start_warnings

    curves = dense_curves(_dense_scalars([0.3, 0.4, 0.45, 0.5], [0.35, 0.45, 0.5, 0.55]))
    assert curves.held_out.tolist() == [0.3, 0.4, 0.45, 0.5]
    (rising,) = dense_start_warnings(curves, 4)
    assert "still rose from 40.0% to 50.0%" in rising and "dense epochs" in rising
    gap = dense_start_warnings(dense_curves(_dense_scalars([0.45, 0.45, 0.448],
                                                           [0.8, 0.88, 0.9])))
    assert len(gap) == 1 and "44.8% held-out against 90.0%" in gap[0]
    assert dense_start_warnings(dense_curves(_dense_scalars([0.9, 0.953, 0.955, 0.956],
                                                            [0.9, 0.96, 0.97, 0.98]))) == []


def test_compare_and_live_show_an_under_trained_dense_start(guard_store, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from pruneviz.records import Scalar
    from pruneviz.session import dense_config, dense_key
    from tests.helpers import recorded_run

    monkeypatch.setenv("PRUNEVIZ_STORE", str(guard_store.root))
    config = SessionConfig(method="l1", rate=0.5, epochs=1)
    dense = dense_config(config)
    dense_id = guard_store.create_run(dense, kind="dense")
    guard_store.start_run(dense_id, 40)
    scalars = _dense_scalars([0.3, 0.4, 0.45, 0.5], [0.5, 0.6, 0.65, 0.7])
    guard_store.write(dense_id, [Scalar(r.step, r.epoch, r.key, r.value)
                                 for r in scalars.itertuples()], step=39)
    guard_store.finish_run(dense_id, "completed", summary={"final_accuracy": 0.5})
    weights = guard_store.run_dir(dense_id) / "weights.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"")          # a lookup needs the file; the check never reads it
    guard_store.dense_save(dense_key(dense), dense_id, weights, 0.5)
    run_id = recorded_run(guard_store, config)
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
    at.query_params["runs"] = run_id
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert any("dense start is under-trained" in w.value and "dense epochs" in w.value
               for w in at.warning)
    at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.switch_page("pages/live.py").run()
    assert not at.exception
    assert any(e.label.startswith("Dense start, before pruning (under-trained)")
               for e in at.expander)


def test_one_empty_layer_keeps_no_weights_in_the_singular():
    (cut,) = _warnings(layers=[LayerHealth("conv3", 0, 18432, 0, 64)], cut=True)
    assert "conv3 keeps no weights" in cut
    (shortcut,) = _warnings(layers=[LayerHealth("conv3", 0, 18432, 0, 64)])
    assert shortcut.startswith("conv3 keeps no weights")
