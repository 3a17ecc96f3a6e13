"""The search bench_tuner.py times: an ordinary keras-tuner script, run as `python search_script.py`
or as `kfitx tune search_script.py` (the same file, unchanged).

A RandomSearch over a small dense network on scikit-learn's digits (1,400 training and 397
validation samples, 64 features), a plain `keras_tuner.HyperModel` calling `model.fit`, seeded.

    python benchmarks/search_script.py --trials 10 --epochs 10 --directory DIR

--rss-log FILE (plain runs only) appends one JSON line per trial: its id and the process's peak
resident memory while it ran, sampled every 20 ms (kfitx tune records the same per worker).
"""

from __future__ import annotations

import argparse
import json
import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--trials", type=int, default=10)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--directory", default=".bench-search")
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--rss-log", default=None)
args = parser.parse_args()


def data(seed: int = 0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


class Plain(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.Input((64,)),
                                  keras.layers.Dense(hp.Choice("units", [32, 64, 128]), activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    def fit(self, hp, model, *fit_args, **kwargs):
        return model.fit(*fit_args, **kwargs)


class Search(keras_tuner.RandomSearch):
    """RandomSearch; with --rss-log, each trial's peak resident memory is logged."""

    def on_trial_begin(self, trial):
        if args.rss_log:
            self._peak, self._stop = 0, threading.Event()

            def sample():
                process = psutil.Process()
                while not self._stop.wait(0.02):
                    self._peak = max(self._peak, process.memory_info().rss)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        if args.rss_log:
            self._stop.set()
            self._sampler.join(1.0)
            with open(args.rss_log, "a") as f:
                f.write(json.dumps({"trial_id": trial.trial_id, "peak_rss_mib": self._peak / 2**20}) + "\n")
        super().on_trial_end(trial)


x, y, xv, yv = data()
keras.utils.set_random_seed(args.seed)
tuner = Search(Plain(), objective="val_accuracy", max_trials=args.trials, seed=args.seed, directory=args.directory,
               project_name="bench", overwrite=True)
tuner.search(x, y, epochs=args.epochs, batch_size=32, validation_data=(xv, yv), verbose=0)
best = tuner.oracle.get_best_trials(1)[0]
print(f"best trial {best.trial_id}: val_accuracy {best.score:.4f}", flush=True)
