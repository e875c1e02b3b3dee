"""Perplexity beside accuracy: a language model's runs record held-out loss, perplexity and
next-token accuracy, and every reader of a quality measure knows which way is better."""

import math

import pandas as pd
import pytest
import torch

from pruneviz.config import SessionConfig
from pruneviz.guards import run_warnings
from pruneviz.plots_compare import pareto_front
from pruneviz.quality import ACCURACY, COMPARE_METRICS, PERPLEXITY, quality_for, quality_of
from pruneviz.session import run_session

LM = dict(model="gpt_tiny", dataset="pydoc", dense_epochs=1, epochs=2, max_steps_per_epoch=2,
          batch_size=8, eval_limit=8, device="cpu")


def test_directions_and_drops():
    assert ACCURACY.drop(0.9, 0.8) == pytest.approx(0.1)
    assert PERPLEXITY.drop(3.0, 5.0) == pytest.approx(2.0)
    assert PERPLEXITY.better(3.0, 5.0) and ACCURACY.better(0.9, 0.8)
    assert ACCURACY.drop(None, 0.5) is None and PERPLEXITY.drop(3.0, math.nan) is None
    assert quality_for("pydoc") is PERPLEXITY and quality_for("text:/x") is PERPLEXITY
    assert quality_for("digits") is ACCURACY
    assert quality_of({"final_perplexity": 4.0, "dataset": "?"}) is PERPLEXITY
    assert not COMPARE_METRICS["final_perplexity"][1] and COMPARE_METRICS["final_accuracy"][1]


def _warn(**kw):
    base = dict(method="gmp", kind="unstructured", rate=0.5, params={}, layers=[], cut=False,
                dense_accuracy=0.55, final_accuracy=0.01, num_classes=256, epochs=8,
                recovery_epochs=2.0, recovery_hint="")
    return run_warnings(**{**base, **kw})


def test_perplexity_far_above_dense_warns_and_near_it_does_not():
    far = _warn(dense_perplexity=3.0, final_perplexity=7.0)
    assert len(far) == 1 and "perplexity 7.00" in far[0] and "2.3x" in far[0]
    assert _warn(dense_perplexity=3.0, final_perplexity=4.0) == []
    # an image run is judged by accuracy as before
    assert any("points below" in w for w in _warn(dense_accuracy=0.9, final_accuracy=0.5,
                                                  num_classes=10))


def test_the_pareto_front_of_perplexity_keeps_the_lowest():
    df = pd.DataFrame({"sparsity": [0.5, 0.5, 0.8], "final_perplexity": [3.0, 4.0, 5.0]})
    front = pareto_front(df, "sparsity", "final_perplexity", maximize_x=True,
                         maximize_y=COMPARE_METRICS["final_perplexity"][1])
    assert front.final_perplexity.tolist() == [3.0, 5.0]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    from pruneviz.store import Store

    store = Store(tmp_path_factory.mktemp("lm") / "runs")
    return store, run_session(SessionConfig(method="gmp", rate=0.5, **LM), store)


def test_a_language_model_run_records_perplexity_beside_accuracy(lm_run):
    store, s = lm_run
    assert s["status"] == "completed", s.get("error")
    dense_loss = store.scalars(s["run_id"], ["dense_loss"]).value.iloc[-1]
    assert s["dense_perplexity"] == pytest.approx(math.exp(dense_loss), rel=1e-6)
    assert s["final_perplexity"] > 1.0
    assert 0.0 <= s["dense_accuracy"] <= 1.0 and 0.0 <= s["final_accuracy"] <= 1.0
    curves = store.scalars(s["run_id"], ["test_loss", "test_perplexity", "test_accuracy"])
    per = curves.pivot_table(index="step", columns="key", values="value")
    assert len(per) == LM["epochs"]
    assert (per.test_perplexity - per.test_loss.map(math.exp)).abs().max() < 1e-6 * per.max().max()
    runs = store.runs()
    assert runs.final_perplexity.iloc[0] == pytest.approx(s["final_perplexity"])


