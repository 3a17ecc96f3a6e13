"""The ``kfitx`` command.

* ``kfitx list`` -- every installed strategy and the distribution providing it;
* ``kfitx check NAME`` -- the conformance kit (:mod:`kfitx.testing`) on an installed strategy;
* ``kfitx bench`` -- one model and data set through several strategies (:mod:`kfitx.bench`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kfitx.errors import KfitxError

__all__ = ["main"]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    from kfitx.registry import available_strategies

    infos = available_strategies()
    rows = [("name", "description", "provided by", "version", "plugin")]
    names = [info.name for info in infos]
    for info in infos:
        name = info.name + (" (CONFLICT)" if names.count(info.name) > 1 else "")
        rows.append((name, info.description, info.distribution, info.version, info.plugin))
    print(_table(rows))
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _check(args: argparse.Namespace) -> int:
    from kfitx.registry import get_registry
    from kfitx.testing import check_strategy

    info = get_registry().lookup(args.name)
    print(f"Checking strategy '{info.name}' ({info.cls.__module__}.{info.cls.__qualname__}, "
          f"from {info.distribution} {info.version}) against the fit contract:", flush=True)
    tolerance = None if args.no_weights else ("class" if args.tolerance is None else args.tolerance)
    report = check_strategy(
        info.cls, rules=_names(args.rules), skip=_names(args.skip) or (), tolerance=tolerance,
        plugin=get_registry().pm.get_plugin(info.plugin), raise_on_failure=False,
        on_result=lambda r: print(f"  {r.rule:<16} {r.status.upper():7} {r.seconds:5.1f} s", flush=True),
    )
    print()
    print(report)
    for result in report.results:
        if result.error is not None:
            print(f"\n{result.error}")
    return 0 if report.ok else 1


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
                          subprocesses=not args.in_process, timeout=args.timeout)
    print()
    print(bench.format_table(results))
    if args.plot:
        bench.plot(results, args.plot, spec)
        print(f"\nPlot written to {args.plot}")
    return 1 if any(r.error for r in results) else 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kfitx`` console script."""
    args = _parser().parse_args(argv)
    from kfitx._startup import quiet_start

    quiet_start()  # TensorFlow's C++ start-up lines, unless TF_CPP_MIN_LOG_LEVEL is set
    try:
        return {"list": _list, "check": _check, "bench": _bench}[args.command](args)
    except KfitxError as err:
        print(f"kfitx: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
