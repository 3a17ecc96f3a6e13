"""The ``kfitx`` command. ``kfitx list`` shows every installed strategy and its provider."""

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kfitx`` console script."""
    parser = argparse.ArgumentParser(prog="kfitx", description="Interchangeable Keras training strategies.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show every installed strategy and the distribution providing it")
    args = parser.parse_args(argv)
    try:
        return {"list": _list}[args.command](args)
    except KfitxError as err:
        print(f"kfitx: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
