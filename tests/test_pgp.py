"""PGP, RPGP and PSFP: the schedule, both criteria, the physical surgery against its masked twin,
the optimizer after surgery, momentum adaptation, and the final filter counts."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr

from pruneviz.config import SessionConfig
from pruneviz.data import DataBundle
from pruneviz.loop import Prepared, Session
from pruneviz.masks import Layer, apply_masks, filter_param_masks
from pruneviz.methods import get_method, make_params
from pruneviz.methods.base import apply_preset
from pruneviz.methods.pgp import (
    ACTIVE,
    KEPT_FILE,
    PGP,
    PSFP,
    SOFT,
    Params,
    PSFPParams,
    criterion_pass,
    hybrid_split,
    lead_conv,
    pruning_epochs,
    soft_reset,
    spearman,
    whole,
)
from pruneviz.models import build_model
from pruneviz.schedules import exponential_count
from pruneviz.session import run_session
from pruneviz.surgery import expand
from tests.helpers import randomize_bn

REFERENCE = [59.7, 55.7, 52.0, 48.5, 45.3, 42.2, 39.4, 36.8, 34.3, 32.0]   # docs/methods.md, PGP


def test_schedule_reproduces_the_reference_and_ends_exactly_at_the_target():
    targets = [PGP.keep_target(64, e, 10, 0.5, Params()) for e in range(10)]
    assert [round(t, 1) for t in targets] == REFERENCE
    assert targets == [exponential_count(64, e, 10, 0.5) for e in range(10)]
    assert targets[-1] == 32.0
    # whole filters: ceil (what the authors' int(current - target) weak count keeps)
    assert [whole(t) for t in targets] == [60, 56, 52, 49, 46, 43, 40, 37, 35, 32]
    assert whole(PGP.keep_target(10, 4, 5, 0.3, Params())) == 7       # no float-noise filter
    assert PSFP.keep_target(64, 9, 10, 0.5, PSFPParams()) == 32.0
    preview = PGP.schedule(SessionConfig(epochs=12, rate=0.5), Params(prune_epochs=10))
    last = preview[preview.epoch == 12].set_index("series").value
    assert last["target sparsity"] == 0.5 and last["removed (64-filter conv)"] == 0.5


def test_pruning_epochs_split_the_session_budget():
    assert pruning_epochs(4, 0.75) == 3            # the contract's 4-epoch budget: 3 + 1
    assert pruning_epochs(25, 0.75, 5) == 5        # paper preset: 5 + 20 fine-tuning
    assert pruning_epochs(2, 0.75) == 2
    assert pruning_epochs(3, 0.05) == 1
    assert pruning_epochs(4, 0.75, 9) == 4


@pytest.mark.parametrize("method", ["pgp", "rpgp", "psfp"])
def test_interactive_presets_prune_the_papers_share_of_the_epochs(method):
    """The paper prunes 5 of 25 epochs and fine-tunes the rest; the interactive preset keeps that
    share at its short budget (3/4 pruning left too little to recover: 11 points below PSFP on
    real images), to within one epoch of rounding, and both arms of PGP vs PSFP share it."""
    presets = get_method(method).presets
    paper, short = presets["paper"], presets["interactive"]
    share = pruning_epochs(paper["epochs"], 0.75, paper["prune_epochs"]) / paper["epochs"]
    epochs = short["epochs"]
    pruning = pruning_epochs(epochs, short["prune_fraction"], short["prune_epochs"])
    assert abs(pruning / epochs - share) <= 1 / epochs
    assert epochs - pruning >= epochs / 2           # most of the budget fine-tunes
    config = apply_preset(SessionConfig(method=method), "interactive")
    assert config.params["prune_fraction"] == short["prune_fraction"]
    assert short["prune_fraction"] == get_method("psfp").presets["interactive"]["prune_fraction"]


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (40,), generator=g).float()
    b = a + torch.rand(40, generator=g) * 3
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)
    assert spearman(torch.ones(5), b[:5]) is None


class Handmade(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.relu(self.bn2(self.conv2(x))).mean(dim=(2, 3)))


def test_criterion_pass_is_the_l1_norm_of_the_summed_gradient():
    torch.manual_seed(0)
    model = Handmade().train()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 2, 5, 5, generator=g), torch.randint(0, 5, (6,), generator=g))
               for _ in range(3)]
    # oracle: sum_b grad_b = grad of sum_b loss_b, in one backward of a copy
    oracle = copy.deepcopy(model)
    sum(F.cross_entropy(oracle(x), y) for x, y in batches).backward()
    expected = {n: oracle.get_submodule(n).weight.grad.flatten(1).abs().sum(1)
                for n in ("conv1", "conv2")}
    for p in model.parameters():            # a stale training gradient must not leak in
        p.grad = torch.full_like(p, 7.0)
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k
               or "num_batches" in k}
    got = criterion_pass(model, {"conv1": model.conv1.weight, "conv2": model.conv2.weight},
                         batches)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-7)
    for k, v in buffers.items():            # BatchNorm running statistics frozen
        assert torch.equal(model.state_dict()[k], v), k
    assert all(m.track_running_stats for m in (model.bn1, model.bn2))


def test_a_soft_reset_filter_gets_no_gradient_so_it_scores_zero_next_time():
    # Weights and BN gamma zeroed: the channel is constant zero and dy/dW passes through
    # gamma = 0, so the criterion (any gradient-based one) sees exactly 0 for it.
    torch.manual_seed(0)
    model = Handmade().train()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 2, 5, 5, generator=g), torch.randint(0, 5, (6,), generator=g))
               for _ in range(2)]
    layer = Layer("conv1", model.conv1, "bn1", model.bn1)
    soft_reset(layer, torch.tensor([1, 3]))
    for p in (model.conv1.weight, model.conv1.bias, model.bn1.weight, model.bn1.bias):
        assert (p[[1, 3]] == 0).all()
    assert (model.bn1.running_var[[1, 3]] == 0).all()
    score = criterion_pass(model, {"conv1": model.conv1.weight}, batches)["conv1"]
    assert score[[1, 3]].tolist() == [0.0, 0.0] and (score[[0, 2]] > 0).all()


# -- sessions on small synthetic data, driven piece by piece ----------------------------------
def _session(store, method, model, shape, *, rate=0.5, epochs=4, **params):
    config = SessionConfig(method=method, model=model, rate=rate, epochs=epochs, batch_size=8,
                           max_steps_per_epoch=2, device="cpu", start="scratch", eval_limit=16,
                           params=params)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, *shape), dtype=torch.uint8, generator=g)
    y = torch.arange(32) % 4
    data = DataBundle("synthetic", x, y, x[:16], y[:16], list("abcd"), False)
    torch.manual_seed(0)
    cls = get_method(method)
    prep = Prepared(config, cls(make_params(cls, params)), data, build_model(model, shape, 4),
                    torch.device("cpu"))
    session = Session(prep, store, store.create_run(config))
    session.begin()
    return session


def _train(session, epoch):
    ctx = session.ctx
    ctx.epoch = session.rec.epoch = epoch
    batches = session.data.train_batches(epoch, 0, 8, ctx.device, 2)
    for i, (x, y) in enumerate(batches):
        ctx.step = session.rec.step = epoch * session.spe + i
        session.step(x, y)


MODELS = {"tiny_cnn": (1, 8, 8), "vgg11": (3, 16, 16), "resnet20": (3, 16, 16)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shrunk_model_computes_what_the_masked_model_computes(name, store):
    shape = MODELS[name]
    session = _session(store, "pgp", name, shape, prune_epochs=3)
    ctx, method = session.ctx, session.method
    randomize_bn(ctx.model)
    dense = copy.deepcopy(ctx.model)
    for epoch in (0, 1):          # two hybrid epochs: removed and reset filters, two surgeries
        ctx.epoch = epoch
        method.end_of_epoch(ctx)
    assert any(ctx.model.get_submodule(n).out_channels < n0 for n, n0 in method.n0.items())
    # the masked twin: the dense model with every removed or reset filter zeroed
    masks = {}
    for layer in method.select_layers(dense):
        fmask = (method.status[layer.name] == 0).float()
        masks.update(filter_param_masks(layer, fmask))
    apply_masks(dense, masks)
    x = torch.randn(4, *shape)
    ctx.model.eval()
    dense.eval()
    assert (ctx.model(x) - dense(x)).abs().max().item() <= 1e-5
    # kept original indices map every shrunk parameter back onto the dense one
    kept = torch.load(ctx.run_dir / KEPT_FILE)
    for key, p in ctx.model.named_parameters():
        full = expand(p.detach(), kept["tensors"].get(key, {}), kept["dense_shapes"][key])
        ref = dict(dense.named_parameters())[key].detach()
        keep = expand(torch.ones_like(p), kept["tensors"].get(key, {}), ref.shape).bool()
        assert torch.equal(full[keep], ref[keep]), key
    for layer in ctx.layers:      # Layer objects still point at the live, shrunk modules
        assert layer.module is ctx.model.get_submodule(layer.name)
        assert layer.module.weight.shape[0] == len(kept["filters"][layer.name])


def test_optimizer_follows_the_surgery_and_keeps_weight_decay(store):
    session = _session(store, "rpgp", "resnet20", (3, 16, 16), prune_epochs=3)
    ctx = session.ctx
    _train(session, 0)
    old = ctx.optimizer
    session.end_epoch()
    opt = ctx.optimizer
    assert opt is not old
    params = list(ctx.model.parameters())
    assert [id(p) for g in opt.param_groups for p in g["params"]] == [id(p) for p in params]
    assert ctx.model.layer2[0].conv2.out_channels < 32          # a residual group shrank
    for p in params:
        assert opt.state[p]["momentum_buffer"].shape == p.shape
    group = opt.param_groups[0]
    c = ctx.config
    assert (group["weight_decay"], group["momentum"], group["nesterov"]) == (
        c.weight_decay, c.momentum, True) and c.weight_decay > 0
    assert ctx.model.training
    _train(session, 1)                       # a step runs on the shrunk network


def _first_moment_rows(ctx, layer, idx):
    ps = [layer.module.weight, layer.bn.weight, layer.bn.bias]
    return [ctx.optimizer.state[p]["momentum_buffer"][idx] for p in ps]


def test_soft_reset_filters_have_zero_momentum(store):
    session = _session(store, "pgp", "tiny_cnn", (1, 8, 8), prune_epochs=3)
    ctx, method = session.ctx, session.method
    _train(session, 0)
    session.end_epoch()
    n_soft = 0
    for layer in ctx.layers:
        soft = (method.status[layer.name][method.original(layer.name)] == SOFT).nonzero()[:, 0]
        n_soft += len(soft)
        assert all(torch.all(rows == 0) for rows in _first_moment_rows(ctx, layer, soft))
        assert torch.all(layer.module.weight[soft] == 0)
        assert torch.all(layer.bn.running_var[soft] == 0)
        others = torch.ones(layer.module.out_channels, dtype=torch.bool)
        others[soft] = False
        assert torch.any(_first_moment_rows(ctx, layer, others)[0] != 0)
    assert n_soft > 0
    rows = store.rows(session.run_id, "pgp_layers")
    assert (rows.momentum_before > 0).any() and (rows.momentum_after == 0).all()


def test_psfp_zeroes_filters_and_leaves_momentum_untouched(store):
    session = _session(store, "psfp", "tiny_cnn", (1, 8, 8), prune_epochs=3)
    ctx, method = session.ctx, session.method
    _train(session, 0)
    opt = ctx.optimizer
    before = {p: opt.state[p]["momentum_buffer"].clone() for p in ctx.model.parameters()}
    shapes = {k: v.shape for k, v in ctx.model.state_dict().items()}
    session.end_epoch()
    assert ctx.optimizer is opt and not ctx.masks
    assert {k: v.shape for k, v in ctx.model.state_dict().items()} == shapes
    for p, buf in before.items():
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)
    for layer in ctx.layers:
        soft = method.status[layer.name] == SOFT
        assert soft.sum() == layer.module.out_channels - whole(
            PSFP.keep_target(method.n0[layer.name], 0, 3, 0.5, method.p))
        assert torch.all(layer.module.weight[soft] == 0)


def test_rpgp_sums_the_per_batch_l1_norms_of_training_gradients(store):
    session = _session(store, "rpgp", "tiny_cnn", (1, 8, 8), prune_epochs=3)
    ctx, method = session.ctx, session.method
    oracle = {l.name: torch.zeros(l.module.out_channels) for l in ctx.layers}

    def hook(name):
        def add(grad):               # sees each step's gradient as backward produces it
            oracle[name].add_(grad.flatten(1).abs().sum(1))
        return add

    hooks = [l.module.weight.register_hook(hook(l.name)) for l in ctx.layers]
    _train(session, 0)
    for h in hooks:
        h.remove()
    for name, value in oracle.items():
        torch.testing.assert_close(method.running[name], value)
        assert value.sum() > 0


@pytest.mark.parametrize("method", ["pgp", "psfp"])
def test_final_filter_counts_equal_the_target(method, shared_store, fast_config):
    s = run_session(fast_config(method=method, rate=0.4, epochs=3), shared_store)
    assert s["status"] == "completed", s.get("error")
    weights = torch.load(shared_store.run_dir(s["run_id"]) / "weights.pt")
    n0 = {"conv1": 16, "conv2": 32, "conv3": 64}
    target = {name: whole(n * 0.6) for name, n in n0.items()}    # 9.6 -> 10, 19.2 -> 20, 38.4 -> 39
    for name, n in n0.items():
        w = weights[f"{name}.weight"]
        alive = int((w.flatten(1) != 0).any(1).sum())
        assert alive == target[name]
        assert w.shape[0] == (target[name] if method == "pgp" else n)
    assert s["filters_final"] == sum(target.values())
    # counted against the dense start, also for pgp, whose model is already small at the end
    assert s["filters_removed"] == sum(n0.values()) - sum(target.values())
    layers = shared_store.rows(s["run_id"], "pgp_layers")
    last = layers[layers.epoch == layers.epoch.max()].set_index("layer")
    for name, n in n0.items():
        assert last.removed[name] == n - target[name] and last.soft[name] == 0
    per = {"conv1": 1 * 9, "conv2": 16 * 9, "conv3": 32 * 9}    # dense weights per filter
    pruned = sum((n - target[name]) * per[name] for name, n in n0.items())
    assert s["sparsity"] == pytest.approx(pruned / sum(n * per[name] for name, n in n0.items()))
    assert s["flops_compact"] < s["flops_dense"]


def _weak_in_groups(store, group_score):
    """One pruning epoch of PGP on a ResNet-20 with crafted scores: in every residual group the
    lead conv ranks channel i at i, each other member at 2 (N - i), so the sum ranks them the
    other way. Returns {lead: the set of channels pruned (hard or soft)} per residual group."""
    session = _session(store, "pgp", "resnet20", (3, 16, 16), prune_epochs=3,
                       group_score=group_score)
    ctx, method = session.ctx, session.method
    groups = [g for g in method.groups if len(g) > 1]
    scores = {}
    for group in method.groups:
        n = method.n0[group[0]]
        for m in group:
            scores[m] = (torch.arange(n, dtype=torch.float) if m == lead_conv(group)
                         else 2.0 * (n - torch.arange(n, dtype=torch.float)))
    method._scores = lambda ctx: scores
    method._prune(ctx, 0)
    return {lead_conv(g): set((method.status[lead_conv(g)] != ACTIVE).nonzero().flatten()
                              .tolist()) for g in groups}


def test_pgp_residual_groups_lead_or_sum_picks_the_shared_channels(store):
    lead, summed = _weak_in_groups(store, "lead"), _weak_in_groups(store, "sum")
    assert sorted(lead) == ["conv1", "layer2.0.shortcut.0", "layer3.0.shortcut.0"]
    for name, weak in lead.items():
        n = len(weak)
        assert n > 0
        assert weak == set(range(n))                 # the lead conv's lowest scores
        n0 = 16 if name == "conv1" else 32 if name.startswith("layer2") else 64
        assert summed[name] == set(range(n0 - n, n0))   # the sum's lowest: the other end


def test_pgp_paper_preset_follows_the_authors_optimizer_and_groups():
    for method in ("pgp", "psfp"):
        config = apply_preset(SessionConfig(method=method), "paper")
        assert config.weight_decay == 0.0 and config.momentum == 0.9 and not config.nesterov
    assert apply_preset(SessionConfig(method="pgp"), "paper").params["group_score"] == "lead"


def test_hybrid_split_hard_half_of_the_weakest_then_all_at_the_last_epoch():
    score = torch.tensor([5.0, 1.0, 4.0, 0.5, 3.0, 2.0])
    hard, soft = hybrid_split(score, 4, 0.5, last=False)
    assert hard.tolist() == [3, 1] and soft.tolist() == [5, 4]
    hard, soft = hybrid_split(score, 3, 0.5, last=False)      # floor(3 * 0.5) = 1 hard
    assert hard.tolist() == [3] and soft.tolist() == [1, 5]
    hard, soft = hybrid_split(score, 3, 0.5, last=True)
    assert hard.tolist() == [3, 1, 5] and soft.numel() == 0
