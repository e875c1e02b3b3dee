"""SessionConfig: everything that defines a pruning session, frozen and validated on creation."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Bad user input: the message says what was wrong and how to fix it."""


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple | None = None, step: float | None = None,
          check: Callable[[Any], None] | None = None) -> Any:
    """A dataclass field carrying its help text and widget range (read by the CLI and the forms);
    `check` raises ConfigError for a value no range can describe (check_fields calls it)."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "step": step,
            "check": check}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


@dataclass(frozen=True)
class SessionConfig:
    """One pruning session: dense start, method, budget. Fields are the run's public record."""

    method: str = param("l1", "Registered pruning method (`python -m pruneviz methods`).")
    rate: float = param(0.8, "Target fraction pruned: of weights (unstructured) or of filters per "
                             "prunable layer (filter methods).", min=0.0, max=0.999)
    model: str = param("tiny_cnn", "Model spec: a built-in name (tiny_cnn, resnet20, ...), "
                                   "torchvision:NAME (any torchvision classifier), "
                                   "MODULE:FACTORY or PATH.py:FACTORY (your function returning "
                                   "an nn.Module; importing it runs its code).")
    dataset: str = param("digits", "digits or cifar10_small (embedded), mnist, fashion_mnist, "
                                   "cifar10, cifar100, or folder:PATH for an ImageFolder "
                                   "directory.")
    epochs: int = param(8, "Training budget after the dense start; every method schedules its "
                           "pruning inside it, so methods compare at equal cost.", min=1, max=1000)
    seed: int = param(0, "Seeds weights, data order and method randomness.", min=0, max=2**31 - 1)
    start: str = param("dense", "Start from a trained dense model (cached) or from scratch.",
                       choices=("dense", "scratch"))
    dense_epochs: int = param(0, "Epochs of the dense baseline; 0 picks the dataset's default.",
                              min=0, max=1000)
    batch_size: int = param(64, "Minibatch size.", min=1, max=4096)
    optimizer: str = param("sgd", "Optimizer.", choices=("sgd", "adam"))
    lr: float = param(0.01, "Initial learning rate.", min=1e-6, max=10.0)
    momentum: float = param(0.9, "SGD momentum.", min=0.0, max=0.999)
    nesterov: bool = param(True, "Nesterov momentum (SGD).")
    weight_decay: float = param(5e-4, "L2 weight decay.", min=0.0, max=0.1)
    lr_schedule: str = param("cosine", "LR over the session: cosine to 0, step (x gamma at "
                                       "milestones), or constant.",
                             choices=("cosine", "step", "constant"))
    lr_milestones: tuple[float, ...] = param((0.5, 0.75), "Step schedule milestones as fractions "
                                                         "of the epochs.")
    lr_gamma: float = param(0.1, "Step schedule factor.", min=0.0, max=1.0)
    label_smoothing: float = param(0.0, "Cross-entropy label smoothing.", min=0.0, max=0.5)
    max_steps_per_epoch: int = param(0, "Cap on steps per epoch (0 = the whole training set).",
                                     min=0, max=10**6)
    eval_limit: int = param(0, "Cap on held-out images per evaluation (0 = all), taken from "
                            "every class in turn.", min=0,
                            max=10**7)
    device: str = param("auto", "auto picks CUDA when present, else CPU.",
                        choices=("auto", "cpu", "cuda"))
    data_root: str = param("./data", "Folder holding torchvision datasets.")
    download: bool = param(False, "Allow torchvision to download a missing dataset.")
    augment: str = param("auto", "Random crop (pad 4) + horizontal flip; auto = on for CIFAR.",
                         choices=("auto", "on", "off"))
    holdout: float = param(0.2, "Held-out fraction for datasets without a test split (digits, "
                                "folders).", min=0.05, max=0.5)
    image_size: int = param(32, "Side length folder images are resized to.", min=8, max=512)
    pretrained: bool = param(False, "torchvision models: download ImageNet weights.")
    weights: str = param("", "A state_dict file to start the model from (torch.save("
                             "model.state_dict(), path), or .safetensors); loaded strictly, "
                             "never unpickled.")
    params: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Method parameters (`--param name=value`), validated against the method's Params."})
    name: str = param("", "Optional label shown in lists and legends.")

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0.0 <= self.rate < 1.0:
            raise ConfigError(f"rate is the fraction pruned and must be in [0, 1), got "
                              f"{self.rate}; for example --rate 0.8 prunes 80%.")
        if any(not 0.0 < m < 1.0 for m in self.lr_milestones):
            raise ConfigError("lr_milestones are fractions of the epochs, each in (0, 1).")

    def replace(self, **changes: Any) -> SessionConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}.")
        d = dict(d)
        if "lr_milestones" in d:
            d["lr_milestones"] = tuple(float(m) for m in d["lr_milestones"])
        return cls(**d)

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.rate:g}"


