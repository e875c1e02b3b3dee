"""Honest numbers: compaction equals the masked network, compact FLOPs fall as predicted, every
export loads back to the same outputs, code-bearing files are refused, and the metrics panel of
a real run is complete and consistent."""

import json
import zipfile

import onnx
import onnxruntime
import pytest
import torch

from pruneviz.backends import run_measured
from pruneviz.cli import main
from pruneviz.config import SessionConfig
from pruneviz.export import export_run, load_run_card
from pruneviz.masks import apply_masks, filter_param_masks, prunable_layers
from pruneviz.metrics import count_flops, flops_by_module
from pruneviz.models import build_model
from pruneviz.report import format_panel, load_run_models, metrics_panel, models_from_state
from pruneviz.safe_load import UnsafeFileError, check_program, load_program, load_tensors
from pruneviz.surgery import channel_groups, compact, remove_filters
from tests.helpers import randomize_bn

SHAPES = {"tiny_cnn": (1, 8, 8), "vgg11": (3, 16, 16), "resnet20": (3, 16, 16)}


def _zero_filters(model, plan):
    """Zero filters (conv weight, BN gamma and beta) as filter methods do: {conv: indices}."""
    layers = {l.name: l for l in prunable_layers(model, linears=False, shortcuts=True)}
    masks = {}
    for name, idx in plan.items():
        fmask = torch.ones(model.get_submodule(name).out_channels)
        fmask[list(idx)] = 0
        masks.update(filter_param_masks(layers[name], fmask))
    apply_masks(model, masks)


def _model(name, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, SHAPES[name], 10).eval()
    randomize_bn(model, seed)
    return model


def _uneven(model, shape):
    """Uneven keeps: group i loses (i % 3 + 1) / 8 of its channels, the same ones in every
    member, so all of them are removable. Returns ({conv: indices}, removable count)."""
    plan, removable = {}, 0
    for i, group in enumerate(channel_groups(model, torch.zeros(1, *shape))):
        n = model.get_submodule(group[0]).out_channels
        k = (i % 3 + 1) * n // 8
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(i))[:k].tolist()
        for name in group:
            plan[name] = idx
        removable += k * len(group)
    return plan, removable


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_compact_equals_masked_with_uneven_keeps(name):
    model = _model(name)
    plan, removable = _uneven(model, SHAPES[name])
    _zero_filters(model, plan)
    small, report = compact(model, SHAPES[name])
    assert report["filters_removed"] == removable and report["filters_coupled"] == 0
    x = torch.randn(5, *SHAPES[name])
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max().item() <= 1e-5
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_zero_but_coupled_filters_are_counted_not_removed():
    model = _model("resnet20")
    # three filters of one block's output conv: its residual group is alive in the other convs
    _zero_filters(model, {"layer2.1.conv2": [0, 3, 5], "layer2.1.conv1": [1, 2]})
    small, report = compact(model, SHAPES["resnet20"])
    assert report["coupled"] == {"layer2.1.conv2": 3}
    assert report["filters_removed"] == 2 and report["filters_dead"] == 5
    assert small.layer2[1].conv2.out_channels == 32 and small.layer2[1].conv1.out_channels == 30


def _conv_flops(conv, h, w):
    return 2 * conv.out_channels * conv.in_channels * conv.kernel_size[0] ** 2 * h * w


def test_compact_flops_match_the_counter_and_fall_as_predicted():
    model = _model("tiny_cnn")
    _zero_filters(model, {"conv2": range(0, 32, 2)})        # half of conv2's filters
    small, _ = compact(model, (1, 8, 8))
    before, after = flops_by_module(model, (1, 8, 8)), flops_by_module(small, (1, 8, 8))
    assert after["conv2"] * 2 == before["conv2"]            # half the filters
    assert after["conv3"] * 2 == before["conv3"]            # half of its input channels
    assert after["conv1"] == before["conv1"] and after["fc"] == before["fc"]
    assert after[""] == count_flops(small, (1, 8, 8)) == sum(
        after[k] for k in ("conv1", "conv2", "conv3", "fc"))
    assert after["conv2"] == _conv_flops(small.conv2, 8, 8)
    assert after["conv3"] == _conv_flops(small.conv3, 4, 4)


