"""Pins every Keras / keras-tuner internal that kfitx/_keras/ wraps: an upgrade that moves one fails here."""

from __future__ import annotations

import inspect
import json
import os
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract import build_model

from kfitx import _keras

# --- Keras internals -------------------------------------------------------


def moved(what, function):
    return (f"Keras {keras.__version__} changed {what}, which kfitx reads in kfitx._keras.{function} "
            f"(tested with keras{_keras.TESTED['keras']}); update that function and this test.")


def _model():
    return build_model(4, 2, hidden=None, optimizer="sgd", loss="mse", metrics=None)


def test_initial_epoch_is_what_backup_and_restore_sets(tmp_path):
    x, y = np.zeros((8, 4), "float32"), np.zeros((8, 2), "float32")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("killed")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    with pytest.raises(RuntimeError, match="killed"):
        _model().fit(x, y, epochs=4, verbose=0, callbacks=[backup, Crash()])
    model = _model()
    assert _keras.initial_epoch(model, 0) == 0, moved("a new model's initial epoch", "initial_epoch")
    restore = keras.callbacks.BackupAndRestore(str(tmp_path))
    restore.set_model(model)
    restore.on_train_begin()
    assert _keras.initial_epoch(model, 0) == 2, moved("where BackupAndRestore leaves the epoch to resume at",
                                                       "initial_epoch")
    _keras.reset_initial_epoch(model)
    assert _keras.initial_epoch(model, 3) == 3, moved("model._initial_epoch", "reset_initial_epoch")


def test_the_default_hook_mark_tells_keras_no_ops_from_overrides():
    class PerBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    plain, acting = keras.callbacks.Callback(), PerBatch()
    assert _keras.is_default_hook(plain, "on_train_batch_end"), moved("the mark on no-op hooks", "is_default_hook")
    assert _keras.is_default_hook(acting, "on_train_batch_begin")
    assert not _keras.is_default_hook(acting, "on_train_batch_end")


def test_tensorboard_says_when_it_profiles_batches(tmp_path):
    assert _keras.tensorboard_profiles_batches(keras.callbacks.TensorBoard(str(tmp_path), profile_batch=2)), (
        moved("where TensorBoard keeps profile_batch", "tensorboard_profiles_batches"))
    assert not _keras.tensorboard_profiles_batches(keras.callbacks.TensorBoard(str(tmp_path)))


def test_seed_generators_are_found_in_nested_layers_and_draw_from_the_seed_given():
    layers = [keras.Sequential([keras.layers.RandomFlip(), keras.layers.RandomRotation(0.1)])]
    generators = _keras.seed_generators(layers)
    assert len(generators) == 2 and all(isinstance(g, keras.random.SeedGenerator) for g in generators), (
        moved("where layers keep their SeedGenerators", "seed_generators"))
    seed = tf.constant([7, 0], tf.int64)
    with _keras.seeds_drawn_from(generators, lambda ordered=True: seed):
        first = keras.random.uniform((3,), seed=generators[0])
        again = keras.random.uniform((3,), seed=generators[0])
    np.testing.assert_array_equal(first, again, err_msg=moved("SeedGenerator.next", "seeds_drawn_from"))
    assert "next" not in vars(generators[0])
    assert not np.array_equal(keras.random.uniform((3,), seed=generators[0]),
                              keras.random.uniform((3,), seed=generators[0]))


def test_the_legacy_image_module_has_image_data_generator_and_its_split():
    try:
        module = _keras.legacy_image_module()
    except ImportError:
        pytest.fail(moved(f"the module {_keras.LEGACY_IMAGE_MODULE}", "legacy_image_module"))
    generator_class = getattr(module, "ImageDataGenerator", None)
    assert generator_class is not None, moved("ImageDataGenerator's module", "legacy_image_module")
    idg = generator_class(validation_split=0.25)
    assert _keras.image_data_generator_validation_split(idg) == 0.25, (
        moved("where ImageDataGenerator keeps validation_split", "image_data_generator_validation_split"))
    assert _keras.image_data_generator_validation_split(generator_class()) == 0.0


