"""Inspect: attributions (shape, finiteness, IG completeness), agreement, filter contributions,
the per-layer sensitivity scan and its suggested rates, the page and the CLI."""

import json

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from pruneviz import inspect as ins
from pruneviz import sensitivity as sens
from pruneviz.cli import main
from pruneviz.config import ConfigError, format_layer_rates, parse_layer_rates
from pruneviz.data import DataBundle
from pruneviz.metrics import evaluate
from pruneviz.models import build_model
from pruneviz.session import run_session
from pruneviz.store import Store

FAST = dict(dense_epochs=3, epochs=2, device="cpu")


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    """A store with one short digits run (filter pruning at 0.5) and its dense baseline."""
    from pruneviz.config import SessionConfig

    store = Store(tmp_path_factory.mktemp("inspect") / "runs")
    summary = run_session(SessionConfig(method="l2_filter", rate=0.5, **FAST), store)
    assert summary["status"] == "completed", summary.get("error")
    return store, summary["run_id"]


@pytest.fixture(scope="module")
def rm(run_store):
    store, run_id = run_store
    return ins.load_run(store, run_id)


@pytest.fixture(scope="module")
def batch(rm):
    return sens.heldout_batch(rm.data, limit=0)


# -- attributions --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ins.ATTRIBUTIONS)
def test_attributions_have_the_input_shape_and_are_finite(rm, method):
    x, y = ins.held_out_images(rm.data, 5)
    comp = ins.compare_attributions(rm.dense, rm.pruned, x, y, method, n_steps=16,
                                    baseline=ins.black_baseline(rm.data, x))
    assert set(comp.maps) == {"dense", "pruned", "difference"}
    for t in comp.maps.values():
        assert t.shape == x.shape and torch.isfinite(t).all()
    assert torch.equal(comp.maps["difference"], comp.maps["pruned"] - comp.maps["dense"])
    assert comp.table.label.tolist() == y.tolist() and len(set(y.tolist())) == 5


def test_integrated_gradients_completeness_within_the_convergence_delta(rm):
    x, y = ins.held_out_images(rm.data, 10)
    base = ins.black_baseline(rm.data, x)
    attr, delta = ins.attribute(rm.dense, x, y, "integrated_gradients", baseline=base,
                                n_steps=128)
    with torch.no_grad():
        gap = rm.dense(x)[range(10), y] - rm.dense(base)[range(10), y]
    residual = attr.flatten(1).sum(1) - gap
    # Captum's delta is this residual; 128 Gauss-Legendre steps bring it under 0.05 logits
    # (the logit gaps themselves are a few units).
    assert torch.allclose(residual, delta, atol=1e-4)
    assert residual.abs().max() < 0.05


def test_models_are_loaded_in_eval_mode_with_the_runs_weights(run_store, rm):
    store, run_id = run_store
    saved = torch.load(store.run_dir(run_id) / "weights.pt", weights_only=True)
    assert not rm.dense.training and not rm.pruned.training
    for k, v in rm.pruned.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert not torch.equal(rm.dense.conv2.weight, rm.pruned.conv2.weight)


def test_a_shrunk_pgp_run_opens_in_library_and_page_with_its_compact_models_numbers(
        run_store, monkeypatch):
    """PGP physically removes filters (weights.pt is the shrunk network): Inspect expands it
    back onto the architecture through report's loader and shows the compacted model's size."""
    from pruneviz.config import SessionConfig
    from pruneviz.metrics import param_counts

    store, _ = run_store
    run_id = run_session(SessionConfig(method="pgp", rate=0.5, **{**FAST, "epochs": 1},
                                       params={"prune_epochs": 1}), store)["run_id"]
    try:
        saved = torch.load(store.run_dir(run_id) / "weights.pt", weights_only=True)
        rm = ins.load_run(store, run_id)
        dense = rm.dense.state_dict()
        assert any(saved[k].shape != v.shape for k, v in dense.items())      # really shrunk
        assert {k: v.shape for k, v in rm.pruned.state_dict().items()} == \
            {k: v.shape for k, v in dense.items()}                           # expanded back
        assert all(rm.masks[k].shape == dense[k].shape for k in rm.masks)
        x, _ = ins.held_out_images(rm.data, 4)
        with torch.no_grad():       # the compacted twin computes what the expanded model does
            assert torch.allclose(rm.compact(x), rm.pruned(x), atol=1e-4)
        n = ins.compact_numbers(rm)
        shrunk_params = sum(saved[k].numel() for k, _ in rm.pruned.named_parameters())
        assert n["shrunk"] and n["params_dense"] == param_counts(rm.dense)[0]
        assert n["params_compact"] == param_counts(rm.compact)[0] <= shrunk_params
        assert n["params_compact"] < n["params_dense"] and n["filters_removed"] > 0
        at = _page(monkeypatch, store.root).run()                # the newest run is picked
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert at.selectbox(key="inspect_run").value == run_id
        shown = {m.label: m.value for m in at.metric}
        assert shown["Compact model's parameters"] == f"{n['params_compact']:,}"
        assert shown["Filters removed"] == f"{n['filters_removed']} of {n['filters']}"
        assert any("physically removed filters" in c.value for c in at.caption)
        assert len(at.tabs) == 4 and len(at.get("plotly_chart")) >= 3
    finally:
        store.delete(run_id)        # the other tests see the module's one run


