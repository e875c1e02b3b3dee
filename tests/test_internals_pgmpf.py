"""The PGMPF / SFP / ASFP internals view against the store it reads (the oracle)."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from pruneviz.config import SessionConfig
from pruneviz.methods.pgmpf import view
from pruneviz.session import run_session
from tests.helpers import copy_until

METHODS = ("pgmpf", "sfp", "asfp")
EPOCH_AXIS = ("pgmpf.history", "pgmpf.flips", "pgmpf.schedules", "pgmpf.shock")


@pytest.fixture(scope="module")
def runs(shared_store):
    """One finished 4-epoch digits session per method, with its loaded frames."""
    out = {}
    for method in METHODS:
        config = SessionConfig(method=method, epochs=4, rate=0.5, dense_epochs=3,
                               device="cpu")
        run_id = run_session(config, shared_store)["run_id"]
        out[method] = (run_id, shared_store.run(run_id), view.load(shared_store, run_id))
    return out


def by_name(fig: go.Figure, name: str):
    found = [t for t in fig.data if t.name == name]
    assert found, f"no trace {name!r} in {[t.name for t in fig.data]}"
    return found[0]


def panels_at(runs, method, step=None):
    run_id, run, frames = runs[method]
    step = view.steps(frames)[-1] if step is None else step
    return {p.key: p for p in view.panels(frames, run, step)}


def recorded(trace) -> bool:
    """Traces drawn from records (not the planned schedule or threshold markers)."""
    return trace.name is not None and not trace.name.startswith(("planned", "from "))


def test_steps_are_the_epoch_ends(runs, shared_store):
    for method in METHODS:
        run_id, _, frames = runs[method]
        updates = shared_store.rows(run_id, "mask_updates")
        assert view.steps(frames) == sorted(updates.step.tolist())
        assert len(view.steps(frames)) == 4


def test_panels_have_captions_and_unique_keys(runs):
    for method in METHODS:
        panels = list(panels_at(runs, method).values())
        assert 4 <= len(panels) <= 6
        assert len({p.key for p in panels}) == len(panels)
        assert all(p.caption.endswith(".") and len(p.caption) > 40 for p in panels)


def test_every_figure_passes_plotly_validation_at_every_step(runs):
    for method in METHODS:
        _, run, frames = runs[method]
        for step in [0, *view.steps(frames)]:
            for p in view.panels(frames, run, step):
                go.Figure(p.figure.to_dict())


def test_heatmap_shows_the_recorded_norms_and_mask_at_the_step(runs, shared_store):
    run_id, _, frames = runs["pgmpf"]
    for step in view.steps(frames):
        fig = panels_at(runs, "pgmpf", step)["pgmpf.norms"].figure
        kept, pruned = by_name(fig, "kept"), by_name(fig, "pruned")
        rec = shared_store.filters(run_id, ["l2_norm", "mask"])
        rec = rec[rec.step == step].pivot_table(index=["layer", "filter"], columns="key",
                                                values="value")
        layers = list(kept.y)
        for (layer, f), row in rec.iterrows():
            i = layers.index(layer)
            assert kept.customdata[i][f] == pytest.approx(row.l2_norm)
            assert np.isnan(kept.z[i][f]) == (row["mask"] == 0)
            assert np.isnan(pruned.z[i][f]) == (row["mask"] == 1)
        n_pruned = int((rec["mask"] == 0).sum())
        assert f"({n_pruned} of {len(rec)} filters pruned)" in fig.layout.title.text


def test_schedules_are_the_recorded_values(runs, shared_store):
    run_id, _, _ = runs["pgmpf"]
    fig = panels_at(runs, "pgmpf")["pgmpf.schedules"].figure
    updates = shared_store.rows(run_id, "mask_updates")
    for col, name in (("r", "keep rate r_e"), ("lambda", "λ_e (gradient suppression)"),
                      ("alpha", "α_e (weight-decay mask)")):
        trace = by_name(fig, name)
        assert list(trace.x) == updates.epoch.tolist()
        np.testing.assert_allclose(trace.y, updates[col].to_numpy(float))
    # the 0.8 E / 0.9 E thresholds of a dense start (E = 4: at 3.2 and 3.6)
    assert list(by_name(fig, "from 0.8 E: α = 0, λ = 1").x) == pytest.approx([3.2, 3.2])
    assert list(by_name(fig, "from 0.9 E: r_e = r").x) == pytest.approx([3.6, 3.6])


def test_sfp_shows_only_its_constant_keep_rate(runs):
    fig = panels_at(runs, "sfp")["pgmpf.schedules"].figure
    names = [t.name for t in fig.data if recorded(t)]
    assert names == ["keep rate r_e"]
    assert set(by_name(fig, "keep rate r_e").y) == {0.5}


def test_gradient_norms_and_shock_pairs_are_the_recorded_scalars(runs, shared_store):
    run_id, _, _ = runs["pgmpf"]
    panels = panels_at(runs, "pgmpf")
    scalars = shared_store.scalars(run_id)
    for key, name in (("grad_norm_pruned_before", "pruned, before mask"),
                      ("grad_norm_pruned_after", "pruned, after mask"),
                      ("grad_norm_kept_before", "kept, before mask")):
        want = scalars[scalars.key == key]
        trace = by_name(panels["pgmpf.grads"].figure, name)
        assert list(trace.x) == want.step.tolist()
        np.testing.assert_allclose(trace.y, want.value.to_numpy())
    shock = panels["pgmpf.shock"].figure
    for key, name in (("accuracy_before_decay", "before the decay mask"),
                      ("accuracy_after_decay", "after the decay mask")):
        want = scalars[scalars.key == key]
        trace = by_name(shock, name)
        assert list(trace.x) == want.epoch.tolist()
        np.testing.assert_allclose(trace.y, want.value.to_numpy())


def test_the_mask_suppresses_pruned_gradients_only_in_pgmpf(runs, shared_store):
    """The oracle is the method: a pruned filter's gradient is scaled by 1 - lambda_e or 0, so
    after the mask the pruned norm is at most (1 - lambda_e) of its value before; SFP has no
    mask, so its before and after lines are the same."""
    run_id, _, _ = runs["pgmpf"]
    pg = panels_at(runs, "pgmpf")["pgmpf.grads"].figure
    before, after = by_name(pg, "pruned, before mask"), by_name(pg, "pruned, after mask")
    scalars = shared_store.scalars(run_id, ["grad_norm_pruned_after"])
    updates = shared_store.rows(run_id, "mask_updates").set_index("epoch")
    lam = updates["lambda"].reindex(scalars.epoch.to_numpy() - 1).to_numpy()  # set last epoch
    assert (np.asarray(after.y) <= (1 - lam) * np.asarray(before.y) + 1e-9).all()
    assert sum(after.y) < 0.5 * sum(before.y)
    sfp = panels_at(runs, "sfp")["pgmpf.grads"].figure
    np.testing.assert_allclose(by_name(sfp, "pruned, after mask").y,
                               by_name(sfp, "pruned, before mask").y)


def test_flips_are_the_recorded_layer_counts(runs, shared_store):
    run_id, _, _ = runs["asfp"]
    fig = panels_at(runs, "asfp")["pgmpf.flips"].figure
    layers = shared_store.layers(run_id, ["mask_flips", "filters_revived"])
    per = layers.pivot_table(index="epoch", columns="key", values="value", aggfunc="sum")
    np.testing.assert_allclose(by_name(fig, "revived").y, per.filters_revived)
    np.testing.assert_allclose(by_name(fig, "pruned anew").y,
                               per.mask_flips - per.filters_revived)
    updates = shared_store.rows(run_id, "mask_updates")
    np.testing.assert_allclose(by_name(fig, "pruned filters").y, updates.pruned)


def test_an_earlier_step_shows_nothing_recorded_after_it(runs):
    for method in METHODS:
        _, _, frames = runs[method]
        step = view.steps(frames)[1]
        epoch = int(frames["updates"].set_index("step").epoch[step])
        panels = panels_at(runs, method, step)
        assert f"after epoch {epoch} " in panels["pgmpf.norms"].figure.layout.title.text
        for key, p in panels.items():
            limit = epoch if key in EPOCH_AXIS else step
            for t in p.figure.data:
                if key == "pgmpf.norms" or not recorded(t):
                    continue
                x = np.asarray(t.x, dtype=float)
                assert np.nanmax(x) <= limit, (method, key, t.name)


def test_a_run_without_records_waits(runs, shared_store):
    _, run, _ = runs["pgmpf"]
    new = shared_store.create_run(run["config"])
    frames = view.load(shared_store, new)
    assert view.steps(frames) == []
    panels = view.panels(frames, shared_store.run(new), 0)
    assert len(panels) == len(panels_at(runs, "pgmpf"))
    for p in panels:
        go.Figure(p.figure.to_dict())
    assert "waiting" in str(panels[0].figure.layout.annotations[0].text)


def test_a_partial_run_shows_what_it_recorded_so_far(runs, shared_store):
    run_id, _, frames = runs["pgmpf"]
    cut = view.steps(frames)[1] + 3          # mid-epoch: some gradient samples, two mask updates
    new = copy_until(shared_store, run_id, cut)
    part = view.load(shared_store, new)
    assert view.steps(part) == view.steps(frames)[:2]
    panels = {p.key: p for p in view.panels(part, shared_store.run(new), cut)}
    grads = by_name(panels["pgmpf.grads"].figure, "kept, before mask")
    assert max(grads.x) <= cut
    full = {p.key: p for p in view.panels(frames, runs["pgmpf"][1], cut)}
    for key in panels:             # a partial store draws what the full one drew at that step
        assert json.loads(panels[key].figure.to_json())["data"] == \
            json.loads(full[key].figure.to_json())["data"]


def test_a_live_run_is_redrawn_with_its_new_epochs(runs, shared_store):
    """The per-filter frames are cached between redraws; a new epoch's records replace them."""
    run_id, _, frames = runs["pgmpf"]
    cut = view.steps(frames)[1]
    live = copy_until(shared_store, run_id, cut)
    assert view.steps(view.load(shared_store, live)) == view.steps(frames)[:2]
    copy_until(shared_store, run_id, view.steps(frames)[-1], into=live, after=cut)
    again = view.load(shared_store, live)
    assert view.steps(again) == view.steps(frames)
    assert len(again["filters"]) == len(frames["filters"])
