"""Which Keras and keras-tuner kfitx is tested with, and what happens outside them (part of the boundary,
:mod:`kfitx._keras`).

* :data:`TESTED`: the ranges ``pyproject.toml`` states and the version matrix (``noxfile.py``) runs;
* :func:`warn_if_untested`: called when kfitx is imported; a Keras or keras-tuner outside its range is a
  warning, once per process, naming the range and how to silence it -- never a refusal;
* :func:`internal`: a private Keras (or keras-tuner) module attribute, or a :class:`kfitx.errors.KerasVersionError`
  naming the installed version and the kfitx feature that needs it, instead of the ``AttributeError`` or
  ``ImportError`` from Keras's private modules;
* :func:`keras_release`: the installed Keras's ``(major, minor)``, where an internal has one implementation
  per Keras version (each pinned in ``tests/test_keras_boundary.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

from kfitx.errors import KerasVersionError, UntestedVersionWarning, message

#: The versions kfitx is tested with: ``pyproject.toml`` states the same ranges, ``noxfile.py`` runs their ends
#: (Keras 3.12 and 3.15.1 in its pairs, and 3.16 as the newest ``keras-nightly`` in its ``nightly`` session).
TESTED = {"keras": ">=3.12,<3.17", "keras-tuner": ">=1.4.7,<1.5"}

#: Set to 1 to silence the warning about a Keras or keras-tuner outside :data:`TESTED`.
SILENCE = "KFITX_IGNORE_UNTESTED_VERSIONS"

_warned = False


def installed_version(distribution: str) -> str | None:
    """The installed version of ``keras`` or ``keras-tuner``, without importing it (Keras imports its backend):
    the imported module's ``__version__`` when it is imported already, else the package metadata (a nightly
    Keras is the ``keras-nightly`` distribution). ``None`` when it is not installed."""
    import importlib.metadata

    module = sys.modules.get(distribution.replace("-", "_"))
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return str(module.__version__)
    for name in (distribution, f"{distribution}-nightly"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def untested(distribution: str, version: str) -> bool:
    """Whether ``version`` of ``distribution`` lies outside :data:`TESTED` (a pre-release inside the range
    counts as inside it: ``3.16.0.dev`` is tested when 3.16 is)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return not SpecifierSet(TESTED[distribution]).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True


def warn_if_untested() -> None:
    """Warns, once per process, when the installed Keras or keras-tuner lies outside :data:`TESTED`."""
    global _warned
    if _warned or os.environ.get(SILENCE, "") not in ("", "0"):
        return
    found = {name: installed_version(name) for name in TESTED}
    outside = {name: version for name, version in found.items() if version is not None and untested(name, version)}
    if not outside:
        return
    _warned = True
    received = ", ".join(f"{name} {version}" for name, version in outside.items())
    tested = ", ".join(f"{name}{TESTED[name]}" for name in outside)
    install = " ".join(f"'{name}{TESTED[name]}'" for name in outside)
    warnings.warn(message(
        f"kfitx is tested with {tested}; it reaches into Keras's internals, which may have changed in "
        "this version (a feature whose internal is missing raises kfitx.errors.KerasVersionError)",
        received, f"Install a tested version (pip install {install}), or set {SILENCE}=1 to silence this "
        "warning."), UntestedVersionWarning, stacklevel=3)


def keras_release() -> tuple[int, int]:
    """The installed Keras's ``(major, minor)``: ``(3, 16)`` for 3.16.0 and its development versions."""
    import keras
    from packaging.version import Version

    release = Version(keras.__version__).release
    return release[0], release[1] if len(release) > 1 else 0


def internal(module: str, name: str, feature: str) -> Any:
    """``module.name`` (a Keras or keras-tuner internal; ``name=""``: the module itself), or a
    :class:`KerasVersionError` naming the installed version and ``feature`` (the kfitx feature that needs it)
    when this version has no such module or attribute.

    Only the look-up is guarded: what the internal raises when called is its own error.
    """
    library = "keras-tuner" if module.startswith("keras_tuner") else "keras"
    try:
        found = importlib.import_module(module)
        for part in filter(None, name.split(".")):  # no name: the module itself
            found = getattr(found, part)
        return found
    except (ImportError, AttributeError) as error:
        raise missing(library, f"{module}.{name}".rstrip("."), feature) from error


def attribute(obj: object, name: str, feature: str) -> Any:
    """``obj.name``, a private attribute Keras keeps on a model or callback, or a :class:`KerasVersionError`."""
    try:
        return getattr(obj, name)
    except AttributeError as error:
        raise missing("keras", f"{type(obj).__name__}.{name}", feature) from error


def missing(library: str, what: str, feature: str) -> KerasVersionError:
    """The error for an internal this ``library`` version does not have."""
    version = installed_version(library) or "(not installed)"
    return KerasVersionError(message(
        f"{feature} needs {library}'s internal `{what}`, which {library} {version} does not have (kfitx is "
        f"tested with {library}{TESTED[library]})", f"{library} {version}",
        f"Install a tested version: pip install '{library}{TESTED[library]}'."))
