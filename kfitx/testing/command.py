"""What ``kfitx check`` reads from its command line: ``--source`` / ``--model MODULE:FUNCTION`` and
``--option KEY=VALUE``.

Functions are imported from the current directory first (where a plugin's author runs the
command), then from the installed packages, as ``python -m`` finds modules.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from kfitx.errors import OptionError, describe_error, message

__all__ = ["load_function", "parse_options"]


def load_function(spec: str, flag: str) -> Callable[..., Any]:
    """The function ``MODULE:FUNCTION`` names (``FUNCTION`` may be dotted: ``module:Class.method``).

    Raises:
        OptionError: the text is not ``MODULE:FUNCTION``, the module does not import, or it has no such callable.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise OptionError(message(f"{flag} MODULE:FUNCTION, e.g. {flag} my_plugin_data:make_source", repr(spec),
                                  "Name the module, a colon, then the function in it."))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except Exception as err:
        raise OptionError(message(f"{flag} {spec}: a module {module_name!r} that imports",
                                  describe_error(err), "Run the command where the module is, or install it.")) from err
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise OptionError(message(f"{flag} {spec}: a function {attr!r} in module {module_name}",
                                  "nothing callable by that name", "Check the spelling after the colon."))
    return target


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as options: the value as a Python literal (``3``, ``0.5``, ``None``, ``'a'``, ``[1, 2]``),
    else as the text itself.

    Raises:
        OptionError: an item without ``=``, or a key given twice.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(message("--option KEY=VALUE, e.g. --option alpha=0.2", repr(item),
                                      "Give the option's name, '=', then its value."))
        if key in options:
            raise OptionError(message(f"option {key!r} once", "it twice",
                                      "Give each option once."))
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options
