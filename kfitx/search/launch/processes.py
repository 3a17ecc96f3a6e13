"""Processes of a ``kfitx tune`` search, and what their deaths mean.

* :class:`Process` -- one ``subprocess.Popen`` in its own session (signals go to its whole group);
* :func:`check_syntax` -- a script that cannot run anywhere, said once before any process starts;
* :func:`stop` -- SIGTERM, then SIGKILL after a grace period, to each process group;
* :func:`describe_exit` -- ``killed by SIGKILL`` / ``exited with status 1``;
* :class:`Deaths` -- worker deaths counted per trial, so a trial that kills every worker
  running it is ended as FAILED after a limit instead of being retried forever
  (keras-tuner hands a returning tuner id its trial again and counts no deaths).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import IO, Protocol

from kfitx.errors import TuneError, message

__all__ = ["LOST", "Deaths", "Process", "check_syntax", "describe_exit", "stop", "tail"]


#: The "exit status" of a process whose Ray actor or node was lost: nobody saw how it ended.
LOST = -1000


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` / ``exited with status 1``, for messages."""
    if returncode == LOST:
        return "was lost with its Ray actor (the actor died, or its node left the cluster)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        extra = " (what the kernel's out-of-memory killer sends, too)" if name == "SIGKILL" else ""
        return f"killed by {name}{extra}"
    return f"exited with status {returncode}"


def check_syntax(script: str) -> None:
    """A script Python cannot parse fails in every process before any search: said once, before they start."""
    try:
        with open(script, "rb") as f:
            compile(f.read(), script, "exec", dont_inherit=True)
    except SyntaxError as err:
        where = f"{err.filename}, line {err.lineno}" + (f", column {err.offset}" if err.offset else "")
        shown = (err.text or "").rstrip()
        raise TuneError(message("the search script to be valid Python", f"{type(err).__name__}: {err.msg} at "
                                f"{where}" + (f": {shown.strip()}" if shown else ""),
                                "Fix that line, then run the command again.")) from None


class Deaths:
    """Deaths of worker processes per trial; a trial reaching ``limit`` is to be ended as FAILED."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise TuneError(message("`--max-deaths` must be at least 1", limit))
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.causes: dict[str, list[str]] = {}

    def add(self, trial_id: str, cause: str) -> bool:
        """Counts one death; whether the trial has now used up its ``limit``."""
        self.counts[trial_id] = self.counts.get(trial_id, 0) + 1
        self.causes.setdefault(trial_id, []).append(cause)
        return self.counts[trial_id] >= self.limit

    def failure(self, trial_id: str) -> str:
        causes = self.causes.get(trial_id, [])
        return (f"kfitx tune ended this trial as FAILED: {len(causes)} worker process(es) died running it "
                f"(last: {causes[-1] if causes else '?'}). A trial that kills its process every time "
                "(out of memory, a crash in native code) cannot finish; see its worker log.")


def tail(path: str | None, lines: int = 15) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 16384))
        text = f.read().decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """The child gets SIGKILL when the process that started it ends (Linux), however that one ends."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RunnerProcess(Protocol):
    """A runner process as the supervisor sees it: a :class:`Process` here, or one a Ray actor runs."""

    pid: int
    prelog: str | None

    def poll(self) -> int | None:
        """The exit code, or ``None`` while it runs."""

    def signal(self, sig: int) -> None:
        """Sends ``sig`` to the process (and what it started)."""


class Process:
    """One started process: ``subprocess.Popen`` in its own session, its pre-search output file."""

    def __init__(self, argv: list[str], env: dict[str, str], prelog: str | None, cwd: str | None = None,
                 die_with_parent: bool = False) -> None:
        self.prelog = prelog
        self._out: IO[bytes] | None = open(prelog, "ab") if prelog else None
        if prelog:
            env = {**env, "KFITX_TUNE_PRELOG": prelog}
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self._out, cwd=cwd,
                                      stderr=subprocess.STDOUT if self._out else None, start_new_session=True,
                                      preexec_fn=_die_with_parent if die_with_parent else None)
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None and self._out is not None:
            self._out.close()
            self._out = None
        return code

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # the whole group: data workers it forked go too
        except (ProcessLookupError, PermissionError):
            pass


def stop(processes: list[Process], grace: float) -> None:
    """Ends every process still running: SIGTERM to each group, SIGKILL to those alive ``grace`` seconds later."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in running:
        if p.poll() is None:
            p.signal(signal.SIGKILL)
    for p in running:
        try:
            p.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process in uninterruptible sleep
            pass
        p.poll()
