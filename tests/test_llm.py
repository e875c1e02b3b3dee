"""The llm family's engine: layers pruned block by block from the inputs the already-pruned
blocks produce, head gates whose gradient and zero match the head's slice, sessions of every
method on a small transformer with nanoGPT's layout (unstructured, 2:4, retrain-free), and one
clear error per bad input."""

import copy

import pytest
import torch
import torch.nn as nn

from pruneviz import loop, models
from pruneviz.cli import main
from pruneviz.config import ConfigError
from pruneviz.masks import nm_counts, prunable_layers
from pruneviz.methods.llm import engine
from pruneviz.methods.llm.calib import (
    Gates,
    attention_modules,
    groups,
    input_rows,
    sequential,
    task_loss,
)
from pruneviz.methods.llm.engine import head_masks
from pruneviz.methods.llm.math import InputStats, prune_mask, wanda_scores, weight_matrix
from pruneviz.session import prepare, run_session
from tests.llm_models import ClassifierOnly, OddMLP, TinyTransformer


@pytest.fixture
def test_models(monkeypatch):
    for name, factory in (("tf_test", TinyTransformer), ("classifier_only", ClassifierOnly),
                          ("odd_mlp", OddMLP)):
        monkeypatch.setitem(models.MODELS, name, factory)


@pytest.fixture
def final(monkeypatch):
    """The session's final state dict, captured as the loop saves it."""
    held = {}
    save = loop._save_artifacts

    def capture(ctx, folder):
        held.update({k: v.detach().clone() for k, v in ctx.model.state_dict().items()})
        save(ctx, folder)

    monkeypatch.setattr(loop, "_save_artifacts", capture)
    return held


def _batches(seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
            for _ in range(n)]


def _wanda(w, stats):
    return None, prune_mask(wanda_scores(w, stats.norms), 0.5, None), {}


# -- sequential calibration ----------------------------------------------------------------------
def test_blocks_are_pruned_in_order_from_the_inputs_of_the_already_pruned_blocks():
    torch.manual_seed(0)
    model = TinyTransformer(1, 8, 10)
    layers = prunable_layers(model, first_conv=False, last_linear=False)
    assert [g for g, _ in groups(model, layers)] == ["embed", "blocks.0", "blocks.1"]
    batches = _batches()
    dense = copy.deepcopy(model)
    done = list(sequential(model, layers, batches, False, _wanda))
    # the oracle: full forward passes of a copy pruned group by group, no early stop
    ref = copy.deepcopy(dense).eval()
    mods = dict(ref.named_modules())
    expected = {}
    for _, group in groups(ref, prunable_layers(ref, first_conv=False, last_linear=False)):
        stats = {l.name: InputStats(l.module.weight.shape[1], False) for l in group}
        hooks = [mods[n].register_forward_hook(
            lambda m, a, o, s=stats[n]: s.add(input_rows(m, a[0]), a[0].shape[0]))
            for n in stats]
        with torch.no_grad():
            for x, _ in batches:
                ref(x)
        for h in hooks:
            h.remove()
        for name, s in stats.items():
            w = weight_matrix(mods[name].weight.detach())
            expected[name] = (s.sq_norms, _wanda(w, s)[1])
        with torch.no_grad():
            for name in stats:
                mods[name].weight.mul_(expected[name][1])
    for d in done:
        torch.testing.assert_close(d.stats.sq_norms, expected[d.layer.name][0])
        assert torch.equal(d.keep, expected[d.layer.name][1]), d.layer.name
    # and block 1 really saw other inputs than the dense model gives it
    dense_stats = InputStats(32, False)
    hook = dense.blocks[1].mlp.c_fc.register_forward_hook(
        lambda m, a, o: dense_stats.add(input_rows(m, a[0]), a[0].shape[0]))
    with torch.no_grad():
        for x, _ in batches:
            dense.eval()(x)
    hook.remove()
    seen = next(d for d in done if d.layer.name == "blocks.1.mlp.c_fc").stats.sq_norms
    assert not torch.allclose(seen, dense_stats.sq_norms)


# -- head gates ------------------------------------------------------------------------------------
def _units(model):
    return [(n, m, m.n_head) for n, m in attention_modules(model)]


