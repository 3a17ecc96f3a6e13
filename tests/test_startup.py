"""A quiet start: TensorFlow's C++ start-up lines hidden, other stderr output kept."""

import os
import re
import subprocess
import sys

SCRIPT = ("import sys, kfitx; kfitx.quiet_start(); import keras; "
          "print('after', file=sys.stderr); print(keras.backend.backend())")


def run(env_update):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_update, KFITX_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)


def test_no_tensorflow_start_up_line_and_other_stderr_output_is_kept():
    proc = run({})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tensorflow"
    lines = proc.stderr.splitlines()
    assert lines == ["after"], lines  # nothing from TensorFlow's C++ logging before our own line


def test_a_user_who_set_the_log_level_gets_tensorflow_as_it_is():
    proc = run({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == "after"
    # not filtered: TensorFlow's absl-formatted start-up lines (oneDNN, cpu_feature_guard) reach stderr
    # absl's format (TensorFlow 2.19 and later: "I0000 ...] "), or TensorFlow 2.18's ("2026-... : I ...] ")
    assert re.search(r"^(I\d{4} |\d{4}-\d\d-\d\d [\d:.]+: I ).*\] ", proc.stderr, re.M), proc.stderr
