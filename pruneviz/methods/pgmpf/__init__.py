"""PGMPF, SFP and ASFP: soft filter pruning with per-epoch masks (view.py, toy.py load on use)."""

from .engine import (
    ASFP,
    PGMPF,
    SFP,
    ASFPParams,
    EpochValues,
    Knobs,
    Params,
    SFPParams,
    cubic_lambda,
    decay_alpha,
    epoch_values,
    gradient_factor,
    n_pruned_filters,
)

__all__ = ["ASFP", "PGMPF", "SFP", "ASFPParams", "EpochValues", "Knobs", "Params", "SFPParams",
           "cubic_lambda", "decay_alpha", "epoch_values", "gradient_factor", "n_pruned_filters"]
