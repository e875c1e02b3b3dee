"""Compare stored runs side by side, and launch a methods x rates x seeds grid from one form."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..config import ConfigError, SessionConfig, parse_numbers
from ..methods import load_all
from ..modelspec import short_name
from ..papers import PAPER_COMPARISONS, matching, preset_of
from ..papers import SEEDS as PAPER_SEEDS
from ..plots_compare import (
    RATE_CURVE_MIN_RATES,
    RATE_X,
    X_AXES,
    config_diff,
    curves_figure,
    layer_profile_figure,
    parallel_figure,
    pareto_figure,
    rate_curve_figure,
    seed_groups,
)
from ..plots_report import report_html
from ..quality import ACCURACY, COMPARE_METRICS, PERPLEXITY, quality_of
from ..stats import LEVEL, aggregate, more_seeds, paired, paired_frame, verdict
from ..store import ACTIVE, Store
from ..workers import DEFAULT_COMPARISON, Queue, grid
from .dense import dense_warnings
from .forms import dataclass_widgets, problems
from .state import POLL_SECONDS, list_runs, select_runs, selected_runs
from .text import chart_text, plain

CURVE_POINTS = 400
REDRAW_SECONDS = 2.0     # the comparison redraws while any of its runs trains
SHOWN_CURVES = {"loss", "test_accuracy", "sparsity"}      # drawn above in any case
PREFERRED_CURVES = ("hard_prune_now_accuracy", "primal_residual", "density", "r_e")
GRID_FIELDS = ("model", "dataset", "epochs")
TABLE_COLUMNS = ["label", "status", "method", "model", "dataset", "rate", "seed", "epochs",
                 "final_accuracy", "accuracy_drop", "final_perplexity", "perplexity_rise",
                 "sparsity", "flops_effective", "warnings", "tags", "notes", "wall_s", "run_id"]
WARNINGS_SHOWN = 8       # warning sentences listed above the table; the column holds them all
SWEEP_INPUTS = ["method", "rate", "seed", "epochs"]
SWEEP_OUTPUTS = ["final_accuracy", "accuracy_drop", "sparsity", "flops_effective"]
METRICS = {k: label for k, (label, _) in COMPARE_METRICS.items()}
PERPLEXITY_COLUMNS = ("final_perplexity", "perplexity_rise")    # language-model runs only
FORMATS = {"png": "PNG", "svg": "SVG"}
# The quality the seed statistics are over, its direction, and how a difference is spoken:
# accuracy differences in percentage points.
# The seed statistics are over the runs' quality (quality.py): accuracy differences spoken in
# percentage points, perplexity differences in perplexity.
SPOKEN = {"accuracy": (100.0, "points"), "perplexity": (1.0, "")}
MAX_ADDED_SEEDS = 10
_LAUNCHED = "cmp.launched"
_URL = "cmp.url"                # the ?runs= value this session last read or wrote
_UNKNOWN = "cmp.unknown"        # ids a link named that the store does not hold


def compare_data(store: Store, run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Runs (with label, seed group, epochs, accuracy drop), downsampled curves, per-layer
    records, the config diff, and the differing config fields of the finished runs."""
    runs = list_runs(store)
    runs = runs.set_index("run_id").loc[[r for r in run_ids if r in set(runs.run_id)]]
    runs = runs.reset_index()
    configs = {r: store.run(r)["config"].to_dict() for r in runs.run_id}
    runs["epochs"] = [configs[r]["epochs"] for r in runs.run_id]
    runs["accuracy_drop"] = _drop(runs, ACCURACY)
    runs["perplexity_rise"] = _drop(runs, PERPLEXITY)
    # Only completed runs are averaged: a failed, cancelled or still-training run's curve
    # stops early and would bend the mean and band where it ends.
    done = runs.run_id[runs.status == "completed"]
    groups = seed_groups({r: configs[r] for r in done})
    runs["group"] = [groups.get(r, r) for r in runs.run_id]
    ids = list(runs.run_id)
    diff = config_diff({runs.label[i]: configs[r] for i, r in enumerate(ids)})
    runs["model_short"] = model_names(runs.model)
    runs["pair"] = runs.model_short + "/" + runs.dataset
    runs["where"] = " · " + runs.pair if runs.pair.nunique() > 1 else ""
    runs["label"] = runs.label + runs["where"]
    sweep = config_diff({r: configs[r] for r in done})
    return {"runs": runs, "configs": configs,
            "scalars": store.scalars(ids, ["loss", "test_accuracy", "sparsity"],
                                     max_points=CURVE_POINTS) if ids else pd.DataFrame(),
            "layers": store.layers(ids, ["sparsity"]) if ids else pd.DataFrame(),
            "config": diff,
            "sweep": sweep if len(sweep) > 1 else pd.DataFrame(index=list(done))}


