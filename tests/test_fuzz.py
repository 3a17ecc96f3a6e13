"""Property-based tests: data coercion and a one-epoch fit over random shapes, dtypes, nestings, lengths, batch sizes.

The strategies below generate valid data *and* classes of invalid data on
purpose (non-numeric dtypes, mismatched lengths, empty sets, scalars, wrong
feature widths, bad batch sizes, generators that change shape). Every input
must either train or raise a :class:`KfitxError` -- never another exception,
never a hang. The default run is derandomised with a bounded number of
examples; ``-m slow`` runs more. ``OUTCOMES`` counts what happened; it is
printed when the module's tests are done.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

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


def outcome(run):
    before = {t.name for t in threading.enumerate()}
    try:
        run()
        OUTCOMES["trained"] += 1
    except kfitx.KfitxError as err:
        OUTCOMES[f"raised {type(err).__name__}"] += 1
        assert "Received:" in str(err) or isinstance(err, kfitx.MemoryBudgetError), str(err)
    left = [t.name for t in threading.enumerate() if t.name.startswith("kfitx") and t.name not in before]
    assert not left, left


def fit_arrays(spec, strategy):
    structure, shape, dtype, n, mutation, batch = spec
    rng = np.random.default_rng(n)
    x, y = make_x(structure, shape, dtype, n, rng), rng.integers(0, 3, n)
    x, y = mutate(x, y, mutation, structure, shape, n, rng)
    model = build(structure, shape)
    outcome(lambda: kfitx.fit(model, x, y, strategy=strategy, epochs=1, batch_size=batch, verbose=0))


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
    width = spec[0]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((width,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    outcome(lambda: kfitx.fit(model, batches_of(*spec), strategy=strategy, epochs=1, verbose=0))


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


def test_the_generators_make_valid_and_invalid_inputs_alike():
    """What the fit tests draw holds both classes: inputs meant to train and mistakes on purpose."""
    seen = collections.Counter()

    @FAST
    @given(spec=array_data(), batches=generated_batches())
    def draw(spec, batches):
        seen["valid arrays" if spec[4] == "none" else "invalid arrays"] += 1
        seen["steady batches" if batches[3] == "none" and batches[2] in ("xy", "xyw", "list") else "bad batches"] += 1

    draw()
    assert all(seen[k] > 0 for k in ("valid arrays", "invalid arrays", "steady batches", "bad batches")), seen
