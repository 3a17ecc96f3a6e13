"""One tuner id's end on a Ray node: the actor that runs the chief's or a worker's process there.

``kfitx tune --ray`` makes :class:`Host` a Ray actor (:mod:`kfitx.search.launch.ray_supervisor`); Ray places it
and holds its resources. It runs the same process ``kfitx tune`` runs on one host
(``python -m kfitx.search.launch.runner SCRIPT ARGS``, in the command's working directory), so the
script, keras-tuner's gRPC protocol and every file of the search are the same with and without Ray.

* The process gets SIGKILL when the actor ends, however it ends (``PR_SET_PDEATHSIG``): nothing
  outlives a lost actor or a ``ray.kill``.
* Its status file stays on the node (:mod:`kfitx.search.launch.status`); :meth:`Host.poll` returns it
  with the exit status and what the process printed since the last poll, in one call.
* Importing this module imports no Ray: the class is a plain one, tested without a cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

from kfitx.errors import TuneError, message
from kfitx.search.launch import ray_plan, status
from kfitx.search.launch.processes import Process, stop

__all__ = ["Host"]


def _ray_context(gpus: bool) -> tuple[str, list[int | str] | None]:
    """This node's Ray id and the GPUs Ray gave the actor (``("", None)`` outside a Ray worker)."""
    try:
        import ray
    except ImportError:  # pragma: no cover - the actor runs only where Ray is
        return "", None
    if not ray.is_initialized():
        return "", None
    return ray.get_runtime_context().get_node_id(), (list(ray.get_gpu_ids()) if gpus else None)


class Host:
    """Runs one tuner id's process on this node, again when told (recycling, a death), and stops it.

    Args:
        name: The tuner id (``chief``, ``worker-<i>``): the name of its status file.
        gpus: Whether the process gets the actor's GPUs (workers; the chief gets none).
    """

    def __init__(self, name: str, gpus: bool = True) -> None:
        self.name = name
        self.gpus = gpus
        self.control = tempfile.mkdtemp(prefix="kfitx-tune-node-")
        self.prelog = os.path.join(self.control, f"{name}.start.log")
        self.process: Process | None = None
        self.sent = 0  # bytes of the process's own output already returned by poll()

    def where(self) -> dict[str, object]:
        """The node: its Ray id, host name and this actor's pid."""
        return {"node": _ray_context(False)[0], "host": socket.gethostname(), "pid": os.getpid()}

    def start(self, args: list[str], overlay: dict[str, str], cwd: str) -> int:
        """Starts ``python -m kfitx.search.launch.runner ARGS`` in ``cwd``; returns its pid.

        Raises:
            TuneError: ``cwd`` or the script (``args[0]``) is not on this node.
        """
        missing = [p for p, ok in ((cwd, os.path.isdir(cwd)), (args[0], os.path.isfile(args[0]))) if not ok]
        if missing:
            raise TuneError(message("the working directory and the script at the same path on every node of the "
                                    "Ray cluster (a shared file system), as the search directory must be",
                                    f"node {socket.gethostname()} has no {' and no '.join(missing)}",
                                    "Mount the same file system at the same path on every node, and run "
                                    "kfitx tune from there."))
        self.stop(0.0)
        node, gpu_ids = _ray_context(self.gpus)
        env = ray_plan.node_env(os.environ, overlay, self.control, node, gpu_ids)
        status.write(self.control, self.name, state="starting", pid=None)
        self.process = Process([sys.executable, "-m", "kfitx.search.launch.runner", *args], env, self.prelog,
                               cwd=cwd, die_with_parent=True)
        return self.process.pid

    def write(self, values: dict[str, object]) -> None:
        """Merges ``values`` into the process's status file."""
        status.write(self.control, self.name, **values)

    def poll(self) -> tuple[int | None, dict[str, object], str]:
        """The process's exit status (``None``: running), its status file, and its output since the last poll."""
        code = None if self.process is None else self.process.poll()
        report = status.read(self.control, self.name)
        text = ""
        if os.path.exists(self.prelog):
            with open(self.prelog, "rb") as f:
                f.seek(self.sent)
                data = f.read()
            self.sent += len(data)
            text = data.decode("utf-8", "replace")
        return code, report, text

    def signal(self, sig: int) -> None:
        if self.process is not None:
            self.process.signal(sig)

    def stop(self, grace: float) -> None:
        """Ends the process, if it runs: SIGTERM to its group, SIGKILL ``grace`` seconds later."""
        if self.process is not None:
            stop([self.process], grace)

    def close(self, grace: float) -> None:
        """Ends the process and removes the status folder (before the actor is killed)."""
        self.stop(grace)
        shutil.rmtree(self.control, ignore_errors=True)
