"""SLR and ADMM: surrogate Lagrangian relaxation and its ADMM baseline."""

from .admm import ADMM
from .engine import SLR
from .math import multiplier_step, project, step_alpha

__all__ = ["ADMM", "SLR", "multiplier_step", "project", "step_alpha"]
