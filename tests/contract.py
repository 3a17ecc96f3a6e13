"""Test helpers shared by the strategy tests: the conformance kit's callback spy and weight comparison, and a
subprocess run with a deadline."""

from kfitx.testing import HOOKS, Spy, weights_close

__all__ = ["HOOKS", "Spy", "run_bounded", "weights_close"]


def run_bounded(command, env, deadline_s, cwd=None):
    """``(returncode, output)`` of ``command`` run to its end, killed after ``deadline_s`` seconds."""
    import subprocess

    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = proc.communicate(timeout=deadline_s)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, output
