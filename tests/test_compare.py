"""The Compare and Runs pages under streamlit's AppTest, on stores of recorded runs: seed
groups, the overlay's default curve, x axes, the table and its CSV, chart downloads, shareable
links, notes and tags."""

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pruneviz.config import SessionConfig
from pruneviz.records import Scalar
from pruneviz.store import Store
from tests.helpers import decode_plotly, recorded_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    return Store(root)


def _open(page: str, runs: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if runs is not None:
        at.query_params["runs"] = runs
    at.switch_page(page).run()
    assert not at.exception
    return at


def _charts(at) -> dict[str, dict]:
    """The page's plotly figures by title, with the chart's config."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = decode_plotly(json.loads(chart.proto.spec))
        title = spec["layout"].get("title", {}).get("text", "")
        out[title] = {**spec, "config": json.loads(chart.proto.config or "{}")}
    return out


def _table(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "accuracy_drop" in d.value.columns)


def _card(at):
    """The Runs page's card picker (its key carries a digest of its labels)."""
    return next(s for s in at.selectbox if (s.key or "").startswith("runs.card."))


def _config(**kw) -> SessionConfig:
    return SessionConfig(**{"method": "l1", "rate": 0.5, "epochs": 1, **kw})


def test_two_runs_of_the_same_seed_are_never_averaged(store):
    recorded_run(store, _config(seed=0))
    recorded_run(store, _config(seed=0), accuracy=0.6)
    recorded_run(store, _config(seed=1), accuracy=0.7)
    at = _open("pages/compare.py")
    names = [t.get("name") for t in _charts(at)["Held-out accuracy"]["data"] if t.get("name")]
    assert sum("mean of 2 seeds" in n for n in names) == 1
    assert not any("mean of 3" in n for n in names) and len(names) == 2


def test_failed_runs_are_not_selected_by_default(store):
    done = recorded_run(store, _config())
    failed = recorded_run(store, _config(rate=0.9), status="failed")
    at = _open("pages/compare.py")
    assert at.multiselect(key="selected_runs").value == [done]
    assert failed not in _table(at).run_id.tolist()


def test_runs_of_two_models_get_a_notice_and_a_layer_chart_each(store):
    ids = [recorded_run(store, _config()), recorded_run(store, _config(model="lenet5"))]
    at = _open("pages/compare.py", runs=",".join(ids))
    assert any("2 different models or datasets" in w.value for w in at.warning)
    layer_charts = [t for t in _charts(at) if t.startswith("Per-layer sparsity")]
    assert sorted(layer_charts) == ["Per-layer sparsity at the end of each run · lenet5",
                                    "Per-layer sparsity at the end of each run · tiny_cnn"]
    assert all("/" in label for label in _table(at).label)      # labels name the pair


def test_the_overlay_opens_on_a_curve_with_data(store):
    recorded_run(store, _config())
    recorded_run(store, _config(seed=1))
    at = _open("pages/compare.py")
    # dense_accuracy comes first alphabetically but is one point per run
    assert at.selectbox(key="cmp.curve").value == "lr"
    traces = _charts(at)["Overlay: lr"]["data"]
    assert sum(len(t["y"]) for t in traces if t.get("name")) >= 2


def test_x_axis_in_epochs_and_fraction_overlays_runs_of_different_lengths(store):
    recorded_run(store, _config(epochs=1), steps=30)
    recorded_run(store, _config(epochs=4, method="gmp"), steps=440)
    at = _open("pages/compare.py")
    ends = {t["name"]: t["x"] for t in _charts(at)["Training loss (smoothed)"]["data"]}
    assert sorted(x[-1] for x in ends.values()) == [29, 439]
    at.radio(key="cmp.x").set_value("fraction").run()
    chart = _charts(at)["Training loss (smoothed)"]
    assert [x[-1] for x in (t["x"] for t in chart["data"])] == [1.0, 1.0]
    assert chart["layout"]["xaxis"]["title"]["text"] == "fraction of training"
    at.radio(key="cmp.x").set_value("epoch").run()
    ends = sorted(t["x"][-1] for t in _charts(at)["Training loss (smoothed)"]["data"])
    assert ends == [1.0, 4.0]


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """Bytes of every file a page hands the browser (download buttons), by media file id:
    AppTest's media storage is dropped when its run ends."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        files[file_id] = self.get_file(file_id).content
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return files


def test_the_table_has_the_accuracy_drop_and_downloads_as_csv(store, downloads):
    a = recorded_run(store, _config(), accuracy=0.8, dense_accuracy=0.9)
    b = recorded_run(store, _config(rate=0.9), accuracy=0.5, dense_accuracy=0.9)
    store.annotate(a, notes="the reference", tags=["baseline", "paper"])
    at = _open("pages/compare.py")
    table = _table(at).set_index("run_id")
    assert table.accuracy_drop.to_dict() == {a: pytest.approx(0.1), b: pytest.approx(0.4)}
    button = next(b for b in at.get("download_button") if b.proto.label == "Table as CSV")
    file_id = button.proto.url.rsplit("/", 1)[-1].split(".")[0]
    csv = pd.read_csv(io.BytesIO(downloads[file_id])).set_index("run_id")
    assert csv.loc[a, "tags"] == "baseline, paper" and csv.loc[a, "notes"] == "the reference"
    assert csv.accuracy_drop.to_dict() == {a: pytest.approx(0.1), b: pytest.approx(0.4)}
    assert list(csv.columns)[:3] == ["label", "status", "method"]


def test_charts_download_as_png_or_svg_from_the_browser(store):
    recorded_run(store, _config())
    at = _open("pages/compare.py")
    options = _charts(at)["Sparsity"]["config"]["toImageButtonOptions"]
    assert options["format"] == "png" and options["filename"] == "pruneviz-sparsity"
    at.radio(key="cmp.format").set_value("svg").run()
    assert all(c["config"]["toImageButtonOptions"]["format"] == "svg"
               for c in _charts(at).values())


def test_a_link_selects_its_runs_and_leaves_out_unknown_ids(store):
    a, b, c = (recorded_run(store, _config(seed=s)) for s in range(3))
    at = _open("pages/compare.py", runs=f"{a},nope-123,{c}")
    assert at.multiselect(key="selected_runs").value == [a, c]
    assert set(_table(at).run_id) == {a, c}
    assert any("nope-123" in w.value and "1 run(s)" in w.value for w in at.warning)
    assert at.query_params["runs"] in ([f"{a},{c}"], f"{a},{c}")


def test_the_link_follows_the_selection(store):
    a, b = (recorded_run(store, _config(seed=s)) for s in range(2))
    at = _open("pages/compare.py")
    at.multiselect(key="selected_runs").set_value([b]).run()
    assert at.query_params["runs"] in ([b], b)
    assert _table(at).run_id.tolist() == [b]


def test_parallel_coordinates_span_the_sweeps_parameters(store):
    recorded_run(store, _config(rate=0.5))
    recorded_run(store, _config(rate=0.9, method="gmp"))
    at = _open("pages/compare.py")
    dims = _charts(at)["Parameters and outcomes of the finished runs"]["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["method", "rate", "final accuracy",
                                          "accuracy drop", "sparsity", "flops effective"]


def test_notes_and_tags_are_saved_from_the_runs_page_and_filter_it(store):
    a = recorded_run(store, _config())
    b = recorded_run(store, _config(rate=0.9))
    at = _open("pages/runs.py")
    _card(at).set_value(a).run()
    at.text_area(key=f"runs.notes.{a}").input("lr was too high")
    at.text_input(key=f"runs.tags.{a}").input("baseline, paper , baseline")
    at.button(key=f"runs.save.{a}").click().run()
    assert not at.exception
    assert store.run(a)["notes"] == "lr was too high"
    assert store.run(a)["tags"] == ["baseline", "paper"]
    listed = next(d.value for d in at.dataframe if "tags" in d.value.columns)
    assert listed.set_index("run_id").loc[a, "notes"] == "lr was too high"
    at.multiselect(key="runs.tag_filter").set_value(["paper"]).run()
    listed = next(d.value for d in at.dataframe if "tags" in d.value.columns)
    assert listed.run_id.tolist() == [a]
    at.multiselect(key="runs.tag_filter").set_value([]).run()
    at.text_input(key="runs.filter").input("TOO HIGH").run()
    listed = next(d.value for d in at.dataframe if "tags" in d.value.columns)
    assert listed.run_id.tolist() == [a] and b not in listed.run_id.tolist()


def test_a_bad_tag_is_an_inline_error_naming_the_field_and_stores_nothing(store):
    a = recorded_run(store, _config())
    at = _open("pages/runs.py")
    at.text_area(key=f"runs.notes.{a}").input("kept?")
    at.text_input(key=f"runs.tags.{a}").input("x" * 50)
    at.button(key=f"runs.save.{a}").click().run()
    assert not at.exception
    assert any(e.value.startswith("Tags") and "40 characters" in e.value for e in at.error)
    assert store.run(a)["notes"] == "" and store.run(a)["tags"] == []


def test_the_config_diff_grows_down_the_page_not_off_its_right_edge(store):
    import dataclasses

    from pruneviz.methods import load_all

    methods = load_all()
    for method in ("gmp", "pgmpf"):
        params = {f.name: f.default for f in dataclasses.fields(methods[method].Params)}
        recorded_run(store, _config(method=method, rate=0.8, params=params))
    at = _open("pages/compare.py")
    diff = at.table[0].value
    assert len(diff.columns) == 2 and len(diff) > 10         # a field per row, a run per column
    assert {"method", "params.end", "params.d"} <= set(diff.index)
    assert set(diff.loc["params.end"]) == {"0.8", "—"}
    assert set(diff.loc["params.every"]) == {"0", "—"}          # an int stays an int


def test_the_overlay_follows_the_preferred_curve_until_the_user_picks_one(store):
    first = recorded_run(store, _config())
    at = _open("pages/compare.py")
    assert at.selectbox(key="cmp.curve").value == "lr"
    # The run then records a preferred curve (as gmp's density arrives after its first prune).
    store.write(first, [Scalar(s, 0, "density", 1.0 - s / 10) for s in range(3)])
    at.run()
    assert at.selectbox(key="cmp.curve").value == "density"
    at.selectbox(key="cmp.curve").set_value("lr").run()
    store.write(first, [Scalar(3, 0, "hard_prune_now_accuracy", 0.5),
                        Scalar(4, 0, "hard_prune_now_accuracy", 0.6)])
    at.run()
    assert at.selectbox(key="cmp.curve").value == "lr"          # the user's pick stays


def _sweep(store, methods=("pgmpf", "sfp"), rates=(0.3, 0.5, 0.7), seeds=(0, 1, 2)):
    """Recorded runs of a methods x rates x seeds grid; pgmpf 2 points behind sfp per seed."""
    ids = {}
    for m in methods:
        for r in rates:
            for s in seeds:
                acc = 0.9 - 0.3 * r - (0.02 if m == "pgmpf" else 0.0) + 0.01 * s
                ids[m, r, s] = recorded_run(store, _config(method=m, rate=r, seed=s),
                                            accuracy=acc, dense_accuracy=0.95)
    return ids


def test_compare_aggregates_seeds_per_method_and_rate_and_downloads_it(store, downloads):
    at = _open("pages/compare.py", runs=",".join(_sweep(store).values()))
    table = next(d.value for d in at.dataframe if "drop_mean" in d.value.columns)
    assert len(table) == 6 and set(table.n) == {3}
    row = table[(table.method == "sfp") & (table.rate == 0.5)].iloc[0]
    assert row["mean"] == pytest.approx(0.9 - 0.15 + 0.01)
    assert row.drop_mean == pytest.approx(0.95 - row["mean"])
    assert row.lo < row["mean"] < row.hi
    button = next(b for b in at.get("download_button")
                  if b.proto.label == "Aggregated table as CSV")
    csv = pd.read_csv(io.BytesIO(downloads[button.proto.url.rsplit("/", 1)[-1].split(".")[0]]))
    assert {"method", "rate", "n", "mean", "sd", "lo", "hi", "drop_mean", "drop_lo",
            "drop_hi"} <= set(csv.columns) and len(csv) == 6


def test_compare_gives_a_paired_verdict_per_rate(store):
    at = _open("pages/compare.py", runs=",".join(_sweep(store).values()))
    assert at.selectbox(key="cmp.pair_a").value == "pgmpf"
    text = "\n".join(m.value for m in at.markdown).replace("\\", "")
    # the same -2 points in every seed: no spread, beyond any noise
    assert text.count("pgmpf − sfp: -2.0 points") == 3
    assert "behind in 3 of 3 seeds: larger than the seed spread" in text


def test_a_sweep_of_three_rates_is_drawn_as_a_curve_per_method_with_its_band(store):
    at = _open("pages/compare.py", runs=",".join(_sweep(store).values()))
    chart = next(c for t, c in _charts(at).items() if t.startswith("Final accuracy vs"))
    lines = {t["name"]: t for t in chart["data"] if t.get("name")}
    assert set(lines) == {"pgmpf", "sfp"}
    assert lines["sfp"]["x"] == pytest.approx([0.3, 0.5, 0.7])
    assert lines["sfp"]["y"] == pytest.approx([0.9 - 0.3 * r + 0.01 for r in (0.3, 0.5, 0.7)])
    assert sum(t.get("fill") == "tonexty" for t in chart["data"]) == 2


def test_add_seeds_queues_the_next_seeds_of_every_setting_and_selects_them(store):
    ids = _sweep(store, methods=("l1",), rates=(0.5,), seeds=(0, 1))
    at = _open("pages/compare.py", runs=",".join(ids.values()))
    at.number_input(key="cmp.more_seeds").set_value(1)
    at.button(key="cmp.add_seeds").click().run()
    assert not at.exception
    runs = store.runs()
    assert sorted(runs.seed) == [0, 1, 2]
    new = runs[runs.seed == 2].run_id.item()
    assert new in at.session_state["_selection"]


def test_the_report_is_one_offline_html_file_with_the_table_verdicts_and_charts(store):
    import re

    import plotly.graph_objects as go

    from pruneviz.plots_report import report_html
    from pruneviz.stats import aggregate

    ids = _sweep(store, rates=(0.5,), seeds=(0, 1))
    runs = store.runs()
    configs = {r: store.run(r)["config"].to_dict() for r in ids.values()}
    fig = go.Figure(go.Scatter(x=[0.3, 0.5], y=[0.8, 0.7], name="sfp"))
    page = report_html(title="cmp <b>x</b>", aggregated=aggregate(runs, configs),
                       verdicts=["rate 0.5: pgmpf − sfp: -2.0 points"], runs=runs[["run_id"]],
                       configs=configs, warnings=["<script>alert(1)</script>"],
                       figures=[fig, fig])
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)         # nothing fetched
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?:", page)
    assert page.count("* plotly.js v") == 1           # inlined once, for both charts
    assert page.count('class="plotly-graph-div"') == 2
    assert "<td>2</td>" in page and "pgmpf − sfp: -2.0 points" in page
    assert "<script>alert(1)</script>" not in page and "cmp &lt;b&gt;x&lt;/b&gt;" in page
    at = _open("pages/compare.py", runs=",".join(ids.values()))
    assert any(b.proto.label == "Download report" for b in at.get("download_button"))


def test_notes_and_tags_saved_after_a_rename_reach_the_renamed_run(store):
    a = recorded_run(store, _config())
    b = recorded_run(store, _config(rate=0.9))
    at = _open("pages/runs.py")
    _card(at).set_value(b).run()
    at.text_input(key=f"runs.name.{b}").input("the high rate")
    at.button(key=f"runs.rename.{b}").click().run()
    assert store.run(b)["name"] == "the high rate"
    assert _card(at).value == b and "the high rate" in _card(at).format_func(b)
    at.text_area(key=f"runs.notes.{b}").input("rate 0.9 loses 40 points")
    at.text_input(key=f"runs.tags.{b}").input("aggressive")
    at.button(key=f"runs.save.{b}").click().run()
    assert not at.exception
    assert store.run(b)["notes"] == "rate 0.9 loses 40 points"
    assert store.run(b)["tags"] == ["aggressive"]
    assert store.run(a)["notes"] == "" and store.run(a)["tags"] == []


def test_the_runs_page_offers_to_compare_one_run_in_the_singular(store):
    recorded_run(store, _config())
    at = _open("pages/runs.py")
    assert at.button(key="runs.compare_all").label == "Compare this run"


def test_the_runs_page_gives_each_control_its_own_label(store):
    run_id = recorded_run(store, _config())
    store.annotate(run_id, tags=["baseline"])
    at = _open("pages/runs.py")
    labels = [w.label for kind in ("text_input", "text_area", "multiselect", "selectbox")
              for w in at.get(kind) if not (w.key or "").startswith("selected_runs")]
    assert len(labels) == len(set(labels)), labels


def test_seed_statistics_of_language_models_are_over_perplexity_lower_better():
    from pruneviz.quality import ACCURACY, PERPLEXITY
    from pruneviz.stats import aggregate
    from pruneviz.ui.compare import seed_quality

    runs = pd.DataFrame({"run_id": ["a", "b"], "status": "completed", "seed": [0, 1],
                         "final_accuracy": [0.3, 0.31], "final_perplexity": [30.0, 34.0],
                         "dense_perplexity": [25.0, 25.0]})
    q = seed_quality(runs)
    assert q is PERPLEXITY and not q.higher_is_better
    assert seed_quality(runs.drop(columns="final_perplexity")) is ACCURACY
    configs = {r: SessionConfig(seed=s, epochs=1).to_dict() for r, s in zip("ab", (0, 1))}
    table = aggregate(runs, configs, quality="final_perplexity", dense="dense_perplexity",
                      higher_is_better=False)
    assert table["mean"].item() == pytest.approx(32.0) and table.drop_mean.item() == 7.0


def test_spec_models_are_named_short_in_charts_and_in_full_in_the_table(store, tmp_path):
    nets = tmp_path / "models" / "my_nets.py"
    nets.parent.mkdir()
    nets.write_text("def build_resnet(num_classes):\n    raise NotImplementedError\n")
    file_spec = f"{nets}:build_resnet"
    ids = [recorded_run(store, _config(model=file_spec)),
           recorded_run(store, _config(model="torchvision:mobilenet_v3_small"))]
    at = _open("pages/compare.py", runs=",".join(ids))
    mixed = next(w.value for w in at.warning if "2 different models or datasets" in w.value)
    assert "my_nets.py\\:build_resnet/digits" in mixed            # escaped for Markdown
    assert "tv\\:mobilenet_v3_small/digits" in mixed and str(tmp_path) not in mixed
    charts = _charts(at)
    assert sorted(t for t in charts if t.startswith("Per-layer sparsity")) == [
        "Per-layer sparsity at the end of each run · my_nets.py:build_resnet",
        "Per-layer sparsity at the end of each run · tv:mobilenet_v3_small"]
    names = [t["name"] for t in charts["Held-out accuracy"]["data"] if t.get("name")]
    assert any("my_nets.py:build_resnet/" in n for n in names)
    assert any("tv:mobilenet_v3_small/" in n for n in names)
    assert not any(str(tmp_path) in n for n in names)
    table = _table(at)
    assert set(table.model) == {file_spec, "torchvision:mobilenet_v3_small"}


def test_specs_sharing_a_short_name_keep_their_full_spec_apart():
    from pruneviz.ui.compare import model_names

    models = pd.Series(["/a/net.py:build", "/b/net.py:build", "torchvision:vgg11", "resnet20"])
    assert list(model_names(models)) == ["/a/net.py:build", "/b/net.py:build", "tv:vgg11",
                                         "resnet20"]
