"""The Inspect page's loaders (cached per run) and tab bodies: pages/inspect.py lays them out.
The run's models come from pruneviz.inspect.load_run (report's loader: a shrunk PGP run is
expanded back onto its architecture, and its compacted twin's numbers are shown above the
tabs)."""

from __future__ import annotations

import streamlit as st
import torch

from .. import inspect as ins
from .. import plots_inspect as plots
from .. import sensitivity as sens
from ..config import ConfigError, format_layer_rates, parse_numbers
from ..store import Store, StoreError
from . import state
from .forms import FILTER_TO_UNSTRUCTURED
from .text import plain

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency",
                 "conductance": "LayerConductance",
                 "gradient_x_activation": "LayerGradientXActivation"}


def message(e: Exception) -> str:
    """Our errors already say what and how to fix; anything else gets its type."""
    return str(e) if isinstance(e, (ConfigError, StoreError)) else f"{type(e).__name__}: {e}"


@st.cache_resource(max_entries=4, show_spinner="Loading the run's models...")
def models(root: str, run_id: str) -> ins.RunModels:
    return ins.load_run(Store(root), run_id, DEVICE)


@st.cache_data(max_entries=16, show_spinner="Attributing...")
def attributions(root: str, run_id: str, n: int, method: str, n_steps: int):
    rm = models(root, run_id)
    x, y = ins.held_out_images(rm.data, n, DEVICE)
    comp = ins.compare_attributions(rm.dense, rm.pruned, x, y, method, n_steps=n_steps,
                                    baseline=ins.black_baseline(rm.data, x))
    return ins.denormalize(rm.data, x).cpu(), comp


@st.cache_data(max_entries=16, show_spinner="Comparing predictions...")
def agreement(root: str, run_id: str):
    rm = models(root, run_id)
    return ins.agreement(rm.dense, rm.pruned, rm.data, device=DEVICE, limit=2000)


@st.cache_data(max_entries=16, show_spinner="Attributing to filters...")
def contributions(root: str, run_id: str, layer: str, method: str, n: int):
    rm = models(root, run_id)
    x, y = ins.held_out_images(rm.data, n, DEVICE)
    return ins.layer_contributions(rm.dense, layer, x, y, rm.masks, method,
                                   baseline=ins.black_baseline(rm.data, x))


@st.cache_data(max_entries=16, show_spinner="Pruning each layer alone...")
def scan(root: str, run_id: str, kind: str, rates: tuple, all_layers: bool, limit: int):
    rm = models(root, run_id)
    x, y = sens.heldout_batch(rm.data, limit, DEVICE)
    return (sens.sensitivity_scan(rm.dense, x, y, rates=rates, kind=kind, all_layers=all_layers),
            sens.evaluate_batch(rm.dense, x, y)[0])


def attribution_tab(root: str, run_id: str, rm: ins.RunModels) -> None:
    c1, c2, c3 = st.columns(3)
    method = c1.radio("Attribution", ins.ATTRIBUTIONS, format_func=METHOD_LABELS.get,
                      horizontal=True, key="attr_method")
    n = c2.slider("Held-out images", 1, 8, 4, key="attr_images")
    steps = c3.select_slider("IG steps", [16, 32, 64, 128], 32, key="attr_steps",
                             disabled=method != "integrated_gradients")
    images, comp = attributions(root, run_id, n, method, steps)
    st.caption("Both models are attributed for the true label; each map is divided by its sum of "
               "|values|, so the difference (pruned - dense) shows where the model looks, not how "
               "confident it is.")
    st.plotly_chart(plots.attribution_figure(images, comp, rm.data.classes))
    st.dataframe(comp.table, hide_index=True)


def agreement_tab(root: str, run_id: str) -> None:
    per_class = agreement(root, run_id)
    c1, c2, c3 = st.columns(3)
    total = per_class.n.sum()
    c1.metric("Top-1 agreement", f"{ins.overall_agreement(per_class):.1%}")
    c2.metric("Dense accuracy", f"{(per_class.dense_accuracy * per_class.n).sum() / total:.1%}")
    c3.metric("Pruned accuracy", f"{(per_class.pruned_accuracy * per_class.n).sum() / total:.1%}")
    st.plotly_chart(plots.agreement_figure(per_class))
    st.dataframe(per_class, hide_index=True)


