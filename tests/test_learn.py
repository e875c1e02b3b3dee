"""Learn pages: the toy computations of pruneviz.learn against oracles and invariants, and every
page rendered with AppTest (no exception, key widgets, a slider moves its figure)."""

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from pruneviz import learn, learn_speed
from pruneviz.masks import filter_norms, layerwise_magnitude, n_prune
from pruneviz.methods.fggp import toy as fggp_toy
from pruneviz.methods.pgmpf import toy as pgmpf_toy
from pruneviz.methods.pgp import toy as pgp_toy
from pruneviz.methods.pgp import whole
from pruneviz.methods.slr import step_alpha
from pruneviz.methods.slr import toy as slr_toy

PAGES = Path(__file__).resolve().parents[1] / "pages"


# -- unstructured vs structured ----------------------------------------------------------------
def test_one_layer_unstructured_mask_is_layerwise_magnitude_and_leaves_the_shape():
    one = learn.one_layer(0.5, out_channels=8, seed=3)
    expected = layerwise_magnitude({"w": one.weight}, 0.5)["w"]
    assert torch.equal(one.unstructured, expected)
    hw = one.hardware.loc["unstructured"]
    assert hw["zero weights in conv1"] == one.weight.numel() // 2
    assert hw["conv1 weight after compaction"] == "8x4x3x3"
    assert hw["FLOPs after compaction"] == hw["FLOPs, dense kernels"]
    assert hw["FLOPs touching a nonzero weight"] < hw["FLOPs, dense kernels"]


def test_one_layer_structured_mask_zeroes_the_lowest_l2_filters_and_compacts():
    one = learn.one_layer(0.5, out_channels=8, seed=3)
    zero_filters = (one.structured.flatten(1) == 0).all(1)
    lowest = torch.argsort(filter_norms(one.weight))[:4]
    assert set(zero_filters.nonzero().flatten().tolist()) == set(lowest.tolist())
    assert (one.structured.flatten(1)[~zero_filters] == 1).all()
    hw = one.hardware.loc["structured"]
    assert hw["filters removed"] == 4 and hw["conv2 input channels"] == 4
    assert hw["conv1 weight after compaction"] == "4x4x3x3"
    assert hw["FLOPs after compaction"] < hw["FLOPs, dense kernels"]


# -- layer-wise vs global ----------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.5, 0.7, 0.93])
def test_layerwise_and_global_prune_the_same_total_up_to_per_layer_rounding(rate):
    weights = learn.toy_layers(seed=1)
    df = learn.layerwise_vs_global(weights, rate)
    totals = df.groupby("scheme").pruned.sum()
    n = sum(w.numel() for w in weights.values())
    assert totals["global"] == n_prune(n, rate)
    assert abs(totals["layer-wise"] - totals["global"]) <= len(weights) / 2
    if rate == 0.5:                      # every layer size is even: no rounding at all
        assert totals["layer-wise"] == totals["global"]
    lw = df[df.scheme == "layer-wise"].set_index("layer")
    for name, w in weights.items():
        assert lw.loc[name, "pruned"] == n_prune(w.numel(), rate)


def test_global_uses_one_cut_and_prunes_small_weight_layers_harder():
    weights = learn.toy_layers(seed=2)
    df = learn.layerwise_vs_global(weights, 0.7)
    g = df[df.scheme == "global"].set_index("layer")
    cut = g.cut.max()
    for name, w in weights.items():   # everything at or below the one cut is pruned
        assert g.loc[name, "pruned"] == int((w.abs() <= cut).sum())
    # He init: conv1 (fan-in 9) has the largest weights, conv3 (fan-in 144) the smallest
    assert g.loc["conv1", "sparsity"] < 0.7 < g.loc["conv3", "sparsity"]


# -- schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rate,epochs,d,end", [(0.6, 20, 0.125, 0.8), (0.9, 7, 0.3, 0.5),
                                               (0.5, 80, 0.125, 1.0)])
def test_every_schedule_rises_monotonically_from_0_to_the_rate(rate, epochs, d, end):
    curves = learn.schedule_curves(rate, epochs, d, end)
    assert list(curves.schedule.unique()) == list(learn.SCHEDULES)
    for name, c in curves.groupby("schedule"):
        assert c.sparsity.iloc[0] == 0.0 and c.sparsity.iloc[-1] == pytest.approx(rate)
        assert (c.sparsity.diff().dropna() >= -1e-12).all(), name
        assert c.sparsity.max() <= rate + 1e-12


