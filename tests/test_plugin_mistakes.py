"""The mistakes a plugin author makes are errors or warnings that name the plugin, not silence or a raw traceback.

The quick tests register small strategies written here; the slow ones pip-install real plugin
packages (without build isolation, as ``test_plugins.py`` does) and walk the same mistakes as a
user meets them: ``kfitx list``, ``kfitx.fit``, a keras-tuner search, ``kfitx check``, and the
package ``kfitx plugin new`` writes.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import keras_tuner
import pytest

import kfitx
import kfitx.registry
from kfitx.errors import PluginError, StrategyFitError, UnsupportedDataError
from kfitx.testing import check_strategy, tiny_data, tiny_model
from kfitx.tuner import StrategyHyperModel, Tunable


class _Delegating(kfitx.Strategy):
    def fit(self, model, plan):
        return model.fit(**plan.fit_kwargs(plan.train.arrays(), None if plan.validation is None
                                           else plan.validation.arrays()))


class ForgetsToReturn(_Delegating):
    name = "forgets"

    def fit(self, model, plan):
        super().fit(model, plan)


class DropsCallbacks(_Delegating):
    name = "drops"

    def fit(self, model, plan):
        validation = None if plan.validation is None else plan.validation.arrays()
        return model.fit(**{**plan.fit_kwargs(plan.train.arrays(), validation), "callbacks": None})


class DropsValidation(_Delegating):
    name = "novalidation"

    def fit(self, model, plan):
        return model.fit(**plan.fit_kwargs(plan.train.arrays()))


class Raises(_Delegating):
    name = "raises"

    def fit(self, model, plan):
        logs = {}
        return logs["accuracy"]  # the mistake


class Picky(_Delegating):
    name = "picky"

    def supports(self, source):
        return "picky trains on its own shards, not on arrays."


class TunesAlpha(_Delegating):
    name = "alpha"
    defaults = {"alpha": 0.2}

    def hyperparameters(self, hp):
        return {"alpha": hp.Float("alpha", 0.1, 0.4)}


class Provides:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [ForgetsToReturn, DropsCallbacks, DropsValidation, Raises, Picky, TunesAlpha]


@pytest.fixture
def plugins(registry):
    registry.register(Provides(), name="mistakes", distribution="kfitx-mistakes", version="0.3.1")
    return registry


def fit(strategy, **kwargs):
    x, y = tiny_data(250)
    return kfitx.fit(tiny_model(), x[:200], y[:200], strategy=strategy, epochs=2, verbose=0,
                     validation_data=(x[200:], y[200:]), **kwargs)


WHO = "plugin 'mistakes' from distribution kfitx-mistakes 0.3.1"


def test_a_fit_that_returns_nothing_drops_callbacks_or_validation_is_a_plugin_error_naming_the_package(plugins):
    with pytest.raises(PluginError, match=rf"Strategy 'forgets' \({WHO}\) must return a keras.callbacks.History. "
                                          r"Received: NoneType\."):
        fit("forgets")
    with pytest.raises(PluginError, match=rf"Strategy 'drops' \({WHO}\) to call the fit's callbacks.*"
                                          r"Received: on_train_begin and on_train_end never called\."):
        fit("drops")
    with pytest.raises(PluginError, match=r"Strategy 'novalidation' .*val_\* keys in the History. "
                                          r"Received: the keys \['accuracy', 'loss'\]\."):
        fit("novalidation")


def test_what_a_plugins_fit_raises_is_wrapped_naming_strategy_package_version_and_its_line(plugins):
    with pytest.raises(StrategyFitError) as info:
        fit("raises")
    text = str(info.value)
    assert text.startswith(f"Strategy 'raises' ({WHO}) to train without raising. Received: KeyError: 'accuracy' "
                           "(raised at test_plugin_mistakes.py, line ")
    assert ", in fit)." in text and isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, kfitx.KfitxError)


def test_kfitx_errors_and_builtins_errors_are_not_wrapped(plugins):
    with pytest.raises(UnsupportedDataError, match="picky trains on its own shards"):
        fit("picky")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise ZeroDivisionError("a callback of the user's")

    with pytest.raises(ZeroDivisionError):  # memory is kfitx's own: its errors reach the user as they are
        fit("memory", callbacks=[Stop()])


def search(tmp_path, strategies, max_trials=2, **hypermodel):
    x, y = tiny_data(250)
    tuner = keras_tuner.RandomSearch(StrategyHyperModel(lambda hp: tiny_model(), strategies=strategies, **hypermodel),
                                     objective="val_accuracy", max_trials=max_trials, seed=0, directory=tmp_path,
                                     project_name="mistakes", max_consecutive_failed_trials=1)
    tuner.search(x[:200], y[:200], epochs=1, validation_data=(x[200:], y[200:]), verbose=0)
    return tuner


def test_inside_a_search_no_history_is_the_same_clear_message(plugins, tmp_path):
    with pytest.raises(keras_tuner.errors.FatalError, match=rf"PluginError: Strategy 'forgets' \({WHO}\) must "
                                                            r"return a keras.callbacks.History"):
        search(tmp_path, ["forgets"])


def test_inside_a_search_a_raising_plugin_is_a_failed_trial_naming_it(plugins, tmp_path):
    with pytest.raises(RuntimeError, match=r"Number of consecutive failures") as info:
        search(tmp_path, ["raises"])
    assert f"StrategyFitError: Strategy 'raises' ({WHO}) to train without raising" in str(info.value)


def test_a_search_refuses_strategies_that_cannot_serve_its_data_before_any_trial_trains(plugins, tmp_path):
    with pytest.raises(keras_tuner.errors.FatalError) as info:
        search(tmp_path, ["memory", "picky"], max_trials=3)
    text = str(info.value)
    assert "every strategy of the search to serve its data, checked before the first trial trains" in text
    assert "1 of 2 cannot serve: 'picky' (picky trains on its own shards, not on arrays)" in text
    assert "unsupported='skip'" in text and ".." not in text


def test_unsupported_skip_leaves_them_out_with_a_warning(plugins, tmp_path):
    with pytest.warns(UserWarning, match=r"leaves out 1 strategies .*'picky'.*searches among memory"):
        tuner = search(tmp_path, ["memory", "picky"], max_trials=4, unsupported="skip")
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 4 and {t.status for t in trials} == {"COMPLETED"}  # none lost, none failed
    assert {t.hyperparameters.get("strategy") for t in trials} == {"memory"}  # picky never trained
    with pytest.raises(kfitx.OptionError, match="unsupported"):
        StrategyHyperModel(lambda hp: tiny_model(), strategies=["memory"], unsupported="ignore")


def test_a_tunable_colliding_with_a_strategys_own_hyperparameter_is_refused(plugins):
    with pytest.raises(kfitx.OptionError, match=r"Tunables for alpha, which 'alpha'.hyperparameters\(hp\) declares"):
        StrategyHyperModel(lambda hp: tiny_model(), strategies=["memory", "alpha"],
                           strategy_options={"alpha": {"alpha": Tunable(lambda hp: hp.Float("mix", 0.0, 1.0))}})

    class Beta(TunesAlpha):  # the same hyperparameter name for another option
        name = "beta"
        defaults = {"alpha": 0.2, "beta": 1}

    with pytest.raises(kfitx.OptionError, match=r"beta \(hyperparameter 'alpha'\)"):
        kfitx.search.tunable.check_collisions("beta", {"beta": Tunable(lambda hp: hp.Int("alpha", 1, 3))}, Beta(),
                                              keras_tuner.HyperParameters)


UNDECORATED = """
    import kfitx


    class Deafish(kfitx.Strategy):
        name = "undecorated"
        description = "never registered"

        def fit(self, model, plan):
            return model.fit(**plan.fit_kwargs(plan.train.arrays()))


    def kfitx_strategies():  # the mistake: no @kfitx.hookimpl
        return [Deafish]
