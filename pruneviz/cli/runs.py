"""Commands that read or manage stored runs: list, show, report, export, delete, doctor, methods,
and the sensitivity scan on a dense baseline."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..config import ConfigError, coerce, format_layer_rates, parse_numbers, split_list
from ..store import Store, default_root
from .options import Bar, print_summary, session_config


def cmd_list(args: argparse.Namespace) -> int:
    df = Store(args.store, create=False, reader=True).runs(include_dense=args.all)
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print("no runs yet: `python -m pruneviz run` starts one.")
        return 0
    cols = ["run_id", "name", "method", "model", "dataset", "rate", "seed", "status",
            "dense_accuracy", "final_accuracy", "sparsity"]
    if df.final_perplexity.notna().any():      # language-model runs: their quality measure
        cols[-1:-1] = ["dense_perplexity", "final_perplexity"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = Store(args.store, create=False, reader=True).run(args.run_id)
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
    print_summary(run["summary"]) if run["summary"] else print("  (none yet)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import format_panel, metrics_panel

    panel = metrics_panel(Store(args.store, create=False), args.run_id,
                          recompute=args.recompute)
    if "error" in panel and not args.json:
        print(f"pruneviz: error: {panel['error']}", file=sys.stderr)
        return 2
    print(json.dumps(panel) if args.json else format_panel(panel))
    return 2 if "error" in panel else 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import FORMATS, export_run

    formats = split_list(args.formats) if args.formats else FORMATS
    for path in export_run(Store(args.store, create=False), args.run_id, args.out, formats):
        print(path)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    Store(args.store, create=False).delete(args.run_id)
    print(f"deleted {args.run_id}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import check_store, repair_store

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
    from ..methods import load_all

    registry = load_all()
    out = []
    for name in sorted(registry):
        cls = registry[name]
        params = [{"name": f.name, "default": f.default,
                   **{k: v for k, v in f.metadata.items() if k != "check"}}   # a function
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
    from ..sensitivity import (
        KINDS,
        check_rates,
        check_target,
        evaluate_batch,
        heldout_batch,
        scan_layers,
        sensitivity_scan,
        suggest_rates,
    )
    from ..session import dense_start, prepare

    if args.kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {args.kind!r}.")
    rates = check_rates(parse_numbers(args.rates, "--rates"))
    max_rate = coerce(args.max_rate, 0.0, "--max-rate")
    target = None if args.target is None else coerce(args.target, 0.0, "--target")
    check_target(0.0 if target is None else target, max_rate)
    limit = coerce(args.limit, 0, "--limit")
    if limit < 0:
        raise ConfigError(f"--limit is a number of held-out images (0 = all), got {limit}.")
    config = session_config(args, method="dense")
    prep = prepare(config)
    scan_layers(prep.model, args.kind, all_layers=args.all_layers)
    store = Store(args.store)
    bar = Bar(enabled=not args.json)
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
