"""The method contract: hooks the session calls at fixed points of every step, and the registry.

Where each hook runs in the session's step (see pruneviz/loop.py):

    before_training(ctx)        once, after the dense start is evaluated: build masks, state
    for each step:
        loss = CE(model(x), y) + loss_penalty(ctx)
        loss.backward(); after_backward(ctx)       gradients are final here; edit them
        optimizer.step(); masks re-applied; after_step(ctx)
    end_of_epoch(ctx)           after the epoch's last step, before the epoch's evaluation

The rules a method keeps, each checked where a check is cheap (the check in brackets):

1. Methods keep no step or epoch counters: `ctx.step`, `ctx.epoch` and friends are the truth.
2. Internals go to the store only through `ctx.record` (scalars, layers, filters, method tables),
   every key and column declared once in the family's records.py [records.check_key and
   Table.write: an undeclared one raises under tests; docs/architecture.md, "Record keys"].
3. `ctx.summary` holds the method's own numbers; it never overwrites a key the session writes
   [records.Summary raises RuleBroken on the session's keys].
4. `ctx.masks` is re-applied after every optimizer step. Replace it or edit it (the dict or a
   mask tensor) in any hook: the session sees either at the step's end [masks_changed].
5. One step's rows of a table come from one hook: a live view reads a table by step, and rows of
   one step written by two hooks may be committed apart [Recorder.row raises RuleBroken].
6. loss_penalty's tensor is added to the loss and backpropagated; a penalty computed without
   autograd (SLR's and ADMM's, for speed) adds its own gradient in after_backward [check_penalty].
7. Surgery edits modules in place (PGP's shrinking convs): every `ctx.layers` entry stays the
   module the model holds under its name [check_layers, after before_training and each epoch].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch
import torch.nn as nn

from ..config import (
    NM_FORMAT,
    NM_RATE_TOLERANCE,
    ConfigError,
    SessionConfig,
    check_fields,
    coerce,
    nm_rate,
    param,
    parse_nm,
)
from ..masks import Layer, Masks, nm_fits, prunable_layers
from ..records import Recorder, RuleBroken, Summary, declare
from ..schedules import RECOVERY

if TYPE_CHECKING:
    from ..data import DataBundle


@dataclass
class Context:
    """What a hook may read and change. The session owns it and updates step/epoch/batch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: SessionConfig
    data: DataBundle
    device: torch.device
    steps_per_epoch: int
    record: Recorder
    gen: torch.Generator                         # the method's randomness, seeded by the config
    evaluate: Callable[[], dict[str, float]]     # held-out accuracy/loss of the current model
    step: int = 0                                # optimizer steps done so far (0-based)
    epoch: int = 0
    x: torch.Tensor | None = None                # current minibatch
    y: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    layers: list[Layer] = field(default_factory=list)   # the method's prunable layers
    masks: Masks = field(default_factory=dict)           # re-applied after every optimizer step
    summary: dict[str, Any] = field(default_factory=Summary)  # the run summary's extras (rule 2)
    pruned: bool = False                         # set by mark_pruned(); read by the session
    run_dir: Path | None = None                  # the run's artifact folder (None outside a run)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    @property
    def frac(self) -> float:
        """Fraction of training done: step / total_steps."""
        return self.step / max(self.total_steps, 1)

    def param(self, name: str) -> nn.Parameter:
        return dict(self.model.named_parameters())[name]

    def mark_pruned(self) -> None:
        """Say the final mask has just been reached; the session records pruned_accuracy now."""
        self.pruned = True


@dataclass(frozen=True)
class NoParams:
    pass


