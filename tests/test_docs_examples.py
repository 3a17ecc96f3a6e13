"""The plugin author's examples are run, not copied: docs/plugins.md and the Strategy docstring.

Each python block is extracted from its source and executed in order, each as a
module that also sees the names of the blocks before it (so a later block can import
an earlier one, as the docs' test file imports ``kfitx_plainfit``); every ``Strategy`` subclass a block defines is checked by the
conformance kit, and every ``test_*`` function a block defines is called.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import types
from pathlib import Path


import kfitx
from kfitx.testing import check_strategy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(text: str) -> list[str]:
    return [textwrap.dedent(block) for block in BLOCK.findall(textwrap.dedent(text))]


def module_name(block: str) -> str:
    first = block.splitlines()[0]
    return first[2:].removesuffix(".py").strip() if first.startswith("# ") and first.endswith(".py") else ""


def run_blocks(blocks: list[str], monkeypatch) -> list[type]:
    strategies: list[type] = []
    shared: dict[str, object] = {}  # a block sees the names earlier blocks made, as on one page
    for i, block in enumerate(blocks):
        name = module_name(block) or f"kfitx_docs_block_{i}"
        module = types.ModuleType(name)
        module.__dict__.update({k: v for k, v in shared.items() if not k.startswith("__")})
        monkeypatch.setitem(sys.modules, name, module)
        exec(compile(block, f"<{name}>", "exec"), module.__dict__)
        shared.update(module.__dict__)
        for value in list(vars(module).values()):
            if inspect.isclass(value) and issubclass(value, kfitx.Strategy) and value.__module__ == name:
                strategies.append(value)
            elif inspect.isfunction(value) and value.__name__.startswith("test_") and value.__module__ == name:
                value()
    return strategies


def test_the_plugin_guide_examples_pass_the_conformance_kit(registry, monkeypatch):
    blocks = python_blocks(DOCS.read_text())
    assert len(blocks) >= 4, "docs/plugins.md lost its python examples"
    strategies = run_blocks(blocks, monkeypatch)
    assert [cls.name for cls in strategies] == ["plainfit", "clipped", "softlabels"]
    for strategy in strategies:
        if strategy.name == "softlabels":  # needs one-hot labels: its own block's test ran the kit with them
            continue
        report = check_strategy(strategy)
        assert report.ok and not report.skipped, report


def test_the_strategy_docstring_example_passes_the_conformance_kit(registry, monkeypatch):
    blocks = python_blocks(kfitx.Strategy.__doc__)
    assert len(blocks) == 1
    (cls,) = run_blocks(blocks, monkeypatch)
    report = check_strategy(cls)
    assert report.ok, report
    assert report.skipped == ["registration"]  # the docstring shows the class alone, without its hook
