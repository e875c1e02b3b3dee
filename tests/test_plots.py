"""Dashboard figures and the pure helpers behind them (no streamlit): colours, Pareto fronts,
seed bands, config diffs, heatmaps, progress text, run filters and the run-card zip."""

import io
import random
import zipfile

import pandas as pd
import pytest

from pruneviz import plots, plots_compare
from pruneviz.config import SessionConfig
from pruneviz.records import LayerRow, Scalar
from pruneviz.session import run_session
from pruneviz.ui.live import progress
from pruneviz.ui.runs import card_zip, filter_runs
from pruneviz.ui.state import SELECTION_LIMIT, default_selection, grown_selection

SEED_METHODS = ["random", "l1", "global_l1", "l2_filter", "gmp", "pgmpf", "fggp", "pgp", "slr"]


def test_every_known_method_has_its_own_colour():
    colours = plots.method_colors(SEED_METHODS)
    assert len(set(colours.values())) == len(SEED_METHODS)


def test_a_new_method_gets_the_same_colour_every_time():
    assert plots.method_color("brand_new") == plots.method_color("brand_new")
    assert plots.method_color("brand_new").startswith("#")


def test_rates_get_distinct_dashes_lowest_solid():
    dashes = plots.rate_dashes([0.9, 0.5, 0.8, 0.5])
    assert dashes[0.5] == "solid" and len(set(dashes.values())) == 3


def _dominated(p, points, maximize_x):
    better_x = (lambda a, b: a >= b) if maximize_x else (lambda a, b: a <= b)
    return any(better_x(q[0], p[0]) and q[1] >= p[1] and q != p for q in points)


@pytest.mark.parametrize("maximize_x", [True, False])
@pytest.mark.parametrize("maximize_y", [True, False])
def test_pareto_front_is_exactly_the_non_dominated_points(maximize_x, maximize_y):
    rng = random.Random(0)
    points = list({(round(rng.random(), 2), round(rng.random(), 2)) for _ in range(60)})
    df = pd.DataFrame(points, columns=["x", "y"])
    front = plots_compare.pareto_front(df, "x", "y", maximize_x=maximize_x, maximize_y=maximize_y)
    sign = 1 if maximize_y else -1
    flipped = [(x, sign * y) for x, y in points]
    expected = {(x, sign * y) for x, y in flipped if not _dominated((x, y), flipped, maximize_x)}
    assert set(zip(front.x, front.y)) == expected
    assert front.x.is_monotonic_increasing


def _summaries():
    return pd.DataFrame({"run_id": list("abcd"), "label": ["a", "b", "c", "d"],
                         "method": ["l1", "pgmpf", "pgp", "l1"], "rate": 0.5,
                         "final_accuracy": [0.9, 0.9, 0.8, 0.7],
                         "sparsity": [0.5, 0.5, 0.8, 0.9], "pair": "m/d"})


@pytest.mark.parametrize("maximize_x", [True, False])
def test_pareto_figure_draws_the_front_as_a_step_line_through_its_points(maximize_x):
    runs = _summaries()
    fig = plots_compare.pareto_figure(runs, "sparsity", maximize_x=maximize_x, title="t")
    front = next(t for t in fig.data if t.name == "Pareto front")
    expected = plots_compare.pareto_front(runs, "sparsity", "final_accuracy", maximize_x=maximize_x)
    ringed = [x for x, size in zip(front.x, front.marker.size) if size > 0]
    assert ringed == list(expected.sparsity) and len(ringed) >= 1
    assert "lines" in front.mode and front.line.width > 0
    assert front.line.shape == ("vh" if maximize_x else "hv")
    # out to the other runs' extent: the line spans the whole x range, so one run is a line too
    assert (min(front.x), max(front.x)) == (runs.sparsity.min(), runs.sparsity.max())
    assert min(front.y) == runs.final_accuracy.min()


