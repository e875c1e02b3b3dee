"""The FGGP / GraNet / GMP internals view against the store it reads (short digits sessions)."""


import numpy as np
import plotly.graph_objects as go
import pytest

from pruneviz.config import SessionConfig
from pruneviz.methods.fggp import view
from pruneviz.session import run_session
from tests.helpers import cancelled_run, copy_until

EPOCHS = 4


def config(**kw) -> SessionConfig:
    return SessionConfig(**{"dense_epochs": 3, "device": "cpu", "epochs": EPOCHS, "rate": 0.5,
                            **kw})


@pytest.fixture(scope="module")
def runs(shared_store):
    """One finished fggp, granet and gmp run, and an fggp run cancelled in its second epoch."""
    out = {m: run_session(config(method=m), shared_store)["run_id"]
           for m in ("fggp", "granet", "gmp")}
    spe = shared_store.run(out["fggp"])["total_steps"] // EPOCHS
    out["partial"] = cancelled_run(config(method="fggp"), shared_store, spe + spe // 2)
    return out


def figures(store, run_id, step=None):
    frames = view.load(store, run_id)
    return {p.key: p.figure for p in view.panels(frames, store.run(run_id), step)}


def trace(fig, name):
    (t,) = [t for t in fig.data if t.name == name]
    return t


def test_steps_are_the_pruning_steps(shared_store, runs):
    for run_id in runs.values():
        prune = shared_store.rows(run_id, "prune_steps")
        got = view.steps(view.load(shared_store, run_id))
        assert got == sorted(set(prune.step)) and len(got) > 10


def test_every_figure_passes_plotly_validation(shared_store, runs):
    for run_id in runs.values():
        frames = view.load(shared_store, run_id)
        s = view.steps(frames)
        for step in (s[0], s[1], s[len(s) // 2], s[-1], s[-1] + 1000):
            for p in view.panels(frames, shared_store.run(run_id), step):
                go.Figure(p.figure.to_dict())
                assert p.caption


def test_panels_per_method(shared_store, runs):
    assert list(figures(shared_store, runs["gmp"])) == ["fggp.density", "fggp.layers"]
    for m in ("fggp", "granet"):
        assert list(figures(shared_store, runs[m])) == ["fggp.scatter", "fggp.layers",
                                                        "fggp.density", "fggp.overlap"]


def test_density_is_the_recorded_one(shared_store, runs):
    for run_id in (runs["fggp"], runs["gmp"]):
        prune = shared_store.rows(run_id, "prune_steps")
        fig = figures(shared_store, run_id)["fggp.density"]
        achieved = trace(fig, "achieved")
        assert list(achieved.x) == list(prune.step)
        np.testing.assert_allclose(achieved.y, prune.achieved_density)
        np.testing.assert_allclose(trace(fig, "target").y, prune.target_density)
        np.testing.assert_allclose(trace(fig, "weights removed").y, prune.pruned)
        # the schedule ahead ends at the run's final density
        assert trace(fig, "schedule ahead").y[-1] == pytest.approx(0.5)


def test_scatter_is_the_selection_at_or_before_the_step(shared_store, runs):
    for m in ("fggp", "granet"):
        sel = shared_store.rows(runs[m], "fggp_steps")
        pts = shared_store.rows(runs[m], "fggp_scatter")
        # after the last pruning step (this short run prunes at every step until T_end)
        step = int(sel.step.iloc[-1])
        last = shared_store.run(runs[m])["total_steps"] - 1
        assert last > step
        fig = figures(shared_store, runs[m], last)["fggp.scatter"]
        here = pts[pts.step == step]
        drawn = [t for t in fig.data if t.mode == "markers"]
        assert sum(len(t.x) for t in drawn) == len(here)
        for t in drawn:
            raw = np.asarray(t.customdata, dtype=float)
            outcome = t.hovertemplate.split("<extra>")[1].split("</extra>")[0]
            mine = here[here.outcome == outcome]
            np.testing.assert_allclose(raw[:, 0], mine.g)
            np.testing.assert_allclose(raw[:, 1], mine.w)
        row = sel[sel.step == step].iloc[0]
        assert fig.layout.title.text.startswith(f"Step {step}: {row.pruned} cut")
        mag = trace(fig, "magnitude cut (max |w| cut)")
        assert set(mag.y) == {row.mag_cut}
        grad = [t for t in fig.data if t.name in ("gradient cut",
                                                   "regrowth cut (min |g| regrown)")]
        assert len(grad) == 1 and set(grad[0].x) == {row.grad_cut}


def test_fggp_outcomes_respect_the_cuts(shared_store, runs):
    """Pruned points lie inside both cuts, candidates left of the gradient cut."""
    fig = figures(shared_store, runs["fggp"])["fggp.scatter"]
    grad = trace(fig, "gradient cut").x[0]
    mag = trace(fig, "magnitude cut (max |w| cut)").y[0]
    for t in fig.data:
        raw = np.asarray(t.customdata, dtype=float) if t.customdata is not None else None
        if t.name.startswith("pruned"):
            assert (raw[:, 1] <= mag * 1.001).all() and (raw[:, 0] <= grad * 1.001).all()
        if t.name.startswith("candidate"):
            assert (raw[:, 0] <= grad * 1.001).all()


def test_overlap_is_the_recorded_jaccard(shared_store, runs):
    for m in ("fggp", "granet"):
        sel = shared_store.rows(runs[m], "fggp_steps")
        fig = figures(shared_store, runs[m])["fggp.overlap"]
        np.testing.assert_allclose(trace(fig, "overlap with GMP's choice").y, sel.jaccard)
    granet = shared_store.rows(runs["granet"], "fggp_steps")
    fig = figures(shared_store, runs["granet"])["fggp.overlap"]
    np.testing.assert_allclose(trace(fig, "regrowth fraction c(t)").y, granet.regrow_fraction)


def test_layer_heatmap_is_the_recorded_density(shared_store, runs):
    layers = shared_store.layers(runs["fggp"], ["density"])
    step = sorted(set(layers.step))[5]
    (heat,) = figures(shared_store, runs["fggp"], step)["fggp.layers"].data
    assert max(heat.x) == step
    z = np.asarray(heat.z, dtype=float)
    for i, layer in enumerate(heat.y):
        mine = layers[(layers.layer == layer) & (layers.step <= step)]
        np.testing.assert_allclose(z[i], mine.value)


def test_an_earlier_step_shows_nothing_recorded_after_it(shared_store, runs):
    for run_id in (runs["fggp"], runs["granet"]):
        frames = view.load(shared_store, run_id)
        step = view.steps(frames)[3]
        for p in view.panels(frames, shared_store.run(run_id), step):
            if p.key == "fggp.scatter":      # x is |g| there; its step is in the title
                assert p.figure.layout.title.text.startswith(f"Step {step}:")
                continue
            for t in p.figure.data:
                if t.name == "schedule ahead":
                    continue
                assert max(np.asarray(t.x, dtype=float)) <= step, (p.key, t.name)


def test_run_without_records_shows_waiting_panels(shared_store):
    for m in ("fggp", "gmp"):
        run_id = shared_store.create_run(config(method=m))
        frames = view.load(shared_store, run_id)
        assert view.steps(frames) == []
        for p in view.panels(frames, shared_store.run(run_id), 0):
            go.Figure(p.figure.to_dict())
            assert not p.figure.data and "waiting" in p.figure.layout.annotations[0].text


def test_a_cancelled_run_shows_what_it_recorded(shared_store, runs):
    run = shared_store.run(runs["partial"])
    assert run["status"] == "interrupted"
    recorded = sorted(set(shared_store.rows(runs["partial"], "prune_steps").step))
    full = view.steps(view.load(shared_store, runs["fggp"]))
    frames = view.load(shared_store, runs["partial"])
    assert view.steps(frames) == recorded and 0 < len(recorded) < len(full)
    figs = {p.key: p.figure for p in view.panels(frames, run, run["step"])}
    assert list(trace(figs["fggp.density"], "achieved").x) == recorded


def test_a_live_run_sees_every_new_pruning_step(shared_store, runs):
    """Replays a finished run pruning step by pruning step into a fresh run (one transaction
    each, as the session commits): every load shows that step's scatter (the scatter and
    per-layer records are cached between pruning steps)."""
    source = {t: shared_store.rows(runs["granet"], t) for t in ("prune_steps", "fggp_scatter")}
    run_id = shared_store.create_run(config(method="granet"))
    after = -1
    for step in sorted(set(source["prune_steps"].step))[:12]:
        copy_until(shared_store, runs["granet"], step, into=run_id, after=after)
        after = step
        for _ in range(2):          # the second load hits the cache
            frames = view.load(shared_store, run_id)
            assert view.steps(frames)[-1] == step
            fig = {p.key: p.figure for p in view.panels(frames, shared_store.run(run_id),
                                                         step)}["fggp.scatter"]
            assert fig.layout.title.text.startswith(f"Step {step}:")
            drawn = sum(len(t.x) for t in fig.data if t.mode == "markers")
            assert drawn == (source["fggp_scatter"].step == step).sum()
