"""PGMPF, SFP and ASFP: schedules against docs/methods.md, PGMPF, the prior gradient mask, the
compounding weight-decay mask, the final per-layer counts and what is recorded."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from pruneviz.config import SessionConfig
from pruneviz.methods import Context, make_params
from pruneviz.methods.pgmpf import (
    ASFP,
    PGMPF,
    SFP,
    ASFPParams,
    Params,
    SFPParams,
    cubic_lambda,
    decay_alpha,
    gradient_factor,
    n_pruned_filters,
)
from pruneviz.models import build_model
from pruneviz.records import Recorder
from pruneviz.session import run_session

# docs/methods.md, PGMPF reference table, E = 100, r = 0.6, fine-tuning a trained model:
# e: (lambda_e, 1 - lambda_e, alpha_e, r_e)
REFERENCE = {0: (0.030, 0.970, 1.0, 1.000), 1: (0.059, 0.941, 0.891, 0.958),
             10: (0.295, 0.705, 0.316, 0.732), 25: (0.595, 0.405, 0.056, 0.625),
             50: (0.882, 0.118, 3.2e-3, 0.602), 79: (0.992, 0.008, 1.1e-4, 0.600)}


def make_ctx(cls=PGMPF, epochs=100, rate=0.4, start="dense", **params):
    """A method with its context on tiny_cnn, as the session builds them, before_training done."""
    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    with torch.no_grad():            # BN gamma/beta away from their 1/0 init
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    config = SessionConfig(method=cls.name, rate=rate, epochs=epochs, start=start, device="cpu")
    method = cls(make_params(cls, params))
    ctx = Context(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  config=config, data=SimpleNamespace(input_shape=(1, 8, 8)),
                  device=torch.device("cpu"), steps_per_epoch=10,
                  record=Recorder(), gen=torch.Generator().manual_seed(1),
                  evaluate=lambda: {"accuracy": 0.5})
    ctx.layers = method.select_layers(model)
    method.before_training(ctx)
    return method, ctx


def end_epoch(method, ctx, e):
    ctx.epoch = ctx.record.epoch = e
    method.end_of_epoch(ctx)


def weights(ctx):
    return {k: v.detach().clone() for k, v in ctx.model.named_parameters()}


def test_schedules_reproduce_the_reference_table():
    config = SessionConfig(method="pgmpf", rate=0.4, epochs=100, start="dense")
    for e, (lam, one_minus, alpha, r) in REFERENCE.items():
        v = PGMPF.values(config, Params(), e)
        assert v.lam == pytest.approx(lam, abs=1e-3)
        assert 1 - v.lam == pytest.approx(one_minus, abs=1e-3)
        assert v.alpha == pytest.approx(alpha, abs=1e-3)
        assert v.keep == pytest.approx(r, abs=1e-3)
    for e in range(80, 100):
        v = PGMPF.values(config, Params(), e)
        assert (v.lam, v.alpha, v.applied) == (1.0, 0.0, 0.0)
        assert v.keep == pytest.approx(0.6, abs=1e-3)
        assert (v.keep == 0.6) == (e >= 90)          # exactly the target from 0.9 E
    # the pure functions, and the from-scratch variants (sigma 1e-3, lambda forced from 0.9 E)
    assert cubic_lambda(10, 100) == pytest.approx(1 - 0.89 ** 3)
    assert decay_alpha(79, 100, 1e-5) == pytest.approx(math.exp(-79 * math.log(1e5 + 1e-3) / 100))
    scratch = config.replace(start="scratch")
    assert PGMPF.values(scratch, Params(), 85).lam == pytest.approx(1 - 0.14 ** 3)
    assert PGMPF.values(scratch, Params(), 90).lam == 1.0
    assert PGMPF.values(scratch, Params(), 10).alpha == pytest.approx(1e-3 ** 0.1, rel=1e-4)
    # the lambda_final = 0 ablation never fully freezes
    assert PGMPF.values(config, Params(lambda_final=0.0), 85).lam == 0.0


def test_short_sessions_end_exactly_on_the_target():
    config = SessionConfig(method="pgmpf", rate=0.4, epochs=4, start="dense")
    last = PGMPF.values(config, Params(), 3)
    assert (last.keep, last.alpha, last.applied) == (0.6, 0.0, 0.0)
    assert PGMPF.values(config, Params(), 0).keep == 1.0


def test_pruned_count_is_the_floor():
    assert [n_pruned_filters(n, 0.6) for n in (16, 32, 64)] == [6, 12, 25]   # round: 6, 13, 26
    assert n_pruned_filters(10, 0.9) == 1          # 10 * (1 - 0.9) = 0.9999999999999998
    assert n_pruned_filters(10, 1.0) == 0


def test_mask_prunes_the_lowest_l2_filters_and_filters_can_reenter():
    method, ctx = make_ctx()
    end_epoch(method, ctx, 10)
    for layer, m in zip(ctx.layers, method.fmasks):
        n = layer.module.weight.shape[0]
        assert int((m == 0).sum()) == n_pruned_filters(n, PGMPF.values(ctx.config, method.p,
                                                                       10).keep)
        norms = layer.module.weight.detach().flatten(1).norm(dim=1)
        assert norms[m == 0].max() <= norms[m == 1].min()
    layer, mask = ctx.layers[-1], method.fmasks[-1]
    back = int(torch.nonzero(mask == 0)[0])
    with torch.no_grad():
        layer.module.weight[back] = 10.0           # training made it the strongest filter
    end_epoch(method, ctx, 11)
    assert method.fmasks[-1][back] == 1
    revived = [r for r in ctx.record.take() if getattr(r, "key", "") == "filters_revived"
               and r.layer == layer.name and r.epoch == 11]
    assert revived[0].value >= 1


def test_kept_filters_gradients_are_untouched():
    method, ctx = make_ctx()
    end_epoch(method, ctx, 10)
    g = torch.Generator().manual_seed(2)
    for p in ctx.model.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    before = {k: p.grad.clone() for k, p in ctx.model.named_parameters()}
    ctx.step = 1001                                   # not a sampled step
    method.after_backward(ctx)
    lam = PGMPF.values(ctx.config, method.p, 10).lam
    conv_weights = {layer.param for layer in ctx.layers}
    for layer, m in zip(ctx.layers, method.fmasks):
        g_new, g_old = ctx.param(layer.param).grad, before[layer.param]
        assert torch.equal(g_new[m == 1], g_old[m == 1])
        for i in torch.nonzero(m == 0).flatten():
            assert (torch.equal(g_new[i], torch.zeros_like(g_old[i]))
                    or torch.allclose(g_new[i], (1 - lam) * g_old[i]))
    for name, p in ctx.model.named_parameters():     # BN and the classifier: not masked
        if name not in conv_weights:
            assert torch.equal(p.grad, before[name])


def grad_factors(method, ctx, steps):
    """The factor each pruned filter's gradient was multiplied by, per step (grads of ones)."""
    out = []
    for step in range(steps):
        for p in ctx.model.parameters():
            p.grad = torch.ones_like(p)
        ctx.step = step
        method.after_backward(ctx)
        out.append(torch.cat([ctx.param(l.param).grad.flatten(1)[:, 0] for l in ctx.layers]))
    pruned = torch.cat(method.fmasks) == 0
    return torch.stack(out)[:, pruned]