"""


def test_an_undecorated_hook_warns_at_registration_and_fails_the_registration_rule(registry, tmp_path, monkeypatch):
    (tmp_path / "kfitx_undecorated.py").write_text(textwrap.dedent(UNDECORATED))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("kfitx_undecorated")
    try:
        with pytest.warns(kfitx.PluginWarning, match=r"'undecorated-plugin' .*defines kfitx_strategies\(\) without "
                                                     r"@kfitx.hookimpl: kfitx_undecorated.kfitx_strategies is never "
                                                     r"called"):
            registry.register(module, name="undecorated-plugin")
        assert "undecorated" not in {info.name for info in registry.available()}
        report = check_strategy(module.Deafish, rules=["registration"], raise_on_failure=False)
        assert report.failed == ["registration"]
        assert "kfitx_undecorated defines kfitx_strategies() without it" in str(report.results[0].error)
        assert "Put @kfitx.hookimpl on the line above `def kfitx_strategies`" in str(report.results[0].error)
    finally:
        sys.modules.pop("kfitx_undecorated", None)


# -- the same mistakes, as installed packages -----------------------------------------------------

OOPS_PYPROJECT = """
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "kfitx-{name}"
    version = "0.0.7"
    dependencies = ["kfitx"]

    [project.entry-points.kfitx]
    {name} = "kfitx_{module}"

    [tool.setuptools]
    py-modules = ["kfitx_{module}"]
