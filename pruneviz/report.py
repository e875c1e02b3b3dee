"""The metrics panel: what a run's pruning buys, measured rather than assumed.

Every completed run gets one panel (computed at the end of the session, stored in the run
summary under "panel"; `metrics_panel(store, run_id)` returns it, computing and caching it in the
run's folder for runs that lack one):

- the nominal target and what was achieved: sparsity of the prunable weights and of all
  parameters, nonzero parameters, zero filters;
- the compact model: every provably dead filter physically removed (surgery.compact, Torch-
  Pruning's dependency graph), its outputs checked against the masked model (max abs difference
  <= 1e-5, eval mode) before any of its numbers is reported; filters that are zero but coupled by
  a residual addition to live channels are counted, not removed;
- parameters and FLOPs (torch.utils.flop_counter, 2 per multiply-add, one input) dense vs
  compact, and saved file size (torch.save of the state_dict; dense also gzipped);
- inference latency dense vs compact, measured on CPU (and CUDA when present) at batch 1 and 64:
  warm-up, models interleaved, median of repetitions, torch threads stated;
- for an N:M run (`nm`), the 2:4 kernels: on a CUDA GPU that has them (compute capability 8.0+)
  the Linear layers whose weights are 2:4 run as torch semi-structured tensors, timed against
  the dense fp16 model the same way (semistructured.py; convolutions stay dense); elsewhere the
  panel says there are no 2:4 kernels and the zeros only compress;
- plain-language notes where the numbers diverge.

"dense" here is the run's own network in its original architecture (pruned weights held as
zeros): what a user deploys without compaction. Physically shrunk runs (PGP) are expanded back
onto the original architecture first (with `kept_indices.pt` when the run saved one), and the
expansion is checked against the shrunk network like the compaction is.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import ConfigError, SessionConfig, parse_nm
from .masks import Layer, prunable_layers
from .methods.pgp.records import KEPT_FILE
from .metrics import (
    NOISY,
    count_flops,
    cpu_vector_block,
    effective_flops,
    measure_latency,
    paired_ratio,
    param_counts,
    prunable_sparsity,
)
from .modelspec import build_model
from .panel_text import ATOL, format_panel, format_warnings, latency_frame, notes, panel_frame
from .safe_load import UnsafeFileError, load_json, load_tensors, partial_name
from .semistructured import is_two_four, kernel_support, measure
from .store import Store
from .surgery import compact, expand, expand_state_dict, shrink_to

# The panel's words live in panel_text.py; its names stay importable from here.
__all__ = ["ATOL", "LATENCY_BATCHES", "PANEL_FILE", "RunModels", "build_panel", "cpu_vector_block",
           "format_panel", "format_warnings", "latency_frame", "load_folder", "load_run_models",
           "metrics_panel", "models_from_state", "notes", "panel_for_folder", "panel_frame",
           "read_run_files", "run_shapes"]
PANEL_FILE = "panel.json"
LATENCY_BATCHES = (1, 64)
# Seconds of timed repetitions per (device, batch) cell, after one warm-up round: the panel of
# the default digits run costs about a second in all; big models get at least 3 repetitions.
LATENCY_BUDGET_S = 0.25
LATENCY_CAP = 4  # a latency cell starts no repetition after 4x its budget


@dataclass
class RunModels:
    """A run's final network three ways, all computing the same function."""

    masked: nn.Module             # original architecture, final weights (pruned ones are zero)
    compact: nn.Module            # dead filters physically removed (checked equal to `masked`)
    masks: dict[str, torch.Tensor]  # bool, keyed by parameter name, shaped like `masked`'s
    compaction: dict[str, Any]    # surgery.compact's report (+ "shrunk", "positions_known")
    input_shape: tuple[int, ...]
    num_classes: int