def test_pruned_gradient_factor_is_zero_or_one_minus_lambda_averaging_half():
    method, ctx = make_ctx()
    end_epoch(method, ctx, 25)
    lam = PGMPF.values(ctx.config, method.p, 25).lam
    f = grad_factors(method, ctx, 2000)
    assert f.shape[1] >= 20
    assert torch.all((f == 0) | torch.isclose(f, torch.tensor(1 - lam)))
    per_filter = f.mean(0)          # binomial sd: (1 - lam) 0.5 / sqrt(2000) ~ 0.011 (1 - lam)
    assert torch.allclose(per_filter, torch.tensor((1 - lam) / 2), atol=0.05 * (1 - lam))
    assert f.mean().item() == pytest.approx((1 - lam) / 2, rel=0.02)
    # channel-wise: filters draw independently within a step
    assert ((f[:, :-1] != 0) != (f[:, 1:] != 0)).any(dim=1).float().mean() > 0.9


def test_dropout_and_gradient_mask_switches():
    method, ctx = make_ctx(dropout=False)
    end_epoch(method, ctx, 25)
    lam = PGMPF.values(ctx.config, method.p, 25).lam
    assert torch.allclose(grad_factors(method, ctx, 20), torch.tensor(1 - lam))
    method, ctx = make_ctx(gradient_mask=False)
    end_epoch(method, ctx, 25)
    assert torch.all(grad_factors(method, ctx, 20) == 1)


