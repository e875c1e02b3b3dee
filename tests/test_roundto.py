"""round_to: every filter method keeps a multiple of N filters per layer, at the end and at each
schedule step that prunes, with the method's own criterion still choosing which; round_to=1
keeps today's rules; auto resolves to this device's block and is recorded; bad values are one
clear error; the schedule preview shows the rounded counts."""

import itertools

import pandas as pd
import pytest
import torch
import torch.nn.utils.prune as tprune

from pruneviz import learn_speed
from pruneviz.cli import main
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.masks import n_prune
from pruneviz.methods import get_method, make_params
from pruneviz.methods.pgmpf.math import n_pruned_filters
from pruneviz.methods.pgp.math import whole
from pruneviz.methods.pgp.records import ACTIVE, LAYERS
from pruneviz.methods.roundto import auto_block, resolve
from pruneviz.metrics import cpu_vector_block
from pruneviz.models import build_model
from pruneviz.schedules import round_kept
from pruneviz.session import run_session
from pruneviz.store import Store
from pruneviz.ui import forms
from tests.test_learn import _chart, _page, _values

N = 8                     # tiny_cnn's convs have 16, 32 and 64 filters
RATE = 0.45               # kept counts 9, 18, 36 on tiny_cnn: none a multiple of 8


def _oracle(kept: int, n: int, block: int, mode: str) -> int:
    """round_kept by enumeration: of the counts 1..n the kernels split evenly (m a multiple of
    block, or block a multiple of m), the largest at most `kept` (down; 1 if none) or the
    closest, ties down (nearest)."""
    if block <= 1 or kept >= n:
        return kept
    options = [m for m in range(1, n + 1) if m % block == 0 or block % m == 0]
    if mode == "down":
        return max([m for m in options if m <= kept], default=1)
    return min(options, key=lambda m: (abs(m - kept), m))


@pytest.mark.parametrize("mode", ["down", "nearest"])
def test_round_kept_matches_an_enumeration_of_the_multiples(mode):
    for n, block in itertools.product(range(1, 70), (1, 2, 8, 16)):
        for kept in range(0, n + 1):
            got = round_kept(kept, n, block, mode)
            assert got == _oracle(kept, n, block, mode), (kept, n, block, mode)
            if block > 1 and kept < n:
                assert (got % block == 0 or block % got == 0) and 1 <= got <= n
                if mode == "down":
                    assert got <= max(kept, 1)     # never prunes less than asked, never empty


def test_round_to_one_leaves_every_count_alone():
    for n, kept in itertools.product(range(1, 40), range(0, 40)):
        assert round_kept(kept, n, 1, "down") == kept == round_kept(kept, n, 1, "nearest")


def test_auto_is_this_devices_kernel_block():
    block = cpu_vector_block()[1] or 1
    assert resolve("auto", torch.device("cpu")) == block == auto_block(torch.device("cpu"))
    assert auto_block(torch.device("cuda")) == 8
    assert resolve("16", torch.device("cpu")) == 16 and resolve(4, torch.device("cpu")) == 4


# -- sessions ------------------------------------------------------------------------------------
def _session(store, fast_config, method, **params):
    s = run_session(fast_config(method=method, rate=RATE, epochs=3,
                                params={"round_to": str(N), **params}), store)
    assert s["status"] == "completed", s.get("error")
    return s


@pytest.mark.parametrize("method", ["pgmpf", "sfp", "asfp"])
def test_soft_filter_methods_keep_multiples_of_n_chosen_by_l2(method, shared_store,
                                                              fast_config):
    s = _session(shared_store, fast_config, method)
    f = shared_store.filters(s["run_id"], ["mask", "l2_norm"])
    wide = f.pivot_table(index=["step", "layer", "filter"], columns="key", values="value")
    pruning_steps = 0
    for (step, layer), d in wide.groupby(level=["step", "layer"]):
        kept = int(d["mask"].sum())
        if kept == len(d):
            continue
        pruning_steps += 1
        assert kept % N == 0 or N % kept == 0, (step, layer, kept)
        # the criterion's choice: the kept filters are the top-k by L2 norm for the rounded k
        assert d.l2_norm[d["mask"] == 1].min() >= d.l2_norm[d["mask"] == 0].max()
    assert pruning_steps >= 2
    assert s["round_to"] == N and s["round_to_asked"] == str(N)


