"""benchmarks/bench_claims.py keeps working: its tiny mode on digits runs every claim, both arms
from one dense start, and its verdicts follow from the numbers it prints."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
