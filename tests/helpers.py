"""Helpers several test modules share (import as `from tests.helpers import ...`)."""

import base64
import dataclasses
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from pruneviz import loop
from pruneviz.config import SessionConfig
from pruneviz.methods import apply_preset, family_module, load_all
from pruneviz.models import build_model
from pruneviz.records import FilterRow, LayerRow, Row, Scalar, Table, declared
from pruneviz.session import run_session
from pruneviz.store import ACTIVE


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Seeded non-trivial BatchNorm statistics and affine parameters, so a removed or zeroed
    channel's BN output is not already zero by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def records_between(store, run_id: str, after: int, upto: int) -> list:
    """Every record of `run_id` made after step `after` and up to step `upto`, as the session
    wrote them (scalars, layers, filters, method tables)."""

    def keep(s):
        return after < s <= upto

    records = [Scalar(r.step, r.epoch, r.key, r.value)
               for r in store.scalars(run_id).itertuples() if keep(r.step)]
    records += [LayerRow(r.step, r.epoch, r.layer, r.key, r.value)
                for r in store.layers(run_id).itertuples() if keep(r.step)]
    records += [FilterRow(r.step, r.epoch, r.layer, r.filter, r.key, r.value)
                for r in store.filters(run_id).itertuples() if keep(r.step)]
    for name in store.tables(run_id):
        rows = store.rows(run_id, name)
        for r in rows[(rows.step > after) & (rows.step <= upto)].to_dict("records"):
            data = {k: v for k, v in r.items() if k not in ("run_id", "step", "epoch")}
            records.append(Row(int(r["step"]), int(r["epoch"]), name, data))
    return records


def copy_until(store, run_id: str, step: int, into: str | None = None, after: int = -1) -> str:
    """A run holding the records of `run_id` made after `after` and up to `step`, written in one
    transaction (a new run unless `into` names one), like a session still training."""
    new = into
    if new is None:
        run = store.run(run_id)
        new = store.create_run(run["config"])
        store.start_run(new, run["total_steps"])
    store.write(new, records_between(store, run_id, after, step), step=step)
    return new


def cancelled_run(config, store, after_steps: int) -> str:
    """A session of `config` cancelled once it has trained `after_steps` steps, as a user's
    Cancel stops it (the run is kept, interrupted)."""
    cancel = threading.Event()

    def progress(done: int, total: int, phase: str) -> None:
        if phase == "session" and done >= after_steps:
            cancel.set()

    return run_session(config, store, progress=progress, cancel=cancel)["run_id"]


CONTRACT_RATE = 0.5


def check_session_contract(name: str, store, fast_config, monkeypatch) -> None:
    """Run `name` for 4 epochs and assert the session contract: completed, every step
    recorded, the target sparsity reached, the masks it holds at the end (ctx.masks, before the
    saved file fills in masks derived from the weights) cover every prunable layer it did not
    shrink physically, fit their weights' shapes and the weights they prune are exactly zero,
    every method table it wrote is declared in its family's records.py with those columns, and
    every scalar, layer, filter and summary key it wrote is declared."""
    held = {}
    save = loop._save_artifacts

    def capture(ctx, folder):
        dense = build_model(ctx.config.model, ctx.data.input_shape, ctx.data.num_classes)
        shapes = {k: v.shape for k, v in dense.state_dict().items()}
        held.update(masks=dict(ctx.masks), weights={k: v.detach().clone()
                                                    for k, v in ctx.model.state_dict().items()},
                    layers=[l.param for l in ctx.layers],
                    shrunk={l.param for l in ctx.layers
                            if l.module.weight.shape != shapes[l.param]})
        save(ctx, folder)

    monkeypatch.setattr(loop, "_save_artifacts", capture)
    s = run_session(fast_config(method=name, rate=CONTRACT_RATE, epochs=4), store)
    assert s["status"] == "completed", s.get("error")
    run_id = s["run_id"]
    assert store.scalars(run_id, ["loss"]).step.tolist() == list(range(s["steps"]))
    assert s["final_accuracy"] > 0.5
    target = 0.0 if name == "dense" else CONTRACT_RATE
    assert s["sparsity"] == pytest.approx(target, abs=0.05)
    masks, weights = held["masks"], held["weights"]
    if name != "dense":     # every prunable layer is held by a mask or physically shrunk
        assert set(held["layers"]) <= set(masks) | held["shrunk"]
    for key, mask in masks.items():
        assert mask.shape == weights[key].shape, key
        assert torch.all(weights[key][mask == 0] == 0), key
    declared = declared_tables(load_all()[name])
    for table in store.tables(run_id):
        assert table in declared, f"{name} writes table {table}, which no records.py declares"
        columns = set(store.rows(run_id, table).columns) - {"run_id", "step", "epoch"}
        assert columns <= set(declared[table].columns), (table, columns)
    assert_keys_declared(store, run_id, s)


def assert_keys_declared(store, run_id: str, summary: dict) -> None:
    """Every scalar, layer, filter and summary key the run wrote is declared in a records.py
    (pruneviz/records.py for the session's, the family's for a method's)."""
    for kind, frame in (("scalar", store.scalars(run_id)), ("layer", store.layers(run_id)),
                        ("filter", store.filters(run_id))):
        undeclared = set(frame.key) - declared(kind)
        assert not undeclared, f"{run_id} wrote undeclared {kind} keys {sorted(undeclared)}"
    undeclared = set(summary) - declared("summary")
    assert not undeclared, f"{run_id}'s summary has undeclared keys {sorted(undeclared)}"


def declared_tables(cls) -> dict:
    """The method tables the family of `cls` declares in its records.py (none for one-shot)."""
    records = family_module(cls, "records")
    return {} if records is None else {t.name: t for t in vars(records).values()
                                       if isinstance(t, Table)}


