"""The versions kfitx is tested with, and what a user outside them sees (kfitx/_keras/versions.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from kfitx import _keras
from kfitx._keras import versions
from kfitx.errors import KerasVersionError, KfitxError, UntestedVersionWarning

ROOT = Path(__file__).parents[1]


def _noxfile(name: str):
    """A constant of noxfile.py, read without importing nox."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == name)
    return ast.literal_eval(node.value)


def _pairs() -> dict:
    """``PAIRS`` of noxfile.py."""
    return _noxfile("PAIRS")


def test_pyproject_the_matrix_and_the_boundary_state_one_range_and_the_installed_versions_lie_in_it():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, tested in _keras.TESTED.items():
        assert f'"{name}{tested}"' in pyproject, f"pyproject.toml must state {name}{tested} (TESTED)"
        for pair, pins in _pairs().items():  # the matrix runs the ends of the range, both inside it
            assert pins[name] in SpecifierSet(tested), f"noxfile.py's {pair} pair pins {name} {pins[name]}"
    lowest = next(spec.version for spec in SpecifierSet(_keras.TESTED["keras"]) if spec.operator == ">=")
    oldest = min(Version(pins["keras"]) for pins in _pairs().values())
    assert oldest.release[:2] == Version(lowest).release[:2], "the oldest pair runs the lowest Keras minor stated"
    for name in _keras.TESTED:
        installed = versions.installed_version(name)
        assert installed and not versions.untested(name, installed), f"{name} {installed} is outside TESTED"


def test_the_range_admits_no_keras_minor_above_the_newest_a_session_has_passed():
    """The declared range ends at the newest Keras minor some run has passed: a pair of the matrix, or the
    nightly session's last passed keras-nightly. Raising the bound without a run of the new minor fails here."""
    upper = next(spec.version for spec in SpecifierSet(_keras.TESTED["keras"]) if spec.operator == "<")
    highest_admitted = (Version(upper).major, Version(upper).minor - 1)
    run = [Version(pins["keras"]) for pins in _pairs().values()] + [Version(_noxfile("NIGHTLY_PASSED"))]
    newest_run = max(v.release[:2] for v in run)
    assert highest_admitted == newest_run, (
        f"TESTED admits Keras up to {highest_admitted}, but the newest minor a session runs is {newest_run} "
        "(noxfile.py: PAIRS, NIGHTLY_PASSED)")
    assert not versions.untested("keras", _noxfile("NIGHTLY_PASSED"))


@pytest.mark.parametrize(("version", "outside"), [("3.11.3", True), ("3.12.0", False), ("3.15.1", False),
                                                   ("3.16.0.dev2026082200", False), ("3.17.0.dev1", True),
                                                   ("4.0.0", True), ("not-a-version", True)])
def test_untested_reads_the_range_with_its_development_versions(version, outside):
    assert versions.untested("keras", version) is outside


@pytest.fixture
def fresh_warning(monkeypatch):
    """Each test sees the warning as a fresh process would (it is issued once per process)."""
    monkeypatch.setattr(versions, "_warned", False)
    monkeypatch.delenv(versions.SILENCE, raising=False)


def test_an_untested_keras_warns_once_naming_the_range_and_how_to_silence_it(monkeypatch, fresh_warning):
    monkeypatch.setattr(keras, "__version__", "3.11.3")
    with pytest.warns(UntestedVersionWarning) as caught:
        versions.warn_if_untested()
    text = str(caught[0].message)
    assert "keras 3.11.3" in text and f"keras{_keras.TESTED['keras']}" in text and versions.SILENCE in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        versions.warn_if_untested()  # once per process


def test_the_warning_is_silenced_by_its_environment_variable_and_absent_for_a_tested_keras(monkeypatch,
                                                                                           fresh_warning):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        versions.warn_if_untested()  # the installed versions are tested
        monkeypatch.setattr(keras, "__version__", "3.11.3")
        monkeypatch.setenv(versions.SILENCE, "1")
        versions.warn_if_untested()


def test_importing_kfitx_with_an_untested_keras_warns_at_the_import_and_does_not_refuse(tmp_path):
    script = ("import sys, types, warnings\n"
              "warnings.simplefilter('always')\n"
              "sys.modules['keras'] = types.SimpleNamespace(__version__='3.11.3')\n"
              "import kfitx\n"
              "print(kfitx.fit.__name__)\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fit"
    assert done.stderr.count("UntestedVersionWarning") == 1 and "<string>:4" in done.stderr, done.stderr


def test_a_missing_internal_is_a_kfitx_error_naming_the_keras_version_and_the_feature(monkeypatch):
    from keras.src.trainers.data_adapters import array_data_adapter

    monkeypatch.delattr(array_data_adapter, "ArrayDataAdapter")
    with pytest.raises(KerasVersionError) as raised:
        _keras.array_adapter(np.zeros((4, 1)), None, None, batch_size=2, shuffle=False, class_weight=None)
    text = str(raised.value)
    assert f"keras {keras.__version__}" in text and "Arrays on JAX and torch" in text and "ArrayDataAdapter" in text
    assert isinstance(raised.value, KfitxError) and isinstance(raised.value.__cause__, AttributeError)


def test_a_missing_private_module_or_model_attribute_is_a_kfitx_error_too(monkeypatch):
    with pytest.raises(KerasVersionError, match="keras.src.no_such_module"):
        versions.internal("keras.src.no_such_module", "thing", "A feature")
    with pytest.raises(KerasVersionError, match=r"kfitx's loop \(building the model\)"):
        _keras.symbolic_build(object(), batch=None)


def test_keras_release_is_major_and_minor():
    assert versions.keras_release() == tuple(int(p) for p in keras.__version__.split(".")[:2])