def test_pareto_figure_keeps_runs_at_the_same_point_visible():
    fig = plots_compare.pareto_figure(_summaries(), "sparsity", maximize_x=True, title="t")
    at = {t.name: (list(t.marker.size), list(t.text)) for t in fig.data
          if t.mode == "markers"}
    l1_sizes, l1_text = at["l1"]
    pgmpf_sizes, pgmpf_text = at["pgmpf"]
    assert l1_sizes[0] > pgmpf_sizes[0]          # drawn first, larger: a ring around pgmpf's
    assert "a" in l1_text[0] and "b" in l1_text[0] and l1_text[0] == pgmpf_text[0]
    assert l1_sizes[1] == at["pgp"][0][0]        # alone at its point: the plain size


def test_pareto_figure_gives_each_model_and_dataset_its_own_front():
    runs = pd.concat([_summaries(), _summaries().assign(run_id=list("efgh"), pair="m2/d2",
                                                        final_accuracy=0.2)])
    fig = plots_compare.pareto_figure(runs, "sparsity", maximize_x=True, title="t", front_by="pair")
    fronts = [t.name for t in fig.data if t.name.startswith("Pareto front")]
    assert fronts == ["Pareto front · m/d", "Pareto front · m2/d2"]


def test_parallel_coordinates_show_the_varying_inputs_then_every_output():
    runs = _summaries().assign(seed=0, epochs=[1, 2, 1, 2], accuracy_drop=0.01,
                               flops_effective=[1e6, 2e6, 3e6, 4e6], **{"params.end": "x"},
                               **{"params.d": [0.1, None, None, 0.2]},
                               **{"params.every": ["a", "a", "b", "b"]})
    fig = plots_compare.parallel_figure(runs, ["method", "rate", "seed", "epochs", "params.end",
                                               "params.d", "params.every"],
                                        ["final_accuracy", "sparsity"])
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["method", "epochs", "params.every", "final accuracy",
                                       "sparsity"]
    assert list(dims[2].ticktext) == ["a", "b"]
    assert list(dims[0].ticktext) == ["l1", "pgmpf", "pgp"]
    assert list(dims[0].values) == [0, 1, 2, 0]
    assert list(dims[3].values) == [0.9, 0.9, 0.8, 0.7]


