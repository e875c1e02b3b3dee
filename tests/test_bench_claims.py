"""benchmarks/bench_claims.py keeps working: its tiny mode on digits runs every claim, both arms
from one dense start, and its verdicts follow from the numbers it prints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ["slr", "pgmpf", "fggp90", "fggp95", "pgp"]


def test_bench_claims_tiny_mode_checks_every_claim_on_digits(tmp_path):
    out = tmp_path / "claims.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_claims.py", "--tiny", "--datasets", "digits",
         "--store", str(tmp_path / "store"), "--json", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [r["claim"] for r in results] == CLAIMS
    for r in results:
        (m, a), (b, arm_b) = r["arms"].items()
        assert m != b and len(a) == len(arm_b) == 1
        assert a[0]["dense"] == arm_b[0]["dense"]            # the same dense start
        assert all(0.0 <= x["value"] <= 1.0 for x in a + arm_b)
        diff = a[0]["value"] - arm_b[0]["value"]
        assert r["diff"] == diff
        assert r["holds"] == (diff > 0 if r["claim"] == "slr" else diff >= 0)
        verdict = "holds" if r["holds"] else "fails"
        assert f"[claim] digits {r['claim']}: {r['text']}: {verdict}" in proc.stdout
    pgp = next(r for r in results if r["claim"] == "pgp")
    flops = [x["flops"] for arm in pgp["arms"].values() for x in arm]
    assert flops[0] == flops[1] < 1.0                         # equal FLOPs, both pruned


LM_CLAIMS = ["wanda50", "sparsegpt50", "wanda50l1", "sparsegpt50l1", "wanda50g", "wanda24",
             "sparsegpt24", "heads"]


def test_bench_claims_tiny_mode_checks_the_language_model_claims_on_pydoc(tmp_path):
    """Perplexity is lower-is-better: a paired claim holds when method - baseline < 0; the head
    claim holds when the largest rise over dense in rounds 1-2 is at most 5 %; image claims are
    not run on text."""
    out = tmp_path / "claims.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_claims.py", "--tiny", "--datasets", "pydoc",
         "--set", "calib_samples=16", "--store", str(tmp_path / "store"), "--json", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r["claim"]: r for r in json.loads(out.read_text())}
    assert list(results) == LM_CLAIMS
    for key in LM_CLAIMS[:-1]:
        r = results[key]
        (m, a), (b, arm_b) = r["arms"].items()
        assert m != b and len(a) == len(arm_b) == 1
        assert a[0]["dense"] == arm_b[0]["dense"] >= 1.0            # one dense start
        assert all(x["value"] >= 1.0 for x in a + arm_b)            # perplexities
        diff = a[0]["value"] - arm_b[0]["value"]
        assert r["diff"] == diff and r["holds"] == (diff < 0)
        verdict = "holds" if r["holds"] else "fails"
        assert f"[claim] pydoc {key}: {r['text']}: {verdict}" in proc.stdout
    # the wanda arm three claims share ran once: the same session's numbers
    wanda = [results[k]["arms"]["wanda"][0] for k in ("wanda50", "wanda50l1", "wanda50g")]
    assert wanda[0] == wanda[1] == wanda[2]
    assert results["wanda24"]["arms"]["wanda"][0]["value"] != wanda[0]["value"]   # nm reached
    heads = results["heads"]
    (run,) = heads["arms"]["head_importance"]
    ppl = run["rounds"]
    assert len(ppl) == 6 and ppl[0] == pytest.approx(run["dense"], rel=1e-6)   # round 0: dense
    rise = max(ppl[1:3]) / ppl[0] - 1.0
    assert heads["diff"] == rise and heads["holds"] == (rise <= 0.05)
