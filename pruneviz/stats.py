"""Statistics over seeds for Compare: per-setting summaries (n, mean, sd, 95 % t-interval) of
a quality column and of its drop vs dense, paired differences between two methods trained from
the same dense starts and seeds, the sentence that says whether such a difference is beyond the
seed spread, and the configs that add seeds to a selection. Pure pandas/scipy, no streamlit.

Every function takes the quality column's name and whether higher is better, so accuracy
(higher) and perplexity (lower) go through the same code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVEL = 0.95
MAX_SEEDS = 1000          # "about N seeds": searched up to this many, "more than" beyond
IGNORED = ("seed", "name")            # what a group of seeds may differ in
PAIRED_OUT = ("method", "params", "name")   # what two paired arms may differ in


def t_quantile(n: int, level: float = LEVEL) -> float:
    """Two-sided Student t critical value for n samples (n-1 degrees of freedom)."""
    return float(sps.t.ppf(0.5 + level / 2, n - 1))


@dataclass(frozen=True)
class Interval:
    """n samples summarised: mean, sample sd (ddof 1) and the two-sided t-interval of the
    mean; sd and bounds are NaN below two samples."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float


def t_interval(values: Any, level: float = LEVEL) -> Interval:
    """Mean and its t-interval (mean ± t_{(1+level)/2, n-1} · sd / sqrt n) of the finite
    values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = t_quantile(n, level) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def drop_vs_dense(final: Any, dense: Any, higher_is_better: bool = True) -> np.ndarray:
    """Quality lost against the dense start (positive: worse than dense), for either
    direction of the quality column."""
    final, dense = np.asarray(final, float), np.asarray(dense, float)
    return dense - final if higher_is_better else final - dense


def config_key(config: dict, leave_out: tuple[str, ...]) -> str:
    """A hashable text key of a config dict without the fields `leave_out`."""
    rest = {k: v for k, v in config.items() if k not in leave_out}
    return str(sorted(rest.items(), key=lambda kv: kv[0]))


def setting_columns(configs: dict[str, dict]) -> list[str]:
    """The config fields (method params as params.NAME) that vary across the runs, other than
    the seed and the name: the axes of the aggregated table. method and rate always come
    first."""
    flat = {r: _flat(c) for r, c in configs.items()}
    cols = list(dict.fromkeys(k for row in flat.values() for k in row))
    varying = [c for c in cols if c not in ("method", "rate", *IGNORED)
               and len({str(row.get(c)) for row in flat.values()}) > 1]
    return ["method", "rate", *varying]


def _flat(config: dict) -> dict:
    row = {k: v for k, v in config.items() if k != "params"}
    row.update({f"params.{k}": v for k, v in (config.get("params") or {}).items()})
    return {k: str(v) if isinstance(v, (list, tuple, dict)) else v for k, v in row.items()}


def aggregate(runs: pd.DataFrame, configs: dict[str, dict], quality: str = "final_accuracy",
              dense: str = "dense_accuracy", higher_is_better: bool = True,
              level: float = LEVEL) -> pd.DataFrame:
    """One row per setting (method x rate x every other varying config field): n seeds, and
    the mean, sd and t-interval of the final quality and of its drop vs dense, plus the mean
    achieved sparsity and effective FLOPs. `runs` has run_id, seed and the quality and dense
    columns; `configs` maps each run id to its config dict. A seed repeated in a setting
    counts once (its latest run, the first in `runs`' newest-first order)."""
    columns = setting_columns(configs)
    rows = []
    by_setting: dict[str, list] = {}
    for run_id in runs.run_id:
        if run_id in configs:
            by_setting.setdefault(config_key(configs[run_id], IGNORED), []).append(run_id)
    table = runs.set_index("run_id")
    for ids in by_setting.values():
        sub = table.loc[ids]
        sub = sub[~sub.seed.duplicated()]
        final = pd.to_numeric(sub[quality], errors="coerce").to_numpy(float)
        drop = drop_vs_dense(final, pd.to_numeric(sub[dense], errors="coerce"),
                             higher_is_better)
        q, d = t_interval(final, level), t_interval(drop, level)
        flat = _flat(configs[ids[0]])
        row = {c: flat.get(c) for c in columns}
        row.update(n=q.n, seeds=", ".join(str(s) for s in sorted(sub.seed)),
                   mean=q.mean, sd=q.sd, lo=q.lo, hi=q.hi,
                   drop_mean=d.mean, drop_sd=d.sd, drop_lo=d.lo, drop_hi=d.hi)
        for extra in ("sparsity", "flops_effective"):
            if extra in sub:
                row[extra] = pd.to_numeric(sub[extra], errors="coerce").mean()
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values(columns, kind="stable", key=_sortable).reset_index(drop=True)


def _sortable(col: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(col, errors="coerce")
    return numbers if numbers.notna().all() else col.astype(str)


def seeds_needed(mean_diff: float, sd: float, level: float = LEVEL,
                 limit: int = MAX_SEEDS) -> int | None:
    """The smallest n >= 2 whose t-interval half-width t_{(1+level)/2, n-1} · sd / sqrt n is
    below |mean_diff|: how many paired seeds would tell a difference of this size from zero if
    the seed-to-seed sd stays what it is. None if no n up to `limit` does (or no difference)."""
    if not np.isfinite(mean_diff) or not np.isfinite(sd) or mean_diff == 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, limit + 1):
        if t_quantile(n, level) * sd / math.sqrt(n) < abs(mean_diff):
            return n
    return None


@dataclass(frozen=True)
class Paired:
    """Method a minus method b over runs paired by seed (and every other config field)."""

    a: str
    b: str
    setting: dict                 # rate and any other field the pairs share
    seeds: list                   # the paired seeds, in order
    diffs: list[float]            # a - b per seed, in quality units
    interval: Interval
    ahead: int                    # seeds where a is better than b
    behind: int                   # seeds where a is worse
    needed: int | None            # seeds_needed of the mean difference and its sd
    higher_is_better: bool = True

    @property
    def resolved(self) -> bool:
        """The t-interval of the mean difference excludes zero."""
        i = self.interval
        return i.n >= 2 and np.isfinite(i.lo) and (i.lo > 0 or i.hi < 0)


def paired(runs: pd.DataFrame, configs: dict[str, dict], a: str, b: str,
           quality: str = "final_accuracy", higher_is_better: bool = True,
           level: float = LEVEL) -> list[Paired]:
    """Method `a` against method `b`: runs of each paired when their configs agree in every
    field but the method, its params and the name (same dense start, data order, budget and
    seed); the pairs grouped by everything but the seed, one result per group (per rate)."""
    table = runs.set_index("run_id")
    shared = _shared_params(runs, configs, a, b)
    arms: dict[str, dict[str, str]] = {}
    for run_id in runs.run_id:      # newest first: a repeated seed keeps its latest run
        config = configs.get(run_id)
        if config is None or config.get("method") not in (a, b):
            continue
        key = config_key({**config, "shared": _shared_values(config, shared)}, PAIRED_OUT)
        arms.setdefault(key, {}).setdefault(config["method"], run_id)
    groups: dict[str, list[tuple[Any, float]]] = {}
    settings: dict[str, dict] = {}
    for arm in arms.values():
        if a not in arm or b not in arm:
            continue
        qa = pd.to_numeric(table.at[arm[a], quality], errors="coerce")
        qb = pd.to_numeric(table.at[arm[b], quality], errors="coerce")
        if not (np.isfinite(qa) and np.isfinite(qb)):
            continue
        config = configs[arm[a]]
        values = _shared_values(config, shared)
        group = config_key({**config, "shared": values}, PAIRED_OUT + ("seed",))
        settings[group] = {**{k: v for k, v in _flat(config).items()
                              if k in ("rate", "model", "dataset", "epochs")},
                           **{f"params.{k}": v for k, v in sorted(values.items())}}
        groups.setdefault(group, []).append((config.get("seed"), float(qa - qb)))
    out = []
    for group, pairs in groups.items():
        pairs.sort(key=lambda p: p[0])
        diffs = [d for _, d in pairs]
        i = t_interval(diffs, level)
        sign = 1 if higher_is_better else -1
        out.append(Paired(a, b, settings[group], [s for s, _ in pairs], diffs, i,
                          ahead=sum(sign * d > 0 for d in diffs),
                          behind=sum(sign * d < 0 for d in diffs),
                          needed=seeds_needed(i.mean, i.sd, level),
                          higher_is_better=higher_is_better))
    return sorted(out, key=lambda p: (p.setting.get("rate", 0), str(p.setting)))


def _shared_params(runs: pd.DataFrame, configs: dict[str, dict], a: str, b: str) -> set[str]:
    """The method parameters that runs of both `a` and `b` set (PGP's and PSFP's
    prune_fraction): runs pair only where these agree, so a preset's arms never pair with the
    other arm's runs at another value (the params as a whole differ between methods)."""
    named: dict[str, set[str]] = {a: set(), b: set()}
    for run_id in runs.run_id:
        config = configs.get(run_id) or {}
        if config.get("method") in named:
            named[config["method"]] |= set(config.get("params") or {})
    return named[a] & named[b]


def _shared_values(config: dict, shared: set[str]) -> dict:
    params = config.get("params") or {}
    return {k: params[k] for k in shared if k in params}


def verdict(p: Paired, scale: float = 100.0, unit: str = "points") -> str:
    """One sentence: the mean paired difference, its interval, how many seeds went each way,
    and whether it is beyond the seed spread (the interval excludes zero) or how many seeds
    would resolve a difference of this size."""
    i = p.interval
    unit = f" {unit}" if unit else ""
    head = f"{p.a} − {p.b}: {i.mean * scale:+.1f}{unit}"
    if i.n < 2:
        return (f"{head} from one seed: no interval yet; add seeds to tell it from the seed "
                f"spread.")
    head += f" ({i.lo * scale:+.1f} to {i.hi * scale:+.1f})"
    if p.ahead and p.behind:
        way = f"ahead in {p.ahead}, behind in {p.behind} of {i.n} seeds"
    elif p.behind:
        way = f"behind in {p.behind} of {i.n} seeds"
    elif p.ahead:
        way = f"ahead in {p.ahead} of {i.n} seeds"
    else:
        way = f"tied in all {i.n} seeds"
    if p.resolved:
        return f"{head}, {way}: larger than the seed spread."
    if p.needed is None:
        more = ("no seed count would resolve it" if i.mean == 0 or not np.isfinite(i.mean)
                else f"more than {MAX_SEEDS} seeds would be needed to resolve it")
        return f"{head}, {way}: inside the noise; {more}."
    return (f"{head}, {way}: inside the noise; about {p.needed} seeds would resolve a "
            f"difference of this size.")


def paired_frame(results: list[Paired], scale: float = 100.0) -> pd.DataFrame:
    """Per-seed differences of paired results, one row per (setting, seed)."""
    rows = [{"a": p.a, "b": p.b, **p.setting, "seed": s, "difference": d * scale}
            for p in results for s, d in zip(p.seeds, p.diffs)]
    return pd.DataFrame(rows)


def more_seeds(configs: list[Any], count: int) -> list[Any]:
    """`count` new seeds for every setting among `configs` (SessionConfig-like: to_dict and
    replace): the next seeds above the highest each setting already has, so a setting with
    seeds 0, 1 gets 2, 3, ... One config per (setting, new seed)."""
    if count < 1:
        raise ValueError("add at least one seed")
    settings: dict[str, tuple[Any, int]] = {}
    for config in configs:
        key = config_key(config.to_dict(), IGNORED)
        first, top = settings.get(key, (config, config.seed))
        settings[key] = (first, max(top, config.seed))
    return [first.replace(seed=top + k, name="") for first, top in settings.values()
            for k in range(1, count + 1)]
