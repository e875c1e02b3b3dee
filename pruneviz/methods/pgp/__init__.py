"""PGP, RPGP and PSFP: progressive filter pruning (view.py, toy.py load on use)."""

from .engine import (
    KEPT_FILE,
    PGP,
    PSFP,
    RPGP,
    SOFT,
    Params,
    PSFPParams,
    criterion_pass,
    hybrid_split,
    pruning_epochs,
    soft_reset,
    spearman,
    whole,
)

__all__ = ["KEPT_FILE", "PGP", "PSFP", "RPGP", "SOFT", "Params", "PSFPParams", "criterion_pass",
           "hybrid_split", "pruning_epochs", "soft_reset", "spearman", "whole"]
