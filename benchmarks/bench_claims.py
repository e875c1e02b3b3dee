"""The papers' qualitative claims checked at small scale (issue 17, item 6).

Each claim runs the method and its baseline from the same dense start (one per seed, cached in
the store), at one scaled-down regime, for every seed and dataset, and prints mean +- std per
arm, the mean of the paired differences (method - baseline) with its spread, and `holds` or
`fails` (`holds` when the mean difference is > 0 for a strict claim, >= 0 otherwise):

    slr     SLR hard-pruned > ADMM hard-pruned at equal epochs (rate 0.9, no retraining)
    pgmpf   PGMPF >= SFP at an equal filter rate (0.4, from the dense start)
    fggp90  FGGP >= GMP at 90 %;  fggp95  the same at 95 %
    pgp     PGP >= PSFP at equal FLOPs (filter rate 0.5; both compacted FLOPs are printed)

Language-model claims (issue 26), on gpt_tiny / pydoc only, retrain-free (the papers' setting:
the perplexity just after the one-shot prune, `pruned_perplexity`; lower is better, so these
hold when the mean difference method - baseline is < 0):

    wanda50, sparsegpt50      Wanda / SparseGPT < per-row magnitude (magnitude_row) at 50 %
    wanda50l1, sparsegpt50l1  the same against layer-wise magnitude (l1)
    wanda50g                  Wanda < global magnitude (global_l1) at 50 %
    wanda24, sparsegpt24      Wanda / SparseGPT < magnitude_row at 2:4
    heads   head importance flat over its first rounds: perplexity after round 2 of 5 (a quarter
            of the heads gone, at rate 0.5) at most FLAT (5 %) above the dense model's

Datasets: `subset` is the real-image CIFAR-10 sample (--subset, ResNet-20 at 16 px; its own
test/ split once pruneviz.data reads train/ + test/ trees, else train/ with a 20 % holdout);
any other name is a pruneviz dataset (the embedded cifar10_small and digits by default) trained
with tiny_cnn, the Compare form's model (gpt_tiny for a text dataset: pydoc); NAME=MODEL picks
another. Each claim runs on the datasets of its kind (image or text) only. Modes: default (3 seeds,
~30 min on 2 cores), --quick (a few minutes), --tiny (seconds, for CI; the numbers mean
nothing). Regimes and findings: docs/methods.md, "Claims checked".

    python benchmarks/bench_claims.py [--quick | --tiny] [--seeds 3]
        [--datasets subset cifar10_small digits pydoc] [--subset ../shared/data/cifar10-subset]
        [--only slr pgp] [--set NAME=VALUE ...] [--store DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pruneviz import data as pruneviz_data
from pruneviz.config import SessionConfig
from pruneviz.data import dataset_modality
from pruneviz.methods import get_method
from pruneviz.session import run_session
from pruneviz.store import Store

ROOT = Path(__file__).resolve().parent.parent

# The session fields of the scaled-down regimes (epochs come from the mode).
SLR_OPT = dict(lr=0.01, momentum=0.5, nesterov=True, weight_decay=5e-4,
               lr_schedule="constant")                     # SLR's paper preset
PGP_OPT = dict(lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
               lr_schedule="constant")                     # PGP's paper preset
FINETUNE = dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
                lr_schedule="cosine")                      # the interactive presets'


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    method: str
    baseline: str
    rate: float
    metric: str = "final_accuracy"
    strict: bool = False
    session: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)          # the method's
    base_params: dict[str, Any] = field(default_factory=dict)     # the baseline's
    modality: str = "image"        # the datasets it runs on: image or text
    lower: bool = False            # lower is better (perplexity): holds when the difference < 0
    flat: float = 0.0              # > 0: no baseline arm; the metric's rounds stay within this


CLAIMS = [
    Claim("slr", "SLR hard-pruned > ADMM hard-pruned at equal epochs", "slr", "admm", 0.9,
          metric="hard_prune_accuracy", strict=True, session=SLR_OPT,
          params=dict(rho=0.1, s0=0.01, M=300.0, r=0.1), base_params=dict(rho=0.1,
                                                                        retrain_epochs=0)),
    Claim("pgmpf", "PGMPF >= SFP at an equal filter rate", "pgmpf", "sfp", 0.4,
          session=FINETUNE),
    Claim("fggp90", "FGGP >= GMP at 90%", "fggp", "gmp", 0.9,
          session=dict(FINETUNE, label_smoothing=0.1)),
    Claim("fggp95", "FGGP >= GMP at 95%", "fggp", "gmp", 0.95,
          session=dict(FINETUNE, label_smoothing=0.1)),
    Claim("pgp", "PGP >= PSFP at equal FLOPs", "pgp", "psfp", 0.5, session=PGP_OPT,
          params=dict(prune_fraction=0.25, group_score="lead"),
          base_params=dict(prune_fraction=0.25)),
]

# Language models (issue 26): retrain-free one-shot prunes of the dense gpt_tiny, compared by the
# held-out perplexity just after the prune (the session's one epoch only measures for the llm
# methods; l1 and global_l1 fine-tune it, but their `pruned_perplexity` is read before that).
RETRAIN_FREE = dict(retrain_free=True, calib_samples=128)
FLAT = 0.05        # head importance: "flat" = perplexity at most 5 % above dense through round 2
FLAT_ROUND = 2


def lm_claim(key: str, text: str, method: str, baseline: str, nm: str = "") -> Claim:
    pattern = dict(nm=nm) if nm else {}
    base = {**RETRAIN_FREE, **pattern} if baseline == "magnitude_row" else pattern
    return Claim(key, text, method, baseline, 0.5, metric="pruned_perplexity", strict=True,
                 modality="text", lower=True, params={**RETRAIN_FREE, **pattern},
                 base_params=base)


CLAIMS += [
    lm_claim("wanda50", "Wanda < row magnitude in perplexity at 50%", "wanda", "magnitude_row"),
    lm_claim("sparsegpt50", "SparseGPT < row magnitude in perplexity at 50%", "sparsegpt",
             "magnitude_row"),
    lm_claim("wanda50l1", "Wanda < layer magnitude in perplexity at 50%", "wanda", "l1"),
    lm_claim("sparsegpt50l1", "SparseGPT < layer magnitude in perplexity at 50%", "sparsegpt",
             "l1"),
    lm_claim("wanda50g", "Wanda < global magnitude in perplexity at 50%", "wanda", "global_l1"),
    lm_claim("wanda24", "Wanda < row magnitude in perplexity at 2:4", "wanda", "magnitude_row",
             "2:4"),
    lm_claim("sparsegpt24", "SparseGPT < row magnitude in perplexity at 2:4", "sparsegpt",
             "magnitude_row", "2:4"),
    Claim("heads", f"head importance flat (<= {FLAT:.0%} above dense) through round "
          f"{FLAT_ROUND}", "head_importance", "", 0.5, metric="perplexity", modality="text",
          lower=True, flat=FLAT, params=dict(RETRAIN_FREE, rounds=5)),
]

PRESET = "--preset"      # the key of --preset among run_arm's overrides

# Budgets per mode: (seeds, epochs, dense epochs, steps per epoch cap, held-out cap), per kind
# of dataset ("subset": ResNet-20 on real images; "small": an embedded set).
MODES = {
    "full": dict(seeds=3, subset=(8, 15, 50, 0), small=(10, 0, 0, 0), text=(1, 0, 0, 0)),
    "quick": dict(seeds=3, subset=(4, 6, 20, 0), small=(6, 0, 0, 0), text=(1, 0, 0, 0)),
    "tiny": dict(seeds=1, subset=(1, 1, 20, 64), small=(1, 1, 10, 64), text=(1, 1, 4, 32)),
}


@dataclass(frozen=True)
class Dataset:
    label: str
    dataset: str
    model: str
    fields: dict[str, Any]


def subset_dataset(root: Path) -> str:
    """folder: spec for the real-image subset: the whole tree where pruneviz.data uses train/ +
    test/ as the split, else train/ alone (split by --holdout)."""
    if hasattr(pruneviz_data, "SPLIT_TRAIN"):
        return f"folder:{root}"
    return f"folder:{root / 'train'}"


def datasets(names: list[str], subset: Path, mode: str) -> list[Dataset]:
    out = []
    for spec in names:
        name, _, model = spec.partition("=")
        text = name != "subset" and dataset_modality(name) == "text"
        epochs, dense, cap, limit = MODES[mode]["subset" if name == "subset" else
                                                "text" if text else "small"]
        budget = dict(epochs=epochs, dense_epochs=dense, max_steps_per_epoch=cap,
                      eval_limit=limit)
        if name == "subset":
            out.append(Dataset("subset", subset_dataset(subset), model or "resnet20",
                               dict(budget, image_size=16, batch_size=128, holdout=0.2)))
        else:
            out.append(Dataset(name, name, model or ("gpt_tiny" if text else "tiny_cnn"),
                               dict(budget, batch_size=64)))
    return out


def overrides(pairs: list[str]) -> dict[str, Any]:
    """--set NAME=VALUE pairs; VALUE as JSON where it parses (numbers, true), else a string."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"bench_claims: error: --set takes NAME=VALUE, got {pair!r}")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


