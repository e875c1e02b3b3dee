"""The SLR / ADMM internals view against the store it reads (short digits sessions)."""


import numpy as np
import plotly.graph_objects as go
import pytest

from pruneviz.config import SessionConfig
from pruneviz.methods.slr import view
from pruneviz.session import run_session
from tests.helpers import cancelled_run, copy_until

EPOCHS = 4


def config(**kw) -> SessionConfig:
    return SessionConfig(**{"dense_epochs": 3, "device": "cpu", "epochs": EPOCHS, "rate": 0.5,
                            **kw})


@pytest.fixture(scope="module")
def runs(shared_store):
    """One finished slr and admm run, and an slr run cancelled in its second epoch."""
    out = {}
    for method in ("slr", "admm"):
        summary = run_session(config(method=method), shared_store)
        out[method] = summary["run_id"]
    spe = shared_store.run(out["slr"])["total_steps"] // EPOCHS
    out["partial"] = cancelled_run(config(method="slr"), shared_store, spe + spe // 2)
    return out


def figures(store, run_id, step=None):
    frames = view.load(store, run_id)
    return {p.key: p.figure for p in view.panels(frames, store.run(run_id), step)}


def trace(fig, name):
    (t,) = [t for t in fig.data if t.name == name]
    return t


def test_steps_are_the_epoch_records(shared_store, runs):
    for run_id in runs.values():
        rows = shared_store.rows(run_id, "slr_epochs")
        evals = shared_store.scalars(run_id, ["test_accuracy"])
        got = view.steps(view.load(shared_store, run_id))
        assert got == sorted(set(rows.step) | set(evals.step)) and got == sorted(got)
    assert view.steps(view.load(shared_store, runs["slr"]))[0] == 0     # before training


def test_every_figure_passes_plotly_validation(shared_store, runs):
    for run_id in runs.values():
        frames = view.load(shared_store, run_id)
        for step in view.steps(frames):
            for p in view.panels(frames, shared_store.run(run_id), step):
                go.Figure(p.figure.to_dict())
                assert p.caption


def test_residuals_and_accuracies_are_the_recorded_ones(shared_store, runs):
    for run_id in (runs["slr"], runs["admm"]):
        rows = shared_store.rows(run_id, "slr_epochs")
        figs = figures(shared_store, run_id)
        t = trace(figs["slr.residuals"], "‖W − Z‖")
        assert list(t.x) == list(rows.step)
        np.testing.assert_allclose(t.y, rows.residual)
        np.testing.assert_allclose(trace(figs["slr.residuals"], "‖Λ‖").y, rows.lambda_norm)
        acc = figs["slr.accuracy"]
        np.testing.assert_allclose(trace(acc, "if hard-pruned now").y,
                                   rows.hard_prune_now_accuracy)
        soft = shared_store.scalars(run_id, ["test_accuracy"])
        np.testing.assert_allclose(trace(acc, "held-out (soft)").y, soft.value)
        hard = trace(acc, "hard prune")
        assert hard.y[0] == shared_store.run(run_id)["summary"]["hard_prune_accuracy"]
        loss = figs["slr.loss"]
        np.testing.assert_allclose(trace(loss, "penalty").y, rows.penalty.dropna())


def test_condition_strip_counts_the_passes(shared_store, runs):
    run = shared_store.run(runs["slr"])
    fig = figures(shared_store, runs["slr"])["slr.conditions"]
    passed = sum(len(t.x) for t in fig.data if t.name == "passed")
    assert passed == run["summary"]["cond1_passed"] + run["summary"]["cond2_passed"]
    assert len(trace(fig, "forced (k = 1)").x) == 1        # the first condition 1 check
    rows = shared_store.rows(runs["slr"], "slr_epochs")
    np.testing.assert_allclose(trace(fig, "step size s_k").y, rows.s)


def test_admm_has_no_condition_panel(shared_store, runs):
    assert "slr.conditions" not in figures(shared_store, runs["admm"])
    assert "slr.conditions" in figures(shared_store, runs["slr"])


def test_histogram_shows_the_recorded_counts_at_the_step(shared_store, runs):
    hist = shared_store.rows(runs["slr"], "slr_hist")
    step = sorted(set(hist.step))[1]
    fig = figures(shared_store, runs["slr"], step + 1)["slr.histogram"]
    here = hist[hist.step == step]
    for row in here.itertuples():
        ridge = trace(fig, row.layer)
        counts = np.asarray(ridge.customdata, dtype=float)
        # Each bin appears twice in the step outline; the two closing points are NaN.
        np.testing.assert_array_equal(counts[:-2:2], row.counts)
    cuts = trace(fig, "hard-prune cut ±min kept |w|")
    top = [x for x in cuts.x if x is not None and x > 0][0::2]
    np.testing.assert_allclose(top, here.threshold / here.hi)


def test_an_earlier_step_shows_nothing_recorded_after_it(shared_store, runs):
    frames = view.load(shared_store, runs["slr"])
    step = view.steps(frames)[2]
    for p in view.panels(frames, shared_store.run(runs["slr"]), step):
        for t in p.figure.data:
            xs = [x for x in np.atleast_1d(t.x if t.x is not None else []) if x is not None]
            if p.key != "slr.histogram":
                assert all(x <= step for x in xs), (p.key, t.name)
    hist = {p.key: p.figure for p in view.panels(frames, shared_store.run(runs["slr"]),
                                                  step + 1)}["slr.histogram"]
    assert hist.layout.title.text.endswith(f"step {step}")


def test_run_without_records_shows_waiting_panels(shared_store):
    run_id = shared_store.create_run(config(method="slr"))
    frames = view.load(shared_store, run_id)
    assert view.steps(frames) == []
    panels = view.panels(frames, shared_store.run(run_id), 0)
    assert panels
    for p in panels:
        go.Figure(p.figure.to_dict())
        assert not p.figure.data and "waiting" in p.figure.layout.annotations[0].text


def test_a_cancelled_run_shows_what_it_recorded(shared_store, runs):
    run = shared_store.run(runs["partial"])
    assert run["status"] == "interrupted"
    frames = view.load(shared_store, runs["partial"])
    recorded = sorted(set(shared_store.rows(runs["partial"], "slr_epochs").step))
    assert view.steps(frames) == recorded and 1 <= len(recorded) < EPOCHS + 1
    figs = {p.key: p.figure for p in view.panels(frames, run, run["step"])}
    assert list(trace(figs["slr.residuals"], "‖W − Z‖").x) == recorded


def test_overlay_draws_slr_and_admm_in_their_colours(shared_store, runs):
    both = [view.RunFrames(m, m, view.load(shared_store, runs[m])) for m in ("slr", "admm")]
    last = max(max(view.steps(r.frames)) for r in both)
    fig = view.accuracy_figure(both, last)
    go.Figure(fig.to_dict())
    soft = [t for t in fig.data if t.name.endswith("if hard-pruned now")]
    assert [t.name for t in soft] == ["slr · if hard-pruned now", "admm · if hard-pruned now"]
    assert soft[0].line.color != soft[1].line.color
    for r, t in zip(both, soft):
        np.testing.assert_allclose(t.y, r.frames["epochs"].hard_prune_now_accuracy)
    go.Figure(view.residual_figure(both, last).to_dict())
    go.Figure(view.loss_figure(both, last).to_dict())


def test_a_live_run_sees_every_new_epoch_end(shared_store, runs):
    """Replays a finished run's tables epoch by epoch into a fresh run, one transaction per
    epoch end as the session commits them: every load shows exactly what was written (the
    per-layer tables are cached between epoch ends)."""
    source = {t: shared_store.rows(runs["slr"], t) for t in ("slr_epochs", "slr_hist")}
    run_id = shared_store.create_run(config(method="slr"))
    after = -1
    for step in sorted(set(source["slr_epochs"].step)):
        copy_until(shared_store, runs["slr"], step, into=run_id, after=after)
        after = step
        for _ in range(2):          # the second load hits the cache
            frames = view.load(shared_store, run_id)
            assert view.steps(frames)[-1] == step
            assert list(frames["hist"].step.unique()) == sorted(
                set(source["slr_hist"].step[source["slr_hist"].step <= step]))
            fig = {p.key: p.figure for p in view.panels(frames, shared_store.run(run_id),
                                                         step)}["slr.histogram"]
            assert fig.layout.title.text.endswith(f"step {step}")