# Colour-vision-deficiency simulation (Machado, Oliveira & Fernandes 2009, severity 1) in
# linear RGB, and CIE76 colour difference in CIELAB.
CVD = {"normal": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
       "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                        [-0.011820, 0.042940, 0.968881]],
       "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                      [-0.003882, -0.048116, 1.051998]],
       "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                      [0.004733, 0.691367, 0.303900]]}


def _lab(color: str, vision: str):
    import numpy as np

    srgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    lin = np.clip(np.array(CVD[vision]) @ lin, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.mark.parametrize("vision", list(CVD))
def test_the_main_methods_colours_stay_apart_under_colour_blindness(vision):
    import itertools

    import numpy as np

    main = ["l1", "gmp", "pgmpf", "pgp", "slr", "fggp"]
    gaps = {(a, b): float(np.linalg.norm(_lab(plots.method_color(a), vision)
                                         - _lab(plots.method_color(b), vision)))
            for a, b in itertools.combinations(main, 2)}
    assert min(gaps.values()) > 15, min(gaps.items(), key=lambda kv: kv[1])


def test_every_method_colour_is_clearly_distinct_in_normal_vision():
    import itertools

    import numpy as np

    colours = plots.METHOD_COLORS
    gap = min(float(np.linalg.norm(_lab(colours[a], "normal") - _lab(colours[b], "normal")))
              for a, b in itertools.combinations(colours, 2))
    assert gap > 12


def test_config_diff_keeps_only_fields_that_differ_and_flattens_params():
    a = SessionConfig(method="gmp", rate=0.8, params={"end": 0.5}).to_dict()
    b = SessionConfig(method="gmp", rate=0.9, params={"end": 0.7}).to_dict()
    diff = plots_compare.config_diff({"a": a, "b": b})
    assert list(diff.columns) == ["rate", "params.end"]
    assert diff.loc["b", "params.end"] == 0.7


def test_seed_groups_join_runs_that_differ_only_by_seed():
    base = SessionConfig(method="l1", rate=0.5)
    groups = plots_compare.seed_groups({"a": base.to_dict(), "b": base.replace(seed=1).to_dict(),
                                "c": base.replace(rate=0.9).to_dict()})
    assert groups["a"] == groups["b"] != groups["c"]


def test_seed_groups_never_join_two_runs_of_the_same_seed():
    base = SessionConfig(method="l1", rate=0.5)
    groups = plots_compare.seed_groups({"a": base.to_dict(), "b": base.to_dict(),
                                "c": base.replace(seed=1).to_dict(),
                                "d": base.replace(seed=1, name="again").to_dict()})
    assert groups["a"] == groups["c"]
    assert len({groups["a"], groups["b"], groups["d"]}) == 3


def test_seed_groups_keep_models_and_datasets_apart():
    base = SessionConfig(method="l1", rate=0.5)
    groups = plots_compare.seed_groups({"a": base.to_dict(),
                                "b": base.replace(seed=1, model="lenet5").to_dict(),
                                "c": base.replace(seed=2, dataset="folder:/x").to_dict()})
    assert len(set(groups.values())) == 3


def _curves():
    rows = []
    for run_id, offset in (("a", 0.0), ("b", 0.2), ("c", 0.5)):
        rows += [{"run_id": run_id, "step": s, "epoch": 0, "key": "loss", "value": s + offset}
                 for s in range(5)]
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "method": ["l1", "l1", "gmp"],
                         "rate": [0.5, 0.5, 0.8], "seed": [0, 1, 0], "label": ["a", "b", "c"],
                         "group": ["g1", "g1", "g2"], "total_steps": [5, 5, 5],
                         "epochs": [1, 1, 1]})
    return pd.DataFrame(rows), runs


def _lengths(steps=(30, 220, 440), epochs=(1, 2, 4)):
    """Runs of different lengths: run i records its loss at every one of steps[i] steps."""
    rows = [{"run_id": f"r{n}", "step": s, "epoch": 0, "key": "loss", "value": 1.0}
            for n in steps for s in range(n)]
    runs = pd.DataFrame({"run_id": [f"r{n}" for n in steps], "method": "l1", "rate": 0.5,
                         "label": [f"r{n}" for n in steps], "group": [f"r{n}" for n in steps],
                         "total_steps": list(steps), "epochs": list(epochs)})
    return pd.DataFrame(rows), runs


def test_fraction_of_training_overlays_runs_of_different_lengths_from_0_to_1():
    scalars, runs = _lengths()
    fig = plots_compare.curves_figure(scalars, runs, "loss", title="t", x="fraction")
    for trace in fig.data:
        n = int(trace.name[1:])
        assert trace.x[0] == pytest.approx(1 / n) and trace.x[-1] == pytest.approx(1.0)
    assert fig.layout.xaxis.title.text == "fraction of training"


def test_epoch_axis_ends_each_run_at_its_epoch_count():
    scalars, runs = _lengths()
    fig = plots_compare.curves_figure(scalars, runs, "loss", title="t", x="epoch")
    assert {t.name: t.x[-1] for t in fig.data} == {"r30": 1.0, "r220": 2.0, "r440": 4.0}
    steps = plots_compare.curves_figure(scalars, runs, "loss", title="t")
    assert {t.name: t.x[-1] for t in steps.data} == {"r30": 29, "r220": 219, "r440": 439}


def test_an_unknown_x_axis_is_a_clear_error():
    scalars, runs = _lengths()
    with pytest.raises(ValueError, match="x axis is one of step, epoch, fraction"):
        plots_compare.training_x(scalars, runs, "minutes")


