"""``auto`` by measurement: the probe's choice, what it never chooses, what it leaves untouched, its cache.

The probe's timings are stubbed (``probe.run_candidate``) wherever a test asserts a choice, so that
the tests hold on a loaded machine; the real probe runs where a test asserts what it leaves behind.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

import kfitx
from kfitx.errors import OptionError
from kfitx.strategies import probe, probe_cache
from kfitx.strategy import BACKENDS


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")


@pytest.fixture
def short_probe(monkeypatch):
    """A probe of two compiled calls per epoch, allowed on fits of any length (batch 8: 128 batches, 16 per call)."""
    monkeypatch.setattr(probe, "PROBE_CALLS", 1)
    monkeypatch.setattr(probe, "MIN_TIMED_STEPS", 1)
    monkeypatch.setattr(probe, "SHARE", 10.0)
    probe_cache.forget()
    yield
    probe_cache.forget()


def stub(monkeypatch, speeds, train=False):
    """Makes the probe report ``speeds`` (samples/s by strategy name); returns the names it was asked to time,
    with the probe plans' epochs and callbacks. With ``train``, each candidate also trains as the real probe does."""
    real, seen = probe.run_candidate, []

    def timed(strategy, model, plan, epoch_steps, on_begin=None):
        seen.append((strategy.name, plan.epochs, list(plan.callbacks)))
        if train:
            real(strategy, model, plan, epoch_steps, on_begin)
        return float(speeds[strategy.name])

    monkeypatch.setattr(probe, "run_candidate", timed)
    return seen


def test_auto_trains_with_the_strategy_the_probe_found_fastest(make_model, xy, registry, short_probe, monkeypatch,
                                                                capsys):
    seen = stub(monkeypatch, {"memory": 1000, "generator": 1500, "loop": 3000})
    history = kfitx.fit(make_model(), *xy, strategy="auto", epochs=2, batch_size=8, verbose=2)
    assert [name for name, _, _ in seen] == ["memory", "generator", "loop"]  # the rules' choice first
    assert [epochs for _, epochs, _ in seen] == [3, 2, 2] and all(not cbs for _, _, cbs in seen)
    assert history.kfitx["strategy"] == "loop"
    assert history.kfitx["probe"]["samples_per_s"] == {"memory": 1000, "generator": 1500, "loop": 3000}
    assert history.kfitx["probe"]["cached"] is False
    assert "the fastest of the strategies that train the same weights" in history.kfitx["auto"]
    assert "kfitx auto: loop -- the fastest" in capsys.readouterr().out
    assert "compiled with" not in history.kfitx["grouping"]  # the plan's own grouping, not the probe's hold


def test_the_rules_choice_stays_unless_another_is_clearly_faster(make_model, xy, registry, short_probe,
                                                                 monkeypatch):
    stub(monkeypatch, {"memory": 1000, "generator": 1020, "loop": 1030})  # within the probe's margin
    history = kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert history.kfitx["strategy"] == "memory"
    assert "a probe found none of the strategies that train the same weights 5% faster" in history.kfitx["auto"]


def _plain_fit(name, interchangeable):
    class PlainFit(kfitx.Strategy):
        backends = BACKENDS
        defaults = {"steps_per_execution": "auto"}

        def fit(self, model, plan):
            with plan.grouped(model):
                return model.fit(**plan.fit_kwargs(plan.train.arrays()))

    PlainFit.name, PlainFit.interchangeable = name, interchangeable
    return PlainFit


