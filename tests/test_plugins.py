"""The plugin path, walked as a third party walks it: pip-install the packages in plugins/, then use them.

pip installs the two plugin packages of this repository, and a deliberately broken
one written here, into a fresh directory (``pip install --target``) once per test
session. Putting that directory on ``sys.path`` (or ``PYTHONPATH`` for a
subprocess) is how site-packages is found too, so kfitx finds the plugins through
their entry points exactly as after ``pip install plugins/kfitx-tfdata``, without
changing the environment other test runs share.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras_tuner
import pytest

import kfitx
import kfitx.registry
from kfitx.registry import PluginWarning
from kfitx.testing import tiny_data, tiny_model
from kfitx.tuner import StrategyHyperModel

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
DISTRIBUTIONS = {"tfdata": "kfitx-tfdata", "accumulate": "kfitx-accumulate"}


def version(dist):
    """The version a plugin's pyproject.toml declares."""
    import tomllib

    return tomllib.loads((PLUGINS / dist / "pyproject.toml").read_text())["project"]["version"]
MODULES = ("kfitx_tfdata", "kfitx_accumulate", "kfitx_broken")

BROKEN_PYPROJECT = """
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "kfitx-broken"
    version = "0.0.1"
    dependencies = ["kfitx"]

    [project.entry-points.kfitx]
    broken = "kfitx_broken"

    [tool.setuptools]
    py-modules = ["kfitx_broken"]
"""
BROKEN_MODULE = """
    import kfitx
    import kfitx_a_dependency_nobody_installed  # the mistake: a missing dependency

    @kfitx.hookimpl
    def kfitx_strategies():
        return []
"""


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the plugins were pip-installed into (built from copies, so the checkout stays clean)."""
    sources = tmp_path_factory.mktemp("plugin-sources")
    packages = []
    for dist in DISTRIBUTIONS.values():
        packages.append(sources / dist)
        shutil.copytree(PLUGINS / dist, packages[-1],
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    broken = sources / "kfitx-broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text(textwrap.dedent(BROKEN_PYPROJECT))
    (broken / "kfitx_broken.py").write_text(textwrap.dedent(BROKEN_MODULE))
    packages.append(broken)
    target = tmp_path_factory.mktemp("site-packages")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target),
                          *map(str, packages)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, "pip could not install the plugins (kfitx[test] brings setuptools and wheel):\n" \
        + pip.stderr[-3000:]
    return target


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugins visible to this process for one test; gone again afterwards."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("KFITX_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("KFITX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    importlib.invalidate_caches()
    old = kfitx.registry.reset_registry(None)
    yield site
    kfitx.registry.reset_registry(old)
    for module in MODULES:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def kfitx_command(site: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("KFITX_BLOCK_PLUGINS", "KFITX_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    exe = os.path.join(os.path.dirname(sys.executable), "kfitx")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_kfitx_list_shows_the_installed_plugins_and_reports_the_broken_one(site):
    result = kfitx_command(site, "list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    for name, dist in DISTRIBUTIONS.items():
        assert f" {dist} " in rows[name] and f" {version(dist)} " in rows[name], rows[name]
    assert " kfitx " in rows["memory"] and " kfitx " in rows["loop"]  # the built-ins are untouched
    assert "broken" not in rows
    assert "PluginWarning" in result.stderr
    assert "'broken' (distribution kfitx-broken 0.0.1) failed to load" in result.stderr
    assert "kfitx_a_dependency_nobody_installed" in result.stderr


def test_a_search_chooses_plugin_strategies_by_name(installed, tmp_path):
    with pytest.warns(PluginWarning, match="kfitx-broken"):
        infos = {info.name: info for info in kfitx.available_strategies()}
    assert {name: infos[name].distribution for name in DISTRIBUTIONS} == DISTRIBUTIONS
    x, y = tiny_data(250)
    strategies = ["tfdata", "accumulate", "memory"]
    tuner = keras_tuner.RandomSearch(StrategyHyperModel(lambda hp: tiny_model(), strategies=strategies),
                                     objective="val_accuracy", max_trials=3, seed=0, directory=tmp_path,
                                     project_name="plugins")
    tuner.search(x[:200], y[:200], epochs=1, validation_data=(x[200:], y[200:]), verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert all(trial.status == "COMPLETED" for trial in trials)
    assert sorted(trial.hyperparameters.get("strategy") for trial in trials) == sorted(strategies)


def test_kfitx_check_passes_an_installed_plugin(site):
    result = kfitx_command(site, "check", "tfdata", "--skip", "tuner-trial", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"from kfitx-tfdata {version('kfitx-tfdata')}" in result.stdout
    assert f"entry point 'tfdata = kfitx_tfdata' in kfitx-tfdata {version('kfitx-tfdata')}" in result.stdout
    assert "12 passed, 0 failed, 0 skipped" in result.stdout


@pytest.mark.slow
def test_the_installed_plugins_pass_their_own_tests(site):
    """What `pip install plugins/X && pytest plugins/X` does, for both packages (slow: their whole suites)."""
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3", "KFITX_BLOCK_PLUGINS": "broken"}
    for dist in DISTRIBUTIONS.values():
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGINS / dist)],
                                capture_output=True, text=True, timeout=600, env=env, cwd=PLUGINS / dist)
        assert result.returncode == 0, result.stdout[-4000:]
        summary = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), result.stdout[-2000:]  # nothing skipped, no warning