def test_seed_group_draws_mean_line_and_min_max_band():
    scalars, runs = _curves()
    fig = plots_compare.curves_figure(scalars, runs, "loss", title="loss")
    band = [t for t in fig.data if t.fill == "tonexty"]
    assert len(band) == 1
    mean = next(t for t in fig.data if t.name and "mean of 2 seeds" in t.name)
    assert list(mean.y) == pytest.approx([s + 0.1 for s in range(5)])
    assert mean.line.color == plots.method_color("l1")
    single = next(t for t in fig.data if t.name == "c")
    assert single.line.dash == plots.rate_dashes([0.5, 0.8])[0.8]


def test_layer_heatmap_keeps_the_recorded_layer_order():
    layers = pd.DataFrame([{"run_id": "a", "step": s, "epoch": 0, "layer": name,
                            "key": "sparsity", "value": s / 10}
                           for s in (0, 5, 10) for name in ("conv2", "conv1", "fc")])
    fig = plots.layer_heatmap(layers)
    assert list(fig.data[0].y) == ["conv2", "conv1", "fc"]
    assert fig.data[0].z.shape == (3, 3)


def test_training_and_sparsity_figures_draw_the_recorded_curves():
    scalars = pd.DataFrame([{"run_id": "a", "step": s, "epoch": 0, "key": k, "value": v}
                            for s in range(10) for k, v in (("loss", 1 / (s + 1)),
                                                            ("sparsity", s / 20),
                                                            ("target_sparsity", s / 18))])
    names = {t.name: t for t in plots.training_figure(scalars).data}
    assert list(names["train loss"].y) == [1 / (s + 1) for s in range(10)]
    sparsity = {t.name: t for t in plots.sparsity_figure(scalars).data}
    assert list(sparsity["achieved (exact zeros)"].y) == [s / 20 for s in range(10)]
    assert list(sparsity["target"].y) == [s / 18 for s in range(10)]


def test_progress_reports_eta_from_the_steps_done_so_far():
    run = {"status": "running", "step": 99, "total_steps": 400, "started": 1000.0,
           "heartbeat": 1010.0}
    frac, text = progress(run, now=1010.0)
    assert frac == pytest.approx(0.25)
    assert "Step 100/400" in text and "ETA 30 s" in text


def test_progress_of_a_queued_run_shows_the_dense_baseline_it_waits_for():
    dense = {"status": "running", "step": 50, "total_steps": 100, "started": 0.0}
    frac, text = progress({"status": "queued", "total_steps": 0}, dense=dense, now=10.0)
    assert frac == 0.5 and "dense baseline" in text and "ETA 10 s" in text
    assert "2 run(s) ahead" in progress({"status": "queued"}, ahead=2)[1]


def _listing():
    return pd.DataFrame({"run_id": ["r1", "r2", "r3"], "label": ["gmp 0.8", "l1 0.5", "mine"],
                         "method": ["gmp", "l1", "l1"], "status": ["completed", "failed",
                                                                   "completed"],
                         "sweep_id": ["sweep-1", None, "sweep-1"],
                         "notes": ["", "lr too high?", ""],
                         "tags": [["baseline"], ["paper", "lr"], []],
                         "model": "tiny_cnn", "dataset": "digits"})


def test_filter_runs_by_text_method_and_status():
    runs = _listing()
    assert filter_runs(runs, "SWEEP-1").run_id.tolist() == ["r1", "r3"]
    assert filter_runs(runs, methods=["l1"], statuses=["completed"]).run_id.tolist() == ["r3"]
    assert len(filter_runs(runs)) == 3


def test_filter_runs_searches_notes_and_tags_and_filters_by_any_tag():
    runs = _listing()
    assert filter_runs(runs, "TOO HIGH").run_id.tolist() == ["r2"]
    assert filter_runs(runs, "basel").run_id.tolist() == ["r1"]
    assert filter_runs(runs, tags=["paper", "baseline"]).run_id.tolist() == ["r1", "r2"]
    assert filter_runs(runs, tags=["lr"]).run_id.tolist() == ["r2"]


