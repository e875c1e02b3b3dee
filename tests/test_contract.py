"""Every registered method honours the session contract (a new method is tested the day it is
registered): it completes a short digits session, records every step, ends at its target
sparsity with the pruned weights exactly zero, and its presets and schedule preview are valid."""

import dataclasses

import pandas as pd
import pytest
import torch

from pruneviz import session
from pruneviz.config import SessionConfig
from pruneviz.methods import apply_preset, load_all
from pruneviz.session import run_session

METHODS = sorted(load_all())
RATE = 0.5


@pytest.mark.parametrize("name", METHODS)
def test_method_runs_a_session_to_its_target(name, shared_store, fast_config, monkeypatch):
    """... and the masks it holds at the end (ctx.masks, before the saved file fills in masks
    derived from the weights) cover every prunable layer, fit their weights' shapes, and the
    weights they prune are exactly zero."""
    held = {}
    save = session._save_artifacts

    def capture(ctx, folder):
        held.update(masks=dict(ctx.masks), layers=[l.param for l in ctx.layers],
                    weights={k: v.detach().clone() for k, v in ctx.model.state_dict().items()})
        save(ctx, folder)

    monkeypatch.setattr(session, "_save_artifacts", capture)
    s = run_session(fast_config(method=name, rate=RATE, epochs=4), shared_store)
    assert s["status"] == "completed", s.get("error")
    loss = shared_store.scalars(s["run_id"], ["loss"])
    assert loss.step.tolist() == list(range(s["steps"]))
    assert s["final_accuracy"] > 0.5
    target = 0.0 if name == "dense" else RATE
    assert s["sparsity"] == pytest.approx(target, abs=0.05)
    masks, weights = held["masks"], held["weights"]
    assert set(held["layers"]) <= set(masks) or name == "dense"
    for key, mask in masks.items():
        assert mask.shape == weights[key].shape, key
        assert torch.all(weights[key][mask == 0] == 0), key


@pytest.mark.parametrize("name", METHODS)
def test_method_declares_params_presets_and_a_schedule(name):
    cls = load_all()[name]
    assert cls.summary and cls.kind in ("unstructured", "filter")
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    for preset in cls.presets:
        config = apply_preset(SessionConfig(method=name), preset)
        assert isinstance(config, SessionConfig)
    preview = cls.schedule(SessionConfig(method=name, epochs=10), cls.Params())
    assert isinstance(preview, pd.DataFrame) and {"epoch", "series", "value"} <= set(preview)
    assert len(preview) >= 2