# -- agreement and the layer view ----------------------------------------------------------------
def test_agreement_per_class_matches_the_models_accuracy(rm):
    per_class = ins.agreement(rm.dense, rm.pruned, rm.data)
    assert per_class.n.sum() == len(rm.data.test_y)
    dense = (per_class.dense_accuracy * per_class.n).sum() / per_class.n.sum()
    assert dense == pytest.approx(evaluate(rm.dense, rm.data, torch.device("cpu"))["accuracy"])
    assert per_class.agreement.between(0, 1).all()
    assert ins.overall_agreement(ins.agreement(rm.dense, rm.dense, rm.data)) == 1.0


@pytest.mark.parametrize("method", ins.LAYER_ATTRIBUTIONS)
def test_layer_view_has_one_row_per_filter_with_the_runs_filter_mask(rm, method):
    x, y = ins.held_out_images(rm.data, 4)
    contrib = ins.layer_contributions(rm.dense, "conv2", x, y, rm.masks, method, n_steps=8)
    assert contrib["filter"].tolist() == list(range(32))
    assert (contrib.status == "pruned").sum() == 16 and (contrib.status == "kept").sum() == 16
    kept = rm.masks["conv2.weight"].flatten(1).any(1)
    assert contrib.status.eq("kept").tolist() == kept.tolist()
    assert contrib[["contribution", "abs_contribution"]].notna().all().all()
    shares = ins.contribution_shares(contrib)
    assert shares.contribution_share.sum() == pytest.approx(1.0)


# -- sensitivity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sens.KINDS)
def test_scan_at_rate_zero_equals_the_dense_accuracy_and_leaves_the_model(rm, batch, kind):
    x, y = batch
    before = {k: v.clone() for k, v in rm.dense.state_dict().items()}
    scan = sens.sensitivity_scan(rm.dense, x, y, rates=[0.0, 0.5, 0.9], kind=kind,
                                all_layers=True)
    dense = evaluate(rm.dense, rm.data, torch.device("cpu"))
    at0 = scan[scan.rate == 0.0]
    assert len(at0) == scan.layer.nunique() >= 3
    assert (at0.accuracy == dense["accuracy"]).all()
    assert at0.loss.to_numpy() == pytest.approx(dense["loss"], rel=1e-5)
    assert (at0.pruned_params == 0).all()
    for k, v in rm.dense.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("kind", sens.KINDS)
def test_pruning_a_layer_hard_costs_accuracy_on_average(rm, batch, kind):
    x, y = batch
    scan = sens.sensitivity_scan(rm.dense, x, y, rates=[0.0, 0.9], kind=kind, all_layers=True)
    mean = scan.groupby("rate").accuracy.mean()
    assert mean[0.9] < mean[0.0] - 0.1


@pytest.mark.parametrize("kind", sens.KINDS)
def test_scan_masks_are_the_engines_magnitude_masks(kind):
    from pruneviz.masks import (
        filter_mask,
        filter_norms,
        filter_param_masks,
        layerwise_magnitude,
        n_prune,
        prunable_layers,
    )

    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    layer = prunable_layers(model)[1]
    with torch.no_grad():       # ties: quantized weights and two equal filters
        layer.module.weight.copy_((layer.module.weight * 20).round() / 20)
        layer.module.weight[1] = layer.module.weight[0]
    w = layer.module.weight.detach()
    rates = [0.0, 0.1, 0.33, 0.5, 0.9]
    for rate, masks, removed in sens.scan_masks(layer, kind, rates):
        if kind == "filter":
            n = n_prune(w.shape[0], rate)
            want = filter_param_masks(layer, filter_mask(filter_norms(w), n))
        else:
            want = layerwise_magnitude({layer.param: w}, rate)
        assert masks.keys() == want.keys()
        for k in want:
            assert torch.equal(masks[k], want[k]), (rate, k)
        assert removed == int((masks[layer.param] == 0).sum())


