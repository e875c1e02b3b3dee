"""Where a run trains: this process (`local`) or a Ray task (`ray`), each with the run_session
contract; and how a run of its own ends: its metrics panel measured before it is committed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .config import ConfigError, SessionConfig
from .local import run_measured, train_local
from .store import FOREGROUND, Store

Train = Callable[..., dict[str, Any]]
__all__ = ["BACKENDS", "check_backend", "load_backend", "run_measured"]


def _local() -> Train:
    return train_local


def _ray(**options: Any) -> Train:
    """run_on_ray with the task options (address, num_gpus, num_cpus) bound; a run trained in
    the foreground (no run id yet) is created as the foreground's, so no worker claims it."""
    try:
        from .raybackend import run_on_ray
    except ImportError as e:
        raise ConfigError(f"--backend ray is not available here ({e}); install Ray "
                          f"(pip install -r requirements.txt) or use --backend local.") from None

    def train(config: SessionConfig, store: Store, *, run_id: str | None = None,
              cancel: threading.Event | None = None, **kw: Any) -> dict[str, Any]:
        if run_id is None:
            run_id = store.create_run(config, worker=FOREGROUND)
        return run_on_ray(config, store, run_id, cancel=cancel, **options, **kw)

    return train


# Name -> loader of the function that trains one claimed run with the run_session contract
# (config, store, run_id=, cancel=, progress=) -> summary, plus `panel=False` for a sweep's runs
# (they measure their panel when first asked); loaded lazily so `local` never imports Ray.
BACKENDS: dict[str, Callable[..., Train]] = {"local": _local, "ray": _ray}


def check_backend(name: str) -> str:
    """The backend's name, or ConfigError naming the ones there are."""
    if name not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}.")
    return name


def load_backend(name: str, **options: Any) -> Train:
    """The backend's train function; `options` are Ray's task options (ray only)."""
    return BACKENDS[check_backend(name)](**options)
