"""What pruning changed: Captum attributions of the dense start vs the pruned model, agreement of
their predictions, per-filter layer contributions, and a per-layer sensitivity scan with
suggested per-layer rates. Library only: DataFrames and tensors in and out, no streamlit.

Attributions (Captum, Kokhlikyan et al. 2020, arXiv:2009.07896):
- Integrated Gradients (Sundararajan et al., ICML 2017, arXiv:1703.01365):
  IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x')) / dx_i da, baseline x' = a black image;
  completeness: sum_i IG_i(x) = F(x) - F(x'), Captum's convergence delta is the residual.
- Saliency (Simonyan et al., ICLR-W 2014, arXiv:1312.6034): |dF(x) / dx|.
- LayerConductance (Dhamdhere et al., ICLR 2019, arXiv:1805.12233): IG through a hidden layer,
  summed per output channel (filter); LayerGradientXActivation: activation * gradient.
Both models are attributed for the image's true label, so the two maps answer the same question.

Sensitivity scan (Han et al., NeurIPS 2015, arXiv:1506.02626, sec. 4; Distiller's "sensitivity
analysis"): prune one layer alone by magnitude (unstructured: smallest |w|; filter: smallest L2
norm filters with their BatchNorm gamma and beta), evaluate on a held-out batch, restore it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, SessionConfig
from .data import DataBundle, load_dataset
from .masks import (
    Layer,
    Masks,
    filter_norms,
    filter_param_masks,
    n_prune,
    prunable_layers,
)
from .models import build_model
from .store import Store

ATTRIBUTIONS = ("integrated_gradients", "saliency")
LAYER_ATTRIBUTIONS = ("conductance", "gradient_x_activation")
KINDS = ("unstructured", "filter")
DEFAULT_RATES = (0.0, 0.25, 0.5, 0.75, 0.9)


class InspectError(ConfigError):
    """A run cannot be inspected as asked; the message says why and what to pick instead."""


@dataclass
class RunModels:
    """A finished run's dense start and final (pruned) model, in eval mode, with its data."""

    run_id: str
    config: SessionConfig
    data: DataBundle
    dense: nn.Module
    pruned: nn.Module
    masks: Masks                 # bool, keyed by parameter name, as the run saved them
    dense_run: str
    device: torch.device


