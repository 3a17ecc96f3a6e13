"""What each process of a ``kfitx tune`` search is given: ids, ports, devices, environment.

Pure functions (no TensorFlow, no keras-tuner), so every rule here is tested
without starting a process or owning a GPU:

* :func:`default_workers` -- how many workers when ``--workers`` is not given;
* :func:`worker_ids` -- keras-tuner tuner ids, unique across hosts;
* :func:`gpu_assignment` / :func:`visible_gpus` -- ``CUDA_VISIBLE_DEVICES`` per worker;
* :func:`worker_env` / :func:`chief_env` -- the whole environment of one process;
* :func:`free_port`, :func:`parse_address`, :func:`port_open` -- the chief's address.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping, Sequence

from kfitx.errors import TuneError, message

__all__ = [
    "CHIEF_ID",
    "ENV_CHIEF_RESTART",
    "ENV_CONTROL",
    "ENV_FAIL_CAUSE",
    "ENV_FAIL_TRIAL",
    "ENV_NODE",
    "ENV_RECYCLE_AFTER",
    "ENV_ROLE",
    "ENV_SEARCH_ID",
    "EXIT_FATAL",
    "EXIT_RECYCLE",
    "chief_env",
    "default_workers",
    "free_port",
    "gpu_assignment",
    "parse_address",
    "port_open",
    "usable_cores",
    "visible_gpus",
    "whole_gpus",
    "worker_env",
    "worker_ids",
]

#: keras-tuner's id of the chief (keras-tuner treats any id containing "chief" as the chief).
CHIEF_ID = "chief"
ENV_ROLE = "KFITX_TUNE_ROLE"  # "chief" or "worker"
ENV_CONTROL = "KFITX_TUNE_CONTROL"  # folder of the status files the supervisor reads
ENV_RECYCLE_AFTER = "KFITX_TUNE_RECYCLE_AFTER"  # trials per worker process before a fresh one
ENV_FAIL_TRIAL = "KFITX_TUNE_FAIL_TRIAL"  # trial id to end as FAILED (it killed workers too often)
ENV_FAIL_CAUSE = "KFITX_TUNE_FAIL_CAUSE"
ENV_CHIEF_RESTART = "KFITX_TUNE_CHIEF_RESTART"  # set in a chief started again after the last one died
ENV_SEARCH_ID = "KFITX_TUNE_SEARCH_ID"  # on Ray: the chief writes it into the marker, each worker checks it sees it
ENV_NODE = "KFITX_TUNE_NODE"  # on Ray: the node a process runs on, kept in each trial's record
#: Exit status of a worker that stops to be replaced by a fresh process (its trial stays assigned to its id).
EXIT_RECYCLE = 75
#: Exit status of a worker that met a configuration error (keras-tuner's ``FatalError``): the search stops.
EXIT_FATAL = 3


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers(cores: int, gpus: Sequence[str] = (), gpus_per_worker: int = 1) -> int:
    """One worker per GPU group where there are GPUs, else one per core.

    A small model's trial is mostly single-threaded Python work (building, tracing,
    callbacks), so one worker per core keeps every core busy; each worker's
    TensorFlow then gets ``cores // workers`` intra-op threads (see :func:`worker_env`),
    so the workers do not fight over the cores. With GPUs, one worker per
    ``gpus_per_worker`` devices.
    """
    if gpus:
        return max(1, len(gpus) // max(1, gpus_per_worker))
    return max(1, cores)


def visible_gpus(environ: Mapping[str, str] | None = None, timeout: float = 10.0) -> list[str]:
    """GPU ids to hand out: ``CUDA_VISIBLE_DEVICES`` if set (``""`` or ``-1``: none), else ``nvidia-smi -L``'s."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        value = environ["CUDA_VISIBLE_DEVICES"].strip()
        return [] if value in ("", "-1") else [part.strip() for part in value.split(",") if part.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out, re.M)]


def whole_gpus(gpus_per_worker: float | None) -> int:
    """``--gpus-per-worker`` on this host: whole devices (``None``: 1); fractions are for Ray's scheduler only."""
    if gpus_per_worker is None:
        return 1
    if gpus_per_worker < 1 or not float(gpus_per_worker).is_integer():
        raise TuneError(message("`--gpus-per-worker` must be a whole number of GPUs, at least 1, without --ray",
                                gpus_per_worker, "Give 1, 2, ...; on a Ray cluster (--ray) fractions such as "
                                "0.5 share a device."))
    return int(gpus_per_worker)