def coerce(value: str, default: Any, name: str) -> Any:
    """Parse a CLI string to the type of a field's default (bool, int, float, str, tuple)."""
    try:
        if isinstance(default, bool):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(float(v) for v in split_list(value))
        return value
    except ValueError:
        kind = {bool: "yes or no", int: "a whole number", float: "a number",
                tuple: "numbers separated by commas"}.get(type(default), "text")
        raise ConfigError(f"{name} expects {kind}, got {value!r}.") from None


# A run's name labels lists, legends and tables; a megabyte one made Compare take 40 s to draw.
MAX_NAME_CHARS = 200


def check_name(name: str) -> str:
    """`name` if it fits a run's label (at most MAX_NAME_CHARS characters), else ConfigError
    saying how long it is; not checked when a stored config is read back, so runs named before
    the limit still open."""
    if len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"a run name is at most {MAX_NAME_CHARS} characters; this one has "
                          f"{len(name):,} ({name[:40]!r}...). Shorten it; notes take longer "
                          f"text.")
    return name


def check_fields(obj: Any) -> None:
    """Validate a dataclass instance against its fields' min/max/choices metadata."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}.")
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}; "
                              f"got {value!r}.")
        if ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"]):
            raise ConfigError(f"{f.name} must be in [{meta.get('min')}, {meta.get('max')}], "
                              f"got {value!r}.")
        if "check" in meta:
            meta["check"](value)


def split_list(text: str) -> list[str]:
    """The items of a comma- (or semicolon-) separated list, trimmed, empty ones dropped."""
    return [v.strip() for v in text.replace(";", ",").split(",") if v.strip()]


def parse_numbers(text: str, name: str, kind: type = float) -> list:
    """A comma-separated list of numbers; ConfigError naming `name` if one is not a number."""
    try:
        return [kind(v) for v in split_list(text)]
    except ValueError:
        raise ConfigError(f"{name} expects comma-separated numbers, got {text!r}.") from None


LAYER_RATES = "layer=rate pairs, for example layer1.0.conv1=0.5,fc=0.2"


def format_layer_rates(rates: dict[str, float], digits: int = 4) -> str:
    """"layer=rate,layer=rate": the per-layer prune rate format (SLR's layer_rates, Inspect)."""
    return ",".join(f"{k}={round(v, digits):g}" for k, v in rates.items())


def parse_layer_rates(text: str) -> dict[str, float]:
    """The inverse of format_layer_rates ({layer name: fraction pruned}, a trailing ".weight"
    dropped); ConfigError saying what is wrong with a malformed item."""
    out: dict[str, float] = {}
    for item in split_list(text):
        name, sep, value = item.partition("=")
        name = name.strip().removesuffix(".weight")
        if not sep or not name:
            raise ConfigError(f"layer_rates takes comma-separated {LAYER_RATES}; got {item!r}.")
        try:
            rate = float(value)
        except ValueError:
            raise ConfigError(f"layer_rates: the rate of {name!r} must be a number in [0, 1) "
                              f"({LAYER_RATES}), got {value.strip()!r}.") from None
        if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
            raise ConfigError(f"layer_rates: the rate of {name!r} is the fraction pruned and "
                              f"must be in [0, 1) ({LAYER_RATES}), got {rate}.")
        if name in out:
            raise ConfigError(f"layer_rates names {name!r} twice; give each layer once.")
        out[name] = rate
    return out


NM_FORMAT = "N:M with whole numbers 0 < N < M, for example 2:4 (keep 2 of every 4 weights)"
NM_RATE_TOLERANCE = 5e-4    # a typed rate of 0.667 agrees with 1:3's 0.6666...


def parse_nm(text: object) -> tuple[int, int] | None:
    """An N:M pattern ("2:4") as (N, M); None for an empty one; ConfigError if malformed."""
    text = str(text).strip()
    if not text:
        return None
    n, _, m = text.partition(":")
    try:
        pattern = int(n), int(m)
    except ValueError:
        raise ConfigError(f"nm takes {NM_FORMAT}; got {text!r}.") from None
    if not 0 < pattern[0] < pattern[1]:
        raise ConfigError(f"nm takes {NM_FORMAT}; got {text!r}: N must be at least 1 (0 would "
                          f"empty every layer) and below M (N = M would prune nothing).")
    # Said in the pattern's terms here: the rate check would name a rate (1 - N/M) never typed.
    top = SessionConfig.__dataclass_fields__["rate"].metadata["max"]
    if nm_rate(pattern) > top:
        raise ConfigError(f"nm={text} is out of range: it keeps N/M = "
                          f"{pattern[0] / pattern[1]:.3g} of every layer's weights, less than "
                          f"the {1 - top:g} a run must keep (it prunes at most {top:g}); pick a "
                          f"pattern with N/M of at least {1 - top:g}, for example 2:4 or 1:8.")
    return pattern


def nm_rate(pattern: tuple[int, int]) -> float:
    """The fraction an N:M pattern prunes from every layer it applies to: 1 - N/M."""
    return 1.0 - pattern[0] / pattern[1]