def models_from_state(model_name: str, input_shape: tuple[int, ...], num_classes: int,
                      state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None,
                      kept: Any = None) -> RunModels:
    """Rebuild a run's networks from its final state_dict (and masks, and kept indices for a
    physically shrunk run). Raises RuntimeError if an expansion or compaction does not compute
    what the saved network computes."""
    masked = build_model(model_name, input_shape, num_classes).eval()
    dense_state = masked.state_dict()
    unknown = set(state) ^ set(dense_state)
    if unknown:
        raise ConfigError(f"the weights do not fit {model_name} for inputs {input_shape} and "
                          f"{num_classes} classes (unmatched keys: "
                          f"{', '.join(sorted(unknown)[:4])}).")
    shrunk = any(state[k].shape != v.shape for k, v in dense_state.items())
    positions_known = True
    masks = dict(masks or {})
    if shrunk:
        small = copy.deepcopy(masked)
        kept_filters = kept.get("filters", kept) if isinstance(kept, dict) else None
        removal, positions_known = shrink_to(small, state, input_shape, kept_filters)
        masked.load_state_dict(expand_state_dict(state, removal, dense_state))
        masks = {k: expand(m.bool(), removal.kept[k], dense_state[k].shape, False)
                 if k in removal.kept else m for k, m in masks.items()}
        x = torch.randn(4, *input_shape)
        with torch.no_grad():
            expected = small.eval()(x)
            diff = (expected - masked(x)).abs().max().item()
        if not diff <= ATOL * max(1.0, expected.abs().max().item()):
            raise RuntimeError(f"the shrunk network expanded onto {model_name} differs from it "
                               f"by {diff:.3g}; refusing to report it.")
    else:
        masked.load_state_dict(state)
    masks = {k: m.bool() for k, m in masks.items()}
    small, report = compact(masked, input_shape, atol=ATOL)
    report.update(shrunk=shrunk, positions_known=positions_known)
    return RunModels(masked, small.eval(), masks, report, tuple(input_shape), num_classes)


