"""Keras's own tests with ``keras.Model.fit`` trained through kfitx, run in a fresh process by tests/test_keras_suite.py.

``python keras_suite_worker.py OUT.json TEST_NAME...``

Runs each named test of Keras's ``SwapEMAWeightsTest``
(``keras/src/callbacks/swap_ema_weights_test.py``, shipped with Keras) once per
strategy -- every built-in and the two plugins in ``plugins/`` -- with
``keras.Model.fit`` patched to call ``kfitx.fit(self, x, y, strategy=..., **the
same arguments)`` (a fit the strategy itself makes, ``memory`` calling
``model.fit``, goes to Keras's own). Writes, per strategy and test, whether it
passed (with the failure's text) and the strategy each kfitx fit reported. A
fresh process because ``test_swap_ema_weights_with_tf_distribute`` resets
TensorFlow's context to make two logical CPU devices.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import unittest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KFITX_DISABLE_PLUGIN_AUTOLOAD"] = "1"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "keras.src.callbacks.swap_ema_weights_test"


def run(out: str, names: list[str]) -> None:
    if importlib.util.find_spec(MODULE) is None:
        with open(out, "w") as f:
            json.dump({"missing": f"this Keras ships without its tests ({MODULE})"}, f)
        return
    import keras

    sys.path[:0] = [os.path.join(ROOT, "plugins", "kfitx-tfdata"), os.path.join(ROOT, "plugins", "kfitx-accumulate")]
    import kfitx
    import kfitx_accumulate
    import kfitx_tfdata

    suite = importlib.import_module(MODULE)
    original = keras.Model.fit
    current = {"strategy": None, "inside": False, "fits": []}

    def fit(self, x=None, y=None, **kwargs):
        if current["inside"]:  # the strategy's own model.fit
            return original(self, x, y, **kwargs)
        current["inside"] = True
        try:
            history = kfitx.fit(self, x, y, strategy=current["strategy"], **kwargs)
        finally:
            current["inside"] = False
        current["fits"].append(history.kfitx["strategy"])
        return history

    keras.Model.fit = fit
    strategies = {"memory": "memory", "generator": "generator", "loop": "loop", "auto": "auto",
                  "tfdata": kfitx_tfdata.TFDataStrategy, "accumulate": kfitx_accumulate.AccumulateStrategy}
    results: dict[str, dict] = {}
    for label, strategy in strategies.items():
        current["strategy"] = strategy
        for name in names:
            current["fits"] = []
            outcome = unittest.TestResult()
            suite.SwapEMAWeightsTest(name).run(outcome)
            problems = [text[-3000:] for _, text in outcome.errors + outcome.failures]
            results.setdefault(label, {})[name] = {"passed": outcome.wasSuccessful() and outcome.testsRun == 1,
                                                   "problems": problems, "fits": list(current["fits"])}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