def test_alpha_decay_compounds_on_current_weights_and_reaches_bn():
    method, ctx = make_ctx()
    w0 = weights(ctx)
    end_epoch(method, ctx, 5)
    a5 = PGMPF.values(ctx.config, method.p, 5).alpha
    w1 = weights(ctx)
    for layer, m in zip(ctx.layers, method.fmasks):
        assert (m == 0).any()
        names = (layer.param, f"{layer.bn_name}.weight", f"{layer.bn_name}.bias")
        for name in names:
            assert torch.allclose(w1[name][m == 0], a5 * w0[name][m == 0])
            assert torch.equal(w1[name][m == 1], w0[name][m == 1])
    with torch.no_grad():                 # "training" moves the weights between epochs
        for layer in ctx.layers:
            ctx.param(layer.param).mul_(0.5)
            layer.bn.weight.mul_(0.5)
    w2 = weights(ctx)
    end_epoch(method, ctx, 6)
    a6 = PGMPF.values(ctx.config, method.p, 6).alpha
    for layer, m in zip(ctx.layers, method.fmasks):
        for name in (layer.param, f"{layer.bn_name}.weight", f"{layer.bn_name}.bias"):
            assert torch.allclose(ctx.param(name)[m == 0], a6 * w2[name][m == 0])
    end_epoch(method, ctx, 80)            # alpha = 0 from 0.8 E: exactly zero
    for layer, m in zip(ctx.layers, method.fmasks):
        for name in (layer.param, f"{layer.bn_name}.weight", f"{layer.bn_name}.bias"):
            assert torch.all(ctx.param(name)[m == 0] == 0)


def test_alpha_below_alpha_min_is_a_hard_zero():
    method, ctx = make_ctx(alpha_min=0.95)           # alpha_1 = 0.891 < 0.95
    end_epoch(method, ctx, 1)
    for layer, m in zip(ctx.layers, method.fmasks):
        assert torch.all(ctx.param(layer.param)[m == 0] == 0)
        assert torch.all(layer.bn.weight[m == 0] == 0)


@pytest.mark.parametrize("start, params, final_epoch", [
    ("dense", {}, 90), ("scratch", {}, 90), ("dense", {"lambda_final": 0.0}, 99),
    ("dense", {"gradient_mask": False}, 99)])
def test_the_final_mask_is_held_once_pruned_filters_are_frozen(start, params, final_epoch):
    method, ctx = make_ctx(start=start, **params)
    end_epoch(method, ctx, final_epoch - 1)
    assert not ctx.pruned and not ctx.masks
    end_epoch(method, ctx, final_epoch)
    assert ctx.pruned
    layer, m = ctx.layers[0], method.fmasks[0]
    assert set(ctx.masks) >= {layer.param, f"{layer.bn_name}.weight", f"{layer.bn_name}.bias"}
    assert torch.equal(ctx.masks[f"{layer.bn_name}.bias"], m)
    assert int((m == 0).sum()) == n_pruned_filters(m.numel(), 0.6)


def test_sfp_and_asfp_differ_from_pgmpf_only_where_the_spec_says():
    config = SessionConfig(method="pgmpf", rate=0.4, epochs=20, start="dense")
    pg = PGMPF.knobs(config, Params())
    asfp = dataclasses.replace(pg, gradient_mask=False, dropout=False, alpha_decay=False)
    assert ASFP.knobs(config, ASFPParams()) == asfp
    assert SFP.knobs(config, SFPParams()) == dataclasses.replace(asfp, asymptotic=False)
    for e in range(20):
        p, a, s = (cls.values(config, cls.Params(), e) for cls in (PGMPF, ASFP, SFP))
        assert a.keep == p.keep and s.keep == 0.6
        assert a.alpha == s.alpha == 0.0
    # same weights, same epoch: the same filters; ASFP zeroes them (BN included), grads untouched
    pgm, pctx = make_ctx(PGMPF)
    asm, actx = make_ctx(ASFP)
    end_epoch(pgm, pctx, 5)
    end_epoch(asm, actx, 5)
    for m_p, m_a, layer in zip(pgm.fmasks, asm.fmasks, actx.layers):
        assert torch.equal(m_p, m_a)
        for name in (layer.param, f"{layer.bn_name}.weight", f"{layer.bn_name}.bias"):
            assert torch.all(actx.param(name)[m_a == 0] == 0)
    assert torch.all(grad_factors(asm, actx, 5) == 1)
    # decay_bn off: SFP's own code, conv weights only
    asm, actx = make_ctx(ASFP, decay_bn=False)
    w0 = weights(actx)
    end_epoch(asm, actx, 5)
    for layer in actx.layers:
        assert torch.equal(layer.bn.weight, w0[f"{layer.bn_name}.weight"])
    # SFP: nothing during epoch 0, the full target from the end of epoch 0
    sfp, sctx = make_ctx(SFP)
    assert sfp.keep == 1.0 and all(torch.all(m == 1) for m in sfp.fmasks)
    end_epoch(sfp, sctx, 0)
    assert [int((m == 0).sum()) for m in sfp.fmasks] == [6, 12, 25]


# -- whole sessions --------------------------------------------------------------------------
SESSION = dict(dense_epochs=3, epochs=3, device="cpu", rate=0.4)


