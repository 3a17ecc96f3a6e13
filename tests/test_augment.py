"""kfitx.augment: the three kinds of augmentation, mapped over tf.data batches."""

from __future__ import annotations

import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from kfitx.augment import (  # noqa: E402
    Augmentation,
    adapt,
    image_data_generator_class,
    map_dataset,
)
from kfitx.augment.image_ops import _apply_transform, _random_params, _standardize  # noqa: E402
import kfitx  # noqa: E402
from kfitx.errors import AugmentationError  # noqa: E402

IDG = image_data_generator_class()


def smooth(h: int = 9, w: int = 13, c: int = 3) -> np.ndarray:
    """A smooth, non-square test image with distinct channels, values in [0, 1]."""
    r, q = np.mgrid[0:h, 0:w].astype("float32")
    planes = [np.sin(r / 3) + np.cos(q / 4), r * 0.1 + q * 0.05, np.cos(r / 5) * q / 10, r / h]
    image = np.stack(planes[:c], axis=-1)
    return ((image - image.min()) / (image.max() - image.min())).astype("float32")


def images(n: int = 24, h: int = 8, w: int = 8, c: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (smooth(h, w, c)[None] + 0.1 * rng.normal(size=(n, h, w, c))).astype("float32")


def batches(*parts: np.ndarray, batch: int = 8):
    return tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0]).batch(batch)


def epoch(dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), element) for element in dataset]


def noise(x, y, rng):
    return x + rng.normal(0, 0.5, size=x.shape).astype(x.dtype), y


KINDS = {
    "callable": lambda: noise,
    "keras layers": lambda: [keras.layers.RandomFlip(), keras.layers.RandomRotation(0.2)],
    "ImageDataGenerator": lambda: IDG(rotation_range=30, width_shift_range=0.2, zoom_range=0.2,
                                      horizontal_flip=True),
}


# --- adapt ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, in_graph", [("callable", False), ("keras layers", True),
                                            ("ImageDataGenerator", True)])
def test_adapt_recognises_each_kind(kind, in_graph):
    aug = adapt(KINDS[kind]())
    assert isinstance(aug, Augmentation)
    assert (aug.kind, aug.in_graph) == (kind, in_graph)
    assert adapt(aug) is aug


def test_adapt_none_and_sequential():
    assert adapt(None) is None
    aug = adapt(keras.Sequential([keras.layers.RandomFlip(), keras.layers.RandomZoom(0.1)]))
    assert aug.kind == "keras layers"
    assert "RandomFlip, RandomZoom" in aug.describe()


@pytest.mark.parametrize("bad, shown", [("flip", "'flip'"), (object(), "object"), (42, "42")])
def test_adapt_rejects_unknown_objects_listing_the_kinds(bad, shown):
    with pytest.raises(AugmentationError) as info:
        adapt(bad)
    text = str(info.value)
    for kind in ("fn(x, y) -> (x, y)", "Keras preprocessing layer", "ImageDataGenerator"):
        assert kind in text
    assert f"Received: {shown}" in text


def test_adapt_rejects_a_layer_class_and_mixed_lists():
    with pytest.raises(AugmentationError, match=r"Pass an instance, e.g. RandomFlip\(...\)"):
        adapt(keras.layers.RandomFlip)
    with pytest.raises(AugmentationError, match="holding str"):
        adapt([keras.layers.RandomFlip(), "rotate"])


def test_image_data_generator_lives_in_the_legacy_namespace():
    assert IDG is tf.keras.preprocessing.image.ImageDataGenerator
    assert IDG.__module__ == "keras.src.legacy.preprocessing.image"


# --- every kind through map_dataset ----------------------------------------------------------

