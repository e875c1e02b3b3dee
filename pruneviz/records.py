"""Tidy record types a session emits, and the declared keys of each kind (a public API).

Four long-format tables, each row stamped with the optimizer step and epoch it describes:
- scalars: (step, epoch, key, value)                  run-level curves
- layers:  (step, epoch, layer, key, value)           one row per prunable layer
- filters: (step, epoch, layer, filter, key, value)   one row per conv output channel
- rows:    (step, epoch, table, data)                 method tables (JSON dict per row), each
                                                      declared once as a `Table` in its family's
                                                      records.py: the engine writes, the view reads
plus the run's summary (one dict per run). Every scalar, layer, filter and summary key is
declared once with what it holds: here for the keys every session writes, in the family's
records.py (`SCALARS = declare("scalar", {...})`) for a method's own. Writing a key nobody
declared raises under tests (PRUNEVIZ_STRICT_KEYS=1, set by tests/conftest.py) and warns once
otherwise; `glossary(kind)` is the one list of them all.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

KINDS = ("scalar", "layer", "filter", "summary")
SESSION = __name__                    # the owner of the keys every session writes
STRICT_ENV = "PRUNEVIZ_STRICT_KEYS"
# kind -> key -> owner (the declaring module) -> what the key holds
_DECLARED: dict[str, dict[str, dict[str, str]]] = {k: {} for k in KINDS}
_warned: set[tuple[str, str]] = set()


class UndeclaredKey(KeyError):
    """A record key no records.py declares (a column name is a public API)."""

    def __str__(self) -> str:         # KeyError would quote the message
        return str(self.args[0])


def declare(kind: str, keys: dict[str, str], owner: str | None = None) -> dict[str, str]:
    """Declare `keys` (key -> what it holds) of record `kind` for `owner` (default: the calling
    module); returns `keys`, the owner's glossary. One line per key is all a new key takes."""
    if kind not in KINDS:
        raise ValueError(f"record kind {kind!r}: use one of {', '.join(KINDS)}")
    owner = owner or sys._getframe(1).f_globals["__name__"]
    for key, help_text in keys.items():
        if not help_text:
            raise ValueError(f"{owner} declares {kind} key {key!r} without saying what it holds")
        _DECLARED[kind].setdefault(key, {})[owner] = help_text
    return keys


def declared(kind: str, owner: str | None = None) -> set[str]:
    """The keys of `kind` declared by anyone (or by `owner` only)."""
    return {k for k, owners in _DECLARED[kind].items() if owner is None or owner in owners}


def glossary(kind: str) -> dict[str, str]:
    """Every declared key of `kind` with what it holds (owners' texts joined when several
    declare it), in key order: the one glossary, generated from the declarations."""
    return {k: " | ".join(dict.fromkeys(_DECLARED[kind][k].values()))
            for k in sorted(_DECLARED[kind])}


def strict() -> bool:
    """Whether an undeclared key raises (tests) rather than warns once (users' runs)."""
    return os.environ.get(STRICT_ENV, "") == "1"


def where_to_declare(owner: str | None) -> str:
    """The file and line that declares a key for `owner` (a method's module, or None)."""
    if owner and owner.startswith("pruneviz.methods.") and owner.count(".") >= 3:
        family = owner.split(".")[2]
        return f"pruneviz/methods/{family}/records.py (one line in its declare(...) dict)"
    if owner and owner.startswith("pruneviz.methods."):
        return f"{owner.replace('.', '/')}.py (a declare(...) call beside the method)"
    return "the writing family's records.py, or pruneviz/records.py for a key every session writes"


def check_key(kind: str, key: str, owner: str | None = None) -> None:
    """Raise UndeclaredKey (strict) or warn once when `key` of `kind` is not declared."""
    if key in _DECLARED[kind]:
        return
    message = (f"{kind} key {key!r} is declared nowhere: declare it with what it holds in "
               f"{where_to_declare(owner)}, e.g. {kind.upper()}S = declare({kind!r}, "
               f"{{{key!r}: 'what it holds'}}); docs/architecture.md, 'Record keys'.")
    if strict():
        raise UndeclaredKey(message)
    if (kind, key) not in _warned:
        _warned.add((kind, key))
        warnings.warn(message, stacklevel=3)