def model_names(models: pd.Series) -> pd.Series:
    """Each run's model as legends and titles name it: the spec's short name
    (`/home/u/nets.py:build` -> `nets.py:build`), or the full spec where two different specs
    share a short name (so a mixed selection is still told apart). The table, its CSV and the
    config diff keep the full spec."""
    short = models.map(short_name)
    clash = {s for s, specs in models.groupby(short) if specs.nunique() > 1}
    return models.where(short.isin(clash), short)


def _drop(runs: pd.DataFrame, quality) -> pd.Series:
    """Per run, how much worse its final quality is than its dense start's (positive: worse)."""
    dense = pd.to_numeric(runs[f"dense_{quality.key}"], errors="coerce")
    final = pd.to_numeric(runs[f"final_{quality.key}"], errors="coerce")
    return dense - final if quality.higher_is_better else final - dense


def compare_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The compare table as shown and downloaded: one row per run, tags joined by commas."""
    columns = [c for c in TABLE_COLUMNS if c not in PERPLEXITY_COLUMNS
               or pd.to_numeric(runs[c], errors="coerce").notna().any()]
    table = runs[columns].copy()
    table["tags"] = [", ".join(t) for t in table.tags]
    table["warnings"] = [" | ".join(_warnings(w)) for w in table.warnings]
    return table


def _warnings(value: object) -> list[str]:
    """A run's guard warnings (a run still training, or stored before the guards, has none)."""
    return list(value) if isinstance(value, list) else []


def warnings_note(runs: pd.DataFrame) -> str | None:
    """One message listing the compared runs' warnings (None when no run has any)."""
    lines = [f"**{plain(label)}**: {plain(w)}" for label, ws in zip(runs.label, runs.warnings)
             for w in _warnings(ws)]
    if not lines:
        return None
    n = sum(bool(_warnings(ws)) for ws in runs.warnings)
    more = (f"\n\n...and {len(lines) - WARNINGS_SHOWN} more in the table's warnings column."
            if len(lines) > WARNINGS_SHOWN else "")
    return (f"{n} of these runs end with warnings: their final numbers may mislead.\n\n"
            + "\n\n".join(f"- {line}" for line in lines[:WARNINGS_SHOWN]) + more)


