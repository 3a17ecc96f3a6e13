"""Training under tf.distribute, run in a fresh process by tests/test_distribute.py (devices are set before TensorFlow starts).

``python distribute_worker.py mirrored OUT.json [TUNER_DIR]``
    Two logical CPU devices, ``MirroredStrategy``: plain ``model.fit`` and every
    built-in and both plugins in the same scope, the largest weight difference of
    each to plain fit; with TUNER_DIR, a keras-tuner search with
    ``distribution_strategy=`` for each built-in, the status of its trials.

``python distribute_worker.py worker INDEX PORT0,PORT1 STRATEGY WORKDIR``
    Worker INDEX of a 2-worker ``MultiWorkerMirroredStrategy`` on 127.0.0.1. Its
    arrays are drawn from its own generator (``default_rng(INDEX)``), so two workers
    that did not all-reduce would end differently. Trains 2 epochs with a
    ``ModelCheckpoint`` and a ``BackupAndRestore`` in WORKDIR (the same paths on both
    workers), then resumes to epoch 3 from the backup; writes
    ``WORKDIR/worker-INDEX.npz`` (weights, data) and ``.json`` (history, saves).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KFITX_DISABLE_PLUGIN_AUTOLOAD"] = "1"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES, BATCH = 128, 32


def data(seed: int):
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(SAMPLES, 8)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def make_model(strategy):
    import keras

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return model


def max_difference(a, b):
    import numpy as np

    return max(float(np.max(np.abs(p - q))) for p, q in zip(a.get_weights(), b.get_weights()))


def mirrored(out: str, tuner_dir: str | None) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import kfitx

    sys.path[:0] = [os.path.join(ROOT, "plugins", "kfitx-tfdata"), os.path.join(ROOT, "plugins", "kfitx-accumulate")]
    import kfitx_accumulate
    import kfitx_tfdata

    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    x, y = data(0)
    plain = make_model(strategy)
    with strategy.scope():
        expected = plain.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0).history

    def generator():
        return kfitx.data.generator(lambda: ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, SAMPLES, BATCH)))

    def train_on_batch(model, batch):
        return model.train_on_batch(*batch, return_dict=True)

    same = lambda batch, step, epoch: batch
    runs = {
        "memory": ("memory", {}, False), "generator": ("generator", {}, False), "loop": ("loop", {}, False),
        "auto": ("auto", {}, False), "loop, batch hooks": ("loop", {"batch_hooks": [same]}, False),
        "loop, user step": ("loop", {"step": train_on_batch}, False),
        "generator, Python generator": ("generator", {}, True), "loop, Python generator": ("loop", {}, True),
        "tfdata": (kfitx_tfdata.TFDataStrategy(), {}, False),
        "accumulate": (kfitx_accumulate.AccumulateStrategy(accumulate_steps=2), {}, False),
    }
    results = {"plain": {"history": expected}}
    for name, (chosen, options, streamed) in runs.items():
        model = make_model(strategy)
        try:
            with strategy.scope():
                source = (generator(),) if streamed else (x, y)
                history = kfitx.fit(model, *source, strategy=chosen, batch_size=BATCH, epochs=2, shuffle=False,
                                    verbose=0, seed=0, **options)
            results[name] = {"difference": max_difference(plain, model), "history": history.history,
                             "report": history.kfitx}
        except Exception as err:  # reported, and the test names the strategy
            results[name] = {"error": f"{type(err).__name__}: {err}"[:3000], "trace": traceback.format_exc()[-3000:]}
    if tuner_dir:
        results["tuner"] = search(strategy, tuner_dir, x, y)
    with open(out, "w") as f:
        json.dump(results, f)


def search(strategy, directory: str, x, y) -> dict:
    import keras_tuner

    from kfitx.tuner import StrategyHyperModel

    def build(hp):
        import keras

        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 2, 4)),
                                  keras.layers.Dense(2)])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    statuses = {}
    for name in ("memory", "generator", "loop", "auto"):
        tuner = keras_tuner.RandomSearch(StrategyHyperModel(build, strategies=[name]), objective="val_accuracy",
                                         max_trials=1, distribution_strategy=strategy, overwrite=True,
                                         directory=directory, project_name=name)
        tuner.search(x, y, epochs=1, batch_size=BATCH, validation_split=0.25, verbose=0)
        statuses[name] = [trial.status for trial in tuner.oracle.trials.values()]
    return statuses


def worker(index: int, ports: str, chosen: str, workdir: str) -> None:
    addresses = [f"127.0.0.1:{port}" for port in ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import kfitx

    x, y = data(index)
    model = make_model(strategy)
    saves = []
    original_save = model.save_weights
    model.save_weights = lambda *a, **k: saves.append(str(a[0] if a else k.get("filepath"))) or original_save(*a, **k)

    def callbacks():
        return [keras.callbacks.ModelCheckpoint(os.path.join(workdir, "checkpoint-{epoch}.weights.h5"),
                                                save_weights_only=True),
                keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup"), delete_checkpoint=False)]

    with strategy.scope():
        first = kfitx.fit(model, x, y, strategy=chosen, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                          seed=0, callbacks=callbacks())
        resumed = kfitx.fit(model, x, y, strategy=chosen, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
                            seed=0, callbacks=callbacks())
    np.savez(os.path.join(workdir, f"worker-{index}.npz"), *model.get_weights())
    with open(os.path.join(workdir, f"worker-{index}.json"), "w") as f:
        json.dump({"history": first.history, "resumed_epochs": len(resumed.history["loss"]),
                   "report": first.kfitx, "saves": saves}, f)


def one_device(workdir: str, workers: int) -> None:
    """The reference: one device trained on the batches the workers shared out (each its slice of its own data)."""
    import numpy as np
    import tensorflow as tf

    parts = [data(i) for i in range(workers)]
    share = BATCH // workers
    rows = [np.arange(b + i * share, b + (i + 1) * share) for b in range(0, SAMPLES, BATCH) for i in range(workers)]
    x = np.concatenate([parts[(k % workers)][0][r] for k, r in enumerate(rows)])
    y = np.concatenate([parts[(k % workers)][1][r] for k, r in enumerate(rows)])
    model = make_model(tf.distribute.get_strategy())
    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    np.savez(os.path.join(workdir, "one-device.npz"), *model.get_weights())


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "mirrored":
        mirrored(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif mode == "worker":
        worker(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    elif mode == "one-device":
        one_device(sys.argv[2], int(sys.argv[3]))
