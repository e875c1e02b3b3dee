"""The PGP / RPGP / PSFP internals view against the store it reads (the oracle)."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from pruneviz.config import SessionConfig
from pruneviz.methods.pgp import view
from pruneviz.session import run_session
from tests.helpers import copy_until

METHODS = ("pgp", "rpgp", "psfp")
EPOCH_AXIS = ("pgp.counts", "pgp.spearman", "pgp.momentum", "pgp.size")


@pytest.fixture(scope="module")
def runs(shared_store):
    """One finished digits session per method: 4 pruning epochs, then 1 fine-tuning epoch."""
    out = {}
    for method in METHODS:
        config = SessionConfig(method=method, epochs=5, rate=0.5, dense_epochs=3, device="cpu",
                               params={"prune_epochs": 4})
        run_id = run_session(config, shared_store)["run_id"]
        out[method] = (run_id, shared_store.run(run_id), view.load(shared_store, run_id))
    return out


def named(fig: go.Figure, name: str) -> list:
    return [t for t in fig.data if t.name == name]


def by_name(fig: go.Figure, name: str):
    found = named(fig, name)
    assert found, f"no trace {name!r} in {[t.name for t in fig.data]}"
    return found[0]


def panels_at(runs, method, step=None):
    run_id, run, frames = runs[method]
    step = view.steps(frames)[-1] if step is None else step
    return {p.key: p for p in view.panels(frames, run, step)}


def recorded(trace) -> bool:
    return trace.name is not None and not trace.name.startswith("planned")


def test_steps_are_every_epoch_end(runs, shared_store):
    for method in METHODS:
        run_id, _, frames = runs[method]
        epochs = shared_store.rows(run_id, "pgp_epochs")
        assert view.steps(frames) == sorted(epochs.step.tolist())
        assert len(view.steps(frames)) == 5


def test_panels_have_captions_and_psfp_has_no_rank_correlation(runs):
    for method in METHODS:
        panels = list(panels_at(runs, method).values())
        assert 4 <= len(panels) <= 6
        assert len({p.key for p in panels}) == len(panels)
        assert all(p.caption.endswith(".") and len(p.caption) > 40 for p in panels)
        assert ("pgp.spearman" in {p.key for p in panels}) == (method != "psfp")


def test_every_figure_passes_plotly_validation_at_every_step(runs):
    for method in METHODS:
        _, run, frames = runs[method]
        for step in [0, *view.steps(frames)]:
            for p in view.panels(frames, run, step):
                go.Figure(p.figure.to_dict())


def test_sorted_scores_and_cuts_are_the_recorded_ones(runs, shared_store):
    for method in ("pgp", "psfp"):
        run_id, _, _ = runs[method]
        layers = shared_store.rows(run_id, "pgp_layers")
        filters = shared_store.filters(run_id, ["pgp_score", "pgp_status"])
        for step in sorted(layers.step.unique()):
            fig = panels_at(runs, method, step)["pgp.scores"].figure
            bars = by_name(fig, "scores, row 1")
            group = np.array([t.split("<br>")[0] for t in bars.text])
            data = np.asarray(bars.customdata)
            weak_cuts = set(by_name(fig, "weak cut, row 1").x) - {None}
            leads = layers[(layers.step == step) & (layers.layer == layers.group)]
            assert set(group) == set(leads.layer)
            for row in leads.itertuples():
                mine = group == row.layer
                rec = filters[(filters.step == step) & (filters.layer == row.layer)]
                rec = rec.pivot_table(index="filter", columns="key", values="value")
                rec = rec[rec.pgp_score.notna()]
                shown = dict(zip(data[mine, 0].astype(int), data[mine, 1]))
                assert shown == pytest.approx(rec.pgp_score.to_dict())
                assert list(data[mine, 1]) == sorted(data[mine, 1])       # weakest first
                status = np.asarray(bars.marker.color)[mine]
                hard = set(data[mine, 0][status == 2].astype(int))
                assert hard == set(rec.index[rec.pgp_status == 2])
                assert len(hard) == row.hard_now
                # the weakest are the hard ones: their ranks come first
                ranks = np.asarray(bars.x)[mine] - np.asarray(bars.x)[mine].min()
                assert set(ranks[status == 2]) == set(range(row.hard_now))
                n_weak = row.before - row.target_count
                start = np.asarray(bars.x)[mine].min()
                assert (start + n_weak - 0.5 in weak_cuts) == (n_weak > 0)


def test_counts_are_the_recorded_layer_rows(runs, shared_store):
    for method in ("pgp", "psfp"):
        run_id, _, _ = runs[method]
        fig = panels_at(runs, method)["pgp.counts"].figure
        per = shared_store.rows(run_id, "pgp_layers").groupby("epoch").sum(numeric_only=True)
        for key, name in (("active", "active"), ("soft", "soft (reset)"),
                          ("removed", "removed")):
            np.testing.assert_allclose(by_name(fig, name).y, per[key])
        np.testing.assert_allclose(by_name(fig, "target n(e)").y, per.target)
        total = sum(np.asarray(by_name(fig, n).y) for n in ("active", "soft (reset)",
                                                            "removed"))
        assert (total == per.before.iloc[0]).all()      # every dense filter is in one bar
        # the plan ends on the last recorded target (the schedule reaches N0 (1 - P))
        assert by_name(fig, "planned target").y[-1] == pytest.approx(per.target.iloc[-1])


def test_rank_correlation_is_the_recorded_spearman(runs, shared_store):
    run_id, _, _ = runs["pgp"]
    fig = panels_at(runs, "pgp")["pgp.spearman"].figure
    layers = shared_store.rows(run_id, "pgp_layers")
    leads = layers[layers.layer == layers.group]
    want = leads.groupby("epoch").spearman.mean()
    np.testing.assert_allclose(by_name(fig, "mean over groups").y, want)
    assert sorted(by_name(fig, "each group").y) == pytest.approx(sorted(leads.spearman))


def test_momentum_is_zeroed_by_pgp_and_left_by_psfp(runs, shared_store):
    for method in ("pgp", "psfp"):
        run_id, _, _ = runs[method]
        fig = panels_at(runs, method)["pgp.momentum"].figure
        epochs = shared_store.rows(run_id, "pgp_epochs")
        prune = epochs[epochs.phase == "prune"]
        before, after = by_name(fig, "before the reset"), by_name(fig, "after the reset")
        np.testing.assert_allclose(before.y, prune.momentum_before)
        np.testing.assert_allclose(after.y, prune.momentum_after)
        assert max(before.y) > 0
    pgp_after = by_name(panels_at(runs, "pgp")["pgp.momentum"].figure, "after the reset").y
    assert set(pgp_after) == {0.0}


def test_size_shows_the_trained_network_and_epoch_times(runs, shared_store):
    for method in ("pgp", "psfp"):
        run_id, _, _ = runs[method]
        fig = panels_at(runs, method)["pgp.size"].figure
        epochs = shared_store.rows(run_id, "pgp_epochs")
        flops = by_name(fig, "FLOPs")
        np.testing.assert_allclose(flops.customdata, epochs.flops_trained)
        np.testing.assert_allclose(flops.y, epochs.flops_trained / epochs.flops_trained[0])
        np.testing.assert_allclose(by_name(fig, "training time").y, epochs.epoch_time)
        now = epochs.flops.iloc[-1] / epochs.flops_trained[0]
        assert f"now {now:.0%} of dense FLOPs" in fig.layout.title.text
    # PGP removes filters while it trains; PSFP only zeroes them
    assert by_name(panels_at(runs, "pgp")["pgp.size"].figure, "FLOPs").y[-1] < 0.5
    assert set(by_name(panels_at(runs, "psfp")["pgp.size"].figure, "FLOPs").y) == {1.0}


def test_an_earlier_step_shows_nothing_recorded_after_it(runs):
    for method in METHODS:
        _, _, frames = runs[method]
        step = view.steps(frames)[1]
        epoch = int(frames["epochs"].set_index("step").epoch[step])
        panels = panels_at(runs, method, step)
        assert f"pruning epoch {epoch}" in panels["pgp.scores"].figure.layout.title.text
        for key, p in panels.items():
            if key == "pgp.scores":
                continue
            for t in p.figure.data:
                if recorded(t):
                    assert np.nanmax(np.asarray(t.x, dtype=float)) <= epoch + 0.2, (method, key)


def test_a_run_without_records_waits(runs, shared_store):
    _, run, _ = runs["pgp"]
    new = shared_store.create_run(run["config"])
    frames = view.load(shared_store, new)
    assert view.steps(frames) == []
    panels = view.panels(frames, shared_store.run(new), 0)
    assert len(panels) == len(panels_at(runs, "pgp"))
    for p in panels:
        go.Figure(p.figure.to_dict())
        assert "waiting" in str(p.figure.layout.annotations[0].text)


def test_a_partial_run_shows_what_it_recorded_so_far(runs, shared_store):
    run_id, run, frames = runs["pgp"]
    cut = view.steps(frames)[1] + 3          # mid-epoch, after two pruning epochs
    new = copy_until(shared_store, run_id, cut)
    part = view.load(shared_store, new)
    assert view.steps(part) == view.steps(frames)[:2]
    panels = {p.key: p for p in view.panels(part, shared_store.run(new), cut)}
    full = {p.key: p for p in view.panels(frames, run, cut)}
    for key in panels:
        assert json.loads(panels[key].figure.to_json())["data"] == \
            json.loads(full[key].figure.to_json())["data"]
