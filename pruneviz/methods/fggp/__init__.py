"""FGGP, GraNet and GMP: gradual magnitude pruning and its gradient-first selection (view.py,
toy.py load on use)."""

from .engine import (
           FGGP,
           FGGPParams,
           GraNet,
           GraNetParams,
           gradient_first,
           regrow_fraction,
           smallest,
)
from .gmp import GMP, prune_every, prune_smallest, pruning_steps, t_end

__all__ = ["FGGP", "GMP", "FGGPParams", "GraNet", "GraNetParams", "gradient_first", "prune_every",
           "prune_smallest", "pruning_steps", "regrow_fraction", "smallest", "t_end"]