def _batches(n):
    x, y = np.ones((n * 4, 4), "float32"), np.ones((n * 4, 2), "float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def test_the_train_function_takes_an_iterator_and_reads_steps_per_execution_when_made():
    model = _model()
    saved = _keras.train_function(model)
    assert callable(saved), moved("make_train_function / train_function", "train_function")
    iterator = iter(_batches(8))
    with _keras.compiled_with_steps_per_execution(model, 4):
        assert model.steps_per_execution == 4 and model.train_function is None
        _keras.train_function(model)(iterator)
        assert int(model.optimizer.iterations) == 4, moved("steps_per_execution", "compiled_with_steps_per_execution")
    assert model.steps_per_execution == 1 and model.train_function is saved
    _keras.train_function(model)(iterator)
    assert int(model.optimizer.iterations) == 5, moved("train_function(iterator)", "train_function")
    with pytest.raises((StopIteration, tf.errors.OutOfRangeError)):  # the end of the data, as the engine reads it
        _keras.train_function(model)(iter(_batches(8).take(0)))


def test_multi_worker_fit_replaces_the_reduction_and_the_build_it_fixes_and_puts_them_back():
    """The two Keras functions :func:`kfitx._keras.multi_worker_fit` works around (the 2-worker run itself is
    tests/test_distribute.py, slow)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    source = inspect.getsource(_keras.backend_trainer("tensorflow")._maybe_symbolic_build)
    assert "reduce(" in source and "iterator" in source, moved("_maybe_symbolic_build", "multi_worker_fit")
    assert "axis=0" in inspect.getsource(tf_trainer.reduce_per_replica), (
        "Keras no longer reduces multi-worker outputs with axis=0: kfitx._keras.multi_worker_fit's fix may go")
    assert callable(tf_trainer._collective_all_reduce_multi_worker), moved("the multi-worker check", "multi_worker_fit")
    model, original = _model(), tf_trainer.reduce_per_replica
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), verbose=0)
    assert model.train_function is not None
    with _keras.multi_worker_fit(model):
        assert tf_trainer.reduce_per_replica is not original and model.train_function is None
        model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), verbose=0)  # one worker: as before
    assert tf_trainer.reduce_per_replica is original and "_maybe_symbolic_build" not in vars(model)


# --- keras-tuner internals -------------------------------------------------


def test_tuner_base_class_is_every_tuners_base_with_the_arguments_kfitx_tune_reads():
    import keras_tuner

    base = _keras.tuner_base_class()
    assert issubclass(keras_tuner.RandomSearch, base) and issubclass(keras_tuner.Tuner, base)
    params = inspect.signature(base.__init__).parameters
    for name in ("oracle", "hypermodel", "directory", "project_name", "overwrite"):
        assert name in params, f"BaseTuner.__init__ has no {name!r}"
    for hook in ("on_trial_begin", "on_trial_end", "run_trial", "search", "project_dir"):
        assert hasattr(base, hook)


def test_the_chief_search_calls_oracle_chief_start_server_by_module_attribute():
    from keras_tuner.src.distribute import oracle_chief

    source = inspect.getsource(_keras.tuner_base_class().search)
    assert "oracle_chief.start_server(self.oracle)" in source  # so use_chief_server's replacement is the one called
    assert callable(oracle_chief.exit_chief) and hasattr(oracle_chief, "OracleServicer")


def test_tuner_init_arguments_binds_overwrite_by_name():
    import keras_tuner

    base = _keras.tuner_base_class()
    bound = _keras.tuner_init_arguments(base.__init__, object(), (keras_tuner.oracles.RandomSearchOracle(),),
                                        {"directory": "d", "overwrite": True})
    assert bound.arguments["overwrite"] is True and bound.arguments["directory"] == "d"
    assert bound.arguments["project_name"] is None


def test_serve_oracle_serves_keras_tuners_client_and_returns_once_every_worker_left(monkeypatch, tmp_path):
    import keras_tuner
    from keras_tuner.src.distribute import oracle_client

    from kfitx.search.launch.workers import free_port

    port = free_port()
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker-0")
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 1, 4)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="loss", max_trials=1, hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (_keras.serve_oracle(oracle, poll_s=0.05), done.set()), daemon=True)
    thread.start()
    client = oracle_client.OracleClient(oracle)
    trial = client.create_trial("worker-0")
    assert trial.status == "RUNNING" and not done.is_set()
    client.update_trial(trial.trial_id, {"loss": 0.5})
    trial.status = "COMPLETED"
    client.end_trial(trial)
    assert client.create_trial("worker-0").status == "STOPPED"  # the worker leaves
    start = time.monotonic()
    thread.join(10)
    assert done.is_set() and time.monotonic() - start < 5  # keras-tuner's own loop waits 20 s here
    assert oracle.trials[trial.trial_id].score == 0.5


def test_use_chief_server_replaces_start_server(monkeypatch):
    from keras_tuner.src.distribute import oracle_chief

    monkeypatch.setattr(oracle_chief, "start_server", oracle_chief.start_server)  # restored after the test
    marker = lambda oracle: None  # noqa: E731
    _keras.use_chief_server(marker)
    assert oracle_chief.start_server is marker


def _oracle(tmp_path, max_trials=3):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Int("units", 1, 64)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="loss", max_trials=max_trials, hyperparameters=hp,
                                                    seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    return oracle


def _one_running_one_ended(tmp_path):
    """A search's oracle with worker-0's trial running and worker-1's just ended, then gone (saved state only)."""
    first = _oracle(tmp_path)
    running = first.create_trial("worker-0")
    ended = first.create_trial("worker-1")
    first.update_trial(ended.trial_id, {"loss": 0.3})
    ended.status = "COMPLETED"
    first.end_trial(ended)  # keras-tuner saves, then forgets it as worker-1's: the file still lists it
    return running, ended


def test_resume_ongoing_trials_keeps_a_dead_chiefs_running_trials_with_their_workers(tmp_path):
    running, ended = _one_running_one_ended(tmp_path)
    # the chief dies here; a new one reloads the saved state, as a restarted chief's tuner does
    second = _oracle(tmp_path)
    second.reload()
    # keras-tuner's reload sends both to retry: the ended one too, as its save came before it forgot it
    assert sorted(second._retry_queue) == sorted([running.trial_id, ended.trial_id])
    assert _keras.resume_ongoing_trials(second) == {"worker-0": running.trial_id}
    assert second.ongoing_trials["worker-0"].trial_id == running.trial_id and not second._retry_queue
    assert "worker-0" in second.tuner_ids  # the chief serves until that worker has left
    assert second.create_trial("worker-0").trial_id == running.trial_id  # a replaced worker gets it back
    other = second.create_trial("worker-1")
    assert other.trial_id not in (running.trial_id, ended.trial_id)  # never handed to a second worker
    second.update_trial(running.trial_id, {"loss": 0.5})
    trial = second.trials[running.trial_id]
    trial.status = "COMPLETED"
    second.end_trial(trial)
    assert second.end_order.count(running.trial_id) == 1 and second.end_order.count(ended.trial_id) == 1
    assert _keras.resume_ongoing_trials(_oracle(tmp_path / "none")) == {}  # no saved state: nothing


def test_after_a_stopped_search_running_trials_are_retried_and_ended_ones_are_not(tmp_path):
    running, ended = _one_running_one_ended(tmp_path)
    # the whole search stops here (Ctrl-C); the same command continues it
    second = _oracle(tmp_path)
    second.reload()
    assert _keras.resume_ongoing_trials(second, keep_running=False) == {}
    assert second._retry_queue == [running.trial_id] and not second.ongoing_trials
    assert second.create_trial("worker-5").trial_id == running.trial_id  # retried by whichever worker asks
    fresh = second.create_trial("worker-6")
    assert fresh.trial_id not in (running.trial_id, ended.trial_id)  # keras-tuner alone would train it again


def test_reconnect_quickly_gives_keras_tuners_client_a_channel_it_still_uses(monkeypatch, tmp_path):
    from keras_tuner.src.distribute import oracle_client

    from kfitx.search.launch.workers import free_port

    assert "self.stub = " in inspect.getsource(oracle_client.OracleClient.__init__)
    assert "wait_for_ready=True" in inspect.getsource(oracle_client.OracleClient.create_trial)
    monkeypatch.setattr(oracle_client.OracleClient, "__init__", oracle_client.OracleClient.__init__)
    monkeypatch.setattr(oracle_client.OracleClient, "_kfitx_reconnects", False, raising=False)
    port = free_port()
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker-0")
    import grpc

    made = []
    channel = grpc.insecure_channel
    monkeypatch.setattr(grpc, "insecure_channel", lambda *a, **k: made.append(k.get("options")) or channel(*a, **k))
    _keras.reconnect_quickly()
    _keras.reconnect_quickly()  # once per process
    oracle = _oracle(tmp_path, max_trials=1)
    client = oracle_client.OracleClient(oracle)
    assert made[-1] and ("grpc.max_reconnect_backoff_ms", 1000) in made[-1]  # the channel the client now uses
    got = []
    asking = threading.Thread(target=lambda: got.append(client.create_trial("worker-0")), daemon=True)
    asking.start()  # before the chief listens: the call waits for it
    time.sleep(1.0)
    assert not got
    thread = threading.Thread(target=_keras.serve_oracle, args=(oracle,), kwargs={"poll_s": 0.05}, daemon=True)
    thread.start()
    asking.join(30)
    assert got and got[0].status == "RUNNING"
    assert client.create_trial("worker-1").status == "STOPPED"
    got[0].status = "COMPLETED"
    client.update_trial(got[0].trial_id, {"loss": 0.1})
    client.end_trial(got[0])
    assert client.create_trial("worker-0").status == "STOPPED"
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.skipif(os.name != "posix", reason="kfitx tune's runner is POSIX-only")
def test_wrap_tuner_methods_routes_init_and_search_once(monkeypatch):
    base = _keras.tuner_base_class()
    monkeypatch.setattr(base, "__init__", base.__init__)
    monkeypatch.setattr(base, "search", base.search)
    monkeypatch.setattr(base, "_kfitx_wrapped", False, raising=False)
    seen = []
    _keras.wrap_tuner_methods(lambda original, self, *a, **k: seen.append("init"),
                              lambda original, self, *a, **k: seen.append("search"))
    _keras.wrap_tuner_methods(lambda *a, **k: seen.append("again"), lambda *a, **k: seen.append("again"))
    tuner = object.__new__(base)
    base.__init__(tuner)
    base.search(tuner)
    assert seen == ["init", "search"]


def test_stop_trials_when_ends_the_search_as_keras_tuner_does_at_max_trials(tmp_path):
    import keras_tuner
    from keras_tuner.src.distribute import oracle_chief

    hp = keras_tuner.HyperParameters()
    hp.Int("units", 1, 8)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="loss", max_trials=5, hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    spent = []
    _keras.stop_trials_when(oracle, lambda: bool(spent))
    first = oracle.create_trial("worker-0")
    assert first.status == "RUNNING" and oracle.ongoing_trials == {"worker-0": first}
    spent.append(True)
    stopped = oracle.create_trial("worker-1")
    assert stopped.status == "STOPPED", moved("how an oracle ends a search", "stop_trials_when")
    assert len(oracle.trials) == 1 and "worker-1" not in oracle.tuner_ids
    again = oracle.create_trial("worker-0")  # a worker restarted while it held a trial: it goes back to the queue
    assert again.status == "STOPPED" and oracle._retry_queue == [first.trial_id] and not oracle.ongoing_trials
    saved = json.loads((tmp_path / "p" / "oracle.json").read_text())  # what a later run reloads
    assert saved["ongoing_trials"] == {} and saved["retry_queue"] == [first.trial_id]
    assert oracle_chief.exit_chief(oracle), moved("the chief's exit rule (no ongoing trial, no tuner id)",
                                                  "stop_trials_when")
    spent.clear()
    assert oracle.create_trial("worker-2").trial_id == first.trial_id  # a later run trains it


# --- the JAX and torch backends (their end-to-end pin: tests/test_backends.py) ----------------------


def test_the_array_adapter_cuts_batches_as_model_fit_and_shuffles_with_numpys_generator():
    x, y = np.arange(10, dtype="float32").reshape(10, 1), np.arange(10)
    adapter = _keras.array_adapter(x, y, None, batch_size=4, shuffle=False, class_weight={0: 2.0})
    assert adapter.num_batches == 3, moved("ArrayDataAdapter.num_batches", "array_adapter")
    batches = list(adapter.get_numpy_iterator())
    assert [len(b[0]) for b in batches] == [4, 4, 2], moved("ArrayDataAdapter's batches", "array_adapter")
    assert batches[0][2].tolist() == [2.0, 1.0, 1.0, 1.0], moved("class_weight to sample weights", "array_adapter")
    orders = []
    for _ in range(2):
        np.random.seed(7)
        shuffled = _keras.array_adapter(x, y, None, batch_size=10, shuffle=True, class_weight=None)
        orders.append(next(iter(shuffled.get_numpy_iterator()))[1].tolist())
    assert orders[0] == orders[1] != list(range(10)), moved("how ArrayDataAdapter shuffles", "array_adapter")


def test_unbuilt_says_what_symbolic_build_builds():
    model = keras.Sequential([keras.layers.Dense(2)])
    model.compile("adam", "mse", metrics=["mae"])
    assert _keras.unbuilt(model), moved("Trainer's build flags", "unbuilt")
    _keras.symbolic_build(model, (np.zeros((3, 5), "float32"), np.zeros((3, 2), "float32")))
    assert not _keras.unbuilt(model) and model.optimizer.built, moved("Trainer._symbolic_build", "symbolic_build")


def test_the_jax_trainer_keeps_its_state_where_kfitx_reads_it():
    pytest.importorskip("jax")
    from keras.src.backend.jax import trainer

    JAXTrainer = _keras.backend_trainer("jax")
    source = inspect.getsource(JAXTrainer)
    for name in ("_jax_state_synced", "_jax_state", "_get_jax_state", "def jax_state_sync"):
        assert name in source, moved(f"JAXTrainer.{name}", "jax_state")
    params = list(inspect.signature(JAXTrainer._get_jax_state).parameters)
    assert params == ["self", "trainable_variables", "non_trainable_variables", "optimizer_variables",
                      "metrics_variables", "purge_model_variables"], moved("JAXTrainer._get_jax_state", "jax_state")
    assert "state, iterator" in inspect.getsource(JAXTrainer._make_function), (
        moved("the JAX train function's (state, iterator) arguments", "train_function"))
    assert callable(trainer._distribute_data), moved("keras.src.backend.jax.trainer._distribute_data",
                                                     "jax_distribute")


# --- Keras's data adapters and model.fit's validation iterator (kfitx/_keras/data.py, the rest) ---


def test_a_backend_trainer_mixed_into_a_layer_is_a_trainer():
    TensorFlowTrainer = _keras.backend_trainer("tensorflow")

    class Mixed(TensorFlowTrainer, keras.layers.Dense):
        def __init__(self):
            keras.layers.Dense.__init__(self, 2)
            TensorFlowTrainer.__init__(self)

    assert _keras.is_trainer(_model()) and _keras.is_trainer(Mixed()), moved("the Trainer class", "is_trainer")
    assert not _keras.is_trainer(keras.layers.Dense(2))


def test_the_backend_trainers_are_chosen_by_keras_version():
    """Keras 3.16 named each backend's trainer ``Trainer`` (``TensorFlowTrainer``, ``JAXTrainer``, ``TorchTrainer``
    before); ``keras.Model`` derives from the one :func:`kfitx._keras.backend_trainer` gives."""
    assert issubclass(keras.Model, _keras.backend_trainer(keras.backend.backend())), moved(
        "the backend trainer's class name", "backend_trainer")


def test_the_trainer_base_class_is_chosen_by_keras_version():
    """Keras 3.16 renamed ``keras.src.trainers.trainer.Trainer`` to ``BaseTrainer``; the backend trainers derive
    from the one :func:`kfitx._keras.trainer_base_name` names, and the other name is gone or something else."""
    from keras.src.trainers import trainer

    TensorFlowTrainer = _keras.backend_trainer("tensorflow")

    base = getattr(trainer, _keras.trainer_base_name(), None)
    assert base is not None and issubclass(TensorFlowTrainer, base), moved("the trainers' base class",
                                                                          "trainer_base_name")
    assert base in TensorFlowTrainer.__mro__[1:3], moved("the trainers' base class", "trainer_base_name")


def test_keras_adapters_read_what_model_fit_reads():
    gen = (b for b in [(np.zeros((2, 4)), np.zeros((2, 2)))])
    ragged = tf.ragged.constant([[1.0], [2.0, 3.0]])
    assert _keras.adapts(gen) and _keras.input_kind(gen) == "generator", moved("generator detection", "adapts")
    assert _keras.adapts(tf.data.Dataset.range(3)) and not _keras.adapts(np.zeros(3))
    assert _keras.array_like((ragged, np.zeros((2, 1)), None)) and _keras.sparse_or_ragged(ragged)
    assert not _keras.sparse_or_ragged(np.zeros(3))
    train, validation = _keras.train_validation_split((np.arange(10.0), np.arange(10.0), None), 0.2)
    np.testing.assert_array_equal(validation[0], [8.0, 9.0], err_msg=moved("train_validation_split",
                                                                           "train_validation_split"))
    adapter = _keras.data_adapter(np.zeros((10, 4)), np.zeros((10, 2)), None, batch_size=4, steps=None,
                                  shuffle=False, class_weight=None)
    assert adapter.num_batches == 3, moved("get_data_adapter", "data_adapter")
    assert [b[0].shape[0] for b in _keras.backend_batches(adapter, "tensorflow")] == [4, 4, 2]
    dataset = _keras.adapter_dataset(_keras.data_adapter(gen, None, None, batch_size=None, steps=None, shuffle=False,
                                                         class_weight=None))
    assert isinstance(dataset, tf.data.Dataset) and len(list(dataset)) == 1, moved("get_tf_dataset", "adapter_dataset")


def test_cached_evaluate_keeps_one_validation_iterator_until_forgotten():
    model = _model()
    x, y = np.zeros((8, 4), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, verbose=0)
    logs = _keras.cached_evaluate(model, x, y, None, batch_size=4, steps=None, callbacks=None,
                                  backend="tensorflow")
    iterator = model._eval_epoch_iterator
    assert "loss" in logs and iterator is not None, moved("fit's cached validation iterator", "cached_evaluate")
    _keras.cached_evaluate(model, x, y, None, batch_size=4, steps=None, callbacks=None, backend="tensorflow")
    assert model._eval_epoch_iterator is iterator  # reused, as model.fit reuses it across epochs
    _keras.forget_validation(model)
    assert model._eval_epoch_iterator is None


# --- model.fit's loop around the steps (kfitx/engine/__init__.py copies it through fit_begin / fit_end) ---


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_model_fit_does_what_fit_begin_and_fit_end_do_around_its_epochs(backend):
    """Each backend trainer's ``fit`` still clears stop_training, drops and caches the validation iterator,
    makes the train function and finalizes the optimizer's variables, which is what kfitx's loop repeats."""
    pytest.importorskip(f"keras.src.backend.{backend}.trainer")
    source = inspect.getsource(_keras.backend_trainer(backend).fit)
    for step in ("self.stop_training = False", "self._eval_epoch_iterator = None", "self.make_train_function()",
                 "finalize_variable_values", "callbacks.on_train_begin()", "callbacks.on_train_end("):
        assert step in source, moved(f"{backend} model.fit's `{step}`", "fit_begin / fit_end")
    assert source.index("self.make_train_function()") < source.index("callbacks.on_train_begin()")
    assert source.index("finalize_variable_values") < source.index("callbacks.on_train_end(")


def test_fit_begin_and_fit_end_leave_the_trainer_as_model_fit_does():
    model = _model()
    model.fit(np.zeros((8, 4), "float32"), np.zeros((8, 2), "float32"), verbose=0)
    model.stop_training, model._eval_epoch_iterator, model.train_function = True, object(), None
    _keras.fit_begin(model)
    assert model.stop_training is False and model._eval_epoch_iterator is None and model.train_function is not None
    model._eval_epoch_iterator = object()
    _keras.fit_end(model, trained=True)
    assert model._eval_epoch_iterator is None


def test_tuner_callbacks_finds_keras_tuners_own_callbacks_by_class(tmp_path):
    import keras_tuner
    from keras_tuner.src.engine import tuner_utils

    tuner = keras_tuner.RandomSearch(lambda hp: _model(), objective="loss", max_trials=1, directory=str(tmp_path))
    trial = tuner.oracle.create_trial("t")
    found, best = tuner_utils.TunerCallback(tuner, trial), tuner_utils.SaveBestEpoch(tuner.oracle.objective,
                                                                                    str(tmp_path / "m"))
    callbacks = [keras.callbacks.History(), found, best]
    assert _keras.tuner_callbacks(callbacks) == (found, [best]), moved("TunerCallback / SaveBestEpoch",
                                                                      "tuner_callbacks")
    assert _keras.tuner_callbacks(keras.callbacks.CallbackList(callbacks))[0] is found
    assert _keras.tuner_callbacks([keras.callbacks.History()]) == (None, [])
    # what kfitx reads of the callback it finds (search/tuner.py, resume.py, budget.py, plan/grouping.py)
    assert found.tuner is tuner and found.trial is trial, moved("TunerCallback.tuner / .trial", "tuner_callbacks")
    assert callable(tuner.get_trial_dir) and tuner.tuner_id, moved("BaseTuner.get_trial_dir / tuner_id",
                                                                   "tuner_callbacks")


def test_search_directory_is_the_directory_of_the_trials_tuner(tmp_path):
    import keras_tuner
    from keras_tuner.src.engine import tuner_utils

    tuner = keras_tuner.RandomSearch(lambda hp: _model(), objective="loss", max_trials=1, directory=str(tmp_path),
                                     project_name="p")
    trial = tuner.oracle.create_trial("t")
    callbacks = [keras.callbacks.History(), tuner_utils.TunerCallback(tuner, trial)]
    assert _keras.search_directory(callbacks) == os.path.join(str(tmp_path), "p"), moved(
        "TunerCallback.tuner / BaseTuner.project_dir", "search_directory")
    assert _keras.search_directory([keras.callbacks.History()]) is None


def test_one_replica_spec_reads_a_per_replica_spec():
    devices = tf.config.list_logical_devices("CPU")[:1]
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((4, 2))).batch(2))
    spec = tf.nest.map_structure(_keras.one_replica_spec, iter(dataset).element_spec)
    assert isinstance(spec, tf.TensorSpec) and spec.shape.as_list()[-1] == 2, moved("PerReplicaSpec._value_specs",
                                                                                    "one_replica_spec")


