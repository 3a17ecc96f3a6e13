"""Keras's own trainer tests with every ``fit`` trained through ``kfitx.fit(strategy=S)``.

``keras/src/trainers/trainer_test.py`` ships inside the keras wheel. Each case here runs it in a fresh
``pytest`` process with ``tests/keras_trainer_route.py`` loaded: the backend trainer's ``fit`` (which
``keras.Model`` inherits, and which Keras's ``class M(Trainer, layers.Dense)`` test models use) calls
``kfitx.fit(self, x, y, strategy=S, **the arguments the test passed)``. Every case must pass that
passes with plain ``fit`` -- the same suite, the same skips -- and every fit must have gone through
the strategy. Nothing is deselected for kfitx; the Grain and torch ``DataLoader`` cases are deselected
only when that package is missing (plain ``fit`` fails them then too).

Measured on 2 cores (Keras 3.15.1): plain ``fit`` passes 165 of 173 on TensorFlow (8 skipped by Keras),
161 of 173 on JAX (12 skipped) and 100 of 173 on torch (73 skipped), with grain and torch installed;
every strategy reaches those counts (kfitx-accumulate with its deselections below). The default run checks one strategy
per backend (``loop`` on TensorFlow, about 2 minutes; ``memory`` on JAX, about 2 minutes); the other
strategies, both plugins and torch are ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from contract import run_bounded

HERE = Path(__file__).parent
MODULE = "keras.src.trainers.trainer_test"
#: What each fit reports as its strategy (``auto`` chooses among the built-ins).
TRAINED_BY = {"auto": {"memory", "generator"}}

#: Cases deselected for one strategy, each with the reason: what they inspect is Keras's machinery, not
#: anything a user of that strategy sees.
DESELECTED = {
    "accumulate": {"test_fit_sparse": "asserts that the optimizer is handed sparse gradient updates; gradient "
                                      "accumulation sums each micro-batch's gradients into dense totals first "
                                      "(the weights end the same)",
                   "test_fit_eval_flow_for_jax_model_weights": "asserts that model.fit on JAX empties the variables "
                                                               "between steps (Keras's memory optimisation of its own "
                                                               "train function); accumulate's step keeps them filled"},
}

DEFAULT = [("tensorflow", "loop"), ("jax", "memory")]
SLOW = [(backend, strategy) for backend in ("tensorflow", "jax", "torch")
        for strategy in ("memory", "generator", "loop", "auto", "tfdata", "accumulate")
        if (backend, strategy) not in DEFAULT]


def run_suite(tmp_path: Path, backend: str, strategy: str | None, deadline_s: float = 1500) -> dict:
    """Keras's trainer suite on ``backend`` with fit routed through ``strategy`` (``None``: plain fit)."""
    if importlib.util.find_spec(MODULE) is None:
        pytest.skip(f"this Keras ships without its tests ({MODULE})")
    if backend != "tensorflow" and importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'kfitx[{backend}]')")
    report = tmp_path / "report.json"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "KFITX_ROUTE_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("KFITX_ROUTE_STRATEGY", None)
    if strategy:
        env["KFITX_ROUTE_STRATEGY"] = strategy
    command = [sys.executable, "-m", "pytest", "-p", "keras_trainer_route", "--pyargs", MODULE, "-q",
               "-p", "no:cacheprovider", "-W", "ignore", "-rfE"]
    if DESELECTED.get(strategy):
        command += ["-k", " and ".join(f"not {name}" for name in DESELECTED[strategy])]
    _, output = run_bounded(command, env, deadline_s, cwd=tmp_path)
    assert report.exists(), output[-6000:]
    results = json.loads(report.read_text())
    results["output"] = output
    return results


#: The suite ran (plain fit passes 165 / 161 / 100), and that many of its tests trained through kfitx.
LEAST = {"tensorflow": (150, 95), "jax": (150, 90), "torch": (90, 60)}


def check(results: dict, backend: str, strategy: str) -> None:
    outcomes = results["outcomes"]
    failed = sorted(test for test, outcome in outcomes.items() if outcome == "failed")
    assert not failed, f"{len(failed)} of Keras's trainer tests fail through '{strategy}':\n" + "\n".join(
        failed) + "\n" + results["output"][-6000:]
    passed = sum(outcome == "passed" for outcome in outcomes.values())
    least_passed, least_routed = LEAST[backend]
    assert passed >= least_passed, (passed, results["output"][-3000:])
    reported = {name for fits in results["fits"].values() for name in fits}
    assert reported and reported <= TRAINED_BY.get(strategy, {strategy}), reported  # each fit went through kfitx
    assert len(results["fits"]) >= least_routed, len(results["fits"])  # tests whose fits went through kfitx


@pytest.mark.parametrize(("backend", "strategy"), DEFAULT)
def test_keras_trainer_suite_passes_through_a_strategy(tmp_path, backend, strategy):
    check(run_suite(tmp_path, backend, strategy), backend, strategy)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "strategy"), SLOW)
def test_keras_trainer_suite_passes_through_every_strategy(tmp_path, backend, strategy):
    check(run_suite(tmp_path, backend, strategy), backend, strategy)
