"""Test helpers shared by the strategy tests: the conformance kit's callback spy and weight comparison."""

from kfitx.testing import HOOKS, Spy, weights_close

__all__ = ["HOOKS", "Spy", "weights_close"]