def figure_config(fmt: str, name: str) -> dict:
    """plotly's modebar config: its camera button saves the figure as `fmt` in the browser
    (no server-side image export needed)."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": fmt, "filename": f"pruneviz-{name}",
                                     "scale": 2 if fmt == "png" else 1}}


def selection_from_url(store: Store) -> None:
    """?runs=ID,ID on Compare: a link (a shared URL, a reload) selects those runs; after that
    the URL follows the selection, so copying it shares the comparison. Ids this store does
    not hold are left out with a notice."""
    raw = st.query_params.get("runs")
    if raw is not None and raw != st.session_state.get(_URL):
        ids = list(dict.fromkeys(r.strip() for r in raw.split(",") if r.strip()))
        known = set(list_runs(store).run_id)
        st.session_state[_UNKNOWN] = [r for r in ids if r not in known]
        st.session_state[_URL] = raw
        select_runs([r for r in ids if r in known])
        st.rerun()        # the sidebar, drawn before this page, shows the new selection
    unknown = st.session_state.pop(_UNKNOWN, None)
    if unknown:
        # Escaped, not a code span: a newline in the link's text would end the span and let
        # the rest render as Markdown (an image fetched from any URL).
        shown = ", ".join(plain(" ".join(r.split())[:40]) for r in unknown[:10])
        st.warning(f"The link names {len(unknown)} run(s) this store does not hold (deleted, "
                   f"or from another store); they are left out: {shown}",
                   icon=":material/link_off:")
    value = ",".join(selected_runs())
    if value != st.query_params.get("runs", ""):
        if value:
            st.query_params["runs"] = value
        else:
            del st.query_params["runs"]
    st.session_state[_URL] = value


def compare_view(store: Store, run_ids: list[str], queue: Queue | None = None) -> None:
    """The comparison; redraws every couple of seconds while a compared run is active."""
    runs = list_runs(store)
    busy = bool(runs[runs.run_id.isin(run_ids)].status.isin(ACTIVE).any())
    st.fragment(_compare_body, run_every=REDRAW_SECONDS if busy else None)(store, run_ids,
                                                                            queue)


def _chart(where, fig, key: str) -> None:
    fmt = st.session_state.get("cmp.format", "png")
    where.plotly_chart(fig, key=key, config=figure_config(fmt, key.removeprefix("cmp.")))


def _compare_body(store: Store, run_ids: list[str], queue: Queue | None = None) -> None:
    d = compare_data(store, run_ids)
    runs = d["runs"]
    if runs.empty:
        st.info("The selected runs were deleted; pick others in the sidebar.")
        return
    pairs = runs.pair.value_counts(sort=False)
    measures = measure_groups(runs)
    dense = _notices(store, d, pairs, measures)
    tables, verdicts, figures = [], [], []
    for q, sub in measures.items():
        suffix = _suffix(q, measures)
        if suffix:
            st.markdown(f"### {q.label.capitalize()} runs ({len(sub)})")
        table, said, drawn = across_seeds(sub, d["configs"], suffix)
        if suffix and not table.empty:      # the report's one table says each row's measure
            table = table.assign(measure=q.label)
        tables, verdicts, figures = tables + [table], verdicts + said, figures + drawn
    aggregated = pd.concat([t for t in tables if not t.empty], ignore_index=True) \
        if any(not t.empty for t in tables) else pd.DataFrame()
    if not aggregated.empty:
        _add_seeds(runs, d["configs"], queue)
    table = _run_table(runs)
    x = _chart_options(table)
    # From here runs feed plotly only: user text in them is escaped for its HTML subset.
    charted = _charted(runs)
    figures += _curves(d, charted, x)
    for q, sub in measures.items():
        if _suffix(q, measures):
            st.markdown(f"#### Trade-offs of the {q.label} runs")
        ids = set(sub.run_id)
        figures += _trade_offs(charted[charted.run_id.isin(ids)],
                               _charted(d["sweep"][d["sweep"].index.isin(ids)]),
                               mixed=sub.pair.nunique() > 1, suffix=_suffix(q, measures))
    _any_curve(store, charted, x)
    _config_diff(d["config"], len(runs))
    _report_button(dict(title=f"pruneviz comparison of {len(runs)} run(s)",
                        aggregated=aggregated, verdicts=verdicts, runs=table,
                        configs=d["configs"], figures=figures,
                        warnings=dense + [f"{label}: {w}" for label, ws in zip(runs.label,
                                                                               runs.warnings)
                                          for w in _warnings(ws)]))


def measure_groups(runs: pd.DataFrame) -> dict:
    """The runs by quality measure (accuracy for image classifiers, perplexity for language
    models), each with its own section: no table across seeds, verdict or Pareto front spans
    two measures."""
    measure = [quality_of(row) for row in runs.to_dict("records")]
    keys = pd.Series([q.key for q in measure], index=runs.index)
    return {q: runs[keys == q.key] for q in (ACCURACY, PERPLEXITY) if (keys == q.key).any()}


def _suffix(q, measures: dict) -> str:
    """Widget keys of a measure's section: unchanged when the selection has one measure."""
    return f".{q.key}" if len(measures) > 1 else ""


def _notices(store: Store, d: dict, pairs: pd.Series, measures: dict) -> list[str]:
    """The warnings above the comparison: a model/dataset mix, a measure mix, the runs' guard
    warnings and under-trained dense starts; returns the dense-start ones for the report."""
    runs = d["runs"]
    if len(pairs) > 1:
        st.warning(f"These runs train {len(pairs)} different models or datasets ("
                   + ", ".join(f"{plain(p)}: {n} run(s)" for p, n in pairs.items())
                   + "). Legends name each run's model/dataset, the per-layer chart is drawn "
                     "per model and each pair gets its own Pareto front; accuracies across "
                     "datasets do not compare.", icon=":material/warning:")
    if len(measures) > 1:
        st.warning("These runs are measured two ways: " + ", ".join(
            f"{len(sub)} by {q.label}" for q, sub in measures.items())
            + " (image classifiers by held-out accuracy, language models by held-out "
              "perplexity). Each measure gets its own section below: its own table across "
              "seeds, verdicts and Pareto fronts; nothing is averaged or ranked across the two.",
            icon=":material/call_split:")
    note = warnings_note(runs)
    if note:
        st.warning(note, icon=":material/warning:")
    dense = dense_warnings(store, d["configs"])
    for w in dense:
        st.warning(w, icon=":material/school:")
    return dense


