"""Learn, the four seed methods: a paragraph, the equations and one live toy each (PGMPF's
gradient factor, FGGP's two cuts, PGP's hard/soft split, SLR's residual). Widgets ->
pruneviz.learn -> pruneviz.plots_learn."""

import streamlit as st

from pruneviz import learn
from pruneviz import plots_learn as plots
from pruneviz.ui.state import routed

routed(__file__)

st.set_page_config(layout="wide")
st.title("The four methods, one toy each")
st.caption("Each toy runs the method's own functions (pruneviz.methods) on a small tensor; the "
           "equations are numbered as in the team's METHODS.md.")

pgmpf, fggp, pgp, slr = st.tabs(["PGMPF: prior gradient mask", "FGGP: gradient first",
                                 "PGP: hard and soft", "SLR: Lagrangian relaxation"])

# -- PGMPF ------------------------------------------------------------------------------------
with pgmpf:
    text, eqs = st.columns([1.4, 1], gap="large")
    with text:
        st.markdown(
            "PGMPF is **soft filter pruning**: at the end of every epoch the filters with the "
            "lowest L2 norm are marked pruned ($m_i = 0$), but they stay in the network and "
            "may come back if they grow. Three schedules push them out gently: the keep rate "
            "$r_e$ falls towards its target; each epoch the pruned filters (and their "
            "BatchNorm γ, β) are multiplied by $\\alpha_e$; and at every step their gradient "
            "is scaled by $1 - \\lambda_e$, or dropped, with probability 1/2 (the *prior "
            "gradient mask*). As $\\lambda_e \\to 1$ they stop learning, and from $0.8\\,E$ "
            "$\\alpha_e = 0$ zeroes them for good.")
        st.caption("Cai, An, Yang, Yan, Xu, Prior Gradient Mask Guided Pruning-aware "
                   "Fine-tuning, AAAI-22, DOI 10.1609/aaai.v36i1.19888 (METHODS.md sec. 1).")
    with eqs:
        st.latex(r"\lambda_e = 1 - \left(1 - \tfrac{e + 1}{E}\right)^3,\qquad "
                 r"\alpha_e = \alpha_0\, e^{-a e}")
        st.latex(r"\nabla W_i \leftarrow \nabla W_i \cdot \big(m_i + (1 - m_i)(1 - \lambda_e)"
                 r"\,\mathbb{1}[u_i < 0.5]\big)")
        st.markdown("with $u_i \\sim U(0, 1)$ drawn per filter at every step: a pruned filter "
                    "gets on average $(1 - \\lambda_e)/2$ of its gradient.")
    controls, left, right = st.columns([1, 2, 2], gap="medium")
    with controls:
        p_epochs = st.slider("Epochs E", 4, 100, 20, key="learn.pgmpf.epochs")
        p_rate = st.slider("Filter prune rate", 0.1, 0.9, 0.4, 0.05, key="learn.pgmpf.rate")
        p_start = st.radio("Start", ["fine-tune a trained model", "from scratch"],
                           key="learn.pgmpf.start",
                           help="Fine-tuning: λ = 1 and α = 0 from 0.8 E, σ = 1e-5; from "
                                "scratch: λ = 1 from 0.9 E, σ = 1e-3.")
        p_epoch = st.slider("Epoch to look at", 1, p_epochs - 1, min(3, p_epochs - 1),
                            key="learn.pgmpf.epoch")
        p_filters = st.slider("Filters in the toy layer", 4, 32, 16, key="learn.pgmpf.filters")
    dense = p_start.startswith("fine")
    gm = learn.pgmpf_gradient_mask(p_epochs, p_rate, p_epoch, p_filters, dense=dense)
    with left:
        st.plotly_chart(plots.pgmpf_curves(learn.pgmpf_schedule(p_epochs, p_rate, dense),
                                           p_epochs, dense, p_epoch), key="learn.pgmpf.curves")
    with right:
        st.plotly_chart(plots.gradient_factor_heatmap(gm), key="learn.pgmpf.factor")
    means, note = st.columns([2, 1], gap="large")
    means.plotly_chart(plots.factor_means_figure(
        learn.pgmpf_factor_means(p_epochs, p_rate, p_filters, dense=dense)),
        key="learn.pgmpf.means")
    note.markdown(
        "**Reading the toy.** Kept filters' rows are 1 at every step; a pruned filter's row "
        "flickers between $1 - \\lambda$ and 0. Averaged over an epoch, the pruned filters get "
        "$(1 - \\lambda_e)/2$ of their gradient, which falls to 0 as $\\lambda_e \\to 1$.\n\n"
        "Momentum and weight decay are not masked (SGD adds them after the mask, as in the "
        "authors' code), so a frozen filter still drifts a little until the hard zero.")

