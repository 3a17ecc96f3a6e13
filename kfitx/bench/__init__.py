"""``kfitx bench``: one model on one data set through several strategies, side by side.

Separation of concerns:

* :class:`BenchSpec` says what to train (model, data, epochs, batch size, seed);
  :func:`load_data` and :func:`build_model` make it, the same for every strategy
  (same data, same initial weights);
* :func:`run_one` trains one strategy in this process and measures it: seconds
  per epoch (a callback with epoch hooks only, so no strategy is kept from
  grouping steps), samples/s, peak resident memory and the final metrics; the
  fit itself is measured by a ``kfitx_fit`` wrapper (:class:`_Measure`);
* :func:`bench` runs each strategy in a fresh Python process
  (``python -m kfitx.bench --child``), because peak memory is per process: in one
  process the first strategy's peak would hide the others'. It relays each
  child's progress lines as they come, and a strategy that fails becomes a row
  with its error while the others still run;
* :func:`format_table` and :func:`plot` (matplotlib, ``pip install kfitx[plot]``)
  present the results; with a ``plain`` row (the same model through plain
  ``model.fit``, :data:`PLAIN`), every row's samples/s is also a ratio to it;
* ``backends``: the same rows on each Keras backend (``KERAS_BACKEND`` set per
  process, since Keras fixes its backend at import), each ratio against plain
  ``model.fit`` on its own backend.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from kfitx.bench.plot import PLAIN, label, plain_speed, plot, require_matplotlib
from kfitx.errors import OptionError, StrategyFitError, message
from kfitx.hookspecs import hookimpl
from kfitx.runtime import resolve

if TYPE_CHECKING:
    import keras
    import numpy as np
    from numpy.typing import NDArray

    from kfitx.plan import FitPlan
    from kfitx.strategy import Strategy

__all__ = ["BenchResult", "BenchSpec", "bench", "build_model", "check_backends", "format_table", "label", "load_data",
           "plain_speed", "plot", "require_matplotlib", "run_one"]

RESULT_TAG = "KFITX_BENCH_RESULT "
MODELS = ("mlp", "cnn")
DATASETS = ("digits", "synthetic")


@dataclass(frozen=True)
class BenchSpec:
    """What every strategy trains: the same model on the same data.

    Args:
        model: ``"mlp"`` (two dense layers) or ``"cnn"`` (two convolutions).
        data: ``"digits"`` (scikit-learn's bundled 8x8 digits, 1797 samples; the
            last 20 % validate) or ``"synthetic"`` (``samples`` random samples with
            a learnable rule: 64 features for the MLP, 28x28 images for the CNN).
        samples: Samples of the synthetic data (training + validation).
        epochs: Epochs per strategy.
        batch_size: Samples per batch.
        seed: Seed of the data, the initial weights and the shuffling.
    """

    model: str = "mlp"
    data: str = "digits"
    samples: int = 4096
    epochs: int = 3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise OptionError(message(f"--model must be one of {', '.join(MODELS)}", repr(self.model)))
        if self.data not in DATASETS:
            raise OptionError(message(f"--data must be one of {', '.join(DATASETS)}", repr(self.data)))
        for name in ("samples", "epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise OptionError(message(f"`{name}` must be a positive int", repr(getattr(self, name))))

    def describe(self) -> str:
        size = "" if self.data == "digits" else f" ({self.samples} samples)"
        return (f"{self.model} on {self.data}{size}, {self.epochs} epoch(s), batch size {self.batch_size}, "
                f"seed {self.seed}")


@dataclass
class BenchResult:
    """One strategy's measurements (``error`` set, the rest empty, when it failed)."""

    strategy: str
    samples_per_s: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    rss_before_fit_mib: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    own_process: bool = True
    error: str | None = None
    backend: str = ""

    @property
    def seconds_per_epoch(self) -> float:
        """Median seconds per epoch, the first (tracing) epoch left out when there are more."""
        times = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.median(times) if times else 0.0


