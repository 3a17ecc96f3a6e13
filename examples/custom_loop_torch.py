"""The `loop` strategy's custom step on the PyTorch backend: `KERAS_BACKEND=torch python examples/custom_loop_torch.py`.

The same loop as `custom_loop.py` (TensorFlow), written the PyTorch way: a
forward pass, `loss.backward()`, the gradients' norm clipped with
`torch.nn.utils.clip_grad_norm_`, and the Keras optimizer applied under
`torch.no_grad()`, as Keras's own torch train step does. kfitx calls it on each
batch (torch tensors), after the batch hook, with every Keras callback.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported

import keras
import torch
from sklearn.datasets import load_digits

import kfitx

digits = load_digits()  # ships inside scikit-learn: nothing is downloaded
x, y = (digits.data / 16.0).astype("float32"), digits.target

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])  # validation reports the compiled metrics


def clipped_step(model, batch):
    """One training step on one batch; returns the batch's logs."""
    x, y = batch
    model.zero_grad()
    logits = model(x, training=True)
    loss = model.compute_loss(x, y, logits)
    loss.backward()
    parameters = [v.value for v in model.trainable_weights]
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=0.5)
    with torch.no_grad():
        model.optimizer.apply([p.grad for p in parameters], model.trainable_weights)
    accuracy = (logits.argmax(-1) == y).float().mean()
    return {"loss": loss.detach(), "accuracy": accuracy, "grad_norm": norm}


def halve_learning_rate(batch, step_index, epoch):
    """A per-epoch learning-rate schedule, done in the loop."""
    if step_index == 0 and epoch > 0:
        model.optimizer.learning_rate.assign(model.optimizer.learning_rate * 0.5)
    return batch


class RecordLearningRate(keras.callbacks.Callback):
    """An ordinary Keras callback: it sees the epoch's logs as under model.fit."""

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)


history = kfitx.fit(model, kfitx.data.arrays(x, y), strategy="loop",
                    step=clipped_step, batch_hooks=[halve_learning_rate],
                    epochs=5, batch_size=64, validation_split=0.2, seed=0, verbose=0,
                    callbacks=[RecordLearningRate()])

print(keras.backend.backend(), history.kfitx)
for epoch in history.epoch:
    row = {key: round(float(values[epoch]), 4) for key, values in history.history.items()}
    print(f"epoch {epoch}: {row}")
