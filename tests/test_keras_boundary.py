"""Pins every Keras / keras-tuner internal that kfitx/_keras.py wraps: an upgrade that moves one fails here."""

from __future__ import annotations

import inspect
import os
import threading
import time

import pytest

from kfitx import _keras

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

    from kfitx.tune.workers import free_port

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