# -- FGGP -------------------------------------------------------------------------------------
with fggp:
    text, eqs = st.columns([1.4, 1], gap="large")
    with text:
        st.markdown(
            "FGGP prunes **unstructured** weights on the cubic schedule, but picks them in two "
            "cuts. First the gradient: of the weights still active, only the fixed fraction "
            "$\\rho$ with the smallest $|g|$ (this minibatch's gradient) are candidates: weights "
            "the loss is not pushing on right now. Then the magnitude: among the candidates, the "
            "smallest $|w|$ go. Plain magnitude pruning (GMP) would take the smallest $|w|$ "
            "overall, including small weights that are still learning fast. $\\rho = 0.5$ is "
            "fixed, not annealed: that is the paper's point.")
        st.caption("Zhu, Bezek, Goksel, Fixed-rate Gradient-First Gradual Pruning, SCIA 2025, "
                   "arXiv 2411.05500 (METHODS.md sec. 2); GMP: Zhu & Gupta, arXiv 1710.01878.")
    with eqs:
        st.latex(r"C = \operatorname{smallest}_{\lfloor \rho \cdot \mathrm{remain} \rfloor}"
                 r"\ |g| \ \text{ among active weights}")
        st.latex(r"\text{pruned} = \operatorname{smallest}_{\mathrm{to\_prune}}\ |w| "
                 r"\ \text{ within } C")
        st.markdown("with $\\mathrm{to\\_prune} = \\lfloor N(1 - d(t)) \\rfloor - "
                    "\\mathrm{already}$, and an error if it exceeds $|C|$.")
    controls, left, right = st.columns([1, 2.7, 1.5], gap="medium")
    with controls:
        rho = st.slider("ρ (candidate fraction)", 0.05, 1.0, 0.5, 0.05, key="learn.fggp.rho")
        frac = st.slider("This step prunes (fraction of the active weights)", 0.02, 0.6, 0.2,
                         0.02, key="learn.fggp.prune")
        coupling = st.slider("Coupling of g to w", -0.9, 0.9, 0.0, 0.1, key="learn.fggp.coupling",
                             help="Correlation of the Gaussians |w| and |g| are drawn from: "
                                  "positive = big weights get big gradients.")
        f_seed = st.number_input("Seed", 0, 999, 0, key="learn.fggp.seed")
    tc = learn.fggp_two_cuts(rho, frac, coupling=coupling, seed=int(f_seed))
    m1, m2, m3 = controls.columns(3)
    m1.metric("|C|", tc.candidates, help="Candidates: the rho fraction with the smallest |g|.")
    m2.metric("pruned", tc.to_prune, help="Weights this pruning step removes.")
    m3.metric("overlap", f"{tc.jaccard:.2f}",
              help="Jaccard overlap of FGGP's and GMP's choices: |both| / |either|.")
    if tc.error:
        st.warning(tc.error, icon=":material/warning:")
    with left:
        st.plotly_chart(plots.two_cuts_scatter(tc), key="learn.fggp.scatter")
    with right:
        st.plotly_chart(plots.two_cuts_matrix(tc), key="learn.fggp.matrix")
    st.caption("At ρ = 1 every active weight is a candidate and FGGP is GMP (overlap 1). The "
               "smaller ρ, the more of GMP's choices are spared because their gradient is large.")

