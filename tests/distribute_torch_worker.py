"""One process of a two-process ``torch.distributed`` (gloo) fit, run by tests/test_distribute.py.

``python distribute_torch_worker.py RANK WORLD_SIZE PORT OUT.json``

Each process joins the process group on 127.0.0.1 and trains on its own data (rank ``r`` draws
its samples with seed ``r``): plain ``model.fit`` first, then each built-in through ``kfitx.fit``,
every run from the same initial weights, as Keras (3.16 and later) trains under a process group:
the model wrapped in ``DistributedDataParallel``, gradients averaged over the processes. It
writes each run's largest weight difference to plain fit, its history and a checksum of its
weights (equal on both ranks when the gradients were averaged), and what kfitx resolved.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KFITX_DISABLE_PLUGIN_AUTOLOAD"] = "1"

SAMPLES, BATCH, EPOCHS = 96, 16, 2
STRATEGIES = ("memory", "generator", "loop")


def data(seed: int):
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(SAMPLES, 8)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def build(initial):
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    if initial is not None:
        model.set_weights(initial)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(rank: int, world: int, port: int, out: str) -> None:
    import numpy as np
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    import keras

    import kfitx
    from kfitx import runtime

    result: dict = {"rank": rank, "runs": {}}
    try:
        keras.utils.set_random_seed(0)
        initial = build(None).get_weights()  # the same on every rank (same seed)
        x, y = data(rank)
        val = data(100 + rank)
        resolved = runtime.resolve(build(initial))
        result["runtime"] = {"torch_ddp": resolved.torch_ddp, "replicas": resolved.replicas, "chief": resolved.chief}
        weights = {}
        for name in ("plain", *STRATEGIES):
            model = build(initial)
            args = dict(batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, validation_data=val)
            history = model.fit(x, y, **args) if name == "plain" else kfitx.fit(model, x, y, strategy=name, **args)
            weights[name] = model.get_weights()
            result["runs"][name] = {
                "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
                "checksum": float(sum(float(np.sum(w, dtype="float64")) for w in weights[name])),
                "diff": max(float(np.max(np.abs(a - b))) for a, b in zip(weights[name], weights["plain"])),
                "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(weights[name], initial)),
            }
    except BaseException:
        result["error"] = traceback.format_exc()
    finally:
        with open(out, "w") as f:
            json.dump(result, f)
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