def test_default_selection_is_the_newest_runs_sweep():
    assert default_selection(_listing()) == ["r1", "r3"]
    assert default_selection(_listing().iloc[2:], limit=1) == ["r3"]


@pytest.mark.parametrize("status", ["failed", "interrupted", "diverged"])
def test_default_selection_leaves_out_runs_that_did_not_finish(status):
    runs = pd.DataFrame({"run_id": ["new", "old1", "old2"], "status": [status, "completed",
                                                                       "running"],
                         "sweep_id": [None, None, None], "model": "tiny_cnn",
                         "dataset": "digits"})
    assert default_selection(runs) == ["old1", "old2"]
    assert default_selection(runs.iloc[:1]) == []


def test_default_selection_without_a_sweep_keeps_to_the_newest_runs_model_and_dataset():
    runs = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "status": "completed",
                         "sweep_id": None, "model": ["tiny_cnn", "resnet20", "tiny_cnn",
                                                     "tiny_cnn"],
                         "dataset": ["digits", "cifar10_small", "cifar10_small", "digits"]})
    assert default_selection(runs) == ["a", "d"]


def test_runs_started_elsewhere_join_the_selection_only_with_their_own_data_and_capped():
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(20)],
                         "model": "tiny_cnn", "dataset": ["digits"] * 19 + ["cifar10_small"]})
    grown = []
    for i in range(19):
        grown = grown_selection(grown, runs, [f"r{i}"])
    assert grown == [f"r{i}" for i in range(19 - SELECTION_LIMIT, 19)]
    assert grown_selection(grown, runs, ["r19"]) == ["r19"]


def test_run_card_zip_holds_every_export_of_a_real_run(store):
    run_id = run_session(SessionConfig(method="l2_filter", rate=0.5, epochs=1, dense_epochs=1,
                                       max_steps_per_epoch=3, device="cpu"), store)["run_id"]
    z = zipfile.ZipFile(io.BytesIO(card_zip(store, run_id)))
    names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {"config.json", "summary.json", "metrics.json", "scalars.csv", "layers.csv",
            "weights.pt", "masks.pt", "masked_state_dict.pt", "model_compact.pt2",
            "model_compact.onnx", "LOAD.txt"} <= names
    assert z.read(f"{run_id}/weights.pt") == (store.run_dir(run_id) / "weights.pt").read_bytes()


def test_run_card_zip_of_a_run_with_damaged_weights_still_holds_the_card(store):
    run_id = store.create_run(SessionConfig(method="l1"))
    store.write(run_id, [Scalar(0, 0, "loss", 1.0), LayerRow(0, 0, "conv2", "sparsity", 0.5)])
    (store.run_dir(run_id) / "weights.pt").write_bytes(b"not a tensor file")
    store.finish_run(run_id, "completed", summary={"final_accuracy": 0.9})
    z = zipfile.ZipFile(io.BytesIO(card_zip(store, run_id)))
    names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {"config.json", "summary.json", "scalars.csv", "layers.csv"} <= names
    assert "weights.pt" in z.read(f"{run_id}/EXPORT_ERROR.txt").decode()


@pytest.mark.parametrize("columns", range(1, 10))
def test_method_tables_of_any_width_draw_one_valid_panel_per_column(columns):
    import plotly.graph_objects as go

    rows = pd.DataFrame({"run_id": "a", "step": [0, 5, 9], "epoch": 0,
                         **{f"c{i}": [0.1 * i, 0.2, 1e4] for i in range(columns)}})
    fig = plots.table_figure(rows, "t")
    assert len(fig.data) == min(columns, 8)
    go.Figure(fig.to_dict())