def layer_tab(root: str, run_id: str, rm: ins.RunModels) -> None:
    names = ins.inspectable_layers(rm.dense)
    masked = [n for n in names if f"{n}.weight" in rm.masks]
    c1, c2, c3 = st.columns(3)
    layer = c1.selectbox("Layer", names, index=names.index(masked[0]) if masked else 0,
                         key="layer_name")
    method = c2.radio("Layer attribution", ins.LAYER_ATTRIBUTIONS, format_func=METHOD_LABELS.get,
                      horizontal=True, key="layer_method")
    n = c3.slider("Held-out images", 1, 32, 8, key="layer_images")
    contrib = contributions(root, run_id, layer, method, n)
    st.caption("How much each filter of the dense start contributed to the true label, coloured "
               "by what the run did to it.")
    st.dataframe(ins.contribution_shares(contrib), hide_index=True)
    if (contrib.status == "partly pruned").any():
        rho = contrib.abs_contribution.corr(contrib.kept_fraction, method="spearman")
        st.caption(f"The run pruned inside filters: Spearman correlation between a filter's "
                   f"|contribution| and the share of its weights kept: {rho:.2f}.")
    st.plotly_chart(plots.contribution_figure(contrib, layer))


def sensitivity_tab(root: str, run_id: str, rm: ins.RunModels) -> None:
    with st.form("scan_form"):
        c1, c2, c3 = st.columns(3)
        kind = c1.radio("Criterion", sens.KINDS, horizontal=True, key="scan_kind",
                        help="unstructured: smallest |w| of the layer; filter: smallest-L2 "
                             "filters with their BatchNorm gamma and beta.")
        rates_text = c2.text_input("Rates", "0, 0.25, 0.5, 0.75, 0.9", key="scan_rates")
        limit = c3.number_input("Held-out images", 16, 10000, 512, key="scan_limit")
        all_layers = st.checkbox("Also the first conv, the classifier and shortcut convs",
                                 key="scan_all")
        submitted = st.form_submit_button("Scan the dense start")
    if submitted:
        try:
            rates = tuple(sens.check_rates(parse_numbers(rates_text, "Rates")))
        except ValueError as e:
            st.error(str(e) if isinstance(e, ConfigError) else
                     f"Rates are comma-separated numbers, got {rates_text!r}.")
            return
        result, dense_acc = scan(root, run_id, kind, rates, all_layers, int(limit))
        st.session_state["inspect_scan"] = (run_id, kind, result, dense_acc)
    saved = st.session_state.get("inspect_scan")
    if not saved or saved[0] != run_id:
        st.info("Scan prunes each layer of the dense start alone at each rate and evaluates it "
                "on a held-out batch.")
        return
    _, kind, result, dense_acc = saved
    st.plotly_chart(plots.sensitivity_heatmap(result))
    st.plotly_chart(plots.sensitivity_curves(result, dense_acc))
    st.subheader("Suggest per-layer rates")
    c1, c2 = st.columns(2)
    max_rate = c2.number_input("Max rate per layer", 0.05, 0.99, 0.95, 0.01, key="max_rate")
    target = c1.number_input("Global target rate", 0.0, 0.99, min(rm.config.rate, max_rate),
                             0.05, key="suggest_target",
                             help="The suggested rates average to it, weighted by layer size.")
    if st.button("Suggest per-layer rates", key="suggest"):
        rates = sens.suggest_rates(result, target, max_rate=max_rate)
        text = format_layer_rates(rates)
        # Read by the Live session form to pre-fill its per-layer rates and global rate.
        # The rates name this run's layers: the form also takes its model and data.
        c = rm.config
        st.session_state["prefill"] = {"layer_rates": text, "rate": target, "kind": kind,
                                       "model": c.model, "dataset": c.dataset,
                                       "image_size": c.image_size, "data_root": c.data_root}
        st.session_state["inspect_suggestion"] = (run_id, kind, rates, target)
    suggestion = st.session_state.get("inspect_suggestion")
    if suggestion and suggestion[:2] == (run_id, kind):
        _, _, rates, target = suggestion
        st.code(format_layer_rates(rates), language=None)
        st.plotly_chart(plots.suggestion_figure(rates, result, target))
        st.success(f"Saved for the Live session form: {plain(rm.config.model)} on "
                   f"{plain(rm.config.dataset)}, global rate {target:g}, {kind} rates per "
                   f"layer, the most sensitive layers pruned least.")
        if kind == "filter":
            st.warning(FILTER_TO_UNSTRUCTURED, icon=":material/info:")
        st.page_link("pages/live.py", label="Open the Live session form with these rates",
                     icon=":material/play_circle:")

