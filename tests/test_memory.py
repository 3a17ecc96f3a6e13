"""The memory strategy keeps model.fit's contract: same callbacks, History, weights.

memory is the conformance kit's reference, so the kit cannot compare it with itself: the tests here compare it
with plain model.fit. The epoch rules every strategy owes (initial_epoch, EarlyStopping) are the kit's, run
below; BackupAndRestore is tests/test_drop_in.py's, for memory and loop.
"""

import keras
import numpy as np
import pytest

import kfitx
from kfitx.errors import MemoryBudgetError
from kfitx.testing import StrategyConformance

from contract import Spy, weights_close


def both(make_model, xy, **fit_args):
    """Trains two identical models, plain model.fit and kfitx memory; returns both and histories."""
    x, y = xy
    plain, ours = make_model(), make_model()
    h_plain = plain.fit(x, y, verbose=0, **fit_args)
    h_ours = kfitx.fit(ours, x, y, strategy="memory", verbose=0, **fit_args)
    return plain, ours, h_plain, h_ours


def test_callback_order_history_and_weights_match_model_fit(make_model, xy, registry):
    x, y = xy
    spy_plain, spy_ours = Spy(), Spy()
    plain, ours = make_model(), make_model()
    h_plain = plain.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                        validation_data=(x[:50], y[:50]), callbacks=[spy_plain])
    h_ours = kfitx.fit(ours, x, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                       validation_data=(x[:50], y[:50]), callbacks=[spy_ours])
    assert spy_ours.calls == spy_plain.calls
    assert len([c for c in spy_ours.calls if c[0] == "on_train_batch_end"]) == 3 * 7  # not grouped
    assert h_ours.kfitx["steps_per_execution"] == 1
    assert "Spy" in h_ours.kfitx["grouping"]
    assert h_ours.history.keys() == h_plain.history.keys()
    for key in h_plain.history:
        np.testing.assert_allclose(h_ours.history[key], h_plain.history[key], rtol=1e-5)
    assert weights_close(plain, ours)


def test_grouped_steps_give_the_same_epochs_and_weights(make_model, xy, registry):
    epoch_spy_plain, epoch_spy_ours = Spy(["on_epoch_begin", "on_epoch_end"]), Spy(["on_epoch_begin", "on_epoch_end"])
    x, y = xy
    plain, ours = make_model(), make_model()
    h_plain = plain.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[epoch_spy_plain])
    h_ours = kfitx.fit(ours, x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[epoch_spy_ours])
    assert h_ours.kfitx["steps_per_execution"] == 16
    assert epoch_spy_ours.calls == epoch_spy_plain.calls
    for key in h_plain.history:
        np.testing.assert_allclose(h_ours.history[key], h_plain.history[key], rtol=1e-5)
    assert weights_close(plain, ours)


def test_model_is_left_as_it_was(make_model, xy, registry):
    x, y = xy
    model = make_model()
    kfitx.fit(model, x, y, epochs=1, verbose=0)
    assert model.steps_per_execution == 1
    assert model.fit(x, y, epochs=1, verbose=0).history["loss"]  # plain fit still works


def test_explicit_steps_per_execution_groups_even_with_batch_callbacks(make_model, xy, registry):
    x, y = xy
    spy = Spy(["on_train_batch_end"])
    history = kfitx.fit(make_model(), x, y, epochs=1, batch_size=20, verbose=0, callbacks=[spy],
                        steps_per_execution=5)
    assert history.kfitx["steps_per_execution"] == 5
    assert [c[1] for c in spy.calls] == [4, 9]  # 10 batches, hooks fire once per group of 5


