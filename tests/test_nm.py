"""N:M semi-structured sparsity (`--param nm=2:4`): the pattern exactly, the kept weights the
top N of each method's own score per group, gradual methods reaching it step by step, layers
the pattern cannot group left dense, and one clear error for every bad input."""

import itertools
import math

import pytest
import torch
import torch.nn as nn

from pruneviz.cli import main
from pruneviz.config import ConfigError, SessionConfig, parse_nm
from pruneviz.masks import nm_counts, nm_fits, nm_mask, nm_prune, nm_pruned
from pruneviz.methods import Context, get_method, make_params
from pruneviz.methods.fggp import t_end
from pruneviz.methods.slr.math import project_nm
from pruneviz.records import Recorder
from pruneviz.safe_load import load_tensors
from pruneviz.session import run_session
from pruneviz.store import Store

PATTERN_METHODS = ["admm", "fggp", "gmp", "granet", "l1", "random", "slr"]


def brute_nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Oracle, loop by loop: in every group of m consecutive input channels (at each kernel
    position of a conv), the n largest |w| (ties: lower index first)."""
    mask = torch.zeros_like(w)
    w4 = w if w.dim() == 4 else w[:, :, None, None]
    m4 = mask if w.dim() == 4 else mask[:, :, None, None]
    out, cin, kh, kw = w4.shape
    for o, y, x, g in itertools.product(range(out), range(kh), range(kw), range(cin // m)):
        vals = [(-w4[o, g * m + j, y, x].abs().item(), j) for j in range(m)]
        for _, j in sorted(vals)[:n]:
            m4[o, g * m + j, y, x] = 1.0
    return mask


# -- the pure helpers -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 16), (5, 8, 3, 3)])
@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 8), (1, 2)])
def test_nm_mask_keeps_the_n_largest_of_every_group_along_the_input_channels(shape, n, m):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(n * m))
    mask = nm_mask(w.abs(), n, m)
    assert torch.equal(mask, brute_nm_mask(w, n, m))
    assert (nm_counts(mask, m) == n).all()


def test_conv_groups_run_along_input_channels_not_the_kernel_window():
    # Only input channel 1 is large at every kernel position: 1:2 over channels keeps exactly it,
    # whereas groups over PyTorch's flattened (in, kh, kw) order would mix the window instead.
    w = torch.ones(1, 2, 3, 3)
    w[:, 1] = 5.0
    mask = nm_mask(w.abs(), 1, 2)
    assert mask[:, 1].eq(1).all() and mask[:, 0].eq(0).all()


def test_nm_fits_only_input_dimensions_that_are_multiples_of_m():
    assert nm_fits((16, 6, 5, 5), 2) and not nm_fits((16, 6, 5, 5), 4)
    assert nm_fits((10, 64), 4) and not nm_fits((10, 27), 4)


def test_nm_prune_cuts_the_lowest_free_scores_and_never_empties_a_group_below_n():
    g = torch.Generator().manual_seed(0)
    scores, mask = torch.rand(8, 16, generator=g), torch.ones(8, 16)
    for k in (10, 20, 30, 100):
        new = nm_prune(scores, mask, 2, 4, k)
        free = int((nm_counts(mask, 4) - 2).sum())
        assert int(mask.sum() - new.sum()) == min(k, free)
        assert (nm_counts(new, 4) >= 2).all() and torch.all(new <= mask)
        cut = (mask > 0) & (new == 0)
        top = nm_mask(torch.where(mask > 0, scores, -torch.inf), 2, 4).bool()
        spared = (new > 0) & ~top          # free weights not cut: none below a cut one
        if cut.any() and spared.any():
            assert scores[cut].max() <= scores[spared].min()
        mask = new
    assert (nm_counts(mask, 4) == 2).all()


def test_the_gradual_count_reaches_the_pattern_exactly():
    # 1:3's density 1/3 is not a float that (1 - d) * n hits exactly; the count must.
    assert nm_pruned(3 * 7, 1 / 3, 1, 3) == 14 and nm_pruned(16, 0.5, 2, 4) == 8
    assert nm_pruned(16, 0.9, 2, 4) == 1 and nm_pruned(16, 0.0, 2, 4) == 8


def test_slr_projection_onto_the_pattern_is_the_oracle_mask():
    w = torch.randn(4, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    z, mask = project_nm(w, 2, 4)
    assert torch.equal(mask, brute_nm_mask(w, 2, 4)) and torch.equal(z, w * mask)


@pytest.mark.parametrize("text", ["2-4", "4:4", "5:4", "0:4", "two:four", "2:", "-1:4", "2:4:8"])
def test_malformed_or_empty_patterns_are_one_clear_error(text):
    with pytest.raises(ConfigError, match="nm takes N:M"):
        parse_nm(text)


def test_an_empty_pattern_is_no_pattern():
    assert parse_nm("") is None and parse_nm(" 2:4 ") == (2, 4)


# -- gradual methods, step by step, on handmade layers --------------------------------------------
def pattern_ctx(name: str, steps: int = 100, **params) -> tuple:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, bias=False), nn.Flatten(),
                          nn.Linear(8, 12, bias=False), nn.Linear(12, 4, bias=False))
    cls = get_method(name)
    method = cls(make_params(cls, {"nm": "2:4", "every": "10", **params}))
    config = SessionConfig(method=name, rate=0.5, epochs=1, device="cpu",
                           params={"nm": "2:4", **params})
    ctx = Context(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  config=config, data=None, device=torch.device("cpu"), steps_per_epoch=steps,
                  record=Recorder(), gen=torch.Generator().manual_seed(0), evaluate=dict)
    ctx.layers = method.select_layers(model)
    method.before_training(ctx)
    return method, ctx


def drift(ctx, g: torch.Generator) -> None:
    """A training step's worth of change: new weights (zero where masked) and gradients."""
    with torch.no_grad():
        for layer in ctx.layers:
            w = layer.module.weight
            w.add_(0.05 * torch.randn(w.shape, generator=g)).mul_(ctx.masks[layer.param])
            w.grad = torch.randn(w.shape, generator=g)