def _rebuild(config: SessionConfig, data: DataBundle, state: dict[str, torch.Tensor], what: str,
             device: torch.device) -> nn.Module:
    # pretrained=False: the architecture is the same and the weights come from the run anyway.
    model = build_model(config.model, data.input_shape, data.num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        own = model.state_dict()
        shrunk = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
        if not shrunk:
            raise InspectError(f"the {what} does not fit the {config.model} architecture (its "
                               f"parameter names differ); was the run saved by another "
                               f"version of pruneviz?") from None
        raise InspectError(
            f"the {what} does not fit the {config.model} architecture ({shrunk[0]} is "
            f"{list(state[shrunk[0]].shape)}, the rebuilt model has {list(own[shrunk[0]].shape)}):"
            f" the method physically removed filters. Inspecting compact models needs their "
            f"export (a later issue); pick a run of a masking method.") from None
    model.eval()
    for p in model.parameters():        # attributions need input grads only
        p.requires_grad_(False)
    return model.to(device)


def load_run(store: Store, run_id: str, device: str | torch.device = "cpu") -> RunModels:
    """Rebuild a completed run's dense start and final model from the store's weights files."""
    run = store.run(run_id)
    if run["status"] != "completed":
        raise InspectError(f"run {run_id} is {run['status']}; only completed runs saved their "
                           f"final weights.")
    config: SessionConfig = run["config"]
    dense_run = run["summary"].get("dense_run")
    if not dense_run:
        raise InspectError(f"run {run_id} started from scratch, so there is no dense start to "
                           f"compare it with; pick a run started from the dense baseline.")
    folder = store.run_dir(run_id, create=False)
    dense_path = store.run_dir(dense_run, create=False) / "weights.pt"
    for path in (folder / "weights.pt", folder / "masks.pt", dense_path):
        if not path.exists():
            raise InspectError(f"{path} is missing; the run's files were moved or deleted.")
    device = torch.device(device)
    data = load_dataset(config.dataset, config.data_root, augment=config.augment,
                        holdout=config.holdout, image_size=config.image_size)
    from .safe_load import load_tensors

    dense = _rebuild(config, data, load_tensors(dense_path), "dense start", device)
    pruned = _rebuild(config, data, load_tensors(folder / "weights.pt"),
                      f"final model of run {run_id}", device)
    masks = load_tensors(folder / "masks.pt")
    return RunModels(run_id, config, data, dense, pruned, masks, dense_run, device)


def held_out_images(data: DataBundle, n: int, device: str | torch.device = "cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` held-out images, normalized, cycling through the classes (first image of each)."""
    x_all, y_all = data.test_x, data.test_y
    firsts = [torch.nonzero(y_all == c).flatten() for c in range(data.num_classes)]
    order, k = [], 0
    while len(order) < min(n, len(y_all)):
        for idx in firsts:
            if k < len(idx) and len(order) < n:
                order.append(int(idx[k]))
        k += 1
    idx = torch.tensor(order, dtype=torch.long)
    return data.normalize(x_all[idx].to(device)), y_all[idx].to(device)


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


# -- sensitivity ---------------------------------------------------------------------------------
def scan_layers(model: nn.Module, kind: str = "unstructured", *,
                all_layers: bool = False) -> list[Layer]:
    """The layers a scan prunes: by default those the methods of `kind` prune (unstructured:
    convs but the first, linears but the classifier; filter: every non-shortcut conv);
    `all_layers` adds the first conv, the classifier and shortcut convs."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    if kind == "filter":
        layers = prunable_layers(model, linears=False, first_conv=True, shortcuts=all_layers)
        if not layers:
            raise ConfigError("filter sensitivity prunes conv filters, but this model has no "
                              "convolutions; use --kind unstructured or a conv model.")
        return layers
    layers = prunable_layers(model, first_conv=all_layers, last_linear=all_layers,
                             shortcuts=all_layers)
    if not layers:
        raise ConfigError("this model has no prunable layer under the default rules; pass "
                          "--all-layers to include the first conv and the classifier.")
    return layers


def check_rates(rates: list[float] | tuple[float, ...]) -> list[float]:
    """Sorted unique rates, each a fraction pruned in [0, 1)."""
    if not rates:
        raise ConfigError("give at least one rate, e.g. --rates 0,0.5,0.9.")
    for r in rates:
        if not (math.isfinite(r) and 0.0 <= r < 1.0):
            raise ConfigError(f"rates are fractions pruned in [0, 1), got {r}.")
    return sorted(set(float(r) for r in rates))


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each score in keep_top's order (descending, ties: lower index first), so that
    `ranks < n_keep` is keep_top(scores, n_keep) for every n_keep from one sort."""
    order = torch.argsort(scores.flatten(), descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    return ranks.view_as(scores)


def scan_masks(layer: Layer, kind: str, rates: list[float]
               ) -> Iterator[tuple[float, Masks, int]]:
    """(rate, masks, weights removed) pruning `rate` of one layer by magnitude, the masks
    masks.layerwise_magnitude (unstructured) or filter_mask + filter_param_masks (filter, L2)
    give, from one sort of the layer's scores for all rates."""
    w = layer.module.weight.detach()
    ranks = _ranks(filter_norms(w) if kind == "filter" else w.abs())
    for rate in rates:
        if kind == "filter":
            n = n_prune(w.shape[0], rate)
            fmask = (ranks < w.shape[0] - n).to(w.dtype)
            yield rate, filter_param_masks(layer, fmask), n * w[0].numel()
        else:
            n = n_prune(w.numel(), rate)
            yield rate, {layer.param: (ranks < w.numel() - n).to(w.dtype)}, n


@torch.no_grad()
def evaluate_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of `model` (eval mode) on one batch."""
    logits = model(x)
    return ((logits.argmax(1) == y).sum().item() / len(y), F.cross_entropy(logits, y).item())


def heldout_batch(data: DataBundle, limit: int = 512, device: str | torch.device = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `limit` held-out images (0 = all), normalized, as one batch."""
    n = min(limit, len(data.test_x)) if limit else len(data.test_x)
    return data.normalize(data.test_x[:n].to(device)), data.test_y[:n].to(device)


@torch.no_grad()
def sensitivity_scan(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     rates: list[float] | tuple[float, ...] = DEFAULT_RATES,
                     kind: str = "unstructured", layers: list[Layer] | None = None,
                     all_layers: bool = False) -> pd.DataFrame:
    """Prune each layer alone at each rate (magnitude), evaluate on (x, y), restore the layer.

    Columns: layer, rate, accuracy, loss, params (the layer's weight count), pruned_params
    (weights the rate removes; filter: whole filters), accuracy_drop (dense accuracy on the batch
    minus accuracy), kind. A rate that removes nothing (0, or one rounding to 0 units) is the
    dense evaluation itself and is not re-run. `model` is left exactly as it was.
    """
    rates = check_rates(rates)
    layers = layers if layers is not None else scan_layers(model, kind, all_layers=all_layers)
    was_training = model.training
    model.eval()
    dense_acc, dense_loss = evaluate_batch(model, x, y)
    params = dict(model.named_parameters())
    rows = []
    try:
        for layer in layers:
            saved: dict[str, torch.Tensor] = {}
            for rate, masks, removed in scan_masks(layer, kind, rates):
                if removed == 0:        # all-ones masks leave the model as it is
                    rows.append(_scan_row(layer, kind, rate, dense_acc, dense_loss, 0, dense_acc))
                    continue
                saved = saved or {k: params[k].detach().clone() for k in masks}
                try:
                    for k, m in masks.items():
                        params[k].mul_(m.to(params[k].dtype))
                    acc, loss = evaluate_batch(model, x, y)
                finally:
                    for k, v in saved.items():
                        params[k].copy_(v)
                rows.append(_scan_row(layer, kind, rate, acc, loss, removed, dense_acc))
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def _scan_row(layer: Layer, kind: str, rate: float, acc: float, loss: float, removed: int,
              dense_acc: float) -> dict:
    return {"layer": layer.name, "rate": rate, "accuracy": acc, "loss": loss,
            "params": layer.module.weight.numel(), "pruned_params": removed,
            "accuracy_drop": dense_acc - acc, "kind": kind}


def layer_sensitivity(scan: pd.DataFrame, eps: float = 1e-3) -> pd.Series:
    """Per layer: mean accuracy drop over the scanned rates (negative drops count as 0) + eps."""
    drop = scan.accuracy_drop.clip(lower=0.0)
    return drop.groupby(scan.layer, sort=False).mean() + eps


def check_target(target: float, max_rate: float) -> None:
    """A global target rate must be reachable without pruning any layer beyond max_rate."""
    if not (math.isfinite(max_rate) and 0.0 < max_rate < 1.0):
        raise ConfigError(f"max_rate must be in (0, 1), got {max_rate}.")
    if not (math.isfinite(target) and 0.0 <= target <= max_rate):
        raise ConfigError(f"the global target must be in [0, max_rate={max_rate:g}], got "
                          f"{target}; no layer is pruned beyond max_rate.")


def suggest_rates(scan: pd.DataFrame, target: float, *, max_rate: float = 0.95,
                  eps: float = 1e-3) -> dict[str, float]:
    """Per-layer rates for a global `target`: the most sensitive layers are pruned least.

    Algorithm: sensitivity s_l = mean over the scanned rates of max(0, accuracy drop) + eps;
    rate r_l(c) = min(max_rate, c / s_l) (inverse sensitivity, clamped to [0, max_rate]); the
    weighted mean M(c) = sum_l n_l r_l(c) / sum_l n_l with n_l the layer's weight count is
    continuous and non-decreasing in c, so a bisection on c finds M(c) = target to 1e-12.
    The rates are the fraction pruned of each layer's weights (unstructured) or filters (filter).
    """
    check_target(target, max_rate)
    sens = layer_sensitivity(scan, eps)
    size = scan.groupby("layer", sort=False).params.first()[sens.index].astype(float)
    weight = size / size.sum()

    def rates(c: float) -> pd.Series:
        return (c / sens).clip(upper=max_rate)

    lo, hi = 0.0, float(max_rate * sens.max())     # M(hi) = max_rate >= target
    for _ in range(200):
        mid = (lo + hi) / 2
        if float((rates(mid) * weight).sum()) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(hi, 1.0):
            break
    return {k: float(v) for k, v in rates((lo + hi) / 2).items()}


def format_layer_rates(rates: dict[str, float], digits: int = 4) -> str:
    """"layer=rate,layer=rate": the per-layer rate override format of the session form."""
    return ",".join(f"{k}={round(v, digits):g}" for k, v in rates.items())


def parse_layer_rates(text: str) -> dict[str, float]:
    """The inverse of format_layer_rates, with a clear error on malformed input."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not sep or not name.strip() or not 0.0 <= rate < 1.0:
            raise ConfigError(f"per-layer rates are layer=rate pairs with rates in [0, 1), "
                              f"e.g. conv2=0.5,conv3=0.8; got {item!r}.")
        out[name.strip()] = rate
    return out


def weighted_mean_rate(rates: dict[str, float], scan: pd.DataFrame) -> float:
    """Mean of per-layer rates weighted by the layers' weight counts in `scan`."""
    size = scan.groupby("layer").params.first()
    return float(sum(rates[k] * size[k] for k in rates) / sum(size[k] for k in rates))