def _run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's row, shown and returned (the CSV and the report keep every column)."""
    st.markdown("#### Every run")
    table = compare_table(runs)
    # A model or dataset shared by every run is one column less to scroll past (the CSV
    # keeps it).
    shown = table.drop(columns=[c for c in ("model", "dataset") if table[c].nunique() == 1])
    st.dataframe(shown, hide_index=True, key="cmp.table", column_config={
        "label": st.column_config.TextColumn("run", pinned=True),
        "accuracy_drop": st.column_config.NumberColumn(
            "acc. drop vs dense", format="%.4f",
            help="Dense baseline accuracy minus final accuracy (positive: accuracy lost)."),
        "warnings": st.column_config.TextColumn(
            "warnings", width="medium",
            help="Collapse and misleading-result guards: each sentence says the cause and the "
                 "fix."),
        "tags": st.column_config.TextColumn("tags", width="medium"),
        "notes": st.column_config.TextColumn("notes", width="medium")})
    return table


def _chart_options(table: pd.DataFrame) -> str:
    """The table's CSV, the curves' x axis (returned) and the charts' download format."""
    a, b, c = st.columns([1, 2, 2], vertical_alignment="center")
    a.download_button("Table as CSV", table.to_csv(index=False), file_name="pruneviz-compare.csv",
                      mime="text/csv", key="cmp.csv", icon=":material/download:")
    x = b.radio("x axis", list(X_AXES), format_func=lambda k: X_AXES[k].capitalize(),
                horizontal=True, key="cmp.x",
                help="Epoch or fraction of training overlays runs of different lengths "
                     "(30 and 440 steps both end at 1).")
    c.radio("Chart downloads (camera icon on each chart)", list(FORMATS),
            format_func=FORMATS.get, horizontal=True, key="cmp.format")
    return x


def _curves(d: dict, runs: pd.DataFrame, x: str) -> list:
    """Loss, held-out accuracy, sparsity and the per-layer profile per model; returns the
    accuracy chart for the report."""
    scalars, layers = d["scalars"], d["layers"]
    c1, c2 = st.columns(2)
    _chart(c1, curves_figure(scalars, runs, "loss", title="Training loss (smoothed)",
                             smoothed=True, x=x), "cmp.loss")
    accuracy = curves_figure(scalars, runs, "test_accuracy", title="Held-out accuracy", x=x)
    _chart(c2, accuracy, "cmp.acc")
    models = list(pd.unique(runs.model))
    cells = st.columns(2) + (st.columns(2) if len(models) > 1 else [])
    _chart(cells[0], curves_figure(scalars, runs, "sparsity", title="Sparsity",
                                   y_range=(0, 1.02), x=x), "cmp.sparsity")
    for cell, model in zip(cells[1:], models):
        sub = runs[runs.model == model]
        title = "Per-layer sparsity at the end of each run" + \
            (f" · {sub.model_short.iloc[0]}" if len(models) > 1 else "")
        _chart(cell, layer_profile_figure(layers[layers.run_id.isin(sub.run_id)], sub,
                                          title=title), f"cmp.layers.{model}")
    return [accuracy]


def _config_diff(diff: pd.DataFrame, n_runs: int) -> None:
    st.markdown("#### Config fields that differ")
    if diff.empty or n_runs < 2:
        st.caption("Select at least two runs.")
    elif diff.shape[1] == 0:
        st.caption("The runs share every config field.")
    else:
        # A static table: its cells wrap, so a long value or many runs grow it downwards
        # instead of off the right edge (a scrolling grid hides the columns past it).
        st.table(diff_view(diff))


def _report_button(report: dict) -> None:
    # Built on the click only: plotly.js inlined is megabytes, and the page redraws every
    # couple of seconds while a compared run trains.
    st.download_button(
        "Download report", lambda: report_html(**report),
        file_name="pruneviz-compare-report.html", mime="text/html", key="cmp.report",
        icon=":material/description:",
        help="One HTML file that opens offline: the table across seeds, the verdicts, the "
             "charts, every run's row, config and warnings.")


def seed_quality(runs: pd.DataFrame):
    """The quality the seed statistics are over: perplexity when the finished runs are language
    models (they record final_perplexity), else accuracy."""
    done = runs[runs.status == "completed"]
    if "final_perplexity" in done and pd.to_numeric(done.final_perplexity,
                                                     errors="coerce").notna().any():
        return PERPLEXITY
    return ACCURACY


