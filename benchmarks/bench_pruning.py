"""Search quality: median pruning of losing trials, and augmentation tuned with kfitx.tuner.Tunable.

    python benchmarks/bench_pruning.py [--only pruning,augment] [--trials 16] [--epochs 10] [--seed 7]
    python benchmarks/bench_pruning.py --quick          # a smoke run of both

* pruning: a RandomSearch on scikit-learn's digits (nothing downloaded), an MLP trained with SGD,
  ``lr`` log-uniform in [1e-5, 0.3] and ``units`` in {32, 64, 128}, the same tuner seed twice in
  this process: without pruning, then with ``pruning="median"`` (kfitx's defaults). Both see the
  same hyperparameter sets (printed, and checked). Reported: epochs trained in all, wall time of
  ``tuner.search``, best val_accuracy. Targets: epochs <= 0.7x; best score no worse than 0.01 below.
* augment: the ``generator`` strategy on the digits as 8x8x1 images, an MLP with Adam (``lr``
  log-uniform in [1e-3, 1e-2]), the same seed and budget for each search: no augmentation (memory),
  a fixed ``ImageDataGenerator`` (the one ``examples/search_digits.py`` uses), the augmentation's
  strength as a ``Tunable``, and the built-in ``augment="tune-no-flip"``. Reported: best val_accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kfitx  # noqa: E402

kfitx.quiet_start()

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from kfitx import report  # noqa: E402
from kfitx.tuner import StrategyHyperModel, Tunable  # noqa: E402

FIXED_AUGMENT = dict(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1)


def digits(seed: int) -> tuple[np.ndarray, ...]:
    """The digits as 8x8x1 images in [0, 1]: 1,437 for training, 360 for validation (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return tuple(train_test_split(x, data.target.astype("int32"), test_size=0.2, stratify=data.target,
                                  random_state=seed))


#: Set by main: every model starts from the same weights for the same hyperparameters, in every search.
SEED = [0]


def sgd_model(hp: keras_tuner.HyperParameters) -> keras.Model:
    keras.utils.set_random_seed(SEED[0])
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(hp.Choice("units", [32, 64, 128]), activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(hp.Float("lr", 1e-5, 0.3, sampling="log")),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def adam_model(hp: keras_tuner.HyperParameters) -> keras.Model:
    keras.utils.set_random_seed(SEED[0])
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def run_search(hypermodel: StrategyHyperModel, data: tuple[np.ndarray, ...], args: argparse.Namespace,
               directory: str, name: str) -> tuple[float, report.Search]:
    """One RandomSearch; returns its wall time and what ``kfitx report`` reads of it."""
    x, x_val, y, y_val = data
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=args.trials, seed=args.seed,
                                     directory=directory, project_name=name, overwrite=True)
    start = time.perf_counter()
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=args.epochs, batch_size=32, verbose=0, seed=args.seed)
    return time.perf_counter() - start, report.load(tuner.project_dir)


def hp_sets(search: report.Search) -> list[dict]:
    ordered = sorted(search.trials, key=lambda t: int(t.trial_id))
    return [{k: v for k, v in t.values.items() if k != "strategy"} for t in ordered]


