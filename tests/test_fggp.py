"""FGGP and GraNet on GMP's code path: schedule, gradient-first selection, no regrowth, exact end,
ERK sparse start, GraNet's cosine regrowth, and the too-aggressive schedule error."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from pruneviz.cli import main
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.loop import train
from pruneviz.masks import prunable_layers
from pruneviz.methods import Context
from pruneviz.methods.fggp import (
    FGGP,
    FGGPParams,
    GraNet,
    GraNetParams,
    gradient_first,
    regrow_fraction,
    t_end,
)
from pruneviz.models import build_model
from pruneviz.records import Recorder, Row
from pruneviz.session import dense_start, prepare, run_session

FAST = dict(dense_epochs=3, epochs=2, device="cpu")   # as fast_config: the same dense start

# Handmade weights and gradients of two layers (6 + 4 weights, ranked globally in this order).
W = [0.9, -0.1, 0.5, 0.05, -0.7, 0.3, 0.2, -0.8, 0.6, 0.4]
G = [0.01, 0.9, -0.02, 0.8, 0.03, -0.04, 0.7, 0.05, -0.6, 0.5]


def handmade_ctx(method, w=W, g=G, pruned=(), rate=0.9):
    """A Context over Linear(3, 2) + Linear(2, 2) holding W and G, with `pruned` masked."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False))
    w, g = torch.tensor(w), torch.tensor(g)
    for i in pruned:
        w[i] = 0.0
    with torch.no_grad():
        model[0].weight.copy_(w[:6].view(2, 3))
        model[1].weight.copy_(w[6:].view(2, 2))
    model[0].weight.grad = g[:6].view(2, 3).clone()
    model[1].weight.grad = g[6:].view(2, 2).clone()
    config = SessionConfig(method=method.name, rate=rate, epochs=1, device="cpu")
    ctx = Context(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1,
                                                         momentum=0.9),
                  config=config, data=None, device=torch.device("cpu"), steps_per_epoch=100,
                  record=Recorder(), gen=torch.Generator().manual_seed(0), evaluate=dict)
    ctx.layers = method.select_layers(model)
    ctx.masks = {l.param: (l.module.weight != 0).float() for l in ctx.layers}
    return ctx


def flat_mask(masks):
    return torch.cat([m.flatten() for m in masks.values()])


def newly_pruned(ctx, masks):
    return set(((flat_mask(ctx.masks) > 0) & (flat_mask(masks) == 0)).nonzero().flatten()
               .tolist())


def rows(ctx, table):
    return [r.data for r in ctx.record.pending if isinstance(r, Row) and r.table == table]


def test_schedule_reproduces_the_reference_trajectory():
    # docs/methods.md, FGGP: dense start, d_f = 0.05, density at t / T_end = 0, .1, .25, .5, .75, 1
    expected = [1.0, 0.743, 0.451, 0.169, 0.065, 0.05]
    method = FGGP()
    ctx = SimpleNamespace(total_steps=1000, config=SessionConfig(rate=0.95))
    end = t_end(1000, method.p.end)
    assert end == 800
    for frac, want in zip([0, 0.1, 0.25, 0.5, 0.75, 1.0], expected):
        assert method.density(ctx, round(frac * end)) == pytest.approx(want, abs=1e-3)
    preview = FGGP.schedule(SessionConfig(method="fggp", rate=0.95, epochs=10), FGGPParams())
    at = dict(zip(preview.epoch.round(6), preview.value))
    for frac, want in zip([0, 0.1, 0.25, 0.5, 0.75, 1.0], expected):
        assert 1 - at[round(frac * 8, 6)] == pytest.approx(want, abs=1e-3)


def test_pruned_set_is_smallest_w_among_the_rho_smallest_g():
    method = FGGP()
    ctx = handmade_ctx(method)
    masks = method.choose(ctx, 2)
    # candidates: the 5 smallest |g| = 0, 2, 4, 5, 7 (|w| .9 .5 .7 .3 .8); prune .3 and .5
    assert newly_pruned(ctx, masks) == {2, 5}
    step = rows(ctx, "fggp_steps")[0]
    assert (step["remain"], step["candidates"], step["pruned"], step["restored"]) == (10, 5, 2, 0)
    assert step["grad_cut"] == pytest.approx(0.05) and step["mag_cut"] == pytest.approx(0.5)
    assert step["jaccard"] == 0.0          # plain magnitude would prune 3 and 1 (|w| .05, .1)


