"""Ctrl-C during a fit with a worker thread or process: control returns within seconds, no worker left.

The fit runs in a child Python (SIGINT is delivered to it as a terminal would),
which prints a line once training has started; the test then interrupts it. The
child catches the ``KeyboardInterrupt`` around ``kfitx.fit``, as a notebook or a
script's ``try`` would, and reports when it got control back and whether a kfitx
thread or worker process is left. A CPU-bound process runs beside it on one core
the whole time: a user presses Ctrl-C when the machine is busy.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    # Ctrl-C as a terminal gives it: a process started in the background of a shell without job
    # control (CI, `nohup cmd &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np, keras, kfitx, psutil

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
    try:
        kfitx.fit(model, slow, strategy="generator", steps_per_epoch=100000, epochs=1, verbose=0,
                  use_multiprocessing=sys.argv[1] == "process", callbacks=[Started()])
    except KeyboardInterrupt:
        back = time.monotonic()
        threads = [t.name for t in threading.enumerate() if t.name.startswith("kfitx") and t.is_alive()]
        children = [p.pid for p in psutil.Process().children(recursive=True)
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        print(f"interrupted {back!r} threads={threads} children={children}", flush=True)
        raise
""")

def _line(child: subprocess.Popen, until: float) -> str:
    """The child's next line of output, or ``""`` once ``until`` (time.monotonic) has passed: never a wait without end."""
    while time.monotonic() < until:
        ready, _, _ = select.select([child.stdout], [], [], 0.2)
        if ready:
            return child.stdout.readline()
        if child.poll() is not None:
            return child.stdout.readline()
    return ""


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_ctrl_c_returns_within_seconds_and_leaves_no_worker(mode, tmp_path, busy_core):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 180
        line = ""
        while "training" not in line and time.monotonic() < deadline and child.poll() is None:
            line = _line(child, deadline)
        assert "training" in line, child.stderr.read() if child.poll() is not None else "no start within 180 s"
        assert busy_core.poll() is None  # the machine was busy all along
        workers = [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        assert (mode == "process") == bool(workers), workers
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        report = _line(child, started + 60)  # the child's own report, once the fit returned control to it
        child.wait(timeout=120)  # the parent; its pipes stay open while a worker that kept them lives
        alive = [pid for pid in workers if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        err = child.stderr.read()
        assert not alive, f"worker process(es) {alive} outlived the fit"
        assert child.returncode != 0
        assert "KeyboardInterrupt" in err, err[-2000:]
        assert report.startswith("interrupted "), (report, err[-2000:])
        back = float(report.split()[1]) - started  # time.monotonic is one clock for the whole machine
        assert back < 10, f"took {back:.1f} s to return control after Ctrl-C"
        assert "threads=[] children=[]" in report, report  # nothing left once kfitx.fit has raised
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