@pytest.mark.parametrize("method", ["pgp", "rpgp", "psfp"])
def test_progressive_methods_keep_multiples_of_n_chosen_by_their_score(method, shared_store,
                                                                      fast_config):
    s = _session(shared_store, fast_config, method, prune_epochs=2)
    run_id = s["run_id"]
    rows = shared_store.rows(run_id, LAYERS.name)
    assert len(rows) and ((rows.target_count % N == 0) | (N % rows.target_count == 0)).all()
    assert (rows.target_count <= rows.unrounded).all()          # down prunes more, not less
    assert (rows.active == rows.target_count).all()
    f = shared_store.filters(run_id, ["pgp_score", "pgp_status"])
    wide = f.pivot_table(index=["step", "layer", "filter"], columns="key", values="value",
                         dropna=False)
    for (step, layer), d in wide.groupby(level=["step", "layer"]):
        present = d[d.pgp_score.notna()]
        active = present.pgp_status == ACTIVE
        if active.all():
            continue
        assert present.pgp_score[active].min() >= present.pgp_score[~active].max(), (step, layer)
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    total = sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert s["filters_final"] % N == 0
    assert s["filter_rate_achieved"] == pytest.approx(1 - s["filters_final"] / total)
    assert s["filter_rate_achieved"] >= RATE


def test_l2_filter_keeps_a_multiple_of_n_of_the_largest_filters(shared_store, fast_config):
    s = _session(shared_store, fast_config, "l2_filter")
    kept = shared_store.layers(s["run_id"], ["filters_kept"])
    assert len(kept) and ((kept.value % N == 0) | (N % kept.value == 0)).all()
    sizes = [16, 32, 64]
    asked = [n - n_prune(n, RATE) for n in sizes]
    assert sorted(kept.value.astype(int)) == [round_kept(k, n, N) for k, n in zip(asked, sizes)]
    assert s["filter_rate_achieved"] == pytest.approx(1 - kept.value.sum() / sum(sizes))


def test_l2_filter_at_round_to_one_is_torch_ln_structured():
    """round_to=1 keeps main's rule: round(rate n) lowest-L2 filters, as torch's ln_structured."""
    cls = get_method("l2_filter")
    method = cls(make_params(cls, {"round_to": "1"}))
    model = build_model("tiny_cnn", (1, 8, 8), 10)
    ctx = type("Ctx", (), {})()
    ctx.model = model
    ctx.layers = method.select_layers(model)
    ctx.config = SessionConfig(method="l2_filter", rate=RATE)
    ctx.summary = {}
    ctx.device = torch.device("cpu")
    ctx.record = type("Rec", (), {"layer": lambda *a: None})()
    masks = method.masks(ctx)
    for layer in ctx.layers:
        w = layer.module.weight.detach()
        holder = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=False)
        holder.weight.data.copy_(w)
        ref = tprune.ln_structured(holder, "weight", RATE, n=2, dim=0)
        assert torch.equal(masks[layer.param].bool(), ref.weight_mask.bool()), layer.name
    assert ctx.summary["round_to"] == 1 and ctx.summary["filter_rate_achieved"] > 0


def test_round_to_one_keeps_mains_counts_in_pgmpf_and_pgp(shared_store, fast_config):
    s = run_session(fast_config(method="pgmpf", rate=RATE, epochs=3), shared_store)
    f = shared_store.filters(s["run_id"], ["mask"])
    updates = shared_store.rows(s["run_id"], "mask_updates")
    for (step, _), d in f.groupby(["step", "layer"]):
        r = float(updates[updates.step == step].r.iloc[0])
        assert int((d.value == 0).sum()) == n_pruned_filters(len(d), r)    # floor(N (1 - r))
    s = run_session(fast_config(method="pgp", rate=RATE, epochs=3,
                                params={"prune_epochs": 2}), shared_store)
    rows = shared_store.rows(s["run_id"], LAYERS.name)
    assert (rows.target_count == [whole(t) for t in rows.target]).all()


def test_round_to_one_is_the_default_bit_for_bit(store, fast_config):
    a = run_session(fast_config(method="l2_filter", rate=RATE, epochs=1), store)
    b = run_session(fast_config(method="l2_filter", rate=RATE, epochs=1,
                                params={"round_to": "1", "round_mode": "nearest"}), store)
    losses = [store.scalars(s["run_id"], ["loss"]).value.tolist() for s in (a, b)]
    assert losses[0] == losses[1] and a["final_accuracy"] == b["final_accuracy"]


def test_auto_is_recorded_resolved_in_the_summary(shared_store, fast_config):
    s = run_session(fast_config(method="l2_filter", rate=RATE, epochs=1,
                                params={"round_to": "auto"}), shared_store)
    assert s["round_to"] == (cpu_vector_block()[1] or 1) and s["round_to_asked"] == "auto"


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-16", "abc", "2.5", ""])
def test_a_bad_round_to_is_one_config_error(value):
    with pytest.raises(ConfigError, match="round_to must be a positive whole number"):
        make_params(get_method("pgmpf"), {"round_to": value})


