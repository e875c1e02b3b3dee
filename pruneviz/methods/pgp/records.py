"""What PGP, RPGP and PSFP record, declared once: the engine writes these keys and tables, the
view (and report.py's compact-model loader) reads them. Bounded: one row per conv, or per
filter, per pruning epoch; rows carry the store's step and the epoch they describe."""

from ...records import Table, declare

ACTIVE, SOFT, HARD = 0, 1, 2          # pgp_status: active, soft-reset this epoch, removed/masked
KEPT_FILE = "kept_indices.pt"         # artifact: {"filters": {conv: kept original indices},
#   "tensors": {state_dict key: {dim: kept original indices}} for every tensor that shrank,
#   "dense_shapes": {state_dict key: dense shape}}; rewritten after every pruning epoch, read
#   by surgery.expand to map a shrunk tensor back onto the dense architecture.

_MOMENTUM = {
    "momentum_before": "L2 norm of the optimizer first moment of the filters reset now (conv "
                       "weight, bias and BN gamma/beta rows), before the adaptation",
    "momentum_after": "the same after it (PGP zeroes it; PSFP leaves it)",
}
LAYERS = Table("pgp_layers", {
    "layer": "the conv",
    "group": "its residual group (the group's first conv)",
    "target": "n(e), float",
    "target_count": "whole filters kept (rounded to round_to)",
    "unrounded": "whole filters kept before rounding to round_to",
    "before": "filters present before this epoch's pruning",
    "active": "present and not reset now",
    "soft": "reset now",
    "removed": "physically gone since the start (PSFP: masked for good)",
    "hard_now": "removed or masked this epoch",
    "spearman": "rank correlation of the group's score with the L2 ranking (pgp, rpgp)",
    **_MOMENTUM,
})
EPOCHS = Table("pgp_epochs", {
    "phase": "prune or finetune",
    "epoch_time": "wall seconds of the epoch's steps plus the previous evaluation",
    "flops_trained": "FLOPs of the network that trained this epoch",
    "params_trained": "its parameters",
    "criterion_time": "seconds of the criterion pass (pruning epochs)",
    "surgery_time": "seconds of the surgery (pruning epochs)",
    "flops": "FLOPs after this epoch's pruning (2 per multiply-add, one input)",
    "params": "parameters after it",
    "filters": "filters of the pruned convs after it",
    "target_sparsity": "sparsity the schedule asks for",
    **{k: f"{v}, all convs" for k, v in _MOMENTUM.items()},
})
# Filters are indexed by their original index in the dense conv.
FILTERS = declare("filter", {
    "pgp_score": "the ranking score (a residual group's sum; NaN once removed)",
    "pgp_l2": "L2 norm of the filter, summed over the group likewise (NaN once removed)",
    "pgp_status": "ACTIVE, SOFT or HARD",
})
SUMMARY = declare("summary", {              # and RoundTo's (methods/roundto.py)
    "prune_epochs": "pruning epochs E",
    "filters_dense": "filters of the pruned convs at the start",
    "filters_final": "filters left",
})
