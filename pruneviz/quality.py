"""What a run's quality is measured by, and which way is better: one place for every reader.

Classifiers record held-out accuracy (higher is better); language models record held-out
perplexity (exp of the mean next-token loss; lower is better) beside their next-token accuracy.
Summary keys follow `<phase>_<key>` (dense_, pruned_, final_), scalars `test_<key>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quality:
    key: str                 # "accuracy" -> final_accuracy, dense_accuracy, test_accuracy
    label: str               # as a chart or table names it
    higher_is_better: bool

    def drop(self, dense: float | None, final: float | None) -> float | None:
        """How much worse `final` is than `dense`, positive when worse (accuracy: points lost;
        perplexity: the rise), None when either is unknown."""
        if dense is None or final is None or not (math.isfinite(dense) and math.isfinite(final)):
            return None
        return dense - final if self.higher_is_better else final - dense

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


ACCURACY = Quality("accuracy", "accuracy", True)
PERPLEXITY = Quality("perplexity", "perplexity", False)
QUALITIES = {q.key: q for q in (ACCURACY, PERPLEXITY)}


def quality_for(dataset: str) -> Quality:
    """The quality measure of runs on `dataset`: perplexity for text, accuracy for images."""
    from .text import is_text

    return PERPLEXITY if is_text(dataset) else ACCURACY


def quality_of(summary: dict[str, Any]) -> Quality:
    """The quality measure of a run from its summary (or a runs-table row)."""
    value = summary.get("final_perplexity", summary.get("dense_perplexity"))
    if value is not None and value == value:
        return PERPLEXITY
    return quality_for(str(summary.get("dataset", "")))


# Compare's trade-off metrics: column -> (label, whether higher is better). The drops are
# positive when worse, so lower is better for both.
COMPARE_METRICS: dict[str, tuple[str, bool]] = {
    "final_accuracy": ("final accuracy", True),
    "accuracy_drop": ("accuracy drop vs dense", False),
    "final_perplexity": ("final perplexity", False),
    "perplexity_rise": ("perplexity rise vs dense", False),
}
