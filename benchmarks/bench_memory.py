"""Plain Keras ``model.fit(x, y)`` against ``kfitx.fit(model, x, y, strategy="memory")``.

Three measurements, each on the same model and the same data for both sides:

* ``mlp`` / ``cnn`` -- throughput. A fresh model (same seed, so the same initial
  weights) is built for every run; plain and kfitx runs alternate in one process
  (the order flips every repeat), and the median over ``--repeats`` is reported:
  samples/s of the whole fit call (what a user pays, tracing included) and
  steady-state samples/s over the epochs after the first.
* ``mem`` -- peak resident memory while training on a large uint8 data set
  (1 GiB by default). Each side runs in its own fresh subprocess
  (``bench_memory.py --child plain|kfitx``), because the peak RSS is per process.

Usage::

    python benchmarks/bench_memory.py                 # full run (minutes)
    python benchmarks/bench_memory.py --quick         # smoke test (< 60 s)
    python benchmarks/bench_memory.py --only mlp --repeats 5

Ratios are ``kfitx / plain``: above 1 is faster for samples/s, below 1 is less
memory for the memory rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # before anything imports TensorFlow

RESULT_TAG = "KFITX_BENCH_RESULT "
SEED = 1234
GiB = float(1 << 30)
MiB = float(1 << 20)

# name -> sizes; "quick" is the smoke-test variant.
SIZES = {
    "full": {
        "mlp": {"samples": 20_000, "epochs": 5},
        "cnn": {"samples": 4_096, "epochs": 5},
        "mem_bytes": 1 << 30,  # x alone; labels come on top
        "mem_steps": 50,
        "repeats": 3,
    },
    "quick": {
        "mlp": {"samples": 2_048, "epochs": 2},
        "cnn": {"samples": 512, "epochs": 2},
        "mem_bytes": 64 << 20,
        "mem_steps": 10,
        "repeats": 1,
    },
}
BATCH_SIZE = 32
MEM_ROW = 1024  # bytes per sample of the memory benchmark's uint8 x


# --------------------------------------------------------------------------- models and data


def _keras():
    import keras  # noqa: PLC0415 - imported late so TF_CPP_MIN_LOG_LEVEL applies

    return keras


def build_mlp(seed: int = SEED):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def build_cnn(seed: int = SEED):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def build_tiny(seed: int = SEED):
    """The memory benchmark's model: uint8 rows -> Rescaling -> Dense(10)."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((MEM_ROW,), dtype="uint8"),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def make_data(kind: str, n: int):
    import numpy as np

    rng = np.random.default_rng(SEED)
    shape = (n, 32) if kind == "mlp" else (n, 28, 28, 1)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- throughput


def _epoch_timer():
    keras = _keras()

    class EpochTimer(keras.callbacks.Callback):
        """Epoch durations only: no batch hook, so kfitx may still group steps."""

        def __init__(self):
            super().__init__()
            self.durations: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.durations.append(time.perf_counter() - self._start)

    return EpochTimer()


def one_run(kind: str, side: str, x, y, epochs: int) -> dict:
    import kfitx

    keras = _keras()
    model = (build_mlp if kind == "mlp" else build_cnn)()
    timer = _epoch_timer()
    args = dict(epochs=epochs, batch_size=BATCH_SIZE, verbose=0, callbacks=[timer])
    start = time.perf_counter()
    if side == "plain":
        history = model.fit(x, y, **args)
    else:
        history = kfitx.fit(model, x, y, strategy="memory", **args)
    total = time.perf_counter() - start
    n = len(x)
    later = timer.durations[1:]
    result = {
        "fit_sps": n * epochs / total,
        "steady_sps": n * len(later) / sum(later) if later else float("nan"),
        "fit_s": total,
        "first_epoch_s": timer.durations[0],
        "loss": float(history.history["loss"][-1]),
        "steps_per_execution": getattr(history, "kfitx", {}).get("steps_per_execution", 1),
        "grouping": getattr(history, "kfitx", {}).get("grouping", "model.fit default"),
    }
    del model, history
    keras.backend.clear_session()
    gc.collect()
    return result


def bench_throughput(kind: str, samples: int, epochs: int, repeats: int) -> dict:
    if epochs < 2:
        raise SystemExit("--epochs must be at least 2 (steady state is measured after epoch 1)")
    x, y = make_data(kind, samples)
    print(f"\n[{kind}] {samples} samples, batch {BATCH_SIZE}, {epochs} epochs, {repeats} repeat(s)",
          flush=True)
    # Untimed: once per process, TensorFlow pays start-up costs (thread pools, kernel
    # registration, oneDNN set-up) that would otherwise land on whichever side ran first.
    for side in ("plain", "kfitx"):
        one_run(kind, side, x[: 8 * BATCH_SIZE], y[: 8 * BATCH_SIZE], 2)
    runs: dict[str, list[dict]] = {"plain": [], "kfitx": []}
    for r in range(repeats):
        order = ("plain", "kfitx") if r % 2 == 0 else ("kfitx", "plain")
        for side in order:
            res = one_run(kind, side, x, y, epochs)
            runs[side].append(res)
            print(f"  repeat {r + 1} {side:5s}: fit {res['fit_s']:7.2f} s "
                  f"({res['fit_sps']:9.0f} samples/s), steady {res['steady_sps']:9.0f} samples/s, "
                  f"first epoch {res['first_epoch_s']:6.2f} s, final loss {res['loss']:.4f}, "
                  f"steps/call {res['steps_per_execution']}", flush=True)
    print(f"  kfitx grouping: {runs['kfitx'][0]['grouping']}")
    med = {side: {key: statistics.median(r[key] for r in runs[side]) for key in ("fit_sps", "steady_sps")}
           for side in runs}
    return med


