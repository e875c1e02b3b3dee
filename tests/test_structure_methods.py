"""The filter methods on transformers (methods/structures.py): a head's and a neuron's slices,
their scores against hand-computed oracles, PGMPF's soft update and gradient mask on a head's
slices against the formulas, and for each of the six methods a gpt_tiny session whose compacted
model gives the masked model's logits with each block's own share of heads and neurons kept."""

import copy
import json

import numpy as np
import pytest
import torch

from pruneviz import loop
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.masks import apply_masks
from pruneviz.methods import structures as st
from pruneviz.methods.base import Method
from pruneviz.methods.pgmpf.engine import Structures
from pruneviz.methods.pgmpf.math import gradient_factor
from pruneviz.methods.pgp.math import gradient_sums
from pruneviz.session import run_session
from pruneviz.transformers import GPT, GPTConfig, remove_dead_structures, structure_scores
from tests.helpers import TINY

METHODS = ("pgmpf", "sfp", "asfp", "pgp", "rpgp", "psfp")


def _gpt(seed=0, **kw):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{"block_size": 8, "n_layer": 2, **kw}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def _head1_rows():
    """Head 1 of n_embd 8, 2 heads of 4 dims: its q, k and v rows of c_attn, written out."""
    return [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]


def test_the_view_scores_structures_as_l2_filter_does():
    model = _gpt()
    weights = st.params(model)
    expect = {(n, k): s for n, k, s in structure_scores(model)}
    for unit in st.units(model):
        torch.testing.assert_close(st.norms(unit, weights), expect[(unit.name, unit.kind)])
    assert [u.kind for u in st.units(model)] == ["head", "neuron"] * 2
    heads = st.units(model)[0]
    assert heads.weights == 3 * 16 * 64 + 64 * 16       # q, k, v rows and c_proj columns


def test_pgmpf_soft_update_scales_exactly_a_heads_slices():
    model = _gpt(n_layer=1, n_head=2, n_embd=8)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    units = Structures(model)
    m, alpha = torch.tensor([1.0, 0.0]), 0.3          # head 1 pruned
    apply_masks(model, units.factors(0, m + alpha * (1 - m), bn=True))
    after = model.state_dict()
    rows = _head1_rows()
    expect_w = before["blocks.0.attn.c_attn.weight"].clone()
    expect_w[rows] *= alpha
    expect_b = before["blocks.0.attn.c_attn.bias"].clone()
    expect_b[rows] *= alpha
    expect_p = before["blocks.0.attn.c_proj.weight"].clone()
    expect_p[:, 4:8] *= alpha
    assert torch.equal(after["blocks.0.attn.c_attn.weight"], expect_w)
    assert torch.equal(after["blocks.0.attn.c_attn.bias"], expect_b)
    assert torch.equal(after["blocks.0.attn.c_proj.weight"], expect_p)
    for key in before:            # the shared output bias, the MLP and the rest untouched
        if key not in ("blocks.0.attn.c_attn.weight", "blocks.0.attn.c_attn.bias",
                       "blocks.0.attn.c_proj.weight"):
            assert torch.equal(after[key], before[key]), key


def test_pgmpf_gradient_mask_scales_a_pruned_heads_gradient_by_one_minus_lambda():
    model = _gpt(n_layer=1, n_head=2, n_embd=8)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    units = Structures(model)
    lam = 0.75
    kept = torch.tensor([1.0, 0.0] + [1.0] * 32)      # heads, then 32 neurons
    kept[2 + 5] = 0.0                                                # neuron 5 pruned
    u = torch.zeros(kept.numel())
    u[7] = 0.9                                                       # neuron 5 drops out
    units.scale_grads(gradient_factor(kept, 1 - kept, lam, u))
    g = dict(model.named_parameters())
    expect = torch.ones(24, 8)
    expect[_head1_rows()] = 1 - lam
    assert torch.equal(g["blocks.0.attn.c_attn.weight"].grad, expect)
    assert torch.equal(g["blocks.0.attn.c_attn.bias"].grad, expect[:, 0])
    proj = torch.ones(8, 8)
    proj[:, 4:8] = 1 - lam
    assert torch.equal(g["blocks.0.attn.c_proj.weight"].grad, proj)
    assert torch.equal(g["blocks.0.mlp.c_fc.weight"].grad[5], torch.zeros(8))
    assert torch.equal(g["blocks.0.mlp.c_proj.weight"].grad[:, 5], torch.zeros(8))
    assert g["blocks.0.mlp.c_fc.weight"].grad.sum() == 31 * 8
    assert torch.equal(g["blocks.0.attn.c_proj.bias"].grad, torch.ones(8))


