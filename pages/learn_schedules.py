"""Learn, when to prune: one-shot vs gradual schedules (cubic, asymptotic, exponential) with a
preview that follows the sliders. Widgets -> pruneviz.learn -> pruneviz.plots_learn."""

import streamlit as st

from pruneviz import learn
from pruneviz import plots_learn as plots
from pruneviz.ui.state import routed

routed(__file__)

st.set_page_config(layout="wide")
st.title("When to prune: one-shot or gradual")
st.caption("The curves come from the engine's own schedule functions (pruneviz.schedules and "
           "PGMPF's epoch values), the ones the sessions follow.")

st.markdown(
    "**One-shot** pruning removes everything at once and then fine-tunes: simple, but the "
    "network loses all its pruned capacity in one step and must recover from that shock. "
    "**Gradual** schedules prune a little at a time while training goes on, so the remaining "
    "weights can take over the work of the ones that leave. Each method family uses its own "
    "curve; all are defined on the *fraction* of training, so a 10-epoch session has the same "
    "shape as the papers' 160.")

controls, figure = st.columns([1, 2.8], gap="large")
with controls:
    rate = st.slider("Final sparsity (prune rate)", 0.05, 0.99, 0.6, 0.01,
                     key="learn.schedules.rate")
    epochs = st.slider("Epochs E", 2, 200, 20, key="learn.schedules.epochs")
    d = st.slider("D (asymptotic): 3/4 of the pruning by D·E", 0.02, 1.0, 0.125, 0.005,
                  key="learn.schedules.d", format="%.3f")
    end = st.slider("end (cubic, exponential): pruning stops at end·E", 0.1, 1.0, 0.8, 0.05,
                    key="learn.schedules.end")
curves = learn.schedule_curves(rate, epochs, d, end)
with figure:
    st.plotly_chart(plots.schedule_figure(curves, epochs, end, d), key="learn.schedules.figure")

st.markdown("**How fast each schedule gets there** (epoch at which the target sparsity reaches a "
            "share of its final value):")
st.dataframe(learn.schedule_milestones(curves, rate), hide_index=True,
             key="learn.schedules.milestones")

cubic, asym, expo = st.columns(3, gap="large")
with cubic:
    st.subheader("Cubic (GMP, FGGP, GraNet)")
    st.markdown("Density falls fast at first, when many weights are redundant, and slowly near "
                "the end, when each weight left matters; flat after $T_{end}$.")
    # Each equation fits a third of the page at 1400 px with the sidebar open (a projector):
    # wider, KaTeX scrolls it inside its box and the exponent or lambda's fraction was cut off.
    st.latex(r"\begin{aligned} d(t) &= d_f + (d_i - d_f) \\ &\quad \cdot \left(1 - "
             r"\frac{t}{T_{end}}\right)^3 \end{aligned}")
    st.caption("Zhu & Gupta, ICLR-W 2018, arXiv 1710.01878. A pruning step every ΔT optimizer "
               "steps; the curve is in steps, so it looks continuous.")
with asym:
    st.subheader("Asymptotic (ASFP, PGMPF)")
    st.markdown("The keep rate decays exponentially towards its target $r = 1 - p$; 3/4 of the "
                "pruning is done at $e = D\\,E$, and from $0.9\\,E$ the rate is exactly $r$.")
    st.latex(r"\begin{gathered} r_e = r + (1 - r)\,e^{-k e} \\ k = \frac{\ln 4}{D\,E}"
             r"\end{gathered}")
    st.caption("He et al., ASFP, IEEE TCYB 2019, arXiv 1808.07471; PGMPF (Cai et al., AAAI-22, "
               "DOI 10.1609/aaai.v36i1.19888) uses it with D = 1/8. Computed at the end of epoch "
               "e, used in e + 1.")
with expo:
    st.subheader("Exponential count (PGP)")
    st.markdown("Each pruning epoch keeps a constant fraction of the filters, so the last "
                "pruning epoch lands exactly on $N_0 (1 - P)$; the rest of the session "
                "fine-tunes.")
    st.latex(r"\begin{gathered} n(e) = N_0\, e^{-\lambda (e + 1)} \\ "
             r"\lambda = \frac{-\ln(1 - P)}{E} \end{gathered}")
    st.caption("Nguyen-Meidine et al., ICPR 2020, arXiv 1906.08746. Here E is the number of "
               "pruning epochs, round(end · epochs); filter counts round up to whole filters.")
