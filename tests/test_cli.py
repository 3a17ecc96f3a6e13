import os
import subprocess
import sys

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