def test_scan_pruned_params_follow_the_rounding_rule(rm, batch):
    x, y = batch
    scan = sens.sensitivity_scan(rm.dense, x, y, rates=[0.5], kind="filter")
    conv2 = scan.set_index("layer").loc["conv2"]
    assert conv2.params == 32 * 16 * 9 and conv2.pruned_params == 16 * 16 * 9


def _toy_scan(drops, sizes):
    rows = []
    for (layer, d), n in zip(drops.items(), sizes):
        for rate, drop in zip((0.0, 0.5, 0.9), (0.0, d / 2, d)):
            rows.append({"layer": layer, "rate": rate, "accuracy": 0.9 - drop, "loss": 0.0,
                         "params": n, "pruned_params": 0, "accuracy_drop": drop,
                         "kind": "unstructured"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("target", [0.0, 0.3, 0.7, 0.9, 0.95])
def test_suggested_rates_average_to_the_target_weighted_by_layer_size(target):
    scan = _toy_scan({"a": 0.6, "b": 0.05, "c": 0.3, "d": 0.0}, [100, 5000, 2000, 50])
    rates = sens.suggest_rates(scan, target, max_rate=0.95)
    assert sens.weighted_mean_rate(rates, scan) == pytest.approx(target, abs=1e-9)
    assert all(0.0 <= r <= 0.95 for r in rates.values())
    # the more sensitive layer is never pruned more
    assert rates["a"] <= rates["c"] <= rates["b"] <= rates["d"]


def test_suggested_rates_on_a_real_scan_hit_the_target(rm, batch):
    x, y = batch
    scan = sens.sensitivity_scan(rm.dense, x, y, rates=[0.0, 0.5, 0.9], kind="filter")
    rates = sens.suggest_rates(scan, 0.6)
    assert sens.weighted_mean_rate(rates, scan) == pytest.approx(0.6, abs=1e-9)
    assert set(rates) == set(scan.layer)


def test_an_unreachable_target_is_refused():
    with pytest.raises(ConfigError, match="max_rate"):
        sens.suggest_rates(_toy_scan({"a": 0.1}, [10]), 0.97, max_rate=0.95)


def test_layer_rates_string_round_trips_and_rejects_garbage():
    rates = {"conv2": 0.41876, "layer1.0.conv1": 0.9, "fc": 0.0}
    text = format_layer_rates(rates)
    assert text == "conv2=0.4188,layer1.0.conv1=0.9,fc=0"
    assert parse_layer_rates(text) == pytest.approx({**rates, "conv2": 0.4188})
    for bad in ("conv2", "conv2=abc", "=0.5", "conv2=1.0"):
        with pytest.raises(ConfigError, match="layer=rate"):
            parse_layer_rates(bad)


def _synthetic(channels: int, side: int) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (24, channels, side, side), dtype=torch.uint8, generator=g)
    y = torch.arange(24) % 4
    return DataBundle("synthetic", x, y, x, y, [str(i) for i in range(4)], False)


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8)), ("lenet5", (1, 8)),
                                        ("resnet20", (3, 8)), ("vgg11", (3, 8)),
                                        ("resnet18", (3, 16))])
def test_every_model_family_can_be_inspected(name, shape):
    data = _synthetic(*shape)
    torch.manual_seed(0)
    model = build_model(name, data.input_shape, 4).eval()
    x, y = ins.held_out_images(data, 4)
    attr, _ = ins.attribute(model, x, y, "integrated_gradients", n_steps=4)
    assert attr.shape == x.shape and torch.isfinite(attr).all()
    layer = ins.inspectable_layers(model)[-1]
    contrib = ins.layer_contributions(model, layer, x, y, {}, "gradient_x_activation")
    assert len(contrib) == 4 and (contrib.status == "kept").all()
    layers = sens.scan_layers(model)[:3]        # the first few keep VGG/ResNet-18 fast
    scan = sens.sensitivity_scan(model, *sens.heldout_batch(data), rates=[0.0, 0.5], layers=layers)
    assert len(scan) == 2 * len(layers) and scan.accuracy.between(0, 1).all()


# -- the page ------------------------------------------------------------------------------------
APP = "../app.py"            # AppTest resolves it relative to this file


def _page(monkeypatch, root) -> AppTest:
    """The Inspect page as users open it: through app.py's navigation (its link to the Live
    session form needs the router)."""
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    app = AppTest.from_file(APP, default_timeout=120).run()
    return app.switch_page("pages/inspect.py")