@pytest.fixture(scope="module")
def sessions(shared_store):
    return {m: run_session(SessionConfig(method=m, **SESSION), shared_store)
            for m in ("pgmpf", "asfp", "sfp")}


@pytest.mark.parametrize("name", ["pgmpf", "asfp", "sfp"])
def test_every_layer_ends_with_exactly_floor_n_rate_zero_filters(name, sessions, shared_store):
    s = sessions[name]
    assert s["status"] == "completed", s.get("error")
    assert "pruned_accuracy" in s and s["filters_pruned"] == 6 + 12 + 25
    w = torch.load(shared_store.run_dir(s["run_id"]) / "weights.pt")
    for conv, bn, n in (("conv1", "bn1", 16), ("conv2", "bn2", 32), ("conv3", "bn3", 64)):
        dead = (w[f"{conv}.weight"].flatten(1) == 0).all(1)
        assert int(dead.sum()) == math.floor(n * 0.4)
        assert torch.all(w[f"{bn}.weight"][dead] == 0) and torch.all(w[f"{bn}.bias"][dead] == 0)
        assert torch.all(w[f"{bn}.weight"][~dead] != 0)
    target = shared_store.scalars(s["run_id"], ["target_sparsity"]).value.iloc[-1]
    assert s["sparsity"] == pytest.approx(target, abs=1e-12)


def test_the_run_reports_the_physically_compacted_size(sessions):
    # tiny_cnn keeps 10, 20, 39 of 16, 32, 64 filters; 8x8 input, pooled to 4x4 before conv3
    c1, c2, c3 = 10, 20, 39
    flops = 2 * (c1 * 1 * 9 * 64 + c2 * c1 * 9 * 64 + c3 * c2 * 9 * 16 + c3 * 10)
    params = c1 * 9 + c2 * c1 * 9 + c3 * c2 * 9 + 2 * (c1 + c2 + c3) + c3 * 10 + 10
    for s in sessions.values():
        assert (s["flops_compact"], s["params_compact"]) == (flops, params)
        assert s["filters_removed"] == 43


def test_pgmpf_records_what_the_dashboard_needs(sessions, shared_store):
    s = sessions["pgmpf"]
    rid = s["run_id"]
    config = SessionConfig(method="pgmpf", **SESSION)
    sched = shared_store.scalars(rid, ["r_e", "lambda_e", "alpha_e"])
    for key, attr in (("r_e", "keep"), ("lambda_e", "lam"), ("alpha_e", "alpha")):
        rows = sched[sched.key == key].sort_values("epoch")
        assert rows.epoch.tolist() == [0, 1, 2]
        assert rows.value.tolist() == pytest.approx(
            [getattr(PGMPF.values(config, Params(), e), attr) for e in range(3)])
    filters = shared_store.filters(rid, ["l2_norm", "mask", "bn_gamma"])
    assert len(filters) == 3 * 3 * (16 + 32 + 64)
    last = filters[(filters.epoch == 2) & (filters.key == "mask")]
    assert int((last.value == 0).sum()) == 43
    flips = shared_store.layers(rid, ["mask_flips"])
    assert len(flips) == 3 * 3 and flips.value.sum() >= 43
    grads = shared_store.scalars(rid, ["grad_norm_pruned_before", "grad_norm_pruned_after",
                                       "grad_norm_kept_before", "grad_norm_kept_after"])
    wide = grads.pivot_table(index="step", columns="key", values="value")
    assert 0 < len(wide) <= 200
    assert (wide.grad_norm_pruned_after <= wide.grad_norm_pruned_before + 1e-9).all()
    assert (wide.grad_norm_kept_after == wide.grad_norm_kept_before).all()
    shock = shared_store.scalars(rid, ["accuracy_before_decay", "accuracy_after_decay"])
    assert set(shock.epoch) == {1, 2}                # epoch 0: r_0 = 1, nothing to decay
    updates = shared_store.rows(rid, "mask_updates")
    assert updates.epoch.tolist() == [0, 1, 2]
    assert updates.final.tolist() == [False, False, True]
    assert updates.pruned.tolist() == [0, 42, 43]


def test_gradient_factor_is_one_for_kept_and_one_minus_lambda_or_zero_for_pruned():
    kept = torch.tensor([1.0, 0.0, 0.0, 1.0])
    u = torch.tensor([0.9, 0.2, 0.7, 0.1])
    f = gradient_factor(kept, 1 - kept, 0.3, u)
    assert torch.allclose(f, torch.tensor([1.0, 0.7, 0.0, 1.0]))
    assert torch.allclose(gradient_factor(kept, 1 - kept, 0.3), torch.tensor([1.0, 0.7, 0.7, 1.0]))
