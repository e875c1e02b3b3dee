"""Learn, why sparsity is not speed: FLOPs a dense kernel runs on zeros, then timings measured on
this machine on request (metrics.measure_latency, hard time cap). Widgets ->
pruneviz.learn_speed -> pruneviz.plots_learn."""

import streamlit as st

from pruneviz import learn_speed
from pruneviz import plots_learn as plots
from pruneviz.ui.state import routed

routed(__file__)


def warn_if_busy(result: dict) -> None:
    """Say so when a measurement's timings spread widely or too few repetitions fit."""
    if result["noisy"] or result["min_reps"] < 5:
        why = ("some timings spread over more than a quarter of their median"
               if result["noisy"] else
               f"only {result['min_reps']} repetitions fit the budget")
        st.warning(f"The machine looks busy: {why}. The ratios resist that better than the "
                   f"times; measure again, or with a larger budget, to be sure.",
                   icon=":material/warning:")


st.set_page_config(layout="wide")
st.title("Why sparsity is not speed")
st.caption("FLOPs are counted by torch.utils.flop_counter; times are measured here, on request, "
           "with the same function the metrics panel uses.")

st.markdown(
    "A pruned network is only faster if the hardware does less work. Three things decide "
    "whether it does: **where the zeros are**, **how the kernels are blocked**, and **whether the "
    "layer is big enough for arithmetic to dominate**.")

st.header("1. Scattered zeros are still multiplied")
controls, table = st.columns([1, 2.8], gap="large")
with controls:
    channels = st.select_slider("Conv width (channels in = out)", [16, 32, 64, 128], 64,
                                key="learn.speed.channels")
    rate = st.slider("Prune rate", 0.1, 0.99, 0.5, 0.01, key="learn.speed.rate")
with table:
    flops = learn_speed.sparsity_flops(channels, 16, rate)
    st.dataframe(flops, hide_index=True, key="learn.speed.flops", column_config={
        c: st.column_config.NumberColumn(format="localized") for c in flops.columns[1:]})
    st.markdown(
        "A dense convolution kernel (oneDNN on CPU, cuDNN on GPU) runs the same loop whatever the "
        "values are: a zero weight costs a multiply-add like any other, so the unstructured conv "
        "runs the dense conv's FLOPs. *FLOPs on nonzero weights* is what a perfect sparse kernel "
        "could skip, a bound: real sparse kernels need very high sparsity (or a pattern such as "
        "2:4 on recent GPUs) before their indexing overhead pays off. Removing filters gives a "
        "smaller dense conv that every kernel runs faster.")

st.header("2. Kernels work in blocks of channels")
st.markdown(
    "CPU convolution kernels vectorise over output channels: oneDNN with AVX-512 computes 16 "
    "float channels per instruction (8 with AVX2), so a conv with 17 filters costs about what "
    "32 do, and 10 what 16 do. GPU kernels tile similarly (and like multiples of 8 for tensor "
    "cores). Pruning to an awkward filter count can buy far less than its FLOPs promise.")
st.header("3. Tiny layers are launch-bound")
st.markdown(
    "Every layer call has fixed costs: Python dispatch, kernel launch, memory allocation. At "
    "batch 1 on a small network these dominate, so halving the arithmetic barely moves the "
    "time; at batch 64 the arithmetic shows again.")

st.divider()
st.subheader("Measure it on this machine")
capability, block = learn_speed.cpu_vector_block()
st.markdown(
    f"This CPU reports **{capability}** to PyTorch"
    + (f" (convolution blocks of {block} channels)." if block else ".")
    + " The measurement times the three convs of part 1, a conv from 64 channels to 8 ... 64 "
    "filters, and a tiny CNN against its half-width twin at batch 1 and 64, interleaved, and "
    "reports medians. It takes about the budget below; a busy machine gets fewer repetitions "
    "(the tables say how many).")
budget = st.slider("Time budget (seconds)", 0.5, 6.0, 2.0, 0.5, key="learn.speed.budget")
if st.button("Measure", type="primary", key="learn.speed.measure", icon=":material/timer:"):
    with st.spinner("Timing..."):
        st.session_state["learn.speed.result"] = learn_speed.measure_speed(
            channels=channels, rate=rate, budget_s=budget)
result = st.session_state.get("learn.speed.result")
if result is None:
    st.info("Press Measure to time the toys here; nothing above is a measurement.")
else:
    st.caption(f"Measured in {result['seconds']:.1f} s on this machine with "
               f"{result['threads']} torch thread(s), batch 8 for the convs. Models were timed "
               f"back to back in every repetition; the ratios are medians of those pairs, so a "
               f"load spike hits both sides alike.")
    warn_if_busy(result)
    a, b, c = st.columns(3)
    a.plotly_chart(plots.timing_bars(result["zeros"], "conv", "Same shape, zeros or not"),
                   key="learn.speed.zeros")
    b.plotly_chart(plots.channel_sweep_figure(result["channels"], result["block"]),
                   key="learn.speed.channels_fig")
    c.plotly_chart(plots.launch_figure(result["launch"]), key="learn.speed.launch")
    with st.expander("The numbers"):
        for key in ("zeros", "channels", "launch"):
            st.dataframe(result[key], hide_index=True, key=f"learn.speed.table.{key}")