def check_declarations(name: str) -> None:
    """`name` has a summary and kind, help text on every parameter, valid presets and a
    schedule preview."""
    cls = load_all()[name]
    assert cls.summary and cls.kind in ("unstructured", "filter")
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    for preset in cls.presets:
        assert isinstance(apply_preset(SessionConfig(method=name), preset), SessionConfig)
    preview = cls.schedule(SessionConfig(method=name, epochs=10), cls.Params())
    assert isinstance(preview, pd.DataFrame) and {"epoch", "series", "value"} <= set(preview)
    assert len(preview) >= 2


def recorded_run(store, config, *, steps: int = 10, accuracy: float = 0.8,
                 dense_accuracy: float = 0.9, status: str = "completed",
                 extra: dict | None = None) -> str:
    """A run of `config` with records as a session writes them (loss, lr and sparsity every
    step, held-out accuracy at the end, one per-layer snapshot, the `extra` scalars every
    step) and a summary; without the cost of training it."""
    run_id = store.create_run(config)
    store.start_run(run_id, steps)
    records = [Scalar(s, 0, k, v) for s in range(steps)
               for k, v in {"loss": 2.0 - s / steps, "lr": 0.1, "sparsity": config.rate,
                            **(extra or {})}.items()]
    records += [Scalar(steps - 1, 0, "test_accuracy", accuracy),
                Scalar(0, 0, "dense_accuracy", dense_accuracy)]
    records += [LayerRow(steps - 1, 0, layer, "sparsity", config.rate)
                for layer in ("conv1", "conv2", "fc")]
    store.write(run_id, records, step=steps - 1)
    store.finish_run(run_id, status, summary={
        "final_accuracy": accuracy, "dense_accuracy": dense_accuracy, "sparsity": config.rate,
        "flops_effective": 1e6 * (1 - config.rate), "wall_s": 1.0})
    return run_id


def wait_done(store, run_ids, timeout: float = 180.0) -> pd.DataFrame:
    """The rows of `run_ids` once none of them is queued or running (fails after `timeout`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = store.runs()
        if not runs[runs.run_id.isin(run_ids)].status.isin(ACTIVE).any():
            return runs.set_index("run_id").loc[run_ids]
        time.sleep(0.2)
    raise AssertionError(f"runs still active after {timeout} s")


def decode_plotly(obj):
    """plotly's JSON with its base64 typed arrays ({"dtype", "bdata"}) back as lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            return np.frombuffer(base64.b64decode(obj["bdata"]), obj["dtype"]).tolist()
        return {k: decode_plotly(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_plotly(v) for v in obj]
    return obj


# The transformers' contract: each on its own data, a budget of a few steps.
TRANSFORMER_DATA = {"gpt_tiny": "pydoc", "vit_tiny": "digits"}
TINY = dict(dense_epochs=1, epochs=3, max_steps_per_epoch=3, batch_size=16, eval_limit=16,
            device="cpu")


def held_hidden(model: str) -> int:
    """MLP hidden width of a transformer's blocks."""
    return {"gpt_tiny": 256, "vit_tiny": 128}[model]


def check_transformer_contract(name: str, model: str, store) -> None:
    """`name` completes a short session on `model` with every step recorded, prunes only the
    linear layers of the blocks to its target (embeddings, norms, the patch embedding and the
    head stay dense), and its held masks' weights are exactly zero; every filter method prunes
    heads and MLP neurons (its structures there), half of each block's, removed physically by
    the compaction."""
    config = SessionConfig(method=name, rate=CONTRACT_RATE, model=model,
                           dataset=TRANSFORMER_DATA[model], **TINY)
    cls = load_all()[name]
    assert cls.kind != "filter" or cls.structures, f"{name} prunes no transformer structure"
    held = {}
    save = loop._save_artifacts

    def capture(ctx, folder):
        held.update(masks=dict(ctx.masks), layers=[l.param for l in ctx.layers],
                    weights={k: v.detach().clone() for k, v in ctx.model.state_dict().items()})
        save(ctx, folder)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "_save_artifacts", capture)
    try:
        s = run_session(config, store)
    finally:
        mp.undo()
    assert s["status"] == "completed", s.get("error")
    assert store.scalars(s["run_id"], ["loss"]).step.tolist() == list(range(s["steps"]))
    target = 0.0 if name == "dense" else CONTRACT_RATE
    assert s["sparsity"] == pytest.approx(target, abs=0.05)
    # the classifier / LM head only where the method's own last_linear asks for it (GMP's
    # family defaults to it, as on the CNNs)
    head = {"gpt_tiny": "lm_head.weight", "vit_tiny": "head.weight"}[model]
    blocks = [p for p in held["layers"] if p != head]
    assert all(p.startswith("blocks.") and p.endswith(("c_attn.weight", "c_proj.weight",
                                                       "c_fc.weight")) for p in blocks)
    # head importance removes heads: its layers are each block's attention (c_attn, c_proj)
    assert len(blocks) == (4 * 2 if name == "head_importance" else 4 * 4)
    assert (head in held["layers"]) == bool(getattr(load_all()[name].Params(), "last_linear",
                                                    False))
    for key, w in held["weights"].items():
        if key.endswith("weight") and key not in held["layers"] and w.dim() >= 2:
            assert torch.count_nonzero(w) == w.numel(), f"{name} pruned {key}"
    for key, mask in held["masks"].items():
        assert torch.all(held["weights"][key][mask == 0] == 0), key
    if model == "gpt_tiny":
        assert s["final_perplexity"] > 1.0
    if cls.structures:      # half the heads and neurons of every block, physically removed
        assert (s["heads_removed"], s["neurons_removed"]) == (4 * 2, 4 * held_hidden(model) // 2)
