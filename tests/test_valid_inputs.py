"""kfitx's up-front checks never refuse what ``model.fit`` trains on: each valid input trains through kfitx too.

Each case builds a model and data that plain ``model.fit`` accepts; every
built-in strategy must train on it, and ``memory`` must end with plain fit's
weights (same seed, no shuffling; ``atol=1e-5``).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import kfitx  # noqa: E402

N = 32


def rng():
    """A fresh seeded generator: each call of a case gives the same data."""
    return np.random.default_rng(0)


def dict_inputs():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, out)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model, {"a": rng().normal(size=(N, 3)), "b": rng().normal(size=(N, 2))}, rng().integers(0, 2, N)


def list_inputs():
    a, b = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    model.compile("sgd", "mse")
    return model, [rng().normal(size=(N, 3)), rng().normal(size=(N, 2))], rng().normal(size=(N, 1))


def none_dimensions():
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(inputs)))
    model.compile("sgd", "mse")
    return model, rng().normal(size=(N, 5, 3)).astype("float32"), rng().normal(size=(N, 1))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.dense(x)


def unbuilt_subclassed():
    model = Subclassed()
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model, rng().normal(size=(N, 4)), rng().integers(0, 3, N)


def one_hot_targets():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    return model, rng().normal(size=(N, 4)), np.eye(3)[rng().integers(0, 3, N)]


class OwnLoss(keras.layers.Layer):
    def call(self, x):
        self.add_loss(keras.ops.mean(keras.ops.square(x)))
        return x


def loss_in_the_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, OwnLoss()(keras.layers.Dense(2)(inputs)))
    model.compile("sgd", loss=None)
    return model, rng().normal(size=(N, 4)), None


def integer_tokens():
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model, rng().integers(0, 10, (N, 6)), rng().normal(size=(N, 1))


def dict_outputs():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"p": keras.layers.Dense(1, name="p")(inputs),
                                 "q": keras.layers.Dense(2, name="q")(inputs)})
    model.compile("sgd", {"p": "mse", "q": "mse"})
    return model, rng().normal(size=(N, 4)), {"p": rng().normal(size=(N, 1)), "q": rng().normal(size=(N, 2))}


def float64_and_bool_features():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    return model, rng().integers(0, 2, (N, 4)).astype(bool), rng().normal(size=(N, 1))


CASES = [dict_inputs, list_inputs, none_dimensions, unbuilt_subclassed, one_hot_targets, loss_in_the_model,
         integer_tokens, dict_outputs, float64_and_bool_features]


def weights(model):
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_what_plain_fit_trains_on_kfitx_trains_on_too(case):
    keras.utils.set_random_seed(1)
    plain, x, y = case()
    args = (x,) if y is None else (x, y)
    plain.fit(*args, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for strategy in ("memory", "generator", "loop"):
        keras.utils.set_random_seed(1)
        model, x, y = case()
        history = kfitx.fit(model, *((x,) if y is None else (x, y)), strategy=strategy, epochs=1, batch_size=8,
                            shuffle=False, verbose=0)
        assert np.isfinite(history.history["loss"][0]), strategy
        if strategy == "memory":
            for mine, theirs in zip(weights(model), weights(plain)):
                np.testing.assert_allclose(mine, theirs, atol=1e-5, err_msg=case.__name__)


# -- a model compiled without a loss validates where plain fit validates it ------------------------------


class AddsItsLoss(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        out = self.dense(x)
        self.add_loss(keras.ops.mean(keras.ops.square(out)))
        return out


def add_loss_in_call():
    return AddsItsLoss()


def activity_regularizer():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activity_regularizer="l2")])


def kernel_regularizer():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_regularizer="l2", use_bias=False)])


NO_COMPILED_LOSS = [add_loss_in_call, activity_regularizer, kernel_regularizer]


@pytest.mark.parametrize("build", NO_COMPILED_LOSS, ids=[b.__name__ for b in NO_COMPILED_LOSS])
def test_a_model_without_a_compiled_loss_validates_where_plain_fit_does(build):
    x, y = rng().normal(size=(N, 4)).astype("float32"), rng().normal(size=(N, 1)).astype("float32")
    plain = build()
    plain.compile("sgd", loss=None)
    assert "val_loss" in plain.fit(x, y, validation_data=(x, y), epochs=1, batch_size=8, verbose=0).history
    for strategy, options in (("memory", {}), ("generator", {}), ("loop", {}),
                              ("loop", {"step": lambda m, b: m.train_on_batch(*b, return_dict=True)})):
        model = build()
        model.compile("sgd", loss=None)
        history = kfitx.fit(model, x, y, strategy=strategy, validation_data=(x, y), epochs=1, batch_size=8,
                            verbose=0, **options)
        assert np.isfinite(history.history["val_loss"][0]), (strategy, options)


def test_no_validation_due_or_a_backend_that_validates_without_a_loss_is_not_refused():
    import dataclasses

    from kfitx.errors import ModelError
    from kfitx.plan.against_model import check_validation_loss
    from kfitx.runtime import LOCAL

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", loss=None)
    x, y = rng().normal(size=(N, 4)).astype("float32"), rng().normal(size=(N, 1)).astype("float32")
    history = kfitx.fit(model, x, y, strategy="loop", step=lambda m, b: {"n": 1.0}, validation_data=(x, y),
                        validation_freq=3, epochs=2, verbose=0)  # validation never due: plain fit trains too
    assert history.history == {"n": [1.0, 1.0]}
    tensorflow = dataclasses.replace(LOCAL, backend="tensorflow")
    with pytest.raises(ModelError, match="compiled with a loss to validate"):
        check_validation_loss(model, tensorflow, 2, 0, [2])
    check_validation_loss(model, tensorflow, 2, 0, [3])  # epochs 1 and 2: none validates
    check_validation_loss(model, dataclasses.replace(LOCAL, backend="jax"), 2, 0, 1)  # Keras reports a loss of 0
