"""The table of mistakes: each bad input or fault ends in the right KfitxError, in bounded time, leaving nothing behind.

Each case exercises a different check (not the same check with other values).
The categories, in order: fit arguments, data sources, generators and
workers, augmentation, strategy options, plugins, the keras-tuner bridge and
``kfitx tune``. Every case must raise its error class with a message that
matches, say what was received (``Received:``), finish within ``LIMIT_S``
seconds, and leave no kfitx thread or child process running (the ``no_leftovers`` fixture).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from contract import build_model

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import kfitx  # noqa: E402
import kfitx.tune  # noqa: E402
import kfitx.tuner  # noqa: E402
from kfitx import errors  # noqa: E402
from kfitx.search.launch.workers import gpu_assignment  # noqa: E402

LIMIT_S = 30.0
N, FEATURES, CLASSES = 64, 4, 3


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    run: Callable[[], Any]
    error: type[errors.KfitxError]
    match: str
    received: bool = True  # the message says what it got


def model(loss: str | None = "sparse_categorical_crossentropy") -> Any:
    return build_model(FEATURES, CLASSES, hidden=None, softmax=True, optimizer="sgd", loss=loss, metrics=None)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, FEATURES)).astype("float32"), rng.integers(0, CLASSES, N)


X, Y = data()


def fit(*args: Any, m: Any = None, **kwargs: Any) -> Any:
    kwargs.setdefault("verbose", 0)
    return kfitx.fit(model() if m is None else m, *args, **kwargs)


def batches(n: int = 4, *, x_only: bool = False):
    def factory():
        for i in range(n):
            part = slice(i * 8, (i + 1) * 8)
            yield X[part] if x_only else (X[part], Y[part])
    return factory


def generator_of(*items: Any):
    return lambda: iter(items)


class Pages(keras.utils.PyDataset):
    def __init__(self, length: int | None = 4, **kwargs: Any):
        super().__init__(**kwargs)
        self.length = length

    @property
    def num_batches(self):
        return self.length

    def __getitem__(self, i):
        return X[i * 8:(i + 1) * 8], Y[i * 8:(i + 1) * 8]


# -- generators that fail in their own ways -----------------------------------------------------

def raising():
    yield X[:8], Y[:8]
    raise RuntimeError("disk gone")


def dying():
    yield X[:8], Y[:8]
    os._exit(3)  # the worker process dies without a word


def stuck():
    yield X[:8], Y[:8]
    time.sleep(60)
    yield X[:8], Y[:8]


def forever():
    while True:
        yield X[:8], Y[:8]


def reshaping():
    yield X[:8], Y[:8]
    yield X[:8, :2], Y[:8]


def of_strings():
    yield np.array([["a"] * FEATURES] * 8), Y[:8]


def images(n: int = 16, side: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, side, side, 3)).astype("float32")


def image_model() -> Any:
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)])
    m.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def augmented(augment: Any, x: Any = None) -> Any:
    x = images() if x is None else x
    return kfitx.fit(image_model(), x, np.zeros(len(x) if not isinstance(x, tuple) else 16, "int64"),
                     strategy="generator", augment=augment, epochs=1, verbose=0)


def idg(**kwargs: Any) -> Any:
    from kfitx.augment import image_data_generator_class

    return image_data_generator_class()(**kwargs)


# -- plugins --------------------------------------------------------------------------------------

def plugin_strategy(name: str, fit_method: Callable[..., Any]) -> type[kfitx.Strategy]:
    return type(f"Plugin_{name}", (kfitx.Strategy,), {"name": name, "description": "a test plugin",
                                                     "fit": fit_method})


def registered(*strategies: type[kfitx.Strategy], names: tuple[str, ...] | None = None):
    """Runs ``kfitx.fit`` (or ``body``) with these strategies registered, each as its own plugin."""

    class Provides:
        def __init__(self, cls):
            self.cls = cls

        @kfitx.hookimpl
        def kfitx_strategies(self):
            return [self.cls]

    def run(body: Callable[[], Any]) -> Any:
        fresh = kfitx.registry.Registry(autoload=False)
        old = kfitx.registry.reset_registry(fresh)
        try:
            for i, cls in enumerate(strategies):
                fresh.register(Provides(cls), name=(names or ())[i] if names else f"plugin-{i}")
            return body()
        finally:
            kfitx.registry.reset_registry(old)

    return run


def old_signature_plugin():
    def old_fit(self, model, source, **fit_args):  # kfitx 0.1's signature
        return model.fit(*source.arrays(), **fit_args)
    return registered(plugin_strategy("legacy", old_fit))(lambda: fit(X, Y, strategy="legacy"))


def garbage_returning_plugin():
    return registered(plugin_strategy("garbage", lambda self, model, plan: "a string"))(
        lambda: fit(X, Y, strategy="garbage"))


def conflicting_plugins():
    one = plugin_strategy("dup", lambda self, model, plan: None)
    two = plugin_strategy("dup", lambda self, model, plan: None)
    return registered(one, two, names=("first", "second"))(lambda: fit(X, Y, strategy="dup"))


def bad_option_plugin():
    cls = type("WithOptions", (kfitx.Strategy,), {"name": "opts", "description": "d", "defaults": {"depth": 2},
                                                 "fit": lambda self, model, plan: None})
    return registered(cls)(lambda: fit(X, Y, strategy="opts", detph=3))


def refusing_plugin():
    cls = type("Refuses", (kfitx.Strategy,), {"name": "picky", "description": "d",
                                             "supports": lambda self, source: "picky wants tea, not arrays",
                                             "fit": lambda self, model, plan: None})
    return registered(cls)(lambda: fit(X, Y, strategy="picky"))


def raising_kfitx_error_plugin():
    def fit_method(self, model, plan):
        raise errors.DataError(errors.message("plugin data", "none"))
    return registered(plugin_strategy("raiser", fit_method))(lambda: fit(X, Y, strategy="raiser"))


def no_loss_validated():
    """A step of one's own trains a model compiled without a loss; Keras's evaluate cannot validate it (TF,
    torch): refused by the plan, before a step runs (a step that runs fails the case with a UserCodeError)."""
    def step(m, batch):
        raise AssertionError("a step ran before the plan refused the fit")
    return fit(X, Y, m=model(None), strategy="loop", step=step, validation_data=(X, Y), epochs=2, batch_size=16)


# -- the keras-tuner bridge ------------------------------------------------------------------------

def build(hp):
    return model()


def search(hypermodel_kwargs: dict[str, Any], search_kwargs: dict[str, Any] | None = None, tmp: Any = None):
    import tempfile

    import keras_tuner

    hypermodel = kfitx.tuner.StrategyHyperModel(**hypermodel_kwargs)
    with tempfile.TemporaryDirectory() as directory:
        tuner = keras_tuner.RandomSearch(hypermodel, objective="loss", max_trials=1, directory=directory,
                                         project_name="p", overwrite=True)
        try:
            tuner.search(X, Y, epochs=1, verbose=0, **(search_kwargs or {}))
        except keras_tuner.errors.FatalError as fatal:  # the search ended, with kfitx's error as the cause
            assert isinstance(fatal.__cause__, errors.KfitxError), repr(fatal.__cause__)
            assert str(fatal.__cause__) in str(fatal)
            raise fatal.__cause__ from None


def tune(target: Any = __file__, **options: Any) -> Any:
    return kfitx.tune.launch(target, start_timeout=5.0, out=lambda line: None, **options)


# -- the table -------------------------------------------------------------------------------------

FIT = "fit arguments"
DATA = "data sources"
GEN = "generators and workers"
AUG = "augmentation"
OPT = "strategy options"
PLUG = "plugins"
TUNER = "keras-tuner bridge"
TUNE = "kfitx tune"

CASES = [
    # fit arguments: checked in the plan, before any data is read
    Case(FIT, "unknown argument", lambda: fit(X, Y, epoch=2), errors.OptionError, r"Did you mean 'epochs'"),
    Case(FIT, "negative epochs", lambda: fit(X, Y, epochs=-1), errors.OptionError, r"epochs"),
    Case(FIT, "zero batch size", lambda: fit(X, Y, batch_size=0), errors.OptionError, r"batch_size"),
    Case(FIT, "verbose out of range", lambda: fit(X, Y, verbose=7), errors.OptionError, r"verbose"),
    Case(FIT, "validation_split of 1.5", lambda: fit(X, Y, validation_split=1.5), errors.OptionError,
         r"validation_split"),
    Case(FIT, "shuffle as a word", lambda: fit(X, Y, shuffle="yes"), errors.OptionError, r"shuffle"),
    Case(FIT, "negative seed", lambda: fit(X, Y, seed=-3), errors.OptionError, r"seed"),
    Case(FIT, "validation_freq 0", lambda: fit(X, Y, validation_freq=0), errors.OptionError, r"validation_freq"),
    Case(FIT, "validation_data on a model with no loss, before the first step", lambda: no_loss_validated(),
         errors.ModelError, r"compiled with a loss to validate on `validation_data`.*loss=None"),
    Case(FIT, "class_weight as a list", lambda: fit(X, Y, class_weight=[1, 2]), errors.OptionError,
         r"class_weight"),
    Case(FIT, "one callback, not a list", lambda: fit(X, Y, callbacks=keras.callbacks.History()),
         errors.OptionError, r"callbacks"),
    Case(FIT, "a callback that is not a Callback", lambda: fit(X, Y, callbacks=[print]), errors.OptionError,
         r"keras.callbacks.Callback"),
    Case(FIT, "not a model", lambda: kfitx.fit("my model", X, Y), errors.ModelError, r"keras.Model"),
    Case(FIT, "an uncompiled model", lambda: kfitx.fit(keras.Sequential([keras.layers.Dense(1)]), X, Y),
         errors.ModelError, r"compiled"),

    # data sources: what the data is, checked when it is coerced or planned
    Case(DATA, "strings as x", lambda: fit(np.array([["a"] * FEATURES] * N), Y), errors.DataError,
         r"numeric or boolean dtype"),
    Case(DATA, "x and y of different lengths", lambda: fit(X, Y[:10]), errors.DataError, r"same number of samples"),
    Case(DATA, "no samples", lambda: fit(X[:0], Y[:0]), errors.DataError, r"must not be empty"),
    Case(DATA, "a scalar x", lambda: fit(np.float32(3.0), Y), errors.DataError, r"leading sample axis"),
    Case(DATA, "a .npy path that does not exist", lambda: fit("no-such-file.npy"), errors.DataError,
         r"existing .npy file"),
    Case(DATA, "y beside a stream", lambda: fit(batches(), Y), errors.DataError, r"`y` must be None"),
    Case(DATA, "a tuple of four", lambda: fit((X, Y, Y, Y)), errors.DataError, r"\(x, y\) or \(x, y, sample_weight\)"),
    Case(DATA, "a started generator object", lambda: kfitx.data.generator(batches()()), errors.DataError,
         r"factory"),
    Case(DATA, "sample_weight beside a generator", lambda: fit(batches(), sample_weight=np.ones(N),
                                                               strategy="generator"),
         errors.DataError, r"`sample_weight` goes with array data"),
    Case(DATA, "validation_split of a tf.data stream",
         lambda: fit(tf.data.Dataset.from_tensor_slices((X, Y)).batch(8), validation_split=0.2,
                     strategy="generator"),
         errors.DataError, r"`validation_split` splits arrays only"),
    Case(DATA, "features that do not fit the model", lambda: fit(X[:, :2], Y), errors.DataError, r"shape"),
    Case(DATA, "no targets for a model with a loss", lambda: fit(X), errors.DataError, r"(?i)targets"),
    Case(DATA, "an endless PyDataset without steps", lambda: fit(Pages(length=None), strategy="generator"),
         errors.DataError, r"endless PyDataset"),
    Case(DATA, "not a dataset", lambda: kfitx.data.dataset(object()), errors.DataError, r"tf.data.Dataset"),

    # generators and workers: faults met while training, each naming where
    Case(GEN, "a generator that raises", lambda: fit(raising, strategy="generator"), errors.DataError,
         r"without raising.*disk gone"),
    Case(GEN, "a generator that yields nothing", lambda: fit(generator_of(), strategy="generator"),
         errors.DataError, r"at least one batch"),
    Case(GEN, "a batch of another shape", lambda: fit(reshaping, strategy="generator"), errors.DataError,
         r"shape \(batch, 4\) in every batch"),
    Case(GEN, "a batch of strings", lambda: fit(of_strings, strategy="generator"), errors.DataError,
         r"numeric arrays"),
    Case(GEN, "a batch of four items", lambda: fit(generator_of((X[:8], Y[:8], Y[:8], Y[:8])), strategy="generator"),
         errors.DataError, r"x, \(x, y\) or \(x, y, sample_weight\)"),
    Case(GEN, "x alone for a model with a loss", lambda: fit(batches(x_only=True), strategy="generator"),
         errors.DataError, r"(?i)targets"),
    Case(GEN, "an endless generator without steps", lambda: fit(forever, strategy="generator", endless_after=20),
         errors.DataError, r"must end"),
    Case(GEN, "a worker process that dies", lambda: fit(dying, strategy="generator", use_multiprocessing=True),
         errors.WorkerError, r"died"),
    Case(GEN, "a worker that stalls", lambda: fit(stuck, strategy="generator", use_multiprocessing=True, timeout=1.0),
         errors.WorkerError, r"within timeout=1 s"),

    # augmentation: refused when adapted, or named by batch when it fails
    Case(AUG, "a word for augment", lambda: augmented("flip"), errors.AugmentationError, r"`augment` must be"),
    Case(AUG, "a layer class, not an instance", lambda: augmented(keras.layers.RandomFlip),
         errors.AugmentationError, r"Pass an instance"),
    Case(AUG, "a list holding a non-layer", lambda: augmented([keras.layers.RandomFlip(), "rotate"]),
         errors.AugmentationError, r"holding str"),
    Case(AUG, "a function that raises", lambda: augmented(lambda x, y: 1 / 0), errors.AugmentationError,
         r"ZeroDivisionError.*training batch 0"),
    Case(AUG, "a function changing the shape", lambda: augmented(lambda x, y: (x[:, :4], y)),
         errors.AugmentationError, r"shape"),
    Case(AUG, "a function returning x alone", lambda: augmented(lambda x, y: x), errors.AugmentationError,
         r"a pair \(x, y\)"),
    Case(AUG, "layers on nested x",
         lambda: kfitx.fit(image_model(), kfitx.data.generator(lambda: iter([((images(8), images(8)), np.zeros(8))])),
                           strategy="generator", augment=keras.layers.RandomFlip(), verbose=0),
         errors.AugmentationError, r"single tensor"),
    Case(AUG, "zca_whitening before idg.fit", lambda: augmented(idg(zca_whitening=True)),
         errors.AugmentationError, r"idg.fit\(x_train\)"),
    Case(AUG, "an ImageDataGenerator on flat rows", lambda: kfitx.fit(model(), X, Y, strategy="generator",
                                                                     augment=idg(rotation_range=10), verbose=0),
         errors.AugmentationError, r"rank 4"),

    # strategy options: checked in each strategy's __init__, before the plan
    Case(OPT, "a misspelt option", lambda: fit(X, Y, strategy="memory", memory_budgit=0.5), errors.OptionError,
         r"Did you mean 'memory_budget'"),
    Case(OPT, "a memory budget over 1", lambda: fit(X, Y, strategy="memory", memory_budget=2.0), errors.OptionError,
         r"memory_budget"),
    Case(OPT, "zero workers", lambda: fit(X, Y, strategy="generator", workers=0), errors.OptionError, r"workers"),
    Case(OPT, "use_multiprocessing as a word", lambda: fit(X, Y, strategy="generator", use_multiprocessing="yes"),
         errors.OptionError, r"use_multiprocessing"),
    Case(OPT, "a negative timeout", lambda: fit(X, Y, strategy="generator", timeout=-1.0), errors.OptionError,
         r"timeout"),
    Case(OPT, "a step that is not callable", lambda: fit(X, Y, strategy="loop", step="sgd"), errors.OptionError,
         r"`step`"),
    Case(OPT, "batch hooks that are not callables", lambda: fit(X, Y, strategy="loop", batch_hooks=[1]),
         errors.OptionError, r"batch_hooks"),
    Case(OPT, "the old name of endless_after", lambda: fit(X, Y, strategy="loop", infinite_after=5),
         errors.OptionError, r"endless_after"),
    Case(OPT, "steps_per_execution 0", lambda: fit(X, Y, strategy="memory", steps_per_execution=0),
         errors.OptionError, r"steps_per_execution"),
    Case(OPT, "an unknown strategy", lambda: fit(X, Y, strategy="memroy"), errors.StrategyNotFoundError,
         r"Did you mean 'memory'"),
    Case(OPT, "arrays over the memory budget", lambda: fit(X, Y, strategy="memory", memory_budget=100),
         errors.MemoryBudgetError, r"memory budget", received=False),
    Case(OPT, "auto with a step and an augmentation",
         lambda: fit(X, Y, strategy="auto", step=lambda m, b: {}, augment=lambda x, y: (x, y)),
         errors.OptionError, r"cannot do both"),

    # plugins: refused with the plugin named
    Case(PLUG, "kfitx 0.1's fit signature", old_signature_plugin, errors.PluginError, r"fit\(self, model, plan\)",
         received=False),
    Case(PLUG, "a fit that returns no History", garbage_returning_plugin, errors.KfitxError,
         r"must return a keras.callbacks.History"),
    Case(PLUG, "two plugins, one name", conflicting_plugins, errors.StrategyConflictError, r"first.*second",
         received=False),
    Case(PLUG, "a plugin option misspelt", bad_option_plugin, errors.OptionError, r"Did you mean 'depth'"),
    Case(PLUG, "a plugin that refuses the data", refusing_plugin, errors.UnsupportedDataError, r"picky wants tea",
         received=False),
    Case(PLUG, "a plugin's own kfitx error", raising_kfitx_error_plugin, errors.DataError, r"plugin data"),

    # the keras-tuner bridge: configuration errors end the search with kfitx's message
    Case(TUNER, "build_model not callable", lambda: kfitx.tuner.StrategyHyperModel("build"), errors.OptionError,
         r"build_model"),
    Case(TUNER, "no strategies", lambda: kfitx.tuner.StrategyHyperModel(build, strategies=[]), errors.OptionError,
         r"non-empty list"),
    Case(TUNER, "options for a strategy not tried",
         lambda: kfitx.tuner.StrategyHyperModel(build, strategies=["memory"], strategy_options={"loop": {}}),
         errors.OptionError, r"strategy_options"),
    Case(TUNER, "an unknown strategy in a search", lambda: search({"build_model": build, "strategies": ["memroy"]}),
         errors.StrategyNotFoundError, r"Did you mean 'memory'"),
    Case(TUNER, "a bad fit argument inside a trial",
         lambda: search({"build_model": build, "strategies": ["memory"]}, {"batch_size": 0}),
         errors.OptionError, r"batch_size"),
    Case(TUNER, "bad data inside a trial",
         lambda: search({"build_model": build, "strategies": ["memory"]}, {"validation_split": 1.5}),
         errors.OptionError, r"validation_split"),

    # kfitx tune: refused before any process starts
    Case(TUNE, "no such script", lambda: tune("no_such_search.py"), errors.TuneError, r"search script"),
    Case(TUNE, "neither a script nor a function", lambda: tune(42), errors.TuneError, r"a script path or a function"),
    Case(TUNE, "a function that is not top-level", lambda: tune(lambda: None), errors.TuneError, r"top-level function"),
    Case(TUNE, "zero workers", lambda: tune(workers=0), errors.TuneError, r"--workers"),
    Case(TUNE, "a negative recycling count", lambda: tune(trials_per_worker=-1), errors.TuneError,
         r"--trials-per-worker"),
    Case(TUNE, "a chief address without a port", lambda: tune(chief="localhost"), errors.TuneError, r"HOST:PORT"),
    Case(TUNE, "more GPUs per worker than there are", lambda: gpu_assignment(1, ["0"], 2), errors.TuneError,
         r"--gpus-per-worker"),
]


def test_the_table_is_large_and_balanced():
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.category] = counts.get(case.category, 0) + 1
    assert len(CASES) >= 60, len(CASES)
    assert all(n >= 5 for n in counts.values()), counts
    assert len({(c.category, c.name) for c in CASES}) == len(CASES), "each case checks something else"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.category}: {c.name}" for c in CASES])
def test_each_mistake_is_its_kfitx_error_in_bounded_time(case, no_leftovers):
    _is_its_kfitx_error(case)


def _is_its_kfitx_error(case: Case) -> errors.KfitxError:
    """Runs ``case``: its error class, message, ``Received:`` and time limit; returns the error."""
    start = time.monotonic()
    with pytest.raises(errors.KfitxError) as info:
        case.run()
    seconds = time.monotonic() - start
    error = info.value
    assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
    assert re.search(case.match, str(error), re.S), str(error)
    if case.received:
        assert "Received:" in str(error), str(error)
    assert seconds < LIMIT_S, f"took {seconds:.1f} s"
    return error


# -- round two: user code that fails, and the tuner's keywords ---------------------------------------

def hooked(hook: Callable[..., Any]) -> Any:
    return fit(X, Y, strategy="loop", batch_hooks=[hook], batch_size=16)


def stepped(step: Callable[..., Any]) -> Any:
    return fit(X, Y, strategy="loop", step=step, batch_size=16)


def _raises(*args: Any) -> Any:
    raise ValueError("user code fails")


def tune_script_with_a_syntax_error() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        script = os.path.join(directory, "search.py")
        with open(script, "w") as f:
            f.write("import keras_tuner\n\ntuner = keras_tuner.RandomSearch(\n")
        return tune(script)


def tune_on_a_port_bound_but_not_listening() -> Any:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers a connect there
        return tune(port=sock.getsockname()[1])


def two_inputs() -> Any:
    a, b = keras.Input((FEATURES,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(CLASSES, activation="softmax")(keras.layers.Concatenate()([a, b]))
    m = keras.Model([a, b], out)
    m.compile("sgd", "sparse_categorical_crossentropy")
    return m


def npy_directory() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        os.makedirs(os.path.join(directory, "x.npy"))
        return fit(os.path.join(directory, "x.npy"))


USER = "user code"
ROUND_TWO = [
    Case(USER, "a training step that raises", lambda: stepped(_raises), errors.UserCodeError,
         r"training step _raises.*ValueError\('user code fails'\) at training batch 0 of epoch 1"),
    Case(USER, "a batch hook that raises", lambda: hooked(_raises), errors.UserCodeError,
         r"batch hook _raises.*at training batch 0 of epoch 1"),
    Case(USER, "a batch hook with the wrong arguments", lambda: hooked(lambda batch: batch), errors.UserCodeError,
         r"batch hook .*lambda.*TypeError"),
    Case(USER, "a batch hook that returns x alone", lambda: hooked(lambda b, i, e: b[0]), errors.UserCodeError,
         r"targets with the inputs"),
    Case(USER, "a batch hook that changes the feature width",
         lambda: hooked(lambda b, i, e: (tf.concat([b[0], b[0]], axis=1), b[1])), errors.UserCodeError,
         r"(shape the model's input.*\(16, 8\).*batch hook|step on the batch returned by the batch hook.*"
         r"\(16, 8\).*at training batch 0)"),
    Case(USER, "a batch hook that returns y shorter than x", lambda: hooked(lambda b, i, e: (b[0], b[1][:-1])),
         errors.UserCodeError, r"one batch size.*\[15, 16\]"),
    Case(TUNER, "StrategyHyperModel(strategy=...)", lambda: kfitx.tuner.StrategyHyperModel(build, strategy="loop"),
         errors.OptionError, r"Did you mean 'strategies'"),
    Case(TUNER, "MedianPruning(warmup=2)", lambda: kfitx.tuner.MedianPruning(warmup=2), errors.OptionError,
         r"warmup=2.*Did you mean 'warmup_epochs'"),
    Case(TUNER, "kfitx.tuner.fit without hp", lambda: kfitx.tuner.fit(model(), X, Y), errors.OptionError,
         r"HyperParameters first"),
    Case(TUNER, "kfitx.tuner.fit(strategy=...)",
         lambda: kfitx.tuner.fit(__import__("keras_tuner").HyperParameters(), model(), X, Y, strategy="loop"),
         errors.OptionError, r"Did you mean 'strategies'"),
    Case(DATA, "labels out of range for a sparse loss", lambda: fit(X, Y + CLASSES), errors.DataError,
         r"class indices in \[0, 3\).*labels from 3 to 5"),
    Case(DATA, "one-hot targets with a sparse loss", lambda: fit(X, np.eye(CLASSES)[Y]), errors.DataError,
         r"integer class indices.*one-hot.*argmax"),
    Case(DATA, "a dict input whose names the model lacks", lambda: fit({"a": X, "c": X[:, :2]}, Y, m=two_inputs()),
         errors.DataError, r"key for each model input: a, b.*no 'b'"),
    Case(DATA, "a two-input model given one array", lambda: fit(X, Y, m=two_inputs()), errors.DataError,
         r"one array per model input.*takes 2"),
    Case(DATA, "an unbatched tf.data dataset", lambda: fit(tf.data.Dataset.from_tensor_slices((X, Y))),
         errors.DataError, r"dataset of batches.*single samples.*\.batch"),
    Case(DATA, "a directory given as a .npy path", npy_directory, errors.DataError, r"must be a .npy file.*directory"),
    Case(USER, "no loss, validation_data and a step of one's own",
         lambda: fit(X, Y, m=model(None), strategy="loop", step=lambda m, b: {}, validation_data=(X, Y)),
         errors.ModelError, r"compiled with a loss to validate"),
    Case(TUNE, "a script with a syntax error", tune_script_with_a_syntax_error, errors.TuneError,
         r"valid Python.*SyntaxError.*search.py, line 3.*Fix that line"),
    Case(TUNE, "a --port bound but not listening", tune_on_a_port_bound_but_not_listening, errors.TuneError,
         r"a port the chief can bind.*--port \d+.*(in use|Address)"),
]


@pytest.mark.parametrize("case", ROUND_TWO, ids=[f"{c.category}: {c.name}" for c in ROUND_TWO])
def test_each_mistake_of_round_two_is_its_kfitx_error_in_bounded_time(case, no_leftovers):
    error = _is_its_kfitx_error(case)
    if case.error is errors.UserCodeError and "raises" in case.name:
        assert isinstance(error.__cause__, ValueError)  # the user's exception is kept as the cause
