"""Compare's statistics over seeds, against numpy and scipy as oracles."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pruneviz.config import SessionConfig
from pruneviz.stats import (
    aggregate,
    more_seeds,
    paired,
    paired_frame,
    seeds_needed,
    t_interval,
    verdict,
)


def test_t_interval_matches_scipy():
    x = [0.61, 0.64, 0.58, 0.66, 0.60]
    i = t_interval(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert i.n == 5 and i.mean == pytest.approx(np.mean(x))
    assert i.sd == pytest.approx(np.std(x, ddof=1))
    assert (i.lo, i.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_t_interval_of_one_value_has_no_spread_and_nan_is_ignored():
    i = t_interval([0.5, float("nan")])
    assert i.n == 1 and i.mean == 0.5 and math.isnan(i.sd) and math.isnan(i.lo)
    assert t_interval([]).n == 0


def _runs(rows):
    """runs and configs as compare_data has them, from (method, rate, seed, final, dense)."""
    runs, configs = [], {}
    for k, (method, rate, seed, final, dense) in enumerate(rows):
        run_id = f"r{k}"
        config = SessionConfig(method=method, rate=rate, seed=seed, epochs=1).to_dict()
        configs[run_id] = config
        runs.append(dict(run_id=run_id, method=method, rate=rate, seed=seed,
                         final_accuracy=final, dense_accuracy=dense, sparsity=rate,
                         flops_effective=1e6 * (1 - rate)))
    return pd.DataFrame(runs), configs


def test_aggregate_is_one_row_per_method_and_rate_with_scipy_intervals():
    rng = np.random.default_rng(0)
    rows = [(m, r, s, float(rng.uniform(0.5, 0.9)), 0.95)
            for m in ("l1", "gmp") for r in (0.5, 0.9) for s in range(4)]
    runs, configs = _runs(rows)
    table = aggregate(runs, configs)
    assert len(table) == 4 and list(table.columns[:2]) == ["method", "rate"]
    for row in table.itertuples():
        x = [f for m, r, _, f, _ in rows if m == row.method and r == row.rate]
        lo, hi = sps.t.interval(0.95, 3, loc=np.mean(x), scale=sps.sem(x))
        assert row.n == 4 and row.mean == pytest.approx(np.mean(x))
        assert (row.lo, row.hi) == (pytest.approx(lo), pytest.approx(hi))
        drops = 0.95 - np.asarray(x)
        assert row.drop_mean == pytest.approx(drops.mean())
        assert row.drop_sd == pytest.approx(drops.std(ddof=1))


def test_aggregate_counts_a_repeated_seed_once_and_takes_a_varying_field_as_an_axis():
    runs, configs = _runs([("l1", 0.5, 0, 0.8, 0.9), ("l1", 0.5, 0, 0.7, 0.9),
                           ("l1", 0.5, 1, 0.6, 0.9)])
    assert aggregate(runs, configs).n.tolist() == [2]
    configs["r2"] = {**configs["r2"], "epochs": 2}
    table = aggregate(runs, configs)
    assert "epochs" in table.columns and sorted(table.n) == [1, 1]


def test_a_lower_is_better_quality_turns_the_drop_around():
    runs, configs = _runs([("l1", 0.5, 0, 0.0, 0.0), ("l1", 0.5, 1, 0.0, 0.0)])
    runs["final_perplexity"], runs["dense_perplexity"] = [30.0, 34.0], [25.0, 25.0]
    table = aggregate(runs, configs, quality="final_perplexity", dense="dense_perplexity",
                      higher_is_better=False)
    assert table.drop_mean.item() == pytest.approx(7.0)      # 7 points of perplexity worse


def test_seeds_needed_is_the_smallest_n_whose_interval_excludes_the_difference():
    mean, sd = 0.01, 0.02
    n = seeds_needed(mean, sd)
    t = [sps.t.ppf(0.975, k - 1) * sd / math.sqrt(k) for k in (n - 1, n)]
    assert t[1] < mean <= t[0]
    assert seeds_needed(0.0, 0.02) is None and seeds_needed(0.1, 0.0) == 2


def test_paired_differences_match_a_paired_t_test():
    a = [0.70, 0.72, 0.69, 0.75]
    b = [0.74, 0.73, 0.74, 0.79]
    rows = [("pgmpf", 0.5, s, x, 0.9) for s, x in enumerate(a)]
    rows += [("sfp", 0.5, s, x, 0.9) for s, x in enumerate(b)]
    runs, configs = _runs(rows)
    (p,) = paired(runs, configs, "pgmpf", "sfp")
    d = np.subtract(a, b)
    assert p.diffs == pytest.approx(list(d)) and p.seeds == [0, 1, 2, 3]
    lo, hi = sps.t.interval(0.95, 3, loc=d.mean(), scale=sps.sem(d))
    assert (p.interval.lo, p.interval.hi) == (pytest.approx(lo), pytest.approx(hi))
    # the interval excludes zero exactly when scipy's paired t-test rejects at 5 %
    assert p.resolved == (sps.ttest_rel(a, b).pvalue < 0.05)
    assert p.behind == 4 and p.ahead == 0
    text = verdict(p)
    assert text.startswith("pgmpf − sfp: -3.5 points (-6.3 to -0.7)")
    assert "behind in 4 of 4 seeds" in text
    assert "larger than the seed spread" in text
    assert paired_frame([p]).difference.tolist() == pytest.approx(list(d * 100))


def test_a_difference_inside_the_noise_says_how_many_seeds_would_resolve_it():
    rows = [("l1", 0.9, 0, 0.70, 0.9), ("l1", 0.9, 1, 0.60, 0.9), ("l1", 0.9, 2, 0.66, 0.9),
            ("gmp", 0.9, 0, 0.65, 0.9), ("gmp", 0.9, 1, 0.64, 0.9), ("gmp", 0.9, 2, 0.64, 0.9)]
    runs, configs = _runs(rows)
    (p,) = paired(runs, configs, "l1", "gmp")
    assert not p.resolved and sps.ttest_rel([0.7, 0.6, 0.66], [0.65, 0.64, 0.64]).pvalue > 0.05
    assert p.needed == seeds_needed(p.interval.mean, p.interval.sd) and p.needed > 3
    assert f"inside the noise; about {p.needed} seeds would resolve" in verdict(p)
    assert "ahead in 2, behind in 1 of 3 seeds" in verdict(p)


def test_pairs_need_the_same_seed_and_rate_and_a_lower_quality_is_ahead_for_perplexity():
    rows = [("a", 0.5, 0, 0.0, 0.0), ("b", 0.5, 0, 0.0, 0.0), ("a", 0.5, 1, 0.0, 0.0),
            ("b", 0.9, 1, 0.0, 0.0)]
    runs, configs = _runs(rows)
    runs["ppl"] = [20.0, 25.0, 21.0, 30.0]
    (p,) = paired(runs, configs, "a", "b", quality="ppl", higher_is_better=False)
    assert p.seeds == [0] and p.ahead == 1 and p.behind == 0
    assert "from one seed" in verdict(p, scale=1, unit="")


def test_arms_pair_only_where_the_parameters_both_methods_set_agree():
    """PGP and PSFP at the interactive preset's prune_fraction 0.2 and at the old 0.75: each
    value pairs with its own, even where a newer run of the other value shares the seed
    (paired once took the newest run per seed and method, whatever its parameters)."""
    runs, configs = [], {}
    rows = [(pf, m, s) for pf in (0.2, 0.75) for m in ("pgp", "psfp") for s in (0, 1, 2)]
    for k, (pf, method, seed) in enumerate(reversed(rows)):        # newest first: 0.75
        configs[f"r{k}"] = SessionConfig(method=method, rate=0.5, seed=seed, epochs=1,
                                         params={"prune_fraction": pf}).to_dict()
        acc = 0.30 + (0.02 if method == "pgp" else 0.0) - (0.10 if pf == 0.75 and
                                                             method == "pgp" else 0.0)
        runs.append(dict(run_id=f"r{k}", seed=seed, final_accuracy=acc + 0.01 * seed))
    results = paired(pd.DataFrame(runs), configs, "pgp", "psfp")
    by_fraction = {p.setting["params.prune_fraction"]: p for p in results}
    assert set(by_fraction) == {0.2, 0.75}
    assert by_fraction[0.2].diffs == pytest.approx([0.02] * 3)
    assert by_fraction[0.75].diffs == pytest.approx([-0.08] * 3)
    # methods that share no set parameter still pair (pgmpf {} against sfp {})
    plain, plain_configs = _runs([("pgmpf", 0.5, 0, 0.7, 0.9), ("sfp", 0.5, 0, 0.6, 0.9)])
    (p,) = paired(plain, plain_configs, "pgmpf", "sfp")
    assert "params.prune_fraction" not in p.setting and p.diffs == pytest.approx([0.1])


def test_more_seeds_continues_each_settings_seeds():
    configs = [SessionConfig(method=m, rate=0.5, seed=s, epochs=1)
               for m in ("l1", "gmp") for s in (0, 1)]
    configs.append(SessionConfig(method="l1", rate=0.9, seed=4, epochs=1))
    new = more_seeds(configs, 2)
    got = sorted((c.method, c.rate, c.seed) for c in new)
    assert got == [("gmp", 0.5, 2), ("gmp", 0.5, 3), ("l1", 0.5, 2), ("l1", 0.5, 3),
                   ("l1", 0.9, 5), ("l1", 0.9, 6)]
    with pytest.raises(ValueError):
        more_seeds(configs, 0)
