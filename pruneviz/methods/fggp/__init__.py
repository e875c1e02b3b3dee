"""FGGP, GraNet and GMP: gradual magnitude pruning and its gradient-first selection."""

from .engine import FGGP, FGGPParams, GraNet, GraNetParams
from .gmp import GMP
from .math import (
           gradient_first,
           prune_every,
           prune_smallest,
           pruning_steps,
           regrow_fraction,
           smallest,
           t_end,
)

__all__ = ["FGGP", "GMP", "FGGPParams", "GraNet", "GraNetParams", "gradient_first", "prune_every",
           "prune_smallest", "pruning_steps", "regrow_fraction", "smallest", "t_end"]
