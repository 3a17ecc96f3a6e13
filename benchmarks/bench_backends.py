"""The same keras-tuner search on each Keras backend: plain keras-tuner against kfitx, process start-up included.

    python benchmarks/bench_backends.py [--backends tensorflow,jax,torch] [--trials 10] [--epochs 10] [--repeats 3]

Each run is a fresh process (``KERAS_BACKEND`` set before Keras is imported, as
Keras fixes its backend then) running a ``--trials`` RandomSearch of
``bench_tuner.py``'s small dense net on scikit-learn's digits (seeded: both
sides see the same hyperparameters): ``plain`` is a ``keras_tuner.HyperModel``
calling ``model.fit``; ``kfitx`` is ``kfitx.tuner.StrategyHyperModel`` with the
``memory`` strategy (its default). The two sides alternate, every run is
printed, and the ratio is plain / kfitx median wall time (above 1: kfitx is
faster). Target: >= 1.0 on every backend; goal >= 1.3 on JAX.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAG = "KFITX_BACKEND_SEARCH "


def child(mode: str, trials: int, epochs: int) -> None:
    sys.path.insert(0, str(HERE))
    import bench_tuner  # imports Keras, on the backend this process was started with
    import keras

    hypermodel = bench_tuner.Plain() if mode == "plain" else bench_tuner.StrategyHyperModel(bench_tuner.build)
    seconds, best = bench_tuner.search(hypermodel, trials, epochs, bench_tuner.data())
    print(f"{TAG}{keras.backend.backend()} {mode} search {seconds:.2f} s best {best:.4f}", flush=True)


def run(backend: str, mode: str, trials: int, epochs: int) -> tuple[float, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--trials", str(trials), "--epochs",
                           str(epochs)], env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} {mode} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith(TAG))
    return seconds, line[len(TAG):]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=("plain", "kfitx"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.trials, args.epochs)
        return
    summary = []
    for backend in args.backends.split(","):
        times: dict[str, list[float]] = {"plain": [], "kfitx": []}
        for repeat in range(args.repeats):
            for mode in ("plain", "kfitx") if repeat % 2 == 0 else ("kfitx", "plain"):
                seconds, detail = run(backend, mode, args.trials, args.epochs)
                times[mode].append(seconds)
                print(f"{backend:10} {mode:5} repeat {repeat + 1}: {seconds:6.2f} s wall ({detail})", flush=True)
        plain, kfitx = statistics.median(times["plain"]), statistics.median(times["kfitx"])
        summary.append(f"{backend:10} plain {plain:6.2f} s  kfitx {kfitx:6.2f} s  plain/kfitx {plain / kfitx:.2f}x")
    print("\nmedian wall time per search, process start-up included:")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