def test_a_heads_gate_gradient_is_its_c_proj_input_slice_times_that_slices_gradient():
    torch.manual_seed(1)
    model = TinyTransformer(1, 8, 10).eval()
    x, y = _batches(1, 1)[0]
    gates = Gates(_units(model), heads=True)
    with gates:
        grads = torch.autograd.grad(task_loss(model(x), y), gates.xi)
    seen = {}

    def keep(m, args):
        args[0].retain_grad()
        seen[m] = args[0]

    hooks = [m.c_proj.register_forward_pre_hook(keep) for _, m, _ in _units(model)]
    task_loss(model(x), y).backward()
    for h in hooks:
        h.remove()
    for (_, m, n), g in zip(_units(model), grads):
        inp = seen[m.c_proj]
        per_head = (inp * inp.grad).view(*inp.shape[:-1], n, -1).sum(dim=(0, 1, 3))
        torch.testing.assert_close(g, per_head, rtol=1e-4, atol=1e-6)


def test_a_closed_gate_is_the_head_removed_by_its_masks():
    torch.manual_seed(2)
    model = TinyTransformer(1, 8, 10).eval()
    x, _ = _batches(2, 1)[0]
    gates = Gates(_units(model), heads=True)
    with torch.no_grad():
        gates.xi[1][2] = 0.0
        with gates:
            gated = model(x)
        name, attn = attention_modules(model)[1]
        keep = torch.ones(4, dtype=torch.bool)
        keep[2] = False
        params = dict(model.named_parameters())
        for key, mask in head_masks(name, attn, keep).items():
            params[key].mul_(mask)
        torch.testing.assert_close(model(x), gated, rtol=1e-5, atol=1e-6)
        assert int((attn.c_attn.weight == 0).all(1).sum()) == 3 * attn.head_dim


# -- sessions --------------------------------------------------------------------------------------
def _run(store, fast_config, **kw):
    s = run_session(fast_config(model="tf_test", rate=0.5, epochs=1, **kw), store)
    assert s["status"] == "completed", s.get("error")
    return s


@pytest.mark.parametrize("method", ["wanda", "magnitude_row", "sparsegpt"])
def test_each_row_loses_half_its_weights_and_retrain_free_keeps_the_pruned_model(
        method, test_models, shared_store, fast_config, final):
    s = _run(shared_store, fast_config, method=method, params={"retrain_free": True})
    assert s["pruned_accuracy"] == s["final_accuracy"] and s["retrain_free"]
    stats = shared_store.rows(s["run_id"], "llm_layers")
    assert stats.layer.tolist() == ["embed"] + [f"blocks.{i}.{p}" for i in range(2) for p in
                                                ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                 "mlp.c_proj")]
    for name in stats.layer:
        w = final[f"{name}.weight"]
        zeros = (w == 0).sum(1)
        if method == "sparsegpt":        # one mask per block of 128 columns, not per row
            assert abs(float((w == 0).float().mean()) - 0.5) < 0.02
        else:
            assert (zeros == w.shape[1] // 2).all(), name
    if method == "sparsegpt":
        assert (stats.err_sparsegpt <= stats.err_mask).all()
        assert (stats.err_sparsegpt < stats.err_magnitude).all()
    else:
        assert "err_sparsegpt" not in stats      # only SparseGPT has the Hessian


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_two_four_leaves_at_most_two_of_every_four_inputs(method, test_models, shared_store,
                                                          fast_config, final):
    s = _run(shared_store, fast_config, method=method,
             params={"nm": "2:4", "retrain_free": True})
    assert s["nm"] == "2:4"
    for name in shared_store.rows(s["run_id"], "llm_layers").layer:
        assert (nm_counts(final[f"{name}.weight"], 4) <= 2).all(), name


def test_retrain_free_freezes_weights_and_batchnorm_statistics(shared_store, fast_config, final,
                                                                monkeypatch):
    pruned = {}
    freeze = engine.RetrainFree.freeze

    def snapshot(self, ctx):
        pruned.update({k: v.detach().clone() for k, v in ctx.model.state_dict().items()})
        freeze(self, ctx)

    monkeypatch.setattr(engine.RetrainFree, "freeze", snapshot)
    s = run_session(fast_config(method="wanda", rate=0.5, epochs=1,
                                params={"retrain_free": True}), shared_store)
    assert s["status"] == "completed"
    assert any(k.endswith("running_mean") for k in final)
    for k, v in final.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, pruned[k]), k


def test_head_importance_removes_heads_in_rounds_and_records_quality(test_models, shared_store,
                                                                      fast_config, final):
    s = _run(shared_store, fast_config, method="head_importance",
             params={"rounds": 2, "retrain_free": True})
    assert s["sparsity"] == pytest.approx(0.5, abs=1e-9) and s["heads_gated"] == 4
    rounds = shared_store.rows(s["run_id"], "head_rounds")
    assert rounds["round"].tolist() == [0, 1, 2] and rounds.removed.tolist() == [0, 2, 4]
    assert rounds.unit.eq("head").all() and rounds.accuracy.notna().all()
    scores = shared_store.rows(s["run_id"], "head_scores")
    assert len(scores) == 2 * 2 * 4 and (scores.status == "removed").sum() == 4
    gone = scores[(scores["round"] == 2) & (scores.status == "gone")]
    assert len(gone) == 2 and (gone.importance.abs() < 1e-12).all()
    for _, row in scores[scores.status == "removed"].iterrows():
        h, hd = int(row["head"]), 8
        assert (final[f"{row.layer}.c_proj.weight"][:, h * hd:(h + 1) * hd] == 0).all()
        assert (final[f"{row.layer}.c_attn.weight"][h * hd:(h + 1) * hd] == 0).all()