def transformer_view(rm: ins.RunModels) -> None:
    """Attention maps dense vs pruned per head; for a language model, a prompt both continue."""
    text = getattr(rm.data, "modality", "image") == "text"
    c1, c2 = st.columns(2)
    index = c1.number_input("Held-out input", 0, len(rm.data.test_x) - 1, 0, key="att_input")
    layer = c2.selectbox("Block", range(len(rm.dense.blocks)), key="att_block")
    x = ins.held_out_input(rm.data, int(index), DEVICE)
    if text:
        st.caption(f"Input: {bytes(x[0].tolist()).decode('utf-8', errors='replace')!r}")
    st.plotly_chart(plots.attention_figure(ins.attention_maps(rm.dense, x),
                                           ins.attention_maps(rm.pruned, x), int(layer)))
    if not text:
        return
    st.subheader("Continue a text")
    prompt = st.text_area("Prompt", "The for statement is used to", key="lm_prompt")
    if not prompt.strip():
        st.error("**Prompt** is empty: type a few words for both models to continue.")
        return
    left, right = st.columns(2)
    for col, name, model in ((left, "Dense start", rm.dense), (right, "Pruned", rm.pruned)):
        col.markdown(f"**{name}** (greedy, 100 bytes)")
        col.code(prompt + ins.continue_text(model, prompt, 100), language=None, wrap_lines=True)


def pick_run() -> tuple[str, str, ins.RunModels] | None:
    """The run picker over the store's completed runs and the picked run's models (root,
    run_id, models); None after saying why there is nothing to inspect (no traceback)."""
    try:
        store = state.get_store()
        runs = store.runs()
        runs = runs[runs.status == "completed"]
        if runs.empty:
            st.info("No completed runs yet: `python -m pruneviz run` starts one.")
            return None
        # The name first where a run has one: it is how the user knows the run.
        labels = {r.run_id: (f"{r.name} · " if r.name else "")
                  + f"{r.run_id}  {r.method} {r.rate:g}  {r.model}/{r.dataset}"
                  for r in runs.itertuples()}
        run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="inspect_run")
        root = str(store.root)
        return root, run_id, models(root, run_id)
    except Exception as e:      # a bad store or an uninspectable run: say so, no traceback
        st.error(message(e))
        return None


def compact_summary(rm: ins.RunModels) -> None:
    """The final model compacted (dead filters physically removed): its parameters against the
    dense start's and the filters gone; a shrunk run says it was expanded back for Inspect."""
    n = ins.compact_numbers(rm)
    c1, c2, c3 = st.columns(3)
    c1.metric("Compact model's parameters", f"{n['params_compact']:,}",
              help="The final model with every dead filter physically removed "
                   "(report's compaction, checked to compute the same outputs).")
    c2.metric("Of the dense start's", f"{n['params_ratio']:.1%}",
              help=f"The dense start has {n['params_dense']:,} parameters.")
    c3.metric("Filters removed", f"{n['filters_removed']} of {n['filters']}")
    if n["shrunk"]:
        st.caption("The method physically removed filters during training (a shrunk run): "
                   "Inspect expands its network back onto the architecture, removed filters "
                   "as zeros, so both models take the same attributions.")


def run_tabs(root: str, run_id: str, rm: ins.RunModels) -> None:
    """A transformer's attention view, else the four tabs, each failing on its own."""
    if ins.is_transformer(rm.dense):
        transformer_view(rm)
        return
    tabs = st.tabs(["Attributions", "Agreement", "Layer view", "Sensitivity"])
    for tab, (render, args) in zip(tabs, [(attribution_tab, (root, run_id, rm)),
                                          (agreement_tab, (root, run_id)),
                                          (layer_tab, (root, run_id, rm)),
                                          (sensitivity_tab, (root, run_id, rm))]):
        with tab:
            try:
                render(*args)
            except Exception as e:
                st.error(message(e))
