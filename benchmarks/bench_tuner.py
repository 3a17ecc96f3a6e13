"""keras-tuner searches: kfitx's StrategyHyperModel in one process, and `kfitx tune` against plain python.

    python benchmarks/bench_tuner.py [--only inprocess,speed,memory] [--trials 10] [--epochs 10] [--repeats 2]
    python benchmarks/bench_tuner.py --quick          # a smoke run of all three

* inprocess: a 10-trial RandomSearch through kfitx's StrategyHyperModel ("memory") vs a plain
  HyperModel calling model.fit, same model, data, search space and seed, in this process.
  Target: kfitx / plain wall-time ratio <= 1.05.
* speed: benchmarks/search_script.py (a plain HyperModel, 10 trials x 10 epochs, digits, seeded)
  end to end, process start included: `python search_script.py` vs `kfitx tune search_script.py`
  with kfitx tune's defaults. Every repeat is printed. Target: plain / tune wall time >= 1.8.
* memory: the same script with 30 trials: the peak resident memory of each worker slot's trials
  in the last third of the search vs the first third (kfitx tune, default --trials-per-worker),
  against one plain process (the script's --rss-log). Target: <= 1.05.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from kfitx.tuner import StrategyHyperModel  # noqa: E402


def data(seed: int = 0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def build(hp):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hp.Choice("units", [32, 64, 128]),
                                                                     activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


class Plain(keras_tuner.HyperModel):
    def build(self, hp):
        return build(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, **kwargs)


def search(hypermodel, trials, epochs, arrays):
    x, y, xv, yv = arrays
    with tempfile.TemporaryDirectory() as directory:
        tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=trials, seed=1,
                                         directory=directory, project_name="bench")
        start = time.perf_counter()
        tuner.search(x, y, epochs=epochs, batch_size=32, validation_data=(xv, yv), verbose=0)
        seconds = time.perf_counter() - start
        best = tuner.oracle.get_best_trials(1)[0].score
    return seconds, best


SCRIPT = Path(__file__).with_name("search_script.py")


def _timed(argv: list[str], cwd: str, timeout: float) -> tuple[float, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds, proc.stdout


def _best(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("best trial")]
    return lines[-1] if lines else "?"


def speed(trials: int, epochs: int, repeats: int) -> None:
    """`python search_script.py` vs `kfitx tune search_script.py`, end to end, each repeat printed."""
    ratios = []
    for repeat in range(repeats):
        times = {}
        for side in (["plain", "tune"] if repeat % 2 == 0 else ["tune", "plain"]):
            with tempfile.TemporaryDirectory() as cwd:
                script = [str(SCRIPT), "--trials", str(trials), "--epochs", str(epochs), "--directory", "search"]
                argv = [sys.executable, *script] if side == "plain" else [sys.executable, "-m", "kfitx.cli", "tune",
                                                                           *script]
                times[side], out = _timed(argv, cwd, timeout=1800)
                print(f"speed repeat {repeat + 1} {side:5s}: {trials} trials x {epochs} epochs in "
                      f"{times[side]:6.1f} s ({_best(out)})", flush=True)
        ratios.append(times["plain"] / times["tune"])
        print(f"speed repeat {repeat + 1}: plain / kfitx tune wall time {ratios[-1]:.2f}", flush=True)
    print(f"ratio plain/kfitx-tune search wall time: median {statistics.median(ratios):.2f}, each repeat "
          f"{', '.join(f'{r:.2f}' for r in ratios)}  (target >= 1.8)", flush=True)


def memory(trials: int, epochs: int) -> None:
    """Peak RSS per trial in the last third vs the first third: each kfitx tune worker slot, one plain process."""
    third = max(1, trials // 3)
    with tempfile.TemporaryDirectory() as cwd:
        script = [str(SCRIPT), "--trials", str(trials), "--epochs", str(epochs), "--directory", "search"]
        seconds, _ = _timed([sys.executable, *script, "--rss-log", "rss.jsonl"], cwd, timeout=3600)
        with open(os.path.join(cwd, "rss.jsonl")) as f:
            plain = [json.loads(line)["peak_rss_mib"] for line in f]
        first, last = max(plain[:third]), max(plain[-third:])
        print(f"memory plain: {trials} trials in one process in {seconds:.1f} s; peak RSS first third "
              f"{first:.0f} MiB, last third {last:.0f} MiB", flush=True)
        print(f"ratio plain last/first third peak RSS: {last / first:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as cwd:
        seconds, _ = _timed([sys.executable, "-m", "kfitx.cli", "tune", *script], cwd, timeout=3600)
        rows = []
        for path in glob.glob(os.path.join(cwd, "search", "bench", "trial_*", "kfitx-trial.json")):
            with open(path) as f:
                rows.append(json.load(f))
        rows.sort(key=lambda r: r["end"])
        ids = {r["trial_id"] for r in rows[:third]}, {r["trial_id"] for r in rows[-third:]}
        ratios = []
        for slot in sorted({r["worker"] for r in rows}):
            mine = [r for r in rows if r["worker"] == slot]
            early = [r["peak_rss_mib"] for r in mine if r["trial_id"] in ids[0]]
            late = [r["peak_rss_mib"] for r in mine if r["trial_id"] in ids[1]]
            pids = len({r["pid"] for r in mine})
            if not early or not late:
                print(f"memory kfitx tune {slot}: {len(mine)} trials, {pids} process(es); not in both thirds")
                continue
            ratios.append(max(late) / max(early))
            print(f"memory kfitx tune {slot}: {len(mine)} trials in {pids} process(es); peak RSS first third "
                  f"{max(early):.0f} MiB, last third {max(late):.0f} MiB, ratio {ratios[-1]:.3f}", flush=True)
        print(f"memory kfitx tune: {trials} trials in {seconds:.1f} s", flush=True)
        if ratios:
            print(f"ratio kfitx-tune last/first third peak RSS per worker: max {max(ratios):.3f}  (target <= 1.05)",
                  flush=True)


def inprocess(trials: int, epochs: int, repeats: int) -> None:
    arrays = data()
    search(Plain(), 1, 1, arrays)  # warm TensorFlow up once, for neither side
    times = {"plain": [], "kfitx": []}
    for repeat in range(repeats):
        order = ["plain", "kfitx"] if repeat % 2 == 0 else ["kfitx", "plain"]
        for side in order:
            hypermodel = Plain() if side == "plain" else StrategyHyperModel(build, strategies="memory")
            seconds, best = search(hypermodel, trials, epochs, arrays)
            times[side].append(seconds)
            print(f"repeat {repeat + 1} {side:5s}: {trials} trials x {epochs} epochs in {seconds:6.1f} s,"
                  f" best val_accuracy {best:.4f}", flush=True)
    plain, ours = statistics.median(times["plain"]), statistics.median(times["kfitx"])
    print(f"\nmedian wall time: plain {plain:.1f} s, kfitx {ours:.1f} s")
    print(f"ratio kfitx/plain search wall time: {ours / plain:.2f}  (target <= 1.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="inprocess,speed,memory", help="comma-separated parts to run")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-trials", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="4 trials x 2 epochs, 1 repeat, 6 memory trials")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.repeats, args.memory_trials = 4, 2, 1, 6
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if "inprocess" in parts:
        inprocess(args.trials, args.epochs, args.repeats)
    if "speed" in parts:
        speed(args.trials, args.epochs, args.repeats)
    if "memory" in parts:
        memory(args.memory_trials, args.epochs)


if __name__ == "__main__":
    main()
