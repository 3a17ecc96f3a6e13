"""The ``generator`` strategy against plain Keras: augmentation, fit latency, out-of-core data.

Three parts, each comparing runs on the same model (same seed) and data in one process run:

* ``aug`` -- a typical ``ImageDataGenerator`` augmentation on a small CNN at
  32x32 and 96x96: plain ``model.fit(aug.flow(x, y))`` vs
  ``kfitx.compat.fit_generator(model, aug.flow(x, y), ...)`` (the same
  augmentation on whole batches), plus un-augmented ``model.fit`` and kfitx
  without augmentation, for the cost of augmenting. Steady-state samples/s over
  the epochs after the first (median over ``--repeats``).
* ``latency`` -- seconds from the end of the last epoch (``on_epoch_end``) to
  ``fit`` returning, on generator-like inputs: plain ``model.fit`` of a Python
  generator, of a 2-process ``PyDataset``, of ``aug.flow``; kfitx's generator
  strategy with a thread worker, with a process worker, and ``fit_generator``.
* ``ooc`` -- a ``.npy`` data set of ``--ooc-gib`` GiB (4 by default) written to a
  temporary directory and deleted afterwards, trained through
  ``kfitx.data.npy`` with the generator strategy; the peak of anonymous memory
  (``RssAnon`` in ``/proc/self/status``; the memory map's pages are file-backed
  and reclaimable) above what it was before the fit, and samples/s against the
  ``memory`` strategy on an in-RAM slice of the same data. Each side runs in its
  own subprocess.

Usage::

    python benchmarks/bench_generator.py             # everything (several minutes)
    python benchmarks/bench_generator.py --quick     # smoke run
    python benchmarks/bench_generator.py --only aug --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

RESULT_TAG = "KFITX_BENCH_RESULT "
SEED = 1234
GiB = float(1 << 30)
TUTORIAL_AUG = dict(rotation_range=20, zoom_range=0.15, width_shift_range=0.2, height_shift_range=0.2,
                shear_range=0.15, horizontal_flip=True, fill_mode="nearest")  # a Keras 2 tutorial's
BS = 32


def _keras():
    import keras

    return keras


def build_cnn(size: int, seed: int = SEED):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Conv2D(16, 3, strides=2 if size > 32 else 1, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def images(n: int, size: int):
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.random((n, size, size, 3), dtype="float32")
    y = rng.integers(0, 10, n)
    return x, y


class EpochClock:
    """A callback timing each epoch and the end of the last one."""

    def __new__(cls):
        keras = _keras()

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.begins, self.ends = [], []

            def on_epoch_begin(self, epoch, logs=None):
                self.begins.append(time.perf_counter())

            def on_epoch_end(self, epoch, logs=None):
                self.ends.append(time.perf_counter())

            def steady(self, samples_per_epoch: int) -> float:
                spans = [e - b for b, e in zip(self.begins[1:], self.ends[1:])]
                return samples_per_epoch * len(spans) / sum(spans)

        return Clock()


# --------------------------------------------------------------------------- aug


def run_aug(size: int, n: int, epochs: int) -> dict[str, float]:
    import kfitx
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    x, y = images(n, size)
    steps = n // BS
    samples = steps * BS
    out = {}

    def timed(name, train):
        clock = EpochClock()
        model = build_cnn(size)
        train(model, clock)
        out[name] = clock.steady(samples)

    aug = ImageDataGenerator(**TUTORIAL_AUG)
    timed("plain fit", lambda m, c: m.fit(x, y, batch_size=BS, epochs=epochs, steps_per_epoch=steps,
                                          verbose=0, callbacks=[c]))
    timed("plain fit(IDG.flow)", lambda m, c: m.fit(aug.flow(x, y, batch_size=BS, seed=SEED), epochs=epochs,
                                                    steps_per_epoch=steps, verbose=0, callbacks=[c]))
    timed("kfitx generator", lambda m, c: kfitx.fit(m, x, y, strategy="generator", batch_size=BS,
                                                    epochs=epochs, steps_per_epoch=steps, verbose=0,
                                                    callbacks=[c]))
    timed("kfitx fit_generator(IDG.flow)", lambda m, c: kfitx.compat.fit_generator(
        m, aug.flow(x, y, batch_size=BS, seed=SEED), steps_per_epoch=steps, epochs=epochs, verbose=0,
        callbacks=[c]))
    return out


def part_aug(sizes: dict, repeats: int) -> list[tuple[str, float, float, float, str]]:
    rows = []
    for size, (n, epochs) in sizes.items():
        runs = [run_aug(size, n, epochs) for _ in range(repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  {size}x{size}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in med.items()), flush=True)
        rows.append((f"aug {size}x{size}  fit_generator(IDG) vs fit(IDG.flow), samples/s",
                     med["plain fit(IDG.flow)"], med["kfitx fit_generator(IDG.flow)"],
                     med["kfitx fit_generator(IDG.flow)"] / med["plain fit(IDG.flow)"], ">= 1.5"))
        rows.append((f"aug {size}x{size}  kfitx augmented vs not, samples/s", med["kfitx generator"],
                     med["kfitx fit_generator(IDG.flow)"],
                     med["kfitx fit_generator(IDG.flow)"] / med["kfitx generator"], ">= 0.75"))
        rows.append((f"aug {size}x{size}  plain fit(IDG.flow) vs plain fit", med["plain fit"],
                     med["plain fit(IDG.flow)"], med["plain fit(IDG.flow)"] / med["plain fit"], "(context)"))
    return rows


# --------------------------------------------------------------------------- latency


def part_latency(n: int, epochs: int) -> list[tuple[str, float, float, float, str]]:
    import keras
    import numpy as np

    import kfitx
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    x, y = images(n, 32)
    steps = n // BS

    def endless():
        while True:
            for i in range(0, steps * BS, BS):
                yield x[i:i + BS], y[i:i + BS]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return x[i * BS:(i + 1) * BS], y[i * BS:(i + 1) * BS]

    aug = ImageDataGenerator(**TUTORIAL_AUG)
    cases = {
        "plain fit(generator)": lambda m, c: m.fit(endless(), steps_per_epoch=steps, epochs=epochs, verbose=0,
                                                   callbacks=[c]),
        "plain fit(PyDataset, 2 processes)": lambda m, c: m.fit(
            Batches(workers=2, use_multiprocessing=True), epochs=epochs, verbose=0, callbacks=[c]),
        "plain fit(IDG.flow)": lambda m, c: m.fit(aug.flow(x, y, batch_size=BS), steps_per_epoch=steps,
                                                  epochs=epochs, verbose=0, callbacks=[c]),
        "kfitx generator, thread": lambda m, c: kfitx.fit(m, kfitx.data.generator(endless, steps), epochs=epochs,
                                                         strategy="generator", verbose=0, callbacks=[c]),
        "kfitx generator, process": lambda m, c: kfitx.fit(m, kfitx.data.generator(endless, steps),
                                                          strategy="generator", epochs=epochs, verbose=0,
                                                          callbacks=[c], use_multiprocessing=True),
        "kfitx PyDataset, 2 processes": lambda m, c: kfitx.fit(m, Batches(workers=2, use_multiprocessing=True),
                                                              strategy="generator", epochs=epochs, verbose=0,
                                                              callbacks=[c]),
        "kfitx fit_generator(IDG.flow)": lambda m, c: kfitx.compat.fit_generator(
            m, aug.flow(x, y, batch_size=BS), steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[c]),
    }
    lag = {}
    for name, train in cases.items():
        clock = EpochClock()
        train(build_cnn(32), clock)
        lag[name] = time.perf_counter() - clock.ends[-1]
        print(f"  {name}: {lag[name]:.3f} s from the last epoch's end to fit returning", flush=True)
    del np
    worst_plain = max(v for k, v in lag.items() if k.startswith("plain"))
    worst_kfitx = max(v for k, v in lag.items() if k.startswith("kfitx"))
    return [("latency  last epoch end -> fit returns, worst case, s", worst_plain, worst_kfitx,
             worst_kfitx / worst_plain if worst_plain else float("nan"), "kfitx <= 1 s")]


# --------------------------------------------------------------------------- out of core


def _rss_anon() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def build_mlp(features: int):
    keras = _keras()
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def ooc_child(side: str, directory: str, batch: int, steps: int) -> dict[str, float]:
    """One side of the out-of-core comparison, in its own process."""
    import numpy as np

    import kfitx

    source = kfitx.data.npy(os.path.join(directory, "x.npy"), os.path.join(directory, "y.npy"))
    features = source.x.shape[1]
    if side == "memory":  # an in-RAM slice of the same data, as large as the steps need
        rows = min(source.num_samples, batch * steps)
        source = kfitx.data.arrays(np.array(source.x[:rows]), np.array(source.y[:rows]))
    model = build_mlp(features)
    kfitx.fit(model, source.slice(0, batch * 4), strategy=side, batch_size=batch, epochs=1, verbose=0)
    before = _rss_anon()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_anon())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    clock = EpochClock()
    kfitx.fit(model, source, strategy=side, batch_size=batch, epochs=2, steps_per_epoch=steps, verbose=0,
              callbacks=[clock])
    done.set()
    sampler.join(1)
    peak[0] = max(peak[0], _rss_anon())
    return {"samples_per_s": clock.steady(batch * steps), "anon_above_gib": (peak[0] - before) / GiB,
            "data_gib": source.nbytes / GiB}


def part_ooc(gib: float, batch: int, steps: int) -> list[tuple[str, float, float, float, str]]:
    import numpy as np

    features = 1024
    rows = int(gib * GiB) // (features * 4)
    with tempfile.TemporaryDirectory(prefix="kfitx-bench-") as directory:
        start = time.perf_counter()
        x = np.lib.format.open_memmap(os.path.join(directory, "x.npy"), "w+", "float32", (rows, features))
        y = np.lib.format.open_memmap(os.path.join(directory, "y.npy"), "w+", "int64", (rows,))
        rng = np.random.default_rng(SEED)
        chunk = 65536
        for i in range(0, rows, chunk):
            part = rng.random((min(chunk, rows - i), features), dtype="float32")
            x[i:i + len(part)] = part
            y[i:i + len(part)] = (part[:, 0] * 10).astype("int64")
        x.flush(), y.flush()
        del x, y
        print(f"  wrote {gib:g} GiB of .npy in {time.perf_counter() - start:.0f} s", flush=True)
        results = {side: _child(["--ooc-child", side, directory, str(batch), str(steps)])
                   for side in ("generator", "memory")}
    gen, mem = results["generator"], results["memory"]
    print(f"  generator on {gen['data_gib']:.2f} GiB memory-mapped: {gen['samples_per_s']:,.0f}/s, "
          f"anonymous memory +{gen['anon_above_gib']:.3f} GiB; memory on a {mem['data_gib']:.2f} GiB slice: "
          f"{mem['samples_per_s']:,.0f}/s, +{mem['anon_above_gib']:.3f} GiB", flush=True)
    return [
        (f"ooc {gib:g} GiB .npy  RssAnon above baseline, GiB", mem["anon_above_gib"], gen["anon_above_gib"],
         float("nan"), "kfitx <= 0.5"),
        (f"ooc {gib:g} GiB .npy  samples/s vs memory on a slice", mem["samples_per_s"], gen["samples_per_s"],
         gen["samples_per_s"] / mem["samples_per_s"], ">= 0.9"),
    ]


def _child(argv: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=False,
                         timeout=1800)
    for line in out.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise RuntimeError(f"benchmark child {argv} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", choices=["aug", "latency", "ooc"], action="append")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--ooc-gib", type=float, default=None)
    parser.add_argument("--ooc-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ooc_child:
        side, directory, batch, steps = args.ooc_child
        print(RESULT_TAG + json.dumps(ooc_child(side, directory, int(batch), int(steps))), flush=True)
        return
    quick = args.quick
    parts = args.only or ["aug", "latency", "ooc"]
    rows = []
    if "aug" in parts:
        print("aug: a tutorial's ImageDataGenerator on a small CNN", flush=True)
        sizes = {32: (256, 2), 96: (64, 2)} if quick else {32: (2048, 4), 96: (512, 4)}
        rows += part_aug(sizes, args.repeats or (1 if quick else 3))
    if "latency" in parts:
        print("latency: end of the last epoch to fit returning", flush=True)
        rows += part_latency(128 if quick else 512, 2)
    if "ooc" in parts:
        gib = args.ooc_gib or (0.05 if quick else 4.0)
        print(f"ooc: a {gib:g} GiB .npy through kfitx.data.npy", flush=True)
        rows += part_ooc(gib, 256, 20 if quick else 1000)
    print()
    print(f"{'measure':<62} {'plain/memory':>13} {'kfitx':>13} {'ratio':>7}  target")
    for name, plain, kfitx_value, ratio, target in rows:
        print(f"{name:<62} {plain:>13,.3f} {kfitx_value:>13,.3f} {ratio:>7.2f}  {target}")


if __name__ == "__main__":
    main()
