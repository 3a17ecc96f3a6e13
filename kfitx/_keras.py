"""Every use of a Keras or keras-tuner internal, in one place.

kfitx otherwise calls only public API. Each function here wraps one private
attribute or module of a library kfitx depends on, and ``tests/test_keras_boundary.py``
pins each one, so that an upgrade which moves it fails there with a clear message
rather than deep inside a fit.

Tested with the versions in ``TESTED`` (also stated in ``pyproject.toml``).
"""

from __future__ import annotations

TESTED = {"keras": ">=3.15,<3.16", "keras-tuner": ">=1.4.8,<1.5"}

# --- Keras internals -------------------------------------------------------

# --- keras-tuner internals -------------------------------------------------
