"""What Wanda, SparseGPT, row magnitude and head importance record, declared once: the engine
writes these keys and tables, the view reads them. Everything is written once, at step 0, by the
one-shot prune before training (head importance: one set of rows per round)."""

from ...records import Table, declare

# outcome of a weight in llm_points: the magnitude (|W| per row) and Wanda masks side by side
OUTCOMES = ("kept by both", "cut by both", "magnitude cuts, Wanda keeps",
            "Wanda cuts, magnitude keeps")

SCALARS = declare("scalar", {
    "oneshot_seconds": "seconds the one-shot prune took: calibration forwards, scores, updates "
                       "(head importance: every round's gradients and evaluations)",
    "calib_tokens": "calibration tokens (rows of X) the first pruned layer saw",
})
LAYERS = declare("layer", {
    "input_norm_max_ratio": "largest input-channel norm ||X_j|| over the median one: how far the "
                            "layer's outlier input channels stand out",
})
SUMMARY = declare("summary", {
    "oneshot_seconds": "seconds the one-shot prune took (calibration, scores, updates)",
    "retrain_free": "True when the session's epochs only measured: no weight changed after the "
                    "one-shot prune (the papers' setting)",
    "heads_gated": "head_importance: attention heads its rounds removed (masked)",
    "units_gated": "head_importance on a model without attention: output units removed",
})
LAYER_STATS = Table("llm_layers", {      # one row per pruned layer
    "layer": "module name",
    "order": "position in the pruning order (0 first)",
    "group": "the block it was pruned with (its name), or the layer's own name outside blocks",
    "rows": "output features (filters)",
    "columns": "input columns (a conv's input channels x kernel positions)",
    "tokens": "calibration rows of X the layer saw (tokens, or a conv's output positions)",
    "sparsity": "fraction of the layer's weights the mask prunes",
    "disagree": "weights magnitude (|W|, per row) and Wanda prune differently, as a fraction of "
                "the layer's weights",
    "dead_inputs": "input columns with ||X_j|| = 0 (SparseGPT zeroes their weights)",
    "err_magnitude": "SparseGPT runs: ||WX - W'X||^2 over the calibration tokens with W' = W "
                     "under the per-row magnitude mask (null in other runs)",
    "err_wanda": "the same under Wanda's mask",
    "err_mask": "the same under SparseGPT's mask, before its weight update",
    "err_sparsegpt": "the same after SparseGPT's update (its result)",
    "loss_sparsegpt": "SparseGPT's own loss sum (w - q)^2 / [Hinv]_jj^2 / 2 (the authors' "
                      "printed 'error')",
})
CHANNELS = Table("llm_channels", {       # one row per input column of each pruned layer
    "layer": "module name",
    "column": "input column (channels-last for a conv: kernel position x channel)",
    "norm": "||X_j||_2 / sqrt(samples): Wanda's sqrt(scaler_row)",
    "w_mean": "mean |W_ij| over the column's weights (before pruning)",
    "pruned": "fraction of the column's weights this run's mask pruned",
    "saved": "weights of the column magnitude would cut but Wanda keeps",
    "lost": "weights of the column Wanda cuts but magnitude keeps",
})
POINTS = Table("llm_points", {           # a seeded sample of at most `points` weights a layer
    "layer": "module name",
    "w": "|W_ij| before pruning",
    "norm": "||X_j|| of its input column",
    "outcome": "one of OUTCOMES",
})
HEAD_SCORES = Table("head_scores", {     # one row per head (or unit) and round
    "round": "importance round (1 first)",
    "layer": "attention module (or pruned layer, for unit gates) name",
    "head": "head index within the layer (unit index for unit gates)",
    "importance": "I_h = mean |dL/d xi_h| over the calibration batches, divided by the layer's "
                  "L2 norm",
    "status": "active, removed (this round) or gone (an earlier round)",
})
HEAD_ROUNDS = Table("head_rounds", {     # round 0 = before any removal
    "round": "round (0 = dense)",
    "removed": "heads (units) removed so far",
    "total": "heads (units) in all",
    "accuracy": "held-out accuracy after the round",
    "loss": "held-out loss after the round (a language model's perplexity is exp(loss))",
    "unit": "head, or unit for models without attention modules",
})
