"""SLR and ADMM: surrogate Lagrangian relaxation (view.py, toy.py load on use)."""

from .engine import ADMM, SLR, parse_layer_rates, project, step_alpha

__all__ = ["ADMM", "SLR", "parse_layer_rates", "project", "step_alpha"]
