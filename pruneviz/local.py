"""Training a claimed run in this process, as every backend finally does (a worker here, or a
Ray task on its node): `run_session`, or `run_measured` with the metrics panel. Apart from
backends.py so the Ray task can train without importing the backends that import it."""

from __future__ import annotations

from typing import Any

from .config import SessionConfig
from .store import RunSink


def run_measured(config: SessionConfig, store: RunSink, **kw: Any) -> dict[str, Any]:
    """`session.run_session`, with the metrics panel of a completed run in its summary; measured
    before the run is marked completed, so a run stopped while measuring never shows completed
    without its panel (the Ray task measures through this too, on its node)."""
    from . import report
    from .session import trained

    with trained(config, store, **kw) as summary:
        if summary["status"] == "completed":
            summary["panel"] = report.panel_for_folder(
                store.run_dir(summary["run_id"]), config, tuple(summary["input_shape"]),
                summary["num_classes"], summary)
    if summary["status"] != "completed":      # its end could not be committed
        summary.pop("panel", None)
    return summary


def train_local(config: SessionConfig, store: RunSink, *, panel: bool = True,
                **kw: Any) -> dict[str, Any]:
    """The `local` backend: train here, with the panel (`panel=False`: a sweep's runs, which
    measure theirs when first asked)."""
    from .session import run_session

    return (run_measured if panel else run_session)(config, store, **kw)