@pytest.mark.parametrize("kind", list(KINDS))
def test_training_batches_change_and_the_rest_is_untouched(kind):
    x = images()
    y, sw = np.arange(24) % 3, np.linspace(0.5, 1.5, 24).astype("float32")
    source = batches(x, y, sw)
    out = map_dataset(source, adapt(KINDS[kind]()), seed=3)
    assert out.element_spec == source.element_spec
    first, second = epoch(out), epoch(out)
    assert len(first) == 3
    for i, (bx, by, bsw) in enumerate(first):
        assert bx.shape == x[i * 8:(i + 1) * 8].shape and bx.dtype == np.float32
        assert not np.allclose(bx, x[i * 8:(i + 1) * 8])
        np.testing.assert_array_equal(by, y[i * 8:(i + 1) * 8])
        np.testing.assert_array_equal(bsw, sw[i * 8:(i + 1) * 8])
    assert not np.allclose(first[0][0], second[0][0]), "each pass must get new augmentations"
    again = epoch(map_dataset(source, adapt(KINDS[kind]()), seed=3))
    for a, b in zip(first, again):
        np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    other = epoch(map_dataset(source, adapt(KINDS[kind]()), seed=4))
    assert not np.allclose(first[0][0], other[0][0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_batches_without_targets(kind):
    x = images(16)
    augment = (lambda b: b[:, ::-1]) if kind == "callable" else KINDS[kind]()
    for source in (batches(x), tf.data.Dataset.from_tensor_slices((x,)).batch(8)):
        out = map_dataset(source, adapt(augment), seed=0)
        assert out.element_spec == source.element_spec
        got = epoch(out)
        bx = got[0] if isinstance(got[0], np.ndarray) else got[0][0]
        assert bx.shape == (8, 8, 8, 3) and not np.allclose(bx, x[:8])



@pytest.mark.parametrize("kind", list(KINDS))
def test_keras_trains_on_the_augmented_stream(kind):
    x, y = images(32), np.arange(32) % 2
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(map_dataset(batches(x, y), adapt(KINDS[kind]()), seed=0), epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()

def test_over_kfitx_array_pipeline():
    from kfitx.data import arrays
    from kfitx.data.arrays import array_dataset

    x, y = images(20), np.arange(20)
    out = map_dataset(array_dataset(arrays(x, y), 8, shuffle=True, seed=1), adapt(KINDS["ImageDataGenerator"]()),
                      seed=1)
    assert int(out.cardinality()) == 3
    got = epoch(out)
    assert sorted(np.concatenate([b[1] for b in got])) == list(range(20))


def test_batches_must_be_x_y_sample_weight():
    x = images(8)
    source = tf.data.Dataset.from_tensor_slices((x, x, x, x)).batch(4)
    with pytest.raises(AugmentationError, match="tuples of 4 items"):
        map_dataset(source, adapt(noise))


# --- 1. callables --------------------------------------------------------------------------

def test_callable_gets_nested_x_and_may_change_y():
    a, b, y = images(16), np.ones((16, 2), "float32"), np.zeros(16, "float32")

    def fn(x, y):
        return (x[0] + 1, x[1] * 3), y + 0.5

    source = tf.data.Dataset.from_tensor_slices(((a, b), y)).batch(8)
    (got_a, got_b), got_y = epoch(map_dataset(source, adapt(fn)))[0]
    np.testing.assert_allclose(got_a, a[:8] + 1)
    np.testing.assert_allclose(got_b, 3.0)
    np.testing.assert_allclose(got_y, 0.5)


def test_callable_that_raises_is_reported_with_its_batch_and_stops_the_pipeline():
    x = images()
    x[16, 0, 0, 0] = 1000.0  # first sample of batch 2

    def fn(x, y):
        if x[0, 0, 0, 0] == 1000.0:
            raise ValueError("bad image")
        return x, y

    aug = adapt(fn)
    with pytest.raises(AugmentationError, match=r"ValueError\('bad image'\) at training batch 2") as info:
        with kfitx.data.boundary() as boundary:
            out = map_dataset(batches(x, np.zeros(24)), aug)
            epoch(out)  # TensorFlow raises its copy; the boundary raises what the augmentation reported
    assert boundary.fault is info.value
    assert isinstance(info.value.__cause__, ValueError) and str(info.value.__cause__) == "bad image"
    with kfitx.data.boundary() as clean:  # a new pipeline reports to its own boundary
        epoch(map_dataset(batches(images(), np.zeros(24)), aug))
    assert clean.fault is None


def test_without_a_boundary_the_pipeline_still_stops_with_the_message():
    def fn(x, y):
        raise ValueError("bad image")

    with pytest.raises(tf.errors.OpError, match="bad image"):
        epoch(map_dataset(batches(images(), np.zeros(24)), adapt(fn)))


def test_callable_returning_a_wrong_shape_names_the_batch():
    x = images()
    x[8, 0, 0, 0] = 1000.0  # batch 1

    def fn(x, y):
        return (x[:, :4] if x[0, 0, 0, 0] == 1000.0 else x), y

    aug = adapt(fn)
    with pytest.raises(AugmentationError) as info, kfitx.data.boundary():
        epoch(map_dataset(batches(x, np.zeros(24)), aug))
    text = str(info.value)
    assert "for batch 1" in text and "(8, 8, 8, 3)" in text and "(8, 4, 8, 3)" in text


@pytest.mark.parametrize("fn, expected", [
    (lambda x, y: (x.astype("float32") / 255, y), "dtype uint8"),
    (lambda x, y: x, "a pair (x, y)"),
    (lambda x, y: ((x, x), y), "structure"),
])
def test_callable_bad_returns_are_reported(fn, expected):
    aug = adapt(fn)
    with pytest.raises(AugmentationError, match=re.escape(expected)), kfitx.data.boundary():
        epoch(map_dataset(batches((images(8) * 255).astype("uint8"), np.zeros(8)), aug))


def test_callable_dtype_is_cast_back_and_shapes_are_static():
    x = images(8).astype("float32")
    out = map_dataset(batches(x, np.zeros(8)), adapt(lambda x, y: (x.astype("float64") * 2, y)))
    assert out.element_spec[0].shape.as_list() == [None, 8, 8, 3]
    got = epoch(out)[0][0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x * 2, rtol=1e-6)


# --- 2. Keras layers -----------------------------------------------------------------------

def test_layers_need_a_single_tensor_x():
    source = tf.data.Dataset.from_tensor_slices(((images(8), images(8)), np.zeros(8))).batch(4)
    with pytest.raises(AugmentationError, match="single tensor"):
        map_dataset(source, adapt(keras.layers.RandomFlip()))


def test_layers_that_cannot_take_x_are_reported_at_build_time():
    with pytest.raises(AugmentationError, match="RandomRotation raised"):
        map_dataset(batches(np.zeros((8, 5), "float32"), np.zeros(8)), adapt(keras.layers.RandomRotation(0.1)))


def test_layers_that_change_the_shape_are_refused():
    with pytest.raises(AugmentationError, match="keep the shape of x"):
        map_dataset(batches(images(8), np.zeros(8)), adapt(keras.layers.Resizing(4, 4)))


def test_a_seeded_layer_still_varies_per_pass_and_follows_the_pipeline_seed():
    source = batches(images(16), np.zeros(16))
    out = map_dataset(source, adapt(keras.layers.RandomRotation(0.3, seed=1)), seed=5)
    first, second = epoch(out), epoch(out)
    assert not np.allclose(first[0][0], second[0][0])
    assert not np.allclose(first[0][0], first[1][0][: len(first[0][0])])
    again = epoch(map_dataset(source, adapt(keras.layers.RandomRotation(0.3, seed=1)), seed=5))
    np.testing.assert_allclose(first[1][0], again[1][0], atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: keras.layers.RandomTranslation(0.2, 0.2), lambda: keras.layers.RandomZoom(0.2),
    lambda: keras.layers.RandomContrast(0.5), lambda: keras.layers.GaussianNoise(0.2),
], ids=["RandomTranslation", "RandomZoom", "RandomContrast", "GaussianNoise"])
def test_keras_random_layers_are_reproducible_under_a_parallel_map(make):
    source = batches(images(32), np.zeros(32))
    first = np.concatenate([b[0] for b in epoch(map_dataset(source, adapt(make()), seed=2))])
    again = np.concatenate([b[0] for b in epoch(map_dataset(source, adapt(make()), seed=2))])
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_integer_images_come_out_as_floats_from_layers():
    x = (images(8) * 255).clip(0, 255).astype("uint8")
    aug = adapt(keras.Sequential([keras.layers.Rescaling(1 / 255), keras.layers.RandomFlip()]))
    got = epoch(map_dataset(batches(x, np.zeros(8)), aug))[0][0]
    assert got.dtype == np.float32 and got.max() <= 1.0 and got.max() > 0.5


# --- 3. ImageDataGenerator: vectorised equals per image --------------------------------------

GEOMETRY = [
    {"tx": 2.0}, {"ty": -3.0}, {"tx": 1.5, "ty": 2.5}, {"theta": 17.0}, {"shear": 12.0},
    {"zx": 0.8, "zy": 1.2}, {"flip_horizontal": True}, {"flip_vertical": True},
    {"theta": 10.0, "tx": 1.5, "ty": -2.3, "shear": 5.0, "zx": 1.1, "zy": 0.9, "flip_horizontal": True},
    {"theta": -33.0, "channel_shift_intensity": 0.2, "flip_vertical": True},
]


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
@pytest.mark.parametrize("params", GEOMETRY, ids=lambda p: ",".join(p))
def test_transform_equals_idg_apply_transform(fill_mode, params):
    idg = IDG(fill_mode=fill_mode, cval=0.5)
    image = smooth()
    expected = idg.apply_transform(image.copy(), params)
    got = _apply_transform(idg, image[None], {k: np.array([v]) for k, v in params.items()}).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "wrap"])