st.caption("Latency: pruneviz.metrics.measure_latency (warm-up, models interleaved in "
           "alternating order, median). The metrics panel of every run measures its own dense "
           "vs compact model the same way and explains the gap in notes. Survey of sparse "
           "kernels and their break-even sparsity: Hoefler et al., Sparsity in Deep Learning, "
           "JMLR 2021, arXiv 2102.00554.")

st.divider()
st.header("4. Round the kept filters to the block")
st.markdown(
    "The filter methods take **round to** (under the method's parameters on the Live page: 16, "
    "or `auto` for this device's block): each layer keeps a multiple of it (below one block, a divisor of it), rounded "
    "down so it never prunes less than asked, and the method's own criterion still picks which "
    "filters go. Here the conv of part 1 is pruned at the rate below with and without rounding and "
    "timed on this machine: the padded count costs what the full block does, the rounded one "
    "gets the speed its FLOPs promise.")
left, right = st.columns([1, 2.8], gap="large")
with left:
    round_rate = st.slider("Prune rate", 0.05, 0.95, 0.4, 0.01, key="learn.speed.round_rate",
                           help="Of the part 1 conv's filters. At width 64 the default leaves 38, "
                                "which no kernel block divides; 0.5 leaves 32, already "
                                "aligned, and rounding changes nothing.")
    round_to = st.select_slider("round_to", [4, 8, 16, 32], block or 16,
                                key="learn.speed.round_to")
    if st.button("Measure rounding", key="learn.speed.round_measure",
                 icon=":material/timer:"):
        with st.spinner("Timing..."):
            st.session_state["learn.speed.round_result"] = learn_speed.round_to_speed(
                channels=channels, rate=round_rate, block=round_to, budget_s=budget)
with right:
    rounded = st.session_state.get("learn.speed.round_result")
    if rounded is None:
        st.info("Press Measure rounding to time a pruned conv with and without round_to here.")
    else:
        st.plotly_chart(plots.round_to_figure(rounded), key="learn.speed.round_fig")
        st.dataframe(rounded, hide_index=True, key="learn.speed.table.round")
        st.caption("time per FLOP is time relative over FLOPs relative: 1 means the pruned conv "
                   "is as fast as its FLOPs say; above 1, padding to the block eats the saving.")

st.divider()
st.header("5. 2:4 sparsity: zeros in a pattern a kernel can skip")
st.markdown(
    "NVIDIA GPUs from Ampere on (compute capability 8.0+) have *sparse tensor cores*: when every "
    "group of 4 consecutive weights along a layer's input holds at most 2 nonzeros, they store "
    "only those 2 plus their positions and do half the multiplies. **nm** = 2:4 (under the "
    "method's parameters on the Live page) prunes to exactly that pattern (l1, random, gmp, fggp, granet, slr, admm), each method choosing the 2 "
    "it keeps per group. Half the weights of a layer with the pattern, each row of groups "
    "separated by bars:")
st.code(learn_speed.two_four_pattern(), language=None)
st.markdown(
    "The pattern alone buys nothing: a dense kernel multiplies the zeros like any weight. Only "
    "the 2:4 kernels (PyTorch's `torch.sparse.to_sparse_semi_structured`, half precision, "
    "Linear layers) turn it into speed, and only on such a GPU. Time both here:")
left, right = st.columns([1, 2.8], gap="large")
with left:
    features = st.select_slider("Linear width (in = out)", [256, 512, 1024, 2048], 1024,
                                key="learn.speed.nm.features")
    nm_budget = st.slider("Time budget (seconds)", 0.5, 6.0, 2.0, 0.5,
                          key="learn.speed.nm.budget")
    if st.button("Time 2:4", key="learn.speed.nm.measure", icon=":material/timer:"):
        with st.spinner("Timing..."):
            st.session_state["learn.speed.nm.result"] = learn_speed.measure_two_four(
                features=features, budget_s=nm_budget)
with right:
    nm_result = st.session_state.get("learn.speed.nm.result")
    if nm_result is None:
        st.info("Press Time 2:4 to time a dense and a 2:4 layer on this machine.")
    else:
        st.caption(f"A {nm_result['features']} x {nm_result['features']} Linear at batch "
                   f"{nm_result['batch']}, measured in {nm_result['seconds']:.1f} s with "
                   f"{nm_result['threads']} torch thread(s); ratios are medians of pairs timed "
                   f"back to back.")
        warn_if_busy(nm_result)
        a, b = st.columns(2)
        a.plotly_chart(plots.timing_bars(nm_result["cpu"], "layer",
                                         "CPU, fp32: half the weights zero"),
                       key="learn.speed.nm.cpu")
        if nm_result["kernel"] is not None:
            b.plotly_chart(plots.timing_bars(nm_result["kernel"], "layer",
                                             "GPU, fp16: the 2:4 kernels"),
                           key="learn.speed.nm.kernel")
        else:
            b.info(nm_result["reason"], icon=":material/memory:")
