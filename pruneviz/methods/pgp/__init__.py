"""PGP, RPGP and PSFP: progressive filter pruning."""

from .engine import PGP, PSFP, RPGP, Params, PSFPParams
from .math import criterion_pass, hybrid_split, pruning_epochs, soft_reset, spearman, whole
from .records import KEPT_FILE, SOFT

__all__ = ["KEPT_FILE", "PGP", "PSFP", "RPGP", "SOFT", "Params", "PSFPParams", "criterion_pass",
           "hybrid_split", "pruning_epochs", "soft_reset", "spearman", "whole"]