def group_oracle(w, rank, mask, n, m):
    """The n active weights of every group with the highest `rank` keys (tuples), as a mask."""
    out = torch.zeros(w.numel())
    flat = lambda t: (t.permute(0, 2, 3, 1) if t.dim() == 4 else t).reshape(-1, m)  # noqa: E731
    idx = flat(torch.arange(w.numel()).view(w.shape))
    for row, act in zip(idx.tolist(), flat(mask).tolist()):
        live = [i for i, a in zip(row, act) if a > 0]
        for i in sorted(live, key=lambda i: (rank(i), -i), reverse=True)[:n]:
            out[i] = 1.0
    return out.view(w.shape)


@pytest.mark.parametrize("name", ["gmp", "fggp", "granet"])
def test_gradual_methods_thin_every_group_step_by_step_to_exactly_n(name):
    method, ctx = pattern_ctx(name)
    gen, end = torch.Generator().manual_seed(3), t_end(ctx.total_steps, method.p.end)
    seen = []
    for step in range(ctx.total_steps):
        ctx.step = step
        drift(ctx, gen)
        if step == end and name != "granet":
            # the final step keeps the top 2 of each group by the method's own score
            expected = final_oracle(method, ctx)
        method.after_step(ctx)
        density = method.density(ctx, step)
        for layer in ctx.layers:
            mask = ctx.masks[layer.param]
            counts = nm_counts(mask, 4)
            assert (counts >= 2).all() and (counts <= 4).all()
            if method.is_pruning_step(ctx):
                assert int((mask == 0).sum()) == nm_pruned(mask.numel(), density, 2, 4), step
        seen.append(int(sum((m == 0).sum() for m in ctx.masks.values())))
    assert seen == sorted(seen) or name == "granet"          # GraNet regrows between steps
    assert len(set(seen)) > 3                                 # reached gradually, not at once
    for layer in ctx.layers:
        assert (nm_counts(ctx.masks[layer.param], 4) == 2).all()
        if name != "granet":
            assert torch.equal(ctx.masks[layer.param], expected[layer.param]), layer.name


