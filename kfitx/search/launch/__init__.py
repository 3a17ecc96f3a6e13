"""``kfitx tune``: an unchanged keras-tuner search script as keras-tuner's chief plus N worker processes.

Separation of concerns:

* :mod:`kfitx.search.launch.workers` -- ids, ports, GPUs and each process's environment (pure functions);
* :mod:`kfitx.search.launch.supervisor` -- the processes: start, watch, recycle, replace, stop;
* :mod:`kfitx.search.launch.ray_supervisor` -- the same, as actors on a Ray cluster (``--ray``;
  :mod:`~kfitx.search.launch.ray_plan` decides their resources, :mod:`~kfitx.search.launch.ray_actor`
  runs on the nodes);
* :mod:`kfitx.search.launch.runner` -- what runs inside each of them around the user's script;
* :mod:`kfitx.search.launch.status` -- the files they talk through;
  :mod:`kfitx.search.launch.progress` -- one line per trial.

:func:`launch` is the in-process entry point (notebooks); ``kfitx tune`` on the
command line is the same thing. Importing this package imports neither
TensorFlow nor keras-tuner.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kfitx.errors import TuneError, message

if TYPE_CHECKING:
    from kfitx.search.launch.options import TuneOptions
    from kfitx.search.launch.supervisor import TuneResult

__all__ = ["is_chief", "launch", "run"]


def is_chief() -> bool:
    """Whether this process's result counts: ``True`` in keras-tuner's chief and outside a distributed search.

    Under ``kfitx tune`` the code after ``tuner.search(...)`` runs only in the chief
    (workers exit when their search ends); a script can also guard work meant for
    one process (saving the best model, printing a table) with ``if kfitx.tuner.is_chief():``.
    Same rule as keras-tuner's: distributed when ``KERASTUNER_ORACLE_IP`` is set, and the
    chief is the process whose ``KERASTUNER_TUNER_ID`` contains ``chief``.
    """
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return True
    return "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def _script_for(target: Callable[[], object], folder: str) -> str:
    """A script calling ``target()``: by import when its module is importable, else from its source."""
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
    if module and module != "__main__" and "<locals>" not in name:
        body = f"import importlib\n\ngetattr(importlib.import_module({module!r}), {name!r})()\n"
    else:
        try:
            source = inspect.getsource(target)
        except (OSError, TypeError) as err:
            raise TuneError(message("a script path, or a function kfitx can run in fresh processes (defined in "
                                    "an importable module, or in a notebook cell)", repr(target),
                                    "Write the search to a .py file and pass its path.")) from err
        if "<locals>" in name or getattr(target, "__closure__", None):
            raise TuneError(message("a top-level function (it runs in fresh processes, without this one's "
                                    "variables)", name, "Define it at the top level, with its imports inside."))
        body = inspect.cleandoc("\n" + source) + f"\n\n\n{target.__name__}()\n"
    path = os.path.join(folder, "kfitx_search.py")
    with open(path, "w") as f:
        f.write(body)
    return path


def run(options: TuneOptions, handle_signals: bool = False) -> TuneResult:
    """Runs the search ``options`` describe: processes on this host, or actors on a Ray cluster (``options.ray``)."""
    from kfitx.search.launch import supervisor

    if options.ray is None:
        from kfitx.search.launch.ray_plan import check_options

        check_options(options)  # Ray's options without --ray
        return supervisor.run(options, handle_signals)
    from kfitx.search.launch.ray_supervisor import RaySupervisor

    return supervisor.run(options, handle_signals, RaySupervisor)


def launch(target: str | Callable[[], object], args: Sequence[str] = (), *, workers: int | None = None,
           trials_per_worker: int | None = None, port: int | None = None, bind: str = "127.0.0.1",
           chief: str | None = None, name: str | None = None, gpus_per_worker: float | None = None,
           max_deaths: int = 3, start_timeout: float = 600.0, time_budget: str | float | None = None,
           ray: str | None = None, cpus_per_worker: float | None = None,
           out: Callable[[str], None] | None = None) -> TuneResult:
    """Runs a keras-tuner search as ``kfitx tune`` does, from Python (a notebook, a script of yours).

    Args:
        target: A search script's path, or a function that builds the tuner and calls
            ``tuner.search``. A function runs in fresh processes: defined in a module it is
            imported from there; defined in a notebook, its source is run, so it must do its
            own imports and data loading inside.
        args: Command-line arguments for a script.
        workers: Worker processes on this host (default: one per core, or per GPU group).
        trials_per_worker: Trials before a worker process is replaced by a fresh one (0: never).
        port, bind: The chief's port (default: a free one) and the address it listens on.
        chief: ``HOST:PORT`` of a running search to join instead of starting one.
        name: Prefix of this host's worker ids when joining (default: the host name).
        gpus_per_worker: GPUs per worker where there are GPUs (default 1; with ``ray``, fractions share a
            device, and the default is 0 on a cluster without GPUs).
        max_deaths: Worker deaths one trial may cause before it is ended as FAILED, and
            deaths of the chief (each one restarted from the search's saved state) before the search stops.
        start_timeout: Seconds to wait for the chief to answer.
        time_budget: The search's wall-time budget (``"20m"``, ``"1h30m"``, seconds), counted from
            now and kept in the search directory: no trial starts once it is spent, running
            trials stop at their next epoch end, and the same call with a larger budget continues
            the search. Not with Hyperband.
        ray: Run the chief and the workers as actors on a Ray cluster: its address (what ``ray.init``
            takes: ``HOST:PORT``, ``auto``), or ``"local"`` to start one on this machine. Needs ``kfitx[ray]``.
        cpus_per_worker: With ``ray``, the CPUs each worker actor holds (default 1); by default as many
            workers as the cluster has room for.
        out: Where progress lines go (default ``print``).

    Returns:
        A :class:`kfitx.search.launch.supervisor.TuneResult` (search directory, seconds, processes started).

    Raises:
        TuneError: the search could not start or go on.
        OptionError: ``time_budget`` is not a duration.
    """
    from kfitx.search.budget import parse_duration
    from kfitx.search.launch.options import DEFAULT_RECYCLE_AFTER, TuneOptions

    folder = None
    try:
        if callable(target):
            folder = tempfile.mkdtemp(prefix="kfitx-launch-")
            script = _script_for(target, folder)
        elif isinstance(target, (str, os.PathLike)):
            script = os.fspath(target)
        else:
            raise TuneError(message("a script path or a function", type(target).__name__))
        options = TuneOptions(script=script, args=list(args), workers=workers,
                              trials_per_worker=DEFAULT_RECYCLE_AFTER if trials_per_worker is None
                              else trials_per_worker, port=port, bind=bind, chief=chief, name=name,
                              gpus_per_worker=gpus_per_worker, max_deaths=max_deaths, start_timeout=start_timeout,
                              capture_chief=True, ray=ray, cpus_per_worker=cpus_per_worker,
                              time_budget=None if time_budget is None else parse_duration(time_budget))
        if out is not None:
            options.out = out
        return run(options)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