def test_pgp_filter_change_of_a_head_is_the_l1_norm_of_its_summed_gradient():
    model = _gpt(n_layer=1, n_head=2, n_embd=8)
    batches = [(torch.randint(0, 256, (3, 8)), torch.randint(0, 256, (3, 8))) for _ in range(2)]
    unit = st.units(model)[0]
    names = [p.param for p in unit.parts]
    sums = gradient_sums(model, {n: st.params(model)[n] for n in names}, batches)
    got = st.reduce(unit, sums, torch.abs)
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in batches:          # the oracle: backward per batch, gradients summed by hand
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        for n, p in model.named_parameters():
            total[n] += p.grad
    w, b = total["blocks.0.attn.c_attn.weight"], total["blocks.0.attn.c_attn.bias"]
    proj = total["blocks.0.attn.c_proj.weight"]
    rows = _head1_rows()
    expect = w[rows].abs().sum() + b[rows].abs().sum() + proj[:, 4:8].abs().sum()
    assert got[1].item() == pytest.approx(expect.item(), rel=1e-5)


def test_a_filter_method_without_structures_refuses_a_transformer():
    class ConvOnly(Method):
        name, kind = "conv_only", "filter"

    with pytest.raises(ConfigError, match="heads and MLP neurons.*does not prune yet"):
        ConvOnly().check(_gpt())


@pytest.mark.parametrize("name", METHODS)
def test_compacted_model_gives_the_masked_logits_with_each_blocks_share(name, shared_store):
    held = {}
    save = loop._save_artifacts

    def capture(ctx, folder):
        held["model"] = copy.deepcopy(ctx.model).eval()
        save(ctx, folder)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "_save_artifacts", capture)
    try:
        s = run_session(SessionConfig(method=name, rate=0.3, model="gpt_tiny", dataset="pydoc",
                                      **TINY), shared_store)
    finally:
        mp.undo()
    assert s["status"] == "completed", s.get("error")
    masked = held["model"]
    small = copy.deepcopy(masked)
    removed = remove_dead_structures(small)
    # 0.3 of 4 heads and of 256 neurons: floor -> 1 and 76 pruned, 3 and 180 kept per block
    assert [b.attn.n_head for b in small.blocks] == [3] * 4
    assert [b.mlp.c_fc.out_features for b in small.blocks] == [180] * 4
    assert removed == {"heads_removed": 4, "neurons_removed": 4 * 76}
    x = torch.randint(0, 256, (2, 64))
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=0)


# -- the internals views on gpt_tiny: heads and neurons, labelled as such ---------------------
@pytest.fixture(scope="module")
def gpt_runs(shared_store):
    """A finished gpt_tiny session of each view's methods (4 epochs: 3 of them prune for pgp)."""
    out = {}
    for method in ("pgmpf", "sfp", "pgp", "psfp"):
        config = SessionConfig(method=method, rate=0.5, model="gpt_tiny", dataset="pydoc",
                               **{**TINY, "epochs": 4})
        s = run_session(config, shared_store)
        assert s["status"] == "completed", s.get("error")
        out[method] = shared_store.run(s["run_id"])
    return out


def _panels(module, store, run):
    frames = module.load(store, run["run_id"])
    return {p.key: p for p in module.panels(frames, run, module.steps(frames)[-1])}