def test_head_importance_gates_units_on_a_model_without_attention(shared_store, fast_config):
    s = run_session(fast_config(model="mlp", method="head_importance", rate=0.5, epochs=1),
                    shared_store)
    assert s["status"] == "completed" and s["units_gated"] == (256 + 128) // 2
    assert s["sparsity"] == pytest.approx(0.5, abs=1e-9)


# -- bad input -------------------------------------------------------------------------------------
def test_calib_samples_zero_is_one_error_line_naming_it(capsys, tmp_path):
    assert main(["run", "--store", str(tmp_path / "runs"), "--method", "wanda", "--param",
                 "calib_samples=0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:") and "calib_samples" in err[0]


def test_calib_samples_above_the_training_set_is_a_config_error(shared_store, fast_config):
    s = run_session(fast_config(method="sparsegpt", rate=0.5, epochs=1,
                                params={"calib_samples": 100000}), shared_store)
    assert s["status"] == "failed" and s["config_error"]
    assert "calib_samples=100000" in s["error"] and "at most" in s["error"]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude_row", "head_importance"])
def test_a_model_with_no_linear_layer_but_its_classifier_is_refused(method, test_models,
                                                                     fast_config):
    with pytest.raises(ConfigError, match="besides its classifier"):
        prepare(fast_config(model="classifier_only", method=method))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_a_layer_no_group_of_four_fits_is_named_and_left_dense(method, test_models, shared_store,
                                                               fast_config, final):
    s = run_session(fast_config(model="odd_mlp", method=method, rate=0.5, epochs=1,
                                params={"nm": "2:4", "retrain_free": True}), shared_store)
    assert s["status"] == "completed"
    assert "fc2 (30 input features)" in s["nm_dense_layers"]
    assert (final["fc2.weight"] != 0).all()
    assert (nm_counts(final["fc1.weight"], 4) <= 2).all()


def test_the_layers_are_every_hidden_linear_and_conv_but_not_grouped_convs():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1),
                        nn.Flatten(), nn.LazyLinear(10))
    assert [l.name for l in engine._layers(net)] == ["2"]


# -- the internals view on real runs ------------------------------------------------------------
def test_the_view_draws_sparsegpts_errors_and_wandas_outliers(test_models, shared_store,
                                                              fast_config):
    from pruneviz import views

    for method, last in (("sparsegpt", "llm.errors"), ("wanda", "llm.disagree")):
        s = _run(shared_store, fast_config, method=method, params={"retrain_free": True})
        view = views.view(method)
        frames = view.load(shared_store, s["run_id"])
        assert view.steps(frames) == [0]
        panels = view.panels(frames, shared_store.run(s["run_id"]), 0)
        assert [p.key for p in panels] == ["llm.scatter", "llm.profile", "llm.norms", last]
        scatter = panels[0].figure
        assert sum(len(t.x) for t in scatter.data) == 300       # the sampled points
        points = shared_store.rows(s["run_id"], "llm_points")
        assert (points.w > 0).all()         # |W| before the prune: no weight of it was zero
        assert set(points.outcome) >= {"kept by both", "cut by both"}
        if method == "sparsegpt":
            bars = panels[3].figure.data
            assert [b.name for b in bars] == [name for _, name, _ in view.ERRORS]
            assert len(bars[0].x) == 9


def test_the_view_draws_the_head_grid_per_round_and_the_quality(test_models, shared_store,
                                                                fast_config):
    from pruneviz import views

    s = _run(shared_store, fast_config, method="head_importance", params={"rounds": 2})
    view = views.view("head_importance")
    frames = view.load(shared_store, s["run_id"])
    heads, quality = view.panels(frames, shared_store.run(s["run_id"]), 0)
    grid = heads.figure.data[0]
    assert list(grid.y) == [f"round {r} · blocks.{i}.attn" for r in (1, 2) for i in (0, 1)]
    assert sum(t == "✕" for row in grid.text for t in row) == 4
    assert list(quality.figure.data[0].x) == [0.0, 0.25, 0.5]
