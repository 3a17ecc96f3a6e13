"""Every strategy under tf.distribute: MirroredStrategy on two logical CPU devices, MultiWorkerMirroredStrategy
with two worker processes on 127.0.0.1, keras-tuner's ``distribution_strategy=``; and on JAX under
``keras.distribution.DataParallel`` over two host devices.

Devices, ``TF_CONFIG`` and ``XLA_FLAGS`` must be set before TensorFlow or JAX starts, so each run is a
fresh process (``tests/distribute_worker.py``, ``tests/distribute_jax_worker.py``), with a deadline,
killed in ``finally``.
"Same weights" means within ``ATOL`` (1e-5): replicas sum their gradients in another
order than one device does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("distribute_worker.py")
ATOL = 1e-5
STRATEGIES = ["memory", "generator", "loop", "auto", "loop, batch hooks", "loop, user step",
              "generator, Python generator", "loop, Python generator", "tfdata", "accumulate"]


def _run(args, deadline_s):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(procs, deadline_s):
    """Each process's output, all within one deadline; every process killed if still running."""
    deadline = time.monotonic() + deadline_s
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]
    return outputs


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrored")
    out = root / "results.json"
    _finish([_run(["mirrored", out, root / "tuner"], 500)], 500)
    return json.loads(out.read_text())


def _skip_train_on_batch_before_3_15(name: str) -> None:
    """Keras before 3.15 returns running metrics from ``train_on_batch`` (keras #22617) and, on JAX under a
    ``keras.distribution``, fails in it on a batch without sample weights (keras #23003): the user step of
    these runs is ``train_on_batch``, and it reports what that Keras returns."""
    from kfitx._keras import versions

    if name == "loop, user step" and versions.keras_release() < (3, 15):
        pytest.skip("Keras < 3.15's train_on_batch returns running metrics (and fails under a JAX distribution)")


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_under_mirrored_strategy_ends_with_plain_fits_weights(mirrored, name):
    _skip_train_on_batch_before_3_15(name)
    result = mirrored[name]
    assert "error" not in result, result.get("trace")
    assert result["difference"] <= ATOL  # tolerance: all-reduce sums replicas' gradients in another order
    for key, values in mirrored["plain"]["history"].items():
        np.testing.assert_allclose(result["history"][key], values, atol=1e-5, err_msg=key)


def test_under_mirrored_strategy_one_step_per_call_and_why(mirrored):
    report = mirrored["memory"]["report"]
    assert report["steps_per_execution"] == 1
    assert report["grouping"].startswith("steps_per_execution > 1 fails under tf.distribute.MirroredStrategy")
    assert "tf.cond" in report["grouping"]


def test_a_search_with_distribution_strategy_completes_its_trials_with_each_builtin(mirrored):
    assert mirrored["tuner"] == {name: ["COMPLETED"] for name in ("memory", "generator", "loop", "auto")}


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _two_workers(tmp_path, strategy):
    ports = ",".join(map(str, _free_ports(2)))
    _finish([_run(["worker", i, ports, strategy, tmp_path], 300) for i in range(2)], 300)
    _finish([_run(["one-device", tmp_path, 2], 120)], 120)
    weights = [np.load(tmp_path / f"worker-{i}.npz") for i in range(2)]
    runs = [json.loads((tmp_path / f"worker-{i}.json").read_text()) for i in range(2)]
    return weights, runs, np.load(tmp_path / "one-device.npz")


def _assert_trained_together(tmp_path, weights, runs, reference):
    # Each worker drew different data: only an all-reduce makes them end alike (exactly: same updates).
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])
        # ... and equal to one device trained on each worker's share of every batch (worker i: the i-th half
        # of each batch of its own data), which holds only if each worker read its shard and no more.
        np.testing.assert_allclose(weights[0][key], reference[key], atol=ATOL)  # tolerance: summation order
    assert runs[0]["history"] == runs[1]["history"]  # metrics reduced over both workers
    assert [r["resumed_epochs"] for r in runs] == [1, 1]  # both resumed from the chief's backup
    # Only the chief (worker 0) writes checkpoints and backups where the user asked; the other worker saves
    # too (saving takes part in the collectives) but into a scratch directory of its own, removed after.
    workdir = str(tmp_path)
    assert runs[0]["saves"] and all(path.startswith(workdir) for path in runs[0]["saves"])
    assert runs[1]["saves"] and not any(path.startswith(workdir) for path in runs[1]["saves"])
    assert not any(os.path.exists(os.path.dirname(path)) for path in runs[1]["saves"])
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.weights.h5")) == [
        "checkpoint-1.weights.h5", "checkpoint-2.weights.h5", "checkpoint-3.weights.h5"]