def test_cubic_reaches_the_rate_at_t_end_and_asymptotic_does_three_quarters_by_d_e():
    rate, epochs, d, end = 0.8, 80, 0.125, 0.5
    curves = learn.schedule_curves(rate, epochs, d, end)
    cubic = curves[curves.schedule == learn.SCHEDULES[1]].set_index("epoch").sparsity
    assert cubic[end * epochs] == pytest.approx(rate)
    assert cubic[0.5 * end * epochs] == pytest.approx(rate * (1 - 0.5 ** 3))
    asym = curves[curves.schedule == learn.SCHEDULES[2]].set_index("epoch").sparsity
    # r_e computed at the end of e = D E is used from e + 1
    assert asym[d * epochs + 1] == pytest.approx(0.75 * rate)
    ms = learn.schedule_milestones(curves, rate).set_index("schedule")
    assert ms.loc[learn.SCHEDULES[0], "all of the pruning by epoch"] == 0.0
    assert ms.loc[learn.SCHEDULES[1], "all of the pruning by epoch"] == pytest.approx(
        end * epochs, abs=epochs / 200)


# -- PGMPF -------------------------------------------------------------------------------------
def test_pgmpf_factor_is_1_for_kept_and_0_or_one_minus_lambda_for_pruned():
    gm = pgmpf_toy.pgmpf_gradient_mask(20, 0.4, 5, n_filters=16, steps=50)
    pruned = gm.kept == 0
    assert int(pruned.sum()) == math.floor(16 * (1 - gm.keep) + 1e-9) > 0
    assert (gm.factors[:, ~pruned] == 1).all()
    values = gm.factors[:, pruned].unique().tolist()
    assert values == [0.0, pytest.approx(1 - gm.lam)]
    # the pruned filters are the lowest-norm ones
    assert gm.norms[pruned].max() <= gm.norms[~pruned].min()


def test_pgmpf_factor_averages_one_minus_lambda_over_two():
    gm = pgmpf_toy.pgmpf_gradient_mask(20, 0.5, 6, n_filters=16, steps=4000, seed=1)
    mean = gm.factors[:, gm.kept == 0].mean().item()
    assert mean == pytest.approx((1 - gm.lam) / 2, rel=0.03)
    means = pgmpf_toy.pgmpf_factor_means(20, 0.5, steps=400)
    assert means.sampled.to_numpy() == pytest.approx(means.expected.to_numpy(), abs=0.04)


def test_pgmpf_prunes_nothing_during_epoch_0_and_schedule_has_one_minus_lambda():
    gm = pgmpf_toy.pgmpf_gradient_mask(10, 0.4, 0)
    assert (gm.factors == 1).all()
    df = pgmpf_toy.pgmpf_schedule(10, 0.4).pivot(index="epoch", columns="series", values="value")
    assert df["1 - lambda_e"].to_numpy() == pytest.approx(1 - df["lambda_e"].to_numpy())


# -- FGGP --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rho,frac,coupling,seed", [(0.5, 0.2, 0.0, 0), (0.3, 0.25, 0.7, 4),
                                                    (0.8, 0.5, -0.5, 9)])
def test_fggp_prunes_the_smallest_w_among_the_rho_fraction_smallest_g(rho, frac, coupling, seed):
    tc = fggp_toy.fggp_two_cuts(rho, frac, coupling=coupling, seed=seed)
    w, g = tc.w.flatten(), tc.g.flatten()
    n = w.numel()
    candidates = torch.argsort(g)[:math.floor(rho * n)]                  # oracle
    expected = set(candidates[torch.argsort(w[candidates])[:math.floor(frac * n)]].tolist())
    out = tc.outcome.flatten()
    fggp = {i for i in range(n) if fggp_toy.OUTCOMES[out[i]] in ("pruned by both", "FGGP only")}
    gmp = {i for i in range(n) if fggp_toy.OUTCOMES[out[i]] in ("pruned by both", "GMP only")}
    assert fggp == expected
    assert gmp == set(torch.argsort(w)[:math.floor(frac * n)].tolist())
    assert tc.jaccard == pytest.approx(len(fggp & gmp) / len(fggp | gmp))
    assert tc.grad_cut == pytest.approx(g[candidates].max().item())
    assert tc.mag_cut == pytest.approx(w[list(expected)].max().item())


def test_fggp_with_rho_1_is_gmp_and_too_small_a_rho_is_an_error():
    assert fggp_toy.fggp_two_cuts(1.0, 0.3).jaccard == 1.0
    tc = fggp_toy.fggp_two_cuts(0.1, 0.3)
    assert tc.error and "ConfigError" in tc.error
    assert not any(fggp_toy.OUTCOMES[i] in ("pruned by both", "FGGP only")
                   for i in tc.outcome.flatten().tolist())


