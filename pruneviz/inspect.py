"""What pruning changed: Captum attributions of the dense start vs the pruned model, agreement of
their predictions and per-filter layer contributions (the per-layer sensitivity scan is in
sensitivity.py). Library only: DataFrames and tensors in and out, no streamlit.

Attributions (Captum, Kokhlikyan et al. 2020, arXiv:2009.07896):
- Integrated Gradients (Sundararajan et al., ICML 2017, arXiv:1703.01365):
  IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x')) / dx_i da, baseline x' = a black image;
  completeness: sum_i IG_i(x) = F(x) - F(x'), Captum's convergence delta is the residual.
- Saliency (Simonyan et al., ICLR-W 2014, arXiv:1312.6034): |dF(x) / dx|.
- LayerConductance (Dhamdhere et al., ICLR 2019, arXiv:1805.12233): IG through a hidden layer,
  summed per output channel (filter); LayerGradientXActivation: activation * gradient.
Both models are attributed for the image's true label, so the two maps answer the same question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, SessionConfig
from .data import DataBundle, classes_in_turn, load_dataset
from .masks import (
    Masks,
    filter_norms,
)
from .metrics import param_counts
from .report import load_run_models
from .store import Store

ATTRIBUTIONS = ("integrated_gradients", "saliency")
LAYER_ATTRIBUTIONS = ("conductance", "gradient_x_activation")


class InspectError(ConfigError):
    """A run cannot be inspected as asked; the message says why and what to pick instead."""


@dataclass
class RunModels:
    """A finished run's dense start and final (pruned) model, in eval mode, with its data. A run
    the method physically shrank (PGP) is expanded back onto its architecture (report's loader),
    so both models take the same attributions; `compaction` and `compact` are the final model's
    compacted twin as report.load_run_models builds it."""

    run_id: str
    config: SessionConfig
    data: DataBundle
    dense: nn.Module
    pruned: nn.Module
    masks: Masks                 # bool, keyed by parameter name, shaped like `pruned`'s
    dense_run: str
    device: torch.device
    compact: nn.Module | None = None            # dead filters removed (computes as `pruned`)
    compaction: dict[str, Any] = field(default_factory=dict)   # surgery.compact's report


def _ready(model: nn.Module, device: torch.device) -> nn.Module:
    model.eval()
    for p in model.parameters():        # attributions need input grads only
        p.requires_grad_(False)
    return model.to(device)


def load_run(store: Store, run_id: str, device: str | torch.device = "cpu") -> RunModels:
    """A completed run's dense start and final model, through report's loader (the one reader of
    a run's files, which also expands a shrunk run and compacts it)."""
    run = store.run(run_id)
    if run["status"] != "completed":
        raise InspectError(f"run {run_id} is {run['status']}; only completed runs saved their "
                           f"final weights.")
    config: SessionConfig = run["config"]
    dense_run = run["summary"].get("dense_run")
    if not dense_run:
        raise InspectError(f"run {run_id} started from scratch, so there is no dense start to "
                           f"compare it with; pick a run started from the dense baseline.")
    for rid in (run_id, dense_run):
        path = store.run_dir(rid, create=False) / "weights.pt"
        if not path.exists():
            raise InspectError(f"{path} is missing; the run's files were moved or deleted.")
    device = torch.device(device)
    final = load_run_models(store, run_id)
    dense = load_run_models(store, dense_run).masked
    data = load_dataset(config.dataset, config.data_root, augment=config.augment,
                        holdout=config.holdout, image_size=config.image_size, seed=config.seed)
    return RunModels(run_id, config, data, _ready(dense, device), _ready(final.masked, device),
                     final.masks, dense_run, device, final.compact.eval(), final.compaction)


def compact_numbers(rm: RunModels) -> dict[str, Any]:
    """What the compacted final model keeps: parameters (of the dense start's), filters removed
    of all, and whether the method itself shrank the network (expanded back for Inspect)."""
    dense = param_counts(rm.dense)[0]
    small = param_counts(rm.compact)[0] if rm.compact is not None else dense
    rep = rm.compaction
    return {"params_dense": dense, "params_compact": small,
            "params_ratio": small / dense if dense else 1.0,
            "filters": int(rep.get("filters", 0)),
            "filters_removed": int(rep.get("filters_removed", 0)),
            "shrunk": bool(rep.get("shrunk", False))}


def held_out_images(data: DataBundle, n: int, device: str | torch.device = "cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` held-out images, normalized, cycling through the classes (first image of each)."""
    idx = classes_in_turn(data.test_y)[:n]
    return data.normalize(data.test_x[idx].to(device)), data.test_y[idx].to(device)


def denormalize(data: DataBundle, x: torch.Tensor) -> torch.Tensor:
    """Normalized images back to [0, 1] pixel values, for display."""
    return (x * data.std.to(x.device) + data.mean.to(x.device)).clamp(0, 1)


def black_baseline(data: DataBundle, x: torch.Tensor) -> torch.Tensor:
    """The all-black image in the model's (normalized) input space, IG's usual baseline."""
    return data.normalize(torch.zeros(1, *x.shape[1:], device=x.device)).expand_as(x)


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
              method: str = "integrated_gradients", *, baseline: torch.Tensor | None = None,
              n_steps: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attribution of `model`'s `target` logit to each input value (x's shape), and IG's
    convergence delta per image (None for saliency)."""
    from captum.attr import IntegratedGradients, Saliency

    model.eval()
    x = x.detach().clone().requires_grad_(True)
    if method == "saliency":
        return Saliency(model).attribute(x, target=target, abs=True).detach(), None
    if method != "integrated_gradients":
        raise ConfigError(f"unknown attribution {method!r}; use one of {', '.join(ATTRIBUTIONS)}.")
    base = torch.zeros_like(x) if baseline is None else baseline
    attr, delta = IntegratedGradients(model).attribute(
        x, baselines=base, target=target, n_steps=n_steps, internal_batch_size=64,
        return_convergence_delta=True)
    return attr.detach(), delta.detach()


@dataclass
class Comparison:
    """Dense vs pruned attribution maps (N x C x H x W each) and one row per image."""

    maps: dict[str, torch.Tensor]   # "dense", "pruned", "difference" (pruned - dense)
    table: pd.DataFrame             # image, label, dense_pred, pruned_pred, similarity, deltas


def compare_attributions(dense: nn.Module, pruned: nn.Module, x: torch.Tensor,
                         y: torch.Tensor, method: str = "integrated_gradients", *,
                         baseline: torch.Tensor | None = None, n_steps: int = 32,
                         normalize: bool = True) -> Comparison:
    """Attribute both models for the true labels `y`; `normalize` divides each map by its sum
    of |values|, so the difference shows where the model looks, not how confident it is."""
    maps, deltas = {}, {}
    for name, model in (("dense", dense), ("pruned", pruned)):
        attr, delta = attribute(model, x, y, method, baseline=baseline, n_steps=n_steps)
        if normalize:
            attr = attr / attr.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        maps[name], deltas[name] = attr, delta
    maps["difference"] = maps["pruned"] - maps["dense"]
    with torch.no_grad():
        dense_pred, pruned_pred = dense(x).argmax(1), pruned(x).argmax(1)
    table = pd.DataFrame({
        "image": range(len(y)), "label": y.tolist(), "dense_pred": dense_pred.tolist(),
        "pruned_pred": pruned_pred.tolist(),
        "similarity": F.cosine_similarity(maps["dense"].flatten(1), maps["pruned"].flatten(1),
                                          dim=1).tolist()})
    for name, delta in deltas.items():
        if delta is not None:
            table[f"{name}_delta"] = delta.abs().tolist()
    return Comparison(maps, table)


@torch.no_grad()
def predictions(model: nn.Module, data: DataBundle, device: torch.device,
                limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 predictions and labels over the held-out set (the first `limit` images)."""
    model.eval()
    preds, labels = [], []
    for x, y in data.test_batches(device, limit=limit):
        preds.append(model(x).argmax(1).cpu())
        labels.append(y.cpu())
    return torch.cat(preds), torch.cat(labels)


def agreement(dense: nn.Module, pruned: nn.Module, data: DataBundle, *,
              device: str | torch.device = "cpu", limit: int = 0) -> pd.DataFrame:
    """Per class: images, dense and pruned accuracy, agreement of their top-1 predictions, and
    flips (dense right, pruned wrong) and fixes (dense wrong, pruned right)."""
    device = torch.device(device)
    pd_, y = predictions(dense, data, device, limit)
    pp, _ = predictions(pruned, data, device, limit)
    rows = []
    for c, name in enumerate(data.classes):
        sel = y == c
        n = int(sel.sum())
        if n == 0:
            continue
        d_ok, p_ok = pd_[sel] == c, pp[sel] == c
        rows.append({"class": name, "n": n, "dense_accuracy": d_ok.float().mean().item(),
                     "pruned_accuracy": p_ok.float().mean().item(),
                     "agreement": (pd_[sel] == pp[sel]).float().mean().item(),
                     "flips": int((d_ok & ~p_ok).sum()), "fixes": int((~d_ok & p_ok).sum())})
    return pd.DataFrame(rows)


def overall_agreement(per_class: pd.DataFrame) -> float:
    """Fraction of all held-out images on which the two models predict the same class."""
    return float((per_class.agreement * per_class.n).sum() / per_class.n.sum())


def inspectable_layers(model: nn.Module) -> list[str]:
    """Module names of every conv and linear layer (a linear's "filters" are its output units)."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def layer_contributions(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
                        masks: Masks, method: str = "conductance", *,
                        baseline: torch.Tensor | None = None, n_steps: int = 16) -> pd.DataFrame:
    """Per filter of `layer` in `model` (the dense start): its attribution to the true label,
    summed over positions and averaged over images, with the share of its weights the run kept.
    Conductance integrates from `baseline` (default zeros) like IG; gradient x activation is
    local to x.

    Columns: filter, contribution, abs_contribution, kept_fraction, status (kept, pruned,
    partly pruned), norm (the filter's L2 norm in `model`).
    """
    from captum.attr import LayerConductance, LayerGradientXActivation

    modules = dict(model.named_modules())
    if layer not in inspectable_layers(model):
        raise ConfigError(f"{layer!r} is not a conv or linear layer of this model; use one of "
                          f"{', '.join(inspectable_layers(model))}.")
    module = modules[layer]
    model.eval()
    xin = x.detach().clone().requires_grad_(True)
    if method == "conductance":
        attr = LayerConductance(model, module).attribute(
            xin, baselines=torch.zeros_like(xin) if baseline is None else baseline, target=y,
            n_steps=n_steps, internal_batch_size=64)
    elif method == "gradient_x_activation":
        attr = LayerGradientXActivation(model, module).attribute(xin, target=y)
    else:
        raise ConfigError(f"unknown layer attribution {method!r}; use one of "
                          f"{', '.join(LAYER_ATTRIBUTIONS)}.")
    per = attr.detach().flatten(2).sum(2) if attr.dim() > 2 else attr.detach()   # N x filters
    weight = module.weight.detach()
    mask = masks.get(f"{layer}.weight")
    kept = (mask.flatten(1).float().mean(1) if mask is not None
            else torch.ones(weight.shape[0]))
    status = ["pruned" if k == 0 else "kept" if k == 1 else "partly pruned" for k in kept.tolist()]
    return pd.DataFrame({"filter": range(per.shape[1]), "contribution": per.mean(0).cpu(),
                         "abs_contribution": per.abs().mean(0).cpu(),
                         "kept_fraction": kept.cpu(), "status": status,
                         "norm": filter_norms(weight).cpu()})


def contribution_shares(contrib: pd.DataFrame) -> pd.DataFrame:
    """Per status: how many filters, their share of the filters, and their share of the layer's
    total |contribution| (pruned filters with a small share are the ones pruning could spare)."""
    total = contrib.abs_contribution.sum()
    g = contrib.groupby("status")
    out = pd.DataFrame({"filters": g.size(),
                        "filter_share": g.size() / len(contrib),
                        "contribution_share": g.abs_contribution.sum() / total if total else 0.0})
    return out.reset_index()


# -- transformers: attention maps and greedy continuations, dense vs pruned -------------------
def is_transformer(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and all(hasattr(b, "attn") for b in model.blocks)


def held_out_input(data, index: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """One held-out input as a batch of 1: a window of text, or an image (classes in turn)."""
    if getattr(data, "modality", "image") == "text":
        return data.test_x[index:index + 1, :-1].to(device)
    return held_out_images(data, index + 1, device)[0][index:index + 1]


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the attention of input x[1, ...]: [n_head, T, T] (rows: queries, columns:
    keys; a removed or zeroed head attends uniformly, its output being zero anyway)."""
    attns = [b.attn for b in model.blocks]
    for a in attns:
        a.keep_attention = True
    try:
        model(x)
        return [a.attention[0].cpu() for a in attns]
    finally:
        for a in attns:
            a.keep_attention, a.attention = False, None


def continue_text(model: nn.Module, prompt: str, n: int = 100) -> str:
    """The model's greedy continuation of `prompt` by `n` bytes, decoded (bad bytes replaced)."""
    raw = prompt.encode()[-model.config.block_size:] or b"\n"
    device = next(model.parameters()).device
    idx = torch.tensor([list(raw)], device=device)
    out = model.generate(idx, n)[0, idx.shape[1]:]
    return bytes(out.tolist()).decode("utf-8", errors="replace")
