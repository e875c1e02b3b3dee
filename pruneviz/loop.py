"""The training loop (the only one): a prepared session's steps with the method's hooks, its
records streamed to the store, its final weights saved and its end committed."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, SessionConfig
from .data import DataBundle
from .guards import layer_health, output_constant, run_warnings
from .masks import apply_masks
from .methods import Context, Method, family_module
from .methods.base import check_layers, check_penalty, masks_changed, masks_signature
from .metrics import (
    count_flops,
    effective_flops,
    evaluate,
    layer_stats,
    param_counts,
    prunable_sparsity,
)
from .records import Recorder, Summary
from .safe_load import save_tensors
from .schedules import lr_at
from .store import RunSink, sqlite_error
from .structure import unpruned_layers
from .surgery import compact_size, filter_count

Progress = Callable[[int, int, str], None]   # (steps done, total steps, phase)
FLUSH_SECONDS = 0.5


class Cancelled(Exception):
    pass


class Diverged(Exception):
    pass


@dataclass
class Prepared:
    """A validated session: everything that can fail on bad input has been checked."""

    config: SessionConfig
    method: Method
    data: DataBundle
    model: nn.Module
    device: torch.device


def make_optimizer(model: nn.Module, config: SessionConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0,
                           weight_decay=config.weight_decay)


def train(prep: Prepared, store: RunSink, run_id: str, *, progress: Progress | None = None,
          cancel: threading.Event | None = None, phase: str = "session",
          dense_run: str | None = None) -> dict[str, Any]:
    """Run the whole session; returns its summary (status completed, interrupted, diverged or
    failed)."""
    return Session(prep, store, run_id, progress=progress, cancel=cancel, phase=phase,
                   dense_run=dense_run).run()


class Session:
    """One run of the loop. `run()` drives it; `begin`, `step`, `end_epoch` and `finish` are
    the pieces, public so benchmarks time exactly the step the loop runs."""

    def __init__(self, prep: Prepared, store: RunSink, run_id: str, *,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 phase: str = "session", dense_run: str | None = None) -> None:
        config, data, device = prep.config, prep.data, prep.device
        self.config, self.method, self.data, self.store, self.run_id = (
            config, prep.method, data, store, run_id)
        self.progress, self.cancel, self.phase = progress, cancel, phase
        model = prep.model.to(device)
        model.train()
        self.spe = data.steps_per_epoch(config.batch_size, config.max_steps_per_epoch)
        self.total = self.spe * config.epochs
        owner = type(prep.method).__module__
        family_module(type(prep.method), "records")      # its declared keys, before any write
        self.rec = Recorder(owner)
        self.ctx = ctx = Context(
            model=model, optimizer=make_optimizer(model, config), config=config, data=data,
            device=device, steps_per_epoch=self.spe, record=self.rec,
            gen=torch.Generator(device=device).manual_seed(config.seed + 1),
            evaluate=lambda: evaluate(ctx.model, data, device, config.eval_limit),
            run_dir=store.run_dir(run_id), summary=Summary(owner))
        ctx.layers = self.method.select_layers(model)
        unpruned = unpruned_layers(model, self.method.kind)
        # prunable weight shapes at the dense start: physically removed weights count as pruned
        self.dense_shapes = {l.name: l.module.weight.shape for l in ctx.layers}
        self.params_dense = param_counts(model)[0]
        self.filters_dense = filter_count(model)
        self.layer_every = max(1, self.total // 100)
        self.zeros: list[torch.Tensor] = []        # where the prunable weights are exactly 0
        self.last_change: int | None = None        # step the zero pattern last changed at
        self.masks_seen: Any = None                # masks_signature of ctx.masks at the last look
        self.summary: dict[str, Any] = {
            "run_id": run_id, "method": config.method, "model": config.model,
            "dataset": config.dataset, "rate": config.rate, "device": str(device),
            "dense_run": dense_run, "flops_dense": count_flops(model, data.input_shape),
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "train_size": len(data.train_x), "test_size": len(data.test_x)}
        if unpruned:     # what stays dense on this model, and why (never guessed)
            self.summary["unpruned_layers"] = unpruned
        if 0 < config.eval_limit < len(data.test_x):    # each evaluation sees this many
            self.summary["eval_size"] = config.eval_limit
        if data.skipped:     # unreadable or oversized files of an image folder, named
            self.summary.update(skipped_images=len(data.skipped), skipped_first=data.skipped[:5])
        self.t0 = self.last_flush = time.perf_counter()

    # -- pieces ------------------------------------------------------------------------------
    def flush(self, force: bool = False) -> None:
        """Commit pending records (at most every FLUSH_SECONDS) and honour a cancel request."""
        now = time.perf_counter()
        if force or now - self.last_flush >= FLUSH_SECONDS:
            self.store.write(self.run_id, self.rec.take(), step=self.ctx.step)
            self.last_flush = now
            if self.store.cancel_requested(self.run_id):
                raise Cancelled

    def snapshot(self) -> None:
        """Achieved and target sparsity, and per-layer stats, at the current step."""
        ctx, rec = self.ctx, self.rec
        rec.scalar("sparsity", prunable_sparsity(ctx.layers, self.dense_shapes))
        target = self.method.target(ctx)
        if target is not None:
            rec.scalar("target_sparsity", target)
        for layer in ctx.layers:
            for key, value in layer_stats(layer, self.dense_shapes.get(layer.name)).items():
                rec.layer(layer.name, key, value)

    def evaluate(self, prefix: str) -> dict[str, float]:
        result = self.ctx.evaluate()
        self.rec.scalars({f"{prefix}_{k}": v for k, v in result.items()})
        return result

    def track_zeros(self, step: int) -> None:
        """Note the step if the prunable weights' zero pattern changed since the last look (a
        mask applied, moved or physically cut): the guards' "no recovery" check reads it. The
        session looks after before_training (step -1), after every step that replaced or
        edited ctx.masks (gradual methods) and at every epoch's end (its last step)."""
        self.masks_seen = masks_signature(self.ctx.masks)
        zeros = [l.module.weight.detach() == 0 for l in self.ctx.layers]
        if not self.zeros:          # the first look, after before_training: pruned already?
            changed = any(bool(z.any()) for z in zeros)
        else:
            changed = not all(a.shape == b.shape and torch.equal(a, b)
                              for a, b in zip(zeros, self.zeros))
        if changed:
            self.last_change = step
        self.zeros = zeros

    def check_pruned(self) -> None:
        if self.ctx.pruned and "pruned_accuracy" not in self.summary:
            self.summary.update(_quality("pruned", self.evaluate("pruned")))

    def begin(self) -> None:
        self.store.start_run(self.run_id, self.total)
        if self.config.start == "dense" and self.phase == "session":
            self.summary.update(_quality("dense", self.evaluate("dense")))
        self.method.before_training(self.ctx)
        self.dense_shapes.update({l.name: l.module.weight.shape for l in self.ctx.layers})
        check_layers(self.ctx)
        self.track_zeros(-1)
        self.check_pruned()
        self.snapshot()
        self.flush(force=True)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step with every hook, mask and record (ctx.step already set)."""
        ctx, config, method, rec = self.ctx, self.config, self.method, self.rec
        started = time.perf_counter()
        lr = lr_at(ctx.step, self.total, config.lr, config.lr_schedule, config.lr_milestones,
                   config.lr_gamma)
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr
        logits = ctx.model(x)
        target = y
        if logits.dim() == 3:       # a language model: every position predicts the next token
            logits, target = logits.flatten(0, 1), y.flatten()
        ce = F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
        penalty = method.loss_penalty(ctx)
        check_penalty(method, penalty)
        loss = ce if penalty is None else ce + penalty
        ctx.x, ctx.y, ctx.loss = x, y, loss
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise Diverged(f"the loss became {loss_value} at step {ctx.step}; lower the "
                           f"learning rate or the method's penalty.")
        method.after_backward(ctx)
        ctx.optimizer.step()
        apply_masks(ctx.model, ctx.masks)
        method.after_step(ctx)
        if masks_changed(self.masks_seen, ctx.masks):     # replaced or edited in place
            self.track_zeros(ctx.step)
        now = time.perf_counter()
        rec.scalars({"loss": loss_value, "lr": lr, "step_time": now - started,
                     "wall_time": now - self.t0,
                     "train_accuracy": (logits.argmax(1) == target).float().mean().item()})
        if penalty is not None:
            rec.scalar("ce", ce.item())
        if ctx.step % self.layer_every == 0:
            self.snapshot()
        self.check_pruned()

    def end_epoch(self) -> None:
        self.method.end_of_epoch(self.ctx)
        check_layers(self.ctx)
        self.track_zeros((self.ctx.epoch + 1) * self.spe - 1)
        self.check_pruned()
        self.evaluate("test")
        self.snapshot()
        self.flush(force=True)

    def finish(self, status: str, error: str | None) -> dict[str, Any]:
        """Final metrics, artifacts, and the run's status in the store."""
        return self.end(self.close(status, error))

    def close(self, status: str, error: str | None) -> dict[str, Any]:
        """Final metrics and artifacts: the run's summary, not yet committed to the store."""
        ctx, summary = self.ctx, self.summary
        summary.update(_final_metrics(ctx, self.data.input_shape, status == "completed",
                                      self.dense_shapes, self.params_dense))
        summary["wall_s"] = round(time.perf_counter() - self.t0, 3)
        summary["steps"] = ctx.step + 1 if self.total else 0
        summary.update(ctx.summary)
        if status == "completed" and ctx.pruned and self.method.kind == "filter":
            size = compact_size(ctx.model, self.data.input_shape)
            if "filters_compact" in size:     # against the dense start: PGP shrinks as it trains
                size["filters_removed"] = self.filters_dense - size["filters_compact"]
            summary.update(size)
        if status == "completed" and self.phase == "session":
            summary.update(self.guards())
        summary["status"] = status
        summary.update(self.store.trainer(self.run_id))    # backend, host, pid
        if error:
            summary["error"] = error
        if status == "completed":
            folder = self.store.run_dir(self.run_id)
            try:
                _save_artifacts(ctx, folder)
            except OSError as e:
                summary["status"] = "failed"
                summary["error"] = (
                    f"could not save the final weights in {folder} ({e}); free some disk space "
                    f"and run it again (its records are kept).")
                summary["storage_error"] = True
        return summary

    def end(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Commit the last records and the run's status and summary; returns the summary."""
        try:
            self.store.write(self.run_id, self.rec.take(), step=self.ctx.step)
            self.store.finish_run(self.run_id, summary["status"], summary=summary,
                                  error=summary.get("error"))
        except sqlite3.Error as e:
            # The final commit failed (a full disk, say): end the run in the smallest write
            # possible rather than leave it `running`; the summary is lost, the steps committed
            # before are kept. If even that fails, the next open reaps it (its process is gone).
            message = str(sqlite_error(e, self.store.root))
            summary.update(status="failed", error=message, storage_error=True)
            self.store.release_reserve()
            try:
                self.store.finish_run(self.run_id, "failed", error=message)
            except sqlite3.Error:
                pass
        return summary

    def guards(self) -> dict[str, Any]:
        """`warnings` (guards.py) and `recovery_epochs`, the epochs (in steps / steps per
        epoch) trained after the last mask change (None when nothing was ever pruned)."""
        ctx, config, summary = self.ctx, self.config, self.summary
        recovery = (None if self.last_change is None
                    else round((self.total - 1 - self.last_change) / self.spe, 3))
        health = layer_health(ctx.layers, self.dense_shapes)
        x, _ = next(self.data.test_batches(ctx.device, batch_size=256, limit=256))
        warnings = run_warnings(
            method=config.method, kind=self.method.kind, rate=config.rate,
            params=dataclasses.asdict(self.method.p), layers=health,
            cut=output_constant(ctx.model, x), dense_accuracy=summary.get("dense_accuracy"),
            final_accuracy=summary.get("final_accuracy"), num_classes=self.data.num_classes,
            dense_perplexity=summary.get("dense_perplexity"),
            final_perplexity=summary.get("final_perplexity"),
            epochs=config.epochs, recovery_epochs=recovery,
            recovery_hint=self.method.recovery_hint,
            # images an accuracy was measured on; a language model's perplexity is over tokens
            heldout=None if "final_perplexity" in summary else summary.get(
                "eval_size", len(self.data.test_x)))
        # The data's own caveats (a held-out split missing a class) first: they qualify every
        # number the run reports.
        data_warnings = getattr(self.data, "warnings", [])     # a bundle may carry none
        return {"recovery_epochs": recovery, "warnings": [*data_warnings, *warnings]}

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train, save and commit; returns the run summary."""
        return self.finish(*self.loop())

    def loop(self) -> tuple[str, str | None]:
        """Every epoch's steps with the method's hooks; returns the run's status and error."""
        ctx, config = self.ctx, self.config
        status, error = "completed", None
        try:
            self.begin()
            for epoch in range(config.epochs):
                ctx.epoch = self.rec.epoch = epoch
                batches = self.data.train_batches(epoch, config.seed, config.batch_size,
                                                  ctx.device, config.max_steps_per_epoch)
                for i, (x, y) in enumerate(batches):
                    ctx.step = self.rec.step = epoch * self.spe + i
                    self.step(x, y)
                    if self.progress is not None:
                        self.progress(ctx.step + 1, self.total, self.phase)
                    if self.cancel is not None and self.cancel.is_set():
                        raise Cancelled
                    self.flush(force=ctx.step == 0)     # the first step shows at once
                self.end_epoch()
            ctx.pruned = True
            self.check_pruned()
        except Cancelled:
            status, error = "interrupted", "cancelled by the user"
        except Diverged as e:
            status, error = "diverged", str(e)
        except Exception as e:
            if isinstance(e, ConfigError):     # bad input found mid-run: its message says it all
                status, error = "failed", str(e)
                self.summary["config_error"] = True
            else:
                status, error = "failed", f"{type(e).__name__}: {e}"
        return status, error


def _quality(phase: str, result: dict[str, float]) -> dict[str, float]:
    """`<phase>_accuracy`, and for a language model `<phase>_perplexity`, for the summary."""
    out = {f"{phase}_accuracy": result["accuracy"]}
    if "perplexity" in result:
        out[f"{phase}_perplexity"] = result["perplexity"]
    return out


def _final_metrics(ctx: Context, input_shape: tuple[int, ...], evaluate_final: bool,
                   dense_shapes: dict[str, torch.Size], params_dense: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if evaluate_final:
        result = ctx.evaluate()
        out.update(_quality("final", result))
        if "top5" in result:
            out["final_top5"] = result["top5"]
    total, nonzero = param_counts(ctx.model)
    out.update(sparsity=prunable_sparsity(ctx.layers, dense_shapes),
               global_sparsity=1.0 - nonzero / params_dense, params_dense=params_dense,
               params_total=total, params_nonzero=nonzero,
               flops=count_flops(ctx.model, input_shape),
               flops_effective=effective_flops(ctx.model, input_shape))
    return out


def _save_artifacts(ctx: Context, folder: Path) -> None:
    """Final weights and masks (bool, keyed by parameter name) in the run's folder."""
    masks = {k: m.bool().cpu() for k, m in ctx.masks.items()}
    for layer in ctx.layers:
        masks.setdefault(layer.param, (layer.module.weight != 0).cpu())
    try:
        save_tensors({k: v.detach().cpu() for k, v in ctx.model.state_dict().items()},
                     folder / "weights.pt")
        save_tensors(masks, folder / "masks.pt")
    except OSError:
        # Half a pair would be read as final weights: remove both.
        for name in ("weights.pt", "masks.pt"):
            (folder / name).unlink(missing_ok=True)
        raise