DONE: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}   # config -> (summary, seconds)


def run_arm(store: Store, ds: Dataset, claim: Claim, method: str, params: dict[str, Any],
            seed: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One session; `extra` overrides session fields, and the method's own parameters where it
    has them (so --set s0=0.1 reaches SLR and not ADMM)."""
    session = {f.name for f in dataclasses.fields(SessionConfig)}
    own = {f.name for f in dataclasses.fields(get_method(method).Params)}
    preset = extra.get(PRESET)
    if preset:      # --preset: the arm's own preset instead of the claim's regime and params
        values = get_method(method).presets.get(preset, {})
        claim = dataclasses.replace(claim, rate=values.get("rate", claim.rate),
                                    session={k: v for k, v in values.items()
                                             if k in session and k not in ("rate", "epochs", "start")})
        params = {k: v for k, v in values.items() if k not in session}
    fields = {**claim.session, **ds.fields, **{k: v for k, v in extra.items() if k in session}}
    params = {**params, **{k: v for k, v in extra.items() if k in own}}
    config = SessionConfig(method=method, rate=claim.rate, dataset=ds.dataset, model=ds.model,
                           seed=seed, start="dense", device="cpu", **fields, params=params)
    key = (str(store.root), config.to_json())
    if key not in DONE:     # an arm two claims share (wanda50 vs three baselines) runs once
        started = time.perf_counter()
        s = run_session(config, store)
        if s.get("status") != "completed":
            raise RuntimeError(f"{method} on {ds.label} seed {seed} ended {s.get('status')}: "
                               f"{s.get('error', '')}")
        DONE[key] = s, time.perf_counter() - started
    s, seconds = DONE[key]
    flops = (s["flops_compact"] / s["flops_dense"]
             if s.get("flops_compact") and s.get("flops_dense") else None)
    dense = s.get("dense_perplexity" if claim.lower else "dense_accuracy")
    out = dict(value=s.get(claim.metric), dense=dense, flops=flops, seconds=seconds)
    if claim.flat:      # the quality after each round (round 0 = dense), from the run's table
        rows = store.rows(s["run_id"], "head_rounds").sort_values("round")
        out["rounds"] = [float(math.exp(x)) for x in rows["loss"]]
        out["value"] = max(out["rounds"][1:FLAT_ROUND + 1]) / out["rounds"][0] - 1.0
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def check(store: Store, ds: Dataset, claim: Claim, seeds: list[int],
          extra: dict[str, Any]) -> dict[str, Any]:
    """Both arms over the seeds; the verdict from the mean paired difference."""
    if claim.flat:
        return check_flat(store, ds, claim, seeds, extra)
    arms: dict[str, list[dict[str, Any]]] = {claim.method: [], claim.baseline: []}
    for seed in seeds:
        arms[claim.method].append(run_arm(store, ds, claim, claim.method, claim.params, seed,
                                          extra))
        arms[claim.baseline].append(run_arm(store, ds, claim, claim.baseline,
                                            claim.base_params, seed, extra))
    a = [r["value"] for r in arms[claim.method]]
    b = [r["value"] for r in arms[claim.baseline]]
    diff, diff_std = mean_std([x - y for x, y in zip(a, b)])
    if claim.lower:
        holds = diff < 0 if claim.strict else diff <= 0
    else:
        holds = diff > 0 if claim.strict else diff >= 0
    return dict(dataset=ds.label, claim=claim.key, text=claim.text, metric=claim.metric,
                holds=holds, diff=diff, diff_std=diff_std, arms=arms,
                dense=mean_std([r["dense"] for r in arms[claim.method]])[0])


def check_flat(store: Store, ds: Dataset, claim: Claim, seeds: list[int],
               extra: dict[str, Any]) -> dict[str, Any]:
    """One arm over the seeds; `value` is the largest relative perplexity rise over dense in
    rounds 1..FLAT_ROUND, and the claim holds when its mean is <= claim.flat."""
    runs = [run_arm(store, ds, claim, claim.method, claim.params, seed, extra)
            for seed in seeds]
    rise, rise_std = mean_std([r["value"] for r in runs])
    return dict(dataset=ds.label, claim=claim.key, text=claim.text, metric="perplexity rise",
                holds=rise <= claim.flat, diff=rise, diff_std=rise_std,
                arms={claim.method: runs}, dense=mean_std([r["dense"] for r in runs])[0],
                rounds=[mean_std(list(r)) for r in zip(*[x["rounds"] for x in runs])])


def report(result: dict[str, Any]) -> list[str]:
    lines = []
    for method, runs in result["arms"].items():
        m, s = mean_std([r["value"] for r in runs])
        flops = [r["flops"] for r in runs if r["flops"] is not None]
        extra = f", compact FLOPs {statistics.fmean(flops):.3f} of dense" if flops else ""
        seconds = sum(r["seconds"] for r in runs)
        lines.append(f"    {method:6s} {result['metric']} {m:.4f} +- {s:.4f} over "
                     f"{len(runs)} seeds{extra} ({seconds:.0f} s)")
    if "rounds" in result:
        lines.append("    perplexity per round (0 = dense): " + ", ".join(
            f"{m:.3f} +- {s:.3f}" for m, s in result["rounds"]))
    verdict = "holds" if result["holds"] else "fails"
    lines.append(f"[claim] {result['dataset']} {result['claim']}: {result['text']}: {verdict} "
                 f"(difference {result['diff']:+.4f} +- {result['diff_std']:.4f}, dense "
                 f"{result['dense']:.4f})")
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="a few minutes")
    group.add_argument("--tiny", action="store_true", help="seconds, for CI")
    ap.add_argument("--seeds", type=int, default=0, help="seeds per arm (0 = the mode's)")
    ap.add_argument("--datasets", nargs="+",
                    default=["subset", "cifar10_small", "digits", "pydoc"],
                    help="subset, or pruneviz dataset names; NAME=MODEL picks the model")
    ap.add_argument("--subset", type=Path, default=ROOT / "../shared/data/cifar10-subset",
                    help="the real-image subset's folder (train/ and test/)")
    ap.add_argument("--only", nargs="+", choices=[c.key for c in CLAIMS],
                    help="check only these claims")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a session field, or a parameter of the arms that have it "
                         "(diagnostics: --only slr --set rho=1 --set s0=0.1)")
    ap.add_argument("--preset", help="run each arm with its method's preset (interactive, "
                    "paper) at the mode's budget instead of the claim's own regime and "
                    "parameters (the mode's epochs win over the preset's)")
    ap.add_argument("--store", type=Path, help="store to keep the runs (and dense starts) in")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    seeds = list(range(args.seeds or MODES[mode]["seeds"]))
    claims = [c for c in CLAIMS if not args.only or c.key in args.only]
    extra = overrides(args.set)
    if args.preset:
        extra[PRESET] = args.preset
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; mode {mode}, "
          f"seeds {seeds}")
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.store or tmp)
        for ds in datasets(args.datasets, args.subset.resolve(), mode):
            print(f"== {ds.label}: {ds.dataset}, {ds.model}, {ds.fields}"
                  + (f", overrides {extra}" if extra else ""))
            kind = "image" if ds.label == "subset" else dataset_modality(ds.dataset)
            for claim in (c for c in claims if c.modality == kind):
                result = check(store, ds, claim, seeds, extra)
                results.append(result)
                print("\n".join(report(result)), flush=True)
    held = sum(r["holds"] for r in results)
    print(f"{held} of {len(results)} claims hold ({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
