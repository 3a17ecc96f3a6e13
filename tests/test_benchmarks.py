"""Smoke test: the benchmark script runs end to end in its quick mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_memory.py"


@pytest.mark.slow
def test_bench_memory_quick_runs_and_prints_ratios():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=SCRIPT.parent.parent,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    number = r"\d+\.\d+"
    for kind in ("mlp", "cnn"):
        assert re.search(rf"ratio kfitx/plain {kind} steady-state samples/s: {number}", proc.stdout), output
        assert re.search(rf"ratio kfitx/plain {kind} whole-fit samples/s: {number}", proc.stdout), output
    assert re.search(rf"ratio kfitx/plain mem peak above baseline: {number}", proc.stdout), output
    assert "copies of the data" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script, rows", [
    ("bench_generator.py", ["aug 32x32  fit_generator(IDG) vs fit(IDG.flow)", "latency  last epoch end",
                            "ooc 0.05 GiB .npy  samples/s vs memory on a slice"]),
    ("bench_loop.py", ["mlp loop, History + batch callback vs naive", "cnn loop (defaults) vs plain model.fit"]),
])
def test_generator_and_loop_benchmarks_quick_print_their_ratios(script, rows):
    path = SCRIPT.parent / script
    proc = subprocess.run([sys.executable, str(path), "--quick"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), cwd=SCRIPT.parent.parent)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for row in rows:
        assert re.search(re.escape(row) + r".*\s\d+\.\d\d\s", proc.stdout), proc.stdout[-3000:]


@pytest.mark.slow
def test_bench_auto_quick_prints_auto_against_the_fastest():
    path = SCRIPT.parent / "bench_auto.py"
    proc = subprocess.run([sys.executable, str(path), "--quick", "--backends", "tensorflow", "--only", "mlp"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                          cwd=SCRIPT.parent.parent)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for run in ("auto", r"auto \(cached\)"):
        assert re.search(rf"tensorflow\s+mlp\s+{run}\s+\w+ [\d,]+\s+\w+ [\d,]+\s+[\d,]+\s+\d+\.\d\d\s+\d+\.\d\d\s+"
                         r"\d+\.\d %", proc.stdout), proc.stdout[-3000:]
