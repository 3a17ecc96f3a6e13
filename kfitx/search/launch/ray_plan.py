"""What ``kfitx tune --ray`` asks of Ray: its options, how many workers, each actor's resources and environment.

Pure functions (Ray is not imported here), so every rule is tested without starting a cluster:

* :func:`check_options` -- the options that mean nothing on a Ray cluster, refused before anything starts;
* :func:`workers_for` / :func:`default_gpus` -- how many worker actors the cluster's nodes have room for;
* :func:`actor_options` -- each actor's Ray resources and placement (the chief on the node of ``kfitx tune``);
* :func:`forwarded` / :func:`worker_overlay` / :func:`chief_overlay` -- the variables each runner process gets on
  top of its node's own environment; :func:`node_env` -- the whole environment, made on the node.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from kfitx.errors import TuneError, message
from kfitx.search.launch import workers as w
from kfitx.search.launch.options import TuneOptions

__all__ = [
    "NAMESPACE",
    "actor_options",
    "check_options",
    "chief_overlay",
    "default_gpus",
    "forwarded",
    "head_address",
    "node_env",
    "worker_overlay",
    "workers_for",
]

#: Ray namespace of kfitx's actors (each named ``<search id>-<tuner id>``).
NAMESPACE = "kfitx"
#: Variables of the ``kfitx tune`` command's environment that its processes on other nodes get too.
FORWARD_PREFIXES = ("KERAS_", "TF_", "KFITX_", "XLA_", "JAX_")
FORWARD_NAMES = ("PYTHONPATH", "PYTHONHASHSEED")


def check_options(options: TuneOptions) -> None:
    """Refuses what does not apply with (or without) ``--ray``, before Ray is contacted.

    Raises:
        TuneError: an option of joining hosts by hand with ``--ray``, Ray's options without it, or a bad amount.
    """
    if options.ray is None:
        if options.cpus_per_worker is not None:
            raise TuneError(message("`--cpus-per-worker` with --ray (it is the Ray CPUs each worker holds)",
                                    f"--cpus-per-worker {options.cpus_per_worker} without --ray",
                                    "Add --ray ADDRESS, or leave it out (TF_NUM_INTRAOP_THREADS sets threads here)."))
        return
    head_address(options.ray)
    for flag, value, default in (("--chief", options.chief, None), ("--name", options.name, None),
                                 ("--bind", options.bind, "127.0.0.1")):
        if value != default:
            raise TuneError(message(f"no {flag} with --ray (Ray places the workers, and the chief listens on "
                                    "its node's address)", f"{flag} {value}", f"Drop {flag}."))
    if options.cpus_per_worker is not None and not options.cpus_per_worker > 0:
        raise TuneError(message("`--cpus-per-worker` above 0", options.cpus_per_worker))
    if options.gpus_per_worker is not None and not options.gpus_per_worker >= 0:
        raise TuneError(message("`--gpus-per-worker` of 0 or more with --ray", options.gpus_per_worker))


def head_address(text: str) -> tuple[str, int] | None:
    """``--ray``'s ``HOST:PORT`` as ``(host, port)``; ``None`` for ``local`` and ``auto``.

    Raises:
        TuneError: anything else (Ray Client's ``ray://`` too: the command must run on a node of the cluster).
    """
    address = text.strip()
    if address in ("local", "auto"):
        return None
    match = re.fullmatch(r"\[?([^\[\]/]+?)\]?:(\d{1,5})", address)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise TuneError(message("`--ray` to be a Ray cluster's address as `ray start --head` printed it "
                                "(HOST:PORT), `auto` for the cluster this node belongs to, or `local`", repr(text),
                                "Run kfitx tune on a node of the cluster (e.g. through `ray job submit -- kfitx "
                                "tune --ray auto ...`): it reads the search directory while the search runs."))
    return match.group(1), int(match.group(2))


def default_gpus(nodes: Sequence[Mapping[str, float]]) -> float:
    """GPUs per worker when ``--gpus-per-worker`` is not given: 1 if the cluster has GPUs, else 0."""
    return 1.0 if any(node.get("GPU", 0) > 0 for node in nodes) else 0.0


def workers_for(nodes: Sequence[Mapping[str, float]], cpus: float, gpus: float) -> int:
    """Worker actors of ``cpus`` CPUs and ``gpus`` GPUs the nodes have room for (each node on its own).

    Args:
        nodes: Each alive node's resources (``ray.nodes()``'s ``Resources``: ``CPU``, ``GPU``, ...).
        cpus, gpus: What one worker holds. The chief holds no CPU.
    """
    total = 0
    for node in nodes:
        fit = math.floor(node.get("CPU", 0) / cpus + 1e-9) if cpus > 0 else math.inf
        if gpus > 0:
            fit = min(fit, math.floor(node.get("GPU", 0) / gpus + 1e-9))
        total += 0 if fit == math.inf else int(fit)
    return total


def actor_options(name: str, search_id: str, *, cpus: float = 0.0, gpus: float = 0.0,
                  node: str | None = None) -> dict[str, object]:
    """Ray's options for one actor (``.options(**...)``, ``node`` made a node-affinity strategy by the caller).

    Every actor belongs to the ``kfitx tune`` driver that created it (not detached: Ray ends it
    with the driver) and is never restarted by Ray (``max_restarts=0``): kfitx starts a lost worker
    again itself, under the same tuner id, so keras-tuner hands it its trial back and the death counts
    against that trial. The chief holds no CPU (it trains nothing) and runs on ``node``, the node of
    ``kfitx tune``, so its address stays the same when it is restarted.
    """
    options: dict[str, object] = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": 0,
                               "name": f"{search_id}-{name}", "namespace": NAMESPACE}
    if node is not None:
        options["node"] = node
    return options


def forwarded(environ: Mapping[str, str]) -> dict[str, str]:
    """The command's variables that its processes on every node get (Keras, TensorFlow, JAX, kfitx, ``PYTHONPATH``).

    The rest of a process's environment is its node's own (set variables for every node with Ray's
    ``runtime_env`` or in the nodes' environment).
    """
    return {k: v for k, v in environ.items() if k.startswith(FORWARD_PREFIXES) or k in FORWARD_NAMES}


def worker_overlay(environ: Mapping[str, str], address: tuple[str, int], tuner_id: str, *, cpus: float,
                   recycle_after: int, start_timeout: float, search_id: str) -> dict[str, str]:
    """A worker's variables on top of its node's: keras-tuner's, kfitx's, ``TF_NUM_INTRAOP_THREADS`` = its CPUs."""
    env = w.worker_env(forwarded(environ), address, tuner_id, "", gpus=None, cores=max(1, int(cpus)), workers=1,
                       recycle_after=recycle_after)
    env.update({"KFITX_TUNE_START_TIMEOUT": str(start_timeout), w.ENV_SEARCH_ID: search_id})
    return env


def chief_overlay(environ: Mapping[str, str], address: tuple[str, int], search_id: str) -> dict[str, str]:
    """The chief's variables on top of its node's (keras-tuner's chief, one intra-op thread, no GPU)."""
    env = w.chief_env(forwarded(environ), address, "")
    env.update({w.ENV_SEARCH_ID: search_id, "CUDA_VISIBLE_DEVICES": ""})
    return env


def node_env(node_environ: Mapping[str, str], overlay: Mapping[str, str], control: str, node: str,
             gpu_ids: Sequence[int | str] | None) -> dict[str, str]:
    """A runner process's environment, made on its node: the node's, then the overlay, then where it runs.

    Args:
        node_environ: The actor's own environment (its node's, with what Ray's ``runtime_env`` set).
        overlay: :func:`worker_overlay` or :func:`chief_overlay`.
        control: The actor's folder of status files on its node.
        node: The node's Ray id, kept in each trial's record.
        gpu_ids: The GPUs Ray gave the actor (``ray.get_gpu_ids()``), or ``None`` to keep the overlay's choice.
    """
    env = {**node_environ, **overlay, w.ENV_CONTROL: control, w.ENV_NODE: node}
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)  # none held: no device, not every device
    return env
