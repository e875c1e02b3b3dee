"""PGP benchmarks (issue 5); prints ratios measured in one run.

1. Epoch wall time vs FLOPs as a PGP session shrinks ResNet-20 (CPU, synthetic CIFAR-shaped
   data): the epoch-time ratio last / first should be within 1.15x of the FLOPs ratio. The
   session's epoch times are necessarily taken at different moments; a second measurement
   interleaves training steps of the dense and the final shrunk network, so machine load hits
   both alike.
2. Digits, P = 0.5, interactive preset: dense, pruned and final accuracy of pgp, rpgp and psfp,
   and the parameters / FLOPs of the physically compacted final network.

    python benchmarks/bench_pgp.py [--steps 8] [--batch 64] [--interleaved 15]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_core import synthetic_cifar

from pruneviz.config import SessionConfig
from pruneviz.loop import Prepared, Session
from pruneviz.methods import apply_preset, get_method, make_params
from pruneviz.models import build_model
from pruneviz.session import run_session
from pruneviz.store import Store


def shrinking_session(steps: int, batch: int) -> tuple[dict, Session, Store, str]:
    """A PGP session on ResNet-20: 4 epochs, the first 2 prune, the last 2 fine-tune."""
    torch.manual_seed(0)
    data = synthetic_cifar(steps * batch)
    config = SessionConfig(method="pgp", rate=0.5, model="resnet20", epochs=4, batch_size=batch,
                           max_steps_per_epoch=steps, device="cpu", start="scratch",
                           eval_limit=128, params={"prune_epochs": 2})
    cls = get_method("pgp")
    store = Store(tempfile.mkdtemp())
    run_id = store.create_run(config)
    session = Session(Prepared(config, cls(make_params(cls, config.params)), data,
                               build_model("resnet20", (3, 32, 32), 10), torch.device("cpu")),
                      store, run_id)
    return session.run(), session, store, run_id


def interleaved(dense: torch.nn.Module, small: torch.nn.Module, x: torch.Tensor,
                y: torch.Tensor, n: int) -> tuple[float, float]:
    """Median training-step seconds of two networks, alternating steps (3 warm-up steps)."""
    models = {"dense": dense, "small": small}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                               weight_decay=5e-4) for k, m in models.items()}
    times: dict[str, list[float]] = {"dense": [], "small": []}
    for i in range(n + 3):
        for k, m in models.items():
            t = time.perf_counter()
            loss = F.cross_entropy(m(x), y)
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            if i >= 3:
                times[k].append(time.perf_counter() - t)
    return statistics.median(times["dense"]), statistics.median(times["small"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--interleaved", type=int, default=15)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    summary, session, store, run_id = shrinking_session(args.steps, args.batch)
    assert summary["status"] == "completed", summary.get("error")
    epochs = store.rows(run_id, "pgp_epochs")
    steps = store.scalars(run_id, ["step_time"])
    per_epoch = steps.groupby("epoch").value
    first, last = epochs.epoch.min(), epochs.epoch.max()
    flops = epochs.set_index("epoch").flops_trained
    flops_ratio = flops[last] / flops[first]
    sum_ratio = per_epoch.sum()[last] / per_epoch.sum()[first]
    median_ratio = per_epoch.median()[last] / per_epoch.median()[first]
    print(f"[epoch] ResNet-20 PGP session (P=0.5, 2 pruning + 2 fine-tuning epochs, "
          f"{args.steps} steps x batch {args.batch}, 32x32): FLOPs ratio last/first epoch "
          f"{flops_ratio:.3f} ({flops[first] / 2e6:.1f} -> {flops[last] / 2e6:.1f} M MACs); "
          f"epoch-time ratio {sum_ratio:.3f} (sum of step times), {median_ratio:.3f} (median "
          f"step); time/FLOPs {sum_ratio / flops_ratio:.3f} / {median_ratio / flops_ratio:.3f} "
          f"(target <= 1.15)")
    print("[epoch] per epoch: " + "; ".join(
        f"e{int(r.epoch)} {r.phase} {r.flops_trained / 2e6:.1f} M MACs, steps "
        f"{per_epoch.sum()[r.epoch]:.2f} s, wall {r.epoch_time:.2f} s"
        + (f", criterion pass {r.criterion_time:.2f} s, surgery {r.surgery_time:.2f} s"
           if r.phase == "prune" else "") for r in epochs.itertuples()))

    x, y = next(session.data.train_batches(0, 0, args.batch, torch.device("cpu")))
    dense = build_model("resnet20", (3, 32, 32), 10).train()
    small = copy.deepcopy(session.ctx.model).train()
    d, s = interleaved(dense, small, x, y, args.interleaved)
    print(f"[interleaved] shrunk / dense ResNet-20 training step (batch {args.batch}, "
          f"{args.interleaved} alternating steps): {s / d:.3f} ({s * 1e3:.0f} ms vs "
          f"{d * 1e3:.0f} ms); FLOPs ratio {flops_ratio:.3f}; time/FLOPs "
          f"{s / d / flops_ratio:.3f} (target <= 1.15)")

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for method in ("pgp", "rpgp", "psfp"):
            config = apply_preset(SessionConfig(method=method, rate=0.5, device="cpu"),
                                  "interactive")
            t = time.perf_counter()
            r = run_session(config, store)
            wall = time.perf_counter() - t
            print(f"[digits] {method} P=0.5 ({config.epochs} epochs, "
                  f"{r['prune_epochs']} pruning): dense {r['dense_accuracy']:.4f}, pruned "
                  f"{r['pruned_accuracy']:.4f}, final {r['final_accuracy']:.4f}; compact "
                  f"params {r['params_compact']} / {r['params_dense']} "
                  f"({r['params_compact'] / r['params_dense']:.3f}), FLOPs "
                  f"{r['flops_compact']} / {r['flops_dense']} "
                  f"({r['flops_compact'] / r['flops_dense']:.3f}); sparsity "
                  f"{r['sparsity']:.3f}; {wall:.1f} s")


if __name__ == "__main__":
    main()