def bench_pruning(data: tuple[np.ndarray, ...], args: argparse.Namespace, directory: str) -> None:
    results = {}
    for label, pruning in (("unpruned", None), ("pruned", "median")):
        results[label] = run_search(StrategyHyperModel(sgd_model, pruning=pruning), data, args, directory, label)
    sets = {label: hp_sets(search) for label, (_, search) in results.items()}
    assert sets["unpruned"] == sets["pruned"], "the two searches drew different hyperparameters"
    pruned_rows = {t.trial_id: t for t in results["pruned"][1].trials}
    unpruned_rows = {t.trial_id: t for t in results["unpruned"][1].trials}
    print(f"pruning: RandomSearch, {args.trials} trials x {args.epochs} epochs, seed {args.seed}, SGD on digits")
    print(f"{'trial':>5}  {'lr':>9}  {'units':>5}  {'unpruned':>8}  {'pruned':>8}  epochs (pruned search)")
    for trial_id in sorted(unpruned_rows, key=int):
        a, b = unpruned_rows[trial_id], pruned_rows[trial_id]
        stop = f"stopped after {b.pruned_epoch}" if b.pruned_epoch else "all"
        print(f"{trial_id:>5}  {a.values['lr']:9.3g}  {a.values['units']:>5}  {a.score or 0:8.4f}  "
              f"{b.score or 0:8.4f}  {b.record.get('epochs')} ({stop})")
    summary = {}
    for label, (seconds, search) in results.items():
        epochs = sum(t.record.get("epochs") or 0 for t in search.trials)
        summary[label] = (epochs, seconds, search.best.score if search.best else float("nan"))
        pruned = sum(t.pruned_epoch is not None for t in search.trials)
        print(f"{label:>8}: {epochs:4d} epochs trained, {seconds:6.1f} s, best val_accuracy "
              f"{summary[label][2]:.4f}" + (f", {pruned} trial(s) pruned" if label == "pruned" else ""))
    (e0, s0, b0), (e1, s1, b1) = summary["unpruned"], summary["pruned"]
    print(f"epochs pruned/unpruned: {e1 / e0:.2f}  (target <= 0.70)")
    print(f"wall time pruned/unpruned: {s1 / s0:.2f}")
    print(f"best score pruned - unpruned: {b1 - b0:+.4f}  (target >= -0.01)")


def bench_augment(data: tuple[np.ndarray, ...], args: argparse.Namespace, directory: str) -> None:
    from kfitx.augment import image_data_generator_class

    idg = image_data_generator_class()

    def strength(hp: keras_tuner.HyperParameters):
        shift = hp.Choice("shift", [0.0, 0.1, 0.2])
        return idg(rotation_range=hp.Int("rotation", 0, 20, step=10), width_shift_range=shift,
                   height_shift_range=shift, zoom_range=hp.Choice("zoom", [0.0, 0.1, 0.2]))

    searches = {
        "no augmentation (memory)": StrategyHyperModel(adam_model, strategies="memory"),
        "fixed ImageDataGenerator": StrategyHyperModel(adam_model, strategies="generator",
                                                       strategy_options={"generator": {"augment": idg(**FIXED_AUGMENT)}}),
        "Tunable ImageDataGenerator": StrategyHyperModel(adam_model, strategies="generator",
                                                         strategy_options={"generator": {"augment": Tunable(strength)}}),
        "augment='tune-no-flip'": StrategyHyperModel(adam_model, strategies="generator",
                                                     strategy_options={"generator": {"augment": "tune-no-flip"}}),
    }
    print(f"\naugment: RandomSearch, {args.trials} trials x {args.epochs} epochs, seed {args.seed}, Adam on digits")
    for i, (label, hypermodel) in enumerate(searches.items()):
        seconds, search = run_search(hypermodel, data, args, directory, f"aug{i}")
        best = search.best
        values = {k: v for k, v in (best.values if best else {}).items() if k != "strategy"}
        shown = ", ".join(f"{k}={report.format_value(k, v)}" for k, v in sorted(values.items()))
        print(f"{label:>27}: best val_accuracy {best.score if best else float('nan'):.4f} in {seconds:6.1f} s ({shown})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="pruning,augment", help="pruning, augment, or both (default)")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 trials x 3 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs = 5, 3
    SEED[0] = args.seed
    only = {part.strip() for part in args.only.split(",")}
    data = digits(args.seed)
    with tempfile.TemporaryDirectory(prefix="kfitx-bench-pruning-") as directory:
        if "pruning" in only:
            bench_pruning(data, args, directory)
        if "augment" in only:
            bench_augment(data, args, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