# --------------------------------------------------------------------------- peak memory


def _vm_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


def _max_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def child_memory(side: str, mem_bytes: int, steps: int, warmup: bool, aligned: bool) -> None:
    """Runs in its own process: builds the data, trains, prints one JSON result line."""
    import numpy as np
    import tensorflow as tf  # noqa: F401 - loaded before the baseline, as the fit needs it

    import kfitx

    n = max(BATCH_SIZE * steps, mem_bytes // MEM_ROW)
    # Filled in chunks so that making the data never holds more than the data itself.
    if aligned:  # on a 64-byte boundary, which TensorFlow can alias without a copy
        raw = np.empty(n * MEM_ROW + 64, dtype=np.uint8)
        offset = (-raw.ctypes.data) % 64
        x = raw[offset : offset + n * MEM_ROW].reshape(n, MEM_ROW)
    else:  # as np.empty / np.load / most libraries allocate it (16-byte aligned by malloc)
        x = np.empty((n, MEM_ROW), dtype=np.uint8)
    rng = np.random.default_rng(SEED)
    chunk = 1 << 14
    for i in range(0, n, chunk):
        x[i : i + chunk] = rng.integers(0, 256, size=(min(chunk, n - i), MEM_ROW), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    data_bytes = x.nbytes + y.nbytes

    model = build_tiny()

    def train(xs, ys, steps_per_epoch):
        args = dict(epochs=1, batch_size=BATCH_SIZE, steps_per_epoch=steps_per_epoch, verbose=0)
        if side == "plain":
            return model.fit(xs, ys, **args)
        return kfitx.fit(model, xs, ys, strategy="memory", **args)

    if warmup:
        # Start the TF runtime on a small slice so its fixed cost is in the baseline.
        train(x[:512], y[:512], 2)
        gc.collect()
    baseline = _vm_rss_bytes()
    peak_before = _max_rss_bytes()
    start = time.perf_counter()
    history = train(x, y, steps)
    seconds = time.perf_counter() - start
    peak = _max_rss_bytes()
    after = _vm_rss_bytes()
    print(RESULT_TAG + json.dumps({
        "side": side,
        "samples": n,
        "x_address_mod_64": x.ctypes.data % 64,
        "data_bytes": data_bytes,
        "baseline": baseline,
        "peak_before_fit": peak_before,
        "peak": peak,
        "after": after,
        "seconds": seconds,
        "loss": float(history.history["loss"][-1]),
        "steps_per_execution": getattr(history, "kfitx", {}).get("steps_per_execution", 1),
    }), flush=True)


def bench_memory(mem_bytes: int, steps: int, warmup: bool, aligned: bool, timeout: float) -> dict | None:
    print(f"\n[mem] uint8 x of {mem_bytes / MiB:.0f} MiB ({MEM_ROW} bytes/sample) + int32 labels, "
          f"one epoch of {steps} steps, batch {BATCH_SIZE}, each side in its own process"
          f"{', after a warm-up fit on 512 samples' if warmup else ''}"
          f"{', x allocated 64-byte aligned' if aligned else ''}", flush=True)
    results = {}
    for side in ("plain", "kfitx"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", side,
               "--mem-bytes", str(mem_bytes), "--mem-steps", str(steps)]
        if not warmup:
            cmd.append("--no-warmup")
        if aligned:
            cmd.append("--mem-aligned")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            print(f"  {side}: child timed out after {timeout:.0f} s", file=sys.stderr)
            return None
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
        if proc.returncode != 0 or not lines:
            print(f"  {side}: child failed (exit code {proc.returncode})\n"
                  + (proc.stdout + proc.stderr)[-3000:], file=sys.stderr)
            return None
        res = json.loads(lines[-1][len(RESULT_TAG):])
        res["above"] = res["peak"] - res["baseline"]
        res["copies"] = res["above"] / res["data_bytes"]
        results[side] = res
        slack = res["peak_before_fit"] - res["baseline"]
        print(f"  {side:5s}: data {res['data_bytes'] / GiB:.3f} GiB, baseline RSS {res['baseline'] / GiB:.3f} GiB, "
              f"peak RSS {res['peak'] / GiB:.3f} GiB, peak above baseline {res['above'] / GiB:.3f} GiB "
              f"= {res['copies']:.2f} copies of the data; fit {res['seconds']:.1f} s, "
              f"steps/call {res['steps_per_execution']}, x address % 64 = {res['x_address_mod_64']}", flush=True)
        if slack > 0.05 * res["data_bytes"]:
            print(f"  warning: {side}'s peak before the fit was already {slack / GiB:.3f} GiB above "
                  "the baseline, so its peak above baseline is overstated", flush=True)
    return results


# --------------------------------------------------------------------------- report


def _ratio(kfitx_value: float, plain_value: float) -> float:
    return kfitx_value / plain_value if plain_value else float("nan")


def print_table(throughput: dict, memory: dict | None) -> None:
    rows = []
    for kind, med in throughput.items():
        for key, label in (("fit_sps", "whole fit call, samples/s"), ("steady_sps", "steady state, samples/s")):
            p, k = med["plain"][key], med["kfitx"][key]
            rows.append((kind, label, f"{p:,.0f}", f"{k:,.0f}", _ratio(k, p)))
    if memory:
        p, k = memory["plain"], memory["kfitx"]
        rows.append(("mem", "baseline RSS, GiB", f"{p['baseline'] / GiB:.3f}", f"{k['baseline'] / GiB:.3f}", None))
        rows.append(("mem", "peak RSS, GiB", f"{p['peak'] / GiB:.3f}", f"{k['peak'] / GiB:.3f}",
                     _ratio(k["peak"], p["peak"])))
        rows.append(("mem", "peak above baseline, GiB", f"{p['above'] / GiB:.3f}", f"{k['above'] / GiB:.3f}",
                     _ratio(k["above"], p["above"])))
        rows.append(("mem", "copies of the data", f"{p['copies']:.2f}", f"{k['copies']:.2f}", None))
    if not rows:
        return
    head = ("bench", "metric", "plain", "kfitx", "kfitx/plain")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = f"{{:<{w[0]}}}  {{:<{w[1]}}}  {{:>{w[2]}}}  {{:>{w[3]}}}  {{:>11}}"
    print("\n" + line.format(*head))
    print("-" * (sum(w) + 19))
    for r in rows:
        print(line.format(*r[:4], "" if r[4] is None else f"{r[4]:.2f}x"))
    print()
    for kind, med in throughput.items():
        print(f"ratio kfitx/plain {kind} steady-state samples/s: "
              f"{_ratio(med['kfitx']['steady_sps'], med['plain']['steady_sps']):.2f}")
        print(f"ratio kfitx/plain {kind} whole-fit samples/s: "
              f"{_ratio(med['kfitx']['fit_sps'], med['plain']['fit_sps']):.2f}")
    if memory:
        print(f"ratio kfitx/plain mem peak above baseline: "
              f"{_ratio(memory['kfitx']['above'], memory['plain']['above']):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat, 64 MiB memory set (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each side per throughput benchmark (default 3; 1 with --quick)")
    parser.add_argument("--only", choices=("mlp", "cnn", "mem"), default=None, help="run one benchmark")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per throughput run (default 5; 2 with --quick)")
    parser.add_argument("--mem-bytes", type=int, default=None, help="size of the memory benchmark's x in bytes (default 1 GiB; 64 MiB with --quick)")
    parser.add_argument("--mem-steps", type=int, default=None, help="training steps of the memory benchmark (default 50)")
    parser.add_argument("--no-warmup", action="store_true", help="memory benchmark: no warm-up fit before the baseline")
    parser.add_argument("--mem-aligned", action="store_true",
                        help="memory benchmark: allocate x on a 64-byte boundary (kfitx can then alias it; "
                             "by default x is allocated as np.empty does)")
    parser.add_argument("--child", choices=("plain", "kfitx"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    sizes = SIZES["quick" if args.quick else "full"]
    mem_bytes = args.mem_bytes or sizes["mem_bytes"]
    mem_steps = args.mem_steps or sizes["mem_steps"]
    if args.child:
        child_memory(args.child, mem_bytes, mem_steps, warmup=not args.no_warmup, aligned=args.mem_aligned)
        return 0

    repeats = args.repeats or sizes["repeats"]
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    start = time.perf_counter()
    print(f"plain keras model.fit(x, y) vs kfitx.fit(model, x, y, strategy='memory'); "
          f"{'quick' if args.quick else 'full'} mode, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPU(s)")
    throughput = {}
    for kind in ("mlp", "cnn"):
        if args.only in (None, kind):
            cfg = sizes[kind]
            throughput[kind] = bench_throughput(kind, cfg["samples"], args.epochs or cfg["epochs"], repeats)
    memory = None
    if args.only in (None, "mem"):
        memory = bench_memory(mem_bytes, mem_steps, warmup=not args.no_warmup, aligned=args.mem_aligned,
                              timeout=120 if args.quick else 1800)
        if memory is None:
            print_table(throughput, None)
            return 1
    print_table(throughput, memory)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