AGG_COLUMNS = {"n": "seeds (n)", "mean": "final quality (mean)", "sd": "sd",
               "lo": "95 % CI low", "hi": "95 % CI high", "drop_mean": "drop vs dense (mean)",
               "drop_sd": "drop sd", "drop_lo": "drop CI low", "drop_hi": "drop CI high"}


def aggregated_table(runs: pd.DataFrame, configs: dict[str, dict]) -> pd.DataFrame:
    """The finished runs summarised per setting (method x rate x any other varying field)
    across seeds, as shown and downloaded."""
    done = runs[runs.status == "completed"]
    q = seed_quality(runs)
    return aggregate(done, {r: configs[r] for r in done.run_id}, quality=f"final_{q.key}",
                     dense=f"dense_{q.key}", higher_is_better=q.higher_is_better)


def across_seeds(runs: pd.DataFrame, configs: dict[str, dict], suffix: str = ""
                 ) -> tuple[pd.DataFrame, list[str], list]:
    """The aggregated table, its CSV, the quality-vs-sparsity curve of a rate sweep and the
    paired verdicts of the runs of one quality measure; returns the table, the verdict
    sentences and the figures drawn, for the report. `suffix` tells a measure's widgets from
    the other's."""
    table = aggregated_table(runs, configs)
    if table.empty:
        return table, [], []
    st.markdown("#### Across seeds")
    number = st.column_config.NumberColumn
    fmt = {c: number(label, format="%.4f") for c, label in AGG_COLUMNS.items() if c != "n"}
    st.dataframe(table, hide_index=True, key=f"cmp.agg{suffix}", column_config={
        **fmt, "n": number("seeds (n)", help="Finished runs of this setting, one per seed."),
        "lo": number("95 % CI low", format="%.4f",
                     help="The mean's 95 % t-interval: mean ± t(0.975, n−1) · sd / √n; "
                          "empty with one seed."),
        "drop_mean": number("drop vs dense (mean)", format="%.4f",
                            help="Dense baseline minus final (positive: quality lost).")})
    st.download_button("Aggregated table as CSV", table.to_csv(index=False),
                       file_name=f"pruneviz-compare-aggregated{suffix.replace('.', '-')}.csv",
                       mime="text/csv", key=f"cmp.agg_csv{suffix}",
                       icon=":material/download:")
    figures = []
    if table.rate.nunique() >= RATE_CURVE_MIN_RATES:
        x = st.radio("Rate sweep against", list(RATE_X), format_func=RATE_X.get,
                     horizontal=True, key=f"cmp.rate_x{suffix}")
        label = f"final {seed_quality(runs).label}"
        fig = rate_curve_figure(table, x, y_title=label,
                                title=f"{label.capitalize()} vs {RATE_X[x]} (mean, 95 % band)")
        _chart(st, fig, f"cmp.rate_curve{suffix}")
        figures.append(fig)
    verdicts = _paired_view(runs, configs, list(pd.unique(table.method)), suffix)
    return table, verdicts, figures


def _paired_view(runs: pd.DataFrame, configs: dict[str, dict], methods: list[str],
                 suffix: str = "") -> list[str]:
    """The paired verdicts: a paper comparison's (its method against each baseline) when the
    selection holds all its arms, and any two methods picked."""
    if len(methods) < 2:
        return []
    sentences = []
    claims = matching(set(methods))
    for c in claims:
        st.markdown(f"**The paper's claim: {plain(c.title)}**")
        for baseline in c.baselines:
            sentences += _verdicts(runs, configs, c.method, baseline, f"{suffix}.{c.key}")
    if claims and len(methods) == 2:
        return sentences            # the claim's verdict is the only pair
    if claims:
        st.markdown("**Any two methods**")
    a, b = st.columns(2)
    first = a.selectbox("Method A", methods, key=f"cmp.pair_a{suffix}")
    second = b.selectbox("Method B", [m for m in methods if m != first],
                         key=f"cmp.pair_b{suffix}",
                         help="A − B per seed, over runs that share everything but the method: "
                              "the same dense start, data order, budget and seed. 'Inside the "
                              "noise' means the difference's 95 % t-interval contains zero; "
                              "'about N seeds' is the smallest n with t(0.975, n−1) · sd / √n "
                              "below the mean difference, sd being the per-seed differences' "
                              "standard deviation.")
    return sentences + _verdicts(runs, configs, first, second, suffix)


