"""What GMP, FGGP and GraNet record, declared once: the engines write these keys and tables, the
view reads them. Every row's `step` column is the optimizer step of the pruning step."""

from ...records import Table, declare

OUTCOMES = ("kept", "candidate", "pruned", "restored", "regrown")   # fggp_scatter's outcome

SCALARS = declare("scalar", {
    "target_density": "density the cubic schedule asks for at the pruning step",
    "density": "density of the masks after it",
})
LAYERS = declare("layer", {
    "density": "fraction of the layer's weights still active in its mask",
})
PRUNE_STEPS = Table("prune_steps", {
    "t": "the optimizer step",
    "target_density": "d(t)",
    "achieved_density": "density of the masks after the step",
    "remain": "active weights before the step",
    "pruned": "net weights removed by the step",
})
STEPS = Table("fggp_steps", {            # FGGP and GraNet, each step that selected weights
    "criterion": "gradient_first, gw, rank_sum, or granet",
    "remain": "active weights before the step",
    "to_prune": "the schedule's increment",
    "candidates": "size of the gradient-first candidate set (remain for the others)",
    "pruned": "weights cut by the step (GraNet: to_prune + to_add)",
    "restored": "weights regrown (GraNet: to_add, else 0)",
    "revived": "of those, pruned at an earlier step",
    "mag_cut": "largest |w| cut",
    "jaccard": "overlap |A & B| / |A | B| of the weights removed and the to_prune smallest |w| "
               "plain GMP would remove on the same step (1 when both are empty)",
    "regrow_fraction": "GraNet's c(t), else null",
    "grad_cut": "FGGP: largest |g| among the candidates; GraNet: smallest |g| regrown",
    "score_cut": "largest pruned |g*w| or rank sum for those criteria, else null",
})
SCATTER = Table("fggp_scatter", {        # a uniform sample of at most `scatter` weights per step
    "g": "|g|",
    "w": "|w| before the step",
    "outcome": "one of OUTCOMES: kept, candidate (in the gradient cut, not pruned), pruned, "
               "restored (GraNet: cut and regrown at once), regrown (pruned earlier)",
})