def test_steps_per_epoch_trains_exactly_that_many_batches_when_grouped(make_model, xy, registry):
    # A compiled group runs its full length on repeated data: groups of 16 would train 16 batches
    # for steps_per_epoch=10. Automatic grouping picks a group that divides it.
    x, y = xy
    plain, ours = make_model(), make_model()
    plain.fit(x, y, epochs=2, batch_size=16, steps_per_epoch=5, shuffle=False, verbose=0)
    history = kfitx.fit(ours, x, y, epochs=2, batch_size=16, steps_per_epoch=5, shuffle=False, verbose=0)
    assert history.kfitx["steps_per_execution"] == 5
    assert int(ours.optimizer.iterations) == int(plain.optimizer.iterations) == 10
    assert weights_close(plain, ours)


def test_validation_split_sample_and_class_weights_match_model_fit(make_model, xy, registry):
    x, y = xy
    weights = np.linspace(0.5, 1.5, len(x))
    for args in ({"validation_split": 0.2}, {"sample_weight": weights}, {"class_weight": {0: 1.0, 1: 2.0, 2: 0.5}}):
        plain, ours, h_plain, h_ours = both(make_model, xy, epochs=2, shuffle=False, **args)
        assert h_ours.history.keys() == h_plain.history.keys(), args
        np.testing.assert_allclose(h_ours.history["loss"], h_plain.history["loss"], rtol=1e-5)
        assert weights_close(plain, ours), args


def test_shuffle_with_seed_is_reproducible_and_differs_from_no_shuffle(make_model, xy, registry):
    x, y = xy
    runs = [make_model() for _ in range(3)]
    for model, shuffle in zip(runs, [True, True, False]):
        kfitx.fit(model, x, y, epochs=2, batch_size=16, verbose=0, shuffle=shuffle, seed=7)
    assert weights_close(runs[0], runs[1], atol=0)
    assert not weights_close(runs[0], runs[2])


def test_over_budget_data_is_refused_naming_generator(make_model, xy, registry):
    x, y = xy
    with pytest.raises(MemoryBudgetError, match=r"over the memory budget.*strategy='generator'"):
        kfitx.fit(make_model(), x, y, memory_budget=1000)
    with pytest.raises(MemoryError):
        kfitx.get_strategy("memory", memory_budget=1000).require(kfitx.data.arrays(x, y))
    with pytest.raises(kfitx.OptionError, match="memory_budget"):
        kfitx.fit(make_model(), x, y, memory_budget=1.5)


def test_streams_train_through_model_fit_as_they_are(make_model, xy, registry):
    """memory is model.fit: it takes what model.fit takes; only the memory budget refuses, and only arrays."""
    x, y = xy
    batches = lambda: ((x[i:i + 16], y[i:i + 16]) for i in range(0, len(x), 16))
    history = kfitx.fit(make_model(), kfitx.data.generator(batches), epochs=2, verbose=0)
    assert history.kfitx["strategy"] == "memory" and len(history.epoch) == 2


def test_memory_mapped_npy_trains_like_arrays(make_model, xy, registry, tmp_path):
    x, y = xy
    np.save(tmp_path / "x.npy", x.astype("float32"))
    np.save(tmp_path / "y.npy", y)
    a, b = make_model(), make_model()
    kfitx.fit(a, x, y, epochs=2, shuffle=False, verbose=0)
    kfitx.fit(b, kfitx.data.npy(tmp_path / "x.npy", tmp_path / "y.npy"), epochs=2, shuffle=False, verbose=0)
    assert weights_close(a, b)


def test_multi_input_model_with_dict_inputs(registry):
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, out)
    model.compile("sgd", "mse")
    x = {"a": np.ones((40, 3), "float32"), "b": np.zeros((40, 2), "float32")}
    history = kfitx.fit(model, x, np.ones(40, "float32"), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


class TestMemoryKeepsTheEpochRules(StrategyConformance):
    """The kit's initial-epoch and early-stopping rules for memory on TensorFlow (every rule: tests/test_testing.py,
    slow; on JAX: tests/test_backends.py)."""

    strategy = "memory"
    test_registration = test_options = test_history = test_callback_order = test_epochs = None
    test_validation_data = test_stop_training = test_same_weights = test_no_leftovers = test_tuner_trial = None
