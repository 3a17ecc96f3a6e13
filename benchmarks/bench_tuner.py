"""A 10-trial RandomSearch through kfitx's StrategyHyperModel ("memory") vs a plain HyperModel
calling model.fit, on the same model, data, search space and seed. Prints wall times and the ratio.

    python benchmarks/bench_tuner.py [--trials 10] [--epochs 10] [--repeats 2]

Target (issue 5): kfitx / plain wall-time ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from kfitx.tuner import StrategyHyperModel  # noqa: E402


def data(seed: int = 0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def build(hp):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hp.Choice("units", [32, 64, 128]),
                                                                     activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


class Plain(keras_tuner.HyperModel):
    def build(self, hp):
        return build(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, **kwargs)


def search(hypermodel, trials, epochs, arrays):
    x, y, xv, yv = arrays
    with tempfile.TemporaryDirectory() as directory:
        tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=trials, seed=1,
                                         directory=directory, project_name="bench")
        start = time.perf_counter()
        tuner.search(x, y, epochs=epochs, batch_size=32, validation_data=(xv, yv), verbose=0)
        seconds = time.perf_counter() - start
        best = tuner.oracle.get_best_trials(1)[0].score
    return seconds, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    arrays = data()
    search(Plain(), 1, 1, arrays)  # warm TensorFlow up once, for neither side
    times = {"plain": [], "kfitx": []}
    for repeat in range(args.repeats):
        order = ["plain", "kfitx"] if repeat % 2 == 0 else ["kfitx", "plain"]
        for side in order:
            hypermodel = Plain() if side == "plain" else StrategyHyperModel(build, strategies="memory")
            seconds, best = search(hypermodel, args.trials, args.epochs, arrays)
            times[side].append(seconds)
            print(f"repeat {repeat + 1} {side:5s}: {args.trials} trials x {args.epochs} epochs in {seconds:6.1f} s,"
                  f" best val_accuracy {best:.4f}", flush=True)
    plain, ours = statistics.median(times["plain"]), statistics.median(times["kfitx"])
    print(f"\nmedian wall time: plain {plain:.1f} s, kfitx {ours:.1f} s")
    print(f"ratio kfitx/plain search wall time: {ours / plain:.2f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