class Method:
    """Base class: every hook is a no-op. Subclasses override what they need."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    kind: ClassVar[str] = "unstructured"        # "unstructured" (weights) or "filter"
    Params: ClassVar[type] = NoParams
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # The fix the guards suggest when the final mask changed in the session's last epoch.
    recovery_hint: ClassVar[str] = ("give the session more epochs, or use the method's "
                                    "interactive preset, which leaves epochs to recover.")
    # How its pruning shows in the weights, for the charts of achieved sparsity (exact zeros):
    # "hard" zeros as it goes; "soft" keeps pruned weights trainable (shrunk or zeroed, free
    # to regrow) until the mask is final; "deferred" zeroes nothing until one hard prune.
    zeros: ClassVar[str] = "hard"
    # A filter method that also prunes transformers' structures (attention heads, MLP neurons).
    structures: ClassVar[bool] = False

    def __init__(self, params: Any = None) -> None:
        self.p = params if params is not None else self.Params()

    def select_layers(self, model: nn.Module) -> list[Layer]:
        """The layers this method prunes (filter methods: convs; unstructured: conv + linear);
        the session calls it once and hands the result to every hook as ctx.layers."""
        if self.kind == "filter":
            return prunable_layers(model, linears=False, first_conv=True)
        return prunable_layers(model, first_conv=False, last_linear=False)

    def check(self, model: nn.Module) -> None:
        """Raise ConfigError if this method cannot run on `model`."""
        if (self.kind == "filter" and not self.structures
                and getattr(model, "modality", None) is not None):
            # transformers.py's models: their units are heads and MLP neurons, not conv filters
            raise ConfigError(f"{self.name} prunes conv filters, and this model is a "
                              f"transformer (its structures are attention heads and MLP "
                              f"neurons, which {self.name} does not prune yet); pick l2_filter or "
                              f"an unstructured method (l1, gmp, ...), or a conv model.")
        if (self.kind == "filter" and getattr(model, "modality", None) is None
                and not any(isinstance(m, nn.Conv2d) for m in model.modules())):
            raise ConfigError(f"{self.name} prunes conv filters, but this model has no "
                              f"convolutions; pick a conv model or an unstructured method.")
        if self.pattern is not None and not self.select_layers(model):
            n, m = self.pattern
            raise ConfigError(f"nm={n}:{m}: no layer {self.name} prunes on this model has an "
                              f"input dimension that is a multiple of {m}, so nothing could be "
                              f"pruned; pick a pattern with a smaller M or another model.")

    @property
    def pattern(self) -> tuple[int, int] | None:
        """The N:M pattern of the `nm` parameter (None: no pattern, or the method takes none)."""
        return parse_nm(getattr(self.p, "nm", ""))

    def patterned(self, layers: list[Layer]) -> list[Layer]:
        """`layers` less those the N:M pattern cannot group (input dimension not a multiple of
        M), which stay dense and are named in `left_dense`; all of them without a pattern."""
        self.left_dense: list[str] = []
        if self.pattern is None:
            return layers
        m = self.pattern[1]
        kept = [l for l in layers if nm_fits(l.module.weight.shape, m)]
        self.left_dense = [f"{l.name} ({l.module.weight.shape[1]} input "
                           f"{'channels' if l.is_conv else 'features'})"
                           for l in layers if l not in kept]
        return kept

    def pattern_summary(self) -> dict[str, Any]:
        """The run summary's account of the N:M pattern (nothing without one)."""
        if self.pattern is None:
            return {}
        n, m = self.pattern
        out: dict[str, Any] = {"nm": f"{n}:{m}"}
        if getattr(self, "left_dense", None):
            out["nm_dense_layers"] = (f"{', '.join(self.left_dense)}: left dense, the input "
                                      f"dimension is not a multiple of {m}")
        return out

    def target(self, ctx: Context) -> float | None:
        """Sparsity of the prunable weights the schedule asks for at ctx.step (None: no target)."""
        return None

    @classmethod
    def schedule(cls, config: SessionConfig, params: Any) -> pd.DataFrame:
        """Preview of the schedule before running: columns epoch, series, value."""
        return pd.DataFrame({"epoch": [0.0, float(config.epochs)], "series": "target sparsity",
                             "value": [config.rate, config.rate]})

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Any) -> float | None:
        """Epoch (on the schedule's axis) from which the final mask is held and the session only
        recovers; None when it is final only at the very end (or never: dense)."""
        return None

    @classmethod
    def preview(cls, config: SessionConfig, params: Any) -> pd.DataFrame:
        """schedule() plus the recovery phase as two rows of series RECOVERY (its start and end
        epoch, value NaN) when the final mask is held before the session's end."""
        df = cls.schedule(config, params)
        start = cls.mask_final(config, params)
        if start is None or start >= config.epochs:
            return df
        band = pd.DataFrame({"epoch": [float(start), float(config.epochs)],
                             "series": RECOVERY, "value": float("nan")})
        return pd.concat([df, band], ignore_index=True)

    def before_training(self, ctx: Context) -> None:
        pass

    def loss_penalty(self, ctx: Context) -> torch.Tensor | None:
        return None

    def after_backward(self, ctx: Context) -> None:
        pass

    def after_step(self, ctx: Context) -> None:
        pass

    def end_of_epoch(self, ctx: Context) -> None:
        pass


def masks_signature(masks: Masks) -> tuple:
    """`masks` and each mask with its version counter, as masks_changed compares them (the
    tensors are held, so no id is reused while the session looks)."""
    return masks, tuple((k, m, _version(m)) for k, m in masks.items())


def _version(mask: torch.Tensor) -> int:
    """torch's count of in-place edits of `mask` (-1 for an inference tensor, which keeps none
    and which no edit outside inference mode may change)."""
    return -1 if mask.is_inference() else mask._version


def masks_changed(seen: tuple | None, masks: Masks) -> bool:
    """Whether `masks` was replaced, gained or lost a key, or had a mask tensor replaced or
    edited in place since masks_signature took `seen` (rule 4)."""
    if seen is None or seen[0] is not masks or len(seen[1]) != len(masks):
        return True
    return any(k != k2 or m is not m2 or _version(m) != v
               for (k, m), (k2, m2, v) in zip(masks.items(), seen[1]))


def check_penalty(method: Method, penalty: torch.Tensor | None) -> None:
    """RuleBroken when a penalty without autograd has no after_backward to add its gradient
    (rule 6): it would change the loss curve and nothing else."""
    if (penalty is not None and not penalty.requires_grad
            and type(method).after_backward is Method.after_backward):
        raise RuleBroken(f"{method.name or type(method).__name__}: loss_penalty returned a "
                         f"tensor without a gradient and after_backward adds none, so the "
                         f"penalty cannot pull the weights (methods/base.py, rule 6).")


