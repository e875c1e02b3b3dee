"""GMP: the cubic schedule reaches its target exactly at T_end; pruned weights never regrow."""

import math

import torch

from pruneviz.methods.fggp import prune_smallest, t_end
from pruneviz.session import run_session


def test_gmp_hits_its_target_at_t_end(shared_store, fast_config):
    s = run_session(fast_config(method="gmp", rate=0.9, epochs=5), shared_store)
    steps = shared_store.rows(s["run_id"], "prune_steps")
    assert steps.t.iloc[-1] == t_end(s["steps"], 0.8)
    n = steps.remain.iloc[0]
    assert steps.achieved_density.iloc[-1] == 1 - math.floor(n * 0.9) / n
    assert (steps.achieved_density.diff().dropna() <= 0).all()
    assert abs(steps.achieved_density - steps.target_density).max() <= 1 / n + 1e-12
    target = shared_store.scalars(s["run_id"], ["target_sparsity"])
    assert target.value.iloc[-1] == 0.9


def test_prune_smallest_never_regrows_and_prunes_exactly_k():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(50, generator=g), "b": torch.rand(30, generator=g)}
    masks = {k: torch.ones_like(v) for k, v in scores.items()}
    for k in (10, 15, 20):
        new = prune_smallest(scores, masks, k)
        for name in scores:
            assert torch.all(new[name] <= masks[name])     # nothing regrows
        before = sum(m.sum() for m in masks.values())
        assert before - sum(m.sum() for m in new.values()) == k
        # the pruned ones are the k smallest active scores
        active = torch.cat([torch.where(masks[n] > 0, scores[n], torch.inf) for n in scores])
        newly = torch.cat([(masks[n] - new[n]) for n in scores]).bool()
        assert active[newly].max() <= active[~newly & torch.isfinite(active)].min()
        masks = new
