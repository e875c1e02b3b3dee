"""ADMM: the baseline on SLR's code path (engine.py): the same penalty toward a sparse Z, plain
scaled dual ascent instead of SLR's surrogate multiplier updates. Every admm_every epochs
Z = Pi(W + U), U += W - Z (constant rho); then SLR's hard prune and masked retraining
(docs/methods.md, "SLR, ADMM").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...config import param
from ..base import Context, register
from .engine import PAPER_OPT, SLR, CommonParams


@dataclass(frozen=True)
class ADMMParams(CommonParams):
    retrain_epochs: int = param(2, "Final epochs of the session spent in masked retraining "
                                   "after the hard prune (capped at epochs - 1, so at least "
                                   "one epoch trains with the penalty).", min=0, max=1000)
    admm_every: int = param(1, "Epochs between ADMM updates Z = Pi(W + U), U += W - Z.",
                            min=1, max=1000)


@register
class ADMM(SLR):
    name = "admm"
    summary = ("ADMM pruning: the same penalty toward a sparse Z, dual update U += W - Z every "
               "few epochs; hard prune, then masked retraining.")
    Params = ADMMParams
    presets = {
        "paper": dict(rho=0.1, **PAPER_OPT),
        "interactive": dict(epochs=10, rho=1.0, lr=0.01, momentum=0.9, nesterov=True,
                            weight_decay=5e-4),
    }
    surrogate = False

    def update(self, ctx: Context, info: dict[str, Any]) -> tuple[list, list] | None:
        """Every admm_every epochs: Z = Pi(W + U), U += W - Z (scaled dual ascent)."""
        if (ctx.epoch + 1) % self.p.admm_every:
            return None
        W = self._w()
        z_change = self._project_z(W)
        torch._foreach_add_(self.U, torch._foreach_sub(W, self.Z))
        self._refresh_target()
        return z_change