def test_shrunk_network_expands_onto_the_original_architecture():
    shape = SHAPES["resnet20"]
    small = _model("resnet20")
    plan = {"layer1.0.conv1": [1, 4, 9], "layer2.0.conv2": list(range(0, 32, 4))}
    removal, _ = remove_filters(small, torch.zeros(1, *shape), plan)
    state = small.state_dict()
    kept = {"filters": {c: removal.kept[f"{c}.weight"][0] for c in plan}}
    x = torch.randn(3, *shape)
    with torch.no_grad():
        expected = small(x)
    for kept_file, known in ((kept, True), (None, False)):
        models = models_from_state("resnet20", shape, 10, state, None, kept_file)
        assert models.compaction["shrunk"] and models.compaction["positions_known"] == known
        with torch.no_grad():
            assert (models.masked(x) - expected).abs().max().item() <= 1e-5
            assert (models.compact(x) - expected).abs().max().item() <= 1e-5
        assert models.masked.layer2[0].conv2.out_channels == 32
        assert models.compact.layer2[0].conv2.out_channels == 24
    w = models_from_state("resnet20", shape, 10, state, None, kept).masked.layer1[0].conv1.weight
    assert w[[1, 4, 9]].abs().sum() == 0 and (w.flatten(1)[[0, 2, 3]] != 0).any(1).all()


# -- a real digits run: panel, exports, CLI ---------------------------------------------------
FAST = dict(dense_epochs=3, epochs=2, device="cpu")     # as conftest's fast_config


@pytest.fixture(scope="module")
def filter_run(shared_store):
    summary = run_measured(SessionConfig(method="l2_filter", rate=0.5, **FAST), shared_store)
    assert summary["status"] == "completed"
    return shared_store, summary


@pytest.fixture(scope="module")
def exported(filter_run, tmp_path_factory):
    store, summary = filter_run
    out = tmp_path_factory.mktemp("export")
    export_run(store, summary["run_id"], out)
    return store, summary, out


PANEL_FIELDS = {"target", "target_of", "sparsity", "global_sparsity", "filter_sparsity",
                "params_dense", "params_nonzero", "params_compact", "flops_dense",
                "flops_compact", "flops_effective", "bytes_dense", "bytes_dense_gzip",
                "bytes_compact", "filters", "filters_zero", "filters_removed", "filters_coupled",
                "max_abs_diff", "latency", "notes", "panel_s"}


def test_panel_fields_are_present_and_consistent(filter_run):
    store, summary = filter_run
    panel = summary["panel"]
    assert PANEL_FIELDS <= set(panel), PANEL_FIELDS - set(panel)
    assert panel["target"] == 0.5 and panel["kind"] == "filter"
    for key in ("sparsity", "global_sparsity"):
        assert panel[key] == pytest.approx(summary[key], abs=1e-9)
    assert panel["params_nonzero"] == summary["params_nonzero"]
    assert panel["params_dense"] == summary["params_dense"]
    assert panel["flops_dense"] == summary["flops_dense"]
    assert panel["filter_sparsity"] == pytest.approx(0.5, abs=0.02)
    models = load_run_models(store, summary["run_id"])
    assert panel["flops_compact"] == count_flops(models.compact, (1, 8, 8)) < panel["flops_dense"]
    assert panel["params_compact"] == sum(p.numel() for p in models.compact.parameters())
    assert panel["bytes_compact"] < panel["bytes_dense"]
    assert panel["max_abs_diff"] <= 1e-5
    cells = {(r["device"], r["batch"]) for r in panel["latency"]}
    assert {("cpu", 1), ("cpu", 64)} <= cells
    for r in panel["latency"]:
        assert r["dense_ms"] > 0 and r["compact_ms"] > 0 and r["reps"] >= 1
        assert r["speedup"] > 0
        assert r["device"] != "cpu" or r["threads"] == torch.get_num_threads()
    assert metrics_panel(store, summary["run_id"]) == panel


def test_unstructured_run_says_its_zeros_do_not_shrink_the_model(shared_store, fast_config):
    summary = run_measured(fast_config(method="l1", rate=0.8), shared_store)
    panel = summary["panel"]
    assert panel["params_compact"] == panel["params_dense"]
    assert panel["flops_compact"] == panel["flops_dense"]
    assert panel["flops_effective"] < 0.4 * panel["flops_dense"]
    assert any("scattered" in n for n in panel["notes"])