def _verdicts(runs: pd.DataFrame, configs: dict[str, dict], first: str, second: str,
              key: str) -> list[str]:
    """`first` − `second` per setting: the verdict sentence, the preset each arm ran, and the
    per-seed differences."""
    done = runs[runs.status == "completed"]
    q = seed_quality(runs)
    scale, unit = SPOKEN.get(q.key, (1.0, ""))
    results = paired(done, {r: configs[r] for r in done.run_id}, first, second,
                     quality=f"final_{q.key}", higher_is_better=q.higher_is_better,
                     level=LEVEL)
    if not results:
        st.caption(f"No {first} and {second} runs share a seed and every other setting: "
                   f"nothing to pair.")
        return []
    keys = [k for k in results[0].setting
            if k == "rate" or len({str(p.setting.get(k)) for p in results}) > 1]
    sentences = []
    for p in results:
        where = ", ".join(f"{k} {p.setting.get(k)}" for k in keys)
        text = f"{verdict(p, scale, unit)} {arm_presets(done, configs, p)}"
        st.markdown(f"- **{plain(where)}**: {plain(text)}")
        sentences.append(f"{where}: {text}")
    with st.expander(f"Per-seed differences, {first} − {second}"):
        st.dataframe(paired_frame(results, scale), hide_index=True,
                     key=f"cmp.pair_seeds{key}",
                     column_config={"difference": st.column_config.NumberColumn(
                         f"A − B ({unit or q.label})", format="%+.2f")})
    return sentences


def arm_presets(runs: pd.DataFrame, configs: dict[str, dict], p) -> str:
    """Which preset each arm of a paired result ran ("pgp ran its interactive preset; psfp
    ran its defaults"), from the configs of the paired runs at its setting and seeds."""
    said = []
    for method in (p.a, p.b):
        ran = sorted({preset_of(configs[r]) for r in runs.run_id
                      if configs[r].get("method") == method and configs[r].get("seed") in p.seeds
                      and all(str(_setting_value(configs[r], k)) == str(v)
                              for k, v in p.setting.items())})
        said.append(f"{method} ran {' / '.join(ran) or 'an unknown preset'}")
    return "(" + "; ".join(said) + ")."


def _add_seeds(runs: pd.DataFrame, configs: dict[str, dict], queue: Queue | None) -> None:
    if queue is None:
        return
    a, b = st.columns([1, 3], vertical_alignment="bottom")
    count = a.number_input("Seeds to add per setting", min_value=1, max_value=MAX_ADDED_SEEDS,
                           value=2, step=1, key="cmp.more_seeds")
    if not b.button("Add seeds", key="cmp.add_seeds", icon=":material/add:",
                    help="Queues the next seeds of every setting in the selection (same "
                         "method, rate and everything else) and adds them to it."):
        return
    try:
        new = more_seeds([SessionConfig.from_dict(configs[r]) for r in runs.run_id],
                         int(count))
        _, ids = queue.submit_grid(new)
    except (ConfigError, ValueError) as e:
        st.error(f"Seeds to add per setting: {plain(e)}", icon=":material/error:")
        return
    select_runs(list(runs.run_id) + ids)
    st.rerun(scope="app")


def _setting_value(config: dict, key: str):
    """A paired setting's field in a config: `params.NAME` is a method parameter."""
    if key.startswith("params."):
        return (config.get("params") or {}).get(key.removeprefix("params."))
    return config.get(key)


