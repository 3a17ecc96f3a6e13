"""``strategy="auto"`` by measurement against the fastest and the slowest strategy it chooses among.

For each backend (TensorFlow, JAX, and torch when installed; each in a fresh process, as Keras
fixes its backend at import) and for ``bench_memory.py``'s MLP and CNN, a 10-epoch fit (batch 32,
``verbose=0``) of a fresh model (same seed: same initial weights) with every strategy ``auto``
may choose (those that train to ``model.fit``'s weights: ``memory``, ``generator``, ``loop``, and
installed plugins that declare ``interchangeable``), with ``auto`` (its probe's answers forgotten
first, so that it probes: what a single fit pays) and with ``auto`` again (the answer cached: what
a search's later trials pay). Runs alternate, the order turning every repeat, after one untimed
short fit of each (so the process's start-up costs fall on none); the median of ``--repeats`` is
reported as samples/s of the whole fit call, probe included.

Reported per backend and model: the fastest and the slowest strategy, ``auto`` / fastest (target
>= 0.95), ``auto`` / slowest, and the probe's share of ``auto``'s wall time (target <= 5 %), with
what ``auto`` chose in each repeat (or why it did not probe).

Usage::

    python benchmarks/bench_auto.py                         # TensorFlow, JAX (and torch): 3 repeats (~10 min)
    python benchmarks/bench_auto.py --backends jax --only mlp --repeats 5
    python benchmarks/bench_auto.py --quick                 # smoke test: tiny sizes, 1 repeat
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

HERE = Path(__file__).resolve().parent
TAG = "KFITX_BENCH_AUTO "
BATCH_SIZE = 32
SIZES = {
    "full": {"mlp": 20_000, "cnn": 4_096, "epochs": 10, "repeats": 3},
    "quick": {"mlp": 2_048, "cnn": 512, "epochs": 2, "repeats": 1},
}


def _candidates() -> list[str]:
    import kfitx

    return sorted(info.name for info in kfitx.available_strategies()
                  if info.cls.interchangeable and info.name != "auto")


def one_run(kind: str, strategy: str, x, y, epochs: int, cached: bool = False) -> dict:
    import keras

    import kfitx
    from kfitx.strategies import probe_cache

    sys.path.insert(0, str(HERE))
    import bench_memory

    if strategy == "auto" and not cached:
        probe_cache.forget()  # this fit probes, as a first fit of this model in a process does
    model = (bench_memory.build_mlp if kind == "mlp" else bench_memory.build_cnn)()
    start = time.perf_counter()
    history = kfitx.fit(model, x, y, strategy=strategy, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    seconds = time.perf_counter() - start
    report = getattr(history, "kfitx", {})
    probe = report.get("probe") or {}
    result = {"samples_per_s": len(x) * epochs / seconds, "seconds": seconds, "chose": report.get("strategy"),
              "probe_s": float(probe.get("seconds") or 0.0), "skipped": probe.get("skipped"),
              "probed": probe.get("samples_per_s")}
    del model, history
    keras.backend.clear_session()
    gc.collect()
    return result


def child(kinds: list[str], sizes: dict, epochs: int, repeats: int) -> None:
    """Runs in a process started with KERAS_BACKEND set: every run of one backend; prints one JSON line."""
    import keras

    sys.path.insert(0, str(HERE))
    import bench_memory

    backend = keras.backend.backend()
    strategies = _candidates()
    sides = [*strategies, "auto", "auto (cached)"]
    results: dict = {}
    for kind in kinds:
        x, y = bench_memory.make_data(kind, sizes[kind])
        print(f"\n[{backend} {kind}] {len(x)} samples, batch {BATCH_SIZE}, {epochs} epochs, {repeats} repeat(s); "
              f"auto chooses among {', '.join(strategies)}", flush=True)
        for side in sides:  # untimed: the process's start-up costs (thread pools, kernels) fall on none
            one_run(kind, side.split()[0], x[: 8 * BATCH_SIZE], y[: 8 * BATCH_SIZE], 2, cached=side != "auto")
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(repeats):
            turned = sides[r % len(sides):] + sides[: r % len(sides)]
            order = [s for s in turned if s != "auto (cached)"]
            order.insert(order.index("auto") + 1, "auto (cached)")  # right after auto: its answer is kept
            for side in order:
                res = one_run(kind, side.split()[0], x, y, epochs, cached=side == "auto (cached)")
                runs[side].append(res)
                extra = ""
                if side.startswith("auto"):
                    extra = (f", chose {res['chose']}, probe {res['probe_s']:.2f} s"
                             + (f" (not probed: {res['skipped']})" if res["skipped"] else "")
                             + (f", probe's estimates {json.dumps(res['probed'])}" if res["probed"] else ""))
                print(f"  repeat {r + 1} {side:14s}: {res['seconds']:7.2f} s, {res['samples_per_s']:9.0f} samples/s"
                      + extra, flush=True)
        results[kind] = {
            side: {"samples_per_s": statistics.median(r["samples_per_s"] for r in rs),
                   "probe_share": statistics.median(r["probe_s"] / r["seconds"] for r in rs),
                   "chose": [r["chose"] for r in rs], "skipped": next((r["skipped"] for r in rs if r["skipped"]), None)}
            for side, rs in runs.items()}
    print(TAG + json.dumps({"backend": backend, "strategies": strategies, "results": results}), flush=True)


def run_backend(backend: str, args: argparse.Namespace) -> dict | None:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, __file__, "--child", "--only", args.only or "mlp,cnn",
           "--mlp-samples", str(args.mlp_samples), "--cnn-samples", str(args.cnn_samples),
           "--epochs", str(args.epochs), "--repeats", str(args.repeats)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = None
    assert proc.stdout is not None
    for line in proc.stdout:  # the runs as they finish
        if line.startswith(TAG):
            found = json.loads(line[len(TAG):])
        elif "cpu_feature_guard" not in line and "rebuild TensorFlow" not in line:
            print(line, end="", flush=True)
    if proc.wait() != 0 or found is None:
        print(f"{backend}: the benchmark process failed (exit code {proc.returncode})", file=sys.stderr)
        return None
    return found


def print_table(found: list[dict]) -> None:
    rows = []
    for result in found:
        for kind, sides in result["results"].items():
            speeds = {s: sides[s]["samples_per_s"] for s in result["strategies"]}
            fastest, slowest = max(speeds, key=speeds.__getitem__), min(speeds, key=speeds.__getitem__)
            for label in ("auto", "auto (cached)"):
                auto = sides[label]
                chose = ", ".join(f"{name} x{auto['chose'].count(name)}" for name in sorted(set(auto["chose"])))
                rows.append((result["backend"], kind, label, f"{fastest} {speeds[fastest]:,.0f}",
                             f"{slowest} {speeds[slowest]:,.0f}", f"{auto['samples_per_s']:,.0f}",
                             f"{auto['samples_per_s'] / speeds[fastest]:.2f}",
                             f"{auto['samples_per_s'] / speeds[slowest]:.2f}",
                             f"{100 * auto['probe_share']:.1f} %", chose + (" (rules)" if auto["skipped"] else "")))
    head = ("backend", "model", "run", "fastest, samples/s", "slowest, samples/s", "auto, samples/s", "auto/fastest",
            "auto/slowest", "probe share", "auto chose")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-" * (sum(widths) + 2 * (len(head) - 1)))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print("\ntargets: auto/fastest >= 0.95 (the 'auto' rows: probe included); probe share <= 5 %")
    for result in found:
        for kind, sides in result["results"].items():
            if sides["auto"]["skipped"]:
                print(f"{result['backend']} {kind}: auto did not probe: {sides['auto']['skipped']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 epochs, 1 repeat (a smoke test)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated (default: tensorflow,jax, and torch when installed)")
    parser.add_argument("--only", default=None, help="mlp, cnn or mlp,cnn (default both)")
    parser.add_argument("--mlp-samples", type=int, default=None, help="default 20000")
    parser.add_argument("--cnn-samples", type=int, default=None, help="default 4096")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (default 10)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each side (default 3)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full"]
    args.mlp_samples = args.mlp_samples or sizes["mlp"]
    args.cnn_samples = args.cnn_samples or sizes["cnn"]
    args.epochs = args.epochs or sizes["epochs"]
    args.repeats = args.repeats or sizes["repeats"]
    kinds = (args.only or "mlp,cnn").split(",")
    if not set(kinds) <= {"mlp", "cnn"} or args.repeats < 1 or args.epochs < 1:
        parser.error("--only takes mlp, cnn or mlp,cnn; --repeats and --epochs at least 1")
    if args.child:
        child(kinds, {"mlp": args.mlp_samples, "cnn": args.cnn_samples}, args.epochs, args.repeats)
        return 0
    backends = (args.backends.split(",") if args.backends else
                ["tensorflow", "jax", *(["torch"] if importlib.util.find_spec("torch") else [])])
    start = time.perf_counter()
    print(f"strategy='auto' against the strategies it chooses among; {'quick' if args.quick else 'full'} mode, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)", flush=True)
    found = [r for r in (run_backend(b, args) for b in backends) if r is not None]
    if found:
        print_table(found)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0 if len(found) == len(backends) else 1


if __name__ == "__main__":
    sys.exit(main())
