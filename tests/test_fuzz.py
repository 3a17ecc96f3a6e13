"""Property-based tests: data coercion and a one-epoch fit over random shapes, dtypes, nestings, lengths, batch sizes.

The strategies below generate valid data *and* classes of invalid data on
purpose (non-numeric dtypes, mismatched lengths, empty sets, scalars, wrong
feature widths, bad batch sizes, generators that change shape). An input meant
to train must train; a mistake must raise a :class:`KfitxError` saying what it
received, or train only where plain ``model.fit`` trains on it too (a float64
batch after float32 ones does) -- never another exception, never a hang, nothing
left running. The default run is derandomised with a bounded number of
examples; ``-m slow`` runs more. ``OUTCOMES`` counts what happened; it is
printed when the module's tests are done.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from contract import Leftovers, build_model  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import kfitx  # noqa: E402

OUTCOMES: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_outcomes(request):
    """Prints, once this module's tests ran, how many generated inputs trained and how many raised what."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if OUTCOMES and capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\nfuzz outcomes: {dict(sorted(OUTCOMES.items()))}")

FAST = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=200, derandomize=False, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool"]
BAD_DTYPES = ["U3", "O", "complex64"]  # strings, objects, complex: never trainable


@st.composite
def array_data(draw):
    """A data spec: (structure, shapes, dtype, n, the mutation made to it, batch size)."""
    n = draw(st.integers(1, 24))
    structure = draw(st.sampled_from(["array", "list", "dict"]))
    width = draw(st.integers(1, 4))
    rank = draw(st.integers(1, 2))
    shape = (width,) if rank == 1 else (width, draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from(DTYPES))
    mutation = draw(st.sampled_from(["none", "none", "none", "bad-dtype", "short-y", "empty", "scalar",
                                     "wide", "bad-batch", "y-missing"]))
    batch = draw(st.sampled_from([1, 3, 8, 32])) if mutation != "bad-batch" else draw(
        st.sampled_from([0, -2, 2.5, "8", True]))
    return structure, shape, dtype, n, mutation, batch


def build(structure, shape):
    keras.utils.set_random_seed(0)
    if structure == "array":
        inputs = keras.Input(shape, name="a")
        flat = keras.layers.Flatten()(inputs)
    else:
        a, b = keras.Input(shape, name="a"), keras.Input(shape, name="b")
        inputs = [a, b] if structure == "list" else {"a": a, "b": b}
        flat = keras.layers.Concatenate()([keras.layers.Flatten()(a), keras.layers.Flatten()(b)])
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def make_x(structure, shape, dtype, n, rng):
    def leaf(): return (rng.normal(size=(n, *shape)) * 3).astype(dtype)
    if structure == "array":
        return leaf()
    return [leaf(), leaf()] if structure == "list" else {"a": leaf(), "b": leaf()}


def mutate(x, y, mutation, structure, shape, n, rng):
    if mutation == "bad-dtype":
        kind = rng.choice(BAD_DTYPES)
        bad = np.ones((n, *shape), "complex64") if kind == "complex64" else np.full((n, *shape), "abc").astype(kind)
        x = bad if structure == "array" else ([bad, bad] if structure == "list" else {"a": bad, "b": bad})
    elif mutation == "short-y":
        y = y[: max(0, n - 1 - int(rng.integers(0, n)))]
    elif mutation == "empty":
        x = kfitx.data.base.map_structure(lambda a: a[:0], x)
        y = y[:0]
    elif mutation == "scalar":
        x = np.float32(1.0)
    elif mutation == "wide":
        wide = (shape[0] + 1, *shape[1:])
        x = kfitx.data.base.map_structure(lambda a: np.zeros((n, *wide), a.dtype), x)
    elif mutation == "y-missing":
        y = None
    return x, y


