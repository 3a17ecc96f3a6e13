"""A custom training loop that keeps every Keras callback: the `loop` strategy.

Two pieces of custom logic, the reason this mode exists:

* `clipped_step` -- a GradientTape step that clips the gradients' global norm
  (compiled with @tf.function; it returns the batch's logs as a dict);
* `halve_learning_rate` -- a batch hook that sees every batch before the step;
  at the first batch of each epoch after the first it halves the learning rate,
  and it returns the batch unchanged (a hook may also return a new one).

The callbacks, History, validation and the progress bar behave as in
`model.fit`. Runs as is: scikit-learn's digits ship with scikit-learn.
"""


import kfitx

kfitx.quiet_start()  # TensorFlow's start-up log lines hidden; TF_CPP_MIN_LOG_LEVEL=0 shows them

import keras
import tensorflow as tf
from sklearn.datasets import load_digits


digits = load_digits()  # ships inside scikit-learn: nothing is downloaded
x, y = digits.data / 16.0, digits.target

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])  # validation reports the compiled metrics


@tf.function(reduce_retracing=True)
def clipped_step(model, batch):
    """One training step on one batch; returns the batch's logs."""
    x, y = batch
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = model.compute_loss(x, y, logits)
    gradients = tape.gradient(loss, model.trainable_weights)
    gradients, norm = tf.clip_by_global_norm(gradients, clip_norm=0.5)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)), tf.float32))
    return {"loss": loss, "accuracy": accuracy, "grad_norm": norm}


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

print(history.kfitx)
for epoch in history.epoch:
    row = {key: round(values[epoch], 4) for key, values in history.history.items()}
    print(f"epoch {epoch}: {row}")
