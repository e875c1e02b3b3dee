"""Commands that train or stop runs: run, sweep, worker, cancel."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

from ..config import ConfigError, coerce, parse_numbers, split_list
from ..store import Store
from .options import Bar, backend_train, parse_scoped_params, print_summary, session_config


def cmd_run(args: argparse.Namespace) -> int:
    config = session_config(args)
    train, _ = backend_train(args, [config])
    if args.backend == "local":
        from ..session import prepare

        prepare(config)    # bad input (method, data folder, model) touches no store
    store = Store(args.store)
    if args.queue:
        from ..workers import submit

        run_id = submit(store, config)
        print(json.dumps({"run_id": run_id, "status": "queued"}) if args.json else run_id)
        return 0
    bar = Bar(enabled=not args.json)
    try:
        summary = train(config, store, progress=bar)
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
    for config in configs:
        check(config)
    train, ray_options = backend_train(args, configs)
    if configs and args.backend == "local":
        prepare(configs[0])     # the data and model every run of the grid shares
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
        from ..report import format_warnings

        for s in summaries:
            for line in format_warnings(s.get("warnings", [])):
                print(f"{s['run_id']} {line}")
    return 0 if all(s["status"] == "completed" for s in summaries) else 1


def cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from ..workers import Worker, warm_up

    idle_exit = None if args.idle_exit is None else coerce(args.idle_exit, 0.0, "--idle-exit")
    if idle_exit is not None and idle_exit < 0:
        raise ConfigError(f"--idle-exit is a number of seconds (0 or more), got {idle_exit:g}.")
    nice = coerce(args.nice, 0, "--nice") if args.nice is not None else 0
    if not 0 <= nice <= 19:
        raise ConfigError(f"--nice is a niceness from 0 to 19, got {nice}.")
    _, options = backend_train(args, [])
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
    from ..workers import GRACE_SECONDS, cancel

    grace = GRACE_SECONDS if args.grace is None else coerce(args.grace, 0.0, "--grace")
    store = Store(args.store)
    cancel(store, args.run_id, grace=grace, wait=True)
    print(f"{args.run_id} {store.run(args.run_id)['status']}")
    return 0
