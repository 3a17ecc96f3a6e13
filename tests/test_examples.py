"""The runnable examples run: each one end to end in a subprocess, as a user would start it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_search_digits_quick(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")  # the digits ship with scikit-learn (kfitx[examples])
    pytest.importorskip("keras_tuner")
    search_dir = tmp_path / "search"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "search_digits.py"), "--quick", "--directory", str(search_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Leaderboard (2 trial(s)" in result.stdout, output[-4000:]
    assert "val_accuracy" in result.stdout and "samples/s" in result.stdout
    assert "Best model validation accuracy:" in result.stdout
    assert (search_dir / "digits").is_dir()  # the search went where --directory said
    assert not (tmp_path / ".kfitx-search").exists()


def test_quickstart_prints_what_the_readme_shows() -> None:
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    readme = (EXAMPLES.parent / "README.md").read_text()
    for line in result.stdout.strip().splitlines():
        assert line in readme, f"README does not show the example's output line {line!r}"


def test_custom_loop_runs_a_clipped_step_and_a_learning_rate_hook() -> None:
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(EXAMPLES / "custom_loop.py")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "'strategy': 'loop'" in lines[0] and "'step': 'user'" in lines[0]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 5
    assert epochs[0].endswith("'learning_rate': 0.5}") and epochs[1].endswith("'learning_rate': 0.25}")
    assert all("val_accuracy" in line and "grad_norm" in line for line in epochs)


def test_classic_modes_runs_the_three_keras_modes() -> None:
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(EXAMPLES / "classic_modes.py"), "--quick"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    modes = [line.split(" val_accuracy")[0].strip() for line in result.stdout.strip().splitlines()]
    assert modes == ["1. model.fit", "1. kfitx.fit(strategy='memory')",
                     "2. kfitx.compat.fit_generator(aug.flow(...))", "3. model.train_on_batch in a Python loop",
                     "3. kfitx.fit(strategy='loop', step=train_on_batch)"]
