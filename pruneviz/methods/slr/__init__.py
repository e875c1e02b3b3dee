"""SLR and ADMM: surrogate Lagrangian relaxation and its ADMM baseline."""

from .engine import ADMM, SLR
from .math import multiplier_step, project, step_alpha

__all__ = ["ADMM", "SLR", "multiplier_step", "project", "step_alpha"]
