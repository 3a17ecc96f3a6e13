"""A keras-tuner search space as a compact table: :func:`search_space_table`.

keras-tuner's ``tuner.search_space_summary()`` prints each hyperparameter's
configuration as a raw dict; this prints one line per hyperparameter: its
name, kind, the values it takes, and the condition under which it is searched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras_tuner
    from keras_tuner.src.engine.hyperparameters.hyperparameter import HyperParameter

__all__ = ["search_space_table"]


def _number(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
        return text if any(c in text for c in ".en") else text + ".0"  # 0.0 stays a float
    return str(value)


def _values(config: dict[str, Any], kind: str) -> str:
    if kind == "Choice":
        return ", ".join(_number(v) for v in config.get("values", []))
    if kind == "Boolean":
        return "True, False"
    if kind == "Fixed":
        return _number(config.get("value"))
    if kind in ("Int", "Float"):
        low, high = _number(config.get("min_value")), _number(config.get("max_value"))
        text = f"{low} .. {high}"
        step = config.get("step")
        sampling = config.get("sampling") or "linear"
        if step is not None and not (kind == "Int" and step == 1):
            text += f", step {_number(step)}"
        if sampling != "linear":
            text += f", {sampling}"
        return text
    return ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("name", "default", "conditions"))


def _condition(condition: object) -> str:
    config = condition.get_config() if hasattr(condition, "get_config") else {}
    name, values = config.get("name"), config.get("values")
    if name is None or values is None:
        return str(condition)
    return f"{name} = {' or '.join(_number(v) for v in values)}"


def _space(source: object) -> list[HyperParameter]:
    """The hyperparameters of a tuner, an oracle or a ``HyperParameters``."""
    for holder in (source, getattr(source, "oracle", None)):
        hyperparameters = getattr(holder, "hyperparameters", None)
        if hyperparameters is not None and hasattr(hyperparameters, "space"):
            return list(hyperparameters.space)
    if hasattr(source, "space"):
        return list(source.space)
    raise TypeError(f"search_space_table takes a keras-tuner Tuner, Oracle or HyperParameters, not "
                    f"{type(source).__name__}")


def search_space_table(source: keras_tuner.Tuner | keras_tuner.Oracle | keras_tuner.HyperParameters) -> str:
    """The search space of ``source`` as a table, one line per hyperparameter.

    Args:
        source: A keras-tuner ``Tuner`` (its oracle's space: every hyperparameter
            its hypermodel declared when the tuner was made), ``Oracle`` or
            ``HyperParameters``.

    Returns:
        The table, its first line saying how many hyperparameters there are; a
        column ``searched when`` where some are searched only under a condition
        (``strategy = generator``). Print it in place of ``tuner.search_space_summary()``::

            print(kfitx.tuner.search_space_table(tuner))
    """
    space = _space(source)
    rows = []
    for hp in space:
        config = hp.get_config()
        kind = type(hp).__name__
        conditions = getattr(hp, "conditions", None) or []
        rows.append((hp.name, kind, _values(config, kind), "; ".join(_condition(c) for c in conditions)))
    header = ("hyperparameter", "kind", "values", "searched when")
    columns = 4 if any(row[3] for row in rows) else 3
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(columns)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells[:columns], widths)).rstrip()

    out = [f"Search space: {len(rows)} hyperparameter{'s' if len(rows) != 1 else ''}", line(header),
           line(tuple("-" * w for w in widths))]
    out += [line(row) for row in rows]
    return "\n".join(out)