def check_layers(ctx: Context) -> None:
    """RuleBroken when a ctx.layers entry is no longer the module the model holds under its
    name (rule 7): the masks, records and surgery would miss the live layer."""
    for layer in ctx.layers:
        try:
            live = ctx.model.get_submodule(layer.name)
        except AttributeError:
            live = None
        if live is not layer.module:
            raise RuleBroken(f"layer {layer.name} of ctx.layers is no longer the model's "
                             f"{layer.name}: edit modules in place (surgery.py) or rebuild "
                             f"ctx.layers in the same hook (methods/base.py, rule 7).")


SUMMARY = declare("summary", {                 # pattern_summary's keys, any method with `nm`
    "nm": "the N:M pattern pruned to",
    "nm_dense_layers": "the layers left dense, and why (input dimension not a multiple of M)",
})
REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    assert cls.name and cls.name not in REGISTRY, cls.name
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    from . import load_all

    load_all()
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; use one of {', '.join(sorted(REGISTRY))} "
                          f"(`python -m pruneviz methods` lists them with their parameters).")
    return REGISTRY[name]


def make_params(method: type[Method], values: dict[str, Any]) -> Any:
    """Build and validate a method's Params from names to values (strings are parsed)."""
    fields = {f.name: f for f in dataclasses.fields(method.Params)}
    unknown = set(values) - set(fields)
    if "nm" in unknown:
        raise ConfigError(no_pattern(method))
    if unknown:
        known = ", ".join(fields) or "none"
        raise ConfigError(f"{method.name} has no parameter {', '.join(sorted(unknown))}; "
                          f"its parameters are: {known}.")
    defaults = method.Params()
    parsed = {}
    for k, v in values.items():
        default = getattr(defaults, k)
        parsed[k] = coerce(v, default, k) if isinstance(v, str) else v
    params = method.Params(**parsed)
    check_fields(params)
    return params


def apply_preset(config: SessionConfig, preset: str) -> SessionConfig:
    """The config with a method preset's session fields and method parameters applied."""
    method = get_method(config.method)
    if preset not in method.presets:
        raise ConfigError(f"{method.name} has no preset {preset!r}; it has: "
                          f"{', '.join(method.presets) or 'none'}.")
    session_fields = {f.name for f in dataclasses.fields(SessionConfig)}
    values = method.presets[preset]
    session = {k: v for k, v in values.items() if k in session_fields}
    params = {**config.params, **{k: v for k, v in values.items() if k not in session_fields}}
    return config.replace(**session, params=params)


# -- N:M patterns -----------------------------------------------------------------------------
def nm_field() -> str:
    """The `nm` parameter of the methods that can prune to an N:M pattern."""
    return param("", f"N:M semi-structured sparsity: {NM_FORMAT}, in every group of M "
                     f"consecutive weights along the input dimension; the rate is then 1 - N/M. "
                     f"Empty = no pattern. Layers whose input dimension is not a multiple of M "
                     f"stay dense.", check=parse_nm)


def takes_pattern(method: type[Method]) -> bool:
    """Whether `method` has the `nm` parameter."""
    return any(f.name == "nm" for f in dataclasses.fields(method.Params))


def pattern_methods() -> list[str]:
    """The registered methods that take an `nm` pattern."""
    from . import load_all

    return sorted(n for n, cls in load_all().items() if takes_pattern(cls))


def no_pattern(method: type[Method]) -> str:
    """Why `method` takes no N:M pattern, and which methods do."""
    if method.kind == "filter":
        why = (f"{method.name} removes whole filters, and an N:M pattern is made of single "
               f"weights")
    elif method.name == "global_l1":
        why = ("global_l1 ranks all layers together, while an N:M pattern prunes every layer "
               "by the same 1 - N/M (l1 is its one-shot N:M twin)")
    elif method.name == "dense":
        why = "dense prunes nothing"
    else:
        why = f"{method.name} has no N:M mode"
    return (f"nm (an N:M pattern) does not apply to {method.name}: {why}. Methods that take it: "
            f"{', '.join(pattern_methods())}.")


def check_pattern(config: SessionConfig) -> None:
    """ConfigError unless config's `nm` is well formed, its method takes one and the rate agrees
    with it (1 - N/M: the rate follows the pattern)."""
    method = get_method(config.method)
    if not takes_pattern(method):
        raise ConfigError(no_pattern(method))
    pattern = parse_nm(config.params["nm"])
    if pattern is None:
        return
    rate = nm_rate(pattern)
    if abs(config.rate - rate) > NM_RATE_TOLERANCE:
        n, m = pattern
        raise ConfigError(f"nm={n}:{m} keeps {n} of every {m} weights, so it prunes {rate:.4g} of "
                          f"every layer, but the rate is {config.rate:g}: leave the rate out (it "
                          f"follows the pattern) or set it to {rate:.4g}.")
