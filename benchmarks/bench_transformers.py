"""Transformer benchmarks (issue 25); prints numbers measured side by side in one run.

1. gpt_tiny on pydoc (batch 32, context 64), CPU: the session step (masks, hooks, records) over
   a plain dense step, interleaved on the same batch, for l1 and pgmpf (target <= 1.05). pgmpf
   is measured with its prior gradient mask in force: one epoch end (epoch 4 of 10) has pruned
   part of every block's heads and neurons first, so each step scales those structures' slices
   of the gradients (channel dropout drawn fresh) as a session mid-way does.
2. The compact gpt_tiny at 50 % of heads and 50 % of MLP neurons per block (lowest L2 norm over
   each structure's weights), physically removed: FLOPs and latency (batch 1 and 32) over the
   dense model, and the largest |masked - compact| output difference.

    python benchmarks/bench_transformers.py [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
import torch.nn.functional as F
from bench_core import interleaved

from pruneviz.config import SessionConfig
from pruneviz.data import load_dataset
from pruneviz.loop import Prepared, Session, make_optimizer
from pruneviz.methods import get_method, make_params
from pruneviz.metrics import count_flops, measure_latency, paired_ratio
from pruneviz.models import build_model
from pruneviz.store import Store
from pruneviz.transformers import (
    head_cols,
    head_rows,
    remove_heads,
    remove_neurons,
)

BATCH = 32


def prune_once(session: Session) -> str:
    """One PGMPF epoch end (epoch 4 of 10): part of every block's heads and neurons pruned, the
    gradient mask (lambda_e, dropout) in force for the steps that follow."""
    ctx = session.ctx
    ctx.epoch = 4
    session.method.end_of_epoch(ctx)
    m = session.method
    return (f"{int(m._pruned.sum())} of {m._pruned.numel()} heads and neurons pruned, "
            f"lambda_e {m.lam:.3f}")


def step_ratio(method: str, steps: int) -> tuple[float, float, float, str]:
    """Median session step / median plain step of gpt_tiny, interleaved on one batch."""
    torch.manual_seed(0)
    data = load_dataset("pydoc")
    config = SessionConfig(method=method, rate=0.5, model="gpt_tiny", dataset="pydoc",
                           batch_size=BATCH, epochs=10 if method == "pgmpf" else 1000,
                           device="cpu", start="scratch")
    cls = get_method(method)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        run_id = store.create_run(config)
        session = Session(Prepared(config, cls(make_params(cls, {})), data,
                                   build_model("gpt_tiny", data.input_shape, 256),
                                   torch.device("cpu")), store, run_id)
        session.begin()
        state = prune_once(session) if method == "pgmpf" else ""
        plain = build_model("gpt_tiny", data.input_shape, 256)
        opt = make_optimizer(plain, config)
        x, y = next(data.train_batches(0, 0, BATCH, torch.device("cpu")))

        def plain_step() -> None:
            loss = F.cross_entropy(plain(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss.item()
            opt.step()

        masked, dense = interleaved(session, plain_step, x, y, steps, warmup=3)
        session.finish("completed", None)
    return (statistics.median(masked) / statistics.median(dense), statistics.median(masked),
            statistics.median(dense), state)


@torch.no_grad()
def half_structures(model: torch.nn.Module) -> torch.nn.Module:
    """Zero the weaker half of each block's heads and MLP neurons (L2 norm over all of a
    structure's weights), in place: the masked model."""
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        norms = torch.stack([
            (attn.c_attn.weight[head_rows(attn, h)].square().sum()
             + attn.c_attn.bias[head_rows(attn, h)].square().sum()
             + attn.c_proj.weight[:, head_cols(attn, h)].square().sum()).sqrt()
            for h in range(attn.n_head)])
        for h in norms.argsort()[:attn.n_head // 2].tolist():
            attn.c_attn.weight[head_rows(attn, h)] = 0
            attn.c_attn.bias[head_rows(attn, h)] = 0
            attn.c_proj.weight[:, head_cols(attn, h)] = 0
        n = (mlp.c_fc.weight.square().sum(1) + mlp.c_fc.bias.square()
             + mlp.c_proj.weight.square().sum(0)).sqrt()
        drop = n.argsort()[:len(n) // 2]
        mlp.c_fc.weight[drop] = 0
        mlp.c_fc.bias[drop] = 0
        mlp.c_proj.weight[:, drop] = 0
    return model


def compact_of(masked: torch.nn.Module) -> torch.nn.Module:
    import copy

    small = copy.deepcopy(masked)
    for block in small.blocks:
        attn, mlp = block.attn, block.mlp
        remove_heads(attn, [h for h in range(attn.n_head)
                            if attn.c_attn.weight[head_rows(attn, h)].any()])
        remove_neurons(mlp, torch.nonzero(mlp.c_fc.weight.any(1)).flatten().tolist())
    return small


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for method in ("l1", "pgmpf"):
        ratio, m, d, state = step_ratio(method, args.steps)
        print(f"[step] {method} session step / plain dense step (gpt_tiny, batch {BATCH} x 64): "
              f"{ratio:.3f}  ({m * 1e3:.0f} ms vs {d * 1e3:.0f} ms; target <= 1.05)"
              + (f"; {state}" if state else ""))
    torch.manual_seed(0)
    masked = half_structures(build_model("gpt_tiny", (64,), 256)).eval()
    small = compact_of(masked).eval()
    x = torch.randint(0, 256, (4, 64))
    diff = (masked(x) - small(x)).abs().max().item()
    flops = count_flops(small, (64,)) / count_flops(masked, (64,))
    heads = [b.attn.n_head for b in small.blocks]
    neurons = [b.mlp.c_fc.out_features for b in small.blocks]
    print(f"[compact] 50% heads and neurons: heads per block {heads}, neurons {neurons}; "
          f"FLOPs compact/dense {flops:.3f}; max |masked - compact| {diff:.2e}")
    for batch in (1, 32):
        t = measure_latency({"dense": masked, "compact": small}, (64,), batch, budget_s=2.0)
        r = paired_ratio(t["compact"]["times"], t["dense"]["times"])
        print(f"[compact] latency batch {batch}: compact/dense {r:.3f} "
              f"({t['compact']['median_s'] * 1e3:.2f} ms vs {t['dense']['median_s'] * 1e3:.2f} "
              f"ms, {t['dense']['reps']} reps)")


if __name__ == "__main__":
    main()
