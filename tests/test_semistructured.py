"""The 2:4 kernels in the metrics panel: which layers they take, the measurement plumbing (with
a stand-in converter, as no GPU runs the tests), and the plain "no 2:4 kernels here" on CPU."""

import torch
import torch.nn as nn

from pruneviz.config import SessionConfig
from pruneviz.masks import nm_mask
from pruneviz.models import build_model
from pruneviz.panel_text import format_panel, notes, panel_frame
from pruneviz.report import build_panel, models_from_state
from pruneviz.semistructured import NO_KERNELS, eligible, is_two_four, kernel_support, measure

SHAPE = (1, 8, 8)


def two_four_mlp() -> nn.Module:
    """The mlp model (fc1 64->256, fc2 256->128, fc3 128->10) with 2:4 fc1 and fc2."""
    torch.manual_seed(0)
    model = build_model("mlp", SHAPE, 10).eval()
    with torch.no_grad():
        for layer in (model.fc1, model.fc2):
            layer.weight.mul_(nm_mask(layer.weight.abs(), 2, 4))
    return model


def test_a_machine_without_cuda_has_no_2_4_kernels_and_says_the_zeros_only_compress():
    backend, reason = kernel_support()
    assert backend is None and reason.startswith(NO_KERNELS)


def test_only_2_4_linears_that_fit_the_kernel_block_are_taken():
    model = nn.Sequential(nn.Conv2d(4, 16, 3), nn.Flatten(), nn.Linear(64, 32), nn.Linear(32, 32),
                          nn.Linear(32, 10))
    with torch.no_grad():
        model[2].weight.mul_(nm_mask(model[2].weight.abs(), 2, 4))
        model[4].weight.mul_(nm_mask(model[4].weight.abs(), 2, 4))
    take, skip = eligible(model, (16, 16))
    assert take == ["2"]
    assert "convolution" in skip["0"] and "not 2:4" in skip["3"] and "16 x 16" in skip["4"]
    assert is_two_four(model[2].weight) and not is_two_four(model[3].weight)


def test_measure_times_dense_against_the_converted_layers_pair_by_pair():
    seen = []

    def convert(w):      # a stand-in for to_sparse_semi_structured: same values, counted
        seen.append(tuple(w.shape))
        return w.clone()

    out = measure(two_four_mlp(), SHAPE, (1, 8), budget_s=0.01, backend="cuSPARSELt",
                  device="cpu", dtype=torch.float32, to_sparse=convert)
    assert out["layers"] == ["fc1", "fc2"] and seen == [(256, 64), (128, 256)]
    assert "fc3" in out["skipped"] and out["max_abs_diff"] == 0.0
    assert [r["batch"] for r in out["rows"]] == [1, 8]
    assert all(r["speedup"] > 0 and r["reps"] >= 5 for r in out["rows"])


def test_measure_refuses_to_time_a_conversion_that_changes_the_outputs():
    out = measure(two_four_mlp(), SHAPE, (1,), backend="cuSPARSELt", device="cpu",
                  dtype=torch.float32, to_sparse=lambda w: torch.zeros_like(w))
    assert "refusing to time it" in out["error"] and out["rows"] == []


def test_a_kernel_the_device_lacks_is_reported_not_raised():
    def fail(w):
        raise RuntimeError("CUDA error: no kernel image is available\nmore")

    out = measure(two_four_mlp(), SHAPE, (1,), backend="CUTLASS", device="cpu",
                  dtype=torch.float32, to_sparse=fail)
    assert out["error"] == "RuntimeError: CUDA error: no kernel image is available"


def nm_panel(**kw):
    model = two_four_mlp()
    models = models_from_state("mlp", SHAPE, 10, model.state_dict())
    config = SessionConfig(method="l1", model="mlp", rate=0.5, params={"nm": "2:4"})
    return build_panel(models, config, {"nm_dense_layers": "fc3 (10 ...): left dense"},
                       latency_budget_s=0.01, batches=(1,), devices=["cpu"], **kw)


def test_the_cpu_panel_of_a_2_4_run_says_no_kernels_here_and_names_its_2_4_layers():
    panel = nm_panel()
    ss = panel["semi_structured"]
    assert ss["backend"] is None and ss["two_four_linears"] == ["fc1", "fc2"]
    text = " ".join(panel["notes"])
    assert "no 2:4 kernels here; the zeros only compress" in text
    assert "nm=2:4: fc3 (10 ...): left dense" in text
    assert "no 2:4 kernels here" in format_panel(panel)


def test_a_gpu_measurement_becomes_a_note_table_rows_and_cli_lines():
    panel = nm_panel()
    panel["semi_structured"] = measure(two_four_mlp(), SHAPE, (1, 64), budget_s=0.01,
                                       backend="cuSPARSELt", device="cpu", dtype=torch.float32,
                                       to_sparse=lambda w: w.clone())
    text = " ".join(notes(panel))
    assert "2 Linear layer(s) on the 2:4 kernels (cuSPARSELt, float32)" in text
    assert "no 2:4 kernels" not in text
    rows = panel_frame(panel)
    assert list(rows.metric[rows.metric.str.contains("2:4")]) == [
        "latency ms cuda 2:4 batch 1", "latency ms cuda 2:4 batch 64"]
    assert "on 2:4 kernels" in format_panel(panel)


def test_a_run_without_a_pattern_has_no_2_4_section():
    model = two_four_mlp()
    models = models_from_state("mlp", SHAPE, 10, model.state_dict())
    panel = build_panel(models, SessionConfig(method="l1", model="mlp", rate=0.5), {},
                        latency_budget_s=0.01, batches=(1,), devices=["cpu"])
    assert "semi_structured" not in panel
    assert not any("2:4" in n for n in panel["notes"])


# -- the Learn page's 2:4 section -------------------------------------------------------------
def test_the_two_four_toy_zeroes_half_of_every_group_of_four_and_times_it_on_cpu():
    from pruneviz import learn_speed
    from pruneviz.masks import nm_counts

    layers = learn_speed.two_four_linear(64)
    masked = layers["2:4 zeros, dense kernel"].weight
    assert (nm_counts(masked, 4) == 2).all()
    result = learn_speed.measure_two_four(features=64, batch=8, budget_s=0.2)
    assert list(result["cpu"].layer) == ["dense", "2:4 zeros, dense kernel"]
    assert result["cpu"].relative.iloc[0] == 1.0 and result["cpu"].relative.iloc[1] > 0
    assert result["kernel"] is None and result["reason"].startswith(NO_KERNELS)


def test_the_learn_page_times_2_4_on_request_and_says_there_are_no_kernels_on_cpu():
    import json
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    page = Path(__file__).resolve().parents[1] / "pages" / "learn_speed.py"
    at = AppTest.from_file(str(page), default_timeout=120).run()
    assert not at.exception and ".  " in at.code[0].value          # the pattern, dots pruned
    at.select_slider(key="learn.speed.nm.features").set_value(256).run()
    at.slider(key="learn.speed.nm.budget").set_value(0.5).run()
    at.button(key="learn.speed.nm.measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [c for c in at.get("plotly_chart") if c.proto.id.endswith("learn.speed.nm.cpu")]
    assert len(charts) == 1
    bars = json.loads(charts[0].proto.spec)["data"][0]
    assert len(bars["x"]) == 2
    assert any(NO_KERNELS in i.value for i in at.info)