def _charted(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell escaped for plotly (chart_text): run names, folder: paths
    and model specs reach legends, hover text, titles and tick labels."""
    return frame.map(lambda v: chart_text(v) if isinstance(v, str) else v)


def diff_view(diff: pd.DataFrame) -> pd.DataFrame:
    """The config diff as shown: its longer side down the page (more differing fields than
    runs, as with several methods' parameters, gives a field per row and a run per column),
    every value as text, a missing one as a dash. st.table renders its cells, index and header
    as Markdown, and run names and folder: paths are user text: each is escaped (plain)."""
    if diff.shape[1] > diff.shape[0]:
        diff = diff.T
    shown = diff.map(lambda v: "—" if v is None or v != v else plain(v))
    shown.index = [plain(i) for i in shown.index]
    shown.columns = [plain(c) for c in shown.columns]
    return shown


def _trade_offs(runs: pd.DataFrame, sweep: pd.DataFrame, mixed: bool, suffix: str = ""
                ) -> list:
    """Pareto charts of a chosen metric against sparsity and FLOPs, and the parallel
    coordinates of the finished runs' parameters and outcomes."""
    done = runs[runs.status == "completed"]
    # Perplexity is offered once a language-model run is in the selection (they record
    # next-token accuracy too); fronts are per model/dataset pair when the selection mixes them.
    shown = [m for m in METRICS if m not in PERPLEXITY_COLUMNS
             or pd.to_numeric(done.get(m), errors="coerce").notna().any()]
    if suffix == f".{PERPLEXITY.key}":      # a mixed selection's language models: theirs first
        shown = sorted(shown, key=lambda m: m not in PERPLEXITY_COLUMNS)
    metric = st.radio("Trade-off metric", shown, format_func=METRICS.get,
                      horizontal=True, key=f"cmp.metric{suffix}")
    up = COMPARE_METRICS[metric][1]
    left, right = st.columns(2)
    front_by = "pair" if mixed else None
    pareto = pareto_figure(done, "sparsity", maximize_x=True, y=metric, maximize_y=up,
                           y_title=METRICS[metric], front_by=front_by,
                           title=f"{METRICS[metric].capitalize()} vs sparsity")
    _chart(left, pareto, f"cmp.pareto.sparsity{suffix}")
    _chart(right, pareto_figure(done, "flops_effective", maximize_x=False, y=metric,
                                maximize_y=up, y_title=METRICS[metric], front_by=front_by,
                                title=f"{METRICS[metric].capitalize()} vs FLOPs",
                                x_title="effective FLOPs per image"),
           f"cmp.pareto.flops{suffix}")
    if len(done) >= 2:
        table = done.set_index("run_id")
        table = table.join(sweep[[c for c in sweep.columns if c not in table.columns]])
        inputs = SWEEP_INPUTS + [c for c in sweep.columns if c not in SWEEP_INPUTS]
        _chart(st, parallel_figure(table, inputs, SWEEP_OUTPUTS), f"cmp.parallel{suffix}")
    return [pareto]


def _any_curve(store: Store, runs: pd.DataFrame, x: str) -> None:
    """Any other recorded scalar overlaid across the runs, e.g. SLR's and ADMM's accuracy if
    hard-pruned now, or FGGP's and GMP's achieved density."""
    counts = store.scalar_counts(list(runs.run_id))
    counts = counts[~counts.key.isin(SHOWN_CURVES)]
    if counts.empty:
        return
    keys = sorted(counts.key.unique())
    # Open on a curve, not a dot: a key recorded once per run (the dense accuracy) is one point.
    curves = counts[counts.n >= 2].groupby("key").run_id.nunique()
    preferred = [k for k in PREFERRED_CURVES if k in curves.index]
    default = preferred[0] if preferred else \
        (curves.sort_values(ascending=False, kind="stable").index[0] if len(curves) else keys[0])
    # The default follows the selection until the user picks a curve (a default kept from an
    # earlier selection showed target_sparsity where the new runs record density).
    chosen = st.session_state.get("cmp.curve")
    if chosen not in keys or chosen == st.session_state.get("cmp.curve_default"):
        st.session_state["cmp.curve"] = default
    st.session_state["cmp.curve_default"] = default
    key = st.selectbox("Overlay another recorded curve", keys, key="cmp.curve",
                       help="Every scalar the selected runs recorded; runs without it are "
                            "left out of the chart.")
    scalars = store.scalars(list(runs.run_id), [key], max_points=CURVE_POINTS)
    _chart(st, curves_figure(scalars, runs, key, title=f"Overlay: {key.replace('_', ' ')}",
                             x=x), "cmp.any")


def _parse_list(text: str, kind: type, name: str) -> list:
    values = parse_numbers(text, name, kind)
    if not values:
        raise ConfigError(f"give at least one value for {name}.")
    return values


def grid_form(queue: Queue) -> None:
    """One form: several methods x rates (x seeds) on the same dense start, data and budget."""
    names = sorted(load_all())
    with st.form("cmp.grid"):
        proposal = DEFAULT_COMPARISON
        methods = st.multiselect("methods", names, default=[m for m in proposal.methods
                                                            if m in names],
                                 key="cmp.methods")
        a, b, *cols = st.columns(2 + len(GRID_FIELDS))
        rates = a.text_input("rates", ", ".join(f"{r:g}" for r in proposal.rates),
                             key="cmp.rates",
                             help="Fractions pruned, comma-separated; each in [0, 1), up to "
                                  "0.999.")
        seeds = b.text_input("seeds", ", ".join(map(str, proposal.seeds)), key="cmp.seeds",
                             help="Comma-separated; with several seeds the curves show the "
                                  "mean and a min/max band.")
        values, errors = {}, []
        for col, name in zip(cols, GRID_FIELDS):
            with col:
                v, e = dataclass_widgets(SessionConfig, "cmp", [name], proposal.base)
                values.update(v)
                errors += e
        with st.expander("Training and data"):
            rest = [n for n in SessionConfig.__dataclass_fields__
                    if n not in {*GRID_FIELDS, "method", "rate", "seed", "params", "name"}]
            more, more_errors = dataclass_widgets(SessionConfig, "cmp", rest, proposal.base)
        submitted = st.form_submit_button("Launch comparison", type="primary")
    if not submitted:
        return
    found = errors + more_errors        # the form's own messages: Markdown, user text escaped
    try:
        if not methods:
            raise ConfigError("pick at least one method.")
        if not found:
            configs = grid(SessionConfig(**values, **more), methods,
                           _parse_list(rates, float, "rates"), _parse_list(seeds, int, "seeds"))
            found = problems(configs[0])        # data and model are shared by the whole grid
        if not found:
            sweep_id, ids = queue.submit_grid(configs)
    except ConfigError as e:
        found = [plain(e)]
    if found:
        for message in found:
            st.error(message, icon=":material/error:")
        return
    st.session_state[_LAUNCHED] = sweep_id
    select_runs(ids)
    st.rerun()


def paper_form(queue: Queue) -> None:
    """The four papers' comparisons, one click each: the paper method and its baselines on
    cifar10_small from the same dense starts and seeds, each arm on its interactive preset,
    selected when queued so the page ends in their paired verdicts."""
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    key = a.selectbox("Paper comparison", list(PAPER_COMPARISONS), key="cmp.paper",
                      format_func=lambda k: PAPER_COMPARISONS[k].title)
    claim = PAPER_COMPARISONS[key]
    configs = claim.configs()
    first = configs[0]
    presets = "; ".join(f"{c.method}: {preset_of(c.to_dict())}"
                        for c in configs[:len(claim.arms)])
    st.caption(f"{len(configs)} runs: {', '.join(claim.arms)} at rate {claim.rate:g}, seeds "
               f"{', '.join(str(s) for s in PAPER_SEEDS)}, {first.epochs} epochs of "
               f"{first.model} on {first.dataset} from the same dense start ({presets}). "
               f"{claim.note} The page ends in the paired verdict of {claim.method} against "
               f"each baseline.")
    if not b.button("Queue this comparison", key="cmp.paper_go", icon=":material/science:"):
        return
    found = problems(first)
    if not found:
        try:
            sweep_id, ids = queue.submit_grid(configs)
        except ConfigError as e:
            found = [plain(e)]
    if found:
        for message in found:
            st.error(f"Paper comparison: {message}", icon=":material/error:")
        return
    st.session_state[_LAUNCHED] = sweep_id
    select_runs(ids)
    st.rerun()


def sweep_progress(store: Store) -> None:
    """Progress of the sweep launched from this page; polls until it is done."""
    sweep_id = st.session_state.get(_LAUNCHED)
    if not sweep_id:
        return
    st.fragment(_sweep_body, run_every=POLL_SECONDS)(store, sweep_id)


def _sweep_body(store: Store, sweep_id: str) -> None:
    runs = list_runs(store)
    runs = runs[runs.sweep_id == sweep_id]
    finished = int((~runs.status.isin(ACTIVE)).sum())
    running = runs[runs.status == "running"]
    text = f"Sweep `{sweep_id}`: {finished}/{len(runs)} runs finished"
    if len(running):
        text += f" · training {plain(running.label.iloc[0])}"
    st.progress(finished / max(len(runs), 1), text=text)
    if finished == len(runs):
        st.session_state.pop(_LAUNCHED, None)
        st.rerun()


def sweep_picker(store: Store) -> None:
    """Pick a stored sweep (from this page or `python -m pruneviz sweep`) to compare."""
    runs = list_runs(store)
    sweeps = [s for s in pd.unique(runs.sweep_id.dropna())]
    if not sweeps:
        return
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    counts = runs.groupby("sweep_id").size()
    sweep = a.selectbox("Stored sweeps", sweeps, key="cmp.sweep",
                        format_func=lambda s: f"{s} ({counts[s]} runs)")
    if b.button("Compare this sweep", key="cmp.pick_sweep"):
        select_runs(list(runs[runs.sweep_id == sweep].run_id))
        st.rerun()
