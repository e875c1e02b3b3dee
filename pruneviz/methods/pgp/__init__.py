"""PGP, RPGP and PSFP: progressive filter pruning."""

from .engine import PGP, PSFP, RPGP, Params, PSFPParams
from .math import (
    criterion_pass,
    hybrid_split,
    lead_conv,
    pruning_epochs,
    soft_reset,
    spearman,
    whole,
)
from .records import ACTIVE, KEPT_FILE, SOFT

__all__ = ["ACTIVE", "KEPT_FILE", "PGP", "PSFP", "RPGP", "SOFT", "Params", "PSFPParams",
           "criterion_pass", "hybrid_split", "lead_conv", "pruning_epochs", "soft_reset",
           "spearman", "whole"]
