"""round_to: every filter method's kept filter counts rounded to a multiple of N, the channel
block the device's convolution kernels compute in (oneDNN: 16 floats per AVX-512 vector, 8 per
AVX2 one; GPU kernels tile output channels by 8), so that the speed the FLOPs promise is there.

A conv with 10 filters runs the loop of one with 16: the padding is computed and thrown away.
The schedules round the count they ask for (schedules.round_kept; below one block, to a divisor
of N) before the method's own criterion picks which filters go, so the rounding changes how
many, never which. `down` (the default) prunes a little more than asked, never less; `nearest`
keeps closer to the asked rate and may prune less. docs/methods.md, "round_to".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from ..config import ConfigError, SessionConfig, param
from ..metrics import cpu_vector_block
from ..records import declare
from ..schedules import ROUND_MODES, round_kept
from .base import Context
from .structures import label, units, uses_structures

AUTO = "auto"
CUDA_BLOCK = 8           # tensor-core and cuDNN tiles take output channels in multiples of 8
SUMMARY = declare("summary", {              # RoundTo's keys, any filter method that rounds
    "round_to": "the block kept counts were rounded to (auto resolved on the run's device)",
    "round_to_asked": "round_to as given (auto or a number)",
    "round_mode": "down or nearest",
    "filter_rate_achieved": "filters pruned at the end as a share of all (rounding moves it)",
})


def parse(value: Any) -> int | None:
    """round_to as a block size (None for auto); ConfigError when it is neither."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    try:
        n = int(str(value).strip()) if not isinstance(value, bool) else 0
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"round_to must be a positive whole number of filters (16 rounds "
                          f"every kept filter count to a multiple of 16, 1 = no rounding) or "
                          f"auto (this device's kernel block); got {value!r}.")
    return n


def asks_rounding(params: Any) -> bool:
    """Whether a method's params ask for round_to (a number other than 1, or auto): the
    internals views draw the rounded counts then."""
    return str(getattr(params, "round_to", "1")).strip() != "1"


def round_to_field() -> str:
    return param("1", "Round every layer's kept filter count to a multiple of this, or below "
                      "it to a divisor of it (the kernels' channel block: 10 filters cost what "
                      "16 do); auto = this device's block (16 on AVX-512, 8 on AVX2 and CUDA); "
                      "1 = no rounding.", check=parse)


def round_mode_field() -> str:
    return param("down", "How round_to rounds: down prunes a little more than the rate asks, "
                         "never less; nearest takes the closer multiple (may prune less).",
                 choices=ROUND_MODES)


def auto_block(device: torch.device) -> int:
    """The channel block of `device`'s convolution kernels (1 when this CPU's is unknown)."""
    if device.type == "cuda":
        return CUDA_BLOCK
    return cpu_vector_block()[1] or 1


def resolve(value: Any, device: torch.device) -> int:
    """round_to as the block a run on `device` rounds to."""
    n = parse(value)
    return auto_block(device) if n is None else n


def check_widths(value: Any, widths: dict[str, int]) -> None:
    """ConfigError when an explicit round_to exceeds a prunable conv's filters (auto leaves such
    a layer at the method's own count)."""
    n = parse(value)
    if n is None or not widths:
        return
    name = min(widths, key=widths.__getitem__)
    if n > widths[name]:
        raise ConfigError(f"round_to={n} is more than the {widths[name]} {label(name)}s of "
                          f"{name}, so it can keep no multiple of {n}; use "
                          f"round_to={widths[name]} or less, "
                          f"or auto (a layer narrower than its block keeps a divisor of it).")


def round_to_problem(config: SessionConfig) -> str | None:
    """What check_widths says of the config's round_to on its model, found on a model built
    on the meta device (cheap on every redraw of a form); None when it fits."""
    from .base import get_method, make_params

    if str(config.params.get("round_to", "1")).strip() in ("1", AUTO):
        return None
    try:
        cls = get_method(config.method)
        params = make_params(cls, config.params)
        widths = _widths(cls, config, params)
    except Exception:        # a bad value or model is reported by the form's own checks
        return None
    try:
        check_widths(params.round_to, dict(widths))
    except ConfigError as e:
        return str(e)
    return None


