"""``kfitx plugin new NAME``: a strategy plugin package, ready to install, check and edit.

:func:`new_plugin` writes ``kfitx-NAME/`` with a ``pyproject.toml`` declaring the ``kfitx`` entry
point, one module holding a working strategy (``model.fit`` on whatever data ``kfitx.fit``
accepts, grouped as the fit plan decides), a test that runs the conformance kit on it, a
``conftest.py`` and a README. ``pip install -e ./kfitx-NAME`` then shows it in ``kfitx list``, and
``kfitx check NAME`` and ``pytest`` in the package pass as written.
"""

from __future__ import annotations

import importlib.metadata
import re
import textwrap
from pathlib import Path

from kfitx.errors import OptionError, message

__all__ = ["new_plugin"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "kfitx-{name}"
version = "0.1.0"
description = "A kfitx strategy plugin: {name}."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["kfitx>={kfitx_version}"]

[project.optional-dependencies]
test = ["pytest>=7"]

# The line that makes this a kfitx plugin: kfitx finds the strategy through this entry point.
[project.entry-points.kfitx]
{name} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
filterwarnings = [
    "ignore::DeprecationWarning:tensorflow.*",
    "ignore::DeprecationWarning:keras.*",
    "ignore::DeprecationWarning:keras_tuner.*",
]
'''

_MODULE = '''\
"""kfitx-{name}: the ``{name}`` strategy for kfitx.

Edit :meth:`{cls}.fit` to train your way; ``kfitx check {name}`` and ``pytest`` tell you whether
it still keeps kfitx's fit contract. Guide: kfitx's docs/plugins.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import kfitx

if TYPE_CHECKING:
    import keras

__all__ = ["{cls}", "kfitx_strategies"]


class {cls}(kfitx.Strategy):
    """``model.fit`` on the data as kfitx's plan hands it over (the place to start editing)."""

    name = "{name}"  # what users pass as kfitx.fit(..., strategy="{name}")
    description = "{name}: model.fit as the fit plan says"  # one line in `kfitx list`
    defaults = {{"steps_per_execution": "auto"}}  # the options users may pass, with their defaults
    # model.fit trains on every backend; declare one only once `KERAS_BACKEND=... kfitx check {name}` passes.
    backends = ("tensorflow", "jax", "torch")

    def supports(self, source: kfitx.data.Source) -> str | None:
        """``None`` when this strategy trains on ``source``, else one sentence saying why not and what to use."""
        return None

    def fit(self, model: keras.Model, plan: kfitx.FitPlan) -> keras.callbacks.History:
        """Trains ``model`` as ``plan`` says (data, epochs, callbacks, validation) and returns the History."""
        train = plan.train_input(passthrough=True)  # what model.fit reads best for this data
        validation = plan.validation_input(passthrough=True)  # None without validation data
        with plan.grouped(model):  # steps per compiled call, as the plan decided
            return model.fit(**plan.fit_kwargs(train, validation))


@kfitx.hookimpl  # without it kfitx never calls the hook (and says so)
def kfitx_strategies() -> list[type[kfitx.Strategy]]:
    return [{cls}]
'''

_CONFTEST = '''\
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
'''

_TEST = '''\
"""kfitx-{name} keeps kfitx's fit contract: the conformance kit, one test per rule."""

import kfitx
from kfitx.testing import StrategyConformance, tiny_data, tiny_model
from {module} import {cls}


class TestConformance(StrategyConformance):
    strategy = {cls}
    # options = {{"steps_per_execution": 1}}                   # options to check it with
    # tolerance = None                                        # no claim to train to model.fit's weights
    # make_source = staticmethod(lambda x, y: ...)            # data of its own (labels, files, ...)
    # build_model = staticmethod(lambda seed: ...)            # a model compiled for that data


def test_it_trains_through_kfitx_fit():
    x, y = tiny_data()
    history = kfitx.fit(tiny_model(), x, y, strategy={cls}, epochs=2, verbose=0)
    assert history.kfitx["strategy"] == "{name}" and len(history.epoch) == 2
'''

_README = '''\
# kfitx-{name}

A [kfitx](https://pypi.org/project/kfitx/) strategy plugin: `{name}`.

```bash
pip install -e .          # installs the `kfitx` entry point
kfitx list                # {name} ... provided by kfitx-{name} 0.1.0
kfitx check {name}        # the conformance kit: every rule of kfitx's fit contract
python -m pytest          # the same kit, one test per rule, plus your own tests
```

Use it:

```python
history = kfitx.fit(model, x, y, strategy="{name}", epochs=5)
```

or in a keras-tuner search: `kfitx.tuner.StrategyHyperModel(build_model, strategies=["memory", "{name}"])`.

Edit `{module}.py`; kfitx's docs/plugins.md is the guide (the fit plan, `kfitx.fit_loop`,
options, `supports()`, and `kfitx check --source/--model/--option` for a strategy that needs its
own data or model).
'''


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name)) + "Strategy"


def _running_version() -> str:
    """``major.minor`` of the kfitx that writes the package (what its kit and hooks need), else ``0.2``."""
    try:
        version = importlib.metadata.version("kfitx")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree
        return "0.2"
    parts = re.findall(r"\d+", version)[:2]
    return ".".join(parts) if len(parts) == 2 else "0.2"


def new_plugin(name: str, directory: str | Path = ".", kfitx_version: str | None = None) -> Path:
    """Writes the package ``kfitx-NAME/`` into ``directory``; returns its path.

    Args:
        name: The strategy's name (lower case letters, digits, ``-`` or ``_``; a letter first).
        directory: Where to write the package folder.
        kfitx_version: The lowest kfitx version its ``pyproject.toml`` asks for (default: this
            kfitx's ``major.minor``).

    Raises:
        OptionError: the name is not a valid strategy name, or the folder exists already.
    """
    if not _NAME.fullmatch(name):
        raise OptionError(message("a plugin name of lower case letters and digits, words joined by '-' or '_', "
                                  "a letter first (e.g. 'mixup', 'npz-shards')", repr(name),
                                  "Choose a name like that: it is the strategy's name, kfitx-NAME the package's."))
    root = Path(directory) / f"kfitx-{name}"
    if root.exists():
        raise OptionError(message(f"a folder {root} that does not exist yet", "it exists",
                                  "Remove it, or write the package elsewhere with --directory."))
    module = "kfitx_" + name.replace("-", "_")
    values = {"name": name, "module": module, "cls": _class_name(name),
              "kfitx_version": kfitx_version or _running_version()}
    files = {
        "pyproject.toml": _PYPROJECT, f"{module}.py": _MODULE, "README.md": _README,
        "tests/conftest.py": _CONFTEST, f"tests/test_{module.removeprefix('kfitx_')}.py": _TEST,
    }
    for path, template in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(template.format(**values)))
    return root
