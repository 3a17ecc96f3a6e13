"""The ``loop`` strategy against a naive ``train_on_batch`` loop and against plain ``model.fit``.

* ``mlp`` -- the bench_memory MLP (32 -> 64 -> 10, 20,000 samples, batch 32):
  kfitx's ``loop`` strategy with History and a batch-level callback (so every
  batch callback fires, one step per compiled call) against the naive Python
  loop Keras 2 tutorials show (``for batch ...: model.train_on_batch(bx, by)``), which
  sees no callbacks at all (target: 1.8x, every batch callback firing once per
  batch, which the run checks). Also ``loop`` with the same callbacks and
  ``steps_per_execution=16`` (batch callbacks then fire once per group, as with
  Keras's own option).
* ``cnn`` -- the bench_memory CNN (28x28x1, 4,096 samples): ``loop`` with default
  settings against plain ``model.fit``.

Steady-state samples/s over the epochs after the first, median of ``--repeats``
runs alternating the sides; fresh model with the same seed for every run.

Usage::

    python benchmarks/bench_loop.py            # full run (a few minutes)
    python benchmarks/bench_loop.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_generator import EpochClock  # noqa: E402
from bench_memory import build_cnn, build_mlp, make_data  # noqa: E402  (same models and data)

BS = 32


def _callbacks():
    import keras

    class EveryBatch(keras.callbacks.Callback):
        """A batch-level callback (it counts batches), as real ones log or schedule per batch."""

        def __init__(self):
            super().__init__()
            self.batches = 0
            self.begins, self.ends = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.begins.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    return EveryBatch()


def _steady(begins, ends, samples):
    spans = [e - b for b, e in zip(begins[1:], ends[1:])]
    return samples * len(spans) / sum(spans)


def naive(model, x, y, epochs):
    """The classic train_on_batch loop, epochs timed by hand."""
    import numpy as np

    rng = np.random.default_rng(0)
    begins, ends = [], []
    for _ in range(epochs):
        begins.append(time.perf_counter())
        order = rng.permutation(len(x))
        for i in range(0, len(x), BS):
            index = order[i:i + BS]
            model.train_on_batch(x[index], y[index])
        ends.append(time.perf_counter())
    return _steady(begins, ends, len(x))


def loop(model, x, y, epochs, **options):
    import keras

    import kfitx

    counter = _callbacks()
    kfitx.fit(model, x, y, strategy="loop", batch_size=BS, epochs=epochs, verbose=0,
              callbacks=[keras.callbacks.History(), counter], **options)
    per_call = options.get("steps_per_execution", 1)
    expected = epochs * math.ceil(math.ceil(len(x) / BS) / per_call)
    if counter.batches != expected:  # speed never changes what a callback sees
        raise SystemExit(f"on_train_batch_end fired {counter.batches} times, expected {expected}")
    return _steady(counter.begins, counter.ends, len(x))


def loop_default(model, x, y, epochs):
    import kfitx

    clock = EpochClock()  # epoch hooks only: loop may group steps
    kfitx.fit(model, x, y, strategy="loop", batch_size=BS, epochs=epochs, verbose=0, callbacks=[clock])
    return clock.steady(len(x))


def plain_fit(model, x, y, epochs):
    clock = EpochClock()
    model.fit(x, y, batch_size=BS, epochs=epochs, verbose=0, callbacks=[clock])
    return clock.steady(len(x))


def measure(kind, sides, n, epochs, repeats):
    x, y = make_data(kind, n)
    build = build_mlp if kind == "mlp" else build_cnn
    results = {name: [] for name in sides}
    for r in range(repeats):
        order = list(sides.items())
        for name, run in order if r % 2 == 0 else order[::-1]:
            results[name].append(run(build(), x, y, epochs))
    for name, values in results.items():
        print(f"{kind} {name}: " + ", ".join(f"{v:,.0f}" for v in values) + " samples/s", flush=True)
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    mlp_n, cnn_n, epochs = (2048, 512, 2) if args.quick else (20_000, 4_096, 4)
    import keras

    cases = {"naive train_on_batch": naive, "loop, History + batch callback": loop}
    grouped = keras.backend.backend() != "torch"  # Keras runs one step per call on torch
    if grouped:
        cases["loop, same callbacks, steps_per_execution=16"] = (
            lambda m, x, y, e: loop(m, x, y, e, steps_per_execution=16))
    mlp = measure("mlp", cases, mlp_n, epochs, repeats)
    cnn = measure("cnn", {"plain model.fit": plain_fit, "loop, defaults": loop_default}, cnn_n, epochs, repeats)
    base = mlp["naive train_on_batch"]
    print(f"\n{'measure (steady samples/s)':<58} {'baseline':>10} {'kfitx':>10} {'ratio':>6}  target")
    print(f"backend: {keras.backend.backend()}")
    for name in [name for name in cases if name.startswith("loop")]:
        print(f"{'mlp ' + name + ' vs naive':<58} {base:>10,.0f} {mlp[name]:>10,.0f} {mlp[name] / base:>6.2f}  "
              f"{'>= 1.8' if 'History' in name else '(grouped batch callbacks)'}")
    print(f"{'cnn loop (defaults) vs plain model.fit':<58} {cnn['plain model.fit']:>10,.0f} "
          f"{cnn['loop, defaults']:>10,.0f} {cnn['loop, defaults'] / cnn['plain model.fit']:>6.2f}  >= 1.0")


if __name__ == "__main__":
    main()
