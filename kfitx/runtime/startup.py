"""A quiet start: TensorFlow's C++ start-up lines hidden unless the user asks for them.

TensorFlow prints INFO lines when it is imported (``oneDNN custom operations are
on``, ``cpu_feature_guard``, XLA service lines). Most obey ``TF_CPP_MIN_LOG_LEVEL``;
the ones written before absl's logging starts do not, so while TensorFlow is
imported, file descriptor 2 goes to a temporary file and every line that is not
such a start-up notice is written back to stderr afterwards. A user who set
``TF_CPP_MIN_LOG_LEVEL`` (``=0`` shows everything) gets TensorFlow as it is.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile

__all__ = ["quiet_start"]

#: absl's INFO lines (``I0000 00:00:... port.cc:153] ...``) and its note that logging is not set up yet.
_STARTUP = re.compile(rb"^(I\d{4} \d\d:\d\d:\S+\s+\d+ \S+\] |WARNING: All log messages before absl::InitializeLog)")


def quiet_start() -> None:
    """Imports TensorFlow with its start-up lines hidden, unless ``TF_CPP_MIN_LOG_LEVEL`` is set.

    Does nothing when TensorFlow is already imported or Keras's backend is not
    TensorFlow. Called by the ``kfitx`` command and the examples before they import Keras.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # INFO and WARNING lines of TensorFlow's C++ logging
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module("tensorflow")
        except ImportError:  # no TensorFlow installed: Keras will say so itself
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured if not _STARTUP.match(line)]
    if kept:
        os.write(2, b"".join(kept))  # back where they were going
