"""The auto strategy: the classic rules choose memory, generator or loop, and say why."""

from __future__ import annotations

import numpy as np
import pytest

import kfitx
from kfitx.errors import OptionError


@pytest.fixture
def xy_small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def test_arrays_that_fit_and_no_augmentation_go_to_memory(xy_small):
    decision = kfitx.explain(*xy_small)
    assert decision.strategy == "memory"
    assert "fit the memory budget" in decision.reason and "no augmentation" in decision.reason


def test_augmentation_streams_or_generators_or_big_arrays_go_to_generator(xy_small, tmp_path):
    x, y = xy_small
    assert kfitx.explain(x, y, augment=lambda bx, by: (bx, by)).strategy == "generator"
    gen = kfitx.explain(lambda: iter([(x, y)]))
    assert (gen.strategy, gen.reason) == ("generator", "the data is a generator stream, not arrays in memory")
    np.save(tmp_path / "x.npy", x)
    big = kfitx.explain(str(tmp_path / "x.npy"), memory_budget=1024)
    assert big.strategy == "generator" and "over the memory budget of 0.0 MiB" in big.reason


def test_a_custom_step_or_batch_hooks_go_to_loop(xy_small):
    step = kfitx.explain(*xy_small, step=lambda model, batch: {})
    assert step.strategy == "loop" and "custom step" in step.reason
    hooks = kfitx.explain(*xy_small, batch_hooks=[lambda batch, i, epoch: batch])
    assert hooks.strategy == "loop" and "batch hook" in hooks.reason
    with pytest.raises(OptionError, match="cannot do both"):
        kfitx.explain(*xy_small, step=lambda model, batch: {}, augment=lambda bx, by: (bx, by))


def test_options_for_the_chosen_strategy_are_passed_and_the_rest_named(xy_small):
    decision = kfitx.explain(*xy_small, timeout=5.0, steps_per_execution=2)
    assert decision.strategy == "memory"
    assert decision.options == {"steps_per_execution": 2}
    assert decision.unused == ("timeout",) and "ignoring timeout" in str(decision)


def test_fit_runs_the_choice_and_records_why(make_model, xy_small, capsys):
    history = kfitx.fit(make_model(), *xy_small, strategy="auto", epochs=1, verbose=0,
                        step=lambda model, batch: model.train_on_batch(*batch, return_dict=True))
    assert history.kfitx["strategy"] == "loop" and "custom step" in history.kfitx["auto"]
    kfitx.fit(make_model(), *xy_small, strategy="auto", epochs=1, verbose=2)
    assert "kfitx auto: memory -- the arrays" in capsys.readouterr().out


def test_a_plugin_takes_part_in_the_choice_through_kfitx_choose_strategy(make_model, xy_small, registry):
    seen = []

    class Chooser:
        @kfitx.hookimpl
        def kfitx_choose_strategy(self, source, options):
            seen.append((source.kind, dict(options)))
            if source.kind == "arrays" and options.get("memory_budget") == 0.25:
                return kfitx.Decision("loop", "the plugin's rule for a quarter budget", {})
            return None

    registry.register(Chooser(), name="chooser")
    x, y = xy_small
    history = kfitx.fit(make_model(), x, y, strategy="auto", memory_budget=0.25, epochs=1, verbose=0)
    assert history.kfitx["strategy"] == "loop"
    assert history.kfitx["auto"] == "the plugin's rule for a quarter budget"
    assert kfitx.explain(x, y).strategy == "memory"  # the plugin passed: kfitx's own rules answered
    assert seen == [("arrays", {"memory_budget": 0.25}), ("arrays", {})]


def test_the_memory_budget_is_the_memory_strategys_own_rule_and_default(xy_small, monkeypatch):
    from kfitx.strategies.memory import MemoryStrategy

    x, y = xy_small
    assert kfitx.explain(x, y).strategy == "memory"
    monkeypatch.setattr(MemoryStrategy, "defaults", {**MemoryStrategy.defaults, "memory_budget": 1024})
    over = kfitx.explain(x, y)  # auto's default budget is memory's: 1 KiB now, under the arrays' 2.5 KiB
    assert over.strategy == "generator" and "over the memory budget of 0.0 MiB" in over.reason
    monkeypatch.setattr(MemoryStrategy, "sizes", lambda self, source: (0.0, 1.0))
    assert kfitx.explain(x, y).strategy == "memory"  # and its rule: auto asks it, never recomputes it
