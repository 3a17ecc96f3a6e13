"""Ctrl-C during a fit with a worker thread or process: control returns within seconds, no worker left.

The fit runs in a child Python (SIGINT is delivered to it as a terminal would),
which prints a line once training has started; the test then interrupts it and
checks that it ends with ``KeyboardInterrupt`` in bounded time and that every
process it started is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

SCRIPT = textwrap.dedent("""
    import os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np, keras, kfitx

    def slow():
        rng = np.random.default_rng(0)
        while True:
            time.sleep(0.02)
            yield rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8)

    class Started(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                print("training", flush=True)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    kfitx.fit(model, slow, strategy="generator", steps_per_epoch=100000, epochs=1, verbose=0,
              use_multiprocessing=sys.argv[1] == "process", callbacks=[Started()])
""")


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_ctrl_c_returns_within_seconds_and_leaves_no_worker(mode, tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "training" not in line and time.monotonic() < deadline and child.poll() is None:
            line = child.stdout.readline()
        assert "training" in line, child.stderr.read() if child.poll() is not None else "no start within 120 s"
        workers = [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        assert (mode == "process") == bool(workers), workers
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)  # the parent; its pipes stay open while a worker that kept them lives
        seconds = time.monotonic() - started
        alive = [pid for pid in workers if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        err = child.stderr.read()
        assert not alive, f"worker process(es) {alive} outlived the fit"
        assert child.returncode != 0
        assert "KeyboardInterrupt" in err, err[-2000:]
        assert seconds < 10, f"took {seconds:.1f} s to return after Ctrl-C"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
