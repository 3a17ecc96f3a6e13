"""Strategy options as hyperparameters: :class:`Tunable`, and the search space of the strategies.

Separation of concerns:

* :class:`Tunable` wraps ``fn(hp) -> option value``; it is a marker, resolved by
  the tuner bridge only (``kfitx.fit`` never sees one).
* :func:`declare` is the whole strategy side of a trial's search space:
  ``strategy`` (a ``Choice``, or ``Fixed`` for one name), then, for each
  candidate, a conditional scope active only when it is chosen, under its name
  scope. Inside the chosen strategy's scope each :class:`Tunable` option is
  resolved, the strategy is made with the resolved options (it checks them), and
  its own ``Strategy.hyperparameters(hp)`` are declared. Scopes of the other
  candidates are entered but nothing is called in them: keras-tuner's inactive
  hyperparameters read as ``None``, which a user's function should never have
  to handle; keras-tuner's tuners build the hypermodel once per candidate when
  they start (``_activate_all_conditions``), so every candidate's tunables are
  declared before the first trial anyway.
* A :class:`Tunable` that raises, or whose value its option rejects, is an
  :class:`kfitx.OptionError` naming the trial's hyperparameter values (the tuner
  bridge makes it fatal to the search); so is a :class:`Tunable` for an option the
  strategy's own ``hyperparameters(hp)`` tunes, or declaring one of its names
  (:func:`check_collisions`), which keras-tuner would otherwise share silently.

Imports nothing heavy and no registry: the caller passes ``make(name, **options)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from kfitx.errors import KfitxError, OptionError, message

if TYPE_CHECKING:
    import keras_tuner

    from kfitx.strategy import Strategy

__all__ = ["Tunable", "check_collisions", "declare", "trial_values"]


class Tunable:
    """A strategy option whose value is computed from the trial's hyperparameters.

    Args:
        fn: ``fn(hp) -> value``: declares hyperparameters on ``hp`` (``hp.Int``,
            ``hp.Choice``, ...) and returns the option's value for this trial.

    Its hyperparameters live under the strategy's name (``generator/rotation``) and
    are active only in trials that choose that strategy; ``build_model`` never sees
    them. It works for any option of any strategy, plugins' included.

    Example:
        ```python
        from tensorflow.keras.preprocessing.image import ImageDataGenerator

        augment = kfitx.tuner.Tunable(
            lambda hp: ImageDataGenerator(rotation_range=hp.Int("rotation", 0, 30, step=10)))
        hypermodel = kfitx.tuner.StrategyHyperModel(
            build_model, strategies=["memory", "generator"],
            strategy_options={"generator": {"augment": augment}})
        ```
    """

    __slots__ = ("fn",)

    #: Strategies refuse an unresolved Tunable as an option value by this mark (they do not import this module).
    kfitx_tunable = True

    def __init__(self, fn: Callable[[keras_tuner.HyperParameters], object]) -> None:
        if not callable(fn) or isinstance(fn, Tunable):
            raise OptionError(message("Tunable(fn) takes a function hp -> option value",
                                      f"{type(fn).__name__} {fn!r}",
                                      "Pass e.g. Tunable(lambda hp: hp.Int('workers', 1, 4))."))
        self.fn = fn

    def __repr__(self) -> str:
        return f"Tunable({getattr(self.fn, '__qualname__', None) or self.fn!r})"


def trial_values(hp: keras_tuner.HyperParameters) -> str:
    """``lr=0.01, strategy='generator', ...``: the trial's hyperparameter values, sorted by name."""
    values = getattr(hp, "values", {}) or {}
    return ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())) or "none yet"


def _resolve(hp: keras_tuner.HyperParameters, name: str, options: Mapping[str, object]) -> dict[str, object]:
    """The options with every :class:`Tunable` replaced by its value for this trial."""
    resolved = {}
    for key, value in options.items():
        if not isinstance(value, Tunable):
            resolved[key] = value
            continue
        try:
            resolved[key] = value.fn(hp)
        except Exception as err:
            raise OptionError(message(
                f"the Tunable of strategy '{name}' option `{key}` to return the option's value",
                f"{type(err).__name__}: {err} (trial hyperparameters: {trial_values(hp)})",
                "Fix the function for these values: it is called once per trial with the trial's hp."
            )) from err
    return resolved


