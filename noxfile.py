"""The version matrix: kfitx's default test run on the oldest and the newest Keras / TensorFlow pair it supports.

    nox -l                                  # the sessions
    nox                                     # the newest pair (what CI runs)
    nox -s "tests(oldest)"                  # the oldest pair
    nox -s "tests(oldest)" -- tests/test_keras_boundary.py   # arguments after -- go to pytest
    nox -s keras_main -- PATH               # Keras's main branch (a git checkout at PATH) on the newest pair

Each pair pins Keras, TensorFlow, JAX and keras-tuner; ``pyproject.toml`` and ``kfitx._keras.TESTED`` state the
range between the pairs (``tests/test_keras_versions.py`` checks that they agree with each other and with
``PAIRS``). Sessions install into ``.nox/`` and are reused with ``-R``.
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

nox.options.sessions = ["tests(newest)"]


def _install(session: nox.Session, pair: str) -> None:
    session.install("-e", EXTRAS, *(f"{name}=={version}" for name, version in PAIRS[pair].items()))


@nox.session(python="3.11")
@nox.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def tests(session: nox.Session, pair: str) -> None:
    """The default test run (``pytest``: not the slow tests) on one pair."""
    _install(session, pair)
    session.run("python", "-m", "pytest", *session.posargs)


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
    session.run("python", "-m", "pytest", "tests/test_keras_boundary.py", "tests/test_keras_versions.py")
    for name in ("memory", "generator", "loop", "auto"):
        session.run("kfitx", "check", name)
    for backend in ("tensorflow", "jax"):
        for strategy in ("memory", "generator", "loop"):
            session.run("python", "-m", "pytest", "-p", "keras_trainer_route", "--pyargs",
                        "keras.src.trainers.trainer_test", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                        env={"KERAS_BACKEND": backend, "KFITX_ROUTE_STRATEGY": strategy, "PYTHONPATH": "tests",
                             "TF_CPP_MIN_LOG_LEVEL": "3"}, success_codes=[0, 1])


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
