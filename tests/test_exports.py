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
