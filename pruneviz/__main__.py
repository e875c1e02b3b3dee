"""Command line: python -m pruneviz {run,sweep,worker,cancel,list,show,report,export,delete,
doctor,methods,sensitivity} --help."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from .config import (
    ConfigError,
    SessionConfig,
    coerce,
    format_layer_rates,
    nm_rate,
    parse_nm,
    parse_numbers,
    split_list,
)
from .store import Store, StoreError, default_root, sqlite_error

# SessionConfig fields exposed as flags; `params` comes from --param, `method`/`rate` are
# listed first for readability.
_SKIP = {"params"}


def _add_session_flags(p: argparse.ArgumentParser, *, grid: bool = False,
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


def _session_config(args: argparse.Namespace, **fixed: Any) -> SessionConfig:
    from .methods import apply_preset

    params: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param expects NAME=VALUE, got {item!r}.")
        params[name.strip()] = value.strip()
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


class _Bar:
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


def _print_summary(summary: dict[str, Any]) -> None:
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        if isinstance(value, float):
            value = f"{value:.4f}"
        print(f"{key:>16}: {value}")
    for key in sorted(set(summary) - set(SUMMARY_KEYS) - {"panel", "warnings"}):
        print(f"{key:>16}: {summary[key]}")
    from .report import format_panel, format_warnings

    if "panel" in summary:      # the panel prints the run's warnings above its numbers
        print(format_panel({**summary["panel"], "warnings": summary.get("warnings", [])}))
    else:
        for line in format_warnings(summary.get("warnings", [])):
            print(line)


def _add_backend_flags(p: argparse.ArgumentParser, *, queue: bool = True) -> None:
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


def _backend(args: argparse.Namespace, configs: list[SessionConfig]
             ) -> tuple[Any, dict[str, Any]]:
    """The function that trains a run on the asked-for backend (workers.Train) and, for Ray,
    its task options; bad input (and an unreachable cluster) errors here, before anything is
    stored."""
    from .workers import check_backend, load_backend

    check_backend(args.backend)
    if getattr(args, "queue", False) and args.backend != "local":
        raise ConfigError("--queue hands runs to whichever worker claims them; start the "
                          "worker with `--backend ray` instead of passing it here.")
    options = _ray_options(args, configs) if args.backend == "ray" else {}
    return load_backend(args.backend, **options), options


def _ray_options(args: argparse.Namespace, configs: list[SessionConfig]) -> dict[str, Any]:
    """The --backend ray flags as run_on_ray keywords, once the configs are checked against
    them and Ray is connected: bad input errors here, before anything is stored."""
    from .raybackend import check_config, connect

    options = {"address": args.ray_address, "num_gpus": coerce(args.num_gpus, 0.0, "--num-gpus"),
               "num_cpus": coerce(args.num_cpus, 0.0, "--num-cpus")}
    for config in configs:
        check_config(config, options["num_gpus"], options["num_cpus"])
    connect(options["address"])
    return options


def cmd_run(args: argparse.Namespace) -> int:
    config = _session_config(args)
    train, _ = _backend(args, [config])
    if args.backend == "local":
        from .session import prepare

        prepare(config)    # bad input (method, data folder, model) touches no store
    store = Store(args.store)
    if args.queue:
        from .workers import submit

        run_id = submit(store, config)
        print(json.dumps({"run_id": run_id, "status": "queued"}) if args.json else run_id)
        return 0
    bar = _Bar(enabled=not args.json)
    try:
        summary = train(config, store, progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary.get("config_error") or summary.get("storage_error"):
        print(f"pruneviz: error: {summary.get('error', '')}", file=sys.stderr)
        return 2
    return 0 if summary["status"] == "completed" else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from .session import check, prepare
    from .workers import grid, submit_grid

    methods = split_list(args.methods)
    rates = parse_numbers(args.rates, "--rates")
    seeds = parse_numbers(args.seeds, "--seeds", int)
    configs = grid(_session_config(args), methods, rates, seeds)
    for config in configs:
        check(config)
    train, ray_options = _backend(args, configs)
    if configs and args.backend == "local":
        prepare(configs[0])     # the data and model every run of the grid shares
    store = Store(args.store)
    if args.queue:
        sweep_id, run_ids = submit_grid(store, configs)
        print(json.dumps({"sweep_id": sweep_id, "run_ids": run_ids}) if args.json
              else "\n".join([sweep_id, *run_ids]))
        return 0
    bar = _Bar(enabled=not args.json)
    summaries = []
    # One sweep id for the grid, as a queued sweep gets, so the Compare page can pick the
    # sweep as a whole.
    sweep_id = "sweep-" + secrets.token_hex(3)
    try:
        if args.backend == "ray":     # all at once on the cluster, one dense baseline each
            from .raybackend import run_sweep_on_ray

            summaries = run_sweep_on_ray(configs, store, sweep_id=sweep_id, **ray_options)
        else:
            for config in configs:
                summaries.append(train(config, store, progress=bar, sweep_id=sweep_id,
                                       panel=False))      # measured by report/export
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summaries))
    else:
        import pandas as pd

        cols = ["run_id", "method", "rate", "status", "dense_accuracy", "final_accuracy",
                "sparsity", "wall_s"]
        print(pd.DataFrame(summaries).reindex(columns=cols).to_string(index=False))
        from .report import format_warnings

        for s in summaries:
            for line in format_warnings(s.get("warnings", [])):
                print(f"{s['run_id']} {line}")
    return 0 if all(s["status"] == "completed" for s in summaries) else 1


def cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from .workers import Worker, warm_up

    idle_exit = None if args.idle_exit is None else coerce(args.idle_exit, 0.0, "--idle-exit")
    if idle_exit is not None and idle_exit < 0:
        raise ConfigError(f"--idle-exit is a number of seconds (0 or more), got {idle_exit:g}.")
    nice = coerce(args.nice, 0, "--nice") if args.nice is not None else 0
    if not 0 <= nice <= 19:
        raise ConfigError(f"--nice is a niceness from 0 to 19, got {nice}.")
    _, options = _backend(args, [])
    worker = Worker(Store(args.store), args.backend, worker_id=args.worker_id, **options)
    os.nice(nice)
    signal.signal(signal.SIGTERM, worker.on_sigterm)
    signal.signal(signal.SIGINT, worker.on_sigterm)
    print(f"worker {worker.id} (pid {os.getpid()}, backend {args.backend}) on "
          f"{worker.store.root.resolve()}", flush=True)
    warm_up()
    trained = worker.serve(once=args.once, idle_exit=idle_exit)
    print(f"worker {worker.id} stopped after {trained} run(s)", flush=True)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from .workers import GRACE_SECONDS, cancel

    grace = GRACE_SECONDS if args.grace is None else coerce(args.grace, 0.0, "--grace")
    store = Store(args.store)
    cancel(store, args.run_id, grace=grace, wait=True)
    print(f"{args.run_id} {store.run(args.run_id)['status']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    df = Store(args.store, create=False).runs(include_dense=args.all)
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print("no runs yet: `python -m pruneviz run` starts one.")
        return 0
    cols = ["run_id", "name", "method", "model", "dataset", "rate", "seed", "status",
            "dense_accuracy", "final_accuracy", "sparsity"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = Store(args.store, create=False).run(args.run_id)
    if args.json:
        print(json.dumps({**{k: v for k, v in run.items() if k != "config"},
                          "config": run["config"].to_dict()}, default=str))
        return 0
    print(f"{run['run_id']}  {run['status']}  {run['name']}")
    if run["error"]:
        print(f"error: {run['error']}")
    print("config:")
    for k, v in run["config"].to_dict().items():
        print(f"{k:>20}: {v}")
    print("summary:")
    _print_summary(run["summary"]) if run["summary"] else print("  (none yet)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import format_panel, metrics_panel

    panel = metrics_panel(Store(args.store, create=False), args.run_id,
                          recompute=args.recompute)
    if "error" in panel and not args.json:
        print(f"pruneviz: error: {panel['error']}", file=sys.stderr)
        return 2
    print(json.dumps(panel) if args.json else format_panel(panel))
    return 2 if "error" in panel else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import FORMATS, export_run

    formats = split_list(args.formats) if args.formats else FORMATS
    for path in export_run(Store(args.store, create=False), args.run_id, args.out, formats):
        print(path)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    Store(args.store, create=False).delete(args.run_id)
    print(f"deleted {args.run_id}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import check_store, repair_store

    root = args.store or default_root()
    problems = check_store(root)
    for line in problems:
        print(f"problem: {line}")
    if not problems:
        print(f"{root}: the database passes SQLite's integrity check and every run folder has "
              f"its row.")
        return 0
    if not args.repair:
        print(f"run `python -m pruneviz doctor --store {root} --repair` to back up the database "
              f"and rebuild it.")
        return 1
    for line in repair_store(root):
        print(line)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import load_all

    registry = load_all()
    out = []
    for name in sorted(registry):
        cls = registry[name]
        params = [{"name": f.name, "default": f.default, **f.metadata}
                  for f in dataclasses.fields(cls.Params)]
        out.append({"name": name, "kind": cls.kind, "summary": cls.summary, "params": params,
                    "presets": list(cls.presets)})
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    for m in out:
        print(f"{m['name']} ({m['kind']}): {m['summary']}")
        for p in m["params"]:
            rng = f" [{p['min']}, {p['max']}]" if "min" in p else ""
            print(f"    {p['name']}={p['default']}{rng}  {p.get('help', '')}")
        if m["presets"]:
            print(f"    presets: {', '.join(m['presets'])}")
    return 0


# The fields that pick (or train) the cached dense baseline a sensitivity scan runs on.
SENSITIVITY_FIELDS = ("model", "dataset", "seed", "dense_epochs", "max_steps_per_epoch", "device",
                      "data_root", "download", "augment", "holdout", "image_size")


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from .inspect import (
        KINDS,
        check_rates,
        check_target,
        evaluate_batch,
        heldout_batch,
        scan_layers,
        sensitivity_scan,
        suggest_rates,
    )
    from .session import dense_start, prepare

    if args.kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {args.kind!r}.")
    rates = check_rates(parse_numbers(args.rates, "--rates"))
    max_rate = coerce(args.max_rate, 0.0, "--max-rate")
    target = None if args.target is None else coerce(args.target, 0.0, "--target")
    check_target(0.0 if target is None else target, max_rate)
    limit = coerce(args.limit, 0, "--limit")
    if limit < 0:
        raise ConfigError(f"--limit is a number of held-out images (0 = all), got {limit}.")
    config = _session_config(args, method="dense")
    prep = prepare(config)
    scan_layers(prep.model, args.kind, all_layers=args.all_layers)
    store = Store(args.store)
    bar = _Bar(enabled=not args.json)
    try:
        state, dense_run = dense_start(prep, store, bar, None)
    finally:
        bar.close()
    model = prep.model
    model.load_state_dict(state)
    model.to(prep.device)
    x, y = heldout_batch(prep.data, limit, prep.device)
    dense_accuracy, _ = evaluate_batch(model, x, y)
    scan = sensitivity_scan(model, x, y, rates=rates, kind=args.kind,
                            all_layers=args.all_layers)
    suggested = suggest_rates(scan, target, max_rate=max_rate) if target is not None else None
    layer_rates = format_layer_rates(suggested) if suggested is not None else None
    if args.json:
        print(json.dumps({"dense_run": dense_run, "model": config.model,
                          "dataset": config.dataset, "kind": args.kind, "images": len(y),
                          "dense_accuracy": dense_accuracy, "scan": scan.to_dict("records"),
                          "target": target, "suggested": suggested, "layer_rates": layer_rates}))
        return 0
    print(f"dense baseline {dense_run}: accuracy {dense_accuracy:.4f} on {len(y)} held-out "
          f"images")
    print(f"accuracy with one layer pruned alone ({args.kind}, magnitude), layer x rate:")
    table = scan.pivot(index="layer", columns="rate", values="accuracy").loc[scan.layer.unique()]
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if layer_rates is not None:
        print(f"suggested per-layer rates for a global target of {target:g} (weighted by layer "
              f"size, most sensitive pruned least):")
        print(layer_rates)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pruneviz",
                                     description="Run and inspect pruning sessions headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="Train (or reuse) a dense baseline, prune, fine-tune.")
    _add_session_flags(p)
    _add_backend_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="Methods x rates x seeds on the same dense start and budget.")
    p.add_argument("--methods", required=True, help="Comma-separated method names.")
    p.add_argument("--rates", required=True, help="Comma-separated rates, e.g. 0.5,0.8,0.9.")
    p.add_argument("--seeds", default="0", help="Comma-separated seeds (default 0).")
    _add_session_flags(p, grid=True)
    _add_backend_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("worker", help="Train queued runs (from the dashboard, `run --queue`, "
                                      "`sweep --queue`) one at a time until stopped.")
    p.add_argument("--store", help="Run store folder (default ./runs or $PRUNEVIZ_STORE).")
    _add_backend_flags(p, queue=False)
    p.add_argument("--once", action="store_true",
                   help="Train at most one queued run, then exit (at once if none is queued).")
    p.add_argument("--idle-exit", metavar="SECONDS",
                   help="Exit after this many seconds with nothing queued (default: never).")
    p.add_argument("--nice", metavar="N",
                   help="Lower the worker's CPU priority by N (0-19; the dashboard starts its "
                        "workers at 5 so pages stay quick while a run trains).")
    p.add_argument("--worker-id", help=argparse.SUPPRESS)     # given by the dashboard's spawn
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("cancel", help="Cancel a queued or running run (kept as interrupted).")
    p.add_argument("run_id")
    p.add_argument("--grace", metavar="SECONDS",
                   help="Seconds before an unresponsive process gets SIGTERM, then SIGKILL "
                        "(default 10).")
    p.add_argument("--store")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("list", help="List stored runs, newest first.")
    p.add_argument("--all", action="store_true", help="Include dense-baseline runs.")
    p.add_argument("--store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="Config and summary of one run.")
    p.add_argument("run_id")
    p.add_argument("--store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="The metrics panel of one run: sparsity, compact model "
                                      "size and FLOPs, measured latency.")
    p.add_argument("run_id")
    p.add_argument("--recompute", action="store_true",
                   help="Compact and measure again now (and cache it) instead of the stored panel.")
    p.add_argument("--store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="Write the run card (config JSON, records CSV, metrics "
                                      "JSON), masks, masked state_dict, compact .pt2 and ONNX.")
    p.add_argument("run_id")
    p.add_argument("--out", required=True, help="Folder to write into (created if missing).")
    p.add_argument("--formats", help="Comma-separated subset of card (config, summary, metrics "
                                      "JSON, records CSV), weights, masks, masked, pt2, onnx "
                                      "(default: all).")
    p.add_argument("--store")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("delete", help="Delete a run and its files.")
    p.add_argument("run_id")
    p.add_argument("--store")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("doctor", help="Check the run store; --repair backs up a damaged "
                                      "database and rebuilds it from what is readable and the "
                                      "run folders.")
    p.add_argument("--repair", action="store_true",
                   help="Back up the database files into STORE/backup-TIME/, then rebuild.")
    p.add_argument("--store")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("sensitivity", help="Prune each layer alone at several rates on the "
                                           "dense baseline; suggest per-layer rates.")
    p.add_argument("--rates", default="0,0.25,0.5,0.75,0.9",
                   help="Comma-separated rates scanned per layer (default 0,0.25,0.5,0.75,0.9).")
    p.add_argument("--kind", default="unstructured",
                   help="unstructured (smallest |w| of the layer) or filter (smallest-L2 filters "
                        "with their BatchNorm).")
    p.add_argument("--target", help="Global rate to suggest per-layer rates for (their mean "
                                    "weighted by layer size); printed as layer=rate,...")
    p.add_argument("--max-rate", default="0.95", help="No layer is suggested a higher rate.")
    p.add_argument("--limit", default="512",
                   help="Held-out images in the evaluation batch (0 = all; default 512).")
    p.add_argument("--all-layers", action="store_true",
                   help="Also scan the first conv, the classifier and shortcut convs.")
    _add_session_flags(p, only=SENSITIVITY_FIELDS)
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("methods", help="List registered methods and their parameters.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, StoreError) as e:
        print(f"pruneviz: error: {e}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:     # damage or a full disk found after the store opened
        print(f"pruneviz: error: {sqlite_error(e, getattr(args, 'store', None) or default_root())}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