@pytest.mark.parametrize("weights,expected", [("pre", {2, 5}), ("post", {4, 7})])
def test_the_magnitude_cut_ranks_the_weights_of_the_selected_moment(weights, expected):
    method = FGGP(FGGPParams(weights=weights))
    ctx = handmade_ctx(method)
    ctx.step = 0                                   # a pruning step
    method.before_training(ctx)
    method.after_backward(ctx)                     # before the optimizer step
    with torch.no_grad():                          # the step moves weights 2 and 5 up
        ctx.model[0].weight[0, 2] = 0.99
        ctx.model[0].weight[1, 2] = 0.95
    masks = method.choose(ctx, 2)
    # candidates 0, 2, 4, 5, 7; before the step |w| = .9 .5 .7 .3 .8, after .9 .99 .7 .95 .8
    assert newly_pruned(ctx, masks) == expected


def test_already_pruned_weights_are_not_candidates():
    method = FGGP()
    ctx = handmade_ctx(method, pruned=[0])       # smallest |g| and, now, |w| = 0
    masks = method.choose(ctx, 3)
    # remain 9 -> 4 candidates: 2, 4, 5, 7 (|w| .5 .7 .3 .8)
    assert newly_pruned(ctx, masks) == {2, 4, 5}
    assert flat_mask(masks)[0] == 0


