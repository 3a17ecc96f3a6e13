"""Keras's own tests, with ``keras.Model.fit`` trained through each kfitx strategy.

Each run is a fresh process (``tests/keras_suite_worker.py``): Keras's
``SwapEMAWeightsTest`` (shipped with Keras, ``keras/src/callbacks/swap_ema_weights_test.py``)
is run with ``keras.Model.fit`` patched to call ``kfitx.fit(self, x, y, strategy=...,
**the same arguments)``, once per built-in and plugin. Its distributed test makes two
logical CPU devices (it resets TensorFlow's context), trains under
``tf.distribute.MirroredStrategy`` with ``SwapEMAWeights(swap_on_epoch=True)`` and a
``ModelCheckpoint``, and asserts that the checkpoint holds the EMA weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from contract import run_bounded

WORKER = Path(__file__).with_name("keras_suite_worker.py")
STRATEGIES = ["memory", "generator", "loop", "auto", "tfdata", "accumulate"]
DISTRIBUTED = "test_swap_ema_weights_with_tf_distribute"
ON_ONE_DEVICE = ["test_swap_ema_weights_with_invalid_optimizer", "test_swap_ema_weights",
                 "test_swap_ema_weights_on_epoch", "test_swap_ema_weights_with_loss_scale_optimizer"]
#: The strategy each kfitx fit reports (``auto`` chooses ``memory`` for these small arrays).
TRAINED_BY = {name: name for name in STRATEGIES} | {"auto": "memory"}


def _suite(out: Path, backend: str, tests: list[str], deadline_s: float) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    returncode, output = run_bounded([sys.executable, str(WORKER), str(out), *tests], env, deadline_s)
    assert returncode == 0, output[-4000:]
    results = json.loads(out.read_text())
    if "missing" in results:
        pytest.skip(results["missing"])
    return results


def _check(results: dict, strategy: str, test: str) -> None:
    result = results[strategy][test]
    assert result["passed"], "\n".join(result["problems"])
    if test != "test_swap_ema_weights_with_invalid_optimizer":  # that one's fit raises Keras's ValueError
        assert result["fits"] and set(result["fits"]) == {TRAINED_BY[strategy]}, result["fits"]  # through kfitx


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    return _suite(tmp_path_factory.mktemp("keras-suite") / "results.json", "tensorflow", [DISTRIBUTED], 300)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_swap_ema_weights_with_tf_distribute_through_each_strategy(distributed, strategy):
    _check(distributed, strategy, DISTRIBUTED)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_every_swap_ema_weights_test_through_each_strategy(tmp_path, backend):
    if backend == "jax":
        pytest.importorskip("jax", reason="JAX is not installed (pip install 'kfitx[jax]')")
    tests = ON_ONE_DEVICE + ([DISTRIBUTED] if backend == "tensorflow" else [])  # Keras skips it off TensorFlow
    results = _suite(tmp_path / "results.json", backend, tests, 540)
    for strategy in STRATEGIES:
        for test in tests:
            _check(results, strategy, test)