"""
OOPS_MODULE = """
    import kfitx


    class Deaf(kfitx.Strategy):
        name = "oops-deaf"
        description = "drops the fit's callbacks"

        def fit(self, model, plan):
            return model.fit(plan.train.x, plan.train.y, epochs=plan.epochs, verbose=0)


    class Raises(kfitx.Strategy):
        name = "oops-raises"
        description = "raises in fit"

        def fit(self, model, plan):
            raise KeyError("accuracy")


    @kfitx.hookimpl
    def kfitx_strategies():
        return [Deaf, Raises]
"""


def _pip_install(target: Path, *packages: Path) -> None:
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                          "--no-build-isolation", "--no-index", "--target", str(target), *map(str, packages)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]


def _kfitx(site: Path, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("KFITX_BLOCK_PLUGINS", "KFITX_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    exe = os.path.join(os.path.dirname(sys.executable), "kfitx")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.mark.slow
def test_installed_mistakes_are_named_by_package(tmp_path, monkeypatch):
    sources = tmp_path / "src"
    for name, module, text in (("oops", "oops", OOPS_MODULE), ("undecorated", "undecorated", UNDECORATED)):
        package = sources / f"kfitx-{name}"
        package.mkdir(parents=True)
        (package / "pyproject.toml").write_text(textwrap.dedent(OOPS_PYPROJECT.format(name=name, module=module)))
        (package / f"kfitx_{module}.py").write_text(textwrap.dedent(text))
    site = tmp_path / "site"
    _pip_install(site, sources / "kfitx-oops", sources / "kfitx-undecorated")

    listed = _kfitx(site, "list")
    assert listed.returncode == 0 and "oops-deaf" in listed.stdout and "undecorated" not in listed.stdout
    assert ("'undecorated' (distribution kfitx-undecorated 0.0.7) defines kfitx_strategies() without "
            "@kfitx.hookimpl") in listed.stderr

    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("KFITX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    importlib.invalidate_caches()
    old = kfitx.registry.reset_registry(None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", kfitx.PluginWarning)
            with pytest.raises(PluginError, match=r"'oops-deaf' \(plugin 'oops' from distribution kfitx-oops 0.0.7\) "
                                                  r"to call the fit's callbacks"):
                fit("oops-deaf")
            with pytest.raises(StrategyFitError, match=r"'oops-raises' \(plugin 'oops' from distribution kfitx-oops "
                                                       r"0.0.7\) to train without raising. Received: KeyError: "
                                                       r"'accuracy' \(raised at kfitx_oops.py, line \d+, in fit\)"):
                fit("oops-raises")
    finally:
        kfitx.registry.reset_registry(old)
        for module in ("kfitx_oops", "kfitx_undecorated"):
            sys.modules.pop(module, None)


@pytest.mark.slow
def test_kfitx_plugin_new_writes_a_package_that_installs_and_passes_the_kit_and_its_own_tests(tmp_path):
    made = _kfitx(tmp_path, "plugin", "new", "demo", "--directory", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "kfitx-demo"
    assert {p.name for p in package.rglob("*") if p.is_file()} == {
        "pyproject.toml", "kfitx_demo.py", "README.md", "conftest.py", "test_demo.py"}
    site = tmp_path / "site"
    _pip_install(site, package)
    listed = _kfitx(site, "list")
    assert any(line.split()[0] == "demo" and " kfitx-demo " in line for line in listed.stdout.splitlines()[2:])
    checked = _kfitx(site, "check", "demo")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "entry point 'demo = kfitx_demo' in kfitx-demo 0.1.0" in checked.stdout
    assert "13 passed, 0 failed, 0 skipped" in checked.stdout
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package, env=env,
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0 and "14 passed" in tests.stdout, tests.stdout[-3000:]


def test_an_undecorated_source_hook_is_named_by_its_class_and_says_what_it_never_does():
    from kfitx.registry import Registry

    class ShardsPlugin:
        def kfitx_sources(self, data, y):  # no @kfitx.hookimpl: pluggy never calls it
            return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Registry(builtins=False, autoload=False).register(ShardsPlugin())
    text = " ".join(str(w.message) for w in caught)
    assert "kfitx plugin 'ShardsPlugin'" in text, text
    assert "kfitx.fit never asks it for a data source" in text and "its strategies are not registered" not in text
