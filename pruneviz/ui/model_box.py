"""The model box of the forms: a spec that is not built in is built (and traced) once per
spec, weights file and dataset shape, and what was found is said inline under the form; a spec
or weights file that cannot work is an inline error that keeps Run disabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ..config import ConfigError, SessionConfig
from ..data import FOLDER_PREFIX, input_shape
from ..models import MODELS
from ..modelspec import describe
from .text import plain


def class_count(dataset: str) -> int | None:
    """Classes of a dataset without loading it (folders: their class subfolders)."""
    if dataset.startswith(FOLDER_PREFIX):
        root = Path(dataset[len(FOLDER_PREFIX):]).expanduser()
        root = root / "train" if (root / "train").is_dir() else root
        try:
            return sum(1 for p in root.iterdir() if p.is_dir()) or None
        except OSError:
            return None
    return 100 if dataset == "cifar100" else 10


def file_stamp(path: str) -> float:
    """A file's modification time (0 when there is none): a cache key that changes when the
    user's model file or weights change."""
    try:
        return Path(path).expanduser().stat().st_mtime if path else 0.0
    except OSError:
        return 0.0


@st.cache_data(max_entries=32, show_spinner="Building and tracing the model...")
def _found(spec: str, shape: tuple[int, int, int], classes: int, weights: str, stamps: tuple
           ) -> dict[str, Any] | str:
    """describe(), or the ConfigError's message (cached too: a bad spec is not rebuilt)."""
    try:
        return describe(spec, shape, classes, weights=weights)
    except ConfigError as e:
        return str(e)


def found(config: SessionConfig) -> dict[str, Any] | str | None:
    """What the model box found for this config (None for a built-in model without weights)."""
    if config.model in MODELS and not config.weights:
        return None
    classes = class_count(config.dataset)
    if classes is None:
        return None        # the dataset box says what is wrong with the folder
    spec_file = config.model.rpartition(":")[0]
    return _found(config.model, input_shape(config.dataset, config.image_size), classes,
                  config.weights, (file_stamp(spec_file), file_stamp(config.weights)))


def named(message: str) -> str:
    """A raw model or weights error as inline markdown naming its control in bold (others are
    only escaped)."""
    if message.startswith("weights:"):
        return (f"**weights** (under *Training and data*): "
                f"{plain(message.removeprefix('weights:').strip())}")
    if message.startswith(("model ", "unknown model")):
        return f"**model**: {plain(message)}"
    return plain(message)


def problems(config: SessionConfig) -> list[str]:
    """Inline errors naming the control: the **model** box or the **weights** field."""
    result = found(config)
    return [named(result)] if isinstance(result, str) else []


def show(config: SessionConfig) -> None:
    """Under the form: parameters, FLOPs, prunable layers and groups, what stays dense."""
    result = found(config)
    if not isinstance(result, dict):
        return
    lines = [f"**{plain(config.model)}**: {result['params']:,} parameters, "
             f"{result['flops'] / 1e6:.3g} MFLOPs per image; {result['layers']} conv/linear "
             f"layers, {result['filter_layers']} of them filter-prunable convs, "
             f"{result['groups']} coupled channel groups."]
    if result["trace_error"]:
        lines.append(f"Torch-Pruning could not trace it ({plain(result['trace_error'])}): "
                     f"unstructured methods only.")
    dense = {**result["dense"], **{k: f"(filter methods) {v}"
                                   for k, v in result["filter_dense"].items()}}
    if dense:
        shown = list(dense.items())[:8]
        more = f" ... and {len(dense) - 8} more" if len(dense) > 8 else ""
        lines.append("Stays dense: " + "; ".join(f"`{plain(k)}`: {plain(v)}" for k, v in shown)
                     + more)
    st.info("  \n".join(lines), icon=":material/account_tree:")