def test_every_figure_passes_plotlys_validation():
    """Figures are built without validation for speed; plotly's schema must still accept them."""
    import plotly.graph_objects as go

    scalars, runs = _curves()
    live = pd.DataFrame([{"run_id": "a", "step": s, "epoch": 0, "key": k, "value": 0.5}
                         for s in range(4) for k in ("loss", "train_accuracy", "test_accuracy",
                                                     "test_loss", "sparsity", "target_sparsity",
                                                     "dense_accuracy", "pruned_accuracy")])
    layers = pd.DataFrame([{"run_id": r, "step": s, "epoch": 0, "layer": n, "key": "sparsity",
                            "value": 0.5} for r in "abc" for s in (0, 4) for n in ("c1", "c2")])
    summary = runs.assign(final_accuracy=[0.9, 0.8, 0.95], sparsity=[0.5, 0.5, 0.8],
                          flops_effective=[100, 120, 60])
    preview = pd.DataFrame({"epoch": [0, 1, 2], "series": "target sparsity",
                            "value": [0, 0.5, 0.8]})
    rows = pd.DataFrame({"run_id": "a", "step": [0, 1], "epoch": 0, "t": [0, 1],
                         "density": [1.0, 0.5]})
    figures = [plots.schedule_figure(preview), plots.training_figure(live),
               plots.sparsity_figure(live), plots.layer_heatmap(layers),
               plots.layer_bars(layers[layers.step == 0]), plots.table_figure(rows, "t"),
               plots_compare.curves_figure(scalars, runs, "loss", title="loss", smoothed=True,
                                           y_range=(0, 5)),
               plots_compare.pareto_figure(summary, "sparsity", maximize_x=True, title="p"),
               plots_compare.pareto_figure(summary, "flops_effective", maximize_x=False,
                                           title="f"),
               plots_compare.layer_profile_figure(layers, runs),
               plots.training_figure(live.iloc[:0]),
               plots_compare.pareto_figure(summary.assign(pair=["p", "q", "q"]), "sparsity",
                                           maximize_x=True, maximize_y=False, title="p",
                                           front_by="pair"),
               plots_compare.curves_figure(scalars, runs, "loss", title="f", x="fraction"),
               plots_compare.parallel_figure(summary.assign(epochs=[1, 2, 2]),
                                             ["method", "rate", "epochs"],
                                             ["final_accuracy", "flops_effective"]),
               plots.layer_heatmap(layers.iloc[:0])]
    for fig in figures:
        go.Figure(fig.to_dict())        # raises on any property plotly does not know


def test_layer_profile_averages_seeds_and_takes_each_runs_last_step():
    _, runs = _curves()
    layers = pd.DataFrame([{"run_id": r, "step": s, "epoch": 0, "layer": "conv2",
                            "key": "sparsity", "value": v * s / 10}
                           for r, v in (("a", 0.4), ("b", 0.6), ("c", 0.9)) for s in (0, 10)])
    fig = plots_compare.layer_profile_figure(layers, runs)
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars == {"l1 0.5 (mean of 2 seeds)": [pytest.approx(0.5)], "c": [pytest.approx(0.9)]}


def test_the_rate_curve_passes_plotlys_validation_and_bands_only_rates_with_seeds():
    import plotly.graph_objects as go

    table = pd.DataFrame({"method": ["l1"] * 3 + ["gmp"] * 3, "rate": [0.3, 0.5, 0.7] * 2,
                          "n": [3, 3, 3, 1, 1, 1], "mean": [0.9, 0.8, 0.6, 0.9, 0.85, 0.7],
                          "lo": [0.88, 0.75, 0.5] + [float("nan")] * 3,
                          "hi": [0.92, 0.85, 0.7] + [float("nan")] * 3,
                          "sparsity": [0.3, 0.5, 0.7] * 2, "flops_effective": [7, 5, 3] * 2})
    fig = plots_compare.rate_curve_figure(table, "flops_effective", y_title="final accuracy")
    go.Figure(fig.to_dict())
    assert [t.name for t in fig.data if t.name] == ["l1", "gmp"]
    assert sum(t.fill == "tonexty" for t in fig.data) == 1      # gmp has one seed: no band
