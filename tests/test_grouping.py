import keras
import pytest

from kfitx.errors import OptionError
from kfitx.plan.grouping import AUTO_STEPS, choose_steps_per_execution, per_batch_callbacks
from kfitx.runtime import Runtime


@pytest.mark.parametrize(
    "callback, acts",
    [
        (keras.callbacks.EarlyStopping(), False),
        (keras.callbacks.History(), False),
        (keras.callbacks.ProgbarLogger(), False),
        (keras.callbacks.CSVLogger("unused.csv"), False),
        (keras.callbacks.ModelCheckpoint("unused.weights.h5", save_weights_only=True), False),
        (keras.callbacks.ModelCheckpoint("unused.weights.h5", save_weights_only=True, save_freq=5), True),
        (keras.callbacks.TerminateOnNaN(), True),
        (keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: None), False),
        (keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: None), True),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, bool) else str(v),
)
def test_which_callbacks_act_per_batch(callback, acts):
    assert (per_batch_callbacks([callback]) != []) is acts


def test_test_batch_hooks_count_too():
    class Probe(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            pass

    assert per_batch_callbacks(keras.callbacks.CallbackList([Probe()])) == ["Probe"]


def test_keras_tuner_callback_acts_only_if_the_tuner_overrides_batch_hooks(tmp_path):
    import keras_tuner
    from keras_tuner.src.engine.tuner_utils import TunerCallback

    def build(hp):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        return model

    class Watching(keras_tuner.RandomSearch):
        def on_batch_end(self, trial, model, batch, logs=None):
            pass

    plain = keras_tuner.RandomSearch(build, objective="loss", max_trials=1, directory=tmp_path, project_name="a")
    watching = Watching(build, objective="loss", max_trials=1, directory=tmp_path, project_name="b")
    assert per_batch_callbacks([TunerCallback(plain, None)]) == []
    assert per_batch_callbacks([TunerCallback(watching, None)]) == ["TunerCallback"]


def test_choice_and_reason(make_model):
    model = make_model()
    assert choose_steps_per_execution(model, None) == (AUTO_STEPS, "no callback acts per batch", True)
    steps, reason, automatic = choose_steps_per_execution(model, [keras.callbacks.TerminateOnNaN()])
    assert steps == 1 and "TerminateOnNaN" in reason and not automatic
    assert choose_steps_per_execution(model, None, 4)[0] == 4
    assert choose_steps_per_execution(make_model(steps_per_execution=8), None)[0] == 8
    with pytest.raises(OptionError, match="steps_per_execution"):
        choose_steps_per_execution(model, None, 0)


def test_automatic_groups_divide_exact_step_counts(make_model):
    model = make_model()
    assert choose_steps_per_execution(model, None, exact_steps=(None, None))[0] == AUTO_STEPS
    assert choose_steps_per_execution(model, None, exact_steps=(32,))[0] == AUTO_STEPS
    steps, reason, automatic = choose_steps_per_execution(model, None, exact_steps=(10, None))
    assert steps == 10 and "dividing 10" in reason and automatic
    assert choose_steps_per_execution(model, None, exact_steps=(12, 18))[0] == 6
    assert choose_steps_per_execution(model, None, exact_steps=(97,))[0] == 1
    assert choose_steps_per_execution(model, None, 4, exact_steps=(10,))[0] == 4  # asked for: as asked


@pytest.mark.parametrize("wanted", ["auto", 8])
def test_where_keras_scans_grouped_steps_on_jax_the_plan_groups_when_kfitx_feeds_it_else_says_why(monkeypatch, wanted):
    # Keras 3.16's JAX trainer runs a group in one lax.scan over stacked batches, which kfitx's engine feeds with
    # Keras's own helpers; where they moved, one step per call, never a refusal of what model.fit takes.
    from types import SimpleNamespace

    from kfitx import _keras
    from kfitx.plan.grouping import decide_grouping as _grouping

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    strategy = SimpleNamespace(grouping=lambda: wanted)
    jax = Runtime("jax")
    assert _grouping(model, strategy, [], (32,), jax)[0] == (8 if wanted == 8 else AUTO_STEPS)  # Keras 3.15: groups
    monkeypatch.setattr(_keras, "scans_steps_on_jax", lambda: True)
    monkeypatch.setattr(_keras, "feeds_jax_scan", lambda: True)  # Keras 3.16, its helpers where kfitx reads them
    assert _grouping(model, strategy, [], (32,), jax)[0] == (8 if wanted == 8 else AUTO_STEPS)
    monkeypatch.setattr(_keras, "feeds_jax_scan", lambda: False)  # the scan, its helpers moved: one step per call
    steps, why, automatic = _grouping(model, strategy, [], (32,), jax)
    assert steps == 1 and "lax.scan" in why and not automatic


def test_where_keras_scans_on_jax_automatic_grouping_needs_data_known_to_be_dense(monkeypatch):
    # Keras 3.16's JAX trainer stacks a group's batches and refuses sparse tensors there (plain model.fit, which
    # runs one step per call by default, takes them): kfitx groups automatically only over data known dense.
    from types import SimpleNamespace

    import numpy as np
    import scipy.sparse

    from kfitx import _keras
    from kfitx.data import coerce
    from kfitx.plan.grouping import decide_grouping as _grouping

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    strategy = SimpleNamespace(grouping=lambda: "auto")
    jax = Runtime("jax")
    monkeypatch.setattr(_keras, "scans_steps_on_jax", lambda: True)
    monkeypatch.setattr(_keras, "feeds_jax_scan", lambda: True)
    dense = coerce(np.zeros((64, 4), "float32"), np.zeros((64, 1), "float32"))
    sparse = coerce(scipy.sparse.random(64, 4, density=0.25, format="csr", dtype="float32"),
                    np.zeros((64, 1), "float32"))
    stream = coerce(b for b in [(np.zeros((8, 4)), np.zeros((8, 1)))])
    assert dense.dense_batches and not sparse.dense_batches and not stream.dense_batches
    assert _grouping(model, strategy, [], (32,), jax, (dense, None))[0] == AUTO_STEPS
    for data in (sparse, stream):
        steps, why, _ = _grouping(model, strategy, [], (32,), jax, (dense, data))  # validation data counts too
        assert steps == 1 and "sparse" in why
    tensorflow = Runtime("tensorflow")  # TensorFlow groups over them
    assert _grouping(model, strategy, [], (32,), tensorflow, (sparse, None))[0] == AUTO_STEPS


def test_automatic_grouping_is_decided_with_the_group_not_read_from_its_reason():
    # kfitx's own choice (no callback acts per batch) is a flag of the decision; a strategy that fixes its
    # grouping is never "automatic", whatever its reason says.
    from types import SimpleNamespace

    from kfitx.plan.grouping import AUTOMATIC
    from kfitx.plan.grouping import decide_grouping as _grouping

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    tensorflow = Runtime("tensorflow")
    assert _grouping(model, SimpleNamespace(grouping=lambda: "auto"), [], (32,), tensorflow) == (
        AUTO_STEPS, AUTOMATIC, True)
    fixed = SimpleNamespace(grouping=lambda: (1, AUTOMATIC + ", as the strategy words it"))
    steps, reason, automatic = _grouping(model, fixed, [], (32,), tensorflow)
    assert steps == 1 and reason.startswith(AUTOMATIC) and not automatic
    assert not _grouping(model, SimpleNamespace(grouping=lambda: 8), [], (32,), tensorflow).automatic
