"""The :class:`Strategy` base class: one way of training a Keras model.

A strategy has a ``name`` and a ``description``, takes its own options as
keyword arguments (declared with their defaults in ``defaults``), may refuse
data it cannot serve (``supports``), may declare tunable hyperparameters
(``hyperparameters``), and implements one method, ``fit(model, plan)``.

Between checking the options and training, ``kfitx.fit`` enters one hook of every
strategy, :meth:`Strategy.choose`: it gets the fit's :class:`FitRequest` and gives
the :class:`Choice` that trains (by default the strategy itself, with the plan made
for it). ``auto`` is an ordinary strategy that overrides it: it chooses another
strategy, and times a probe of the candidates around the fit.

``fit`` keeps the fit contract (``docs/architecture.md``): the
:class:`kfitx.FitPlan` holds ``model.fit``'s arguments already resolved; every
callback is honoured as ``model.fit`` honours it, and a
``keras.callbacks.History`` is returned.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from kfitx.errors import (
    OptionError,
    PluginError,
    UnsupportedBackendError,
    UnsupportedDataError,
    message,
)
from kfitx.plan import FitPlan, build_plan
from kfitx.plan.checks import CheckedFitArgs, unknown_names
from kfitx.runtime import BACKENDS as RUNTIME_BACKENDS
from kfitx.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import keras_tuner
    import pluggy

    from kfitx.data import Source

__all__ = ["BACKENDS", "Choice", "Decision", "FitRequest", "Strategy", "Strategies", "check_fit_signature"]

#: The Keras backends kfitx runs on.
BACKENDS = RUNTIME_BACKENDS  # the Keras backends kfitx trains on (kfitx.runtime)


@dataclass(frozen=True)
class Decision:
    """What ``auto`` (or another strategy that chooses one, in :meth:`Strategy.choose`) chose, and why.

    Attributes:
        strategy: The chosen strategy's name (``"memory"``, ``"generator"``, ``"loop"``, or a plugin's).
        reason: One sentence: the rule that decided.
        options: The options passed on to that strategy.
        unused: Options given that the chosen strategy does not take (ignored).
    """

    strategy: str
    reason: str
    options: dict[str, object] = field(default_factory=dict)
    unused: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"kfitx auto: {self.strategy} -- {self.reason}"
        if self.unused:
            text += f" (ignoring {', '.join(self.unused)}: not {self.strategy} options)"
        return text


class Installed(Protocol):
    """One installed strategy, as :meth:`Strategies.available` lists it (a :class:`kfitx.registry.StrategyInfo`)."""

    @property
    def name(self) -> str: ...

    @property
    def cls(self) -> type[Strategy]: ...


class Strategies(Protocol):
    """What :meth:`Strategy.choose` may ask of the installed strategies (:class:`kfitx.registry.Registry` is one)."""

    @property
    def pm(self) -> pluggy.PluginManager: ...

    def available(self) -> Sequence[Installed]: ...

    def strategy_class(self, strategy: str | Strategy | type[Strategy]) -> type[Strategy]: ...

    def get(self, strategy: str | Strategy | type[Strategy], **options: object) -> Strategy: ...


@dataclass(frozen=True, eq=False)
class FitRequest:
    """One ``kfitx.fit`` call as :meth:`Strategy.choose` sees it, before anything trains.

    Attributes:
        model: The compiled ``keras.Model``.
        source: The training data as ``kfitx.fit`` received it, made a :class:`kfitx.data.Source`
            (before ``validation_split`` and ``sample_weight``: the plan applies them).
        runtime: The backend and the distribution of the fit (:class:`kfitx.runtime.Runtime`).
        registry: The fit's :class:`kfitx.registry.Registry` (what :class:`Strategies` says): the installed strategies
            (``registry.available()``, ``registry.get(name, **options)``) and the hooks (``registry.pm.hook``).
        fit_args: ``model.fit``'s arguments, checked (what :meth:`plan` resolves for a strategy).
    """

    model: keras.Model
    source: Source
    runtime: Runtime
    registry: Strategies
    fit_args: CheckedFitArgs = field(default_factory=CheckedFitArgs)

    def plan(self, strategy: Strategy) -> FitPlan:
        """The plan for ``strategy`` to train this fit, as ``kfitx.fit`` makes it for the strategy the user named.

        Raises:
            UnsupportedBackendError: ``strategy`` does not train on the fit's backend
                (:meth:`Strategy.require_backend`).
            UnsupportedDataError: ``strategy`` cannot serve the data (:meth:`Strategy.require`).
            KfitxError: a fit argument the data or the model refuses (:func:`kfitx.plan.build_plan`).
        """
        strategy.require_backend(self.runtime.backend)
        strategy.require(self.source)
        return build_plan(self.model, self.source, strategy, self.fit_args, self.runtime)


@dataclass(frozen=True)
class Choice:
    """What trains one fit: the answer of :meth:`Strategy.choose`.

    Attributes:
        strategy: The strategy whose ``fit`` runs.
        plan: Its plan (:meth:`FitRequest.plan`).
        decision: Why, when the strategy chose another (``auto``): ``kfitx.fit`` logs it, prints it
            unless ``verbose=0``, and records its reason in ``history.kfitx`` under the choosing
            strategy's name. ``None`` for a strategy that trains itself.
    """

    strategy: Strategy
    plan: FitPlan
    decision: Decision | None = None


class Strategy(ABC):
    """One way of training a Keras model. Subclass it to write a strategy plugin.

    Class attributes:
        name: The name users pass as ``strategy=``; unique among installed plugins.
        description: One line shown by ``kfitx list``.
        defaults: Option names and their default values; ``__init__`` accepts
            exactly these as keyword arguments.
        backends: The Keras backends the strategy trains on (default
            ``("tensorflow",)``: declare the others once ``kfitx check NAME`` passes
            with ``KERAS_BACKEND`` set to them). ``kfitx.fit`` on another backend
            is an :class:`kfitx.UnsupportedBackendError`; ``kfitx list`` shows them.
        interchangeable: Whether the strategy trains to the same weights as ``model.fit``
            on the same data (as the conformance kit checks), so that ``strategy="auto"``
            may choose it for its speed alone, by timing a short probe of each such
            strategy (default ``False``). An option that changes what is trained (a
            step of your own, augmentation) makes an instance not interchangeable:
            override :meth:`is_interchangeable` for it.

    ``kfitx.fit`` enters :meth:`choose` for every strategy, around the fit: the default trains
    the strategy itself; one that trains with another (as ``auto`` does) overrides it.

    Example:
        ```python
        import kfitx


        class PlainFit(kfitx.Strategy):
            name = "plainfit"
            description = "model.fit on the arrays as they are"
            defaults = {"steps_per_execution": "auto"}

            def supports(self, source):
                if not source.in_memory:  # arrays, in RAM or memory-mapped
                    return "plainfit trains on arrays; use strategy='generator' for streams."
                return None

            def fit(self, model, plan):
                validation = None if plan.validation is None else plan.validation.arrays()
                with plan.grouped(model):  # steps per compiled call, as the plan decided
                    return model.fit(**plan.fit_kwargs(plan.train.arrays(), validation))
        ```
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, object]] = {}
    #: Options that were renamed: old name -> new name (the old one is an ``OptionError`` naming the new).
    renamed_options: ClassVar[Mapping[str, str]] = {}
    backends: ClassVar[tuple[str, ...]] = ("tensorflow",)
    interchangeable: ClassVar[bool] = False

    def __init__(self, **options: object) -> None:
        self.check_options(options)
        for key, value in options.items():
            if getattr(value, "kfitx_tunable", False):  # a kfitx.tuner.Tunable, left unresolved
                raise OptionError(message(
                    f"`{key}` of strategy '{self.name}' to be a value; a kfitx.tuner.Tunable is resolved per "
                    "trial by kfitx.tuner (StrategyHyperModel, kfitx.tuner.fit)", f"{key}={value!r}",
                    "Pass the value itself to kfitx.fit, or put the Tunable in strategy_options."))
        self.options: dict[str, Any] = {**self.defaults, **options}

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Raises :class:`OptionError` for a name this strategy does not take: the one check of option names.

        ``__init__`` makes it; ``kfitx.fit`` hands every keyword that is not a fit argument to the
        strategy, so an unknown name is reported once, listing the fit arguments and these options.
        A renamed option (:attr:`renamed_options`) is named with its new name.
        """
        for old in sorted(set(options) & set(cls.renamed_options)):
            new = cls.renamed_options[old]
            raise OptionError(message(
                f"Strategy '{cls.name}' calls this option `{new}`", f"{old}={options[old]!r}",
                f"Rename it: {new}={options[old]!r}."))
        unknown = {key: value for key, value in options.items() if key not in cls.defaults}
        if unknown:
            raise unknown_names(unknown, cls.name, list(cls.defaults))

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) is not v}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    def supports(self, source: Source) -> str | None:
        """Returns ``None`` if this strategy can train on ``source``, else the reason it cannot."""
        return None

    def require(self, source: Source) -> None:
        """Raises :class:`UnsupportedDataError` if :meth:`supports` gives a reason."""
        reason = self.supports(source)
        if reason:
            raise UnsupportedDataError(
                f"Strategy '{self.name}' cannot train on this data. "
                f"Received: {source.describe()}. {reason}"
            )

    def require_backend(self, backend: str | None = None) -> None:
        """Raises :class:`UnsupportedBackendError` unless ``backend`` (default: the active Keras backend)
        is in :attr:`backends`."""
        if backend is None:
            from kfitx.runtime import resolve

            backend = resolve().backend
        if backend in self.backends:
            return
        raise UnsupportedBackendError(message(
            f"Strategy '{self.name}' trains on the backends it declares: {', '.join(self.backends)}",
            f"KERAS_BACKEND={backend}",
            f"Set KERAS_BACKEND to one of those, or pick a strategy for {backend} (`kfitx list` shows each "
            "strategy's backends). A plugin's author declares a backend with `backends = (...)` once "
            f"`KERAS_BACKEND={backend} kfitx check {self.name}` passes."))

    def is_interchangeable(self) -> bool:
        """Whether this instance, with its options, trains to ``model.fit``'s weights on the same data.

        ``strategy="auto"`` times only such strategies against each other and trains
        with the fastest. Default: :attr:`interchangeable`; a strategy whose options
        can change what is trained returns ``False`` for them.
        """
        return self.interchangeable

    def grouping(self) -> int | str | tuple[int, str]:
        """How many steps per compiled call this strategy wants; the plan decides from it.

        Returns:
            ``"auto"`` (the plan groups where no callback can tell), a positive int
            (asked for), or ``(steps, reason)`` when the strategy itself fixes it
            (e.g. a step that runs in Python). Default: the ``steps_per_execution``
            option if the strategy has one, else ``"auto"``.
        """
        return self.options.get("steps_per_execution", "auto")

    @contextlib.contextmanager
    def choose(self, request: FitRequest) -> Iterator[Choice]:
        """Which strategy trains this fit, with its plan, and why: the hook ``kfitx.fit`` enters for every strategy.

        ``kfitx.fit`` checks the fit arguments and this strategy's options, then enters
        ``with strategy.choose(request) as choice:`` and runs the fit inside it (the
        ``kfitx_fit`` hook on ``choice.strategy`` and ``choice.plan``), so a strategy may
        hold something for the fit's length (``auto`` holds the model at the steps per call
        its probe compiled). The default trains this strategy: ``Choice(self, request.plan(self))``.

        Override it to choose another strategy (``auto`` asks the ``kfitx_choose_strategy``
        hook of ``request.registry``, takes the strategy from the registry and times the
        candidates on ``request.model``): make each candidate's plan with ``request.plan``,
        which checks its backend and the data as ``kfitx.fit`` would, and yield exactly one
        :class:`Choice`, with a :class:`Decision` that says why.

        Example:
            ```python
            class ByPlace(kfitx.Strategy):
                name = "byplace"
                description = "memory for arrays, generator for streams"
                backends = ("tensorflow", "jax", "torch")

                @contextlib.contextmanager
                def choose(self, request):
                    name = "memory" if request.source.in_memory else "generator"
                    chosen = request.registry.get(name)
                    why = kfitx.Decision(name, f"the data is {request.source.kind}")
                    yield kfitx.Choice(chosen, request.plan(chosen), why)

                def fit(self, model, plan):  # kfitx.fit trains the chosen one; this serves direct calls
                    return kfitx.get_strategy("memory").fit(model, plan)
            ```

        Args:
            request: The fit: the model, the data, the runtime, the registry, the checked fit arguments.

        Yields:
            The :class:`Choice` that trains.
        """
        yield Choice(self, request.plan(self))

    def hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, object]:
        """Declares this strategy's tunables on a keras-tuner ``hp``; returns chosen options.

        The tuner bridge calls it inside a conditional scope that is active only
        when this strategy is chosen, so names need no prefix of their own.
        """
        return {}

    @abstractmethod
    def fit(self, model: keras.Model, plan: FitPlan) -> keras.callbacks.History:
        """Trains ``model`` as ``plan`` says.

        Args:
            model: A compiled ``keras.Model``.
            plan: The fit, resolved (:class:`kfitx.FitPlan`): ``plan.train`` and
                ``plan.validation`` are the sources, the rest ``model.fit``'s
                arguments with their defaults; ``plan.fit_kwargs(...)`` and
                ``plan.grouped(model)`` serve strategies that delegate to ``model.fit``.

        Returns:
            The ``keras.callbacks.History`` of the run.
        """


def check_fit_signature(cls: type, where: str) -> None:
    """Raises :class:`PluginError` if ``cls.fit`` is still written as kfitx 0.1's ``fit(model, source, **fit_args)``.

    Args:
        cls: The strategy class.
        where: Who provides it, for the message (plugin and distribution).
    """
    fit = getattr(cls, "fit", None)
    if fit is None or getattr(fit, "__isabstractmethod__", False):
        return
    try:
        params = inspect.signature(fit).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin or C callable
        return
    names = list(params)
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "source" in names or (var_keyword and "plan" not in names):
        shown = ", ".join(str(p) for p in params.values())
        raise PluginError(message(
            f"Strategy {cls.__name__} ({where}) to implement fit(self, model, plan), the kfitx 0.2 API",
            f"fit({shown}), the kfitx 0.1 signature",
            "Change it to `def fit(self, model, plan):` and read the data and fit arguments from the plan: "
            "plan.train / plan.validation (sources, split and weighted), plan.batch_size, plan.epochs, "
            "plan.callbacks, ...; delegate with `with plan.grouped(model): return "
            "model.fit(**plan.fit_kwargs(plan.train.arrays(), validation))`. kfitx.split_data, "
            "kfitx.choose_steps_per_execution and kfitx.steps_per_execution are gone: the plan did that work. "
            "See CHANGELOG.md (0.2.0)."))
