"""The CLI's shared flags and what they become: session flags -> SessionConfig, backend flags ->
the function that trains, the progress bar and the printed run summary."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..config import ConfigError, SessionConfig, coerce, nm_rate, parse_nm

# SessionConfig fields exposed as flags; `params` comes from --param, `method`/`rate` are
# listed first for readability.
_SKIP = {"params"}


def add_session_flags(p: argparse.ArgumentParser, *, grid: bool = False,
                       only: tuple[str, ...] | None = None) -> None:
    for f in dataclasses.fields(SessionConfig):
        if f.name in _SKIP or (grid and f.name in ("method", "rate", "seed")):
            continue
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f.metadata.get("help", "") + f" (default: {default})"
        if "choices" in f.metadata:
            help_text = f.metadata["help"] + f" One of {', '.join(f.metadata['choices'])}."
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                           help=help_text)
    if only is not None:
        p.set_defaults(param=[], preset=None)
    else:
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="A method parameter (repeatable); `methods` lists them.")
        p.add_argument("--preset", help="Apply a method preset (paper, interactive) before "
                                        "flags.")
    p.add_argument("--store", help="Run store folder (default ./runs or $PRUNEVIZ_STORE).")
    p.add_argument("--json", action="store_true",
                   help="Print one JSON object as the last line; no progress bar.")


def parse_params(items: list[str], flag: str = "--param") -> dict[str, str]:
    """NAME=VALUE items -> {name: value} (a later one wins); ConfigError for a malformed one."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} expects NAME=VALUE, got {item!r}.")
        params[name.strip()] = value.strip()
    return params


def parse_scoped_params(items: list[str]) -> dict[str, dict[str, str]]:
    """`--param-for METHOD:NAME=VALUE` items -> {method: {name: value}}; ConfigError for a
    malformed one. Split at the first ':' so a value may hold one (nm=2:4)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        method, sep, rest = item.partition(":")
        method = method.strip()
        if not sep or not method or "=" in method or "=" not in rest:
            raise ConfigError(f"--param-for expects METHOD:NAME=VALUE (for example "
                              f"pgmpf:round_to=8), got {item!r}.")
        out.setdefault(method, {}).update(parse_params([rest], "--param-for"))
    return out


def session_config(args: argparse.Namespace, **fixed: Any) -> SessionConfig:
    from ..methods import apply_preset

    params = parse_params(args.param)
    base = SessionConfig()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(SessionConfig):
        raw = getattr(args, f.name, None)
        if f.name in _SKIP or raw is None:
            continue
        values[f.name] = raw if isinstance(raw, bool) else coerce(raw, getattr(base, f.name),
                                                                   "--" + f.name.replace("_", "-"))
    values.update(fixed)
    config = SessionConfig(**values)
    if args.preset:
        config = apply_preset(config, args.preset)
        config = config.replace(**values)     # explicit flags win over the preset
    params = {**config.params, **params}
    pattern = parse_nm(params.get("nm", ""))
    # An N:M pattern fixes the rate: a rate not given follows it (one that disagrees is an error).
    rate = {"rate": nm_rate(pattern)} if pattern and "rate" not in values else {}
    return config.replace(params=params, **rate)


class Bar:
    """tqdm progress across phases (dense baseline, session), on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar, self.phase = enabled, None, None

    def __call__(self, done: int, total: int, phase: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if phase != self.phase:
            self.close()
            self.bar = tqdm(total=total, desc=phase, unit="step", leave=False, file=sys.stderr)
            self.phase = phase
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


SUMMARY_KEYS = ("run_id", "status", "method", "model", "dataset", "rate", "dense_accuracy",
                "pruned_accuracy", "final_accuracy", "sparsity", "global_sparsity",
                "params_total", "params_nonzero", "flops_dense", "flops_effective", "wall_s")


def print_summary(summary: dict[str, Any]) -> None:
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        if isinstance(value, float):
            value = f"{value:.4f}"
        print(f"{key:>16}: {value}")
    for key in sorted(set(summary) - set(SUMMARY_KEYS) - {"panel", "warnings"}):
        print(f"{key:>16}: {summary[key]}")
    from ..report import format_panel, format_warnings

    if "panel" in summary:      # the panel prints the run's warnings above its numbers
        print(format_panel({**summary["panel"], "warnings": summary.get("warnings", [])}))
    else:
        for line in format_warnings(summary.get("warnings", [])):
            print(line)


def add_backend_flags(p: argparse.ArgumentParser, *, queue: bool = True) -> None:
    p.add_argument("--backend", default="local",
                   help="Where sessions train: local (this machine) or ray (a Ray cluster).")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster HOST:PORT for --backend ray (default "
                        "$PRUNEVIZ_RAY_ADDRESS, else a local Ray started on demand).")
    p.add_argument("--num-gpus", default="0",
                   help="GPUs per Ray task; a fraction such as 0.5 shares one (default 0).")
    p.add_argument("--num-cpus", default="1", help="CPUs per Ray task (default 1).")
    if queue:
        p.add_argument("--queue", action="store_true",
                       help="Queue the run(s) for a worker (`python -m pruneviz worker`, or the "
                            "dashboard's) and return at once; prints the run id(s).")


def backend_train(args: argparse.Namespace, configs: list[SessionConfig]
             ) -> tuple[Any, dict[str, Any]]:
    """The function that trains a run on the asked-for backend (backends.Train) and, for Ray,
    its task options; bad input (and an unreachable cluster) errors here, before anything is
    stored."""
    from ..backends import check_backend, load_backend

    check_backend(args.backend)
    if getattr(args, "queue", False) and args.backend != "local":
        raise ConfigError("--queue hands runs to whichever worker claims them; start the "
                          "worker with `--backend ray` instead of passing it here.")
    options = ray_options(args, configs) if args.backend == "ray" else {}
    return load_backend(args.backend, **options), options


def ray_options(args: argparse.Namespace, configs: list[SessionConfig]) -> dict[str, Any]:
    """The --backend ray flags as run_on_ray keywords, once the configs are checked against
    them and Ray is connected: bad input errors here, before anything is stored."""
    from ..raybackend import check_config, connect

    options = {"address": args.ray_address, "num_gpus": coerce(args.num_gpus, 0.0, "--num-gpus"),
               "num_cpus": coerce(args.num_cpus, 0.0, "--num-cpus")}
    for config in configs:
        check_config(config, options["num_gpus"], options["num_cpus"])
    connect(options["address"])
    return options
