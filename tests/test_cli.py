import os
import subprocess
import sys

import kfitx
from kfitx.cli import main


def test_list_shows_builtins_with_provider(capsys, registry):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header, rule, *rows = out.splitlines()
    assert header.split()[:2] == ["name", "description"]
    memory = next(row for row in rows if row.startswith("memory "))
    assert " kfitx " in memory


def test_console_script_is_installed():
    env = {**os.environ, "KFITX_DISABLE_PLUGIN_AUTOLOAD": "1"}
    exe = os.path.join(os.path.dirname(sys.executable), "kfitx")
    result = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "memory" in result.stdout


def test_unknown_command_exits_non_zero():
    result = subprocess.run([sys.executable, "-m", "kfitx.cli", "nope"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


class IgnoresCallbacks(kfitx.Strategy):
    name = "deaf"
    description = "model.fit without the callbacks it was given"

    def fit(self, model, plan):
        validation = None if plan.validation is None else plan.validation.arrays()
        return model.fit(**{**plan.fit_kwargs(plan.train.arrays(), validation), "callbacks": None})


class ProvidesDeaf:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [IgnoresCallbacks]


def test_check_runs_the_conformance_kit_on_an_installed_strategy(capsys, registry):
    assert main(["check", "loop", "--rules", "history,callback-order,same-weights"]) == 0
    out = capsys.readouterr().out
    assert "Checking strategy 'loop' (kfitx.strategies.loop.LoopStrategy, from kfitx" in out
    assert "callback-order   PASSED" in out and "3 passed, 0 failed, 0 skipped" in out


def test_check_names_the_broken_rule_and_exits_1(capsys, registry):
    registry.register(ProvidesDeaf(), name="deaf-plugin")
    assert main(["check", "deaf", "--rules", "callback-order", "--no-weights"]) == 1
    out = capsys.readouterr().out
    assert "callback-order   FAILED" in out
    assert "Strategy 'deaf' breaks rule 'callback-order'" in out and "How to fix:" in out
    assert main(["check", "nope"]) == 2
    assert "Available strategies:" in capsys.readouterr().err


class OneHot(kfitx.Strategy):
    name = "onehot"
    description = "model.fit on one-hot labels"
    defaults = {"smoothing": 0.0}

    def supports(self, source):
        return None if getattr(source.y, "ndim", 0) == 2 else "onehot trains on one-hot labels."

    def fit(self, model, plan):
        x, y = plan.train.arrays()
        eps = self.options["smoothing"]
        validation = None if plan.validation is None else plan.validation.arrays()
        with plan.grouped(model):
            return model.fit(**plan.fit_kwargs((x, y * (1 - eps) + eps / y.shape[1]), validation))


class ProvidesOneHot:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [OneHot]


KIT_MODULE = '''
import keras

import kfitx
from kfitx.testing import tiny_model


def make_source(x, y):
    return kfitx.data.arrays(x, keras.utils.to_categorical(y, 3))


def build_model(seed):
    model = tiny_model(seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model
'''


def test_check_takes_a_source_a_model_and_options_from_the_command_line(capsys, registry, tmp_path, monkeypatch):
    registry.register(ProvidesOneHot(), name="onehot-plugin")
    (tmp_path / "onehot_kit.py").write_text(KIT_MODULE)
    monkeypatch.chdir(tmp_path)  # MODULE:FUNCTION is found where the author runs the command
    monkeypatch.setattr(sys, "path", list(sys.path))
    rules = "options,history,initial-epoch,validation-data,same-weights"
    assert main(["check", "onehot", "--rules", rules]) == 1  # the kit's integer labels: refused
    assert "Received: the reason 'onehot trains on one-hot labels.'." in capsys.readouterr().out
    assert main(["check", "onehot", "--rules", rules, "--source", "onehot_kit:make_source",
                 "--model", "onehot_kit:build_model", "--option", "smoothing=0.0"]) == 0
    assert "5 passed, 0 failed, 0 skipped" in capsys.readouterr().out
    assert main(["check", "onehot", "--source", "onehot_kit:nope"]) == 2
    assert "a function 'nope' in module onehot_kit" in capsys.readouterr().err
    assert main(["check", "onehot", "--option", "smoothing"]) == 2
    assert "--option KEY=VALUE" in capsys.readouterr().err
    sys.modules.pop("onehot_kit", None)


def test_plugin_new_writes_the_package(capsys, tmp_path):
    assert main(["plugin", "new", "my-mix", "--directory", str(tmp_path)]) == 0
    root = tmp_path / "kfitx-my-mix"
    assert f"Wrote {root}/" in capsys.readouterr().out
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.kfitx]\nmy-mix = "kfitx_my_mix"' in pyproject
    module = (root / "kfitx_my_mix.py").read_text()
    assert "class MyMixStrategy(kfitx.Strategy):" in module and "@kfitx.hookimpl" in module
    assert "StrategyConformance" in (root / "tests" / "test_my_mix.py").read_text()
    assert main(["plugin", "new", "my-mix", "--directory", str(tmp_path)]) == 2  # never overwrites
    assert main(["plugin", "new", "My Mix", "--directory", str(tmp_path)]) == 2
    assert "a plugin name of lower case letters" in capsys.readouterr().err


STREAMED_MODULE = '''
import kfitx


class Streamed(kfitx.Strategy):
    name = "streamed"
    description = "reads a stream of batches of its own"

    def supports(self, source):
        if source.kind != "generator":
            return "streamed reads a stream of batches of its own; pass kfitx.data.generator(factory)."
        return None

    def fit(self, model, plan):
        return kfitx.fit_loop(model, plan)


def make_source(x, y):
    def batches():
        for i in range(0, len(x), 32):
            yield x[i:i + 32].astype("float32"), y[i:i + 32]

    return kfitx.data.generator(batches, steps_per_epoch=-(-len(x) // 32))


@kfitx.hookimpl
def kfitx_strategies():
    return [Streamed]
'''


def test_check_passes_a_strategy_that_needs_a_source_of_its_own(capsys, registry, tmp_path, monkeypatch):
    (tmp_path / "streamed_kit.py").write_text(STREAMED_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    import importlib

    try:
        registry.register(importlib.import_module("streamed_kit"), name="streamed")
        assert main(["check", "streamed", "--skip", "tuner-trial", "--source", "streamed_kit:make_source"]) == 0
        out = capsys.readouterr().out
        assert "12 passed, 0 failed, 0 skipped" in out and "registration     PASSED" in out
    finally:
        sys.modules.pop("streamed_kit", None)
