"""Tidy record types a session emits, and the glossary of their keys (a public API).

Four long-format tables, each row stamped with the optimizer step and epoch it describes:
- scalars: (step, epoch, key, value)                  run-level curves
- layers:  (step, epoch, layer, key, value)           one row per prunable layer
- filters: (step, epoch, layer, filter, key, value)   one row per conv output channel
- rows:    (step, epoch, table, data)                 method tables (JSON dict per row), each
                                                      declared once as a `Table` in its family's
                                                      records.py: the engine writes, the view reads
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Keys every session writes; method families declare their own in methods/<family>/records.py.
SCALAR_KEYS = {
    "loss": "training loss of the step's minibatch (cross-entropy + method penalty)",
    "ce": "cross-entropy part of the training loss",
    "train_accuracy": "top-1 accuracy on the step's minibatch",
    "lr": "learning rate used by the step",
    "step_time": "seconds the step took (forward, backward, hooks, optimizer)",
    "wall_time": "seconds since the session started",
    "sparsity": "fraction of zeros over the prunable weights (biases, BN and unpruned layers "
                "excluded)",
    "global_sparsity": "fraction of zeros over all parameters",
    "target_sparsity": "sparsity the method's schedule asks for at this step",
    "test_accuracy": "top-1 accuracy on the held-out set (per epoch)",
    "test_top5": "top-5 accuracy on the held-out set (per epoch, > 5 classes)",
    "test_loss": "cross-entropy on the held-out set (per epoch; a language model's: per token)",
    "test_perplexity": "language models: exp(test_loss), the held-out perplexity (per epoch)",
    "dense_perplexity": "language models: held-out perplexity of the dense start (once)",
    "pruned_perplexity": "language models: held-out perplexity once the final mask is reached",
}
LAYER_KEYS = {
    "sparsity": "fraction of zero weights in the layer",
    "keep_rate": "fraction of filters (output channels) with a nonzero weight",
    "norm": "L2 norm of the layer's weight",
}


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
    """Collects records stamped with the session's current step and epoch until flushed."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.pending: list[Record] = []

    def scalar(self, key: str, value: float) -> None:
        self.pending.append(Scalar(self.step, self.epoch, key, float(value)))

    def scalars(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.scalar(key, value)

    def layer(self, layer: str, key: str, value: float) -> None:
        self.pending.append(LayerRow(self.step, self.epoch, layer, key, float(value)))

    def filters(self, layer: str, key: str, values: Any) -> None:
        """One row per filter; `values` is a 1-D tensor or sequence indexed by filter."""
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        self.pending.extend(FilterRow(self.step, self.epoch, layer, i, key, float(v))
                            for i, v in enumerate(values))

    def row(self, table: str, **data: Any) -> None:
        self.pending.append(Row(self.step, self.epoch, table, data))

    def take(self) -> list[Record]:
        out, self.pending = self.pending, []
        return out


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
