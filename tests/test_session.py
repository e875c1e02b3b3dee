"""The session loop: masks hold, seeds reproduce, records stream, runs end in the right state."""

import threading

import pytest
import torch

from pruneviz.session import run_session

TIMING = {"step_time", "wall_time"}


def _records(store, run_id):
    df = store.scalars(run_id)
    return df[~df.key.isin(TIMING)].drop(columns="run_id").reset_index(drop=True)


def test_masked_weights_stay_zero_with_momentum_and_weight_decay(shared_store, fast_config):
    config = fast_config(method="l1", rate=0.7, momentum=0.9, weight_decay=5e-3, lr=0.05)
    summary = run_session(config, shared_store)
    assert summary["status"] == "completed"
    weights = torch.load(shared_store.run_dir(summary["run_id"]) / "weights.pt", weights_only=True)
    masks = torch.load(shared_store.run_dir(summary["run_id"]) / "masks.pt", weights_only=True)
    for name, mask in masks.items():
        assert torch.all(weights[name][~mask] == 0), name
    assert summary["sparsity"] == pytest.approx(0.7, abs=1e-3)


def test_same_seed_gives_identical_records(shared_store, fast_config):
    config = fast_config(method="gmp", rate=0.8)
    a = run_session(config, shared_store)["run_id"]
    b = run_session(config, shared_store)["run_id"]
    ra, rb = _records(shared_store, a), _records(shared_store, b)
    assert len(ra) > 50
    assert ra.equals(rb)
    assert shared_store.layers(a).drop(columns="run_id").equals(
        shared_store.layers(b).drop(columns="run_id"))


def test_summary_reports_dense_pruned_and_final_accuracy(shared_store, fast_config):
    s = run_session(fast_config(method="global_l1", rate=0.9), shared_store)
    for key in ("dense_accuracy", "pruned_accuracy", "final_accuracy", "flops_dense",
                "flops_effective", "params_total", "params_nonzero", "wall_s"):
        assert key in s, key
    assert s["dense_accuracy"] > 0.8
    assert s["flops_effective"] < s["flops_dense"]
    assert s["params_nonzero"] < s["params_total"]
    run = shared_store.run(s["run_id"])
    assert run["status"] == "completed" and run["summary"]["final_accuracy"] == s["final_accuracy"]


def test_every_step_is_recorded(shared_store, fast_config):
    s = run_session(fast_config(method="l1", rate=0.5), shared_store)
    loss = shared_store.scalars(s["run_id"], ["loss"])
    assert loss.step.tolist() == list(range(s["steps"]))
    acc = shared_store.scalars(s["run_id"], ["test_accuracy"])
    assert len(acc) == 2      # one evaluation per epoch


def test_nan_loss_ends_the_run_as_diverged(shared_store, fast_config):
    s = run_session(fast_config(method="l1", model="mlp", lr=10.0, momentum=0.99, nesterov=False,
                                start="scratch"), shared_store)
    assert s["status"] == "diverged"
    assert "lower the learning rate" in shared_store.run(s["run_id"])["error"]


def test_cancel_stops_within_a_step_and_keeps_the_run(shared_store, fast_config):
    cancel = threading.Event()
    seen = []

    def progress(done, total, phase):
        seen.append(done)
        if phase == "session" and done == 5:
            cancel.set()

    s = run_session(fast_config(method="l1", epochs=50), shared_store, progress=progress,
                    cancel=cancel)
    assert s["status"] == "interrupted"
    assert s["steps"] == 5
    run = shared_store.run(s["run_id"])
    assert run["status"] == "interrupted"
    assert len(shared_store.scalars(s["run_id"], ["loss"])) == 5
