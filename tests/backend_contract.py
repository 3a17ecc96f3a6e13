"""Run in a subprocess with KERAS_BACKEND set (Keras fixes its backend at import): the fit contract on that backend.

Prints one JSON object: the conformance kit's result per strategy (built-ins and
the two plugins in ``plugins/``), ``BackupAndRestore`` resuming an interrupted
fit per strategy, batch hooks seeing every batch, and the refusal of a
strategy that does not declare the backend. ``tests/test_backends.py`` reads it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins" / "kfitx-tfdata"), str(ROOT / "plugins" / "kfitx-accumulate")]

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kfitx  # noqa: E402
import kfitx.testing  # noqa: E402
import kfitx_accumulate  # noqa: E402
import kfitx_tfdata  # noqa: E402


def conformance(rules: list[str] | None) -> dict[str, list[str]]:
    results = {}
    for strategy, plugin in (("memory", None), ("generator", None), ("loop", None), ("auto", None),
                             (kfitx_tfdata.TFDataStrategy, kfitx_tfdata),
                             (kfitx_accumulate.AccumulateStrategy, kfitx_accumulate)):
        report = kfitx.testing.check_strategy(strategy, rules=rules, plugin=plugin, raise_on_failure=False)
        name = strategy if isinstance(strategy, str) else strategy.name
        results[name] = [f"{r.rule}: {r.status}" + ("" if r.status == "passed" else f" ({r.detail})")
                         for r in report.results]
    return results


class _Crash(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("crash at epoch 2")


def _model() -> keras.Model:
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def backup_and_restore() -> dict[str, object]:
    """An interrupted fit resumed with BackupAndRestore ends with the uninterrupted fit's weights."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = rng.integers(0, 3, size=160)
    out = {}
    for strategy in ("memory", "generator", "loop"):
        args = dict(strategy=strategy, epochs=4, batch_size=32, shuffle=False, verbose=0)
        whole = _model()
        kfitx.fit(whole, x, y, **args)
        with tempfile.TemporaryDirectory() as backup:
            model = _model()
            try:
                kfitx.fit(model, x, y, callbacks=[keras.callbacks.BackupAndRestore(backup), _Crash()], **args)
            except RuntimeError:
                pass
            model = _model()
            history = kfitx.fit(model, x, y, callbacks=[keras.callbacks.BackupAndRestore(backup)], **args)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(whole.get_weights(), model.get_weights()))
        out[strategy] = {"epochs": history.epoch, "max_weight_difference": diff}
    return out


def batch_hooks() -> dict[str, object]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 8)).astype("float32")
    y = rng.integers(0, 3, size=100)
    seen = []

    def hook(batch, index, epoch):
        seen.append((epoch, index, int(np.asarray(batch[0]).shape[0])))
        return batch

    kfitx.fit(_model(), x, y, strategy="loop", batch_hooks=[hook], epochs=2, batch_size=32, verbose=0)
    return {"seen": seen}


def refusal() -> str:
    class TensorFlowOnly(kfitx.Strategy):
        name = "tf-only"
        description = "declares only TensorFlow"
        backends = ("tensorflow",)

        def fit(self, model, plan):  # pragma: no cover - never reached off TensorFlow
            raise AssertionError("trained on an undeclared backend")

    try:
        kfitx.fit(_model(), np.zeros((4, 8), "float32"), np.zeros(4), strategy=TensorFlowOnly, verbose=0)
    except kfitx.UnsupportedBackendError as err:
        return str(err)
    return "no error"


if __name__ == "__main__":
    rules = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] != "all" else None
    print(json.dumps({"backend": keras.backend.backend(), "conformance": conformance(rules),
                      "backup": backup_and_restore(), "hooks": batch_hooks(), "refusal": refusal()}))
