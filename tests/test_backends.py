"""Every strategy on every Keras backend: TensorFlow here, JAX and torch in subprocesses (Keras fixes its backend at import).

The JAX run is part of the default suite (``jax`` is in the ``dev`` extra); the
torch run is ``slow`` (``pip install "kfitx[torch]"``; its wheel is large), and
each is skipped, with the reason, where that backend is not installed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kfitx
from kfitx.cli import main
from kfitx.registry import get_registry

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = Path(__file__).resolve().parent / "backend_contract.py"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _run(backend: str, *args: str, script: Path = CONTRACT, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def _check_contract(backend: str) -> None:
    result = _run(backend)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert set(report["conformance"]) == {"memory", "generator", "loop", "auto", "tfdata", "accumulate"}
    for strategy, rules in report["conformance"].items():
        assert len(rules) == 13 and all(rule.endswith(": passed") for rule in rules), (strategy, rules)
    for strategy, resumed in report["backup"].items():  # interrupted at epoch 2 of 4, resumed there
        assert resumed["epochs"] == [2, 3], (strategy, resumed)
        assert resumed["max_weight_difference"] <= 1e-6, (strategy, resumed)  # tolerance: 1e-6
    assert report["hooks"]["seen"] == [[e, i, 32 if i < 3 else 4] for e in (0, 1) for i in range(4)]
    assert "Strategy 'tf-only' trains on the backends it declares: tensorflow." in report["refusal"]
    assert f"Received: KERAS_BACKEND={backend}" in report["refusal"]


@pytest.mark.skipif(not _installed("jax"), reason="JAX is not installed (pip install 'kfitx[jax]')")
def test_every_strategy_keeps_the_contract_on_jax() -> None:
    _check_contract("jax")


@pytest.mark.slow
@pytest.mark.skipif(not _installed("torch"), reason="PyTorch is not installed (pip install 'kfitx[torch]')")
def test_every_strategy_keeps_the_contract_on_torch() -> None:
    _check_contract("torch")


def _check_example(backend: str) -> None:
    pytest.importorskip("sklearn")
    result = _run(backend, script=ROOT / "examples" / f"custom_loop_{backend}.py", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(backend) and "'step': 'user'" in lines[0] and "'batch_hooks': 1" in lines[0]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 5
    assert epochs[0].endswith("'learning_rate': 0.5}") and epochs[1].endswith("'learning_rate': 0.25}")
    assert all("val_accuracy" in line and "grad_norm" in line for line in epochs)
    last = ast.literal_eval(epochs[-1].split(": ", 1)[1])  # the example prints a dict of rounded floats
    assert last["val_accuracy"] > 0.75, last  # it learns (0.86-0.88 on JAX and torch here)


@pytest.mark.skipif(not _installed("jax"), reason="JAX is not installed (pip install 'kfitx[jax]')")
def test_user_step_example_on_jax() -> None:
    _check_example("jax")


@pytest.mark.slow
@pytest.mark.skipif(not _installed("torch"), reason="PyTorch is not installed (pip install 'kfitx[torch]')")
def test_user_step_example_on_torch() -> None:
    _check_example("torch")


def test_builtins_declare_every_backend() -> None:
    for name in ("memory", "generator", "loop", "auto"):
        assert get_registry().strategy_class(name).backends == ("tensorflow", "jax", "torch")
    assert kfitx.Strategy.backends == ("tensorflow",)  # a plugin declares the others once it passes on them


def test_a_strategy_is_refused_on_a_backend_it_does_not_declare(make_model, xy) -> None:
    class JaxOnly(kfitx.Strategy):
        name = "jax-only"
        description = "declares only JAX"
        backends = ("jax",)

        def fit(self, model, plan):  # pragma: no cover - refused before
            raise AssertionError("trained on an undeclared backend")

    x, y = xy
    with pytest.raises(kfitx.UnsupportedBackendError) as info:
        kfitx.fit(make_model(), x, y, strategy=JaxOnly, verbose=0)
    text = str(info.value)
    assert "declares: jax" in text and "Received: KERAS_BACKEND=tensorflow" in text and "kfitx list" in text


def test_kfitx_list_shows_each_strategys_backends(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.strip().splitlines()
    assert "backends" in header
    assert any(row.startswith("memory") and "tensorflow,jax,torch" in row for row in rows)