class RoundTo:
    """Mixin of the filter methods: the resolved block, the rounding and the achieved rate."""

    block = 1
    p: Any
    select_layers: Callable[[nn.Module], list]

    def check(self, model: nn.Module) -> None:
        super().check(model)  # type: ignore[misc]
        check_widths(self.p.round_to, dict(filter_widths(self, model)))

    def resolve_round_to(self, ctx: Context) -> None:
        """Resolve auto for this run's device; the summary keeps both, so the run can be
        repeated on another machine with the same N."""
        self.block = resolve(self.p.round_to, ctx.device)
        ctx.summary.update(round_to=self.block, round_to_asked=str(self.p.round_to),
                           round_mode=self.p.round_mode)

    def rounded(self, kept: int, n: int) -> int:
        return round_kept(kept, n, self.block, self.p.round_mode)

    @staticmethod
    def achieved(ctx: Context, pruned: int, total: int) -> None:
        """The fraction of filters pruned, beside the rate asked (rounding moves it)."""
        ctx.summary["filter_rate_achieved"] = pruned / total if total else 0.0


# -- the schedule preview -----------------------------------------------------------------------
def _widths(method: type, config: SessionConfig, params: Any) -> tuple[tuple[str, int], ...]:
    """(name, filters) of the layers `method` prunes in the config's model."""
    from ..data import input_shape

    return _layer_widths(method, config.model, input_shape(config.dataset, config.image_size),
                         params)


@functools.lru_cache(maxsize=32)
def _layer_widths(method: type, model: str, shape: tuple[int, int, int], params: Any
                  ) -> tuple[tuple[str, int], ...]:
    from ..modelspec import build_model

    with torch.device("meta"):       # no memory, no initialisation: cheap on every redraw
        net = build_model(model, shape, 10)
    return filter_widths(method(params), net)


def filter_widths(method: Any, model: nn.Module) -> tuple[tuple[str, int], ...]:
    """(name, count) of what `method` rounds: each pruned conv's filters, or on a transformer
    each block's heads and its MLP neurons (methods/structures.py)."""
    if uses_structures(model):
        return tuple((u.name, u.count) for u in units(model))
    return tuple((l.name, l.module.weight.shape[0]) for l in method.select_layers(model))


def preview_block(config: SessionConfig, params: Any) -> int:
    """round_to for the schedule preview: auto resolved for the device the config asks for."""
    from ..session import resolve_device

    try:
        device = resolve_device(config.device)
    except ConfigError:
        device = torch.device("cpu")
    return resolve(params.round_to, device)


def preview_rows(method: type, config: SessionConfig, params: Any,
                 plan: list[tuple[float, Callable[[int], int]]], sparsity: bool
                 ) -> list[tuple[float, str, float]]:
    """Schedule-preview rows of the model's filters kept (or pruned, `sparsity`) as a share once
    rounded, at each (epoch, n -> kept count before rounding) of `plan`; none without rounding."""
    block = preview_block(config, params)
    try:
        widths = [n for _, n in _widths(method, config, params)]
    except Exception:        # a model that cannot be built here says so when it runs
        return []
    if block <= 1 or not widths:
        return []
    total = sum(widths)
    kept = [(x, sum(round_kept(count(n), n, block, params.round_mode) for n in widths))
            for x, count in plan]
    auto = " (auto)" if parse(params.round_to) is None else ""
    series = (f"{'pruned' if sparsity else 'kept'} filters, rounded to {block}{auto}: "
              f"{kept[-1][1]} of {total} kept ({config.model})")
    return [(x, series, 1.0 - k / total if sparsity else k / total) for x, k in kept]