def test_the_compiled_warp_of_larger_images_equals_idg_apply_transform(fill_mode):
    from kfitx.augment import image_ops

    idg = IDG(fill_mode=fill_mode, cval=0.5)
    image = smooth(33, 35)
    assert 33 * 35 >= image_ops._COMPILE_FROM_PIXELS  # the XLA-compiled warp; smaller images run it uncompiled
    params = GEOMETRY[8]
    got = _apply_transform(idg, image[None], {k: np.array([v]) for k, v in params.items()}).numpy()[0]
    np.testing.assert_allclose(got, idg.apply_transform(image.copy(), params), atol=1e-4)
    assert fill_mode in image_ops._COMPILED_WARPS


def test_transform_equals_idg_per_sample_and_channels_first():
    idg = IDG(fill_mode="reflect", data_format="channels_first")
    batch = np.stack([smooth().transpose(2, 0, 1)] * len(GEOMETRY))
    keys = sorted({k for p in GEOMETRY for k in p})
    defaults = {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0,
                "flip_horizontal": False, "flip_vertical": False, "channel_shift_intensity": 0.0}
    params = {k: np.array([p.get(k, defaults[k]) for p in GEOMETRY]) for k in keys}
    got = _apply_transform(idg, batch, params).numpy()
    for i, p in enumerate(GEOMETRY):
        np.testing.assert_allclose(got[i], idg.apply_transform(batch[i].copy(), p), atol=1e-4)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("scale, offset", [(255, 0), (2, -1), (400, 0)])  # the last two: rescaled via 0..255