def run_shapes(store: Store, run: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """Input shape (C, H, W) and class count of a run (from its summary, else its dataset)."""
    summary = run["summary"]
    if "input_shape" in summary and "num_classes" in summary:
        return tuple(summary["input_shape"]), int(summary["num_classes"])
    from .data import load_dataset

    c = run["config"]
    data = load_dataset(c.dataset, c.data_root, download=False, augment=c.augment,
                        holdout=c.holdout, image_size=c.image_size)
    return tuple(data.input_shape), data.num_classes


def load_run_models(store: Store, run_id: str) -> RunModels:
    """The networks of a stored run (its final weights.pt, masks.pt and kept_indices.pt)."""
    run = store.run(run_id)
    folder = store.run_dir(run_id, create=False)
    if run["status"] != "completed" or not (folder / "weights.pt").exists():
        raise ConfigError(f"run {run_id} has no final weights (it ended {run['status']}); only "
                          f"completed runs can be compacted, measured and exported.")
    input_shape, num_classes = run_shapes(store, run)
    try:
        return load_folder(folder, run["config"], input_shape, num_classes)
    except ConfigError as e:
        if isinstance(e, UnsafeFileError):
            raise
        raise ConfigError(f"a file of run {run_id} is damaged: {e} Its records, curves and run "
                          f"card still work (`export --formats card`, the Runs and Compare "
                          f"pages); its model files cannot be rebuilt: run the same config again "
                          f"to get them.") from None


def load_folder(folder: Path, config: SessionConfig, input_shape: tuple[int, ...],
                num_classes: int) -> RunModels:
    """The networks saved in a run folder (weights.pt, optional masks.pt and kept_indices.pt)."""
    return models_from_state(config.model, input_shape, num_classes, *read_run_files(folder))


def read_run_files(folder: Path) -> tuple[dict[str, torch.Tensor], Any, Any]:
    """(final state_dict, masks or None, kept indices or None) a run saved in `folder`, read
    through safe_load: the one reader of a run's tensor files (Inspect's loader uses it too)."""
    state = load_tensors(folder / "weights.pt")
    masks = load_tensors(folder / "masks.pt") if (folder / "masks.pt").exists() else None
    kept = load_tensors(folder / KEPT_FILE) if (folder / KEPT_FILE).exists() else None
    return state, masks, kept


def _method_layers(config: SessionConfig, model: nn.Module) -> tuple[str, list[Layer]]:
    """The method's kind and its prunable layers on `model` (a default if it is unknown)."""
    from .methods import get_method, make_params

    try:
        cls = get_method(config.method)
        return cls.kind, cls(make_params(cls, config.params)).select_layers(model)
    except ConfigError:
        return "unstructured", prunable_layers(model, first_conv=False)


def _saved_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def _latency(models: RunModels, budget_s: float, batches: tuple[int, ...],
             devices: list[str]) -> list[dict[str, Any]]:
    rows = []
    for device in devices:
        pair = {"dense": copy.deepcopy(models.masked).to(device),
                "compact": copy.deepcopy(models.compact).to(device)}
        for batch in batches:
            # a hard cap per cell: a slow model or a saturated machine cuts repetitions short
            # (the row says how many) rather than stretching the run
            deadline = time.perf_counter() + LATENCY_CAP * budget_s
            for attempt in range(2):      # a busy machine gets one longer second try
                t = measure_latency(pair, models.input_shape, batch, device=device,
                                    budget_s=budget_s * (1 + 3 * attempt), warmup=1,
                                    min_reps=5, deadline=deadline)
                d, c = t["dense"], t["compact"]
                spread = max(d["iqr_s"] / d["median_s"], c["iqr_s"] / c["median_s"])
                if spread <= NOISY or time.perf_counter() > deadline:
                    break
            rows.append({
                "device": device, "batch": batch,
                "threads": torch.get_num_threads() if device == "cpu" else None,
                "dense_ms": d["median_s"] * 1e3, "compact_ms": c["median_s"] * 1e3,
                "speedup": paired_ratio(d["times"], c["times"]),
                "reps": d["reps"], "spread": spread})
    return rows


def build_panel(models: RunModels, config: SessionConfig, summary: dict[str, Any] | None = None,
                *, latency_budget_s: float = LATENCY_BUDGET_S,
                batches: tuple[int, ...] = LATENCY_BATCHES,
                devices: list[str] | None = None) -> dict[str, Any]:
    """The panel (a JSON-ready dict) for a run's networks; see the module docstring.

    Achieved sparsities come from the run's `summary` when given (the session's definitions,
    the same for every method: a shrunk run counts as its masked twin); otherwise they are
    counted on the masked network.
    """
    summary = summary or {}
    started = time.perf_counter()
    masked, small, rep = models.masked, models.compact, models.compaction
    kind, layers = _method_layers(config, masked)
    params_dense, nonzero = param_counts(masked)
    convs = [l for l in layers if l.is_conv]
    filters_total = sum(l.module.out_channels for l in convs)
    filters_zero = sum(int((l.module.weight.detach().flatten(1) == 0).all(1).sum()) for l in convs)
    flops_dense = count_flops(masked, models.input_shape)
    flops_compact = count_flops(small, models.input_shape)
    panel: dict[str, Any] = {
        "method": config.method, "kind": kind, "model": config.model, "dataset": config.dataset,
        "input_shape": list(models.input_shape),
        "target": config.rate,
        "target_of": ("filters of each prunable conv" if kind == "filter"
                      else "weights of the prunable layers"),
        "sparsity": summary.get("sparsity", prunable_sparsity(layers)),
        "global_sparsity": summary.get("global_sparsity", 1.0 - nonzero / params_dense),
        "filter_sparsity": filters_zero / filters_total if filters_total else 0.0,
        "params_dense": params_dense, "params_nonzero": nonzero,
        "params_compact": param_counts(small)[0],
        "filters": rep["filters"], "filters_zero": rep["filters_zero"],
        "filters_dead": rep["filters_dead"], "filters_removed": rep["filters_removed"],
        "filters_coupled": rep["filters_coupled"], "coupled": rep["coupled"],
        "shrunk": rep["shrunk"], "positions_known": rep["positions_known"],
        "flops_dense": flops_dense, "flops_compact": flops_compact,
        "flops_effective": effective_flops(masked, models.input_shape),
        **_file_sizes(masked, small),
        "max_abs_diff": rep["max_abs_diff"], "output_scale": rep["output_scale"],
        **_channel_blocks(small),
    }
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    panel["latency"] = _latency(models, latency_budget_s, batches, devices)
    pattern = parse_nm(config.params.get("nm", ""))
    if pattern is not None:
        panel.update(nm=f"{pattern[0]}:{pattern[1]}",
                     nm_dense_layers=summary.get("nm_dense_layers"),
                     semi_structured=_semi_structured(models, latency_budget_s, batches, devices))
    if summary.get("unpruned_layers"):
        panel["unpruned_layers"] = list(summary["unpruned_layers"])
    panel["notes"] = notes(panel)
    panel["warnings"] = list(summary.get("warnings", []))
    panel["panel_s"] = round(time.perf_counter() - started, 3)
    return panel


def _file_sizes(masked: nn.Module, small: nn.Module) -> dict[str, int]:
    """Saved state_dict bytes: the masked model (and gzipped), the compact one."""
    buf = io.BytesIO()
    torch.save(masked.state_dict(), buf)
    return {"bytes_dense": len(buf.getvalue()),
            "bytes_dense_gzip": len(gzip.compress(buf.getvalue(), 6)),
            "bytes_compact": _saved_bytes(small)}


def _channel_blocks(small: nn.Module) -> dict[str, Any]:
    """This CPU's convolution channel block and the compact convs not a multiple of it."""
    capability, block = cpu_vector_block()
    compact_convs = [m for m in small.modules() if isinstance(m, nn.Conv2d)]
    return dict(cpu_capability=capability, vector_block=block,
                convs_unaligned=sum(m.out_channels % block != 0 for m in compact_convs)
                if block else 0, convs=len(compact_convs))


def _semi_structured(models: RunModels, budget_s: float, batches: tuple[int, ...],
                     devices: list[str]) -> dict[str, Any]:
    """The masked model on 2:4 sparse kernels vs dense fp16, on CUDA where the GPU has them
    (semistructured.measure); elsewhere why not, and which Linear layers are 2:4."""
    backend, reason = kernel_support()
    if backend is None or "cuda" not in devices:
        linears = [n for n, m in models.masked.named_modules()
                   if isinstance(m, nn.Linear) and is_two_four(m.weight)]
        return {"backend": None, "reason": reason, "two_four_linears": linears}
    return {"reason": reason, **measure(models.masked, models.input_shape, batches,
                                        budget_s=budget_s, backend=backend)}




def panel_for_folder(folder: Path, config: SessionConfig, input_shape: tuple[int, ...],
                     num_classes: int, summary: dict[str, Any] | None = None, **kw: Any
                     ) -> dict[str, Any]:
    """The panel of the run saved in `folder`, or {"error": ...} if it cannot be built (a panel
    must never end a run)."""
    try:
        return build_panel(load_folder(folder, config, input_shape, num_classes), config,
                           summary, **kw)
    except Exception as e:  # noqa: BLE001 - reported in the panel, the run stays completed
        return {"error": f"{type(e).__name__}: {e}"}


def metrics_panel(store: Store, run_id: str, *, recompute: bool = False) -> dict[str, Any]:
    """The run's panel: the one stored with the run, else one computed now and cached in the
    run's folder ({"error": ...} for runs without final weights)."""
    run = store.run(run_id)
    # The run's summary is the truth for its warnings (a panel cached earlier may lack them).
    warned = {"warnings": list(run["summary"].get("warnings", []))}
    cached = store.run_dir(run_id, create=False) / PANEL_FILE
    if run["status"] != "completed":
        # A run stopped while finishing may hold final-looking files; never a panel for it.
        return {"error": f"run {run_id} ended {run['status']}; only completed runs have a "
                         f"metrics panel."}
    if not recompute:
        if cached.exists():
            return {**load_json(cached), **warned}
        if "panel" in run["summary"]:
            return {**run["summary"]["panel"], **warned}
    try:
        models = load_run_models(store, run_id)
    except ConfigError as e:
        return {"error": str(e), **warned}
    try:
        panel = build_panel(models, run["config"], run["summary"])
    except (RuntimeError, ValueError) as e:
        panel = {"error": f"{type(e).__name__}: {e}"}
    try:     # a cache: a full disk or a read-only store costs a recompute next time, no more
        partial_name(cached).write_text(json.dumps(panel, indent=2))
        os.replace(partial_name(cached), cached)
    except OSError:
        partial_name(cached).unlink(missing_ok=True)
    return panel
