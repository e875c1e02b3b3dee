"""A per-layer sensitivity scan of a dense model and per-layer rates suggested from it. Library
only: DataFrames and tensors in and out, no streamlit.

Sensitivity scan (Han et al., NeurIPS 2015, arXiv:1506.02626, sec. 4; Distiller's "sensitivity
analysis"): prune one layer alone by magnitude (unstructured: smallest |w|; filter: smallest L2
norm filters with their BatchNorm gamma and beta), evaluate on a held-out batch, restore it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError
from .data import DataBundle
from .masks import Layer, Masks, filter_norms, filter_param_masks, n_prune, prunable_layers

KINDS = ("unstructured", "filter")
DEFAULT_RATES = (0.0, 0.25, 0.5, 0.75, 0.9)


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


def weighted_mean_rate(rates: dict[str, float], scan: pd.DataFrame) -> float:
    """Mean of per-layer rates weighted by the layers' weight counts in `scan`."""
    size = scan.groupby("layer").params.first()
    return float(sum(rates[k] * size[k] for k in rates) / sum(size[k] for k in rates))
