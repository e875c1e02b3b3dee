"""SLR and ADMM (docs/methods.md, SLR): step sizes, projection, conditional multiplier updates,
copied previous iterates, exact final sparsity, a shrinking residual, and a side-effect-free
"accuracy if hard-pruned now" probe."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import prune

from pruneviz.config import ConfigError, SessionConfig, parse_layer_rates
from pruneviz.data import load_dataset
from pruneviz.loop import make_optimizer
from pruneviz.masks import n_prune
from pruneviz.methods import Context, apply_preset, make_params
from pruneviz.methods.slr import ADMM, SLR, project, step_alpha
from pruneviz.methods.slr.math import lagrangian
from pruneviz.metrics import evaluate
from pruneviz.models import build_model
from pruneviz.records import Recorder
from pruneviz.schedules import lr_at
from pruneviz.session import run_session


def make_ctx(method, rate=0.8, epochs=4, evaluate_fn=None):
    """A Context around a digits tiny_cnn, for calling the hooks without a session."""
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = build_model("tiny_cnn", data.input_shape, data.num_classes)
    config = SessionConfig(method=method.name, rate=rate, epochs=epochs, device="cpu")
    device = torch.device("cpu")
    ctx = Context(model=model, optimizer=make_optimizer(model, config), config=config, data=data,
                  device=device, steps_per_epoch=data.steps_per_epoch(config.batch_size),
                  record=Recorder(), gen=torch.Generator().manual_seed(1),
                  evaluate=evaluate_fn or (lambda: evaluate(model, data, device)))
    ctx.layers = method.select_layers(model)
    return ctx


def train_step(ctx):
    x, y = next(ctx.data.train_batches(0, 0, 64, ctx.device))
    loss = F.cross_entropy(ctx.model(x), y)
    ctx.optimizer.zero_grad()
    loss.backward()
    ctx.optimizer.step()


def test_alpha_k_matches_the_reference_values():
    for k, expected in ((1, 0.99667), (10, 0.99792), (100, 0.99939)):
        assert step_alpha(k, 300, 0.1) == pytest.approx(expected, abs=5e-6)


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.8, 0.9])
@pytest.mark.parametrize("shape", [(37,), (16, 8, 3, 3), (10, 64)])
def test_projection_keeps_exactly_the_top_magnitudes(rate, shape):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    z, mask = project(w, rate)
    module = torch.nn.Linear(1, 1)
    module.weight = torch.nn.Parameter(w.clone())
    prune.l1_unstructured(module, "weight", amount=rate)
    assert torch.equal(mask, module.weight_mask)
    assert torch.equal(z, w * mask)
    assert int(mask.sum()) == w.numel() - n_prune(w.numel(), rate)


def test_penalty_gradient_equals_autograd():
    method = SLR(make_params(SLR, {"rho": 0.3}))
    ctx = make_ctx(method)
    method.before_training(ctx)
    g = torch.Generator().manual_seed(5)
    method.U = [torch.randn(u.shape, generator=g) for u in method.U]
    method._refresh_target()
    W = [l.module.weight for l in ctx.layers]
    expected_pen = sum(0.15 * (w - z + u).pow(2).sum() for w, z, u in zip(W, method.Z, method.U))
    expected = torch.autograd.grad(expected_pen, W)
    for w in W:
        w.grad = torch.zeros_like(w)
    pen = method.loss_penalty(ctx)
    method.after_backward(ctx)
    assert pen.item() == pytest.approx(expected_pen.item(), rel=1e-5)
    for w, e in zip(W, expected):
        torch.testing.assert_close(w.grad, e)


def prepared_slr(**params):
    """An SLR past its first (forced) update, with W moved by one SGD step."""
    method = SLR(make_params(SLR, params))
    ctx = make_ctx(method)
    method.before_training(ctx)
    method.k = 2
    return method, ctx


def test_no_multiplier_update_when_neither_condition_holds():
    method, ctx = prepared_slr()
    method.ce_prev = -100.0       # L(W_prev, Z_prev) far below L(W, Z_prev): condition 1 fails
    s = method.s
    info = {"ce": 0.1}
    method.update(ctx, info)      # W unchanged and U = 0: Pi(W + U) = Z_prev, condition 2 fails
    assert info["cond1"] is False and info["cond2"] is False
    assert info["alpha1"] is None and info["alpha2"] is None
    assert method.k == 2 and method.s == s
    assert all(torch.count_nonzero(u) == 0 for u in method.U)


def test_multiplier_updates_follow_the_equations_when_the_conditions_hold():
    method, ctx = prepared_slr(rho=0.1, s0=0.01)
    train_step(ctx)
    method.ce_prev = 100.0        # condition 1 holds
    W = [w.detach().clone() for w in method.W]
    Wp, Zp, Z = ([t.clone() for t in ts] for ts in (method.W_prev, method.Z_prev, method.Z))
    rho, s, k = 0.1, 0.01, 2

    def norm(a, b):
        return math.sqrt(sum((x - y).pow(2).sum().item() for x, y in zip(a, b)))

    # a. s = alpha_k s ||W_prev - Z_prev|| / ||W - Z_prev||; Lambda += s (W - Z_prev)
    s = step_alpha(k, 300, 0.1) * s * norm(Wp, Zp) / norm(W, Zp)
    U = [s / rho * (w - zp) for w, zp in zip(W, Zp)]
    Wp, Zp = W, Z
    # b. Z = Pi(W + U)
    Z = [project(w + u, p)[0] for w, u, p in zip(W, U, method.rates)]
    # c. (condition 2 holds: Z minimises ||W + U - Z|| over the constraint set)
    s = step_alpha(k + 1, 300, 0.1) * s * norm(Wp, Zp) / norm(W, Z)
    U = [u + s / rho * (w - z) for u, w, z in zip(U, W, Z)]

    info = {"ce": 0.1}
    method.update(ctx, info)
    assert info["cond1"] is True and info["cond2"] is True
    assert method.k == k + 2 and method.s == pytest.approx(s, rel=1e-5)
    for got, want in zip(method.U, U):
        torch.testing.assert_close(got, want)
    for got, want in zip(method.Z, Z):
        torch.testing.assert_close(got, want)
    for got, want in zip(method.Z_prev, Z):
        torch.testing.assert_close(got, want)


def with_multipliers(method, scale=0.01):
    """Random nonzero multipliers, so that Z = Pi(W + U) moves away from Z_prev."""
    g = torch.Generator().manual_seed(7)
    method.U = [torch.randn(u.shape, generator=g) * scale for u in method.U]
    method._refresh_target()
    W = [w.detach() for w in method.W]
    Z_new = [project(w + u, p)[0] for w, u, p in zip(W, method.U, method.rates)]
    assert any(not torch.equal(a, b) for a, b in zip(Z_new, method.Z_prev))
    drop = (lagrangian(0.0, W, method.Z_prev, method.U, method.rho)
            - lagrangian(0.0, W, Z_new, method.U, method.rho))
    assert drop > 0                 # the exact projection lowers the penalty
    return W, drop


def test_condition_2_fails_when_the_z_step_does_not_make_up_for_a_rejected_w_step():
    method, ctx = prepared_slr()
    with_multipliers(method)
    method.ce_prev = 0.0            # the last accepted iterate had CE 0: condition 1 fails
    info = {"ce": 2.0}
    method.update(ctx, info)
    assert info["cond1"] is False and info["cond2"] is False
    assert info["cond2_L_prev"] == pytest.approx(
        lagrangian(0.0, method.W_prev, method.Z_prev, method.U, method.rho))
    assert info["alpha2"] is None and method.k == 2 and method.passed == [0, 0]


def test_condition_2_passes_when_the_z_step_makes_up_for_a_rejected_w_step():
    method, ctx = prepared_slr()
    W, drop = with_multipliers(method)
    method.ce_prev = 2.0 - drop / 2   # the W-step raised L by drop / 2; Pi lowers it by drop
    info = {"ce": 2.0}
    method.update(ctx, info)
    assert info["cond1"] is False and info["cond2"] is True
    assert info["alpha2"] is not None and method.k == 3


@pytest.mark.parametrize("ce_last,passes", [(0.0, False), (5.0, True)])
def test_authors_condition_2_puts_the_previous_epochs_ce_on_the_z_prev_side(ce_last, passes):
    method, ctx = prepared_slr(cond2="authors")
    W, drop = with_multipliers(method)
    assert drop < 2.0               # so the CE terms decide
    method.ce_prev = 100.0          # condition 1 holds, as it must not matter here
    method.ce_last = ce_last        # 0 before the first update, as in slr/admm.py
    info = {"ce": 2.0}
    method.update(ctx, info)
    assert info["cond1"] is True and info["cond2"] is passes
    if not passes:                  # nothing moved after condition 1: its U and Z_prev hold
        assert info["cond2_L_prev"] == pytest.approx(
            lagrangian(ce_last, W, method.Z_prev, method.U, method.rho), rel=1e-6)
    assert method.ce_last == 2.0    # the next check compares with this epoch's CE


def test_slr_paper_preset_keeps_the_authors_nearly_constant_learning_rate():
    # The authors step CosineAnnealingLR(T_max = epochs x batches, eta_min = 4e-8) once per
    # epoch, before it: epoch e (1-based) trains at eta_min + (lr - eta_min)(1 + cos(pi e /
    # (E B))) / 2.
    for method in ("slr", "admm"):
        config = apply_preset(SessionConfig(method=method, epochs=30), "paper")
        lr0, B, E = config.lr, 391, config.epochs      # CIFAR-10 at batch 128
        for t in range(0, E * B, 97):
            e = t // B + 1
            theirs = 4e-8 + (lr0 - 4e-8) * (1 + math.cos(math.pi * e / (E * B))) / 2
            ours = lr_at(t, E * B, lr0, config.lr_schedule, config.lr_milestones)
            assert ours == pytest.approx(theirs, rel=1e-3), (method, t)


def test_stored_previous_iterates_are_copies_that_do_not_train():
    method, ctx = prepared_slr()
    w_prev = [t.clone() for t in method.W_prev]
    z_prev = [t.clone() for t in method.Z_prev]
    train_step(ctx)
    assert not torch.equal(method.W[0], w_prev[0])          # W did train
    for a, b in zip(method.W_prev + method.Z_prev, w_prev + z_prev):
        assert torch.equal(a, b)


def test_alias_ablation_keeps_a_reference_to_the_live_weights():
    method, ctx = prepared_slr(alias_prev=True)
    train_step(ctx)
    for w, wp in zip(method.W, method.W_prev):
        assert torch.equal(w.detach(), wp)


def test_accuracy_if_hard_pruned_now_has_no_side_effects():
    seen = []

    def spy():
        seen.append([(l.module.weight == 0).float().mean().item() for l in ctx.layers])
        return evaluate(ctx.model, ctx.data, ctx.device)

    method = SLR()
    ctx = make_ctx(method, rate=0.7, evaluate_fn=spy)
    method.before_training(ctx)
    train_step(ctx)                        # BN statistics and momentum buffers are populated
    state = copy.deepcopy(ctx.model.state_dict())
    opt_state = copy.deepcopy(ctx.optimizer.state_dict())
    seen.clear()
    accuracy = method.hard_prune_now(ctx, method._prune_masks())
    assert 0.0 <= accuracy <= 1.0
    assert seen == [[pytest.approx(0.7, abs=0.01)] * len(ctx.layers)]  # it saw pruned weights
    assert ctx.model.training
    after = ctx.model.state_dict()
    for key, value in state.items():
        assert torch.equal(after[key], value), key
    for key, value in opt_state["state"].items():
        for name, t in value.items():
            assert torch.equal(ctx.optimizer.state_dict()["state"][key][name], t)


@pytest.mark.parametrize("name,retrain", [("slr", 0), ("admm", 1)])
def test_final_sparsity_equals_the_target_per_layer(name, retrain, shared_store, fast_config):
    rates = {"conv2": 0.8, "conv3": 0.6, "fc": 0.5}
    s = run_session(fast_config(method=name, rate=0.8, epochs=2, params={
        "layer_rates": "conv3=0.6,fc=0.5", "retrain_epochs": retrain}), shared_store)
    assert s["status"] == "completed", s.get("error")
    assert s["hard_prune_accuracy"] == s["pruned_accuracy"]
    assert s["retrain_epochs"] == retrain and s["hard_prune_epochs"] == 2 - retrain
    weights = torch.load(shared_store.run_dir(s["run_id"]) / "weights.pt")
    assert int(torch.count_nonzero(weights["conv1.weight"] == 0)) == 0   # first conv excluded
    for layer, rate in rates.items():
        w = weights[f"{layer}.weight"]
        assert int((w == 0).sum()) == n_prune(w.numel(), rate), layer


def test_residual_and_gap_shrink_over_a_short_digits_session(shared_store, fast_config):
    s = run_session(fast_config(method="slr", rate=0.8, epochs=3), shared_store)
    assert s["status"] == "completed", s.get("error")
    rows = shared_store.rows(s["run_id"], "slr_epochs").sort_values("epochs_done")
    assert rows.phase.tolist() == ["init", "update", "update", "hard_prune"]
    assert rows.residual.iloc[-1] < rows.residual.iloc[0]
    assert rows.prune_gap.iloc[-1] < rows.prune_gap.iloc[0]
    layers = shared_store.rows(s["run_id"], "slr_layers")
    hist = shared_store.rows(s["run_id"], "slr_hist")
    assert len(layers) == len(hist) == 4 * 2                 # conv2 and conv3, 4 moments
    assert all(sum(c) == n for c, n in zip(hist.counts, [32 * 16 * 9, 64 * 32 * 9] * 4))


def test_layer_rates_are_parsed_and_validated():
    assert parse_layer_rates(" layer1.0.conv1=0.5, fc.weight=0.2 ,") == {
        "layer1.0.conv1": 0.5, "fc": 0.2}
    for bad, words in (("conv2", "layer=rate"), ("conv2=x", "number"), ("conv2=1.0", "[0, 1)"),
                       ("conv2=0.5,conv2=0.6", "twice")):
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace(")", r"\)")):
            make_params(SLR, {"layer_rates": bad})
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="'conv9'.*conv1, conv2, conv3, fc"):
        ADMM(make_params(ADMM, {"layer_rates": "conv9=0.5"})).check(model)
    chosen = SLR(make_params(SLR, {"layer_rates": "conv1=0.3,conv2=0"})).select_layers(model)
    assert [l.name for l in chosen] == ["conv1", "conv3"]