def outcome(run, plain, meant_to_train):
    """Runs ``run`` (a kfitx fit) and checks what happened against what the draw meant.

    An input meant to train trains. A mistake raises a :class:`KfitxError` saying what it received, or, where
    kfitx trains on it, ``plain`` (the same fit through plain ``model.fit``) trains on it too: it was no mistake
    to Keras. Either way no thread or process is left behind.
    """
    left = Leftovers()
    try:
        run()
    except kfitx.KfitxError as err:
        OUTCOMES[f"raised {type(err).__name__}"] += 1
        assert "Received:" in str(err) or isinstance(err, kfitx.MemoryBudgetError), str(err)
        assert not meant_to_train, f"an input meant to train was refused: {type(err).__name__}: {err}"
    else:
        if not meant_to_train:
            plain()  # raises where model.fit refuses what kfitx trained on
        OUTCOMES["trained" if meant_to_train else "mistake trained, as by model.fit"] += 1
    remaining = left.now()  # at once: fit joins what it started before it returns or raises
    assert not remaining, remaining


def fit_arrays(spec, strategy):
    structure, shape, dtype, n, mutation, batch = spec
    rng = np.random.default_rng(n)
    x, y = make_x(structure, shape, dtype, n, rng), rng.integers(0, 3, n)
    x, y = mutate(x, y, mutation, structure, shape, n, rng)
    model = build(structure, shape)
    outcome(lambda: kfitx.fit(model, x, y, strategy=strategy, epochs=1, batch_size=batch, verbose=0),
            lambda: build(structure, shape).fit(x, y, epochs=1, batch_size=batch, verbose=0),
            meant_to_train=mutation == "none")


@FAST
@given(spec=array_data(), strategy=st.sampled_from(["memory", "generator", "loop"]))
def test_arrays_train_or_raise_a_kfitx_error(spec, strategy):
    fit_arrays(spec, strategy)


@st.composite
def generated_batches(draw):
    """A generator factory's batches: mostly consistent, sometimes changing shape, dtype or layout."""
    width = draw(st.integers(1, 4))
    count = draw(st.integers(0, 5))
    sizes = draw(st.lists(st.integers(1, 6), min_size=count, max_size=count))
    layout = draw(st.sampled_from(["xy", "xy", "xyw", "x", "xyyy", "list"]))
    drift = draw(st.sampled_from(["none", "none", "width", "dtype", "strings", "rank"]))
    return width, sizes, layout, drift


def batches_of(width, sizes, layout, drift):
    rng = np.random.default_rng(len(sizes))

    def make(i, size):
        w = width + (1 if drift == "width" and i == 1 else 0)
        x = rng.normal(size=(size, w)).astype("float32")
        if drift == "dtype" and i == 1:
            x = x.astype("float64")
        if drift == "strings" and i == 1:
            x = np.full((size, w), "s")
        if drift == "rank" and i == 1:
            x = x[..., None]
        y = rng.integers(0, 3, size)
        return {"x": x, "xy": (x, y), "xyw": (x, y, np.ones(size)), "xyyy": (x, y, y, y),
                "list": [x, y]}[layout]

    return lambda: (make(i, size) for i, size in enumerate(sizes))


@FAST
@given(spec=generated_batches(), strategy=st.sampled_from(["generator", "loop"]))
def test_generators_train_or_raise_a_kfitx_error(spec, strategy):
    width, sizes, layout, drift = spec
    model = lambda: build_model(width, hidden=None, softmax=True, optimizer="sgd", metrics=None)
    factory = batches_of(*spec)
    ours = model()
    outcome(lambda: kfitx.fit(ours, factory, strategy=strategy, epochs=1, verbose=0),
            # model.fit's generators yield tuples; kfitx takes a list [x, y] too, as Keras 2's fit_generator did
            lambda: model().fit((tuple(b) if isinstance(b, list) else b for b in factory()), epochs=1, verbose=0),
            # a drift changes batch 1: with one batch there is none
            meant_to_train=bool(sizes) and (drift == "none" or len(sizes) < 2) and layout in ("xy", "xyw", "list"))


@FAST
@given(data=st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=3),
                      st.tuples(st.integers(), st.integers(), st.integers(), st.integers()),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)))
def test_coercing_anything_gives_a_source_or_a_kfitx_error(data):
    try:
        source = kfitx.data.coerce(data)
        assert isinstance(source, kfitx.data.Source)
        OUTCOMES["coerced"] += 1
    except kfitx.KfitxError:
        OUTCOMES["coercion refused"] += 1


@pytest.mark.slow
@LONG
@given(spec=array_data(), strategy=st.sampled_from(["memory", "generator", "loop"]))
def test_arrays_train_or_raise_a_kfitx_error_longer(spec, strategy):
    fit_arrays(spec, strategy)
