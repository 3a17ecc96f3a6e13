import os
import subprocess
import sys

import kfitx
from kfitx.cli import main


def test_list_shows_builtins_with_provider(capsys, registry):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header, rule, *rows = out.splitlines()
    assert header.split()[:2] == ["name", "description"]
    memory = next(row for row in rows if row.startswith("memory "))
    assert " kfitx " in memory


def test_console_script_is_installed():
    env = {**os.environ, "KFITX_DISABLE_PLUGIN_AUTOLOAD": "1"}
    exe = os.path.join(os.path.dirname(sys.executable), "kfitx")
    result = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "memory" in result.stdout


def test_unknown_command_exits_non_zero():
    result = subprocess.run([sys.executable, "-m", "kfitx.cli", "nope"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


class IgnoresCallbacks(kfitx.Strategy):
    name = "deaf"
    description = "model.fit without the callbacks it was given"

    def fit(self, model, plan):
        validation = None if plan.validation is None else plan.validation.arrays()
        return model.fit(**{**plan.fit_kwargs(plan.train.arrays(), validation), "callbacks": None})


class ProvidesDeaf:
    @kfitx.hookimpl
    def kfitx_strategies(self):
        return [IgnoresCallbacks]


def test_check_runs_the_conformance_kit_on_an_installed_strategy(capsys, registry):
    assert main(["check", "loop", "--rules", "history,callback-order,same-weights"]) == 0
    out = capsys.readouterr().out
    assert "Checking strategy 'loop' (kfitx.strategies.loop.LoopStrategy, from kfitx" in out
    assert "callback-order   PASSED" in out and "3 passed, 0 failed, 0 skipped" in out


def test_check_names_the_broken_rule_and_exits_1(capsys, registry):
    registry.register(ProvidesDeaf(), name="deaf-plugin")
    assert main(["check", "deaf", "--rules", "callback-order", "--no-weights"]) == 1
    out = capsys.readouterr().out
    assert "callback-order   FAILED" in out
    assert "Strategy 'deaf' breaks rule 'callback-order'" in out and "How to fix:" in out
    assert main(["check", "nope"]) == 2
    assert "Available strategies:" in capsys.readouterr().err