def test_auto_never_chooses_a_strategy_that_trains_other_weights(make_model, xy, registry, short_probe,
                                                                 monkeypatch):
    undeclared, declared = _plain_fit("undeclared", False), _plain_fit("declared", True)

    class Plugin:
        @kfitx.hookimpl
        def kfitx_strategies(self):
            return [undeclared, declared]

    registry.register(Plugin(), name="plainfits")
    speeds = {"memory": 1000, "generator": 1000, "loop": 1000, "undeclared": 10**9, "declared": 5000}
    seen = stub(monkeypatch, speeds)
    history = kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert "undeclared" not in [name for name, _, _ in seen]
    assert history.kfitx["strategy"] == "declared"  # a plugin that declares it is timed, and may win

    seen.clear()  # options that change what is trained: only the rules' strategy trains so, nothing is timed
    step = lambda model, batch: model.train_on_batch(*batch, return_dict=True)
    history = kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0, step=step)
    assert history.kfitx["strategy"] == "loop" and seen == []
    assert history.kfitx["probe"] == {"skipped": "no other strategy trains as loop does with these options"}
    history = kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0,
                        augment=lambda bx, by: (bx, by))
    assert history.kfitx["strategy"] == "generator" and seen == []
    assert not kfitx.registry.get_strategy("loop", batch_hooks=[lambda b, i, e: b]).is_interchangeable()


def test_a_strategy_that_fails_in_the_probe_is_left_out_and_named(make_model, xy, registry, short_probe):
    class Broken(kfitx.Strategy):
        name, backends, interchangeable = "broken", BACKENDS, True

        def fit(self, model, plan):
            raise RuntimeError("no luck")

    class Plugin:
        @kfitx.hookimpl
        def kfitx_strategies(self):
            return [Broken]

    registry.register(Plugin(), name="broken")
    history = kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert history.kfitx["strategy"] in ("memory", "generator", "loop")
    assert history.kfitx["probe"]["failed"] == {"broken": "RuntimeError: no luck"}


def test_the_probe_trains_nothing(xy, registry, short_probe, monkeypatch):
    """auto, choosing loop by a probe that really trains every candidate, ends where loop alone ends: same
    weights, optimizer state, random-seed states and History, and the user's callbacks saw one fit."""

    def build():
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dropout(0.3), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    class Epochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begun = self.trained = 0

        def on_train_begin(self, logs=None):
            self.trained += 1

        def on_epoch_begin(self, epoch, logs=None):
            self.begun += 1

    # on torch, memory and generator shuffle with torch's generator and loop with numpy's, so a fit that builds
    # the model draws from another generator than the probe's first strategy did (docs/architecture.md, Not yet)
    chosen = "generator" if keras.backend.backend() == "torch" else "loop"
    seen = stub(monkeypatch, {"memory": 1000, "generator": 1000, "loop": 1000, chosen: 3000}, train=True)
    args = {"epochs": 3, "batch_size": 8, "verbose": 0, "seed": 3, "shuffle": True}
    auto_model, counter = build(), Epochs()
    state = np.random.get_state()
    auto = kfitx.fit(auto_model, *xy, strategy="auto", callbacks=[counter], **args)
    assert len(seen) == 3 and auto.kfitx["strategy"] == chosen
    assert (counter.trained, counter.begun) == (1, 3) and auto.epoch == [0, 1, 2]  # the probe is no training
    np.random.set_state(state)
    direct_model = build()
    direct = kfitx.fit(direct_model, *xy, strategy=chosen, callbacks=[Epochs()], **args)
    assert auto.history == direct.history
    for ours, theirs in zip(auto_model.variables + auto_model.optimizer.variables,
                            direct_model.variables + direct_model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs),
                                      err_msg=ours.path)


