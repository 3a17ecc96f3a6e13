"""Training under ``keras.distribution.DataParallel`` on JAX, run in a fresh process by tests/test_distribute.py.

``python distribute_jax_worker.py OUT.json``

Two host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, set
here before JAX starts), ``keras.distribution.set_distribution(DataParallel(...))``:
plain ``model.fit`` and every built-in and both plugins under the same
distribution, each run's largest weight difference to plain fit, its history,
how the batches reached the model (a probe layer records each batch's size and
the size of one device's share of it) and how many devices the weights live on;
then a batch that does not divide over the devices, through plain fit and the
``loop`` strategy.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=2"])
os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KFITX_DISABLE_PLUGIN_AUTOLOAD"] = "1"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES, BATCH = 128, 32

#: ``(batch size, one device's share)`` of every batch the probe layer saw.
SEEN: set[tuple[int, int]] = set()


def probe_class():
    import jax
    import keras

    def record(sharding, shape):
        SEEN.add((int(shape[0]), int(sharding.shard_shape(shape)[0])))

    class Probe(keras.layers.Layer):
        """Passes its input through, recording how it is laid out over the devices."""

        def call(self, x):
            if isinstance(x, jax.core.Tracer):  # inside a compiled step: the layout XLA compiles for
                jax.debug.inspect_array_sharding(x, callback=lambda s, shape=x.shape: record(s, shape))
            elif isinstance(x, jax.Array):  # a step run op by op (kfitx-accumulate)
                record(x.sharding, x.shape)
            return x

    return Probe


def data(seed: int, samples: int = SAMPLES):
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(samples, 8)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def make_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), probe_class()(), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def max_difference(a, b):
    import numpy as np

    return max(float(np.max(np.abs(p - q))) for p, q in zip(a.get_weights(), b.get_weights()))


def devices(model) -> int:
    """The fewest devices any of the model's weights lives on."""
    return min(len(v.value.sharding.device_set) for v in model.weights)


def run(out: str) -> None:
    import jax
    import keras

    sys.path[:0] = [os.path.join(ROOT, "plugins", "kfitx-tfdata"), os.path.join(ROOT, "plugins", "kfitx-accumulate")]
    import kfitx
    import kfitx_accumulate
    import kfitx_tfdata

    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    x, y = data(0)
    validation = data(1, BATCH)
    common = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0, validation_data=validation)
    plain = make_model()
    expected = plain.fit(x, y, **common).history
    results = {"devices": len(jax.devices()),
               "plain": {"history": expected, "seen": sorted(SEEN), "devices": devices(plain)}}

    def generator():
        return kfitx.data.generator(lambda: ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, SAMPLES, BATCH)))

    def train_on_batch(model, batch):
        return model.train_on_batch(*batch, return_dict=True)

    class ReadsWeights(keras.callbacks.Callback):  # makes the state go back to the model after every batch
        def on_train_batch_end(self, batch, logs=None):
            self.model.get_weights()

    same = lambda batch, step, epoch: batch
    runs = {
        "memory": ("memory", {}, False), "generator": ("generator", {}, False), "loop": ("loop", {}, False),
        "auto": ("auto", {}, False),
        "loop, batch hooks": ("loop", {"batch_hooks": [same], "callbacks": [ReadsWeights()]}, False),
        "loop, user step": ("loop", {"step": train_on_batch}, False),
        "generator, Python generator": ("generator", {}, True), "loop, Python generator": ("loop", {}, True),
        "tfdata": (kfitx_tfdata.TFDataStrategy(), {}, False),
        "accumulate": (kfitx_accumulate.AccumulateStrategy(accumulate_steps=2), {}, False),
    }
    for name, (chosen, options, streamed) in runs.items():
        SEEN.clear()
        model = make_model()
        try:
            source = (generator(),) if streamed else (x, y)
            history = kfitx.fit(model, *source, strategy=chosen, seed=0, **common, **options)
            results[name] = {"difference": max_difference(plain, model), "history": history.history,
                             "report": history.kfitx, "seen": sorted(SEEN), "devices": devices(model)}
        except Exception as err:  # reported, and the test names the strategy
            results[name] = {"error": f"{type(err).__name__}: {err}"[:3000], "trace": traceback.format_exc()[-3000:]}
    results["indivisible"] = indivisible(kfitx)
    with open(out, "w") as f:
        json.dump(results, f)


def indivisible(kfitx) -> dict:
    """101 samples in batches of 32: the last batch (5) does not divide over 2 devices."""
    x, y = data(0, 101)
    errors = {}
    for name in ("plain", "loop"):
        model = make_model()
        try:
            if name == "plain":
                model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            else:
                kfitx.fit(model, x, y, strategy=name, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            errors[name] = None
        except Exception as err:
            errors[name] = {"type": type(err).__name__, "kfitx": isinstance(err, kfitx.KfitxError), "text": str(err)}
    return errors


if __name__ == "__main__":
    run(sys.argv[1])
