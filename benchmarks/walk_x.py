"""The walk of ``x`` from ``kfitx.fit`` to the model's ``train_step``: how many kfitx calls it takes, across how many modules.

Traced with ``sys.setprofile`` on a TensorFlow MLP fit of numpy arrays (one epoch, two batches).
A call is on the walk when it is a call of a function in a ``kfitx`` module that receives ``x``
or an object made from it: an argument that is ``x``, or was returned by a call on the walk, or
holds one of those in an attribute, a tuple, list or dict (one level deep) -- and passes it on: returns an
object (not ``None``, a flag, a number, a name, an enum member or a tuple of
those; ``--checks-too`` counts the calls that only look). The walk ends when the
model's ``train_step`` first runs (inside Keras's traced step). A *hop* is a call on the walk in
another module than the call before it on the walk; *modules* are the distinct modules on it.

Usage::

    python benchmarks/walk_x.py                   # generator and loop
    python benchmarks/walk_x.py --strategy memory --show
"""

from __future__ import annotations

import argparse
import enum
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _holds(value: object, tainted: set[int]) -> bool:
    if id(value) in tainted:
        return True
    children: list[object] = []
    if isinstance(value, (tuple, list)):
        children = list(value)
    elif isinstance(value, dict):
        children = list(value.values())
    else:
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            children = list(attrs.values())
        slots = getattr(type(value), "__slots__", ())
        children += [getattr(value, s, None) for s in (slots if isinstance(slots, (tuple, list)) else ())]
    return any(id(c) in tainted for c in children)


def walk(strategy: str, checks_too: bool = False) -> list[tuple[str, str]]:
    import keras
    import numpy as np

    import kfitx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, size=(64,))
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    tainted: set[int] = {id(x)}
    keep: list[object] = [x]  # ids stay valid while their objects live
    calls: list[tuple[str, str]] = []
    carried: set[int] = set()  # the calls that passed the data on (returned an object made from it)
    stack: list[int] = []
    done = False

    def profile(frame, event, arg):  # noqa: ANN001
        nonlocal done
        if done:
            return
        if event == "call":
            code = frame.f_code
            if code.co_name == "train_step":
                done = True
                return
            module = frame.f_globals.get("__name__", "")
            on = False
            if module.startswith("kfitx") and not module.startswith("kfitx.errors"):
                args = [frame.f_locals.get(n) for n in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]]
                on = any(_holds(a, tainted) for a in args)
                if on:
                    calls.append((module, code.co_qualname))
            stack.append(len(calls) - 1 if on else -1)
        elif event == "return" and stack:
            index = stack.pop()
            if index >= 0 and _carries(arg):
                tainted.add(id(arg))
                keep.append(arg)
                carried.add(index)

    sys.setprofile(profile)
    try:
        kfitx.fit(model, x, y, strategy=strategy, epochs=1, batch_size=32, verbose=0, steps_per_execution=1)
    finally:
        sys.setprofile(None)
    return [call for i, call in enumerate(calls) if i in carried or checks_too]


def _carries(value: object) -> bool:
    """Whether a return value passes the data on: an object, not a verdict (``None``, a flag, a number, a name)."""
    verdicts = (bool, int, float, str, bytes, enum.Enum)
    if isinstance(value, tuple) and all(v is None or isinstance(v, verdicts) for v in value):
        return False  # a decision and its reason (a grouping: steps, why)
    return value is not None and not isinstance(value, verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", action="append")
    parser.add_argument("--show", action="store_true", help="print the walk")
    parser.add_argument("--checks-too", action="store_true",
                        help="count the calls that only look at the data too (checks, sizes, flags)")
    args = parser.parse_args()
    for name in args.strategy or ["generator", "loop"]:
        calls = walk(name, args.checks_too)
        hops = sum(1 for a, b in zip(calls, calls[1:]) if a[0] != b[0])
        print(f"{name}: {len(calls)} calls, {hops} hops, {len({m for m, _ in calls})} modules")
        if args.show:
            for module, fn in calls:
                print(f"    {module}.{fn}")


if __name__ == "__main__":
    main()
