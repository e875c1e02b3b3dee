"""PGP: Progressive Gradient Pruning (hybrid hard/soft, momentum-aware), RPGP and PSFP.

Nguyen-Meidine, Granger, Kiran, Pedersoli, Blais-Morin, "An Improved Trade-off Between Accuracy
and Complexity with Progressive Gradient Pruning", ICPR 2020, arXiv 1906.08746. PSFP: He, Dong,
Kang, Fu, Yang, arXiv 1808.07471.

Implements, after each of the first E epochs (the pruning epochs): the score s_i = ||sum_b
grad_b W_i||_1 (pgp, an extra pass), sum_b ||grad_b W_i||_1 (rpgp, while training) or ||W_i||_2
(psfp), for a residual group the members' sum or its lead conv's (group_score); the target
count n(e) = N0 exp(-lambda (e + 1)), lambda = -ln(1 - P) / E (PSFP: N0 r(e + 1), ASFP's
asymptotic rate); the weak set, the current - ceil(n(e)) lowest scores, split by
math.hybrid_split into hard (removed by pruneviz.surgery) and soft (zeroed, its first moment
zeroed; PSFP keeps the momentum), all hard at the last pruning epoch; then fine-tuning. Behind
a BatchNorm a soft-reset filter gets exactly zero gradient (weights, gamma and beta, in the
authors' code too), so it cannot regrow and goes at a later epoch. Records: records.py.
On vit_tiny and gpt_tiny the filters are each block's attention heads and MLP neurons
(methods/structures.py), each unit its own group, and the hard set is masked for good rather
than cut mid-training: the session's compaction removes it (docs/methods.md, "Filter methods
on transformers").
Defaults, the reference counts and fidelity choices: docs/methods.md, "PGP, RPGP, PSFP".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import torch
import torch.nn as nn

from ...config import SessionConfig, param
from ...masks import (
    Layer,
    apply_masks,
    conv_bn_pairs,
    filter_norms,
    filter_param_masks,
    prunable_layers,
)
from ...metrics import count_flops, param_counts
from ...schedules import asymptotic_keep_rate, exponential_count
from ...structure import lookup
from ...surgery import channel_groups, remove_filters
from .. import structures as st
from ..base import Context, Method, register
from ..roundto import RoundTo, preview_block, preview_rows, round_mode_field, round_to_field
from .math import (
    criterion_pass,
    gradient_sums,
    group_scores,
    hybrid_split,
    preview_removal,
    pruning_epochs,
    soft_reset,
    spearman,
    whole,
)
from .records import ACTIVE, EPOCHS, HARD, KEPT_FILE, LAYERS, SOFT

FIRST_MOMENTS = ("momentum_buffer", "exp_avg")    # SGD and Adam first-moment state


@dataclass(frozen=True)
class Params:
    prune_fraction: float = param(0.75, "Fraction of the session's epochs that prune (E = "
                                        "round(fraction x epochs), at least 1); the rest "
                                        "fine-tune the pruned network.", min=0.05, max=1.0)
    prune_epochs: int = param(0, "Pruning epochs E as a count (capped at the session's epochs); "
                                 "0 uses prune_fraction.", min=0, max=1000)
    hard_fraction: float = param(0.5, "Share of each epoch's weak filters removed physically "
                                      "(the weakest); the rest are reset to zero (behind a "
                                      "BatchNorm they get no gradient and cannot regrow). The "
                                      "last pruning epoch removes every weak filter.",
                                 min=0.0, max=1.0, step=0.05)
    zero_momentum: bool = param(True, "Zero the optimizer momentum of reset filters (PGP's "
                                      "momentum adaptation); off, stale momentum pushes them "
                                      "back as in PSFP.")
    group_score: str = param("sum", "Who picks a residual group's shared channels: sum = the "
                                    "sum of its convs' scores; lead = the group's lead conv "
                                    "alone (the stem, or the stage's projection shortcut), as "
                                    "the authors' code does.", choices=("sum", "lead"))
    round_to: str = round_to_field()
    round_mode: str = round_mode_field()


@dataclass(frozen=True)
class PSFPParams:
    prune_fraction: float = param(0.75, "Fraction of the session's epochs that prune (E = "
                                        "round(fraction x epochs), at least 1); the rest "
                                        "fine-tune with the zeroed filters masked.",
                                  min=0.05, max=1.0)
    prune_epochs: int = param(0, "Pruning epochs E as a count (capped at the session's epochs); "
                                 "0 uses prune_fraction.", min=0, max=1000)
    d: float = param(0.125, "ASFP's D: 3/4 of the pruning is reached after D x E epochs.",
                     min=0.01, max=1.0)
    round_to: str = round_to_field()
    round_mode: str = round_mode_field()


class Progressive(RoundTo, Method):
    """The shared code path: score, weak set, hybrid split, reset, surgery, records."""

    kind = "filter"
    recovery_hint = ("lower prune_fraction (or prune_epochs) so fine-tuning epochs follow the "
                     "last pruning epoch.")
    criterion: ClassVar[str] = "pass"      # "pass" (PGP), "running" (RPGP) or "l2" (PSFP)
    physical: ClassVar[bool] = True        # remove hard filters (PGP) or mask them (PSFP)
    structures = True       # on vit_tiny and gpt_tiny: attention heads and MLP neurons

    # -- schedule ----------------------------------------------------------------------------
    @classmethod
    def n_pruning_epochs(cls, epochs: int, params: Any) -> int:
        return pruning_epochs(epochs, params.prune_fraction, params.prune_epochs)

    @classmethod
    def keep_target(cls, n0: int, e: int, epochs: int, rate: float, params: Any) -> float:
        """Filters to keep (float) after pruning epoch e of `epochs`."""
        return exponential_count(n0, e, epochs, rate)

    @classmethod
    def schedule(cls, config: SessionConfig, params: Any) -> pd.DataFrame:
        """Target sparsity per pruning epoch, what a 64-filter conv has removed (PGP, RPGP)
        and the model's pruned filters once rounded (round_to), held through fine-tuning."""
        epochs = cls.n_pruning_epochs(config.epochs, params)
        plan = [(e + 1.0, lambda n, e=e: whole(cls.keep_target(n, e, epochs, config.rate,
                                                                params))) for e in range(epochs)]
        rows = [(0.0, "target sparsity", 0.0)] + [
            (x, "target sparsity", 1.0 - cls.keep_target(64, e, epochs, config.rate, params) / 64)
            for e, (x, _) in enumerate(plan)]
        if cls.physical:
            rows += preview_removal(64, [count(64) for _, count in plan], params.hard_fraction,
                                    preview_block(config, params), params.round_mode)
        rows += preview_rows(cls, config, params, [(0.0, lambda n: n), *plan], sparsity=True)
        if config.epochs > epochs:       # each series holds its last value to the end
            last = {series: value for _, series, value in rows}
            rows += [(float(config.epochs), series, value) for series, value in last.items()]
        return pd.DataFrame(rows, columns=["epoch", "series", "value"])

    @classmethod
    def mask_final(cls, config: SessionConfig, params: Any) -> float | None:
        return float(cls.n_pruning_epochs(config.epochs, params))

    def target(self, ctx: Context) -> float | None:
        if not hasattr(self, "groups"):
            return None
        done = min(self.E, (ctx.step + 1) // max(ctx.steps_per_epoch, 1))
        pruned = total = 0
        for name, n0 in self.n0.items():
            per = self.per_filter[name]
            keep = n0 if done == 0 else self.rounded(
                whole(self.keep_target(n0, done - 1, self.E, ctx.config.rate, self.p)), n0)
            pruned += (n0 - keep) * per
            total += n0 * per
        return pruned / total if total else 0.0

    # -- hooks -------------------------------------------------------------------------------
    def select_layers(self, model: nn.Module) -> list[Layer]:
        if st.uses_structures(model):       # the blocks' linears: heads' and neurons' weights
            return prunable_layers(model, first_conv=False, last_linear=False)
        return prunable_layers(model, linears=False, first_conv=True, shortcuts=True)

    def before_training(self, ctx: Context) -> None:
        model = ctx.model
        self.example = torch.zeros(1, *ctx.data.input_shape, device=ctx.device)
        self.units: dict[str, st.Unit] = {}
        if st.uses_structures(model):
            self._structure_groups(ctx)
        else:
            self._conv_groups(ctx)
        self.E = self.n_pruning_epochs(ctx.epochs, self.p)
        self.status = {n: torch.zeros(n0, dtype=torch.long) for n, n0 in self.n0.items()}
        self.kept: dict[str, dict[int, torch.Tensor]] = {}
        self.dense_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.running = self._zeros(ctx)
        self.flops = count_flops(model, ctx.data.input_shape)
        self.params = param_counts(model)[0]
        ctx.summary.update(prune_epochs=self.E, filters_dense=sum(self.n0.values()))
        self.resolve_round_to(ctx)
        self._save_kept(ctx)
        self.t_epoch = time.perf_counter()

    def _conv_groups(self, ctx: Context) -> None:
        """The convs' filters: residual groups share channels (surgery.channel_groups)."""
        model = ctx.model
        self.groups = channel_groups(model, self.example)
        known = {l.name for l in ctx.layers}
        if lookup(model) is not None:
            # a traced model: a group with a conv that stays dense (grouped, coupled to a
            # LayerNorm or a linear, ignored) is not removed at all
            self.groups = [g for g in self.groups if all(n in known for n in g)]
        bns = conv_bn_pairs(model)
        modules = dict(model.named_modules())
        for group in self.groups:        # every conv is pruned; coupled ones come along
            for name in group:
                if name not in known:
                    bn = bns.get(name)
                    ctx.layers.append(Layer(name, modules[name], bn, modules[bn] if bn else None))
        self.layer = {l.name: l for l in ctx.layers}
        self.n0 = {l.name: l.module.out_channels for l in ctx.layers}
        self.per_filter = {l.name: math.prod(l.module.weight.shape[1:]) for l in ctx.layers}

    def _structure_groups(self, ctx: Context) -> None:
        """A transformer's heads and neurons (methods/structures.py), each unit its own group:
        the weak set is masked (held at zero) instead of removed mid-training, and the session's
        compaction removes it physically at the end."""
        self.units = {u.name: u for u in st.units(ctx.model)}
        self.weights = st.params(ctx.model)
        self.groups = [[name] for name in self.units]
        self.layer = {}
        self.n0 = {n: u.count for n, u in self.units.items()}
        self.per_filter = {n: u.weights for n, u in self.units.items()}

    def after_backward(self, ctx: Context) -> None:
        if self.criterion != "running" or ctx.epoch >= self.E:
            return
        with torch.no_grad():
            if self.units:
                grads = {k: p.grad for k, p in self.weights.items()}
                for name, unit in self.units.items():
                    self.running[name] += st.reduce(unit, grads, torch.abs)
                return
            for layer in ctx.layers:
                g = layer.module.weight.grad
                if g is not None:
                    self.running[layer.name] += g.flatten(1).abs().sum(1)

    def end_of_epoch(self, ctx: Context) -> None:
        e = ctx.epoch
        row: dict[str, Any] = dict(phase="prune" if e < self.E else "finetune",
                                   epoch_time=time.perf_counter() - self.t_epoch,
                                   flops_trained=self.flops, params_trained=self.params)
        if e < self.E:
            row.update(self._prune(ctx, e))
            self.flops = count_flops(ctx.model, ctx.data.input_shape)
            self.params = param_counts(ctx.model)[0]
        row.update(flops=self.flops, params=self.params,
                   filters=self._present(ctx),
                   target_sparsity=self.target(ctx))
        EPOCHS.write(ctx.record, **row)
        if e == self.E - 1:
            self._finish_pruning(ctx)
        self.t_epoch = time.perf_counter()

    # -- the pruning epoch -------------------------------------------------------------------
    def _zeros(self, ctx: Context) -> dict[str, torch.Tensor]:
        if self.units:
            return {n: torch.zeros(u.count, device=ctx.device) for n, u in self.units.items()}
        return {l.name: torch.zeros(l.module.out_channels, device=ctx.device)
                for l in ctx.layers}

    def _present(self, ctx: Context) -> int:
        """Filters present (a transformer's structures not masked for good)."""
        if self.units:
            return sum(len(self.original(n)) for n in self.units)
        return sum(l.module.out_channels for l in ctx.layers)

    def original(self, name: str) -> torch.Tensor:
        """Original (dense) index of each filter now present in conv `name` (a transformer's
        unit: its structures not yet masked for good)."""
        if self.units:
            return torch.nonzero(self.status[name] != HARD).flatten()
        kept = self.kept.get(f"{name}.weight", {}).get(0)
        return kept if kept is not None else torch.arange(self.n0[name])

    def _norms(self, name: str) -> torch.Tensor:
        """L2 norm of each present filter of `name` (a structure: over all its slices)."""
        if self.units:
            n = st.norms(self.units[name], self.weights)
            return n[self.original(name).to(n.device)]
        return filter_norms(self.layer[name].module.weight)

    def _scores(self, ctx: Context) -> dict[str, torch.Tensor]:
        if self.criterion == "l2":
            return {n: self._norms(n) for n in self.n0}
        if self.criterion == "running":
            scores = self.running
        elif self.units:
            scores = self._structure_pass(ctx)
        else:
            scores = criterion_pass(ctx.model, {l.name: l.module.weight for l in ctx.layers},
                                    self._batches(ctx), ctx.config.label_smoothing)
        if self.units:        # running sums cover every structure; score the present ones
            return {n: s[self.original(n).to(s.device)] for n, s in scores.items()}
        return scores

    def _batches(self, ctx: Context) -> Any:
        c = ctx.config
        return ctx.data.train_batches(ctx.epoch, c.seed, c.batch_size, ctx.device,
                                      c.max_steps_per_epoch)

    def _structure_pass(self, ctx: Context) -> dict[str, torch.Tensor]:
        """The filter change || sum_b grad_b ||_1 over all of each structure's slices."""
        names = sorted({p.param for u in self.units.values() for p in u.parts})
        sums = gradient_sums(ctx.model, {n: self.weights[n] for n in names}, self._batches(ctx),
                             ctx.config.label_smoothing)
        return {n: st.reduce(u, sums, torch.abs) for n, u in self.units.items()}

    def _prune(self, ctx: Context, e: int) -> dict[str, Any]:
        """One pruning epoch: score, pick each group's weak set, reset, remove, record."""
        started = time.perf_counter()
        scores = self._scores(ctx)
        criterion_time = time.perf_counter() - started
        plan: dict[str, list[int]] = {}
        masked: dict[str, torch.Tensor] = {}
        rows: list[dict[str, Any]] = []
        mom = [0.0, 0.0]
        for group in self.groups:
            hard = self._prune_group(ctx, e, group, scores, masked, rows, mom)
            if len(hard):
                plan[group[0]] = hard.tolist()
        started = time.perf_counter()
        self._cut(ctx, plan, masked)
        surgery_time = time.perf_counter() - started
        for row in rows:
            m = row["layer"]
            present = self.status[m][self.original(m)]
            row["active"] = int((present == ACTIVE).sum())
            LAYERS.write(ctx.record, **row)
        self.running = self._zeros(ctx)
        self._save_kept(ctx)
        return dict(criterion_time=criterion_time, surgery_time=surgery_time,
                    momentum_before=math.sqrt(mom[0]), momentum_after=math.sqrt(mom[1]))

    def _prune_group(self, ctx: Context, e: int, group: list[str],
                     scores: dict[str, torch.Tensor], masked: dict[str, torch.Tensor],
                     rows: list[dict[str, Any]], mom: list[float]) -> torch.Tensor:
        """One group's weak set (hard and soft, in present positions): statuses, resets and
        per-filter records of its members, rows appended to `rows`, squared momentum norms
        added to `mom`; returns the hard set."""
        n0, lead = self.n0[group[0]], group[0]
        orig = self.original(lead)
        present = len(orig)
        target = self.keep_target(n0, e, self.E, ctx.config.rate, self.p)
        n_keep = self.rounded(whole(target), n0)
        score = group_scores(scores, group, getattr(self.p, "group_score", "sum"))
        l2 = sum(self._norms(m).float() for m in group)
        hard, soft = hybrid_split(score, present - n_keep, getattr(self.p, "hard_fraction", 0.0),
                                  e == self.E - 1)
        if not self.physical and e == self.E - 1:      # PSFP: zeroed and masked for good
            soft = masked[lead] = torch.cat([hard, soft])
        rho = spearman(score, l2) if self.criterion != "l2" else None
        zero_momentum = getattr(self.p, "zero_momentum", False) and lead not in masked
        for m in group:
            status = self.status[m]
            hard_before = int((status == HARD).sum())
            status[status == SOFT] = ACTIVE
            status[orig[hard.cpu()]] = HARD
            status[orig[soft.cpu()]] = HARD if lead in masked else SOFT
            before, after = self._reset(ctx, m, soft, orig, zero_momentum)
            mom[0] += before ** 2
            mom[1] += after ** 2
            rows.append(dict(
                layer=m, group=lead, target=target, target_count=n_keep,
                unrounded=whole(target), before=present, soft=int((status == SOFT).sum()),
                removed=int((status == HARD).sum()),
                hard_now=int((status == HARD).sum()) - hard_before, spearman=rho,
                momentum_before=before, momentum_after=after))
            full = torch.full((n0,), math.nan)
            ctx.record.filters(m, "pgp_score", full.index_put((orig,), score.cpu()))
            ctx.record.filters(m, "pgp_l2", full.index_put((orig,), l2.cpu()))
            ctx.record.filters(m, "pgp_status", status)
        return hard

    def _cut(self, ctx: Context, plan: dict[str, list[int]],
             masked: dict[str, torch.Tensor]) -> None:
        """The hard sets leave: removed physically (PGP's convs), or masked for good (PSFP's
        last epoch; a transformer's structures, every epoch, removed by the compaction)."""
        if self.units:
            ctx.masks = {}
            for name, unit in self.units.items():
                keep = (self.status[name] != HARD).float()
                ctx.masks.update(st.factors(unit, self.weights, keep))
            apply_masks(ctx.model, ctx.masks)
            return
        if plan and self.physical:
            self._remove(ctx, plan)
        if masked:
            for group in self.groups:
                if group[0] not in masked:
                    continue
                for m in group:
                    layer = self.layer[m]
                    fmask = torch.ones(layer.module.out_channels, device=ctx.device)
                    fmask[masked[group[0]]] = 0
                    ctx.masks.update(filter_param_masks(layer, fmask))
            apply_masks(ctx.model, ctx.masks)

    @torch.no_grad()
    def _reset(self, ctx: Context, name: str, idx: torch.Tensor, orig: torch.Tensor,
               zero_momentum: bool) -> tuple[float, float]:
        """Soft reset of filters `idx` (present positions; `orig` maps them to original ones)
        of one conv and its BN, or of a transformer's structures (every slice they own); returns
        the norm of their optimizer first moments before and after the momentum adaptation."""
        if len(idx) == 0:
            return 0.0, 0.0
        if self.units:
            where = st.positions(self.units[name], orig[idx.cpu()])
            slices = [(self.weights[p], dim, pos) for p, dim, pos in where]
            for p, dim, pos in slices:
                p.index_fill_(dim, pos, 0)
        else:
            slices = [(p, 0, idx) for p in soft_reset(self.layer[name], idx)]

        def moments() -> list[tuple[torch.Tensor, int, torch.Tensor]]:
            return [(state[key], dim, pos) for p, dim, pos in slices
                    for state in [ctx.optimizer.state.get(p, {})] for key in FIRST_MOMENTS
                    if torch.is_tensor(state.get(key))]

        def norm() -> float:
            return math.sqrt(sum(m.index_select(dim, pos).double().pow(2).sum().item()
                                 for m, dim, pos in moments()))

        before = norm()
        if zero_momentum:
            for m, dim, pos in moments():
                m.index_fill_(dim, pos, 0)
        return before, norm()

    def _remove(self, ctx: Context, plan: dict[str, list[int]]) -> None:
        """Physical removal; the optimizer, masks and kept indices follow."""
        removal, optimizer = remove_filters(ctx.model, self.example, plan, ctx.optimizer)
        assert optimizer is not None
        ctx.optimizer = optimizer
        ctx.masks = {k: removal.slice(k, m) for k, m in ctx.masks.items()}
        for key, dims in removal.kept.items():
            mine = self.kept.setdefault(key, {})
            for dim, idx in dims.items():
                idx = idx.cpu()
                mine[dim] = mine[dim][idx] if dim in mine else idx

    def _save_kept(self, ctx: Context) -> None:
        if ctx.run_dir is None or self.units:      # structures are masked, nothing shrank
            return
        torch.save({"filters": {n: self.original(n).clone() for n in self.n0},
                    "tensors": self.kept, "dense_shapes": self.dense_shapes},
                   ctx.run_dir / KEPT_FILE)

    def _finish_pruning(self, ctx: Context) -> None:
        ctx.mark_pruned()
        final = sum(int((s != HARD).sum()) for s in self.status.values())
        ctx.summary["filters_final"] = final
        self.achieved(ctx, sum(self.n0.values()) - final, sum(self.n0.values()))


@register
class PGP(Progressive):
    name = "pgp"
    summary = ("Progressive gradient pruning: filter-change criterion (extra pass), weakest "
               "removed physically, the rest reset with their momentum; exponential schedule.")
    Params = Params
    presets = {
        # authors' main(): 5 pruning epochs, then final_fn=[20, 0.01]; SGD(lr 0.01, momentum
        # 0.9), no Nesterov and no weight decay in any optimizer they build; batch 64, P = 0.5,
        # hard/soft split 0.5; a residual group's lead conv picks its channels.
        "paper": {"rate": 0.5, "epochs": 25, "prune_epochs": 5, "hard_fraction": 0.5,
                  "zero_momentum": True, "group_score": "lead", "optimizer": "sgd",
                  "lr": 0.01, "lr_schedule": "constant", "momentum": 0.9, "nesterov": False,
                  "weight_decay": 0.0, "batch_size": 64},
        # The paper's proportions at a short budget: it prunes 5 of its 25 epochs and
        # fine-tunes 20, so prune a fifth of the epochs (2 of 8) and fine-tune the rest. With
        # the default 3/4 a 6-epoch ResNet-20 run on real images ended 11 points below PSFP
        # at equal compact FLOPs; a quarter tied it (docs/methods.md, "Claims checked").
        "interactive": {"rate": 0.5, "epochs": 8, "prune_epochs": 0, "prune_fraction": 0.2,
                        "hard_fraction": 0.5, "zero_momentum": True},
    }


@register
class RPGP(PGP):
    name = "rpgp"
    summary = ("PGP with the criterion summed from training's own gradients (no extra pass); "
               "the default for live sessions.")
    criterion = "running"


@register
class PSFP(Progressive):
    name = "psfp"
    summary = ("Progressive soft filter pruning: L2 criterion, zero only (no removal, momentum "
               "untouched), asymptotic schedule with D = 1/8.")
    Params = PSFPParams
    criterion = "l2"
    physical = False
    presets = {
        # the PGP paper's comparison protocol (same budget as its PGP runs)
        "paper": {"rate": 0.5, "epochs": 25, "prune_epochs": 5, "d": 0.125, "optimizer": "sgd",
                  "lr": 0.01, "lr_schedule": "constant", "momentum": 0.9, "nesterov": False,
                  "weight_decay": 0.0, "batch_size": 64},
        # PGP's interactive proportions (a fifth of the epochs prune), so the two compare on
        # one budget.
        "interactive": {"rate": 0.5, "epochs": 8, "prune_epochs": 0, "prune_fraction": 0.2,
                        "d": 0.125},
    }

    @classmethod
    def keep_target(cls, n0: int, e: int, epochs: int, rate: float, params: Any) -> float:
        return n0 * asymptotic_keep_rate(e + 1, epochs, 1.0 - rate, params.d)
