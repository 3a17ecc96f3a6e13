"""The `loop` strategy's custom step on the JAX backend: `KERAS_BACKEND=jax python examples/custom_loop_jax.py`.

The same loop as `custom_loop.py` (TensorFlow), written the JAX way. JAX
differentiates pure functions, so the step is a pure function of the variables'
values (`model.stateless_call`, `jax.value_and_grad`,
`optimizer.stateless_apply`), compiled with `jax.jit`; the Python step around
it reads the values, calls it, and assigns the new ones. kfitx calls it on
each batch (numpy arrays), after the batch hook, with every Keras callback.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import jax
import jax.numpy as jnp
import keras
from sklearn.datasets import load_digits

import kfitx

digits = load_digits()  # ships inside scikit-learn: nothing is downloaded
x, y = (digits.data / 16.0).astype("float32"), digits.target

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
loss_of = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(keras.optimizers.SGD(0.5), loss_of, metrics=["accuracy"])  # validation reports the compiled metrics


@jax.jit
def update(trainable, non_trainable, optimizer_variables, x, y):
    """One clipped SGD step as a pure function of the variables' values."""

    def loss_fn(trainable):
        logits, new_non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_of(y, logits), (logits, new_non_trainable)

    (loss, (logits, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in grads))
    grads = [g * jnp.minimum(1.0, 0.5 / norm) for g in grads]  # the global norm clipped to 0.5
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, grads, trainable)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return trainable, non_trainable, optimizer_variables, {"loss": loss, "accuracy": accuracy, "grad_norm": norm}


def clipped_step(model, batch):
    """One training step on one batch; returns the batch's logs."""
    x, y = batch
    groups = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)
    *values, logs = update(*([v.value for v in group] for group in groups), x, y)
    for group, new in zip(groups, values):
        for variable, value in zip(group, new):
            variable.assign(value)
    return logs


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
