"""A small keras-tuner search script for tests/test_tune.py (run by `kfitx tune` or plain python).

--kfitx trains through kfitx's StrategyHyperModel, else a plain HyperModel calling model.fit.
--sleep adds seconds per epoch (a trial long enough to be killed in); --crash-trial ID makes the
process running that trial kill itself with SIGKILL, every time.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import keras
import keras_tuner
import numpy as np

import kfitx.tuner

parser = argparse.ArgumentParser()
parser.add_argument("--trials", type=int, default=4)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--directory", default="search")
parser.add_argument("--kfitx", action="store_true")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--crash-trial", default=None)
parser.add_argument("--no-overwrite", action="store_true")
args = parser.parse_args()


def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 64, step=4), activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def crash_if_told(callbacks):
    for cb in callbacks or []:
        trial = getattr(cb, "trial", None)
        if trial is not None and trial.trial_id == args.crash_trial:
            os.kill(os.getpid(), signal.SIGKILL)


class Plain(keras_tuner.HyperModel):
    def build(self, hp):
        return build(hp)

    def fit(self, hp, model, *fit_args, **kwargs):
        crash_if_told(kwargs.get("callbacks"))
        return model.fit(*fit_args, **kwargs)


class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(args.sleep)


rng = np.random.default_rng(0)
x = rng.normal(size=(200, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)
hypermodel = kfitx.tuner.StrategyHyperModel(build) if args.kfitx else Plain()
tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=args.trials, seed=1,
                                 directory=args.directory, project_name="p", overwrite=not args.no_overwrite)
tuner.search(x[:150], y[:150], validation_data=(x[150:], y[150:]), epochs=args.epochs, verbose=0,
             callbacks=[Slow()] if args.sleep else [])
print(f"AFTER SEARCH pid={os.getpid()} chief={kfitx.tuner.is_chief()} trials={len(tuner.oracle.trials)}", flush=True)
