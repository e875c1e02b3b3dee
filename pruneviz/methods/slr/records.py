"""What SLR and ADMM record, declared once: the engine writes these keys and tables, the view
reads them. All bounded: O(layers) numbers per epoch, never per step. The session's per-step
`loss` and `ce` give CE against the penalty (penalty = loss - ce)."""

from ...records import Table, declare

SCALARS = declare("scalar", {
    "hard_prune_now_accuracy": "held-out accuracy of Pi(W) before training and at the end of "
                               "every penalty epoch; at the hard prune, the hard-prune accuracy",
    "primal_residual": "total ||W - Z||_F after the epoch's Z update",
})
_MOMENT = {"epochs_done": "epochs trained when the row was written (0: before training)"}
_SPREAD = {
    "residual": "||W - Z||_F",
    "prune_gap": "||W - Pi(W)||_F: what the hard prune would remove",
    "z_change": "||Z_k - Z_{k-1}||_F",
    "support_changes": "entries whose Z support flipped",
    "lambda_norm": "||Lambda||_F = rho ||U||_F",
}
EPOCHS = Table("slr_epochs", {
    **_MOMENT,
    "phase": "init, update, train (no Z/U update that epoch) or hard_prune",
    "ce": "the epoch's mean cross-entropy",
    "penalty": "the epoch's mean penalty",
    **{k: f"total {v}" for k, v in _SPREAD.items()},
    "hard_prune_now_accuracy": "held-out accuracy of Pi(W) now",
    "k": "SLR: the multiplier step count",
    "s": "SLR: the step size s_k",
    "alpha1": "SLR: alpha_k of condition 1's update (None if not applied)",
    "alpha2": "SLR: alpha_k of condition 2's update (None if not applied)",
    "cond1": "SLR: L(W, Z_prev) < L(W_prev, Z_prev) (None before the first check)",
    "cond1_forced": "SLR: condition 1 was forced (k = 1)",
    "cond1_L": "SLR: L(W, Z_prev)",
    "cond1_L_prev": "SLR: L(W_prev, Z_prev)",
    "cond2": "SLR: L(W, Z) < cond2_L_prev (None if there was nothing to compare with)",
    "cond2_L": "SLR: L(W, Z)",
    "cond2_L_prev": "SLR: L(W_prev, Z_prev) (cond2=accepted) or L(W, Z_prev) with the previous "
                    "epoch's CE (cond2=authors)",
})
LAYERS = Table("slr_layers", {
    **_MOMENT,
    "layer": "the prunable layer",
    "rate": "its prune rate p_l",
    **_SPREAD,
    "threshold": "smallest |w| Pi(W) keeps",
    "z_threshold": "smallest |w + u| the last Z projection kept",
})
HIST = Table("slr_hist", {
    **_MOMENT,
    "layer": "the prunable layer",
    "lo": "-max|W|",
    "hi": "max|W|",
    "counts": "hist_bins counts of W over [lo, hi]",
    "threshold": "draw at +-threshold: smallest |w| Pi(W) keeps",
    "z_threshold": "smallest |w + u| the last Z projection kept",
})
SUMMARY = declare("summary", {
    "hard_prune_accuracy": "held-out accuracy right after the hard prune, before retraining",
    "hard_prune_epochs": "epochs trained with the penalty",
    "retrain_epochs": "masked retraining epochs (effective)",
    "slr_k": "SLR: the final step count",
    "slr_s": "SLR: the final step size",
    "cond1_passed": "SLR: times condition 1 held",
    "cond2_passed": "SLR: times condition 2 held",
})