@pytest.mark.slow
def test_two_workers_train_through_loop_to_identical_weights(tmp_path):
    weights, runs, reference = _two_workers(tmp_path, "loop")
    _assert_trained_together(tmp_path, weights, runs, reference)
    assert runs[0]["report"]["strategy"] == "loop"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["memory", "generator"])
def test_two_workers_train_through_model_fit_strategies_too(tmp_path, strategy):
    weights, runs, reference = _two_workers(tmp_path, strategy)
    _assert_trained_together(tmp_path, weights, runs, reference)


# -- JAX: keras.distribution.DataParallel over two host devices ------------------------------------

JAX_WORKER = Path(__file__).with_name("distribute_jax_worker.py")


@pytest.fixture(scope="module")
def data_parallel(tmp_path_factory):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed (pip install 'kfitx[jax]')")
    out = tmp_path_factory.mktemp("data-parallel") / "results.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}  # the worker sets XLA_FLAGS
    proc = subprocess.Popen([sys.executable, str(JAX_WORKER), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _finish([proc], 240)
    return json.loads(out.read_text())


def _split_over_both_devices(seen):
    return bool(seen) and all(share * 2 == size for size, share in seen)


def test_plain_fit_under_data_parallel_splits_every_batch_over_two_devices(data_parallel):
    assert data_parallel["devices"] == 2
    assert _split_over_both_devices(data_parallel["plain"]["seen"]), data_parallel["plain"]["seen"]
    assert data_parallel["plain"]["devices"] == 2  # the weights are laid out over the mesh


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_under_jax_data_parallel_ends_with_plain_fits_weights(data_parallel, name):
    _skip_train_on_batch_before_3_15(name)
    result = data_parallel[name]
    assert "error" not in result, result.get("trace")
    assert result["difference"] <= ATOL  # tolerance 1e-5: kfitx-accumulate sums micro-batch gradients
    for key, values in data_parallel["plain"]["history"].items():
        np.testing.assert_allclose(result["history"][key], values, atol=1e-5, err_msg=key)
    # Every batch the model saw (training and validation) was split in two, one half per device.
    assert _split_over_both_devices(result["seen"]), result["seen"]
    assert result["devices"] == 2


def test_under_data_parallel_steps_are_grouped(data_parallel):
    assert data_parallel["memory"]["report"]["steps_per_execution"] == 16  # Keras's JAX trainer groups there
    assert data_parallel["loop"]["report"]["steps_per_execution"] == 16
    assert [16, 8] in data_parallel["accumulate"]["seen"]  # each micro-batch split over the devices too


def test_a_batch_that_does_not_divide_over_the_devices_is_a_data_error(data_parallel):
    failed = data_parallel["indivisible"]
    assert failed["plain"] is not None and not failed["plain"]["kfitx"]  # model.fit fails there too (JAX's error)
    assert failed["loop"]["type"] == "DataError", failed["loop"]
    text = failed["loop"]["text"]
    assert "2 devices of keras.distribution.DataParallel" in text
    assert "Received: a batch of 5 samples" in text and "multiples of 2" in text


# -- torch: a torch.distributed process group (gloo, two processes), Keras's DistributedDataParallel --------

TORCH_WORKER = Path(__file__).with_name("distribute_torch_worker.py")


@pytest.mark.slow
def test_every_strategy_under_torch_ddp_ends_with_plain_fits_weights_on_every_rank(tmp_path):
    """Two processes in one gloo process group, each on its own data: plain ``model.fit`` (Keras wraps the model in
    ``DistributedDataParallel`` and averages the gradients over the processes) and each built-in end with the same
    weights, on both ranks; kfitx's runtime sees the process group (two replicas, rank 0 the chief)."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install 'kfitx[torch]')")
    from kfitx._keras import versions

    if versions.keras_release() < (3, 16):
        pytest.skip("Keras trains under torch.distributed with DistributedDataParallel from 3.16")
    (port,) = _free_ports(1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, str(TORCH_WORKER), str(rank), "2", str(port),
                               str(tmp_path / f"rank{rank}.json")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    _finish(procs, 300)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for rank, result in enumerate(ranks):
        assert "error" not in result, result["error"]
        assert result["runtime"] == {"torch_ddp": True, "replicas": 2, "chief": rank == 0}
        plain = result["runs"]["plain"]
        assert plain["moved"] > 1e-3  # it trained
        for name in ("memory", "generator", "loop"):
            run = result["runs"][name]
            assert run["diff"] <= ATOL, (rank, name, run["diff"])
            assert run["history"].keys() == plain["history"].keys(), (rank, name)
            np.testing.assert_allclose(run["history"]["loss"], plain["history"]["loss"], rtol=1e-5)
    for name in ("plain", "memory", "generator", "loop"):  # each rank saw other data: the gradients were averaged
        assert ranks[0]["runs"][name]["checksum"] == pytest.approx(ranks[1]["runs"][name]["checksum"], abs=1e-4)