def test_brightness_equals_idg(channels, scale, offset):
    idg = IDG()
    image = smooth(c=channels) * scale + offset
    for b in (0.5, 0.93, 1.4):
        expected = idg.apply_transform(image.copy(), {"brightness": b})
        got = _apply_transform(idg, image[None], {"brightness": np.array([b])}).numpy()[0]
        np.testing.assert_allclose(got, expected, atol=1e-3 * scale)


@pytest.mark.parametrize("options", [
    {"rescale": 1 / 255},
    {"rescale": 2.0, "samplewise_center": True, "samplewise_std_normalization": True},
    {"featurewise_center": True, "featurewise_std_normalization": True},
    {"zca_whitening": True},
], ids=lambda o: ",".join(o))
@pytest.mark.filterwarnings("ignore:This ImageDataGenerator specifies")
def test_standardize_equals_idg(options):
    idg = IDG(**options)
    x = images(12, 4, 5, 3) * 100
    if "rescale" not in options:
        idg.fit(x)
    expected = np.stack([idg.standardize(image.copy()) for image in x])
    np.testing.assert_allclose(_standardize(idg, x).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options, expected", [
    ({"width_shift_range": "wide"}, "width_shift_range must be a number or a list of numbers"),
    ({"fill_mode": "mirror"}, "fill_mode must be one of nearest, constant, reflect, wrap"),
])
def test_bad_idg_options_are_reported_at_build_time(options, expected):
    with pytest.raises(AugmentationError, match=expected):
        map_dataset(batches(images(8), np.zeros(8)), adapt(IDG(**options)))


