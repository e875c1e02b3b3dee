"""Pruning methods: the hook contract (base.py) and one module per method family.

Every module in this package is imported on first use, so a new file with a `@register`ed
class is a new method everywhere (CLI, forms, contract tests) without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import REGISTRY, Context, Method, apply_preset, get_method, make_params, register

__all__ = ["REGISTRY", "Context", "Method", "apply_preset", "get_method", "load_all",
           "make_params", "register"]


def load_all() -> dict[str, type[Method]]:
    """Import every method module once and return the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
