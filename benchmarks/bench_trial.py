"""One trial of the main job (``examples/search_digits.py``), each way of training it, each in a fresh process.

A search is many short fits, each in a process that has just built its model: what a trial
costs is its fixed part (tracing, pipelines) and its epochs with validation. This runs the
main job's fit -- the digits MLP (its default hyperparameters), 1,437 training and 360
validation samples, batch 32, ``--epochs`` epochs, validation every epoch, seeded -- as

* ``plain``: ``model.fit(x, y, validation_data=...)``;
* ``plain-idg``: ``model.fit(idg.flow(x, y, batch_size=32), ...)`` with the main job's ``ImageDataGenerator``;
* ``memory``, ``loop``, ``generator``: ``kfitx.fit(..., strategy=...)``;
* ``generator-idg``: ``kfitx.fit(..., strategy="generator", augment=<that ImageDataGenerator>)``,

each in its own subprocess (``--child NAME``, started by this script), the order alternating
every round, and prints per configuration the medians over ``--repeats`` rounds of: the fit's
wall time, the time from calling fit to the first epoch's start (``on_epoch_begin``, the
fixed part before training), the first epoch, and the steady epoch (the median of epochs 2 on,
validation included), with the ratios the targets are stated in.

Usage::

    python benchmarks/bench_trial.py               # 3 rounds of the six configurations (~3 minutes)
    python benchmarks/bench_trial.py --repeats 1 --epochs 5 --only memory,generator-idg
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
TAG = "KFITX_TRIAL "
CONFIGS = ("plain", "plain-idg", "memory", "loop", "generator", "generator-idg")


def child(name: str, epochs: int) -> dict[str, float]:
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    import keras
    import keras_tuner
    import search_digits as job

    import kfitx

    x, x_val, y, y_val = job.load_data(42)
    keras.utils.set_random_seed(42)
    model = job.build_model(keras_tuner.HyperParameters())
    marks: dict[str, list[float]] = {"begin": [], "end": []}

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks["begin"].append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            marks["end"].append(time.perf_counter())

    common = {"epochs": epochs, "validation_data": (x_val, y_val), "verbose": 0, "callbacks": [Clock()]}
    idg = job.strategy_options()["generator"]["augment"]
    start = time.perf_counter()
    if name == "plain":
        model.fit(x, y, batch_size=32, **common)
    elif name == "plain-idg":
        model.fit(idg.flow(x, y, batch_size=32, seed=42), **common)
    elif name == "generator-idg":
        kfitx.fit(model, x, y, strategy="generator", augment=idg, batch_size=32, seed=42, **common)
    else:
        kfitx.fit(model, x, y, strategy=name, batch_size=32, seed=42, **common)
    wall = time.perf_counter() - start
    epochs_s = [e - b for b, e in zip(marks["begin"], marks["end"])]
    return {"wall": wall, "before": marks["begin"][0] - start, "first": epochs_s[0],
            "steady": statistics.median(epochs_s[1:]) if len(epochs_s) > 1 else float("nan")}


def run(name: str, epochs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--epochs", str(epochs)],
                         capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith(TAG))
    return json.loads(line[len(TAG):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", default=",".join(CONFIGS), help="comma-separated configurations")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(TAG + json.dumps(child(args.child, args.epochs)), flush=True)
        return
    names = [n for n in args.only.split(",") if n]
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            results[name].append(run(name, args.epochs))
    print(f"load after: {os.getloadavg()[0]:.2f}")
    med = {n: {k: statistics.median(d[k] for d in results[n]) for k in results[n][0]} for n in names}
    print(f"\n{'configuration':14} {'fit wall s':>10} {'before 1st epoch s':>18} {'1st epoch s':>11} "
          f"{'steady epoch ms':>15}")
    for n in names:
        m = med[n]
        print(f"{n:14} {m['wall']:10.2f} {m['before']:18.2f} {m['first']:11.2f} {1000 * m['steady']:15.0f}")
    ratios = [("generator-idg", "memory", "steady", "<= 1.5"), ("generator-idg", "plain-idg", "steady", "<= 0.5"),
              ("memory", "plain", "wall", "<= 0.55"), ("memory", "plain", "steady", "(context)"),
              ("generator-idg", "plain-idg", "wall", "(context)")]
    print()
    for a, b, key, target in ratios:
        if a in med and b in med:
            print(f"{a} / {b}, {key}: {med[a][key] / med[b][key]:.2f}  target {target}")


if __name__ == "__main__":
    main()
