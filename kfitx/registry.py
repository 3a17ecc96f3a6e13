"""The strategy registry: a pluggy ``PluginManager("kfitx")`` and the lookups on it.

Separation of concerns:

* pluggy registers plugins and validates their hook implementations;
* this module decides *which* plugins load (built-ins first, then entry points
  of group ``kfitx``, minus ``KFITX_BLOCK_PLUGINS``, none if
  ``KFITX_DISABLE_PLUGIN_AUTOLOAD`` is set), loads each entry point on its own
  so that a broken one is reported as a :class:`PluginWarning` and skipped, and
  records which distribution provided each plugin;
* data sources: plugins' answers to the ``kfitx_sources`` hook, asked before kfitx's own
  coercion (:meth:`Registry.coerce`; the data layer knows no registry, so it is given them);
* strategy names are collected from the ``kfitx_strategies`` hook, one plugin at
  a time for the same reason. Two plugins claiming one name is an error, raised
  when that name is asked for, naming both.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from kfitx import hookspecs
from kfitx.data import Source, coerce
from kfitx.errors import KfitxError, OptionError, PluginError, StrategyConflictError, StrategyNotFoundError, message
from kfitx.hookspecs import UNCALLED, hookimpl, undecorated_hooks
from kfitx.plan.checks import closest as _closest
from kfitx.strategy import Strategy, check_fit_signature

if TYPE_CHECKING:
    import keras

    from kfitx.plan import FitPlan

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginWarning",
    "Registry",
    "StrategyInfo",
    "available_strategies",
    "get_registry",
    "get_strategy",
    "is_builtin",
    "register",
    "reset_registry",
    "undecorated_hooks",
]

ENTRY_POINT_GROUP = "kfitx"
BUILTIN_PLUGINS = (
    "kfitx.strategies.memory",
    "kfitx.strategies.generator",
    "kfitx.strategies.loop",
    "kfitx.strategies.auto",
)

#: kfitx's own ``kfitx_fit`` wrappers, registered in every registry, even with ``builtins=False``.
#: Registered by module name, as pytest registers its default plugins: the search layer's
#: trial measurement wraps every fit without the registry importing the search layer.
CORE_PLUGINS = {"kfitx.trial-measure": "kfitx.search.measure"}


class _CoreFit:
    """The fit itself: ``strategy.fit(model, plan)``, the last ``kfitx_fit`` implementation to run."""

    @hookimpl(trylast=True)
    def kfitx_fit(self, strategy: Strategy, model: keras.Model, plan: FitPlan) -> keras.callbacks.History:
        return strategy.fit(model, plan)


class PluginWarning(UserWarning):
    """A plugin could not be loaded or gave a bad answer, and was skipped."""


@dataclass(frozen=True)
class StrategyInfo:
    """One installed strategy and where it came from."""

    name: str
    cls: type[Strategy]
    plugin: str
    distribution: str
    version: str

    @property
    def description(self) -> str:
        return self.cls.description


def _kfitx_version() -> str:
    try:
        return importlib.metadata.version("kfitx")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def _version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _label(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__


def is_builtin(cls: type) -> bool:
    """Whether a strategy class is one of kfitx's own (its errors and results are kfitx's to answer for)."""
    return getattr(cls, "__module__", "").startswith("kfitx.")


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


class Registry:
    """A plugin manager plus the strategy table built from it.

    Args:
        autoload: Load entry points of group ``kfitx``; default: unless
            ``KFITX_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value.
        block: Plugin or distribution names never to load; default:
            ``KFITX_BLOCK_PLUGINS`` (comma-separated).
        builtins: Register the built-in strategies.
    """

    def __init__(
        self, autoload: bool | None = None, block: Iterable[str] | None = None, builtins: bool = True
    ) -> None:
        self.pm = pluggy.PluginManager("kfitx")
        self.pm.add_hookspecs(hookspecs)
        self.blocked = set(_env_list("KFITX_BLOCK_PLUGINS") if block is None else block)
        self._providers: dict[str, tuple[str, str]] = {}
        self._table: dict[str, list[StrategyInfo]] | None = None
        self._register_core()
        if builtins:
            for module in BUILTIN_PLUGINS:
                self.register(importlib.import_module(module), name=module,
                              distribution="kfitx", version=_kfitx_version())
        if autoload is None:
            autoload = not os.environ.get("KFITX_DISABLE_PLUGIN_AUTOLOAD")
        if autoload:
            self.load_entrypoints()

    # -- plugins --------------------------------------------------------------

    def _register_core(self) -> None:
        """kfitx's own ``kfitx_fit`` (the fit itself) and the wrappers in ``CORE_PLUGINS``: always there."""
        self.pm.register(_CoreFit(), name="kfitx.fit")
        self._providers["kfitx.fit"] = ("kfitx", _kfitx_version())
        for name, module in CORE_PLUGINS.items():
            self.pm.register(importlib.import_module(module), name=name)
            self._providers[name] = ("kfitx", _kfitx_version())

    def register(self, plugin: object, name: str | None = None,
                 distribution: str = "(registered at run time)", version: str = "") -> str | None:
        """Registers a plugin (a module or object with ``@hookimpl`` functions).

        Returns its name, or ``None`` if it is blocked. Raises
        ``pluggy.PluginValidationError`` if its hooks do not match the specs.
        """
        name = name or self.pm.get_canonical_name(plugin)
        if name in self.blocked or distribution in self.blocked:
            self.pm.set_blocked(name)
            return None
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()  # a hook function with no spec, e.g. a typo
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise
        self._providers[name] = (distribution, version)
        self._table = None
        shown = _label(plugin) if name == str(id(plugin)) else name  # pluggy names an unnamed object by its id
        for hook in undecorated_hooks(plugin):  # pluggy skips them without a word
            self._warn(shown, distribution, version, f"defines {hook}() without @kfitx.hookimpl",
                       f"{_label(plugin)}.{hook} is never called, so {UNCALLED[hook]}; "
                       f"decorate it with @kfitx.hookimpl", skipped=False)
        return name

    def unregister(self, name: str) -> None:
        """Removes a plugin by name."""
        self.pm.unregister(name=name)
        self._providers.pop(name, None)
        self._table = None

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Loads every entry point of ``group``, each on its own; broken ones warn."""
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else ""
            if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                continue
            if ep.name in self.blocked or dist in self.blocked:
                self.pm.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name, distribution=dist, version=version)
            except Exception as err:  # report any plugin failure, keep the others
                self._warn(ep.name, dist, version, "failed to load", err)

    def _warn(self, plugin: str, dist: str, version: str, what: str, err: BaseException | str,
              skipped: bool = True) -> None:
        cause = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
        warnings.warn(
            PluginWarning(
                f"kfitx plugin '{plugin}' (distribution {dist} {version}".rstrip()
                + f") {what}" + (" and was skipped" if skipped else "") + f": {cause}. The other strategies "
                f"still work; to silence this, fix or uninstall it, or set KFITX_BLOCK_PLUGINS={plugin}."
            ),
            stacklevel=3,
        )

    def provider(self, cls: type) -> str:
        """Who provides a strategy class, for messages: ``plugin 'x' from distribution kfitx-x 0.1.0``."""
        info = next((i for infos in self._collect().values() for i in infos if i.cls is cls), None)
        if info is not None:
            return f"plugin '{info.plugin}' from distribution {info.distribution} {info.version}".rstrip()
        module = getattr(cls, "__module__", "?")
        dists = importlib.metadata.packages_distributions().get(module.split(".")[0], [])
        if dists:
            return f"module {module} from distribution {dists[0]} {_version_of(dists[0])}".rstrip()
        return f"module {module}"

    # -- data sources ---------------------------------------------------------

    def sources(self, data: object, y: object = None) -> Source | None:
        """The installed plugins' source for ``data`` (the ``kfitx_sources`` hook, first answer wins), or ``None``.

        Raises:
            PluginError: a ``kfitx_sources`` implementation raised something other than a
                :class:`KfitxError` (a bug in the plugin), naming the plugins that implement it.
        """
        try:
            return self.pm.hook.kfitx_sources(data=data, y=y)
        except KfitxError:  # a plugin's own word on the data (a DataError, ...)
            raise
        except Exception as err:
            names = ", ".join(f"{impl.plugin_name} ({self._providers.get(impl.plugin_name, ('unknown', ''))[0]})"
                              for impl in self.pm.hook.kfitx_sources.get_hookimpls())
            raise PluginError(message("The kfitx_sources hooks to answer a Source or None without raising",
                                      f"{type(err).__name__}: {err}",
                                      f"A bug in a plugin implementing kfitx_sources: {names}.")) from err

    def coerce(self, data: object, y: object = None) -> Source:
        """``data`` made a source as ``kfitx.fit`` makes it: the plugins' ``kfitx_sources`` first, then
        kfitx's own rules (:func:`kfitx.data.coerce`)."""
        return coerce(data, y, sources=self.sources)

    # -- strategies -----------------------------------------------------------

    def _collect(self) -> dict[str, list[StrategyInfo]]:
        if self._table is not None:
            return self._table
        table: dict[str, list[StrategyInfo]] = {}
        for impl in self.pm.hook.kfitx_strategies.get_hookimpls():  # registration order
            plugin = impl.plugin_name
            dist, version = self._providers.get(plugin, ("unknown", ""))
            try:
                answer: Any = impl.function()  # what a plugin returned, checked class by class below
                classes = list(answer or [])
            except Exception as err:  # a plugin's hook raised: skip that plugin only
                self._warn(plugin, dist, version, "raised in kfitx_strategies()", err)
                continue
            for cls in classes:
                problem = None
                if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
                    problem = f"returned {cls!r}, which is not a kfitx.Strategy subclass"
                elif not isinstance(cls.name, str) or not cls.name:
                    problem = f"returned {cls.__name__} without a `name` string"
                elif inspect.isabstract(cls):
                    problem = f"returned {cls.__name__}, which does not implement fit()"
                if problem:
                    self._warn(plugin, dist, version, problem, "see the plugin author's guide")
                    continue
                table.setdefault(cls.name, []).append(
                    StrategyInfo(cls.name, cls, plugin, dist, version)
                )
        self._table = table
        return table

    def available(self) -> list[StrategyInfo]:
        """Every installed strategy (conflicting names appear once per provider)."""
        return [info for name in sorted(self._collect()) for info in self._collect()[name]]

    def lookup(self, name: str) -> StrategyInfo:
        """The strategy registered under ``name``.

        Raises:
            StrategyNotFoundError: no such name (the message suggests the closest).
            StrategyConflictError: two plugins provide it (the message names both).
        """
        table = self._collect()
        if name not in table:
            names = sorted(table)
            raise StrategyNotFoundError(
                message(
                    "Expected the name of an installed strategy",
                    repr(name),
                    (_closest(name, names).strip() + " " if _closest(name, names) else "")
                    + "Available strategies: " + (", ".join(names) or "none")
                    + ". Run `kfitx list` to see where each comes from.",
                )
            )
        infos = table[name]
        if len(infos) > 1:
            providers = " and ".join(f"plugin '{i.plugin}' from {i.distribution} {i.version}".rstrip()
                                     for i in infos)
            raise StrategyConflictError(
                message(
                    f"Expected one provider for strategy '{name}'",
                    f"two: {providers}",
                    "Uninstall one, or block one with KFITX_BLOCK_PLUGINS=<plugin>.",
                )
            )
        return infos[0]

    def strategy_class(self, strategy: str | Strategy | type[Strategy]) -> type[Strategy]:
        """The class behind a name, class or instance, checked against the plugin API.

        Raises:
            StrategyNotFoundError, StrategyConflictError: see :meth:`lookup`.
            PluginError: its ``fit`` is still kfitx 0.1's ``fit(model, source, **fit_args)``.
            OptionError: ``strategy`` is none of the three.
        """
        if isinstance(strategy, str):
            info = self.lookup(strategy)
            where = f"plugin '{info.plugin}' from distribution {info.distribution} {info.version}".rstrip()
            check_fit_signature(info.cls, where)
            return info.cls
        cls = type(strategy) if isinstance(strategy, Strategy) else strategy
        if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
            raise OptionError(message("`strategy` must be a strategy name, a Strategy subclass or instance",
                                      type(strategy).__name__))
        check_fit_signature(cls, self.provider(cls))
        return cls

    def get(self, strategy: str | Strategy | type[Strategy], **options: object) -> Strategy:
        """A strategy instance from a name, a class or an instance (returned as is)."""
        if isinstance(strategy, Strategy):
            if options:
                type(strategy).check_options(options)  # a misspelt fit argument is named as such first
                raise OptionError(
                    message("Options go either into the strategy's constructor or to kfitx, not both",
                            f"an instance {strategy!r} plus options {sorted(options)}",
                            "Pass the strategy's name with the options, or build the instance with them.")
                )
            return strategy
        if inspect.isclass(strategy) and issubclass(strategy, Strategy):
            return strategy(**options)
        if not isinstance(strategy, str):
            raise OptionError(message("`strategy` must be a strategy name, a Strategy subclass or instance",
                                      type(strategy).__name__))
        return self.lookup(strategy).cls(**options)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def reset_registry(registry: Registry | None = None) -> Registry | None:
    """Replaces the process-wide registry (``None``: rebuild on next use); returns the old one."""
    global _registry
    old, _registry = _registry, registry
    return old


def get_strategy(strategy: str | Strategy | type[Strategy], **options: object) -> Strategy:
    """A strategy instance by name (or class, or instance). See :meth:`Registry.get`."""
    return get_registry().get(strategy, **options)


def available_strategies() -> list[StrategyInfo]:
    """Every installed strategy with the plugin, distribution and version that provide it."""
    return get_registry().available()


def register(plugin: object, name: str | None = None) -> str | None:
    """Registers a plugin object or module in the process-wide registry."""
    return get_registry().register(plugin, name=name)
