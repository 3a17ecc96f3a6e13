"""The three classic Keras modes -- fit, fit_generator with ImageDataGenerator, train_on_batch -- on Keras 3.

Keras 2 tutorials ("when to use fit, fit_generator and train_on_batch") show three
ways of training. Keras 3 kept ``fit`` and ``train_on_batch``, removed
``fit_generator``, and moved ``ImageDataGenerator`` to its legacy namespace
(``tensorflow.keras.preprocessing.image``). Here each snippet runs as those
tutorials wrote it, on the 8x8 digits that ship with scikit-learn (nothing is downloaded):

1. ``model.fit(trainX, trainY, batch_size=32, epochs=EPOCHS)``  -- and the same through
   ``kfitx.fit(..., strategy="memory")``;
2. ``fit_generator(aug.flow(trainX, trainY, batch_size=BS), validation_data=(testX, testY),
   steps_per_epoch=len(trainX) // BS, epochs=EPOCHS)`` -- ``kfitx.compat.fit_generator``;
3. ``model.train_on_batch(batchX, batchY)`` in your own loop -- and the same step
   inside kfitx's ``loop`` strategy, which adds callbacks, History and the progress bar.

Run:  python examples/classic_modes.py [--epochs N] [--quick]
"""

from __future__ import annotations

import argparse
import time

import kfitx

kfitx.quiet_start()  # TensorFlow's start-up log lines hidden; TF_CPP_MIN_LOG_LEVEL=0 shows them

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tensorflow.keras.preprocessing.image import ImageDataGenerator  # Keras 3: legacy namespace



def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="2 epochs (a smoke run)")
    args = parser.parse_args()
    EPOCHS = 2 if args.quick else args.epochs
    BS = 32

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1) in [0, 1]
    trainX, testX, trainY, testY = train_test_split(x, digits.target, test_size=0.25, random_state=0)
    results = []

    def report(mode: str, history: keras.callbacks.History, seconds: float) -> None:
        results.append((mode, history.history["val_accuracy"][-1], seconds))
        print(f"{mode:<52} val_accuracy {history.history['val_accuracy'][-1]:.3f}   {seconds:5.1f} s")

    # 1. .fit -- the whole training set in RAM, no augmentation.
    keras.utils.set_random_seed(0)
    model = build_model()
    start = time.perf_counter()
    H = model.fit(trainX, trainY, batch_size=32, epochs=EPOCHS, validation_data=(testX, testY), verbose=0)
    report("1. model.fit", H, time.perf_counter() - start)

    keras.utils.set_random_seed(0)
    model = build_model()
    start = time.perf_counter()
    H = kfitx.fit(model, trainX, trainY, strategy="memory", batch_size=32, epochs=EPOCHS,
                  validation_data=(testX, testY), verbose=0)
    report("1. kfitx.fit(strategy='memory')", H, time.perf_counter() - start)

    # 2. .fit_generator -- on-the-fly augmentation (an ImageDataGenerator, as Keras 2 code wrote it).
    aug = ImageDataGenerator(rotation_range=20, zoom_range=0.15,
                             width_shift_range=0.2, height_shift_range=0.2, shear_range=0.15,
                             horizontal_flip=True, fill_mode="nearest")
    keras.utils.set_random_seed(0)
    model = build_model()
    start = time.perf_counter()
    H = kfitx.compat.fit_generator(model, aug.flow(trainX, trainY, batch_size=BS),
                                   validation_data=(testX, testY), steps_per_epoch=len(trainX) // BS,
                                   epochs=EPOCHS, verbose=0)
    report("2. kfitx.compat.fit_generator(aug.flow(...))", H, time.perf_counter() - start)

    # 3. .train_on_batch -- your own data iterator, one batch at a time.
    keras.utils.set_random_seed(0)
    model = build_model()
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for epoch in range(EPOCHS):
        order = rng.permutation(len(trainX))
        for i in range(0, len(order), BS):
            batchX, batchY = trainX[order[i:i + BS]], trainY[order[i:i + BS]]
            model.train_on_batch(batchX, batchY)
    loss, accuracy = model.evaluate(testX, testY, verbose=0)
    H = keras.callbacks.History()
    H.history = {"val_accuracy": [accuracy]}
    report("3. model.train_on_batch in a Python loop", H, time.perf_counter() - start)

    # ... and the same step in kfitx's loop strategy: callbacks, History, validation, progress bar.
    keras.utils.set_random_seed(0)
    model = build_model()
    start = time.perf_counter()

    def step(model: keras.Model, batch: tuple) -> dict:
        batchX, batchY = batch
        return model.train_on_batch(batchX, batchY, return_dict=True)

    H = kfitx.fit(model, trainX, trainY, strategy="loop", step=step, batch_size=BS, epochs=EPOCHS,
                  validation_data=(testX, testY), verbose=0)
    report("3. kfitx.fit(strategy='loop', step=train_on_batch)", H, time.perf_counter() - start)


if __name__ == "__main__":
    main()
