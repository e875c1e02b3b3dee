"""PGMPF, SFP and ASFP: soft filter pruning with per-epoch masks."""

from .engine import ASFP, PGMPF, SFP, ASFPParams, Params, SFPParams
from .math import (
           EpochValues,
           Knobs,
           cubic_lambda,
           decay_alpha,
           epoch_values,
           gradient_factor,
           n_pruned_filters,
)

__all__ = ["ASFP", "PGMPF", "SFP", "ASFPParams", "EpochValues", "Knobs", "Params", "SFPParams",
           "cubic_lambda", "decay_alpha", "epoch_values", "gradient_factor", "n_pruned_filters"]
