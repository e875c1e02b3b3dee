"""Pruning methods: the hook contract (base.py), the one-shot baselines and one package per family.

Every module and package here is imported on first use, so a new folder with a `@register`ed
class is a new method everywhere (CLI, forms, contract tests) without editing this file; the
family's `view.py` and `toy.py` are found the same way (family_module, families).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType

from .base import REGISTRY, Context, Method, apply_preset, get_method, make_params, register

__all__ = ["REGISTRY", "Context", "Method", "apply_preset", "families", "family_module",
           "get_method", "load_all", "make_params", "register"]


def load_all() -> dict[str, type[Method]]:
    """Import every method module once and return the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY


def families() -> list[str]:
    """The method family packages (each a folder of engine, view and toy), in name order."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.ispkg)


def family_module(method: type[Method], part: str) -> ModuleType | None:
    """`part` ("view", "toy") of the family package that defines `method` (None if it has none:
    a one-shot baseline, or a family without that part)."""
    package = method.__module__.rpartition(".")[0]
    if package == __name__ or not package.startswith(__name__ + "."):
        return None
    name = f"{package}.{part}"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)
