"""Collapse and misleading-result guards: plain-sentence warnings for a finished run's summary.

The session calls `run_warnings` once at the end of a completed run; each warning names the
cause (which layer, which number) and the fix (which parameter, which value). Thresholds are
module constants so tests, docs and the sentences agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .masks import Layer

NEAR_NOTHING = 0.01     # a layer at under 1% density (and far under the asked rate) collapsed
FEW_WEIGHTS = 8         # fewer kept weights than this is "nothing" whatever the layer's size
MAX_DROP = 0.30         # final accuracy this far below the dense start misleads a comparison
CHANCE_FACTOR = 1.5     # final accuracy under 1.5x chance: the network guesses
PERPLEXITY_FACTOR = 2.0  # final perplexity this many times the dense start's: as misleading
MIN_RECOVERY = 0.5      # epochs trained after the final mask below which nothing recovered
MIN_HELDOUT = 50        # held-out images below which one image moves the accuracy by 2 points
DENSE_RISE = 0.01       # held-out accuracy gained over the dense start's last 2 epochs: rising
DENSE_GAP = 0.15        # train minus held-out accuracy at the dense start's end: far below
LAYERS_NAMED = 3        # layers named in one sentence; the rest are counted


@dataclass(frozen=True)
class LayerHealth:
    """What a prunable layer keeps at the end of a run, against its dense shape."""

    name: str
    kept: int              # nonzero weights
    total: int             # weights at the dense start (physically removed ones count)
    filters_kept: int      # output channels with a nonzero weight
    filters_total: int

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 1.0


def layer_health(layers: list[Layer], dense_shapes: dict[str, torch.Size]) -> list[LayerHealth]:
    """Kept weights and filters of every prunable layer (weights equal to zero count as pruned)."""
    out = []
    for layer in layers:
        w = layer.module.weight.detach()
        shape = dense_shapes.get(layer.name, w.shape)
        alive = w.flatten(1) != 0
        out.append(LayerHealth(layer.name, int(alive.sum()), shape.numel(),
                               int(alive.any(1).sum()), shape[0]))
    return out


@torch.no_grad()
def output_constant(model: nn.Module, x: torch.Tensor) -> bool:
    """True when the model's output is the same for every input of the batch `x` (eval mode):
    the network is cut in two."""
    was = model.training
    model.eval()
    try:
        out = model(x).float()
    finally:
        model.train(was)
    if len(out) < 2:
        return False
    spread = (out - out[0]).abs().max().item()
    return spread <= 1e-6 * (1.0 + out.abs().max().item())


def collapsed(h: LayerHealth, rate: float, kind: str) -> bool:
    """A layer pruned to (near) nothing: no filter or weight left, fewer than FEW_WEIGHTS, or a
    density under NEAR_NOTHING and under half of what the rate asks of an average layer."""
    if h.kept == 0 or h.filters_kept == 0:
        return True
    if kind == "filter":            # filter methods prune every layer at the rate by design
        return False
    # floor(): a layer held at exactly the 1% floor (rounded down by one weight) is not flagged
    return h.kept < max(FEW_WEIGHTS, math.floor(h.total * min(NEAR_NOTHING, 0.5 * (1.0 - rate))))


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:LAYERS_NAMED])
    return shown + (f" and {len(items) - LAYERS_NAMED} more" if len(items) > LAYERS_NAMED else "")


def collapse_fix(method: str, params: dict[str, object]) -> str:
    """The standard remedies for a layer a ranking emptied, as this method offers them."""
    fixes = []
    if params.get("scope") == "global":
        fixes.append("rank layer by layer (scope=layer, Zhu & Gupta's GMP)")
    if "max_layer_sparsity" in params:
        fixes.append("cap every layer with max_layer_sparsity=0.99 (a 1% density floor)")
    if not fixes:
        return f"Fix: lower the rate ({method} cannot hold a floor per layer)."
    fixes.append("use a layer-wise method such as l1")
    return "Fix: " + ", ".join(fixes[:-1]) + ", or " + fixes[-1] + "."


def run_warnings(*, method: str, kind: str, rate: float, params: dict[str, object],
                 layers: list[LayerHealth], cut: bool, dense_accuracy: float | None,
                 final_accuracy: float | None, num_classes: int, epochs: int,
                 recovery_epochs: float | None, recovery_hint: str,
                 dense_perplexity: float | None = None,
                 final_perplexity: float | None = None,
                 heldout: int | None = None) -> list[str]:
    """Plain sentences, each with the cause and the fix, for what makes this run's final numbers
    mislead: a collapsed or cut network, an accuracy far below dense or near chance (a language
    model: a perplexity far above dense), a final mask applied in the last epoch, and a held-out
    set too small to measure accuracy on (`heldout` images evaluated)."""
    out: list[str] = []
    if heldout is not None and heldout < MIN_HELDOUT:
        out.append(f"The held-out accuracy is measured on {heldout} image(s): one image moves "
                   f"it by {1 / max(heldout, 1):.0%}, so it cannot tell methods apart (a 100% "
                   f"may be one lucky guess). Fix: add images, raise the held-out fraction "
                   f"(holdout) or the eval limit, or use a built-in dataset.")
    out += _layer_warnings(layers, cut=cut, kind=kind, rate=rate,
                           fix=collapse_fix(method, params))
    out += _quality_warnings(dense_accuracy, final_accuracy, num_classes, dense_perplexity,
                             final_perplexity)
    if recovery_epochs is not None and recovery_epochs < MIN_RECOVERY and epochs > 1:
        when = ("at the very end" if recovery_epochs == 0 else
                f"{recovery_epochs:.2f} epochs before the end")
        out.append(f"The final mask changed {when} of the session (in its last epoch), so the "
                   f"final accuracy was measured with no time to recover from it. "
                   f"Fix: {recovery_hint}")
    return out


def _layer_warnings(layers: list[LayerHealth], *, cut: bool, kind: str, rate: float,
                    fix: str) -> list[str]:
    """A network cut in two, layers that keep no weights, layers pruned to almost nothing."""
    out: list[str] = []
    empty = [h for h in layers if h.kept == 0 or h.filters_kept == 0]
    thin = [h for h in layers if collapsed(h, rate, kind) and h not in empty]
    if cut:
        keep = "keeps" if len(empty) == 1 else "keep"
        cause = (f"{_names([h.name for h in empty])} {keep} no weights" if empty
                 else "no signal reaches the classifier")
        out.append(f"The network is cut in two: {cause}, so its output no longer depends on "
                   f"the input and the final accuracy is a constant guess. {fix}")
    elif empty:
        keep = "keeps" if len(empty) == 1 else "keep"
        out.append(f"{_names([h.name for h in empty])} {keep} no weights: only a shortcut carries "
                   f"the signal past them. {fix}")
    if thin:
        parts = [(f"{h.name} keeps {h.filters_kept} of {h.filters_total} filters"
                  if kind == "filter" else
                  f"{h.name} keeps {h.kept} of its {h.total} weights ({h.density:.2%})")
                 for h in thin]
        out.append(f"Layer pruned to almost nothing: {_names(parts)}, far below the "
                   f"{1 - rate:.0%} an average layer keeps at rate {rate:g}; it is a bottleneck "
                   f"the rest of the network cannot route around. {fix}")
    return out


def _quality_warnings(dense_accuracy: float | None, final_accuracy: float | None,
                      num_classes: int, dense_perplexity: float | None,
                      final_perplexity: float | None) -> list[str]:
    """A final accuracy near chance or far below dense (a language model: a perplexity far
    above dense)."""
    out: list[str] = []
    if final_perplexity is not None:     # a language model: perplexity is its quality
        if dense_perplexity is not None and final_perplexity > PERPLEXITY_FACTOR * dense_perplexity:
            out.append(f"Final perplexity {final_perplexity:.2f} is "
                       f"{final_perplexity / dense_perplexity:.1f}x the dense start's "
                       f"{dense_perplexity:.2f}: the comparison then measures the budget more "
                       f"than the method. Fix: lower the rate or give the session more epochs "
                       f"to recover.")
    elif final_accuracy is not None:
        chance = 1.0 / max(num_classes, 1)
        if final_accuracy < CHANCE_FACTOR * chance:
            out.append(f"Final accuracy {final_accuracy:.1%} is near chance ({chance:.0%} for "
                       f"{num_classes} classes): the pruned network has lost what it learned. "
                       f"Fix: lower the rate, give the session more epochs, or see the layer "
                       f"warnings.")
        elif dense_accuracy is not None and dense_accuracy - final_accuracy > MAX_DROP:
            out.append(f"Final accuracy {final_accuracy:.1%} is "
                       f"{100 * (dense_accuracy - final_accuracy):.0f} points below the dense "
                       f"start's {dense_accuracy:.1%}: the comparison then measures the budget "
                       f"more than the method. Fix: lower the rate or give the session more "
                       f"epochs to recover.")
    return out


def dense_curves(scalars):
    """Per-epoch train accuracy (mean of the epoch's steps) and held-out accuracy (the epoch's
    last evaluation) of a dense run's scalar records (run_id, step, epoch, key, value), as a
    frame indexed by epoch with columns train and held_out."""
    import pandas as pd

    train = scalars[scalars.key == "train_accuracy"].groupby("epoch").value.mean()
    test = scalars[scalars.key == "test_accuracy"].sort_values("step").groupby("epoch").value.last()
    return pd.DataFrame({"train": train, "held_out": test}).sort_index()


def dense_start_warnings(curves, dense_epochs: int | None = None) -> list[str]:
    """Under-training of a dense start, from dense_curves: held-out accuracy still rising over
    its last epochs (more than DENSE_RISE over the last two), or far below its train accuracy
    at the end (by more than DENSE_GAP). Each sentence names the fix."""
    held = curves.held_out.dropna()
    if held.empty:
        return []
    more = (f"raise dense epochs (Training and data; now {dense_epochs})" if dense_epochs
            else "raise dense epochs (Training and data)")
    out = []
    if len(held) >= 3 and held.iloc[-1] - held.iloc[-3] > DENSE_RISE:
        out.append(f"The dense start is under-trained: its held-out accuracy still rose from "
                   f"{held.iloc[-3]:.1%} to {held.iloc[-1]:.1%} over its last 2 epochs, so a "
                   f"pruned run can beat it by training longer, not by pruning. Fix: {more}.")
    train = curves.train.dropna()
    if len(train) and train.iloc[-1] - held.iloc[-1] > DENSE_GAP:
        out.append(f"The dense start ends at {held.iloc[-1]:.1%} held-out against "
                   f"{train.iloc[-1]:.1%} on its training data: it fits the training set far "
                   f"better than it generalizes, and drops vs dense measured from it mislead. "
                   f"Fix: {more}, or add augmentation or data.")
    return out