def test_route_trials_sees_each_trials_begin_run_end_and_the_oracles_end_trial(tmp_path):
    import keras_tuner

    class Plain(_keras.tuner_base_class()):
        def run_trial(self, trial, *args, **kwargs):
            return {"loss": trial.hyperparameters.Float("x", 0.0, 1.0)}

    oracle = keras_tuner.oracles.RandomSearchOracle(objective="loss", max_trials=2, seed=1)
    tuner = Plain(oracle, directory=str(tmp_path), project_name="p")
    seen = []

    def route(name):
        def call(trial, *args, **kwargs):
            seen.append((name, trial.trial_id))
            return originals[["begin", "run", "end"].index(name)](trial, *args, **kwargs)
        return call

    originals = _keras.route_trials(tuner, route("begin"), route("run"), route("end"),
                                    reported=lambda trial: seen.append(("reported", trial.trial_id)))
    tuner.search()
    ids = [trial.trial_id for trial in oracle.trials.values()]
    assert len(ids) == 2 and all(t.status == "COMPLETED" for t in oracle.trials.values())
    expected = [(name, i) for i in ids for name in ("begin", "run", "end", "reported")]  # on_trial_end reports it
    assert seen == expected, moved("BaseTuner.search's per-trial calls (on_trial_begin, run_trial, "
                                   "oracle.end_trial, on_trial_end)", "route_trials")


