"""kfitx-tfdata keeps kfitx's fit contract (checked by kfitx.testing) and streams as it says."""

import ast
import importlib.metadata
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import kfitx
import kfitx_tfdata
from kfitx.testing import StrategyConformance, check_strategy, tiny_data, tiny_model, weights_close
from kfitx_tfdata import TFDataStrategy


class TestConformance(StrategyConformance):
    """Every rule of the fit contract, one test each."""

    strategy = TFDataStrategy


def test_a_graph_map_fn_keeps_the_contract():
    identity = tf.function(lambda x, y: (x, y))
    report = check_strategy(TFDataStrategy, map_fn=identity,
                            rules=["callback-order", "stop-training", "same-weights"])
    assert report.ok


def fit_both(strategy, data=None, **fit_args):
    x, y = tiny_data()
    memory, ours = tiny_model(), tiny_model()
    h_memory = kfitx.fit(memory, x, y, strategy="memory", verbose=0, shuffle=False, **fit_args)
    data = (x, y) if data is None else (data,)
    h_ours = kfitx.fit(ours, *data, strategy=strategy, verbose=0, shuffle=False, **fit_args)
    return memory, ours, h_memory, h_ours


@pytest.mark.parametrize("fit_args", [
    {"epochs": 2},
    {"epochs": 2, "validation_split": 0.2, "sample_weight": np.linspace(0.5, 1.5, 200)},
    {"epochs": 2, "class_weight": {0: 1.0, 1: 2.0, 2: 0.5}},
    {"epochs": 3, "steps_per_epoch": 5, "batch_size": 16},
], ids=["plain", "split-and-weights", "class-weight", "steps-per-epoch"])
def test_without_callbacks_it_groups_steps_and_trains_like_memory(fit_args):
    memory, ours, h_memory, h_ours = fit_both(TFDataStrategy(), **fit_args)
    assert h_ours.kfitx["steps_per_execution"] == h_memory.kfitx["steps_per_execution"] > 1
    assert h_ours.history.keys() == h_memory.history.keys()
    np.testing.assert_allclose(h_ours.history["loss"], h_memory.history["loss"], rtol=1e-5)
    assert weights_close(memory, ours)
    assert ours.steps_per_execution == 1  # put back


def test_memory_mapped_arrays_are_read_batch_by_batch(tmp_path):
    x, y = tiny_data()
    np.save(tmp_path / "x.npy", x.astype("float32"))
    np.save(tmp_path / "y.npy", y)
    source = kfitx.data.npy(tmp_path / "x.npy", tmp_path / "y.npy")
    assert isinstance(source.x, np.memmap)
    memory, ours, *_ = fit_both(TFDataStrategy(), data=source, epochs=2)
    assert weights_close(memory, ours)


def test_a_dataset_source_is_cached_in_a_file_and_trains_like_memory(tmp_path):
    x, y = tiny_data()
    dataset = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y)).batch(32)
    cache = tmp_path / "cache"
    memory, ours, _, h_ours = fit_both(TFDataStrategy(cache=str(cache)), data=dataset, epochs=2)
    assert weights_close(memory, ours)
    assert h_ours.kfitx["cache"] == str(cache)
    assert list(tmp_path.glob("cache*"))  # tf.data wrote its cache files


def test_augmentation_and_map_fn_change_what_the_model_trains_on():
    x, y = tiny_data()

    def zero_x(bx, by):  # on numpy batches, through kfitx.augment
        return np.zeros_like(bx), by

    @tf.function
    def negate(bx, by):  # a graph function
        return -bx, by

    plain = tiny_model()
    kfitx.fit(plain, x, y, strategy="memory", epochs=1, shuffle=False, verbose=0)
    for options in ({"augment": zero_x}, {"map_fn": negate}):
        model = tiny_model()
        history = kfitx.fit(model, x, y, strategy=TFDataStrategy(**options), epochs=1, shuffle=False, verbose=0)
        assert not weights_close(plain, model), options
        assert history.kfitx["augment" if "augment" in options else "map_fn"]


def test_a_failing_augmentation_is_an_augmentation_error():
    x, y = tiny_data()

    def broken(bx, by):
        raise RuntimeError("bad crop")

    with pytest.raises(kfitx.AugmentationError, match="bad crop"):
        kfitx.fit(tiny_model(), x, y, strategy=TFDataStrategy(augment=broken), epochs=1, verbose=0)


def test_generators_train_and_bad_options_are_refused_with_what_to_do():
    x, y = tiny_data()
    history = kfitx.fit(tiny_model(), lambda: iter([(x, y)]), strategy=TFDataStrategy(), epochs=2, verbose=0)
    assert len(history.epoch) == 2  # every input model.fit takes: a generator through kfitx's worker
    with pytest.raises(kfitx.OptionError, match="shuffle_buffer"):
        TFDataStrategy(shuffle_buffer=0)
    with pytest.raises(kfitx.OptionError, match="Did you mean 'prefetch'"):
        TFDataStrategy(prefech=2)


def test_it_uses_only_kfitx_public_api():
    tree = ast.parse(Path(kfitx_tfdata.__file__).read_text())
    used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    used |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in used if m.startswith("kfitx")} <= {"kfitx", "kfitx.data", "kfitx.errors", "kfitx.augment"}


def test_installed_through_its_entry_point():
    try:
        dist = importlib.metadata.distribution("kfitx-tfdata")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("kfitx-tfdata is not installed (pip install plugins/kfitx-tfdata)")
    (ep,) = [ep for ep in dist.entry_points if ep.group == "kfitx"]
    assert (ep.name, ep.value) == ("tfdata", "kfitx_tfdata")
    info = {i.name: i for i in kfitx.available_strategies()}["tfdata"]
    assert (info.distribution, info.cls) == ("kfitx-tfdata", TFDataStrategy)


def test_a_callback_with_batch_hooks_turns_grouping_off_and_an_epoch_callback_does_not():
    x, y = tiny_data()

    class PerBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    per_epoch = keras.callbacks.EarlyStopping(monitor="loss")
    history = kfitx.fit(tiny_model(), x, y, strategy=TFDataStrategy(), callbacks=[per_epoch], verbose=0)
    assert history.kfitx["steps_per_execution"] == 16
    history = kfitx.fit(tiny_model(), x, y, strategy=TFDataStrategy(), callbacks=[per_epoch, PerBatch()],
                        verbose=0)
    assert history.kfitx["steps_per_execution"] == 1 and "PerBatch" in history.kfitx["grouping"]
