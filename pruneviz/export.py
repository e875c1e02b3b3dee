"""Export a run in formats users can load without pruneviz, and load a run card back safely.

Files written by `export_run` (README "Exports" shows how to load each one):

- run card: config.json (the SessionConfig and run metadata), summary.json, metrics.json (the
  metrics panel and the export checks), records as CSV (scalars, layers, filters, method tables);
- weights.pt: the run's final state_dict as trained (shrunk shapes for PGP), and kept_indices.pt
  when the run saved one;
- masks.pt: bool masks keyed by parameter name, shaped like the original architecture's;
- masked_state_dict.pt: loads into the original architecture (`build_model(...)`); pruned weights
  are zeros; a physically shrunk run is expanded back at its kept indices;
- model_compact.pt2: the compact model as a whole module (torch.export; no Python class needed,
  no pickled payload: weights are raw bytes and the program is JSON);
- model_compact.onnx: the same compact model for ONNX runtimes (dynamic batch dimension).

Every model file is loaded back after it is written and must give the compact model's outputs
(max abs difference <= 1e-5, ONNX Runtime <= 1e-4; both times the largest output magnitude
when it exceeds 1) before it is kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from .config import ConfigError, SessionConfig
from .safe_load import partial_name
from .store import Store

FORMATS = ("card", "weights", "masks", "masked", "pt2", "onnx")
PT2_ATOL = 1e-5
ONNX_ATOL = 1e-4     # another runtime's kernels: float32 rounding differs a little

LOAD_NOTES = """\
How to load these files (see pruneviz's README, "Exports"):

  import json, torch
  from pruneviz.modelspec import build_model
  cfg = json.load(open("config.json"))["config"]; summary = json.load(open("summary.json"))
  model = build_model(cfg["model"], tuple(summary["input_shape"]), summary["num_classes"])
  model.load_state_dict(torch.load("masked_state_dict.pt", weights_only=True))   # masked
  masks = torch.load("masks.pt", weights_only=True)                # {param name: bool tensor}
  compact = torch.export.load("model_compact.pt2").module()        # compact, no class needed
  import onnxruntime; sess = onnxruntime.InferenceSession("model_compact.onnx")
  logits = sess.run(None, {"x": images.numpy()})[0]                # images: (N, C, H, W) float32
  from pruneviz.export import load_run_card; card = load_run_card(".")   # all of it, safely
"""


def write_file(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it; on any OSError (ENOSPC: the disk filled) the file is
    removed before the error is raised, so no truncated file stays behind."""
    path = Path(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())     # a full disk can surface only here (delayed allocation)
    except OSError:
        path.unlink(missing_ok=True)
        raise


def export_compact_program(model: nn.Module, input_shape: tuple[int, ...], path: str | Path,
                           ) -> float:
    """Save `model` as a torch.export program (.pt2) with a dynamic batch dimension; returns
    the max abs difference of the reloaded program's outputs (raises if over PT2_ATOL)."""
    from .safe_load import load_program

    model = model.eval()
    x = torch.randn(3, *input_shape, device=next(model.parameters()).device)
    with torch.no_grad():
        program = torch.export.export(model, (x,),
                                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    # Serialized in memory, then written by write_file: torch.export.save writing to a file
    # aborts the whole process (SIGABRT in its zip writer) when the disk fills mid-write.
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    write_file(path, buffer.getvalue())
    loaded = load_program(path).module()
    with torch.no_grad():
        expected = model(x)
        diff = (loaded(x) - expected).abs().max().item()
    if not diff <= PT2_ATOL * max(1.0, expected.abs().max().item()):
        Path(path).unlink()
        raise RuntimeError(f"the exported program differs from the model by {diff:.3g}.")
    return diff


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *,
                dynamo: bool = False) -> float | None:
    """Save `model` as ONNX (input "x", output "logits", dynamic batch) and check it: the ONNX
    checker always, outputs under ONNX Runtime when installed (max abs difference returned;
    None without onnxruntime; raises if over ONNX_ATOL).

    dynamo=False uses the TorchScript-based exporter: here it takes about 0.5 s where the
    torch.export-based one (dynamo=True) takes 10-25 s for the same small CNNs, and both give
    the same graph for these models.
    """
    import onnx

    model = model.eval().cpu()
    x = torch.randn(3, *input_shape)
    # Built in memory and written by write_file, like the .pt2: a full disk is then one OSError
    # from our own write, never whatever the exporter's native writer does on a short write.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the legacy exporter's deprecation notice
        if dynamo:
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"],
                                        output_names=["logits"],
                                        dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
            data = program.model_proto.SerializeToString()
        else:
            buffer = io.BytesIO()
            torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"],
                              output_names=["logits"],
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
            data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    write_file(path, data)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        expected = model(x)
        diff = (got - expected).abs().max().item()
    if not diff <= ONNX_ATOL * max(1.0, expected.abs().max().item()):
        Path(path).unlink()
        raise RuntimeError(f"the ONNX model differs from the model by {diff:.3g} under ONNX "
                           f"Runtime.")
    return diff


def export_run(store: Store, run_id: str, out: str | Path,
               formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write the run's files into `out` (created if missing); returns the paths written.

    `formats` picks among FORMATS (default all). Model files need the run's final weights (a
    completed run); for other runs only the run card is written. All or nothing: a write that
    fails (a full disk) is one ConfigError and leaves no file of this export in `out`.
    """
    from .report import load_run_models

    formats = set(formats)
    unknown = formats - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown export format(s) {', '.join(sorted(unknown))}; use some of "
                          f"{', '.join(FORMATS)}.")
    run = store.run(run_id)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (it is created if missing).")
    folder = store.run_dir(run_id, create=False)
    # Model files only for completed runs: a run stopped while finishing (killed during its
    # metrics panel, say) may have left final-looking weights that were never committed.
    complete = run["status"] == "completed"
    models = None
    if complete and (folder / "weights.pt").exists() and \
            formats & {"masks", "masked", "pt2", "onnx"}:
        models = load_run_models(store, run_id)
    created = not out.exists()
    staged: list[str] = []
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_files(store, run, folder, out, formats, models, complete, staged)
        # All or nothing: every file was written whole under its temporary name; only now do
        # they take their real names (a rename needs no space), so a failed export never
        # leaves half a set of files beside an older export's.
        for name in staged:
            os.replace(partial_name(out / name), out / name)
            written.append(out / name)
    except BaseException as e:
        for name in staged:
            partial_name(out / name).unlink(missing_ok=True)
        if created and out.is_dir() and not written:
            with contextlib.suppress(OSError):
                out.rmdir()       # only if empty: never remove what someone else put there
        if not isinstance(e, OSError):
            raise
        raise ConfigError(f"could not write the export into {out} ({e.strerror or e}); "
                          f"choose a writable --out folder with free space (nothing of this "
                          f"export was left there).") from None
    return written


def _copy_file(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` and fsync it; on OSError `dst` is removed, then the error raised."""
    try:
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
    except OSError:
        dst.unlink(missing_ok=True)
        raise


def _write_files(store: Store, run: dict[str, Any], folder: Path, out: Path, formats: set[str],
                 models: Any, complete: bool, staged: list[str]) -> None:
    """export_run's files, each written whole under its temporary name (partial_name); `staged`
    gets each name before its file is started, so a failure can remove what was begun."""
    from .report import metrics_panel

    run_id = run["run_id"]

    def stage(name: str) -> Path:
        staged.append(name)
        return partial_name(out / name)

    def put(name: str, text: str) -> None:
        write_file(stage(name), text.encode())

    def put_tensors(name: str, obj: Any) -> None:
        # In memory first (torch's file writer reports a short write as a RuntimeError, or
        # aborts); the bytes are then ours to write and check.
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        write_file(stage(name), buffer.getvalue())

    checks: dict[str, Any] = {}
    if "weights" in formats and complete:
        for name in ("weights.pt", "kept_indices.pt"):
            if (folder / name).exists():
                _copy_file(folder / name, stage(name))
    if models is not None:
        if "masks" in formats:
            put_tensors("masks.pt", models.masks)
        if "masked" in formats:
            put_tensors("masked_state_dict.pt", models.masked.state_dict())
            checks["masked_positions_known"] = models.compaction["positions_known"]
        if "pt2" in formats:
            checks["pt2_max_abs_diff"] = export_compact_program(
                models.compact, models.input_shape, stage("model_compact.pt2"))
        if "onnx" in formats:
            checks["onnx_max_abs_diff"] = export_onnx(
                models.compact, models.input_shape, stage("model_compact.onnx"))
    if "card" in formats:
        meta = {k: run[k] for k in ("run_id", "name", "kind", "status", "error", "created",
                                    "started", "finished")}
        put("config.json", json.dumps({**meta, "config": run["config"].to_dict()}, indent=2))
        put("summary.json", json.dumps(run["summary"], indent=2))
        panel = metrics_panel(store, run_id) if complete else {}
        put("metrics.json", json.dumps({**panel, "exports": checks}, indent=2))
        for table in ("scalars", "layers", "filters"):
            put(f"{table}.csv", getattr(store, table)(run_id).to_csv(index=False))
        for table in store.tables(run_id):
            put(f"table_{table}.csv", store.rows(run_id, table).to_csv(index=False))
        put("LOAD.txt", LOAD_NOTES)


def load_run_card(folder: str | Path) -> dict[str, Any]:
    """An exported run read back without running code from it: config (SessionConfig), summary
    and metrics (dicts), records (DataFrames by CSV name), and masks / masked_state_dict /
    weights (tensors, `torch.load(weights_only=True)`) when present. A tensor file that would
    execute code raises UnsafeFileError."""
    from .safe_load import load_json, load_tensors

    folder = Path(folder)
    config = load_json(folder / "config.json")
    card: dict[str, Any] = {"meta": {k: v for k, v in config.items() if k != "config"},
                            "config": SessionConfig.from_dict(config["config"]),
                            "summary": load_json(folder / "summary.json")}
    if (folder / "metrics.json").exists():
        card["metrics"] = load_json(folder / "metrics.json")
    card["records"] = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))
                       if p.stat().st_size > 1}
    for name in ("masks", "masked_state_dict", "weights", "kept_indices"):
        if (folder / f"{name}.pt").exists():
            card[name] = load_tensors(folder / f"{name}.pt")
    return card