def gpu_assignment(workers: int, gpus: Sequence[str], gpus_per_worker: int = 1) -> list[list[str]]:
    """Devices of each worker: consecutive groups of ``gpus_per_worker``, round-robin over the GPUs.

    With fewer groups than workers, groups are shared round-robin (memory growth
    keeps the sharers from taking all of a device's memory up front).
    """
    if gpus_per_worker < 1:
        raise TuneError(message("`gpus_per_worker` must be at least 1", gpus_per_worker))
    if not gpus:
        return [[] for _ in range(workers)]
    if gpus_per_worker > len(gpus):
        raise TuneError(message(f"`--gpus-per-worker` must be at most the {len(gpus)} GPU(s) visible",
                                gpus_per_worker, "Lower it, or set CUDA_VISIBLE_DEVICES to more devices."))
    groups = [list(gpus[i:i + gpus_per_worker]) for i in range(0, len(gpus) - gpus_per_worker + 1, gpus_per_worker)]
    return [groups[i % len(groups)] for i in range(workers)]


def _id_part(text: str) -> str:
    part = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "host"
    return part.replace("chief", "chf")  # keras-tuner would take any id containing "chief" for the chief


def worker_ids(workers: int, name: str | None = None) -> list[str]:
    """keras-tuner tuner ids of this host's workers: ``worker-<i>``, or ``<name>-<i>`` when joining.

    keras-tuner hands a returning tuner id its running trial again, so ids must be
    unique across hosts (``name`` defaults to the host name when joining) and
    stable for one slot (a replaced worker keeps its slot's id). No id contains
    ``chief``.
    """
    prefix = "worker" if name is None else _id_part(name)
    return [f"{prefix}-{i}" for i in range(workers)]


def _base_env(environ: Mapping[str, str], address: tuple[str, int], tuner_id: str, role: str,
              control: str) -> dict[str, str]:
    env = dict(environ)
    env.update({
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": address[0],
        "KERASTUNER_ORACLE_PORT": str(address[1]),
        ENV_ROLE: role,
        ENV_CONTROL: control,
        "TF_FORCE_GPU_ALLOW_GROWTH": environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "true"),
        "PYTHONUNBUFFERED": "1",
    })
    for key in (ENV_FAIL_TRIAL, ENV_FAIL_CAUSE, ENV_CHIEF_RESTART):
        env.pop(key, None)
    return env


def chief_env(environ: Mapping[str, str], address: tuple[str, int], control: str) -> dict[str, str]:
    """The chief's environment: keras-tuner's chief variables; it trains nothing, so one intra-op thread."""
    env = _base_env(environ, address, CHIEF_ID, "chief", control)
    env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    return env


def worker_env(environ: Mapping[str, str], address: tuple[str, int], tuner_id: str, control: str, *,
               gpus: Sequence[str] | None, cores: int, workers: int, recycle_after: int) -> dict[str, str]:
    """One worker's environment.

    Args:
        environ: The environment to start from (``os.environ``); the user's own
            ``TF_NUM_INTRAOP_THREADS`` and ``TF_FORCE_GPU_ALLOW_GROWTH`` are kept.
        address: The chief's ``(host, port)``.
        tuner_id: keras-tuner's ``KERASTUNER_TUNER_ID`` of this worker.
        control: The supervisor's status folder.
        gpus: This worker's devices (``CUDA_VISIBLE_DEVICES``), or ``None`` to leave it as it is.
        cores: Usable cores of the host; workers: workers on it (their intra-op threads share the cores).
        recycle_after: Trials before the process is replaced by a fresh one (0: never).
    """
    env = _base_env(environ, address, tuner_id, "worker", control)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, cores // max(1, workers))))
    env[ENV_RECYCLE_AFTER] = str(recycle_after)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it; the chief binds it moments later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def bind_error(host: str, port: int) -> OSError | None:
    """Why the chief could not bind ``host:port`` now (a socket already bound there, listening or not), or ``None``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            return err
    return None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``."""
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", text.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise TuneError(message("`--chief` must be the chief's HOST:PORT, as `kfitx tune` printed it on its host",
                                repr(text), "For example: --chief 10.0.0.5:8000."))
    return match.group(1), int(match.group(2))


def port_open(address: tuple[str, int], timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``address`` (the chief's gRPC server, once it listens)."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False