def test_saw_epoch_raises_save_best_epochs_best_value_only_for_a_better_epoch(tmp_path):
    import keras_tuner
    from keras_tuner.src.engine import tuner_utils

    best = tuner_utils.SaveBestEpoch(keras_tuner.Objective("val_loss", "min"), str(tmp_path / "m"))
    assert best.best_value == float("inf"), moved("SaveBestEpoch.best_value", "saw_epoch")
    _keras.saw_epoch(best, {"val_loss": 0.5})
    _keras.saw_epoch(best, {"val_loss": 0.7})
    _keras.saw_epoch(best, {"loss": 0.1})  # no value for the objective: nothing seen
    assert best.best_value == 0.5


def test_torch_groups_steps_from_keras_3_16_and_the_train_function_takes_the_group():
    """Keras 3.16's torch trainer runs ``steps_per_execution > 1`` (its train function trains on each batch of
    the list); earlier ones refuse it. ``_keras.groups_steps_on_torch`` chooses, ``torch_train_function`` follows."""
    trainer = pytest.importorskip("keras.src.backend.torch.trainer")
    source = inspect.getsource(_keras.backend_trainer("torch").make_train_function)
    refuses = "must be 1 with the PyTorch backend" in source
    assert refuses is not _keras.groups_steps_on_torch(), moved("steps_per_execution on torch",
                                                                "groups_steps_on_torch")
    assert ("data[0]" in source) is refuses, moved("the torch train function's list of batches",
                                                  "torch_train_function")
    if not refuses:
        assert "for step_data in data" in source, moved("the torch train function's loop", "torch_train_function")