# -- PGP ----------------------------------------------------------------------------------------
with pgp:
    text, eqs = st.columns([1.4, 1], gap="large")
    with text:
        st.markdown(
            "PGP shrinks the network **while it trains**. After each pruning epoch every filter "
            "is scored by how much it changed, the L1 norm of its summed gradient over the "
            "epoch; the target count falls exponentially; the weakest filters above the target "
            "form the weak set. The weaker half of it is **removed** physically (conv, "
            "BatchNorm and the next layer's input channels), the other half is **soft-reset**: "
            "set to zero, left in place, with its momentum zeroed so stale momentum does not "
            "push it back (PGP's fix over PSFP). The last pruning epoch removes every weak "
            "filter.")
        st.caption("Nguyen-Meidine, Granger, Kiran, Pedersoli, Blais-Morin, Progressive Gradient "
                   "Pruning, ICPR 2020, arXiv 1906.08746 (METHODS.md sec. 3).")
    with eqs:
        st.latex(r"s_i = \Big\lVert \sum_b \nabla_b W_i \Big\rVert_1")
        st.latex(r"n(e) = N_0\, e^{-\lambda(e + 1)},\quad \lambda = \frac{-\ln(1 - P)}{E}")
        st.latex(r"\text{weak} = \text{the } (\text{current} - \lceil n(e) \rceil) "
                 r"\text{ lowest } s_i")
        st.latex(r"\text{hard} = \text{the weakest } \lfloor |\text{weak}| / 2 \rfloor,\quad "
                 r"\text{soft} = \text{the rest}")
    controls, left, right = st.columns([1, 2.2, 1.8], gap="medium")
    with controls:
        g_rate = st.slider("Filter prune rate P", 0.1, 0.9, 0.5, 0.05, key="learn.pgp.rate")
        g_epochs = st.slider("Pruning epochs E", 2, 12, 6, key="learn.pgp.epochs")
        hard = st.slider("Hard share of the weak set", 0.0, 1.0, 0.5, 0.05, key="learn.pgp.hard")
        g_epoch = st.slider("Pruning epoch to look at", 0, g_epochs - 1, min(1, g_epochs - 1),
                            key="learn.pgp.epoch")
    toy = learn.pgp_toy(g_rate, g_epochs, hard)
    with left:
        st.plotly_chart(plots.pgp_scores_figure(toy, g_epoch), key="learn.pgp.scores")
    with right:
        st.plotly_chart(plots.pgp_counts_figure(toy), key="learn.pgp.counts")
    was_soft = toy.scores[(toy.scores.epoch == g_epoch) & toy.scores.was_soft]
    if len(was_soft):
        st.info(
            f"The {len(was_soft)} filters soft-reset at the previous epoch score "
            f"{was_soft.score.max():.3g} now: with their weights and BatchNorm γ at zero, the "
            f"channel outputs a constant zero and the gradient that would train them passes "
            f"through γ = 0, so they get none. A soft-reset filter that is a plain conv + BN "
            f"cannot regrow and is the first in the next weak set (soft = removed one epoch "
            f"later).", icon=":material/info:")
    st.caption("The toy is one 32-filter conv on random 8x8 inputs, scored by PGP's own "
               "criterion pass on each epoch's batches, split by PGP's hybrid_split and reset by "
               "its soft_reset. It does not train between epochs; a session does.")