def declare(hp: keras_tuner.HyperParameters, names: Sequence[str], strategy_options: Mapping[str, Mapping[str, object]],
            make: Callable[..., Strategy]) -> tuple[str, dict[str, object]]:
    """Declares the strategy side of the search space on ``hp``; returns the chosen strategy and its options.

    Args:
        hp: The trial's ``keras_tuner.HyperParameters``.
        names: The candidate strategies (checked names).
        strategy_options: Options per name; values may be :class:`Tunable`.
        make: ``make(name, **options) -> Strategy`` (the registry's ``get``).

    Returns:
        ``(chosen name, its options)``: Tunables resolved, its own tunables' values added.

    Raises:
        OptionError: a Tunable raised, or the strategy rejected a value a Tunable returned
            (the message names the trial's hyperparameter values); other ``KfitxError``s of
            the strategy's options as the strategy raises them.
    """
    chosen = hp.Choice("strategy", list(names)) if len(names) > 1 else hp.Fixed("strategy", names[0])
    options: dict[str, object] = {}
    for name in names:
        given = dict(strategy_options.get(name, {}))
        tunables = sorted(k for k, v in given.items() if isinstance(v, Tunable))
        with hp.conditional_scope("strategy", [name]), hp.name_scope(name):
            if name != chosen:  # its fixed options are still checked in every trial
                make(name, **{k: v for k, v in given.items() if k not in tunables})
                continue
            options = _resolve(hp, name, given)
            try:
                strategy = make(name, **options)
            except KfitxError as err:
                if not tunables:
                    raise
                shown = ", ".join(f"{k}={options[k]!r}" for k in tunables)
                raise OptionError(message(
                    f"strategy '{name}' to accept what its Tunable option(s) returned",
                    f"{shown} (trial hyperparameters: {trial_values(hp)}), refused with: {err}",
                    "Make the function return a value the option takes, for every value it can be given."
                )) from err
            if tunables:
                check_collisions(name, given, strategy, type(hp))
            options.update(strategy.hyperparameters(hp))
    return chosen, options


def _declared(fn: Callable[[keras_tuner.HyperParameters], object],
              new_hp: Callable[[], keras_tuner.HyperParameters]) -> set[str]:
    """The hyperparameter names ``fn(hp)`` declares on a fresh ``hp``."""
    hp = new_hp()
    fn(hp)
    return {h.name for h in getattr(hp, "space", [])}


def check_collisions(name: str, options: Mapping[str, object], strategy: Strategy,
                     new_hp: Callable[[], keras_tuner.HyperParameters]) -> None:
    """Refuses a :class:`Tunable` that collides with the strategy's own hyperparameters.

    A strategy's :meth:`~kfitx.Strategy.hyperparameters` may tune an option itself; a Tunable for
    the same option, or declaring a hyperparameter of the same name, would silently share or
    override it (keras-tuner returns the first declaration of a name).

    Args:
        name: The strategy's name.
        options: Its options as given, Tunables included.
        strategy: The strategy, made with its fixed options.
        new_hp: Makes an empty ``keras_tuner.HyperParameters``.

    Raises:
        OptionError: naming the option or hyperparameter both declare.
    """
    tunables = {k: v for k, v in options.items() if isinstance(v, Tunable)}
    if not tunables:
        return
    hp = new_hp()
    own = set(strategy.hyperparameters(hp) or {})
    own_names = {h.name for h in getattr(hp, "space", [])}
    clashes = sorted(set(tunables) & own)
    for key, tunable in sorted(tunables.items()):
        try:
            shared = sorted(_declared(tunable.fn, new_hp) & own_names)
        except Exception:  # a Tunable that raises is reported, with the trial's values, where it is resolved
            continue
        clashes += [f"{key} (hyperparameter {h!r})" for h in shared if key not in clashes]
    if clashes:
        raise OptionError(message(
            f"a Tunable in strategy_options['{name}'] for an option strategy '{name}' does not tune itself",
            f"Tunables for {', '.join(clashes)}, which '{name}'.hyperparameters(hp) declares too "
            f"(its own: {', '.join(sorted(own_names)) or 'none'})",
            "Drop the Tunable to search the strategy's own range, or give the option a fixed value; "
            "a Tunable may declare only names the strategy does not."))