def test_scans_steps_on_jax_reads_the_data_adapters_signature(monkeypatch):
    from keras.src.trainers.data_adapters import data_adapter

    params = inspect.signature(data_adapter.DataAdapter.get_jax_iterator).parameters
    assert _keras.scans_steps_on_jax() is ("super_batch" in params), moved("DataAdapter.get_jax_iterator",
                                                                              "scans_steps_on_jax")

    def get_jax_iterator(self, super_batch=None):  # what keras #23527 adds
        return iter(())

    monkeypatch.setattr(data_adapter.DataAdapter, "get_jax_iterator", get_jax_iterator)
    assert _keras.scans_steps_on_jax() is True



def test_where_keras_scans_on_jax_kfitx_finds_the_helpers_its_epoch_iterator_makes_super_batches_with():
    """Keras 3.16's JAX train function reads one item per call: a super batch (the group stacked, made by
    ``super_batch_iterator``, laid out by ``_distribute_data(..., is_super_batch=True)``) or a ``PartialBatchList``.
    ``_keras.jax_train_function`` makes that item with the same helpers; ``feeds_jax_scan`` says it can."""
    pytest.importorskip("jax")
    jax_trainer = pytest.importorskip("keras.src.backend.jax.trainer")
    assert _keras.feeds_jax_scan() is _keras.scans_steps_on_jax(), moved("the JAX super batch helpers",
                                                                         "feeds_jax_scan")
    if not _keras.scans_steps_on_jax():
        return
    from keras.src.trainers.data_adapters import data_adapter_utils as utils

    epoch_iterator = inspect.getsource(jax_trainer.JAXEpochIterator._get_iterator)
    assert "super_batch=super_batch" in epoch_iterator and "is_super_batch" in epoch_iterator, moved(
        "how JAXEpochIterator makes super batches", "jax_train_function")
    step = inspect.getsource(jax_trainer._build_multi_step_iterator_step)
    assert "PartialBatchList" in step and "next(iterator)" in step, moved("what the JAX train function reads",
                                                                          "jax_train_function")
    a, b = (np.zeros((2, 3)), np.ones((2,))), (np.ones((2, 3)), np.zeros((2,)))
    stacked = next(utils.super_batch_iterator(iter([a, b]), 2))
    assert stacked[0].shape == (2, 2, 3) and stacked[1].shape == (2, 2), moved("super_batch_iterator",
                                                                               "jax_train_function")
    assert isinstance(next(utils.super_batch_iterator(iter([a]), 2)), utils.PartialBatchList)