# Keys every session writes (loop.py, session.py, backends.py); methods declare their own.
SCALARS = declare("scalar", {
    "loss": "training loss of the step's minibatch (cross-entropy + method penalty)",
    "ce": "cross-entropy part of the training loss (recorded when the method adds a penalty)",
    "train_accuracy": "top-1 accuracy on the step's minibatch",
    "lr": "learning rate used by the step",
    "step_time": "seconds the step took (forward, backward, hooks, optimizer)",
    "wall_time": "seconds since the session started",
    "sparsity": "fraction of zeros over the prunable weights (biases, BN and unpruned layers "
                "excluded)",
    "target_sparsity": "sparsity the method's schedule asks for at this step",
    "test_accuracy": "top-1 accuracy on the held-out set (per epoch)",
    "test_top5": "top-5 accuracy on the held-out set (per epoch, > 5 classes)",
    "test_loss": "cross-entropy on the held-out set (per epoch; a language model's: per token)",
    "test_perplexity": "language models: exp(test_loss), the held-out perplexity (per epoch)",
    "dense_accuracy": "held-out top-1 accuracy of the dense start, before any hook (step 0)",
    "dense_top5": "held-out top-5 accuracy of the dense start (> 5 classes)",
    "dense_loss": "held-out cross-entropy of the dense start",
    "pruned_accuracy": "held-out top-1 accuracy when the final mask was first reached",
    "pruned_top5": "held-out top-5 accuracy then (> 5 classes)",
    "pruned_loss": "held-out cross-entropy then",
    "dense_perplexity": "language models: held-out perplexity of the dense start (once)",
    "pruned_perplexity": "language models: held-out perplexity once the final mask is reached",
})
LAYERS = declare("layer", {
    "sparsity": "fraction of zero weights in the layer",
    "keep_rate": "fraction of filters (output channels) with a nonzero weight",
    "norm": "L2 norm of the layer's weight",
})
FILTERS = declare("filter", {})
SUMMARY = declare("summary", {
    "run_id": "the run", "method": "its method", "model": "its model", "dataset": "its dataset",
    "rate": "the target prune rate", "device": "the torch device it trained on",
    "dense_run": "the dense baseline run it started from (None: from scratch)",
    "input_shape": "one example's shape", "num_classes": "classes of the dataset",
    "train_size": "training examples", "test_size": "held-out examples",
    "eval_size": "held-out examples each evaluation saw (eval_limit below the set's size)",
    "skipped_images": "unreadable or oversized files of an image folder left out",
    "skipped_first": "the first five of them",
    "flops_dense": "FLOPs of the dense model (2 per multiply-add, one input)",
    "dense_accuracy": "held-out top-1 accuracy of the dense start",
    "pruned_accuracy": "held-out top-1 accuracy when the final mask was first reached",
    "final_accuracy": "held-out top-1 accuracy at the end",
    "final_top5": "held-out top-5 accuracy at the end (> 5 classes)",
    "dense_perplexity": "language models: held-out perplexity of the dense start",
    "pruned_perplexity": "language models: held-out perplexity when the final mask was first "
                         "reached",
    "final_perplexity": "language models: held-out perplexity at the end",
    "heads_removed": "transformers: attention heads removed when the model was compacted",
    "neurons_removed": "transformers: MLP hidden neurons removed when the model was compacted",
    "sparsity": "fraction of zeros over the prunable weights at the end",
    "global_sparsity": "fraction of zeros over all parameters at the end, against the dense "
                       "parameter count",
    "params_dense": "parameters of the dense model", "params_total": "parameters at the end",
    "params_nonzero": "nonzero parameters at the end",
    "flops": "FLOPs of the final model as stored (zeros still multiplied)",
    "flops_effective": "FLOPs the final model's nonzero weights need",
    "flops_compact": "FLOPs with dead filters physically removed (filter methods)",
    "params_compact": "parameters with dead filters physically removed",
    "filters_removed": "filters physically removed against the dense start",
    "filters_compact": "filters left in the compact model",
    "compact_error": "why the compact model could not be built (no size is guessed)",
    "wall_s": "seconds the session trained", "steps": "optimizer steps trained",
    "recovery_epochs": "epochs trained after the last mask change (None: never pruned)",
    "warnings": "what the guards found wrong with the result (guards.py)",
    "status": "completed, interrupted, diverged or failed",
    "backend": "where it trained (local, ray)", "host": "the host that trained it",
    "pid": "the process that trained it", "error": "why it did not complete",
    "storage_error": "the error was the disk's (records kept)",
    "config_error": "the error was bad input found mid-run",
    "panel": "the metrics panel (metrics.py, report.py), measured after training",
})


