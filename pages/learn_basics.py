"""Learn, what gets pruned: unstructured vs structured on one conv; layer-wise vs global
thresholds over several layers. Widgets -> pruneviz.learn -> pruneviz.plots_learn."""

import streamlit as st

from pruneviz import learn
from pruneviz import plots_learn as plots
from pruneviz.ui.learn import model_section
from pruneviz.ui.state import routed

routed(__file__)

st.set_page_config(layout="wide")


@st.cache_data(max_entries=32, show_spinner="Pruning and compacting the toy layer...")
def one_layer(rate: float, spread: float, seed: int) -> learn.OneLayer:
    return learn.one_layer(rate, spread=spread, seed=seed)


st.title("What gets pruned")
st.caption("Toy tensors pruned by the same functions the sessions use (pruneviz.masks, "
           "pruneviz.surgery, pruneviz.metrics). Move a slider: everything below is recomputed.")

# -- unstructured vs structured ----------------------------------------------------------------
st.header("One layer: single weights or whole filters")
controls, figure = st.columns([1, 2.8], gap="large")
with controls:
    st.markdown(
        "**Unstructured** pruning zeroes single weights, the smallest |w| of the layer, "
        "wherever they are.\n\n"
        "**Structured** (filter) pruning removes whole filters: the output channels with the "
        "smallest L2 norm, together with their BatchNorm γ and β.")
    rate = st.slider("Prune rate p", 0.1, 0.99, 0.5, 0.01, key="learn.basics.rate",
                     help="Fraction of the layer's weights (unstructured) or filters "
                          "(structured) to prune.")
    spread = st.slider("Filter strength spread", 0.0, 2.0, 0.8, 0.1, key="learn.basics.spread",
                       help="Each filter's weights are scaled by exp(spread x N(0, 1)): at 0 "
                            "all filters are alike, higher values make some filters weak.")
    seed = st.number_input("Seed", 0, 999, 0, key="learn.basics.seed")
one = one_layer(rate, spread, int(seed))
with figure:
    st.plotly_chart(plots.mask_heatmaps(one), key="learn.basics.masks")

eq1, eq2 = st.columns(2)
with eq1:
    st.markdown("Unstructured: keep weight $j$ of layer $l$ if its magnitude is above the "
                "layer's cut $\\tau_l$, the $\\mathrm{round}(p\\,n_l)$-th smallest $|w|$:")
    st.latex(r"m_j = \mathbb{1}\left[\,|w_j| > \tau_l\,\right]")
with eq2:
    st.markdown("Structured: keep filter $i$ unless its norm is among the "
                "$\\mathrm{round}(p\\,N)$ smallest of the layer's $N$ filters:")
    st.latex(r"m_i = \mathbb{1}\left[\,\lVert W_i \rVert_2 \notin "
             r"\operatorname{smallest}_{\mathrm{round}(pN)} \lVert W_\cdot \rVert_2\,\right]")

st.subheader("What each leaves for the hardware")
st.dataframe(one.hardware.map(lambda v: f"{v:,}" if isinstance(v, int) else v).T,
             key="learn.basics.hardware")
unstructured, structured = one.hardware.loc["unstructured"], one.hardware.loc["structured"]
st.markdown(
    f"The unstructured mask zeroes {unstructured['zero weights in conv1']} of conv1's "
    f"{one.weight.numel()} weights, the structured one {structured['zero weights in conv1']}. "
    f"The unstructured zeros are scattered, so the layer keeps its "
    f"shape ({unstructured['conv1 weight after compaction']}) and a dense kernel still "
    f"multiplies every one of them: {unstructured['FLOPs after compaction']:,} FLOPs, as "
    f"before. Only a sparse kernel could skip them (at best "
    f"{unstructured['FLOPs touching a nonzero weight']:,} FLOPs touch a nonzero weight). "
    f"Removing {structured['filters removed']} whole filters gives a smaller dense layer "
    f"({structured['conv1 weight after compaction']}), and the next conv loses the matching "
    f"input channels (now {structured['conv2 input channels']}): "
    f"{structured['FLOPs after compaction']:,} FLOPs on any hardware.")
st.caption("Compaction is pruneviz.surgery.compact (Torch-Pruning's dependency graph, Fang et "
           "al., CVPR 2023, arXiv 2301.12900), checked against the masked network; FLOPs by "
           "torch.utils.flop_counter (2 per multiply-add) for one 4x8x8 input. Unstructured "
           "magnitude pruning: Han et al., NeurIPS 2015, arXiv 1506.02626; filter pruning by "
           "norm: Li et al., ICLR 2017, arXiv 1608.08710.")

# -- layer-wise vs global ---------------------------------------------------------------------
st.divider()
st.header("Several layers: one cut per layer, or one cut for all")
controls, figures = st.columns([1, 2.8], gap="large")
with controls:
    st.markdown(
        "**Layer-wise** pruning removes the same fraction from every layer, each with its own "
        "cut. **Global** pruning ranks all weights together and uses one cut, so layers with "
        "small weights lose more.\n\n"
        "In a network initialised (and usually trained) with He init, weights scale like "
        "$1/\\sqrt{\\text{fan-in}}$: wide layers hold the small weights.")
    g_rate = st.slider("Prune rate p", 0.1, 0.99, 0.7, 0.01, key="learn.basics.g_rate")
    init = st.radio("Weight scales", ["He init: std = √(2 / fan-in)", "equal std"],
                    key="learn.basics.init", horizontal=True)
    layer = st.selectbox("Rescale one layer", list(learn.TOY_LAYERS), index=3,
                         key="learn.basics.layer")
    factor = st.select_slider("by", [0.25, 0.5, 1.0, 2.0, 4.0], 1.0, key="learn.basics.factor",
                              format_func=lambda v: f"x{v:g}")
weights = learn.toy_layers({layer: factor}, he_init=init.startswith("He"))
table = learn.layerwise_vs_global(weights, g_rate)
with figures:
    left, right = st.columns(2)
    left.plotly_chart(plots.sparsity_bars(table, g_rate), key="learn.basics.bars")
    right.plotly_chart(plots.weight_cuts(weights, table), key="learn.basics.cuts")

totals = table.groupby("scheme", sort=False).pruned.sum()
st.markdown(
    f"Both schemes prune about the same number of weights ({totals['layer-wise']:,} layer-wise, "
    f"{totals['global']:,} global, of {sum(w.numel() for w in weights.values()):,}; they differ "
    f"only by rounding per layer), but global pruning spreads them by weight scale. A small "
    f"layer such as conv1 (72 weights) barely matters to the count, yet it carries every image "
    f"into the network: stripping it bare, or a classifier, can cost more accuracy than the "
    f"count suggests. The engine's global methods (global_l1, GMP, FGGP) therefore leave the "
    f"first conv out by default.")
st.latex(r"\text{layer-wise: } \tau_l = |w|_{(\mathrm{round}(p\,n_l))} \text{ in layer } l"
         r"\qquad \text{global: } \tau = |w|_{(\mathrm{round}(p\,\sum_l n_l))} "
         r"\text{ over all layers}")
st.caption("masks.layerwise_magnitude and masks.global_magnitude; He init: He et al., ICCV "
           "2015, arXiv 1502.01852. The comparison of both schemes across many papers: "
           "Blalock et al., MLSys 2020, arXiv 2003.03033.")

# -- how pruneviz sees a model ----------------------------------------------------------------
st.divider()
model_section()
