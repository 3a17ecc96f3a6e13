"""Registry behaviour, with fake plugins written inline and real entry points.

The entry-point tests write a real distribution (``*.dist-info`` with
``entry_points.txt``) onto ``sys.path``: ``importlib.metadata`` finds it exactly
as it finds a pip-installed plugin in site-packages.
"""

import importlib
import sys
import textwrap
import types
import warnings

import pluggy
import pytest

import kfitx
from kfitx.errors import OptionError, StrategyConflictError, StrategyNotFoundError
from kfitx.registry import PluginWarning, Registry

BUILTINS = {"auto", "generator", "loop", "memory"}  # the strategies kfitx itself provides


def make_strategy(strategy_name, doc="fake"):
    class Fake(kfitx.Strategy):
        name = strategy_name
        description = doc

        def fit(self, model, plan):
            raise NotImplementedError

    return Fake


class Provides:
    def __init__(self, *classes):
        self.classes = classes

    @kfitx.hookimpl
    def kfitx_strategies(self):
        return list(self.classes)


def install_distribution(root, dist, module, code, entry_name=None, version="1.0"):
    """Writes `module.py` and a `dist-version.dist-info` declaring it in group kfitx."""
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[kfitx]\n{entry_name or module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("KFITX_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("KFITX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield tmp_path
    for name in ("kfitx_good", "kfitx_broken", "kfitx_typo", "kfitx_other"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


GOOD = """
    import kfitx

    class Turbo(kfitx.Strategy):
        name = "turbo"
        description = "a third-party strategy"
        def fit(self, model, plan):
            return model.fit(**plan.fit_kwargs(plan.train.arrays()))

    @kfitx.hookimpl
    def kfitx_strategies():
        return [Turbo]
"""


def test_builtins_are_registered_with_their_distribution(registry):
    infos = {i.name: i for i in kfitx.available_strategies()}
    assert set(infos) == BUILTINS
    for info in infos.values():
        assert info.distribution == "kfitx"
        assert info.version == kfitx.__version__
        assert info.description
        assert info.plugin == f"kfitx.strategies.{info.name}"


def test_get_strategy_by_name_class_and_instance(registry):
    memory = kfitx.get_strategy("memory", memory_budget=0.25)
    assert memory.options["memory_budget"] == 0.25
    assert kfitx.get_strategy(memory) is memory
    assert kfitx.get_strategy(type(memory)).name == "memory"
    with pytest.raises(OptionError, match="not both"):
        kfitx.get_strategy(memory, memory_budget=0.1)
    with pytest.raises(OptionError, match="strategy name"):
        kfitx.get_strategy(42)


def test_unknown_name_suggests_the_closest_and_lists_all(registry):
    with pytest.raises(StrategyNotFoundError, match=r"Received: 'memry'\. Did you mean 'memory'\?.*Available strategies: auto, generator, loop, memory\."):
        kfitx.get_strategy("memry")
    with pytest.raises(LookupError):
        kfitx.get_strategy("zzz")


def test_inline_plugin_registers_a_strategy(registry):
    registry.register(Provides(make_strategy("inline")), name="inline-plugin")
    assert kfitx.get_strategy("inline").name == "inline"
    info = next(i for i in kfitx.available_strategies() if i.name == "inline")
    assert info.plugin == "inline-plugin"


def test_two_plugins_claiming_one_name_is_an_error_naming_both(registry):
    registry.register(Provides(make_strategy("dup")), name="first-plugin")
    registry.register(Provides(make_strategy("dup")), name="second-plugin")
    with pytest.raises(StrategyConflictError, match="first-plugin.*second-plugin.*KFITX_BLOCK_PLUGINS"):
        kfitx.get_strategy("dup")
    assert kfitx.get_strategy("memory").name == "memory"  # the rest still work


def test_plugin_returning_garbage_is_skipped_with_a_warning(registry):
    registry.register(Provides("not a class", make_strategy("")), name="sloppy")
    registry.register(Provides(make_strategy("fine")), name="fine-plugin")
    with pytest.warns(PluginWarning, match="sloppy") as record:
        names = {i.name for i in kfitx.available_strategies()}
    assert names == BUILTINS | {"fine"}
    assert len(record) == 2


def test_plugin_hook_raising_is_skipped_with_a_warning(registry):
    class Raising:
        @kfitx.hookimpl
        def kfitx_strategies(self):
            raise RuntimeError("boom")

    registry.register(Raising(), name="raising")
    with pytest.warns(PluginWarning, match="raising.*RuntimeError: boom"):
        assert {i.name for i in kfitx.available_strategies()} == BUILTINS


def test_pluggy_validates_hook_signatures_and_unknown_hooks(registry):
    class BadArgs:
        @kfitx.hookimpl
        def kfitx_fit(self, strategy, nonsense):
            pass

    class Typo:
        @kfitx.hookimpl
        def kfitx_strategy(self):  # no such hook
            return []

    with pytest.raises(pluggy.PluginValidationError):
        registry.register(BadArgs(), name="badargs")
    with pytest.raises(pluggy.PluginValidationError):
        registry.register(Typo(), name="typo")
    assert registry.pm.get_plugin("typo") is None


def test_entry_point_plugin_is_loaded_with_its_distribution(site):
    install_distribution(site, "kfitx-good", "kfitx_good", GOOD, entry_name="good")
    registry = Registry()
    info = {i.name: i for i in registry.available()}["turbo"]
    assert (info.plugin, info.distribution, info.version) == ("good", "kfitx-good", "1.0")
    assert registry.get("turbo").description == "a third-party strategy"


def _installed() -> set[str]:
    """Strategies of the environment as it is (plugins a user installed, e.g. plugins/ packages, included)."""
    return {i.name for i in Registry().available()}


def test_broken_entry_point_is_reported_and_the_others_work(site):
    before = _installed()
    install_distribution(site, "kfitx-good", "kfitx_good", GOOD, entry_name="good")
    install_distribution(site, "kfitx-broken", "kfitx_broken", "raise ImportError('missing dependency xyz')",
                         entry_name="broken")
    with pytest.warns(PluginWarning, match=r"'broken' \(distribution kfitx-broken 1\.0\) failed to load.*xyz"):
        registry = Registry()
    assert {i.name for i in registry.available()} == before | {"turbo"}


def test_entry_point_with_unknown_hook_is_reported(site):
    install_distribution(site, "kfitx-typo", "kfitx_typo", """
        import kfitx
        @kfitx.hookimpl
        def kfitx_strategy():
            return []
    """, entry_name="typo")
    with pytest.warns(PluginWarning, match="'typo'.*failed to load.*kfitx_strategy"):
        Registry()


def test_autoload_can_be_disabled(site, monkeypatch):
    install_distribution(site, "kfitx-good", "kfitx_good", GOOD, entry_name="good")
    monkeypatch.setenv("KFITX_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert {i.name for i in Registry().available()} == BUILTINS


@pytest.mark.parametrize("blocked", ["good", "kfitx-good"])
def test_block_list_by_plugin_or_distribution_name(site, monkeypatch, blocked):
    before = _installed()
    install_distribution(site, "kfitx-good", "kfitx_good", GOOD, entry_name="good")
    install_distribution(site, "kfitx-other", "kfitx_other", GOOD.replace('"turbo"', '"other"'),
                         entry_name="other")
    monkeypatch.setenv("KFITX_BLOCK_PLUGINS", f"{blocked}, unrelated")
    registry = Registry()
    assert {i.name for i in registry.available()} == before | {"other"}
    assert "kfitx_good" not in sys.modules  # a blocked plugin is never imported


def test_process_wide_registry_helpers(registry):
    kfitx.register(types.SimpleNamespace(kfitx_strategies=kfitx.hookimpl(lambda: [make_strategy("ns")])),
                   name="ns-plugin")
    assert kfitx.get_strategy("ns").name == "ns"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kfitx.available_strategies()


class OldStyle(kfitx.Strategy):
    """Written against kfitx 0.1: fit(model, source, **fit_args)."""

    name = "oldstyle"
    description = "a plugin not yet moved to fit(model, plan)"

    def fit(self, model, source, **fit_args):
        return model.fit(*source.arrays(), **fit_args)


class ProvidesOldStyle:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [OldStyle]


def test_a_plugin_on_the_old_fit_signature_is_refused_naming_it_and_what_to_change(registry, make_model, xy,
                                                                                   capsys):
    from kfitx.cli import main
    from kfitx.testing import check_strategy

    registry.register(ProvidesOldStyle(), name="oldstyle-plugin", distribution="kfitx-oldstyle", version="0.3")
    with pytest.raises(kfitx.PluginError, match=r"OldStyle \(plugin 'oldstyle-plugin' from distribution "
                                                r"kfitx-oldstyle 0.3\).*fit\(self, model, plan\).*"
                                                r"Received: fit\(self, model, source, \*\*fit_args\).*"
                                                r"def fit\(self, model, plan\):"):
        kfitx.fit(make_model(), *xy, strategy="oldstyle", verbose=0)
    with pytest.raises(kfitx.PluginError, match="oldstyle-plugin"):
        check_strategy(OldStyle)
    assert main(["check", "oldstyle"]) == 2
    assert "kfitx-oldstyle" in capsys.readouterr().err
    class Direct(OldStyle):  # a class passed directly, from no plugin
        name = "direct"

    with pytest.raises(kfitx.PluginError, match=r"Direct \(module test_registry\)"):
        kfitx.fit(make_model(), *xy, strategy=Direct, verbose=0)
