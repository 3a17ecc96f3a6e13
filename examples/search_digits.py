"""A keras-tuner search on the 8x8 digits, trained through ``kfitx.fit``.

The data set ships inside scikit-learn (``sklearn.datasets.load_digits``:
1,797 images of 8x8 pixels, 10 classes), so nothing is downloaded. A small
dense network is tuned (hidden layers, units, dropout, learning rate, batch
size) with ``keras_tuner.RandomSearch`` through ``kfitx.tuner.StrategyHyperModel``,
so the training strategy is one more hyperparameter while ``build_model`` stays
plain Keras: ``memory`` (``model.fit`` on the arrays), ``generator`` with on-the-fly
augmentation (an ``ImageDataGenerator``: small rotations, shifts and zooms,
done on whole batches) and ``loop`` (kfitx's own training loop). At the end the script prints a leaderboard (trial, strategy and
hyperparameters, best val_accuracy, training throughput, peak memory: the table of
``kfitx report``), then reloads the best model and evaluates it on the validation set.

Run::

    kfitx tune examples/search_digits.py             # 8 trials x 20 epochs, trials in parallel processes
    python examples/search_digits.py                 # the same in this one process
    python examples/search_digits.py --quick         # 2 trials x 3 epochs (smoke test)
    python examples/search_digits.py --min-accuracy 0.95   # exit 1 below that
    kfitx tune --time-budget 2m examples/search_digits.py --trials 100   # as many trials as 2 minutes allow

Needs scikit-learn (``pip install kfitx[examples]``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

import kfitx

kfitx.quiet_start()  # TensorFlow's start-up log lines hidden; TF_CPP_MIN_LOG_LEVEL=0 shows them

import keras
import keras_tuner
import numpy as np

import kfitx.tuner
from kfitx import report
from kfitx.tuner import StrategyHyperModel

NUM_CLASSES = 10
#: The strategies the search tries, and each one's fixed settings.
STRATEGIES = ["memory", "generator", "loop"]
AUGMENT = dict(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1)
SETTINGS = {"memory": "arrays in RAM", "generator": "augment=ImageDataGenerator(" +
            ", ".join(f"{k}={v}" for k, v in AUGMENT.items()) + ")", "loop": "model's own step"}


def strategy_options() -> dict[str, dict[str, Any]]:
    """Fixed options per strategy: the generator augments (ImageDataGenerator from tf.keras, Keras 3's legacy home)."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    return {"generator": {"augment": ImageDataGenerator(**AUGMENT)}}


def load_data(seed: int, validation_fraction: float = 0.2) -> tuple[np.ndarray, ...]:
    """The digits as 8x8x1 images scaled to [0, 1], split train / validation (stratified, seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]  # pixel values are 0..16
    y = digits.target.astype("int32")
    return tuple(train_test_split(x, y, test_size=validation_fraction, stratify=y, random_state=seed))


def build_model(hp: keras_tuner.HyperParameters) -> keras.Model:
    """A dense classifier for 8x8 images. It knows nothing of strategies."""
    inputs = keras.Input(shape=(8, 8, 1), name="pixels")
    h = keras.layers.Flatten()(inputs)
    units = hp.Choice("units", [64, 128, 256])
    dropout = hp.Float("dropout", 0.0, 0.3, step=0.1)
    for _ in range(hp.Int("layers", 1, 2)):
        h = keras.layers.Dense(units, activation="relu")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="digits_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8, help="trials to run (default 8)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 trials of 3 epochs (overrides --trials / --epochs)")
    parser.add_argument("--directory", default=".kfitx-search",
                        help="where keras-tuner keeps its trials (default .kfitx-search, relative to "
                             "the current directory)")
    parser.add_argument("--resume", action="store_true",
                        help="resume a search found in --directory instead of starting over")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split, the search and "
                                                              "the fits (default 42)")
    parser.add_argument("--verbose", type=int, choices=(0, 2), default=0,
                        help="Keras output per fit: 0 none (default), 2 one line per epoch")
    parser.add_argument("--time-budget", default=None, metavar="DURATION",
                        help="stop the search after this wall time, e.g. 90s, 20m (with --resume, a larger one "
                             "continues it)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="exit with status 1 if the best model's validation accuracy is lower")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs = 2, 3
    if args.trials < 1 or args.epochs < 1:
        parser.error("--trials and --epochs must be at least 1")
    return args


class ProgressSearch(keras_tuner.RandomSearch):
    """RandomSearch printing one line per finished trial: trial, strategy, score, seconds, best so far.

    Under ``kfitx tune`` the trials run in worker processes, whose oracle is a client of the
    chief's (it has no ``trials``), and kfitx prints the same line for every trial itself.
    """

    def on_trial_begin(self, trial: Any) -> None:
        self._trial_start = time.perf_counter()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)
        if not kfitx.tuner.is_chief():  # a kfitx tune worker
            return
        scores = [t.score for t in self.oracle.trials.values() if t.score is not None]
        score = "failed" if trial.score is None else f"{trial.score:.4f}"
        best = f"{max(scores):.4f}" if scores else "-"
        done = sum(t.status in ("COMPLETED", "FAILED", "INVALID") for t in self.oracle.trials.values())
        print(f"trial {trial.trial_id} ({done}/{self.oracle.max_trials}) "
              f"strategy {trial.hyperparameters.get('strategy')}: val_accuracy {score} in "
              f"{time.perf_counter() - self._trial_start:.1f} s; best so far {best}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    x_train, x_val, y_train, y_val = load_data(args.seed)
    print(f"digits: {len(x_train)} training and {len(x_val)} validation samples, "
          f"{x_train.shape[1]}x{x_train.shape[2]} pixels, {NUM_CLASSES} classes")
    print(f"search: RandomSearch, {args.trials} trial(s) x {args.epochs} epoch(s), "
          f"strategies {', '.join(STRATEGIES)}, directory {args.directory}")

    # The strategy and the batch size are hyperparameters too; build_model never changes.
    hypermodel = StrategyHyperModel(build_model, strategies=STRATEGIES, strategy_options=strategy_options(),
                                    tune_batch_size=[32, 64], time_budget=args.time_budget)
    tuner = ProgressSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=args.trials,
        seed=args.seed,
        directory=args.directory,
        project_name="digits",
        overwrite=not args.resume,
    )
    if kfitx.tuner.is_chief():  # under `kfitx tune`, once (not in every worker's log)
        print(kfitx.tuner.search_space_table(tuner))  # keras-tuner's search_space_summary() prints raw dicts
        for name in STRATEGIES:
            print(f"  strategy {name}: {SETTINGS[name]}")

    start = time.perf_counter()
    # verbose=1 keeps keras-tuner's per-trial report; the fits' own output is --verbose.
    tuner.search(x_train, y_train, epochs=args.epochs, validation_data=(x_val, y_val),
                 verbose=args.verbose, seed=args.seed)
    elapsed = time.perf_counter() - start

    print(f"\nLeaderboard ({len(tuner.oracle.trials)} trial(s), search took {elapsed:.1f}s)")
    print(report.leaderboard(report.load(tuner.project_dir)))  # the table `kfitx report` prints
    print("trial: the trial's folder (trial_<id>) under the search directory; in a fresh search, "
          "keras-tuner's 'Trial #n' is trial n-1.\nval_accuracy: the trial's best epoch. samples/s: "
          "training samples x epochs / wall time of kfitx.fit (tracing and validation included).\n"
          "peak MiB: the process's peak resident memory during the trial. strategy generator: the "
          + SETTINGS["generator"] + " on training batches.")

    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].score is None:
        print("\nNo trial completed; see the errors above.", file=sys.stderr)
        return 1
    best_trial = best_trials[0]
    with warnings.catch_warnings():
        # The reloaded model's optimizer is unbuilt, so Keras warns that it skips the saved
        # optimizer state; only the weights matter for evaluation.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        best_model = tuner.get_best_models(1)[0]  # the best epoch's weights of the best trial
    _, accuracy = best_model.evaluate(x_val, y_val, verbose=0)
    values = ", ".join(f"{k}={report.format_value(k, v)}" for k, v in sorted(best_trial.hyperparameters.values.items()))
    print(f"\nBest trial {best_trial.trial_id}: {values}")
    print(f"Best model validation accuracy: {accuracy:.4f}")
    if args.min_accuracy is not None and accuracy < args.min_accuracy:
        print(f"Validation accuracy {accuracy:.4f} is below --min-accuracy {args.min_accuracy}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