def load_data(spec: BenchSpec) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """``(x, y, x_val, y_val)`` for ``spec``: float32 inputs, integer classes 0-9."""
    import numpy as np

    if spec.data == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:
            raise OptionError(message("scikit-learn for --data digits (its digits ship inside it)",
                                      "it is not installed",
                                      "pip install scikit-learn, or use --data synthetic.")) from err
        digits = load_digits()
        x, y = (digits.data / 16.0).astype("float32"), digits.target.astype("int64")
        x = x.reshape(-1, 8, 8, 1) if spec.model == "cnn" else x
    else:
        rng = np.random.default_rng(spec.seed)
        shape = (28, 28, 1) if spec.model == "cnn" else (64,)
        x = rng.normal(size=(spec.samples, *shape)).astype("float32")
        weights = rng.normal(size=(int(np.prod(shape)), 10)).astype("float32")
        y = np.argmax(x.reshape(len(x), -1) @ weights, axis=1).astype("int64")
    cut = int(len(x) * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def build_model(spec: BenchSpec, input_shape: tuple[int, ...]) -> keras.Model:
    """The compiled model for ``spec``; the same seed gives the same initial weights."""
    import keras

    keras.utils.set_random_seed(spec.seed)
    layers = keras.layers
    if spec.model == "mlp":
        body = [layers.Dense(128, activation="relu"), layers.Dense(64, activation="relu")]
    else:
        body = [layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                layers.Conv2D(32, 3, padding="same", activation="relu"), layers.GlobalAveragePooling2D()]
    model = keras.Sequential([keras.Input(input_shape), *body, layers.Dense(10)], name=f"bench_{spec.model}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mib() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark where there is one)."""
    try:
        import resource
    except ImportError:  # Windows: the current size is the best we have
        return _rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


class _Measure:
    """``kfitx bench``'s ``kfitx_fit`` wrapper: resident memory before the fit, its wall time."""

    def __init__(self) -> None:
        self.rss_before_mib = 0.0
        self.seconds = 0.0

    @hookimpl(wrapper=True)
    def kfitx_fit(self, strategy: Strategy, model: keras.Model, plan: FitPlan) -> Generator[None, object, object]:
        self.rss_before_mib = _rss_mib()
        start = time.perf_counter()
        history = yield
        self.seconds = time.perf_counter() - start
        return history


def run_one(spec: BenchSpec, strategy: str, progress: Callable[[str], None] = print) -> BenchResult:
    """Trains ``strategy`` on ``spec`` in this process and measures it."""
    import keras

    from kfitx.api import fit
    from kfitx.registry import get_registry

    x, y, x_val, y_val = load_data(spec)
    model = build_model(spec, x.shape[1:])
    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):  # epoch hooks only: strategies may still group steps
        def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            times.append(time.perf_counter() - self.start)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items())
                              if isinstance(v, (int, float)))
            progress(f"  {strategy}: epoch {epoch + 1}/{spec.epochs} {times[-1]:.2f} s  {shown}")

    measure, registry = _Measure(), get_registry()
    args = {"epochs": spec.epochs, "batch_size": spec.batch_size, "validation_data": (x_val, y_val),
            "callbacks": [EpochTimer()], "verbose": 0}
    if strategy == PLAIN:  # the baseline: Keras alone
        keras.utils.set_random_seed(spec.seed)
        measure.rss_before_mib, start = _rss_mib(), time.perf_counter()
        history = model.fit(x, y, **args)
        measure.seconds = time.perf_counter() - start
    else:
        name = registry.register(measure, name=f"kfitx.bench-measure-{id(measure)}")
        try:
            history = fit(model, x, y, strategy=strategy, seed=spec.seed, **args)
        finally:
            if name is not None:
                registry.unregister(name)
    steady = times[1:] or times
    samples_per_s = len(x) / statistics.median(steady) if steady else len(x) * len(times) / measure.seconds
    metrics = {k: float(v[-1]) for k, v in history.history.items() if v and isinstance(v[-1], (int, float))}
    return BenchResult(strategy, samples_per_s, times, _peak_rss_mib(), measure.rss_before_mib, metrics,
                       backend=resolve().backend)


def _child(argv: Sequence[str]) -> int:
    """``python -m kfitx.bench --child SPEC_JSON STRATEGY``: one measurement, then its result as JSON."""
    spec, strategy = BenchSpec(**json.loads(argv[0])), argv[1]
    try:
        result = run_one(spec, strategy, progress=lambda line: print(line, flush=True))
    except Exception as err:  # reported as the strategy's row; the parent goes on with the others
        result = BenchResult(strategy, error=_error_row(err))
    print(RESULT_TAG + json.dumps(asdict(result)), flush=True)
    return 0


def _in_child(spec: BenchSpec, strategy: str, progress: Callable[[str], None], timeout: float,
              backend: str | None = None) -> BenchResult:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    if backend:
        env["KERAS_BACKEND"] = backend
    command = [sys.executable, "-m", "kfitx.bench", "--child", json.dumps(asdict(spec)), strategy]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    result = None
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(RESULT_TAG):
                result = BenchResult(**json.loads(line[len(RESULT_TAG):]))
            else:
                progress(line.rstrip("\n"))
        proc.wait()
    finally:
        watchdog.cancel()
        reader.join(timeout=5)
    if result is None:
        why = f"killed after {timeout:.0f} s" if proc.returncode and proc.returncode < 0 else \
            f"exit code {proc.returncode}"
        tail = "".join(stderr).strip().splitlines()[-3:]
        result = BenchResult(strategy, error=f"the benchmark process ended without a result ({why}): "
                                             + " | ".join(tail))
    result.backend = result.backend or backend or ""
    return result