def final_oracle(method, ctx) -> dict:
    """The masks the final pruning step must produce, from the method's criterion per group."""
    out = {}
    if method.name == "gmp":
        for layer in ctx.layers:
            w = layer.module.weight.detach()
            out[layer.param] = group_oracle(w, lambda i, w=w: abs(w.flatten()[i].item()),
                                            ctx.masks[layer.param], 2, 4)
        return out
    # FGGP: the rho candidates (smallest |g| among active weights, over all layers) go first,
    # each by |w|; so a group keeps its non-candidates first, then its largest |w|.
    w = torch.cat([l.module.weight.detach().abs().flatten() for l in ctx.layers])
    g = torch.cat([l.module.weight.grad.abs().flatten() for l in ctx.layers])
    active = torch.cat([ctx.masks[l.param].flatten() for l in ctx.layers]) > 0
    live = active.nonzero().flatten()
    k = math.floor(method.p.rho * live.numel())
    cand = set(live[torch.argsort(g[live])[:k]].tolist())
    offset = 0
    for layer in ctx.layers:
        n = layer.module.weight.numel()
        out[layer.param] = group_oracle(
            layer.module.weight, lambda i, o=offset: (i + o not in cand, w[i + o].item()),
            ctx.masks[layer.param], 2, 4)
        offset += n
    return out


# -- whole sessions -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_runs(tmp_path_factory):
    """One 2:4 session of every pattern method on LeNet-5 (conv2 has 6 input channels: no 2:4)."""
    store = Store(tmp_path_factory.mktemp("nm") / "runs")
    runs = {}
    for name in PATTERN_METHODS:
        config = SessionConfig(method=name, model="lenet5", rate=0.5, dense_epochs=3, epochs=2,
                               device="cpu", params={"nm": "2:4", "last_linear": True})
        runs[name] = run_session(config, store)
    return store, runs


@pytest.mark.parametrize("name", PATTERN_METHODS)
def test_every_pattern_method_ends_with_exactly_n_of_every_m(lenet_runs, name):
    store, runs = lenet_runs
    s = runs[name]
    assert s["status"] == "completed", s.get("error")
    weights = load_tensors(store.run_dir(s["run_id"]) / "weights.pt")
    for key in ("fc1.weight", "fc2.weight", "fc3.weight"):
        assert (nm_counts(weights[key], 4) <= 2).all(), key          # zeros, whatever trained
    masks = load_tensors(store.run_dir(s["run_id"]) / "masks.pt")
    for key in ("fc1.weight", "fc2.weight", "fc3.weight"):
        assert (nm_counts(masks[key], 4) == 2).all(), key
    assert s["sparsity"] == 0.5 and s["nm"] == "2:4"


@pytest.mark.parametrize("name", PATTERN_METHODS)
def test_a_layer_the_pattern_cannot_group_stays_dense_and_the_summary_says_so(lenet_runs, name):
    store, runs = lenet_runs
    s = runs[name]
    weights = load_tensors(store.run_dir(s["run_id"]) / "weights.pt")
    assert torch.count_nonzero(weights["conv2.weight"]) == weights["conv2.weight"].numel()
    assert "conv2 (6 input channels)" in s["nm_dense_layers"]
    assert "not a multiple of 4" in s["nm_dense_layers"]


def test_l1_keeps_the_top_two_magnitudes_of_every_group_of_the_dense_start(lenet_runs):
    store, runs = lenet_runs
    s = runs["l1"]
    dense = load_tensors(store.run_dir(s["dense_run"]) / "weights.pt")
    masks = load_tensors(store.run_dir(s["run_id"]) / "masks.pt")
    for key in ("fc1.weight", "fc2.weight", "fc3.weight"):
        assert torch.equal(masks[key].float(), brute_nm_mask(dense[key], 2, 4)), key


