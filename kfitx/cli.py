"""The ``kfitx`` command.

* ``kfitx list`` -- every installed strategy and the distribution providing it;
* ``kfitx check NAME`` -- the conformance kit (:mod:`kfitx.testing`) on an installed strategy, with
  ``--source`` / ``--model MODULE:FUNCTION`` and ``--option KEY=VALUE`` where it needs them;
* ``kfitx plugin new NAME`` -- a strategy plugin package to start from (:mod:`kfitx.testing.scaffold`);
* ``kfitx bench`` -- one model and data set through several strategies (:mod:`kfitx.bench`);
* ``kfitx tune SCRIPT`` -- a keras-tuner search script as a chief plus worker processes (:mod:`kfitx.tune`);
* ``kfitx report DIR`` -- a search directory's leaderboard and plot (:mod:`kfitx.report`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kfitx.errors import KfitxError, TuneError, message

__all__ = ["main"]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    from kfitx.registry import available_strategies

    infos = available_strategies()
    rows: list[tuple[str, ...]] = [("name", "description", "backends", "provided by", "version", "plugin")]
    names = [info.name for info in infos]
    for info in infos:
        name = info.name + (" (CONFLICT)" if names.count(info.name) > 1 else "")
        backends = ",".join(getattr(info.cls, "backends", ()) or ("-",))
        rows.append((name, info.description, backends, info.distribution, info.version, info.plugin))
    print(_table(rows))
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _check(args: argparse.Namespace) -> int:
    from kfitx.registry import get_registry
    from kfitx.testing import check_strategy
    from kfitx.testing.command import load_function, parse_options

    given = {"make_source": args.source and load_function(args.source, "--source"),
             "build_model": args.model and load_function(args.model, "--model")}

    info = get_registry().lookup(args.name)
    print(f"Checking strategy '{info.name}' ({info.cls.__module__}.{info.cls.__qualname__}, "
          f"from {info.distribution} {info.version}) against the fit contract:", flush=True)
    tolerance = None if args.no_weights else ("class" if args.tolerance is None else args.tolerance)
    report = check_strategy(
        info.cls, rules=_names(args.rules), skip=_names(args.skip) or (), tolerance=tolerance,
        plugin=get_registry().pm.get_plugin(info.plugin), raise_on_failure=False,
        on_result=lambda r: print(f"  {r.rule:<16} {r.status.upper():7} {r.seconds:5.1f} s", flush=True),
        **{k: v for k, v in given.items() if v}, **parse_options(args.option or ()),
    )
    print()
    print(report)
    for result in report.results:
        if result.error is not None:
            print(f"\n{result.error}")
    return 0 if report.ok else 1


def _plugin(args: argparse.Namespace) -> int:
    from kfitx.testing.scaffold import new_plugin

    root = new_plugin(args.name, args.directory)
    print(f"Wrote {root}/. Next: pip install -e {root} && kfitx check {args.name} && "
          f"(cd {root} && python -m pytest)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from kfitx import bench

    if args.plot:
        bench.require_matplotlib()  # before minutes of training, not after
    spec = bench.BenchSpec(model=args.model, data=args.data, samples=args.samples, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed)
    strategies = _names(args.strategies) or []
    print(f"kfitx bench: {spec.describe()}; strategies: {', '.join(strategies)}"
          + ("" if args.in_process else " (one fresh process each)"), flush=True)
    results = bench.bench(spec, strategies, progress=lambda line: print(line, flush=True),
                          subprocesses=not args.in_process, timeout=args.timeout, backends=_names(args.backend))
    print()
    print(bench.format_table(results))
    if args.plot:
        bench.plot(results, args.plot, spec)
        print(f"\nPlot written to {args.plot}")
    return 1 if any(r.error for r in results) else 0


def _tune(args: argparse.Namespace) -> int:
    from kfitx.search.launch import run
    from kfitx.search.launch.options import TuneOptions

    if args.script.startswith("-"):
        raise TuneError(message("the search script after the options", repr(args.script),
                                "Put kfitx's options before SCRIPT: kfitx tune --workers 2 search.py --epochs 5."))
    from kfitx.search.budget import parse_duration

    time_budget = None if args.time_budget is None else parse_duration(args.time_budget, "--time-budget")
    options = TuneOptions(script=args.script, args=args.args, workers=args.workers,
                          trials_per_worker=args.trials_per_worker, port=args.port, bind=args.bind,
                          chief=args.chief, name=args.name, gpus_per_worker=args.gpus_per_worker,
                          max_deaths=args.max_deaths, start_timeout=args.start_timeout, time_budget=time_budget,
                          ray=args.ray, cpus_per_worker=args.cpus_per_worker)
    try:
        result = run(options, handle_signals=True)
    except KeyboardInterrupt:
        return 130
    return result.chief_status or 0


def _report(args: argparse.Namespace) -> int:
    from kfitx.search import report
    from kfitx.search.budget import parse_duration

    if args.plot:
        report.require_matplotlib()
    limits = {name: None if getattr(args, name) is None else parse_duration(getattr(args, name), flag)
              for name, flag in (("max_seconds", "--max-seconds"), ("max_epoch_seconds", "--max-epoch-seconds"))}
    search = report.load(args.directory, args.project)
    print(report.summary(search))
    print()
    print(report.leaderboard(search))
    failed = report.failures(search)
    if failed:
        print()
        print(failed)
    if args.plot:
        report.plot(search, args.plot)
        print(f"\nPlot written to {args.plot}")
    if args.best or any(v is not None for v in limits.values()):
        print()
        print(report.describe_best(search, **limits))
    return 1 if any(t.status == report.UNREADABLE for t in search.trials) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kfitx", description="Interchangeable Keras training strategies.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show every installed strategy and the distribution providing it")

    check = sub.add_parser("check", help="check an installed strategy against the fit contract (kfitx.testing)")
    check.add_argument("name", help="the strategy's name, as `kfitx list` shows it")
    check.add_argument("--rules", help="only these rules, comma-separated")
    check.add_argument("--skip", help="rules not to run, comma-separated (e.g. tuner-trial)")
    weights = check.add_mutually_exclusive_group()
    weights.add_argument("--tolerance", type=float,
                         help="largest weight difference from 'memory' the strategy claims "
                              "(default: its weight_tolerance attribute, else 1e-6)")
    weights.add_argument("--no-weights", action="store_true",
                         help="the strategy makes no claim to train like 'memory'")
    check.add_argument("--source", metavar="MODULE:FUNCTION",
                       help="(x, y) -> the data the strategy trains on (e.g. one-hot labels, files of its own): "
                            "the training data, the validation data and the reference run's alike")
    check.add_argument("--model", metavar="MODULE:FUNCTION",
                       help="seed -> a compiled keras.Model for that data (8 features, 3 classes)")
    check.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="a strategy option to check it with (a Python literal, else text); repeatable")

    plugin = sub.add_parser("plugin", help="write a strategy plugin package")
    plugin_sub = plugin.add_subparsers(dest="plugin_command", required=True)
    new = plugin_sub.add_parser("new", help="write ./kfitx-NAME/: a working strategy, its entry point, a test "
                                            "running the conformance kit, a README")
    new.add_argument("name", help="the strategy's name (e.g. mixup)")
    new.add_argument("--directory", default=".", help="where to write kfitx-NAME/ (default: here)")

    bench = sub.add_parser("bench", help="train one model through several strategies and compare them")
    bench.add_argument("--strategies", default="plain,memory,loop",
                       help="comma-separated strategy names; 'plain' is the same model through plain "
                            "model.fit, the baseline of the 'vs plain' column (default: plain,memory,loop)")
    bench.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    bench.add_argument("--data", default="digits", choices=["digits", "synthetic"],
                       help="digits: scikit-learn's bundled 8x8 digits; synthetic: --samples random samples")
    bench.add_argument("--samples", type=int, default=4096, help="samples of the synthetic data")
    bench.add_argument("--epochs", type=int, default=3)
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--plot", metavar="FILE.png", help="also draw the results (needs kfitx[plot])")
    bench.add_argument("--in-process", action="store_true",
                       help="run every strategy in this process (quicker; peak memory is then shared)")
    bench.add_argument("--timeout", type=float, default=600.0, help="seconds per strategy (default 600)")
    bench.add_argument("--backend", metavar="NAMES",
                       help="compare Keras backends: every strategy on each, e.g. tensorflow,jax,torch "
                            "(one process each; ratios against plain model.fit on the same backend)")

    from kfitx.search.launch.options import DEFAULT_RECYCLE_AFTER

    tune = sub.add_parser("tune", help="run a keras-tuner search script as a chief plus parallel worker processes",
                          description="Runs SCRIPT (an unchanged keras-tuner search) as keras-tuner's chief plus "
                                      "worker processes. Options go before SCRIPT; what follows is SCRIPT's.")
    tune.add_argument("--workers", type=int, help="worker processes on this host (default: one per usable core, "
                                                  "or one per --gpus-per-worker GPUs where there are GPUs)")
    tune.add_argument("--trials-per-worker", type=int, default=DEFAULT_RECYCLE_AFTER, metavar="K",
                      help=f"trials a worker process runs before a fresh one replaces it, so memory stays flat; "
                           f"0: never (default {DEFAULT_RECYCLE_AFTER})")
    tune.add_argument("--port", type=int, help="the chief's port (default: a free one)")
    tune.add_argument("--bind", default="127.0.0.1",
                      help="address the chief listens on; 0.0.0.0 (or this host's address) lets other hosts join "
                           "(default 127.0.0.1)")
    tune.add_argument("--chief", metavar="HOST:PORT", help="join the search of the chief at HOST:PORT with this "
                                                           "host's workers instead of starting one")
    tune.add_argument("--name", help="prefix of this host's worker ids when joining (default: the host name); "
                                     "each joining kfitx tune needs its own")
    tune.add_argument("--gpus-per-worker", type=float, help="GPUs per worker (default 1 where there are GPUs; "
                                                            "with --ray, fractions share a device)")
    tune.add_argument("--ray", metavar="ADDRESS", help="run the chief and the workers as actors on a Ray cluster: "
                                                       "HOST:PORT, auto (the cluster of this node) or local (start "
                                                       "one here); needs kfitx[ray]")
    tune.add_argument("--cpus-per-worker", type=float, help="with --ray: CPUs each worker actor holds (default 1; "
                                                            "default --workers: as many as the cluster has room for)")
    tune.add_argument("--max-deaths", type=int, default=3, metavar="R",
                      help="worker deaths one trial may cause before it is ended as FAILED, and chief "
                           "deaths before the search stops (default 3)")
    tune.add_argument("--start-timeout", type=float, default=600.0,
                      help="seconds to wait for the chief to answer (default 600)")
    tune.add_argument("--time-budget", metavar="DURATION",
                      help="wall-time budget of the search, e.g. 20m, 90s, 1h30m or seconds: no trial starts once "
                           "it is spent and running trials stop at their next epoch end; the same command with a "
                           "larger budget continues the search (not with Hyperband)")
    tune.add_argument("script", help="the search script")
    tune.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")

    rep = sub.add_parser("report", help="the leaderboard (and a plot) of a keras-tuner search directory")
    rep.add_argument("directory", help="the tuner's `directory` (or its project folder)")
    rep.add_argument("--project", help="the tuner's project_name, when the directory holds several")
    rep.add_argument("--plot", metavar="FILE.png", help="score against wall time, score against training seconds "
                                                         "with the Pareto front, and throughput per strategy "
                                                         "(needs kfitx[plot])")
    rep.add_argument("--best", action="store_true",
                     help="also the best trial's strategy and hyperparameters, and how to retrain it")
    rep.add_argument("--max-seconds", metavar="S",
                     help="with --best: the best trial that trained within S seconds (also 90s, 2m, ...)")
    rep.add_argument("--max-epoch-seconds", metavar="S",
                     help="with --best: the best trial whose training took at most S seconds an epoch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kfitx`` console script."""
    args = _parser().parse_args(argv)
    if args.command not in ("tune", "report"):  # these two never import TensorFlow here
        from kfitx.runtime.startup import quiet_start

        quiet_start()  # TensorFlow's C++ start-up lines, unless TF_CPP_MIN_LOG_LEVEL is set
    try:
        return {"list": _list, "check": _check, "plugin": _plugin, "bench": _bench, "tune": _tune,
                "report": _report}[args.command](args)
    except KfitxError as err:
        print(f"kfitx: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
