"""`kfitx bench`: the same model and data through several strategies, a table, progress, a plot."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

import kfitx
from kfitx.bench import BenchResult, BenchSpec, bench, format_table, load_data, plot
from kfitx.cli import main

TINY = ["--data", "synthetic", "--samples", "320", "--epochs", "2", "--batch-size", "32"]


class Failing(kfitx.Strategy):
    name = "failing"
    description = "always raises"

    def fit(self, model, plan):
        raise RuntimeError("out of luck")


class ProvidesFailing:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [Failing]


def test_in_process_bench_prints_progress_and_a_table_and_a_failure_does_not_stop_the_others(registry, capsys):
    registry.register(ProvidesFailing(), name="failing-plugin")
    code = main(["bench", "--strategies", "memory,failing,loop", "--in-process", *TINY])
    out = capsys.readouterr().out
    assert code == 1  # one strategy failed
    assert "[1/3] memory: mlp on synthetic (320 samples), 2 epoch(s), batch size 32" in out
    assert "  memory: epoch 2/2 " in out and "  loop: epoch 1/2 " in out  # progress per strategy and epoch
    table = out[out.index("strategy  "):].splitlines()
    assert table[0].split()[:6] == ["strategy", "samples/s", "s/epoch", "1st", "epoch", "s"]
    assert "val_accuracy" in table[0]
    assert table[2].startswith("memory ") and table[4].startswith("loop ")
    assert table[3].startswith("failing") and "FAILED: RuntimeError: out of luck" in table[3]
    assert table[-1].startswith("* peak RSS of the one process")


def test_every_strategy_gets_the_same_data_and_initial_weights(registry):
    results = bench(BenchSpec(data="synthetic", samples=320, epochs=1, batch_size=32), ["memory", "loop"],
                    progress=lambda line: None, subprocesses=False)
    memory, loop = (r.metrics for r in results)
    assert memory.keys() == loop.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert memory["val_loss"] == pytest.approx(loop["val_loss"], rel=1e-4)  # seeded: the same run


def test_bad_arguments_are_reported_before_training(registry, capsys):
    assert main(["bench", "--strategies", "memry"]) == 2
    assert "Did you mean 'memory'" in capsys.readouterr().err
    with pytest.raises(kfitx.OptionError, match="epochs"):
        BenchSpec(epochs=0)
    x, y, x_val, y_val = load_data(BenchSpec(model="cnn", data="digits"))
    assert x.shape[1:] == (8, 8, 1) and len(x) + len(x_val) == 1797


def test_table_of_results():
    rows = [BenchResult("fast", 1000.0, [2.0, 0.5, 0.7], 512.0, 400.0, {"loss": 0.5, "val_accuracy": 0.9}),
            BenchResult("broken", error="ValueError: no")]
    table = format_table(rows).splitlines()
    assert table[0].split() == ["strategy", "samples/s", "s/epoch", "1st", "epoch", "s", "peak", "RSS", "MiB",
                                "loss", "val_accuracy"]
    assert table[2].split() == ["fast", "1,000", "0.600", "2.00", "512", "0.5000", "0.9000"]
    assert table[3].split()[:2] == ["broken", "FAILED:"]


def test_bench_runs_each_strategy_in_its_own_process_and_plots(tmp_path):
    pytest.importorskip("matplotlib")  # the `plot` extra
    png = tmp_path / "bench.png"
    env = {**os.environ, "KFITX_DISABLE_PLUGIN_AUTOLOAD": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "kfitx.cli", "bench", "--strategies", "memory", *TINY,
                             "--plot", str(png)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(one fresh process each)" in result.stdout and "  memory: epoch 2/2" in result.stdout
    assert f"Plot written to {png}" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("memory "))
    assert "*" not in row and "FAILED" not in row  # the peak is its own process's
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_the_plain_row_is_model_fit_and_every_row_gets_its_ratio(registry, capsys, tmp_path):
    code = main(["bench", "--strategies", "plain,memory", "--in-process", *TINY])
    out = capsys.readouterr().out
    assert code == 0, out
    table = out[out.index("strategy  "):].splitlines()
    assert table[0].split()[:4] == ["strategy", "samples/s", "vs", "plain"]
    plain, memory = table[2].split(), table[3].split()
    assert plain[0] == "plain" and plain[2] == "1.00x"
    assert memory[0] == "memory" and memory[2].endswith("x") and float(memory[2][:-1]) > 0
    results = bench(BenchSpec(data="synthetic", samples=320, epochs=1, batch_size=32), ["plain"],
                    progress=lambda line: None, subprocesses=False)
    assert results[0].error is None and results[0].metrics.keys() == {"loss", "accuracy", "val_loss",
                                                                       "val_accuracy"}
    if importlib.util.find_spec("matplotlib") is not None:
        plot(results + [BenchResult("fast", results[0].samples_per_s * 2, [1.0], 1.0, 1.0, {})],
             tmp_path / "b.png")
        assert (tmp_path / "b.png").stat().st_size > 10_000


def _result(strategy: str, backend: str, speed: float) -> BenchResult:
    return BenchResult(strategy, samples_per_s=speed, epoch_seconds=[1.0, 0.5], peak_rss_mib=100.0,
                       metrics={"loss": 0.5}, backend=backend)


def test_each_backends_rows_are_compared_with_plain_fit_on_that_backend(tmp_path) -> None:
    results = [_result("plain", "tensorflow", 100.0), _result("memory", "tensorflow", 250.0),
               _result("plain", "jax", 400.0), _result("memory", "jax", 600.0)]
    table = format_table(results)
    assert "memory (tensorflow)" in table and "2.50x" in table
    assert "memory (jax)" in table and "1.50x" in table
    if importlib.util.find_spec("matplotlib"):
        plot(results, tmp_path / "backends.png")
        assert (tmp_path / "backends.png").stat().st_size > 0


def test_an_unknown_or_missing_backend_is_refused_before_anything_trains() -> None:
    with pytest.raises(kfitx.OptionError, match="Keras backends among: tensorflow, jax, torch"):
        bench(BenchSpec(), ["plain"], backends=["theano"])
    with pytest.raises(kfitx.OptionError, match="one process per strategy"):
        bench(BenchSpec(), ["plain"], backends=["tensorflow"], subprocesses=False)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install 'kfitx[jax]')")
def test_bench_runs_a_strategy_on_another_backend_in_its_own_process(capsys) -> None:
    code = main(["bench", "--backend", "jax", "--strategies", "plain,memory", *TINY])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[1/2] plain on jax" in out and "[2/2] memory on jax" in out
    row = next(line for line in out.splitlines() if line.startswith("memory"))
    ratio = row.split()[2]  # the ratio against plain on JAX
    assert ratio.endswith("x") and float(ratio[:-1]) > 0, row