def test_an_answer_is_reused_for_the_same_architecture_data_and_batch_size(make_model, xy, registry, short_probe,
                                                                           monkeypatch):
    seen = stub(monkeypatch, {"memory": 1000, "generator": 1000, "loop": 3000})
    kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert len(seen) == 3
    again = kfitx.fit(make_model(seed=5), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert len(seen) == 3 and again.kfitx["strategy"] == "loop" and again.kfitx["probe"]["cached"] is True
    assert "an earlier probe's answer" in again.kfitx["auto"]
    kfitx.fit(make_model(hidden=32), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=4, verbose=0)
    assert len(seen) == 9  # another architecture, another batch size: probed again


def test_a_search_keeps_its_answers_in_its_directory(xy, registry, short_probe, monkeypatch, tmp_path):
    keras_tuner = pytest.importorskip("keras_tuner")
    from contract import build_model

    import kfitx.tuner

    seen = stub(monkeypatch, {"memory": 1000, "generator": 1000, "loop": 3000})

    def build(hp):
        return build_model(optimizer=keras.optimizers.SGD(hp.Float("lr", 1e-3, 1e-1, sampling="log")))

    def search(trials):
        tuner = keras_tuner.RandomSearch(kfitx.tuner.StrategyHyperModel(build, strategies="auto"), objective="loss",
                                         max_trials=trials, directory=str(tmp_path), project_name="p", seed=1,
                                         overwrite=False)
        tuner.search(*xy, epochs=1, batch_size=8, verbose=0)
        return tuner

    tuner = search(2)
    assert len(seen) == 3  # the second trial: the same architecture, data and batch size
    with open(os.path.join(tuner.project_dir, probe_cache.FILE)) as f:
        answers = json.load(f)
    assert [a["strategy"] for a in answers.values()] == ["loop"]
    probe_cache.forget()  # as a fresh process (a worker of kfitx tune) would start
    search(3)
    assert len(seen) == 3  # the third trial read the answer from the search's directory


def test_probe_false_keeps_the_rules(make_model, xy, registry, short_probe, monkeypatch):
    seen = stub(monkeypatch, {"memory": 1000, "generator": 1000, "loop": 3000})
    history = kfitx.fit(make_model(), *xy, strategy="auto", probe=False, epochs=1, batch_size=8, verbose=0,
                        memory_budget=2**40)
    assert seen == [] and history.kfitx["strategy"] == "memory" and "probe" not in history.kfitx
    assert history.kfitx["auto"] == kfitx.explain(*xy, memory_budget=2**40).reason  # the rules' own words
    with pytest.raises(OptionError, match="`probe` must be True"):
        kfitx.fit(make_model(), *xy, strategy="auto", probe="yes")


def test_where_a_probe_is_unsafe_or_cannot_pay_the_rules_decide_and_say_why(make_model, xy, registry,
                                                                             monkeypatch):
    probe_cache.forget()
    seen = stub(monkeypatch, {"memory": 1000, "generator": 1000, "loop": 3000})
    short = kfitx.fit(make_model(), *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert "not probed: the fit is too short for a probe to pay off (128 batches" in short.kfitx["auto"]
    monkeypatch.setattr(probe, "SHARE", 10.0)
    monkeypatch.setattr(probe, "MIN_TIMED_STEPS", 1)
    monkeypatch.setattr(probe, "PROBE_CALLS", 1)
    x, y = xy
    stream = kfitx.fit(make_model(), lambda: ((x[i:i + 8], y[i:i + 8]) for i in range(0, 1024, 8)),
                       strategy="auto", epochs=1, verbose=0)
    assert "not probed: the data is a generator stream" in stream.kfitx["auto"]
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    unbuilt.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = kfitx.fit(unbuilt, *xy, strategy="auto", epochs=1, batch_size=8, verbose=0)
    assert "not probed: the model is not built yet" in history.kfitx["auto"]
    assert history.kfitx["probe"] == {"skipped": history.kfitx["auto"].split("not probed: ")[1]}
    assert seen == []


def test_the_runtime_saves_and_puts_back_the_backends_own_random_state():
    # auto's probe puts back Python's, numpy's and the backend's own global random state (torch's generator)
    from kfitx.runtime import Runtime

    assert Runtime("tensorflow").random_state() is None and Runtime("jax").random_state() is None
    torch = pytest.importorskip("torch")
    runtime = Runtime("torch")
    state = runtime.random_state()
    drawn = torch.rand(3)
    runtime.set_random_state(state)
    assert torch.equal(torch.rand(3), drawn)