def test_model_fit_on_tensorflow_reads_no_batch_to_build_without_a_distribution():
    """kfitx keeps one iterator of its array streams open across a delegating fit's epochs on TensorFlow only
    (``FitPlan._held_open``): there ``model.fit`` builds an unbuilt model from a batch of the data only under a
    ``tf.distribute`` strategy; on JAX and torch it always reads one off a fresh iterator first, which from a
    held-open stream would take an epoch's first batch."""
    source = inspect.getsource(_keras.backend_trainer("tensorflow")._maybe_symbolic_build)
    early = source.index("if self._distribute_strategy is None")
    assert early < source.index("next(it)") and "return" in source[early:source.index("next(it)")], moved(
        "when model.fit on TensorFlow reads a batch to build the model", "(FitPlan._held_open's TensorFlow rule)")


def test_kfitx_epoch_iterator_says_what_keras_epoch_iterator_says_when_the_data_runs_out():
    from keras.src.trainers.epoch_iterator import EpochIterator

    from kfitx.data.epoch_iterator import OUT_OF_DATA

    iterator = EpochIterator(np.zeros((4, 2), "float32"), batch_size=2, steps_per_epoch=3)
    with pytest.warns(UserWarning) as said:
        assert len(list(iterator)) == 2
    assert OUT_OF_DATA in [str(w.message) for w in said], moved("EpochIterator's 'ran out of data' warning",
                                                                 "(kfitx.data.epoch_iterator.OUT_OF_DATA)")


def test_adds_no_loss_walks_every_nested_layer():
    class Adds(keras.layers.Layer):
        def call(self, x):
            self.add_loss(keras.ops.mean(x))
            return x

    def seq(*layers):
        return keras.Sequential([keras.Input((4,)), *layers])

    assert _keras.adds_no_loss(seq(keras.layers.Dense(4), seq(keras.layers.Dense(2)))), moved(
        "Keras's own layers", "adds_no_loss")
    for model in (seq(keras.layers.Dense(4), seq(Adds())), seq(keras.layers.Dense(2, activity_regularizer="l2")),
                  seq(keras.layers.Dense(2, kernel_regularizer="l2")), seq(keras.layers.Lambda(lambda t: t))):
        assert not _keras.adds_no_loss(model), moved("model._flatten_layers (every nested layer)", "adds_no_loss")