# -- PGP ---------------------------------------------------------------------------------------
def test_pgp_toy_follows_the_exponential_target_and_ends_on_it():
    toy = pgp_toy.pgp_toy(0.5, 6, 0.5, n_filters=32)
    c = toy.counts
    assert (c.active + c.soft + c.removed == 32).all()
    assert c.target.iloc[-1] == pytest.approx(16)
    assert c.active.iloc[-1] == 16 and c.soft.iloc[-1] == 0
    # the filters that stay active are exactly the whole-filter target, every epoch
    assert c.active.tolist() == [whole(t) for t in c.target]
    assert (c.removed.diff().dropna() >= 0).all()


def test_pgp_toy_hard_filters_are_the_weakest_half_of_the_weak_set():
    toy = pgp_toy.pgp_toy(0.6, 5, 0.5, n_filters=24, seed=2)
    for e, s in toy.scores.groupby("epoch"):
        cut = toy.cuts.set_index("epoch").loc[e]
        ranked = s.sort_values("score", kind="stable")
        weak = ranked.iloc[:int(cut.n_weak)]
        last = e == toy.scores.epoch.max()
        assert int(cut.n_hard) == (len(weak) if last else len(weak) // 2)
        assert set(weak.status.iloc[:int(cut.n_hard)]) <= {pgp_toy.HARD_NOW}
        assert set(ranked.status.iloc[int(cut.n_weak):]) <= {pgp_toy.ACTIVE}


def test_pgp_toy_soft_reset_filters_score_exactly_zero_the_next_epoch():
    toy = pgp_toy.pgp_toy(0.5, 6, 0.5)
    was_soft = toy.scores[toy.scores.was_soft]
    assert len(was_soft) > 0 and (was_soft.score == 0).all()
    assert (toy.scores[~toy.scores.was_soft].score > 0).all()


# -- SLR ---------------------------------------------------------------------------------------
def test_slr_and_admm_shrink_the_residual_and_the_hard_prune_loss():
    df = slr_toy.slr_vs_admm(0.75, 15, rho=1.0, s0=0.1)
    for method, d in df.groupby("method"):
        assert d.residual.iloc[-1] < 0.25 * d.residual.iloc[0], method
        assert d.loss_hard.iloc[-1] < df.attrs["one_shot_loss"], method
        # W moves away from the dense optimum towards the sparse set
        assert d.loss.iloc[-1] > df.attrs["dense_loss"]


def test_slr_step_factors_are_the_engines_alpha_k_and_z_is_sparse():
    problem = slr_toy.least_squares(0.75)
    d = slr_toy.relax(problem, 0.75, surrogate=True, iterations=8)
    steps = d.iloc[1:]
    assert (steps.k.diff().dropna() >= 0).all()
    used = steps.dropna(subset=["alpha"])
    assert len(used) > 0
    for k, alpha in zip(used.k, used.alpha):        # the last update of the iteration used k-1
        assert alpha == pytest.approx(step_alpha(int(k) - 1, 300.0, 0.1))
    assert d.iloc[0].residual == pytest.approx(d.iloc[0].prune_gap)    # Z_0 = Pi(W_0)


# -- why sparsity is not speed ------------------------------------------------------------------
def test_unstructured_zeros_keep_the_dense_flops_and_removed_filters_do_not():
    df = learn_speed.sparsity_flops(32, 8, 0.5).set_index("conv")
    dense, zeros, small = df.iloc[0], df.iloc[1], df.iloc[2]
    assert zeros["FLOPs a dense kernel runs"] == dense["FLOPs a dense kernel runs"]
    assert zeros["nonzero weights"] == dense["weights"] // 2
    assert zeros["FLOPs on nonzero weights"] == pytest.approx(
        dense["FLOPs a dense kernel runs"] / 2, rel=0.01)
    assert small["FLOPs a dense kernel runs"] == dense["FLOPs a dense kernel runs"] // 2


# -- pages -------------------------------------------------------------------------------------
def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _chart(at: AppTest, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(key):
            return json.loads(c.proto.spec)["data"]
    raise AssertionError(f"no chart {key}")


def _values(v) -> list:
    """A trace's array as plotly serialises it: a list, or base64 bytes with a dtype."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _moves(at: AppTest, widget, value, chart: str) -> None:
    before = _chart(at, chart)
    widget.set_value(value).run()
    assert not at.exception, [e.value for e in at.exception]
    assert _chart(at, chart) != before, chart


def test_basics_page_renders_and_its_sliders_move_the_figures():
    at = _page("learn_basics")
    # the three toys' figures and table, and the model section's
    assert len(at.get("plotly_chart")) == 4 and len(at.dataframe) == 2
    assert at.slider(key="learn.basics.rate").value == 0.5
    _moves(at, at.slider(key="learn.basics.rate"), 0.7, "learn.basics.masks")
    _moves(at, at.slider(key="learn.basics.g_rate"), 0.4, "learn.basics.bars")
    _moves(at, at.radio(key="learn.basics.init"), "equal std", "learn.basics.cuts")


def test_schedules_page_renders_and_its_sliders_move_the_preview():
    at = _page("learn_schedules")
    assert {s.key for s in at.slider} >= {"learn.schedules.rate", "learn.schedules.epochs",
                                          "learn.schedules.d", "learn.schedules.end"}
    assert len(at.latex) == 3
    _moves(at, at.slider(key="learn.schedules.rate"), 0.9, "learn.schedules.figure")
    _moves(at, at.slider(key="learn.schedules.d"), 0.5, "learn.schedules.figure")
    _moves(at, at.slider(key="learn.schedules.end"), 0.5, "learn.schedules.figure")


def test_methods_page_renders_every_toy_and_each_moves_with_its_slider():
    at = _page("learn_methods")
    # one tab per family toy (learn.toys(): a new family adds its own), two figures or more each
    assert len(at.tabs) == len(learn.toys()) and len(at.get("plotly_chart")) >= 2 * len(at.tabs)
    _moves(at, at.slider(key="learn.pgmpf.epoch"), 8, "learn.pgmpf.factor")
    _moves(at, at.slider(key="learn.fggp.rho"), 0.8, "learn.fggp.scatter")
    _moves(at, at.slider(key="learn.pgp.epoch"), 3, "learn.pgp.scores")
    _moves(at, at.slider(key="learn.slr.rate"), 0.5, "learn.slr.residual")
    _moves(at, at.slider(key="learn.llm.scale"), 1.0, "learn.llm.matrix")
    at.slider(key="learn.fggp.rho").set_value(0.1).run()       # too small for this step
    assert not at.exception and any("ConfigError" in w.value for w in at.warning)
    # fewer epochs than the epoch on show: the epoch sliders fall back to a valid value
    at.slider(key="learn.pgmpf.epochs").set_value(4).run()
    at.slider(key="learn.pgp.epochs").set_value(2).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="learn.pgmpf.epoch").value <= 3
    assert at.slider(key="learn.pgp.epoch").value <= 1


def test_speed_page_shows_flops_and_measures_on_request():
    at = _page("learn_speed")
    assert len(at.get("plotly_chart")) == 0 and len(at.dataframe) == 1
    at.slider(key="learn.speed.budget").set_value(0.5).run()
    at.button(key="learn.speed.measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 3
    channels = _chart(at, "learn.speed.channels_fig")[0]
    assert _values(channels["x"]) == list(learn_speed.SWEEP)
    assert all(v > 0 for v in _values(channels["y"]))
    zeros = _chart(at, "learn.speed.zeros")[0]          # paired ratios to dense: dense is 1
    assert _values(zeros["y"])[0] == 1.0 and len(_values(zeros["y"])) == 3


def test_the_model_section_draws_resnet20s_coupled_groups():
    at = _page("learn_basics")
    assert at.selectbox(key="learn.model.example").value == "resnet20"
    names = [t["name"] for t in _chart(at, "learn.model.figure")]
    # resnet20's three stages: each stage's residual stream couples the convs adding to it
    assert [n for n in names if n.startswith("coupled group")] == [
        "coupled group 1 (4 layers)", "coupled group 2 (4 layers)", "coupled group 3 (4 layers)"]
    table = next(d.value for d in at.dataframe if "stays dense" in d.value.columns)
    stage2 = table[table.group == 2].layer.tolist()
    assert "layer2.0.shortcut.0" in stage2 and "layer2.2.conv2" in stage2
    assert table.set_index("layer").role["fc"].startswith("classifier")
    assert any("residual add" in c.value for c in at.caption)
    at.radio(key="learn.model.shape").set_value("cifar (3x16x16)").run()
    assert not at.exception and not at.error


def test_the_model_section_marks_depthwise_convs_dense_for_filter_methods():
    table, error = learn.model_structure("torchvision:mobilenet_v3_small", (3, 16, 16))
    assert not error
    dense = table[table["stays dense"].str.contains("depthwise")]
    assert len(dense) > 0 and (dense.kind == "conv").all()


def test_a_bad_model_spec_is_an_inline_error_naming_the_control():
    at = _page("learn_basics")
    at.text_input(key="learn.model.spec").set_value("no_such_net").run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("**Model spec**:")
    assert "no\\_such\\_net" in at.error[0].value or "no_such_net" in at.error[0].value
    assert not [c for c in at.get("plotly_chart") if c.proto.id.endswith("learn.model.figure")]