def test_idg_needs_rank_4_images():
    with pytest.raises(AugmentationError, match=r"rank 4 \(batch, rows, cols, channels\)"):
        map_dataset(batches(np.zeros((8, 5), "float32"), np.zeros(8)), adapt(IDG(rotation_range=5)))


def test_unfitted_featurewise_statistics_are_an_error():
    idg = IDG(featurewise_center=True)
    with pytest.raises(AugmentationError, match=r"idg.fit\(x_train\)"):
        map_dataset(batches(images(8), np.zeros(8)), adapt(idg))


def test_random_params_are_drawn_as_idg_draws_them():
    idg = IDG(rotation_range=20, height_shift_range=0.1, width_shift_range=3, shear_range=5,
              zoom_range=[0.5, 0.8], horizontal_flip=True, channel_shift_range=10,
              brightness_range=[0.5, 1.5])
    p = {k: v.numpy() for k, v in _random_params(idg, [4000, 10, 20, 3], tf.constant([1, 2], tf.int64)).items()}
    assert "flip_vertical" not in p
    assert np.abs(p["theta"]).max() <= 20 and np.abs(p["theta"]).max() > 19
    assert np.abs(p["tx"]).max() <= 1.0 and np.abs(p["tx"]).max() > 0.9  # 0.1 of 10 rows
    assert set(np.unique(p["ty"])) == {-2, -1, 0, 1, 2}  # int: np.random.choice(3) * +-1 pixels
    assert np.abs(p["shear"]).max() <= 5
    for z in (p["zx"], p["zy"]):
        assert z.min() >= 0.5 and z.max() <= 0.8
    assert abs(np.corrcoef(p["zx"], p["zy"])[0, 1]) < 0.1  # drawn independently
    assert 0.45 < p["flip_horizontal"].mean() < 0.55
    assert np.abs(p["channel_shift_intensity"]).max() <= 10
    assert p["brightness"].min() >= 0.5 and p["brightness"].max() <= 1.5
    listed = IDG(height_shift_range=[0.1, 0.2])
    tx = _random_params(listed, [1000, 10, 20, 3], tf.constant([3, 4], tf.int64))["tx"].numpy()
    np.testing.assert_allclose(sorted(set(np.round(tx, 4))), [-2.0, -1.0, 1.0, 2.0])


def test_idg_describe_names_its_options():
    text = adapt(IDG(rotation_range=20, zoom_range=0.15, horizontal_flip=True)).describe()
    assert text.startswith("ImageDataGenerator(rotation_range=20, ")
    assert "horizontal_flip=True" in text and text.endswith("vectorised on whole batches")


def test_idg_turns_integer_images_into_floats():
    x = (images(8) * 255).clip(0, 255).astype("uint8")
    out = map_dataset(batches(x, np.zeros(8)), adapt(IDG(rescale=1 / 255)))
    assert out.element_spec[0].dtype == tf.float32
    np.testing.assert_allclose(epoch(out)[0][0], x / 255, atol=1e-6)


# --- 3. ImageDataGenerator: what runs per image ----------------------------------------------