@pytest.mark.parametrize("value,needle", [("abc", "round_to must be"),
                                          ("128", "more than the 16 filters of conv1")])
def test_the_cli_says_what_is_wrong_with_round_to_and_exits_2(tmp_path, capsys, value, needle):
    code = main(["run", "--store", str(tmp_path / "runs"), "--method", "pgmpf", "--epochs", "1",
                 "--device", "cpu", "--param", f"round_to={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("pruneviz: error:"), err
    assert needle in err[0]
    assert not (tmp_path / "runs").exists() or Store(tmp_path / "runs").runs().empty


def test_the_form_names_round_to_when_it_is_larger_than_a_layer():
    message = " ".join(forms.problems(SessionConfig(method="pgp", model="tiny_cnn",
                                                    params={"round_to": "32"})))
    assert "**round to** (under *pgp parameters*)" in message and "conv1" in message
    assert forms.problems(SessionConfig(method="pgp", params={"round_to": "auto"})) == []


def test_a_bad_round_to_in_the_live_form_is_inline_and_disables_run(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_live_form import ROOT

    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.selectbox(key="live.method").set_value("l2_filter").run()
    at.text_input(key="live.l2_filter.round_to").input("sixteen").run()
    errors = " ".join(e.value for e in at.error)
    assert not at.exception
    assert "**round to** (under *l2_filter parameters*)" in errors and "sixteen" in errors
    assert at.button(key="live.run").disabled
    at.text_input(key="live.l2_filter.round_to").input("16").run()
    assert not at.button(key="live.run").disabled
    titles = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "rounded to 16" in titles


# -- the schedule preview ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["pgmpf", "pgp", "psfp", "l2_filter"])
def test_the_preview_shows_the_models_rounded_counts(method):
    cls = get_method(method)
    config = SessionConfig(method=method, model="resnet20", dataset="cifar10_small", rate=0.4,
                           epochs=6, params={"round_to": "16"})
    preview = cls.preview(config, make_params(cls, config.params))
    rounded = preview[preview.series.str.contains("rounded to 16")]
    assert len(rounded) >= 2
    model = build_model("resnet20", (3, 32, 32), 10)
    widths = [l.module.weight.shape[0] for l in cls(make_params(cls, config.params))
              .select_layers(model)]
    if method == "pgmpf":
        kept = sum(round_kept(n - n_pruned_filters(n, 0.6), n, 16) for n in widths)
    elif method == "l2_filter":
        kept = sum(round_kept(n - n_prune(n, 0.4), n, 16) for n in widths)
    else:
        kept = sum(round_kept(whole(n * 0.6), n, 16) for n in widths)
    assert f"{kept} of {sum(widths)} kept" in rounded.series.iloc[0]
    final = rounded.value.iloc[-1]
    assert final == pytest.approx(kept / sum(widths) if method == "pgmpf"
                                  else 1 - kept / sum(widths))


def test_without_rounding_the_preview_is_unchanged():
    for method in ("pgmpf", "pgp", "l2_filter"):
        cls = get_method(method)
        preview = cls.preview(SessionConfig(method=method), cls.Params())
        assert not preview.series.str.contains("rounded").any()
        assert isinstance(preview, pd.DataFrame)



# -- the Learn page --------------------------------------------------------------------------------
def test_the_learn_toy_rounds_as_the_methods_do_and_counts_flops_per_filter():
    df = learn_speed.round_to_speed(channels=64, rate=0.4, block=16, budget_s=0.3)
    asked = 64 - n_prune(64, 0.4)
    assert df.filters.tolist() == [64, asked, round_kept(asked, 64, 16)] == [64, 38, 32]
    # a conv's FLOPs are proportional to its filters
    assert df["FLOPs relative"].tolist() == pytest.approx([1.0, 38 / 64, 32 / 64])
    assert df.relative.iloc[0] == 1.0 and (df.relative > 0).all()
    assert df["time per FLOP"].tolist() == pytest.approx((df.relative / df["FLOPs relative"])
                                                         .tolist())


def test_the_speed_page_measures_round_to_on_request():
    at = _page("learn_speed")
    at.slider(key="learn.speed.budget").set_value(0.5).run()
    at.select_slider(key="learn.speed.round_to").set_value(8).run()
    at.button(key="learn.speed.round_measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    bars = _chart(at, "learn.speed.round_fig")
    assert [t["name"] for t in bars] == ["FLOPs", "time (measured)"]
    assert "(round_to=8)" in " ".join(_values(bars[0]["x"]))
