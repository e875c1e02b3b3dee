"""benchmarks/bench_gpu.py keeps working on a machine without CUDA (its quick mode)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from pruneviz.methods import load_all

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_quick_runs_on_cpu_and_says_what_it_skipped():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--quick"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    rows = dict(re.findall(r"^(\w+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", out, re.M))
    assert set(rows) == set(load_all())                  # every method, a ratio each
    assert all(float(r) > 0 for r in rows.values())
    assert "no CUDA" in out and "[syncs] skipped" in out
    assert "[2:4] skipped: no 2:4 kernels here; the zeros only compress" in out
    assert re.search(r"^\[startup\] .*: median [\d.]+ s of 1$", out, re.M)