def test_preprocessing_function_runs_per_image_after_the_transform():
    idg = IDG(rescale=0.5, preprocessing_function=lambda im: im[::-1] + 1)
    aug = adapt(idg)
    assert not aug.in_graph and "preprocessing_function called per image" in aug.describe()
    x = images(8)
    got = epoch(map_dataset(batches(x, np.zeros(8)), aug))[0][0]
    expected = np.stack([idg.standardize(image.copy()) for image in x])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_interpolation_order_other_than_1_falls_back_to_idg_per_image():
    aug = adapt(IDG(rotation_range=40, interpolation_order=0))
    assert not aug.in_graph and "per image in Python" in aug.describe()
    source = batches(images(16), np.zeros(16))
    out = map_dataset(source, aug, seed=9)
    first, second = epoch(out), epoch(out)
    assert not np.allclose(first[0][0], second[0][0])
    again = epoch(map_dataset(source, adapt(IDG(rotation_range=40, interpolation_order=0)), seed=9))
    np.testing.assert_array_equal(first[1][0], again[1][0])  # seeded per image from the batch seed


def test_a_subclass_that_overrides_a_method_runs_its_own_code():
    class Sevens(IDG):
        def random_transform(self, x, seed=None):
            return x * 0 + 7

    aug = adapt(Sevens(rotation_range=10))
    assert not aug.in_graph and "overrides random_transform" in aug.describe()
    got = epoch(map_dataset(batches(images(8), np.zeros(8)), aug))[0][0]
    np.testing.assert_array_equal(got, 7.0)


def test_a_plain_idg_runs_vectorised_and_gives_each_image_what_idg_gives_it():
    """No method of the generator runs per image; each image is idg.apply_transform then idg.standardize of it, for
    the transform drawn (flips here: four possible, so each output is checked against all four)."""
    names = ("get_random_transform", "apply_transform", "random_transform", "standardize")
    calls = []

    def spy(idg, name):
        real = getattr(idg, name)

        def method(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        setattr(idg, name, method)  # on the instance: the class is still Keras's, so the vectorised path is chosen

    def spied(idg):
        for name in names:
            spy(idg, name)
        return idg

    geometric = spied(IDG(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.15,
                          horizontal_flip=True))
    x = images(16, 16, 16, 3)
    aug = adapt(geometric)
    assert aug.in_graph
    got = np.concatenate([b[0] for b in epoch(map_dataset(batches(x, np.zeros(16)), aug, seed=0))])
    assert got.shape == x.shape and np.isfinite(got).all() and not np.allclose(got, x)

    options = {"horizontal_flip": True, "vertical_flip": True, "rescale": 0.5, "samplewise_center": True,
               "samplewise_std_normalization": True}
    x = images(32, 9, 13, 3)
    got = np.concatenate([b[0] for b in epoch(map_dataset(batches(x, np.zeros(32)), adapt(spied(IDG(**options))),
                                                          seed=1))])
    assert calls == []
    idg = IDG(**options)
    flips = [{"flip_horizontal": h, "flip_vertical": v} for h in (False, True) for v in (False, True)]
    drawn = []
    for image, out in zip(x, got):
        errors = [np.abs(out - idg.standardize(idg.apply_transform(image.copy(), p))).max() for p in flips]
        assert min(errors) < 1e-5, errors
        drawn.append(int(np.argmin(errors)))
    assert sorted(set(drawn)) == [0, 1, 2, 3]  # every flip drawn: the images were transformed, not passed through


def test_one_augmentation_feeds_two_pipelines_each_naming_its_own_batches():
    """The state a pipeline needs (where faults go, how batches are named) is its own copy's, not the shared one's."""
    def fails(x, y):
        raise ValueError("boom")

    augmentation = adapt(fails)
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((8, 2), "float32"), np.zeros(8))).batch(2)
    reported = {"a": [], "b": []}
    a = map_dataset(dataset, augmentation, steps_per_epoch=4, initial_epoch=2, report=reported["a"].append)
    b = map_dataset(dataset, augmentation, report=reported["b"].append)
    for stream in (a, b):
        with pytest.raises((tf.errors.OpError, kfitx.KfitxError)):
            list(stream)
    assert "of epoch 3" in str(reported["a"][0]) and "of its epoch" in str(reported["b"][0])
    assert reported["a"][0].__cause__.args == ("boom",)
    assert augmentation._report is None  # the augmentation given is unchanged
