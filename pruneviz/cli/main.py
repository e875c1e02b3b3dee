"""The parser of every command, and `main`: one line `pruneviz: error: ...` and exit code 2 for
bad input or a store that cannot be used."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence

from ..config import ConfigError
from ..store import StoreError, default_root, sqlite_error
from .options import add_backend_flags, add_session_flags
from .runs import (
    SENSITIVITY_FIELDS,
    cmd_delete,
    cmd_doctor,
    cmd_export,
    cmd_list,
    cmd_methods,
    cmd_report,
    cmd_sensitivity,
    cmd_show,
)
from .train import cmd_cancel, cmd_run, cmd_sweep, cmd_worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pruneviz",
                                     description="Run and inspect pruning sessions headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    _training_commands(sub)
    _store_commands(sub)
    _analysis_commands(sub)
    return parser


def _training_commands(sub) -> None:
    """run, sweep, worker, cancel: what trains."""
    p = sub.add_parser("run", help="Train (or reuse) a dense baseline, prune, fine-tune.")
    add_session_flags(p)
    add_backend_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="Methods x rates x seeds on the same dense start and budget.")
    p.add_argument("--methods", required=True, help="Comma-separated method names.")
    p.add_argument("--rates", required=True, help="Comma-separated rates, e.g. 0.5,0.8,0.9.")
    p.add_argument("--seeds", default="0", help="Comma-separated seeds (default 0).")
    add_session_flags(p, grid=True)
    p.add_argument("--param-for", action="append", default=[], metavar="METHOD:NAME=VALUE",
                   help="A parameter for one listed method (repeatable), e.g. "
                        "pgmpf:round_to=8; --param gives one to every listed method, each of "
                        "which must have it.")
    add_backend_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("worker", help="Train queued runs (from the dashboard, `run --queue`, "
                                      "`sweep --queue`) one at a time until stopped.")
    p.add_argument("--store", help="Run store folder (default ./runs or $PRUNEVIZ_STORE).")
    add_backend_flags(p, queue=False)
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


def _store_commands(sub) -> None:
    """list, show, report, export, delete, doctor: what reads or mends the store."""
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
                   help="Back up the database files into STORE/backup.TIME/ (the originals "
                        "stay), then rebuild.")
    p.add_argument("--store")
    p.set_defaults(func=cmd_doctor)


def _analysis_commands(sub) -> None:
    """sensitivity, methods."""
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
    add_session_flags(p, only=SENSITIVITY_FIELDS)
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("methods", help="List registered methods and their parameters.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)


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
