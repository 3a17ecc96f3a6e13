"""Training under tf.distribute: what each kfitx strategy costs against plain ``model.fit`` in the same scope.

* ``mirrored`` -- ``MirroredStrategy`` over 2 logical CPU devices (one physical
  CPU split in two, so the devices share the cores: the ratio shows kfitx's
  overhead, not a speed-up): plain ``model.fit`` in the scope against
  ``kfitx.fit`` with ``memory``, ``generator``, ``loop``, ``tfdata`` and
  ``accumulate`` in the same scope.
* ``workers`` -- ``MultiWorkerMirroredStrategy``: 2 worker processes on
  127.0.0.1 (both on this machine, sharing its cores) against 1 process without
  a strategy, both through ``loop`` on the same global batch: the cost of the
  all-reduce between processes, again overhead, not speed-up.

The model is the bench_memory MLP (32 -> 64 -> 10), batch 256 (global), 8,192
samples. Samples/s over the epochs after the first (timed by an epoch-level
callback), median of ``--repeats`` runs, fresh model with the same seed for
each; every side runs in its own process so that devices are set before
TensorFlow starts.

Usage::

    python benchmarks/bench_distribute.py            # both parts, 3 repeats
    python benchmarks/bench_distribute.py --quick    # 1 repeat, 2 epochs
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["KFITX_DISABLE_PLUGIN_AUTOLOAD"] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLES, FEATURES, BATCH = 8192, 32, 256
SIDES = ["plain", "memory", "generator", "loop", "tfdata", "accumulate"]


def _data(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.normal(size=(SAMPLES, FEATURES)).astype("float32"), rng.integers(0, 10, SAMPLES)


def _model(strategy):
    import keras

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _clock():
    import keras

    class EpochClock(keras.callbacks.Callback):  # epoch hooks only: kfitx still sees no per-batch callback
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    return EpochClock()


def _fit(side, model, x, y, epochs, strategy_scope):
    import kfitx

    clock = _clock()
    with strategy_scope:
        if side == "plain":
            model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, callbacks=[clock])
        else:
            chosen = side
            if side in ("tfdata", "accumulate"):
                sys.path[:0] = [os.path.join(ROOT, "plugins", "kfitx-tfdata"),
                                os.path.join(ROOT, "plugins", "kfitx-accumulate")]
                import kfitx_accumulate
                import kfitx_tfdata

                chosen = (kfitx_tfdata.TFDataStrategy() if side == "tfdata"
                          else kfitx_accumulate.AccumulateStrategy(accumulate_steps=2))
            kfitx.fit(model, x, y, strategy=chosen, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                      callbacks=[clock])
    steady = clock.times[1:] or clock.times
    return SAMPLES * len(steady) / sum(steady)


def child_mirrored(epochs: int, repeats: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    x, y = _data()
    rates = {side: [] for side in SIDES}
    for repeat in range(repeats):
        for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
            rates[side].append(_fit(side, _model(strategy), x, y, epochs, strategy.scope()))
    print(json.dumps(rates))


def child_worker(index: int, ports: str, epochs: int) -> None:
    import contextlib

    addresses = [f"127.0.0.1:{p}" for p in ports.split(",")] if ports else []
    if len(addresses) > 1:
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses},
                                              "task": {"type": "worker", "index": index}})
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if len(addresses) > 1 else tf.distribute.get_strategy()
    x, y = _data(index)
    scope = strategy.scope() if len(addresses) > 1 else contextlib.nullcontext()
    print(json.dumps({"rate": _fit("loop", _model(strategy), x, y, epochs, scope)}))


def _ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _children(argvs, timeout):
    procs = [subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True) for argv in argvs]
    try:
        deadline = time.monotonic() + timeout
        outs = [p.communicate(timeout=max(1, deadline - time.monotonic()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p in procs:
        if p.returncode:
            raise SystemExit(f"a benchmark process failed (exit {p.returncode})")
    return [json.loads(out.strip().splitlines()[-1]) for out in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["mirrored", "workers"])
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    epochs = 2 if args.quick else 4
    repeats = 1 if args.quick else args.repeats
    if args.child:
        kind, *rest = args.child
        if kind == "mirrored":
            child_mirrored(int(rest[0]), int(rest[1]))
        else:
            child_worker(int(rest[0]), rest[1], int(rest[2]))
        return
    print(f"MLP {FEATURES}->64->10, {SAMPLES} samples, global batch {BATCH}, steady-state samples/s over "
          f"epochs 2..{epochs}, median of {repeats}")
    if args.only in (None, "mirrored"):
        rates = _children([["--child", "mirrored", str(epochs), str(repeats)]], 1200)[0]
        plain = statistics.median(rates["plain"])
        print("\nMirroredStrategy, 2 logical CPU devices (shared cores: overhead, not speed-up)")
        print(f"{'side':<12}{'samples/s':>12}{'vs plain fit':>14}   runs")
        for side in SIDES:
            rate = statistics.median(rates[side])
            print(f"{side:<12}{rate:>12,.0f}{rate / plain:>13.2f}x   {', '.join(f'{r:,.0f}' for r in rates[side])}")
    if args.only in (None, "workers"):
        one, two = [], []
        for _ in range(repeats):
            one.append(_children([["--child", "worker", "0", "", str(epochs)]], 600)[0]["rate"])
            ports = ",".join(map(str, _ports(2)))
            pair = _children([["--child", "worker", str(i), ports, str(epochs)] for i in range(2)], 600)
            two.append(min(r["rate"] for r in pair))  # global samples/s: the slower worker sets the pace
        a, b = statistics.median(one), statistics.median(two)
        print("\nMultiWorkerMirroredStrategy through loop, both on this machine (overhead, not speed-up)")
        print(f"1 process, no strategy : {a:>10,.0f} samples/s   runs {', '.join(f'{r:,.0f}' for r in one)}")
        print(f"2 workers, all-reduce  : {b:>10,.0f} samples/s   runs {', '.join(f'{r:,.0f}' for r in two)}"
              f"   ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
