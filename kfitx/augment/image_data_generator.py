"""Augmentation by a Keras ``ImageDataGenerator``.

Keras's own generator, with its default methods, is vectorised on whole batches
in TF ops (:mod:`kfitx.augment.image_ops`); what is not vectorised -- a
subclass overriding its methods, ``interpolation_order`` other than 1 --
runs per image through the generator's own methods, and ``preprocessing_function``
is called per image in Python.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import ArrayLike

from kfitx import _keras
from kfitx.augment.base import Augmentation, _numpy_call
from kfitx.augment.image_ops import _apply_transform, _random_params, _standardize, _zca
from kfitx.errors import AugmentationError, message
from kfitx.runtime.lazy import is_instance as _is_instance

if TYPE_CHECKING:
    import tensorflow as tf
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from kfitx.augment.base import Nest

_LEGACY_MODULE = _keras.LEGACY_IMAGE_MODULE
_NUMPY_RANDOM = threading.Lock()  # ImageDataGenerator draws from numpy's global RNG


def image_data_generator_class() -> type[ImageDataGenerator]:
    """Keras's ``ImageDataGenerator`` class.

    Keras 3 keeps it only in its legacy namespace, reachable as
    ``tf.keras.preprocessing.image.ImageDataGenerator`` (the class is
    ``keras.src.legacy.preprocessing.image.ImageDataGenerator``);
    ``keras.preprocessing.image`` has no ``ImageDataGenerator``.

    Raises:
        AugmentationError: if this Keras has none.
    """
    try:
        return _keras.legacy_image_module().ImageDataGenerator
    except (ImportError, AttributeError):
        import keras

        raise AugmentationError(message(
            "ImageDataGenerator, which Keras 3 keeps in its legacy namespace "
            "(tf.keras.preprocessing.image.ImageDataGenerator)",
            f"keras {keras.__version__} without {_LEGACY_MODULE}.ImageDataGenerator",
            "Use Keras preprocessing layers instead (keras.layers.RandomRotation, RandomZoom, "
            "RandomTranslation, RandomFlip, Rescaling), or install a Keras 3 release that has it.")) from None


def _is_image_data_generator(obj: object) -> bool:
    if _is_instance(obj, _LEGACY_MODULE, "ImageDataGenerator"):
        return True
    return not isinstance(obj, type) and all(
        callable(getattr(obj, name, None)) for name in ("random_transform", "standardize", "flow"))


_DEFAULTS: dict[str, object] = {
    "rotation_range": 0, "width_shift_range": 0.0, "height_shift_range": 0.0, "shear_range": 0.0,
    "zoom_range": [1, 1], "horizontal_flip": False, "vertical_flip": False, "fill_mode": "nearest",
    "cval": 0.0, "channel_shift_range": 0.0, "brightness_range": None, "rescale": None,
    "samplewise_center": False, "samplewise_std_normalization": False, "featurewise_center": False,
    "featurewise_std_normalization": False, "zca_whitening": False, "preprocessing_function": None,
    "interpolation_order": 1, "data_format": "channels_last", "validation_split": 0.0,
}
_LAYOUTS = {"channels_last": "(batch, rows, cols, channels)", "channels_first": "(batch, channels, rows, cols)"}
_METHODS = ("get_random_transform", "apply_transform", "random_transform", "standardize")
_FILL_MODES = ("nearest", "constant", "reflect", "wrap")


class _ImageDataGeneratorAugmentation(Augmentation):
    kind = "ImageDataGenerator"

    def __init__(self, idg: ImageDataGenerator) -> None:
        super().__init__()
        self.idg = idg

    @property
    def in_graph(self) -> bool:  # type: ignore[override]
        return self._per_image_reason() is None and not getattr(self.idg, "preprocessing_function", None)

    def _per_image_reason(self) -> str | None:
        """Why the whole augmentation must run per image, or ``None``."""
        idg = self.idg
        if not _is_instance(idg, _LEGACY_MODULE, "ImageDataGenerator"):
            return f"{type(idg).__name__} is not Keras's ImageDataGenerator"
        base = image_data_generator_class()
        custom = [m for m in _METHODS if getattr(type(idg), m) is not getattr(base, m)]
        if custom:
            return f"{type(idg).__name__} overrides {', '.join(custom)}"
        if getattr(idg, "interpolation_order", 1) != 1:
            return f"interpolation_order={idg.interpolation_order}; only 1, bilinear, is vectorised"
        return None

    def describe(self) -> str:
        idg = self.idg
        shown = []
        for name, default in _DEFAULTS.items():
            value = (_keras.image_data_generator_validation_split(idg) if name == "validation_split"
                     else getattr(idg, name, default))
            if name == "preprocessing_function" and value is not None:
                shown.append(f"{name}={getattr(value, '__qualname__', type(value).__name__)}")
            elif _differs(value, default):
                shown.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value!r}")
        text = f"{type(idg).__name__}({', '.join(shown)})"
        reason = self._per_image_reason()
        if reason:
            return text + f" per image in Python through its own methods ({reason})"
        text += " vectorised on whole batches"
        if getattr(idg, "preprocessing_function", None):
            text += "; preprocessing_function called per image in Python"
        if _keras.image_data_generator_validation_split(idg):
            text += "; validation_split not applied (use fit's validation_split)"
        return text

    def check(self, x_spec: tf.TensorSpec) -> None:
        super().check(x_spec)
        if x_spec.shape.rank != 4:
            raise AugmentationError(message(
                "ImageDataGenerator augments batches of images of rank 4 "
                f"{_LAYOUTS[getattr(self.idg, 'data_format', 'channels_last')]}",
                f"x of shape {x_spec.shape}", "Reshape the images, or use another kind of augmentation."))
        if self._per_image_reason() is None:
            _check_options(self.idg, x_spec.shape)

    def apply(self, x: tf.Tensor, y: Nest | None, *, seed: tf.Tensor, batch: tf.Tensor) -> tuple[Nest, Nest | None]:
        import tensorflow as tf

        idg = self.idg
        dtype = tf.as_dtype(getattr(idg, "dtype", None) or "float32")
        out_dtype = x.dtype if x.dtype.is_floating else dtype
        if self._per_image_reason() is not None:
            out = _numpy_call(self, self._per_image_body(dtype), batch, [seed, x], [x], [dtype])[0]
            return tf.cast(out, out_dtype), y
        out = _apply_transform(idg, tf.cast(x, dtype), _random_params(idg, tf.shape(x), seed))
        if idg.preprocessing_function:
            out = _numpy_call(self, self._preprocess_body(), batch, [out], [out])[0]
        return tf.cast(_standardize(idg, out), out_dtype), y

    def _preprocess_body(self) -> Callable[..., list[np.ndarray]]:
        fn = self.idg.preprocessing_function

        def body(n: int, images: np.ndarray) -> list[np.ndarray]:
            out = np.empty_like(images)
            for i, image in enumerate(images):
                result = np.asarray(fn(image.copy()))
                if result.shape != image.shape:
                    raise AugmentationError(message(
                        f"preprocessing_function must return an image of shape {image.shape} "
                        f"(image {i} of batch {n})", f"shape {result.shape}",
                        "Return an image of the shape it was given."))
                out[i] = result
            return [out]

        return body

    def _per_image_body(self, dtype: tf.DType) -> Callable[..., list[np.ndarray]]:
        idg, np_dtype = self.idg, np.dtype(dtype.as_numpy_dtype)
        split = all(callable(getattr(idg, m, None)) for m in ("get_random_transform", "apply_transform")) and (
            getattr(type(idg), "random_transform", None) is image_data_generator_class().random_transform)

        def body(n: int, seed_words: np.ndarray, images: np.ndarray) -> list[np.ndarray]:
            seeds = np.random.default_rng(seed_words.view(np.uint64)).integers(0, 2**32 - 1, len(images))
            out = np.empty(images.shape, np_dtype)
            for i, image in enumerate(images):
                image = image.astype(np_dtype)
                with _NUMPY_RANDOM:  # seeds numpy's global RNG, as the generator does; restored after
                    state = np.random.get_state()
                    try:
                        if split:  # draw under the lock, transform outside it
                            params = idg.get_random_transform(image.shape, int(seeds[i]))
                        else:
                            image = idg.random_transform(image, seed=int(seeds[i]))
                    finally:
                        np.random.set_state(state)
                if split:
                    image = idg.apply_transform(image, params)
                out[i] = idg.standardize(image)
            return [out]

        return body


def _differs(value: object, default: object) -> bool:
    try:
        return not np.array_equal(cast(ArrayLike, value), cast(ArrayLike, default))  # what numpy cannot compare differs
    except (TypeError, ValueError):
        return True


def _check_options(idg: ImageDataGenerator, shape: tf.TensorShape) -> None:
    """Build-time checks of what the vectorised path cannot (or IDG would not) do."""
    for name in ("rotation_range", "shear_range", "channel_shift_range", "cval", "width_shift_range",
                 "height_shift_range", "rescale"):
        value = getattr(idg, name)
        listed = name.endswith("shift_range") and np.ndim(value) == 1 and all(map(_is_number, value))
        if not (_is_number(value) or listed or (name == "rescale" and value is None)):
            kinds = "a number or a list of numbers" if name.endswith("shift_range") else "a number"
            raise AugmentationError(message(f"ImageDataGenerator {name} must be {kinds}", repr(value)))
    if idg.fill_mode not in _FILL_MODES:
        raise AugmentationError(message(f"ImageDataGenerator fill_mode must be one of {', '.join(_FILL_MODES)}",
                                        repr(idg.fill_mode)))
    channels = shape[1] if idg.data_format == "channels_first" else shape[-1]
    if idg.brightness_range is not None and channels not in (1, 3, 4):
        raise AugmentationError(message(
            "ImageDataGenerator's brightness_range works on images of 1, 3 or 4 channels (through PIL)",
            f"{channels} channels", "Drop brightness_range, or use keras.layers.RandomBrightness."))
    stats = {"featurewise_center": ("mean", getattr(idg, "mean", None)),
             "featurewise_std_normalization": ("std", getattr(idg, "std", None)),
             "zca_whitening": ("zca_whitening_matrix", _zca(idg))}
    for flag, (attr, value) in stats.items():
        if getattr(idg, flag) and value is None:  # the generator only warns, then skips the step
            raise AugmentationError(message(
                f"ImageDataGenerator({flag}=True) needs statistics from idg.fit(x_train)",
                f"idg.{attr} is None", "Call idg.fit(x_train) (a sample of the training images is "
                "enough) before training."))


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
