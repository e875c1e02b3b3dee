"""benchmarks/bench_round_to.py keeps working: its quick mode runs every section side by side
with round_to=1, and its verdicts follow from the numbers it prints."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_round_to_quick_mode_runs_every_section_and_its_verdicts_follow(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_round_to.py", "--quick", "--block", "16",
         "--store", str(tmp_path / "store")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "round_to N = 16" in out and "[acc] at equal latency" in out
    verdict = re.search(r"ratio ([\d.]+) \(goal >= 0.8: (met|NOT met)\); speed-up ([\d.]+)x vs "
                        r"([\d.]+)x unaligned \(goal: no lower: (met|NOT met)\)", out)
    assert verdict, out
    ratio, ratio_met, fast, slow, fast_met = verdict.groups()
    assert (float(ratio) >= 0.8) == (ratio_met == "met")
    assert (float(fast) >= float(slow)) == (fast_met == "met")
    for line in re.findall(r"\[PGP\] +round_to=\d+: .*", out):
        t, f, x = map(float, re.search(r"step time ([\d.]+) of dense for a FLOPs ratio of "
                                       r"([\d.]+): ([\d.]+)x", line).groups())
        assert abs(t / f - x) < 0.02 and (x <= 1.15) == ("NOT met" not in line)
    # the rounded run keeps a count the kernels like in every layer: it prunes at least 40%
    pruned = re.search(r"round_to=16 down: filters pruned ([\d.]+)%", out)
    assert pruned and float(pruned.group(1)) >= 40.0