def test_an_empty_pattern_trains_exactly_as_no_pattern(tmp_path):
    store = Store(tmp_path / "runs")
    finals = []
    for params in ({}, {"nm": ""}):
        s = run_session(SessionConfig(method="gmp", rate=0.7, dense_epochs=3, epochs=2,
                                      device="cpu", params=params), store)
        finals.append(load_tensors(store.run_dir(s["run_id"]) / "weights.pt"))
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


# -- bad input ------------------------------------------------------------------------------------
BAD = [
    (["--method", "l1", "--param", "nm=4:4"], "below M"),
    (["--method", "l1", "--param", "nm=5:4"], "below M"),
    (["--method", "gmp", "--param", "nm=2-4"], "nm takes N:M"),
    (["--method", "gmp", "--param", "nm=0:4"], "at least 1"),
    (["--method", "slr", "--param", "nm=2:4", "--rate", "0.8"], "leave the rate out"),
    (["--method", "pgmpf", "--param", "nm=2:4"], "removes whole filters"),
    (["--method", "l2_filter", "--param", "nm=2:4", "--rate", "0.5"], "removes whole filters"),
    (["--method", "global_l1", "--param", "nm=2:4"], "ranks all layers together"),
    (["--method", "gmp", "--param", "nm=2:4", "--param", "init_density=0.5"], "init_density"),
    (["--method", "slr", "--param", "nm=2:4", "--param", "layer_rates=conv2=0.3"],
     "layer_rates"),
    (["--method", "l1", "--param", "nm=1:64"], "no layer"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_pattern_exits_2_with_one_clear_line_and_stores_nothing(tmp_path, capsys, args,
                                                                     needle):
    root = tmp_path / "runs"
    assert main(["run", "--store", str(root), "--dense-epochs", "1", "--epochs", "1",
                 "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:") and needle in err[0], err
    assert not (root / "pruneviz.sqlite").exists() or Store(root).runs(include_dense=True).empty


def test_a_pattern_without_a_rate_sets_the_rate_to_one_minus_n_over_m(tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["run", "--store", str(root), "--json", "--dense-epochs", "1", "--epochs", "1",
                 "--device", "cpu", "--method", "l1", "--param", "nm=1:4"]) == 0
    run = Store(root).runs().iloc[0]
    assert run.rate == 0.75


# -- the Live form --------------------------------------------------------------------------------
@pytest.fixture
def live(tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    app = Path(__file__).resolve().parents[1] / "app.py"
    return AppTest.from_file(str(app), default_timeout=60).run()


def _errors(at) -> str:
    return " ".join(e.value for e in at.error)


def test_a_pattern_in_the_form_fixes_the_rate_box_at_one_minus_n_over_m(live):
    at = live
    at.selectbox(key="live.method").set_value("gmp").run()
    at.number_input(key="live.rate").set_value(0.9).run()
    at.text_input(key="live.gmp.nm").input("1:4").run()
    assert not at.exception and not at.error, _errors(at)
    rate = at.number_input(key="live.rate")
    assert rate.value == 0.75 and rate.disabled and "nm=1:4" in rate.help
    assert not at.button(key="live.run").disabled
    at.text_input(key="live.gmp.nm").input("").run()
    assert not at.number_input(key="live.rate").disabled


@pytest.mark.parametrize("text,needle", [("2-4", "whole numbers"), ("4:4", "prune nothing")])
def test_a_malformed_pattern_in_the_form_is_an_inline_error_that_disables_run(live, text,
                                                                            needle):
    at = live
    at.selectbox(key="live.method").set_value("slr").run()
    at.text_input(key="live.slr.nm").input(text).run()
    assert not at.exception
    assert "**nm** (under *slr parameters*)" in _errors(at) and needle in _errors(at)
    assert at.button(key="live.run").disabled