@dataclass(frozen=True)
class Scalar:
    step: int
    epoch: int
    key: str
    value: float


@dataclass(frozen=True)
class LayerRow:
    step: int
    epoch: int
    layer: str
    key: str
    value: float


@dataclass(frozen=True)
class FilterRow:
    step: int
    epoch: int
    layer: str
    filter: int
    key: str
    value: float


@dataclass(frozen=True)
class Row:
    step: int
    epoch: int
    table: str
    data: dict[str, Any] = field(default_factory=dict)


Record = Scalar | LayerRow | FilterRow | Row


class Recorder:
    """Collects records stamped with the session's current step and epoch until flushed; every
    key must be declared (check_key)."""

    def __init__(self, owner: str | None = None) -> None:
        self.step = 0
        self.epoch = 0
        self.pending: list[Record] = []
        self.owner = owner              # the writing method's module, named in key errors

    def scalar(self, key: str, value: float) -> None:
        check_key("scalar", key, self.owner)
        self.pending.append(Scalar(self.step, self.epoch, key, float(value)))

    def scalars(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.scalar(key, value)

    def layer(self, layer: str, key: str, value: float) -> None:
        check_key("layer", key, self.owner)
        self.pending.append(LayerRow(self.step, self.epoch, layer, key, float(value)))

    def filters(self, layer: str, key: str, values: Any) -> None:
        """One row per filter; `values` is a 1-D tensor or sequence indexed by filter."""
        check_key("filter", key, self.owner)
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        self.pending.extend(FilterRow(self.step, self.epoch, layer, i, key, float(v))
                            for i, v in enumerate(values))

    def row(self, table: str, **data: Any) -> None:
        self.pending.append(Row(self.step, self.epoch, table, data))

    def take(self) -> list[Record]:
        out, self.pending = self.pending, []
        return out


class RuleBroken(RuntimeError):
    """A method broke one of the engine's rules (methods/base.py); the message names it."""


class Summary(dict):
    """A method's additions to the run summary (ctx.summary): every key declared, and none of
    the keys the session writes itself (the method's would silently replace them)."""

    def __init__(self, owner: str | None = None) -> None:
        super().__init__()
        self.owner = owner

    def __setitem__(self, key: str, value: Any) -> None:
        if SESSION in _DECLARED["summary"].get(key, {}):
            raise RuleBroken(f"summary key {key!r} is the session's own; a method's summary "
                             f"key would overwrite it: name it otherwise and declare it in "
                             f"{where_to_declare(self.owner)} (methods/base.py, rule 2).")
        check_key("summary", key, self.owner)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


@dataclass(frozen=True)
class Table:
    """A method table: its store name and its columns with what each holds. Declared once in the
    family's records.py; the engine writes rows through it, the view reads its columns."""

    name: str
    columns: dict[str, str]

    def write(self, rec: Recorder, **data: Any) -> None:
        """Record one row stamped with the recorder's step; a column not declared is an error."""
        unknown = set(data) - set(self.columns)
        if unknown:
            raise KeyError(f"table {self.name} declares no column {', '.join(sorted(unknown))}")
        rec.row(self.name, **data)

    @property
    def names(self) -> list[str]:
        return list(self.columns)
