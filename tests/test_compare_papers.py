"""Compare's paper comparisons (one click queues the method and its baselines on their presets,
the page ends in the paired verdicts naming each arm's preset), the default proposal, and a
selection mixing accuracy and perplexity runs split into one section per measure."""

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pruneviz.config import SessionConfig
from pruneviz.methods import get_method
from pruneviz.methods.base import apply_preset
from pruneviz.papers import PAPER_COMPARISONS, SEEDS, matching, preset_of
from pruneviz.quality import ACCURACY, PERPLEXITY
from pruneviz.stats import PAIRED_OUT, config_key, paired
from pruneviz.store import Store
from pruneviz.ui.compare import measure_groups
from pruneviz.workers import DEFAULT_COMPARISON
from tests.helpers import decode_plotly, recorded_run

ROOT = Path(__file__).resolve().parents[1]
PAPER_METHODS = {"pgmpf", "fggp", "pgp", "slr"}


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    return Store(root)


def _open(runs: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if runs is not None:
        at.query_params["runs"] = runs
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    return at


def _text(at) -> str:
    return "\n".join(m.value for m in at.markdown).replace("\\", "")


@pytest.mark.parametrize("key", list(PAPER_COMPARISONS))
def test_a_paper_comparison_pairs_its_arms_by_seed_on_their_own_presets(key):
    claim = PAPER_COMPARISONS[key]
    configs = claim.configs()
    assert len(configs) == len(claim.arms) * len(SEEDS) and len(SEEDS) >= 2
    assert {c.dataset for c in configs} == {"cifar10_small"}
    assert {c.start for c in configs} == {"dense"} and {c.rate for c in configs} == {claim.rate}
    # Per seed, the arms agree in every field but the method and its params: they pair.
    for seed in SEEDS:
        arms = [c.to_dict() for c in configs if c.seed == seed]
        assert len({config_key(a, PAIRED_OUT) for a in arms}) == 1
        assert [a["method"] for a in arms] == list(claim.arms)
    for c in configs:
        ran = preset_of(c.to_dict())
        if "interactive" in get_method(c.method).presets:
            assert ran.startswith("interactive preset"), (c.method, ran)
        else:
            assert ran == "defaults", (c.method, ran)
    # The paired statistics find one result per baseline, over every seed.
    runs = pd.DataFrame({"run_id": [str(i) for i in range(len(configs))],
                         "seed": [c.seed for c in configs],
                         "final_accuracy": [0.5 + 0.01 * i for i in range(len(configs))]})
    dicts = {str(i): c.to_dict() for i, c in enumerate(configs)}
    for baseline in claim.baselines:
        (result,) = paired(runs, dicts, claim.method, baseline)
        assert result.seeds == list(SEEDS)
    assert matching({*claim.arms, "l1"}) == [claim]
    assert claim not in matching(set(claim.arms[:-1]))


def test_the_slr_claim_is_retrain_free_on_both_arms():
    configs = PAPER_COMPARISONS["slr"].configs()
    assert {c.params["retrain_epochs"] for c in configs} == {0}
    assert {preset_of(c.to_dict()) for c in configs} == {"interactive preset, retrain_epochs=0"}


def test_preset_of_names_the_preset_and_what_changed_on_top_of_it():
    base = SessionConfig(method="pgp", dataset="cifar10_small")
    assert preset_of(base.to_dict()) == "defaults"
    short = apply_preset(base, "interactive")
    assert preset_of(short.to_dict()) == "interactive preset"
    changed = short.replace(params={**short.params, "hard_fraction": 0.3})
    assert preset_of(changed.to_dict()) == "interactive preset, hard_fraction=0.3"
    # a stored config (lists where the preset holds tuples) still names its preset
    paper = SessionConfig.from_dict(json.loads(json.dumps(
        apply_preset(SessionConfig(method="pgmpf"), "paper").to_dict())))
    assert preset_of(paper.to_dict()) == "paper preset"
    assert preset_of(base.replace(params={"hard_fraction": 0.3}).to_dict()) == \
        "defaults, hard_fraction=0.3"


def test_the_default_proposal_holds_the_paper_methods_below_a_collapsing_rate():
    assert PAPER_METHODS <= set(DEFAULT_COMPARISON.methods)
    assert "gmp" in DEFAULT_COMPARISON.methods          # the baseline they are measured against
    assert max(DEFAULT_COMPARISON.rates) <= 0.9 and len(DEFAULT_COMPARISON.seeds) >= 2


def test_the_form_queues_a_paper_comparison_and_selects_it(store):
    at = _open()
    at.selectbox(key="cmp.paper").set_value("pgp").run()
    caption = "\n".join(c.value for c in at.caption)
    assert "pgp: interactive preset; psfp: interactive preset" in caption
    at.button(key="cmp.paper_go").click().run()
    assert not at.exception
    runs = store.runs()
    assert sorted(zip(runs.method, runs.seed)) == sorted(
        (m, s) for m in ("pgp", "psfp") for s in SEEDS)
    assert runs.sweep_id.nunique() == 1 and set(runs.dataset) == {"cifar10_small"}
    assert set(at.session_state["_selection"]) == set(runs.run_id)
    configs = [store.run(r)["config"] for r in runs.run_id]
    assert {c.params["prune_fraction"] for c in configs} == {0.2}


def test_a_paper_comparison_ends_in_a_verdict_per_baseline_naming_each_arms_preset(store):
    claim = PAPER_COMPARISONS["pgmpf"]
    ids = []
    for c in claim.configs():
        behind = 0.03 if c.method == "pgmpf" else 0.0
        ids.append(recorded_run(store, c, accuracy=0.7 - behind + 0.01 * c.seed,
                                dense_accuracy=0.8))
    at = _open(",".join(ids))
    text = _text(at)
    assert "The paper's claim: PGMPF ≥ SFP and ASFP at an equal filter rate" in text
    # two baselines: any other pair (sfp − asfp) is still offered below
    assert "Any two methods" in text and at.selectbox(key="cmp.pair_a").value == "asfp"
    for baseline in ("sfp", "asfp"):
        assert (f"pgmpf − {baseline}: -3.0 points (-3.0 to -3.0), behind in 3 of 3 seeds: "
                f"larger than the seed spread. (pgmpf ran interactive preset; {baseline} ran "
                f"interactive preset).") in text


def _lm_run(store, seed: int, perplexity: float) -> str:
    config = SessionConfig(method="l1", rate=0.5, epochs=1, seed=seed, model="gpt_tiny",
                           dataset="pydoc")
    run_id = store.create_run(config)
    store.start_run(run_id, 1)
    store.finish_run(run_id, "completed", summary={
        "final_perplexity": perplexity, "dense_perplexity": 20.0, "final_accuracy": 0.3,
        "dense_accuracy": 0.35, "sparsity": 0.5, "flops_effective": 1e6, "wall_s": 1.0})
    return run_id


def test_a_selection_mixing_accuracy_and_perplexity_runs_gets_a_section_per_measure(store):
    images = [recorded_run(store, SessionConfig(method=m, rate=0.5, epochs=1, seed=s),
                           accuracy=0.8 - 0.01 * s, dense_accuracy=0.9)
              for m in ("l1", "gmp") for s in (0, 1)]
    text = [_lm_run(store, s, 25.0 + s) for s in (0, 1)]
    runs = store.runs()
    groups = measure_groups(runs)
    assert set(groups[ACCURACY].run_id) == set(images)
    assert set(groups[PERPLEXITY].run_id) == set(text)
    at = _open(",".join(images + text))
    assert any("measured two ways: 4 by accuracy, 2 by perplexity" in w.value
               for w in at.warning)
    # One table across seeds per measure, each over its own runs and quality.
    tables = [d.value for d in at.dataframe if "drop_mean" in d.value.columns]
    assert len(tables) == 2
    accuracy, perplexity = tables
    assert sorted(accuracy.method) == ["gmp", "l1"] and accuracy["mean"].max() < 1
    assert list(perplexity["mean"]) == [pytest.approx(25.5)]
    assert list(perplexity.drop_mean) == [pytest.approx(5.5)]   # worse than dense: positive
    assert "### Accuracy runs (4)" in _text(at) and "### Perplexity runs (2)" in _text(at)
    # Each measure's Pareto fronts hold its own runs only, over its own metric.
    fronts = {}
    for chart in at.get("plotly_chart"):
        spec = decode_plotly(json.loads(chart.proto.spec))
        title = spec["layout"].get("title", {}).get("text", "")
        if " vs sparsity" in title and "(mean" not in title:
            points = [y for t in spec["data"] for y in (t.get("y") or [])]
            fronts[title] = points
    assert set(fronts) == {"Final accuracy vs sparsity", "Final perplexity vs sparsity"}
    assert max(fronts["Final accuracy vs sparsity"]) < 1
    assert min(fronts["Final perplexity vs sparsity"]) >= 25


def test_a_two_arm_claim_shows_its_verdict_once(store):
    ids = [recorded_run(store, c, accuracy=0.6 + (0.01 if c.method == "slr" else 0.0) * c.seed,
                        dense_accuracy=0.8)
           for c in PAPER_COMPARISONS["slr"].configs()]
    at = _open(",".join(ids))
    text = _text(at)
    assert text.count("slr − admm:") == 1 and "Any two methods" not in text
    assert "(slr ran interactive preset, retrain_epochs=0; admm ran interactive preset, " \
           "retrain_epochs=0)." in text
    assert "cmp.pair_a" not in [s.key for s in at.selectbox]