def test_gradient_first_matches_a_sorting_oracle():
    gen = torch.Generator().manual_seed(1)
    w, g = torch.rand(500, generator=gen), torch.rand(500, generator=gen)
    active = torch.rand(500, generator=gen) > 0.3
    pruned, cand = gradient_first(w, g, active, 40, 0.5)
    idx = [i for i in range(500) if active[i]]
    by_g = sorted(idx, key=lambda i: g[i].item())[:len(idx) // 2]
    assert set(cand.tolist()) == set(by_g)
    assert set(pruned.tolist()) == set(sorted(by_g, key=lambda i: w[i].item())[:40])


@pytest.mark.parametrize("criterion, expected", [("gw", {0, 2}), ("rank_sum", {2, 5})])
def test_criterion_toggles_prune_the_smallest_score(criterion, expected):
    # |g w| = .009 .09 .01 .04 .021 .012 .14 .04 .36 .2; rank sums 9 10 6 8 9 6 9 12 12 9
    method = FGGP(FGGPParams(criterion=criterion))
    ctx = handmade_ctx(method)
    assert newly_pruned(ctx, method.choose(ctx, 2)) == expected


def test_more_than_rho_of_the_remaining_weights_is_a_config_error():
    method = FGGP()
    ctx = handmade_ctx(method)
    method.choose(ctx, 5)                            # exactly rho * remain is allowed
    with pytest.raises(ConfigError, match=r"smaller `every`.*raise `rho`"):
        method.choose(ctx, 6)


def test_granet_cut_then_regrow_and_revived_weights_restart_from_zero():
    method = GraNet()
    ctx = handmade_ctx(method, pruned=[6])           # pruned earlier, large |g| = .7
    ctx.step = 0                                     # c = 0.5: to_add = floor((9 - 1) / 2) = 4
    buf = torch.ones(2, 2)
    ctx.optimizer.state[ctx.model[1].weight]["momentum_buffer"] = buf
    masks = method.choose(ctx, 1)
    # cut the 5 smallest |w| of the active: 3, 1, 5, 9, 2; regrow the 4 largest |g| among the
    # inactive (6 and those): 1 (.9), 3 (.8), 6 (.7), 9 (.5) -> net: 2 and 5 pruned, 6 back
    assert newly_pruned(ctx, masks) == {2, 5}
    assert flat_mask(masks)[6] == 1 and ctx.model[1].weight[0, 0] == 0
    assert buf[0, 0] == 0 and buf.sum() == 3
    step = rows(ctx, "fggp_steps")[0]
    assert (step["pruned"], step["restored"], step["revived"]) == (5, 4, 1)


@pytest.fixture(scope="module")
def fggp_run(shared_store):
    """One FGGP session at 90% whose method checks after every step that no mask entry regrew."""

    class Watched(FGGP):
        regrew = 0

        def after_step(self, ctx):
            before = {k: m.clone() for k, m in ctx.masks.items()}
            super().after_step(ctx)
            self.regrew += sum(int((ctx.masks[k] > before[k]).sum()) for k in before)

    config = SessionConfig(method="fggp", rate=0.9, **FAST)
    prep = prepare(config)
    state, dense_run = dense_start(prep, shared_store, None, None)
    prep.model.load_state_dict(state)
    prep.method = Watched(prep.method.p)
    summary = train(prep, shared_store, shared_store.create_run(config), dense_run=dense_run)
    assert summary["status"] == "completed", summary.get("error")
    return summary, prep.method


def test_fggp_pruned_weights_never_regrow(fggp_run, shared_store):
    summary, method = fggp_run
    assert method.regrew == 0
    steps = shared_store.rows(summary["run_id"], "fggp_steps")
    assert len(steps) > 10 and (steps.restored == 0).all() and (steps.revived == 0).all()


def test_fggp_ends_at_the_target_to_one_weight(fggp_run, shared_store):
    summary, _ = fggp_run
    steps = shared_store.rows(summary["run_id"], "prune_steps")
    n = steps.remain.iloc[0]
    assert steps.t.iloc[-1] == t_end(summary["steps"], 0.8)
    assert steps.achieved_density.iloc[-1] == 1 - math.floor(n * 0.9) / n
    assert abs(summary["sparsity"] - 0.9) <= 1 / n
    assert "pruned_accuracy" in summary


def test_fggp_records_counts_cuts_and_a_bounded_scatter(fggp_run, shared_store):
    summary, _ = fggp_run
    run_id = summary["run_id"]
    steps = shared_store.rows(run_id, "fggp_steps")
    assert (steps.candidates == (steps.remain * 0.5).apply(math.floor)).all()
    assert (steps.pruned == steps.to_prune).all() and steps.jaccard.between(0, 1).all()
    scatter = shared_store.rows(run_id, "fggp_scatter")
    assert scatter.groupby("step").size().max() <= FGGPParams().scatter
    assert set(scatter.outcome) <= {"kept", "candidate", "pruned"}
    # a pruned point lies under its step's magnitude cut, a candidate under its gradient cut
    cuts = steps.set_index("step")
    pruned = scatter[scatter.outcome == "pruned"]
    assert (pruned.w.values <= cuts.loc[pruned.step, "mag_cut"].values * (1 + 1e-3)).all()
    cand = scatter[scatter.outcome != "kept"]
    assert (cand.g.values <= cuts.loc[cand.step, "grad_cut"].values * (1 + 1e-3)).all()
    density = shared_store.scalars(run_id, ["density", "target_density"])
    assert set(density.key) == {"density", "target_density"}


def test_erk_sparse_start_has_density_half_and_erk_proportions():
    method = FGGP(FGGPParams(init_density=0.5))
    model = build_model("resnet20", (3, 32, 32), 10)
    ctx = handmade_ctx(method)
    ctx.model, ctx.layers = model, method.select_layers(model)   # as the session does
    ctx.config = SessionConfig(method="fggp", rate=0.9, epochs=1, device="cpu")
    method.before_training(ctx)
    assert [l.param for l in ctx.layers] == [l.param for l in prunable_layers(
        model, first_conv=False, last_linear=True)]
    n = sum(m.numel() for m in ctx.masks.values())
    kept = sum(m.sum().item() for m in ctx.masks.values())
    assert abs(kept / n - 0.5) <= len(ctx.masks) / n
    # ERK: density proportional to sum(shape) / prod(shape) for every layer that is not dense
    scale = []
    for l in ctx.layers:
        mask, shape = ctx.masks[l.param], l.module.weight.shape
        assert torch.all(l.module.weight[mask == 0] == 0)
        if mask.mean() < 1:
            scale.append(mask.mean().item() / (sum(shape) / math.prod(shape)))
    assert len(scale) >= 5 and max(scale) / min(scale) == pytest.approx(1, abs=1e-3)
    assert method.density(ctx, 0) == 0.5


def test_sparse_start_below_the_target_density_fails_clearly(shared_store):
    s = run_session(SessionConfig(method="fggp", rate=0.3, params={"init_density": 0.5},
                                  **FAST), shared_store)
    assert s["status"] == "failed" and s["config_error"]
    assert "init_density=1" in s["error"]


def test_granet_regrowth_follows_its_cosine_fraction(shared_store):
    assert regrow_fraction(0, 100, 0.5, 0.005) == 0.5
    assert regrow_fraction(50, 100, 0.5, 0.005) == pytest.approx(0.2525)
    assert regrow_fraction(100, 100, 0.5, 0.005) == pytest.approx(0.005)
    s = run_session(SessionConfig(method="granet", rate=0.9, **FAST), shared_store)
    assert s["status"] == "completed", s.get("error")
    steps = shared_store.rows(s["run_id"], "fggp_steps")
    end = t_end(s["steps"], 0.8)
    c = steps.step.apply(lambda t: regrow_fraction(t, end, 0.5, 0.005))
    assert (steps.regrow_fraction - c).abs().max() < 1e-12
    assert (steps.restored == ((steps.remain - steps.to_prune) * c).apply(math.floor)).all()
    assert (steps.pruned == steps.to_prune + steps.restored).all()
    assert steps.restored.iloc[0] > 10 * steps.restored.iloc[-1]
    prune = shared_store.rows(s["run_id"], "prune_steps")
    n = prune.remain.iloc[0]
    assert abs(prune.achieved_density - prune.target_density).max() <= 1 / n


TOO_AGGRESSIVE = dict(method="fggp", rate=0.95, params={"every": 12}, dense_epochs=3, epochs=2,
                      device="cpu")     # T_end = 35: pruning at 0, 12, 24, 35 needs 68% at 12


def test_too_aggressive_schedule_fails_the_run_with_a_clear_message(shared_store):
    s = run_session(SessionConfig(**TOO_AGGRESSIVE), shared_store)
    assert s["status"] == "failed" and s["config_error"]
    assert "step 12" in s["error"] and "smaller `every`" in s["error"]
    assert shared_store.run(s["run_id"])["error"] == s["error"]


def test_too_aggressive_schedule_found_mid_run_also_fails_the_run(shared_store):
    class Unchecked(FGGP):
        def check_plan(self, ctx):    # skip the check before training: the step must catch it
            pass

    config = SessionConfig(**TOO_AGGRESSIVE)
    prep = prepare(config)
    state, _ = dense_start(prep, shared_store, None, None)
    prep.model.load_state_dict(state)
    prep.method = Unchecked(prep.method.p)
    s = train(prep, shared_store, shared_store.create_run(config))
    assert s["status"] == "failed" and s["config_error"] and s["steps"] == 13
    assert "at step 12" in s["error"] and "raise `rho`" in s["error"]


def test_cli_exits_2_on_a_too_aggressive_schedule(shared_store, capsys):
    args = ["run", "--store", str(shared_store.root), "--json", "--method", "fggp", "--rate",
            "0.95", "--param", "every=12", "--dense-epochs", "3", "--epochs", "2",
            "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("pruneviz: error:") and "fggp: at step 12" in err


def test_presets_hold_the_paper_values():
    paper = FGGP.presets["paper"]
    assert (paper["epochs"], paper["batch_size"], paper["every"], paper["lr"]) == (160, 64, 2000,
                                                                                   0.1)
    assert paper["lr_milestones"] == (0.5, 0.75) and paper["weight_decay"] == 5e-4
    assert paper["label_smoothing"] == 0.1 and paper["rho"] == 0.5
    assert GraNetParams().c_init == 0.5 and GraNetParams().c_final == 0.005
