"""The version matrix: kfitx's default test run on the oldest and the newest Keras / TensorFlow pair it supports.

    nox -l                                  # the sessions
    nox                                     # the newest pair (what CI runs)
    nox -s "tests(oldest)"                  # the oldest pair
    nox -s "tests(oldest)" -- tests/test_keras_boundary.py   # arguments after -- go to pytest
    nox -s nightly                          # the newest keras-nightly, with TensorFlow, JAX and torch
    KFITX_KERAS_CHECKOUT=PATH nox -s nightly  # ... and Keras's trainer suite from a checkout of the same date
    nox -s keras_main -- PATH               # Keras's main branch (a git checkout at PATH) on the newest pair

Each pair pins Keras, TensorFlow, JAX and keras-tuner; ``pyproject.toml`` and ``kfitx._keras.TESTED`` state the
range between the pairs (``tests/test_keras_versions.py`` checks that they agree with each other and with
``PAIRS``; the highest Keras minor the range admits must be one a session runs: a pair's, or
``NIGHTLY_PASSED``'s). Sessions install into ``.nox/`` and are reused with ``-R``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import nox

#: Each pair: what it pins. "oldest": Keras 3.12 with the TensorFlow and JAX its own CI ran (2.18, 0.5), and
#: the keras-tuner before the newest; "newest": what ``pip install kfitx`` installs today.
PAIRS = {
    "oldest": {"keras": "3.12.0", "tensorflow-cpu": "2.18.1", "jax": "0.5.0", "keras-tuner": "1.4.7"},
    "newest": {"keras": "3.15.1", "tensorflow-cpu": "2.21.0", "jax": "0.10.2", "keras-tuner": "1.4.8"},
}
EXTRAS = ".[cpu,jax,test,examples,plot]"

#: The ``nightly`` session: the newest ``keras-nightly`` with these. ``NIGHTLY_PASSED`` is the newest nightly the
#: session has passed with; the range in ``pyproject.toml`` admits its minor (a development version of the next
#: release) and no later one, so a Keras minor no run has passed is never declared tested.
NIGHTLY = {"tensorflow-cpu": "2.21.0", "jax": "0.10.2", "keras-tuner": "1.4.8", "torch": "2.14.1"}
NIGHTLY_PASSED = "3.16.0.dev2026102704"

nox.options.sessions = ["tests(newest)"]


def _install(session: nox.Session, pair: str) -> None:
    session.install("-e", EXTRAS, *(f"{name}=={version}" for name, version in PAIRS[pair].items()))


@nox.session(python="3.11")
@nox.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def tests(session: nox.Session, pair: str) -> None:
    """The default test run (``pytest``: not the slow tests) on one pair."""
    _install(session, pair)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def nightly(session: nox.Session) -> None:
    """The newest ``keras-nightly`` (``nox -s nightly``; ``-- VERSION`` pins one): the boundary's pins and the
    version checks, the conformance kit for each built-in on TensorFlow, JAX and torch, the torch
    DistributedDataParallel test, then Keras's trainer suite through each strategy on each backend (the nightly
    wheel has no tests: ``KFITX_KERAS_CHECKOUT=PATH`` names a Keras checkout to take them from)."""
    session.install("-e", ".[cpu,jax,test]", *(f"{name}=={version}" for name, version in NIGHTLY.items()))
    session.run("python", "-m", "pip", "uninstall", "--yes", "keras")  # keras-nightly installs the same package
    nightly_version = f"keras-nightly=={session.posargs[0]}" if session.posargs else "keras-nightly"
    session.install("--pre", "--upgrade", nightly_version)
    # torch's CUDA wheel brings triton, which crashes a process that imported TensorFlow first (the boundary's
    # pins import both); training on the CPU does not use it.
    session.run("python", "-m", "pip", "uninstall", "--yes", "triton", success_codes=[0, 1])
    # keras-nightly ships without Keras's tests; KFITX_KERAS_CHECKOUT (a checkout of Keras's main branch of the
    # nightly's date) gives the trainer suite, copied into the installed package.
    checkout = os.environ.get("KFITX_KERAS_CHECKOUT")
    if checkout:
        installed = session.run("python", "-c", "import keras, os; print(os.path.dirname(keras.__file__))",
                                silent=True, env={"KERAS_BACKEND": "jax"}).strip().splitlines()[-1]
        shutil.copy(os.path.join(checkout, "keras", "src", "trainers", "trainer_test.py"),
                    os.path.join(installed, "src", "trainers", "trainer_test.py"))
    _against_this_keras(session, backends=("tensorflow", "jax", "torch"), trainer_suite=bool(checkout))
    session.run("python", "-m", "pytest", "-m", "slow", "tests/test_distribute.py", "-k", "torch_ddp",
                env={"KFITX_IGNORE_UNTESTED_VERSIONS": "1"})


@nox.session(python="3.11", name="keras_main")
def keras_main(session: nox.Session) -> None:
    """The newest pair with Keras built from a checkout of its main branch (``nox -s keras_main -- PATH``):
    the boundary's pins, the conformance kit for each built-in, then Keras's trainer suite through each strategy
    on TensorFlow and JAX (``KFITX_ROUTE_STRATEGY``)."""
    if not session.posargs:
        session.error("Give the path of a Keras checkout: nox -s keras_main -- PATH")
    _install(session, "newest")
    with tempfile.TemporaryDirectory() as build:
        source = os.path.join(build, "keras")
        shutil.copytree(session.posargs[0], source, ignore=shutil.ignore_patterns(".git"))
        _static_version(source)
        session.install("--no-deps", source)
    _against_this_keras(session, backends=("tensorflow", "jax"))


def _against_this_keras(session: nox.Session, backends: tuple[str, ...], trainer_suite: bool = True) -> None:
    """The checks a Keras outside the pairs gets: the boundary's pins and the version checks, the kit for each
    built-in on each backend, and Keras's trainer suite through each strategy on each backend (its outcome is
    printed, as plain fit's own count is the measure: ``success_codes`` lets the session go on)."""
    quiet = {"KFITX_IGNORE_UNTESTED_VERSIONS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    session.run("python", "-m", "pytest", "tests/test_keras_boundary.py", "tests/test_keras_versions.py", env=quiet)
    for backend in backends:
        for name in ("memory", "generator", "loop", "auto"):
            session.run("kfitx", "check", name, env={**quiet, "KERAS_BACKEND": backend})
    if not trainer_suite:
        session.log("Keras's trainer suite skipped: this Keras ships without its tests (set KFITX_KERAS_CHECKOUT)")
        return
    for backend in backends:
        for strategy in ("", "memory", "generator", "loop"):  # "": plain fit's count
            session.run("python", "-m", "pytest", "-p", "keras_trainer_route", "--pyargs",
                        "keras.src.trainers.trainer_test", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                        env={**quiet, "KERAS_BACKEND": backend, "KFITX_ROUTE_STRATEGY": strategy,
                             "PYTHONPATH": "tests"}, success_codes=[0, 1])


def _static_version(source: str) -> None:
    """Keras's ``pyproject.toml`` reads its version by importing the package, which fails outside its own build
    script (``pip_build.py``); the copy gets the version written in, marked as a development version."""
    import datetime
    import re

    version_file = os.path.join(source, "keras", "src", "version.py")
    with open(version_file) as f:
        text = f.read()
    version = re.search(r'__version__ = "([^"]+)"', text).group(1)  # type: ignore[union-attr]
    if "dev" not in version:
        version += f".dev{datetime.date.today():%Y%m%d}"
    with open(version_file, "w") as f:
        f.write(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', text))
    pyproject = os.path.join(source, "pyproject.toml")
    with open(pyproject) as f:
        text = f.read()
    text = text.replace('dynamic = ["version"]', f'version = "{version}"')
    text = re.sub(r"\[tool\.setuptools\.dynamic\]\nversion = [^\n]+\n", "", text)
    with open(pyproject, "w") as f:
        f.write(text)
