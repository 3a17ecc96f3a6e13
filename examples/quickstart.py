"""The README's first example: train on scikit-learn's digits with the memory strategy."""

import kfitx

kfitx.quiet_start()  # TensorFlow's start-up log lines hidden; TF_CPP_MIN_LOG_LEVEL=0 shows them

import keras
from sklearn.datasets import load_digits


digits = load_digits()  # ships inside scikit-learn: nothing is downloaded
x, y = digits.data / 16.0, digits.target

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

history = kfitx.fit(model, kfitx.data.arrays(x, y), strategy="memory",
                    epochs=40, validation_split=0.2, verbose=0, seed=0)
print(history.kfitx)
print(f"val_accuracy after {len(history.epoch)} epochs: {history.history['val_accuracy'][-1]:.3f}")