# -- SLR ----------------------------------------------------------------------------------------
with slr:
    text, eqs = st.columns([1.4, 1], gap="large")
    with text:
        st.markdown(
            "SLR treats pruning as a constrained problem: minimise the loss subject to at most "
            "$l$ nonzero weights per layer. It keeps a sparse copy $Z$ of the weights $W$, and "
            "a penalty pulls $W$ towards $Z$ while training; multipliers $\\Lambda$ "
            "($U = \\Lambda / \\rho$) accumulate how far apart they have been. Once per epoch "
            "$Z$ is re-projected onto the sparse set ($\\Pi$ keeps the largest magnitudes) and "
            "$\\Lambda$ moves, but only when a *surrogate condition* says the Lagrangian went "
            "down, by a step $s_k$ rescaled by $\\alpha_k$ and the ratio of the last two "
            "residuals. Once $W$ has reached $Z$, hard-pruning costs nothing: the paper's point "
            "is accuracy **without retraining**. ADMM uses the same penalty with an "
            "unconditional step: $\\Lambda \\mathrel{+}= \\rho (W - Z)$, i.e. $s_k = \\rho$.")
        st.caption("Gurevin, Bragin, Ding, Zhou, Pepin, Li, Miao, Enabling Retrain-free Deep "
                   "Neural Network Pruning Using Surrogate Lagrangian Relaxation, IJCAI 2021, "
                   "pp. 2497-2504, arXiv 2012.10079 (METHODS.md sec. 4).")
    with eqs:
        st.latex(r"\min_W f(W) + \tfrac{\rho}{2}\lVert W - Z + U \rVert^2,\qquad "
                 r"Z = \Pi(W + U)")
        st.latex(r"s_k = \alpha_k\, s_{k-1} \frac{\lVert W_{prev} - Z_{prev} \rVert}"
                 r"{\lVert W - Z \rVert},\quad \Lambda \mathrel{+}= s_k (W - Z)")
        st.latex(r"\alpha_k = 1 - \frac{1}{M\, k^{\,1 - 1/k^{r}}}\quad(M = 300,\ r = 0.1)")
        st.latex(r"\text{ADMM: } Z = \Pi(W + U),\quad U \mathrel{+}= W - Z")
    controls, left, right = st.columns([1, 2, 2], gap="medium")
    with controls:
        s_rate = st.slider("Prune rate", 0.3, 0.95, 0.75, 0.05, key="learn.slr.rate")
        s_rho = st.select_slider("ρ (penalty)", [0.1, 0.3, 1.0, 3.0, 10.0], 1.0,
                                 key="learn.slr.rho")
        s0 = st.select_slider("s₀ (first multiplier step)", [0.01, 0.03, 0.1, 0.3, 1.0], 0.1,
                              key="learn.slr.s0")
        iterations = st.slider("Iterations (epochs)", 3, 40, 15, key="learn.slr.iterations")
    runs = learn.slr_vs_admm(s_rate, iterations, s_rho, s0)
    with left:
        st.plotly_chart(plots.slr_residual_figure(runs), key="learn.slr.residual")
    with right:
        st.plotly_chart(plots.slr_loss_figure(runs), key="learn.slr.loss")
    st.caption("Try s₀: too small and Λ hardly moves, so only the penalty closes the gap; too "
               "large and Λ overshoots and the residual grows. ρ sets how hard the penalty pulls, "
               "for both methods.")
    steps = runs[runs.method == "slr"][["iteration", "k", "s", "alpha", "cond1", "cond2"]]
    with st.expander("SLR's step sizes and surrogate conditions, iteration by iteration"):
        st.dataframe(steps.iloc[1:], hide_index=True, key="learn.slr.steps")
    st.caption("The toy layer is least squares, f(W) = ||XWᵀ − Y||² / 2n, with correlated "
               "inputs and a sparse true W; each iteration is 20 gradient steps on the penalised "
               "loss, then the update. The projection Π and α_k are pruneviz.methods.slr's own "
               "(project, step_alpha); the update order follows METHODS.md sec. 4 as the "
               "session's SLR does.")
