"""Commands that train or stop runs: run, sweep, worker, cancel."""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys

from ..config import ConfigError, coerce, parse_numbers, split_list
from ..store import Store, StoreError
from .options import Bar, backend_train, parse_scoped_params, print_summary, session_config


def cmd_run(args: argparse.Namespace) -> int:
    config = session_config(args)
    train, _ = backend_train(args, [config])
    extra = {}
    if args.backend == "local":
        from ..session import prepare

        # bad input (method, data folder, model) touches no store; the run then uses it
        extra["prepared"] = prepare(config)
    store = Store(args.store)
    if args.queue:
        from ..workers import submit

        # checked by the prepare above (which also found its data); the worker prepares it
        run_id = submit(store, config, checked="prepared" in extra)
        print(json.dumps({"run_id": run_id, "status": "queued"}) if args.json else run_id)
        return 0
    bar = Bar(enabled=not args.json)
    try:
        summary = train(config, store, progress=bar, **extra)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    if summary.get("config_error") or summary.get("storage_error"):
        print(f"pruneviz: error: {summary.get('error', '')}", file=sys.stderr)
        return 2
    return 0 if summary["status"] == "completed" else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..session import check, prepare
    from ..workers import grid, submit_grid

    methods = split_list(args.methods)
    rates = parse_numbers(args.rates, "--rates")
    seeds = parse_numbers(args.seeds, "--seeds", int)
    configs = grid(session_config(args), methods, rates, seeds,
                   parse_scoped_params(args.param_for))
    # Each config checked once: the first by its prepare (the data and model every run of the
    # grid shares, loaded here so bad input fails before anything is stored; its run then uses
    # it), the others here.
    local = args.backend == "local"
    for config in configs[1:] if local else configs:
        check(config)
    train, ray_options = backend_train(args, configs)
    prepared = prepare(configs[0]) if configs and local else None
    store = Store(args.store)
    if args.queue:
        sweep_id, run_ids = submit_grid(store, configs)
        print(json.dumps({"sweep_id": sweep_id, "run_ids": run_ids}) if args.json
              else "\n".join([sweep_id, *run_ids]))
        return 0
    bar = Bar(enabled=not args.json)
    summaries = []
    # One sweep id for the grid, as a queued sweep gets, so the Compare page can pick the
    # sweep as a whole.
    sweep_id = "sweep-" + secrets.token_hex(3)
    try:
        if args.backend == "ray":     # all at once on the cluster, one dense baseline each
            from ..raybackend import run_sweep_on_ray

            summaries = run_sweep_on_ray(configs, store, sweep_id=sweep_id, **ray_options)
        else:
            for i, config in enumerate(configs):
                extra = {"prepared": prepared} if i == 0 and prepared is not None else {}
                summaries.append(train(config, store, progress=bar, sweep_id=sweep_id,
                                       panel=False, **extra))     # measured by report/export
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summaries))
    else:
        import pandas as pd

        cols = ["run_id", "method", "rate", "status", "dense_accuracy", "final_accuracy",
                "sparsity", "wall_s"]
        print(pd.DataFrame(summaries).reindex(columns=cols).to_string(index=False))
        from ..report import format_warnings

        for s in summaries:
            for line in format_warnings(s.get("warnings", [])):
                print(f"{s['run_id']} {line}")
    return 0 if all(s["status"] == "completed" for s in summaries) else 1


def cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from ..workers import Worker, warm_up

    idle_exit = None if args.idle_exit is None else seconds(args.idle_exit, "--idle-exit",
                                                             "leave it out to never exit")
    nice = coerce(args.nice, 0, "--nice") if args.nice is not None else 0
    if not 0 <= nice <= 19:
        raise ConfigError(f"--nice is a niceness from 0 to 19, got {nice}.")
    _, options = backend_train(args, [])
    # An existing store only: a mistyped --store would otherwise make an empty one and serve it.
    worker = Worker(Store(args.store, create=False), args.backend, worker_id=args.worker_id,
                    **options)
    os.nice(nice)
    signal.signal(signal.SIGTERM, worker.on_sigterm)
    signal.signal(signal.SIGINT, worker.on_sigterm)
    print(f"worker {worker.id} (pid {os.getpid()}, backend {args.backend}) on "
          f"{worker.store.root.resolve()}", flush=True)
    warm_up()
    trained = worker.serve(once=args.once, idle_exit=idle_exit)
    print(f"worker {worker.id} stopped after {trained} run(s)", flush=True)
    if worker.lost is not None:
        raise StoreError(f"the run store {worker.store.root} is gone ({worker.lost}); the "
                         f"worker stopped and recreated nothing there. Start it again on a "
                         f"store that exists.")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..workers import GRACE_SECONDS, cancel

    grace = GRACE_SECONDS if args.grace is None else seconds(
        args.grace, "--grace", f"leave it out for the default {GRACE_SECONDS:g} s")
    store = Store(args.store, create=False)     # never a new, empty store at a mistyped path
    if not cancel(store, args.run_id, grace=grace, wait=True):
        # Exit 0: the run is not training, which is what a cancel asks; a script cancelling a
        # sweep races runs that finish on their own, and must not fail for those.
        print(f"{args.run_id} already finished ({store.run(args.run_id)['status']}); nothing "
              f"to cancel.")
        return 0
    print(f"{args.run_id} {store.run(args.run_id)['status']}")
    return 0


def seconds(raw: str, flag: str, default_hint: str) -> float:
    """A flag's number of seconds: finite and 0 or more, else ConfigError saying so (nan and
    inf pass float(); nan compares false to everything, so a worker given it never left)."""
    value = coerce(raw, 0.0, flag)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{flag} is a number of seconds, 0 or more; got {raw.strip()!r} "
                          f"({default_hint}).")
    return value
