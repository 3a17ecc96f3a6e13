"""``kfitx tune`` in a notebook: :func:`launch` runs a search script as keras-tuner's chief plus workers.

The code lives in :mod:`kfitx.search.launch` (this module is its public face).
Importing it imports neither TensorFlow nor keras-tuner.
"""

from __future__ import annotations

from kfitx.search.launch import is_chief, launch

__all__ = ["is_chief", "launch"]