def test_page_renders_every_view_of_a_run(run_store, monkeypatch):
    store, run_id = run_store
    at = _page(monkeypatch, store.root).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="inspect_run").value == run_id
    assert at.radio(key="attr_method").value == "integrated_gradients"
    assert at.selectbox(key="layer_name").value == "conv1"
    assert len(at.tabs) == 4 and len(at.get("plotly_chart")) >= 3
    assert at.button[0].label == "Scan the dense start"


def test_page_scan_and_suggestion_prefill_the_session_form(run_store, monkeypatch):
    store, _ = run_store
    at = _page(monkeypatch, store.root).run()
    at.radio(key="scan_kind").set_value("filter")
    at.button[0].click().run()
    assert not at.exception and not at.error
    at.number_input(key="suggest_target").set_value(0.6)
    at.button(key="suggest").click().run()
    assert not at.exception and not at.error
    prefill = at.session_state["prefill"]
    assert prefill["rate"] == pytest.approx(0.6)
    assert set(parse_layer_rates(prefill["layer_rates"])) == {"conv1", "conv2", "conv3"}
    run = store.run(at.selectbox(key="inspect_run").value)["config"]
    assert (prefill["model"], prefill["dataset"]) == (run.model, run.dataset)
    assert any("prune single weights" in w.value for w in at.warning)    # a filter scan


def test_suggested_rates_set_the_live_forms_model_and_dataset_and_warn_of_a_filter_scan(
        tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=60)
    at.session_state["prefill"] = {"layer_rates": "conv1=0.2, layer1.0.conv1=0.5", "rate": 0.4,
                                   "kind": "filter", "model": "resnet20",
                                   "dataset": "cifar10_small", "image_size": 32,
                                   "data_root": "~/.cache/pruneviz"}
    at.switch_page("pages/live.py").run()
    assert not at.exception
    assert at.selectbox(key="live.model").value == "resnet20"
    assert at.selectbox(key="live.dataset").value == "cifar10_small"
    assert at.text_input(key="live.slr.layer_rates").value.startswith("conv1=0.2")
    assert not at.error
    assert any("prune single weights" in w.value for w in at.warning)


def test_page_with_bad_rates_shows_an_error_not_a_traceback(run_store, monkeypatch):
    store, _ = run_store
    at = _page(monkeypatch, store.root).run()
    at.text_input(key="scan_rates").input("0, 2")
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["rates are fractions pruned in [0, 1), got 2.0."]


def test_page_on_an_empty_store_says_how_to_start(tmp_path, monkeypatch):
    at = _page(monkeypatch, tmp_path / "runs").run()
    assert not at.exception and not at.error
    assert "No completed runs" in at.info[0].value


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_scans_and_suggests(tmp_path, capsys):
    assert main(["sensitivity", "--store", str(tmp_path), "--dense-epochs", "3", "--device",
                 "cpu", "--rates", "0,0.5,0.9", "--target", "0.7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    scan = pd.DataFrame(out["scan"])
    assert set(scan.layer) == {"conv2", "conv3"} and sorted(scan.rate.unique()) == [0, 0.5, 0.9]
    assert (scan[scan.rate == 0].accuracy == out["dense_accuracy"]).all()
    rates = parse_layer_rates(out["layer_rates"])
    assert sens.weighted_mean_rate(rates, scan) == pytest.approx(0.7, abs=1e-3)


BAD = [
    (["--rates", "0,1.5"], "rates"),
    (["--rates", "a,b"], "--rates"),
    (["--kind", "channels"], "--kind"),
    (["--target", "0.99"], "max_rate"),
    (["--max-rate", "1"], "max_rate"),
    (["--limit", "-3"], "--limit"),
    (["--model", "mlp", "--kind", "filter"], "no convolutions"),
    (["--model", "resnet9000"], "unknown model"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/pruneviz-data"], "--download"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_cli_bad_input_exits_2_with_one_line_and_no_store(tmp_path, capsys, args, needle):
    root = tmp_path / "runs"
    assert main(["sensitivity", "--store", str(root), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:") and needle in err[0], err
    assert not root.exists()


def test_the_run_picker_shows_a_runs_name(run_store, monkeypatch):
    store, run_id = run_store
    store.rename(run_id, "my filter run")
    try:
        at = _page(monkeypatch, store.root).run()
        picker = at.selectbox(key="inspect_run")
        assert picker.format_func(run_id).startswith("my filter run · ")
    finally:
        store.rename(run_id, "")
