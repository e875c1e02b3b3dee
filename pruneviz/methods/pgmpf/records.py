"""What PGMPF, SFP and ASFP record, declared once: the engine writes these keys and tables, the
view reads them. "epoch" is the epoch whose end computed a value, used during epoch e + 1."""

from ...records import Table, declare

GRADS = ("grad_norm_kept_before", "grad_norm_kept_after", "grad_norm_pruned_before",
         "grad_norm_pruned_after")
SHOCK = ("accuracy_before_decay", "accuracy_after_decay")

SCALARS = declare("scalar", {
    "r_e": "keep rate of the mask computed at the epoch's end",
    "lambda_e": "gradient suppression in force next epoch (0 without a gradient mask)",
    "alpha_e": "weight-decay-mask factor of the schedule (applied as 0 below alpha_min)",
    "mask_flips": "filters whose mask changed at the epoch's end, all layers",
    "accuracy_before_decay": "held-out accuracy just before the epoch's weight-decay mask "
                             "(only in epochs where the decay changes weights)",
    "accuracy_after_decay": "held-out accuracy just after it: the pruning shock",
    "grad_norm_pruned_before": "sampled steps (about 200 a run, once a filter is pruned): L2 "
                               "norm of the conv-weight gradient of all pruned filters before "
                               "the prior gradient mask",
    "grad_norm_pruned_after": "the same after the mask (equal without one)",
    "grad_norm_kept_before": "the same for the kept filters, before the mask",
    "grad_norm_kept_after": "kept filters after the mask (the mask leaves them alone)",
})
LAYERS = declare("layer", {
    "mask_flips": "filters of the layer whose mask changed at the epoch's end",
    "filters_revived": "filters that went from pruned back to kept",
    "filters_pruned": "filters with mask 0",
})
FILTERS = declare("filter", {
    "l2_norm": "the ranking score: the filter's weight norm at the epoch's end, before the decay",
    "mask": "the new mask (1 kept, 0 pruned)",
    "bn_gamma": "its BatchNorm gamma before the decay (absent for convs without BN)",
})
MASK_UPDATES = Table("mask_updates", {
    "r": "keep rate r_e",
    "lambda": "gradient suppression lambda_e",
    "alpha": "weight-decay factor alpha_e (schedule value)",
    "alpha_applied": "the factor pruned filters were multiplied by",
    "pruned": "filters with mask 0, all layers",
    "flips": "filters whose mask changed, all layers",
    "final": "the final mask is held from this epoch on",
    "kept_share": "filters kept, all layers, as a share: r_e after whole filters and round_to",
})
SUMMARY = declare("summary", {              # and RoundTo's (methods/roundto.py)
    "filters_total": "filters in the prunable convs",
    "filters_pruned": "filters with mask 0 at the end",
    "filter_count_rule": "how many filters a layer of N loses: floor(N (1 - r))",
})