def test_pgmpf_internals_draw_heads_and_neurons_as_such(gpt_runs, shared_store):
    from pruneviz.methods.pgmpf import view

    panels = _panels(view, shared_store, gpt_runs["pgmpf"])
    assert "pgmpf.norms" not in panels and {"pgmpf.heads", "pgmpf.neurons"} <= set(panels)
    for p in panels.values():
        go_dict = p.figure.to_dict()
        assert "filter" not in p.caption, p.key
        assert "filter" not in json.dumps(go_dict["layout"].get("title", {})), p.key
    heads = panels["pgmpf.heads"].figure
    assert heads.layout.xaxis.title.text == "head index"
    assert all("head %{x}" in t.hovertemplate for t in heads.data if t.type == "heatmap")
    kept = next(t for t in heads.data if t.name == "kept")
    assert list(kept.y) == [f"blocks.{i}.attn" for i in range(4)]
    # the grid is the recorded mask: 2 of 4 heads kept in every block
    filters = shared_store.filters(gpt_runs["pgmpf"]["run_id"], ["mask"])
    last = filters[(filters.step == filters.step.max()) & filters.layer.str.endswith(".attn")]
    assert np.isfinite(np.asarray(kept.z, float)).sum(1).tolist() == [2] * 4
    assert last.groupby("layer").value.sum().tolist() == [2.0] * 4
    neurons = panels["pgmpf.neurons"].figure
    assert neurons.layout.xaxis.title.text == "neuron index"


def test_pgp_internals_score_heads_and_neurons(gpt_runs, shared_store):
    from pruneviz.methods.pgp import view

    panels = _panels(view, shared_store, gpt_runs["pgp"])
    for p in panels.values():
        assert "filter" not in p.caption, p.key
    assert "pgp.scores" not in panels
    for unit in ("head", "neuron"):
        scores = panels[f"pgp.scores.{unit}s"].figure
        texts = [str(x) for t in scores.data if t.type == "bar" for x in t.text]
        assert texts and all(x.endswith(f"<br>{unit}") for x in texts)
        assert scores.layout.title.text.endswith(f", {unit}s")
        # a bar for every head (neuron) each block had before the last pruning epoch
        rows = shared_store.rows(gpt_runs["pgp"]["run_id"], "pgp_layers")
        rows = rows[(rows.epoch == rows.epoch.max()) & rows.layer.str.endswith(
            ".attn" if unit == "head" else ".mlp")]
        assert len(rows) == 4 and len(texts) == rows.before.sum()
    counts = panels["pgp.counts"].figure
    assert counts.layout.yaxis.title.text == "heads and neurons (all blocks)"
    assert counts.layout.title.text == "Active, soft and removed heads and neurons"


def _internals_app(root: str, run_id: str) -> None:
    from pruneviz.store import Store
    from pruneviz.ui.internals import internals_view

    store = Store(root)
    internals_view(store, store.run(run_id))


@pytest.mark.parametrize("method", ["pgmpf", "sfp", "pgp", "psfp"])
def test_the_live_internals_render_a_gpt_tiny_run(method, gpt_runs, shared_store):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_internals_app, default_timeout=60,
                               args=(str(shared_store.root), gpt_runs[method]["run_id"]))
    at.run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 5
    text = " ".join(json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "")
                    for c in charts)
    assert ("Head norms" in text) if method.endswith("mpf") or method == "sfp" else (
        "heads and neurons" in text and ", heads" in text)
    assert "filter" not in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("name", ["pgmpf", "pgp", "l2_filter"])
def test_round_to_rounds_each_blocks_kept_heads_and_neurons(name, shared_store):
    """rate 0.35, round_to=4: 3 of 4 heads kept -> 2 (below one block: a divisor of 4); 167 or
    166 of 256 neurons kept (pgmpf floors what it prunes, l2_filter rounds) -> 164."""
    held = {}
    save = loop._save_artifacts
    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "_save_artifacts", lambda ctx, folder: (
        held.update(model=copy.deepcopy(ctx.model)), save(ctx, folder)))
    try:
        s = run_session(SessionConfig(method=name, rate=0.35, model="gpt_tiny", dataset="pydoc",
                                      params={"round_to": "4"}, **TINY), shared_store)
    finally:
        mp.undo()
    assert s["status"] == "completed", s.get("error")
    small = copy.deepcopy(held["model"])
    remove_dead_structures(small)
    assert [b.attn.n_head for b in small.blocks] == [2] * 4
    assert [b.mlp.c_fc.out_features for b in small.blocks] == [164] * 4


def test_round_to_wider_than_a_blocks_heads_is_one_clear_error():
    from pruneviz.methods.roundto import round_to_problem

    problem = round_to_problem(SessionConfig(method="pgmpf", model="gpt_tiny", dataset="pydoc",
                                             params={"round_to": "8"}))
    assert problem.startswith("round_to=8 is more than the 4 heads of blocks.0.attn")
    assert "round_to=4 or less" in problem