def test_report_command_prints_and_recomputes(filter_run, capsys):
    store, summary = filter_run
    run_id = summary["run_id"]
    assert main(["report", run_id, "--store", str(store.root)]) == 0
    text = capsys.readouterr().out
    assert "metrics panel" in text and "latency cpu b64" in text and "compact" in text
    assert main(["report", run_id, "--store", str(store.root), "--json", "--recompute"]) == 0
    panel = json.loads(capsys.readouterr().out)
    assert panel["params_compact"] == summary["panel"]["params_compact"]
    assert (store.run_dir(run_id) / "panel.json").exists()
    assert format_panel({"error": "x"}).startswith("metrics panel: not available")


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_masked_state_dict_and_masks_load_into_the_original_architecture(exported):
    store, summary, out = exported
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    model.load_state_dict(torch.load(out / "masked_state_dict.pt", weights_only=True))
    masks = torch.load(out / "masks.pt", weights_only=True)
    params = dict(model.named_parameters())
    assert masks and all(m.dtype == torch.bool and m.shape == params[k].shape
                         for k, m in masks.items())
    assert all(torch.all(params[k][~m] == 0) for k, m in masks.items())
    trained = build_model("tiny_cnn", (1, 8, 8), 10)
    trained.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    x = torch.randn(6, 1, 8, 8)
    assert torch.equal(_outputs(model, x), _outputs(trained, x))


def test_compact_program_round_trips(exported):
    store, summary, out = exported
    masked = load_run_models(store, summary["run_id"]).masked
    for batch in (1, 5):
        x = torch.randn(batch, 1, 8, 8)
        for loaded in (torch.export.load(out / "model_compact.pt2").module(),
                       load_program(out / "model_compact.pt2").module()):
            assert (loaded(x) - _outputs(masked, x)).abs().max().item() <= 1e-5
    loaded = torch.export.load(out / "model_compact.pt2").module()
    assert sum(p.numel() for p in loaded.parameters()) == summary["panel"]["params_compact"]


def test_onnx_export_checks_and_runs_the_same(exported):
    store, summary, out = exported
    onnx.checker.check_model(onnx.load(str(out / "model_compact.onnx")))
    session = onnxruntime.InferenceSession(str(out / "model_compact.onnx"),
                                           providers=["CPUExecutionProvider"])
    masked = load_run_models(store, summary["run_id"]).masked
    x = torch.randn(7, 1, 8, 8)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert (got - _outputs(masked, x)).abs().max().item() <= 1e-4


def test_run_card_reads_back(exported):
    store, summary, out = exported
    card = load_run_card(out)
    assert card["config"] == store.run(summary["run_id"])["config"]
    assert card["summary"]["run_id"] == summary["run_id"]
    assert card["metrics"]["params_compact"] == summary["panel"]["params_compact"]
    assert card["metrics"]["exports"]["pt2_max_abs_diff"] <= 1e-5
    assert len(card["records"]["scalars"]) > 10 and "layers" in card["records"]
    assert set(card["masks"]) <= set(card["masked_state_dict"])


def test_export_formats_subset_from_the_cli(filter_run, tmp_path, capsys):
    store, summary = filter_run
    assert main(["export", summary["run_id"], "--store", str(store.root), "--out",
                 str(tmp_path), "--formats", "card,masks"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "metrics.json", "scalars.csv", "masks.pt"} <= names
    assert not names & {"model_compact.pt2", "model_compact.onnx", "masked_state_dict.pt"}
    assert main(["export", summary["run_id"], "--store", str(store.root), "--out",
                 str(tmp_path), "--formats", "zip"]) == 2
    assert "unknown export format" in capsys.readouterr().err


# -- refusing code -----------------------------------------------------------------------------
class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))     # loading it would create a file


def test_pickle_bearing_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"conv.weight": torch.ones(2), "x": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match="refused to load .*evil.pt"):
        load_tensors(tmp_path / "evil.pt")
    assert not marker.exists()


def test_run_card_with_a_code_bearing_tensor_file_is_refused(exported, tmp_path):
    _, _, out = exported
    for name in ("config.json", "summary.json"):
        (tmp_path / name).write_text((out / name).read_text())
    torch.save({"x": _Payload(str(tmp_path / "ran"))}, tmp_path / "masks.pt")
    with pytest.raises(UnsafeFileError):
        load_run_card(tmp_path)
    assert not (tmp_path / "ran").exists()


def test_program_archive_with_a_pickled_payload_is_refused(exported, tmp_path):
    _, _, out = exported
    check_program(out / "model_compact.pt2")      # ours is plain
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(out / "model_compact.pt2") as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        root = src.namelist()[0].split("/")[0]
        dst.writestr(f"{root}/data/constants/opaque_obj_0", b"\x80\x02c__builtin__\neval\n.")
    with pytest.raises(UnsafeFileError, match="opaque_obj_0"):
        load_program(bad)
