import inspect

import kfitx


def test_all_is_sorted_and_exactly_what_is_exported():
    exported = {
        name
        for name, value in vars(kfitx).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert kfitx.__all__ == sorted(kfitx.__all__)
    assert set(kfitx.__all__) == exported | {"__version__", "augment", "compat", "data"}


def test_version_comes_from_metadata():
    import importlib.metadata

    assert kfitx.__version__ == importlib.metadata.version("kfitx")


def test_internals_stay_in_their_modules():
    for name in ("FIT_ARGS", "FitReport", "hookspec", "StrategyInfo"):
        assert name not in kfitx.__all__ and not hasattr(kfitx, name), name
    from kfitx.hookspecs import hookspec
    from kfitx.plan import FIT_ARGS, FitReport
    from kfitx.registry import StrategyInfo

    assert hookspec and FIT_ARGS and FitReport and StrategyInfo


def test_the_strategy_api_is_exported():
    assert {"Strategy", "FitPlan", "FitRequest", "Choice", "Decision", "hookimpl", "fit_loop", "TrainStep"} <= set(
        kfitx.__all__)