def test_plots_reports_the_perplexity_rise_for_language_model_runs(lm_run):
    from pruneviz.ui.compare import compare_data, compare_table

    store, s = lm_run
    runs = compare_data(store, [s["run_id"]])["runs"]
    assert runs.perplexity_rise.iloc[0] == pytest.approx(s["final_perplexity"]
                                                         - s["dense_perplexity"])
    assert "final_perplexity" in compare_table(runs).columns


def test_inspect_shows_attention_maps_and_both_models_continue_a_prompt(lm_run):
    from pruneviz import inspect as ins

    store, s = lm_run
    rm = ins.load_run(store, s["run_id"])
    assert ins.is_transformer(rm.dense)
    x = ins.held_out_input(rm.data, 0)
    maps = ins.attention_maps(rm.pruned, x)
    assert len(maps) == 4 and maps[0].shape == (4, 64, 64)
    for m in maps:        # rows are distributions over the past only (causal)
        torch.testing.assert_close(m.sum(-1), torch.ones(4, 64))
        assert torch.all(m.triu(1) == 0)
    a = ins.continue_text(rm.dense, "The for statement", 20)
    assert a == ins.continue_text(rm.dense, "The for statement", 20)      # greedy
    assert len(a.encode("utf-8", errors="replace")) >= 1


def test_the_inspect_page_draws_a_language_models_view(lm_run, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    store, s = lm_run
    monkeypatch.setenv("PRUNEVIZ_STORE", str(store.root))
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120).run()
    at = at.switch_page("pages/inspect.py").run()
    assert not at.exception and not at.error
    assert at.text_area(key="lm_prompt").value
    assert len(at.code) == 2                         # dense and pruned continuations
    at.text_area(key="lm_prompt").set_value("  ").run()
    assert any("**Prompt** is empty" in e.value for e in at.error)


def test_the_head_grid_and_neuron_counts_show_what_l2_filter_pruned(lm_run):
    from pruneviz.plots_transformers import (
        head_grid_figure,
        neuron_counts_figure,
        structure_rows,
    )

    store, _ = lm_run
    s = run_session(SessionConfig(method="l2_filter", rate=0.5, **LM), store)
    assert s["status"] == "completed", s.get("error")
    assert (s["heads_removed"], s["neurons_removed"]) == (8, 4 * 128)
    filters = store.filters(s["run_id"], ["l2_norm", "mask"])
    heads = structure_rows(filters, "attn")
    assert len(heads) == 16 and (heads.groupby("block")["mask"].sum() == 2).all()
    # the pruned heads are each block's lowest-norm ones
    for _, b in heads.groupby("block"):
        assert b[b["mask"] == 0].l2_norm.max() <= b[b["mask"] == 1].l2_norm.min()
    grid = head_grid_figure(filters).data[0]
    assert len(grid.z) == 4 and len(grid.z[0]) == 4
    assert sum(row.count("pruned") for row in grid.text) == 8
    kept, pruned = neuron_counts_figure(filters).data
    assert list(kept.y) == [128] * 4 and list(pruned.y) == [128] * 4


def test_a_2_4_pattern_prunes_every_linear_of_the_blocks(lm_run):
    from pruneviz.masks import nm_counts
    from pruneviz.safe_load import load_tensors

    store, _ = lm_run
    s = run_session(SessionConfig(method="l1", rate=0.5, params={"nm": "2:4"}, **LM), store)
    assert s["status"] == "completed", s.get("error")
    weights = load_tensors(store.run_dir(s["run_id"]) / "weights.pt")
    names = [k for k in weights if k.startswith("blocks.") and k.endswith("weight")
             and weights[k].dim() == 2]
    assert len(names) == 16
    for k in names:
        assert (nm_counts(weights[k], 4) <= 2).all(), k
    assert torch.count_nonzero(weights["lm_head.weight"]) == weights["lm_head.weight"].numel()


def test_cli_list_shows_perplexity_for_language_model_runs(lm_run, capsys):
    from pruneviz.cli.main import main

    store, s = lm_run
    assert main(["list", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "final_perplexity" in out and f"{s['final_perplexity']:.4f}" in out
