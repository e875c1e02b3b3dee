"""Compaction benchmark (issue 8): does the compact model's CPU speed follow its FLOPs?

CIFAR ResNet-56 (option-B projection shortcuts), 40% of the filters of every prunable conv
removed: Torch-Pruning's BasePruner picks them per coupled group by L2 norm (the fc layer is
ignored; residual stages lose the same channels in every member, so they are removable). Two
routes to the same network:

- pruneviz: zero those filters with their BatchNorm gamma and beta (what a filter method leaves
  behind), then `surgery.compact` removes them and checks the outputs against the masked model;
- Torch-Pruning: `group.prune()` on the same groups, directly on the dense model.

Both must give identical state_dicts. Then, at batch 64 on CPU, the dense, pruneviz-compact and
Torch-Pruning-compact models (and dense and compact again in channels_last memory format, the
other layout oneDNN runs) are timed back to back in every repetition (interleaved, so a load
spike on a shared machine hits all of them), medians compared: latency gain / FLOPs gain,
target >= 0.8. A line models oneDNN's channel blocking (convolutions computed in blocks of 16
channels on AVX-512, 8 on AVX2) to show where the rest of the gap goes, and an "aligned" route
makes the same request with kept filter counts rounded to that block (a different, smaller
removal) to show what alignment buys.

    python benchmarks/bench_numbers.py [--reps 15] [--threads 1] [--rate 0.4]
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn as nn

from pruneviz.masks import apply_masks, filter_param_masks, prunable_layers
from pruneviz.metrics import count_flops, cpu_vector_block, flops_by_module, measure_latency
from pruneviz.models import build_model
from pruneviz.surgery import compact

SHAPE = (3, 32, 32)


def realistic_bn(model: nn.Module) -> None:
    """Random BN affine parameters and running statistics estimated on random inputs, so the
    untrained network's activations stay at a trained one's scale (filters differ in norm)."""
    g = torch.Generator().manual_seed(0)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        m.reset_running_stats()
        m.momentum = None          # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(32, *SHAPE, generator=g))
    for m in bns:
        m.momentum = 0.1
    model.eval()


def torch_pruning_route(dense: nn.Module, rate: float, round_to: int | None = None
                        ) -> tuple[nn.Module, dict[str, list[int]]]:
    """Torch-Pruning removes `rate` of every group's channels (kept counts rounded to multiples
    of `round_to` if given); returns the model and, per conv, the output channels it removed."""
    import torch_pruning as tp
    from torch_pruning._helpers import to_plain_idxs

    model = copy.deepcopy(dense)
    names = {m: n for n, m in model.named_modules()}
    pruner = tp.pruner.BasePruner(model, torch.zeros(1, *SHAPE),
                                  importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=rate, ignored_layers=[model.fc],
                                  round_to=round_to)
    removed: dict[str, list[int]] = {}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            module = dep.target.module
            if isinstance(module, nn.Conv2d) and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                removed[names[module]] = sorted(to_plain_idxs(idxs))
        group.prune()
    return model.eval(), removed


def pruneviz_route(dense: nn.Module, removed: dict[str, list[int]]) -> tuple[nn.Module, dict]:
    """Zero the same filters (conv weight, BN gamma and beta), then compact."""
    masked = copy.deepcopy(dense)
    layers = {l.name: l for l in prunable_layers(masked, linears=False, shortcuts=True)}
    masks = {}
    for name, idxs in removed.items():
        fmask = torch.ones(layers[name].module.out_channels)
        fmask[idxs] = 0
        masks.update(filter_param_masks(layers[name], fmask))
    apply_masks(masked, masks)
    small, report = compact(masked, SHAPE)
    return small.eval(), report


class ChannelsLast(nn.Module):
    """`model` run in channels_last memory format (oneDNN's NHWC kernels)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def padded_flops(model: nn.Module, block: int) -> float:
    """FLOPs if every conv's channel counts were rounded up to multiples of `block` (input
    channels below `block` left alone: oneDNN treats a thin stem separately)."""
    per = flops_by_module(model, SHAPE)
    total = float(per[""])
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name in per:
            pad_out = math.ceil(m.out_channels / block) * block / m.out_channels
            pad_in = (math.ceil(m.in_channels / block) * block / m.in_channels
                      if m.in_channels >= block else 1.0)
            total += per[name] * (pad_out * pad_in - 1)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: a shared, loaded machine makes "
                         "multi-threaded timings meaningless)")
    ap.add_argument("--rate", type=float, default=0.4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = build_model("resnet56", SHAPE, 10).eval()
    realistic_bn(dense)
    tp_model, removed = torch_pruning_route(dense, args.rate)
    pv_model, report = pruneviz_route(dense, removed)
    same = all(torch.equal(a, b) for a, b in zip(pv_model.state_dict().values(),
                                                 tp_model.state_dict().values()))
    assert same and pv_model.state_dict().keys() == tp_model.state_dict().keys(), \
        "pruneviz and Torch-Pruning compact models differ"
    n_convs = sum(isinstance(m, nn.Conv2d) for m in dense.modules())
    capability, block = cpu_vector_block()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU {capability}; "
          f"shared machine: medians of {args.reps} interleaved repetitions")
    print(f"[compact] ResNet-56, {args.rate:.0%} of each conv group's filters: "
          f"{report['filters_removed']} of {report['filters']} filters removed in {n_convs} "
          f"convs; pruneviz and Torch-Pruning state_dicts identical: {same}; "
          f"max |masked - compact| = {report['max_abs_diff']:.2g} (outputs up to "
          f"{report['output_scale']:.3g})")
    flops = {k: count_flops(m, SHAPE) for k, m in
             (("dense", dense), ("pruneviz", pv_model), ("torch_pruning", tp_model))}
    models = {"dense": dense, "pruneviz": pv_model, "torch_pruning": tp_model,
              "dense_nhwc": ChannelsLast(dense), "pruneviz_nhwc": ChannelsLast(pv_model)}
    flops.update(dense_nhwc=flops["dense"], pruneviz_nhwc=flops["pruneviz"])
    routes = [("pruneviz", "dense"), ("torch_pruning", "dense"), ("pruneviz_nhwc", "dense_nhwc")]
    if block:       # the same request with kept counts rounded to the vector block
        _, aligned_removed = torch_pruning_route(dense, args.rate, round_to=block)
        models[f"aligned{block}"], aligned = pruneviz_route(dense, aligned_removed)
        flops[f"aligned{block}"] = count_flops(models[f"aligned{block}"], SHAPE)
        routes.append((f"aligned{block}", "dense"))
        print(f"[aligned] the same {args.rate:.0%} request with kept filter counts rounded to "
              f"multiples of {block} (Torch-Pruning round_to={block}): "
              f"{aligned['filters_removed']} filters removed")
    for batch in (64, 1):
        t = measure_latency(models, SHAPE, batch, budget_s=0.0, warmup=1, min_reps=args.reps,
                            max_reps=args.reps)
        for route, base in routes:
            lat_gain = t[base]["median_s"] / t[route]["median_s"]
            flops_gain = flops[base] / flops[route]
            target = ("; target >= 0.8" if route in ("pruneviz", "torch_pruning") else
                      "; variant") if batch == 64 else "; batch 1, for reference"
            print(f"[b{batch}] {route:>13}: latency gain / FLOPs gain = "
                  f"{lat_gain / flops_gain:.3f}  (latency {t[base]['median_s'] * 1e3:.1f} -> "
                  f"{t[route]['median_s'] * 1e3:.1f} ms = {lat_gain:.2f}x; FLOPs "
                  f"{flops[base] / 1e6:.1f} M -> {flops[route] / 1e6:.1f} M = "
                  f"{flops_gain:.2f}x{target})")
        if batch == 64 and block:
            pad_gain = padded_flops(dense, block) / padded_flops(pv_model, block)
            lat_gain = t["dense"]["median_s"] / t["pruneviz"]["median_s"]
            print(f"[b64] channel-blocking model: FLOPs with channels rounded up to multiples of "
                  f"{block} fall {pad_gain:.2f}x; latency gain / that = {lat_gain / pad_gain:.3f}")


if __name__ == "__main__":
    main()