def check_backends(backends: Sequence[str]) -> None:
    """Raises an :class:`OptionError` for a name that is not a Keras backend, or one not installed."""
    import importlib.util

    from kfitx.strategy import BACKENDS

    for name in backends:
        if name not in BACKENDS:
            raise OptionError(message("Keras backends among: " + ", ".join(BACKENDS), repr(name)))
        if importlib.util.find_spec(name) is None:
            raise OptionError(message(f"the {name} backend installed", f"no module named {name!r}",
                                      f"pip install 'kfitx[{name if name != 'tensorflow' else 'cpu'}]'."))


def _error_row(err: BaseException) -> str:
    """A failed row: what the strategy raised (a plugin's error as it raised it, not kfitx's wrapper)."""
    if isinstance(err, StrategyFitError) and err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"


def bench(spec: BenchSpec, strategies: Sequence[str], *, progress: Callable[[str], None] = print,
          subprocesses: bool = True, timeout: float = 600.0,
          backends: Sequence[str] | None = None) -> list[BenchResult]:
    """Runs every strategy on ``spec``; returns one result per strategy, in order.

    Args:
        spec: What to train.
        strategies: Strategy names (``kfitx list`` shows them).
        progress: Called with each progress line (one per strategy and epoch).
        subprocesses: One fresh process per strategy (default), so each peak
            memory is that strategy's own. ``False`` runs them all here (faster
            to start; peaks are then the process's high-water mark so far).
        timeout: Seconds a strategy's process may take before it is killed.
        backends: Run every strategy on each of these Keras backends, one process
            each (default: the active backend only).
    """
    from kfitx.registry import get_registry

    if not strategies:
        raise OptionError(message("at least one strategy to benchmark", "none"))
    for name in strategies:
        if name != PLAIN:
            get_registry().lookup(name)  # unknown names fail before anything trains
    if backends:
        check_backends(backends)
        if not subprocesses:
            raise OptionError(message("one process per strategy to compare backends (Keras fixes its backend "
                                      "at import)", "in-process runs", "Drop --in-process."))
    on: list[str | None] = [*backends] if backends else [None]
    runs = [(backend, name) for backend in on for name in strategies]
    results = []
    for i, (backend, name) in enumerate(runs, 1):
        progress(f"[{i}/{len(runs)}] {name}{f' on {backend}' if backend else ''}: {spec.describe()}")
        if subprocesses:
            result = _in_child(spec, name, progress, timeout, backend)
        else:
            try:
                result = run_one(spec, name, progress)
            except Exception as err:  # a row with the error; the others still run
                result = BenchResult(name, error=_error_row(err))
            result.own_process = False
        if result.error:
            progress(f"  {name}: FAILED: {result.error}")
        results.append(result)
    return results


def format_table(results: Sequence[BenchResult]) -> str:
    """The results as a text table; failed strategies show their error."""
    keys = sorted({k for r in results for k in r.metrics}, key=lambda k: (k.startswith("val_"), k))
    ratios = any(plain_speed(results, r.backend) for r in results)
    header = ["strategy", "samples/s", *(["vs plain"] if ratios else []), "s/epoch", "1st epoch s",
              "peak RSS MiB", *keys]
    rows = [header]
    for r in results:
        if r.error:
            rows.append([label(r, results), "FAILED: " + r.error])
            continue
        peak = f"{r.peak_rss_mib:.0f}" + ("" if r.own_process else "*")
        plain = plain_speed(results, r.backend)
        ratio = [f"{r.samples_per_s / plain:.2f}x" if plain else "-"] if ratios else []
        rows.append([label(r, results), f"{r.samples_per_s:,.0f}", *ratio,
                     f"{r.seconds_per_epoch:.3f}", f"{r.epoch_seconds[0]:.2f}" if r.epoch_seconds else "-", peak,
                     *(f"{r.metrics[k]:.4f}" if k in r.metrics else "-" for k in keys)])
    widths = [max(len(row[i]) for row in rows if len(row) > i and not row[1].startswith("FAILED"))
              for i in range(len(header))]
    lines = []
    for row in rows:
        if len(row) == 2 and row[1].startswith("FAILED"):
            lines.append(row[0].ljust(widths[0]) + "  " + row[1])
        else:
            lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(not r.own_process and not r.error for r in results):
        lines.append("* peak RSS of the one process all strategies ran in (the high-water mark so far)")
    return "\n".join(lines)

