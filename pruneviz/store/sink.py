"""RunSink: exactly what a session needs of where its records go (mlflow's AbstractStore, for
one run). `Store` is one; the Ray task's `raytask._Sink`, which turns every call into a message
for the pump, is the other. `session.trained` and `loop.Session` take a RunSink, never more."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..config import SessionConfig
    from ..records import Record


@runtime_checkable
class RunSink(Protocol):
    """A session's side of the store: a run's life, its records, its folder, and the shared
    dense baselines (looked up under a lock, saved once)."""

    @property
    def root(self) -> Path:
        """The folder runs' folders and lock files live in (named in storage errors)."""
        ...

    def create_run(self, config: SessionConfig, *, kind: str = "session",
                   status: str = "queued", sweep_id: str | None = None,
                   worker: str | None = None) -> str:
        """A new run of `config`; returns its id."""
        ...

    def start_run(self, run_id: str, total_steps: int) -> None:
        """The run trains now, `total_steps` steps."""
        ...

    def write(self, run_id: str, records: Iterable[Record], *, step: int | None = None) -> None:
        """Commit `records` (the steps up to `step`) in one transaction."""
        ...

    def finish_run(self, run_id: str, status: str, *, summary: dict | None = None,
                   error: str | None = None) -> Any:
        """End the run: its status, summary and error, with the files of its folder."""
        ...

    def cancel_requested(self, run_id: str) -> bool:
        """Whether a user asked to stop the run (checked at every commit)."""
        ...

    def trainer(self, run_id: str) -> dict[str, Any]:
        """backend, host and pid of the process training the run, for its summary."""
        ...

    def file_lock(self, name: str, cancel: Callable[[], Any] | None = None
                  ) -> AbstractContextManager[None]:
        """Hold the lock `name` across processes (one dense baseline per key)."""
        ...

    def release_reserve(self) -> None:
        """Free the disk space kept back so a failed run can still record its end."""
        ...

    def run_dir(self, run_id: str, *, create: bool = True) -> Path:
        """The run's artifact folder."""
        ...

    def dense_lookup(self, key: str) -> tuple[str, Path, float] | None:
        """The stored dense baseline of `key`: its run, weights file and accuracy."""
        ...

    def dense_save(self, key: str, run_id: str, path: Path, accuracy: float) -> None:
        """Keep run `run_id`'s weights at `path` as the dense baseline of `key`."""
        ...


MEMBERS = tuple(name for name in vars(RunSink) if not name.startswith("_"))


def mismatches(sink: Any) -> list[str]:
    """How `sink` falls short of RunSink: a member it lacks, or a method whose parameters do not
    take every call a session makes (the protocol's names, kinds and defaults; it may add
    optional ones). Empty: it is a RunSink. Stricter than isinstance(sink, RunSink), which
    looks at names only."""
    cls, out = type(sink), []
    for name in MEMBERS:
        want = inspect.getattr_static(RunSink, name)
        if not hasattr(sink, name):
            out.append(f"{cls.__name__} has no {name}")
        elif not isinstance(want, property):
            out += _signature_mismatches(cls.__name__, name, want, getattr(cls, name))
    return out


def _signature_mismatches(owner: str, name: str, want: Any, have: Any) -> list[str]:
    wanted = list(inspect.signature(want).parameters.values())
    got = inspect.signature(have).parameters
    out = []
    for p in wanted:
        q = got.get(p.name)
        if q is None:
            out.append(f"{owner}.{name} takes no {p.name}")
        elif q.kind != p.kind and not (p.kind == p.KEYWORD_ONLY
                                       and q.kind == p.POSITIONAL_OR_KEYWORD):
            out.append(f"{owner}.{name}: {p.name} is {q.kind.description}, not "
                       f"{p.kind.description}")
        elif p.default is not p.empty and q.default != p.default:
            out.append(f"{owner}.{name}: {p.name} defaults to {q.default!r}, not {p.default!r}")
    extra = [q for n, q in got.items() if n not in {p.name for p in wanted}
             and q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
    out += [f"{owner}.{name} requires {q.name}, which a session never passes" for q in extra]
    return out


__all__ = ["MEMBERS", "RunSink", "mismatches"]
