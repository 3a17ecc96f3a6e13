"""Augmentation of training batches inside a tf.data pipeline.

Separation of concerns:

* :func:`adapt` recognises what a user passes as ``augment`` -- a Python function
  on numpy batches, Keras preprocessing layers, or an ``ImageDataGenerator`` --
  and returns an :class:`Augmentation`, or says what would have been accepted;
* an :class:`Augmentation` knows how to augment *one batch* (``apply``), given a
  per-batch random seed and the batch's index;
* :func:`map_dataset` is the plumbing: it numbers the batches, gives each one a
  seed from ``tf.data.Dataset.random`` (the same ``seed`` gives the same stream,
  every new pass over the dataset gets new augmentations), and maps ``apply``
  over x in parallel and in order, leaving y and sample weights alone;
* ``ImageDataGenerator`` semantics are re-implemented on whole batches in TF ops
  (:func:`_random_params`, :func:`_apply_transform`, :func:`_standardize`, each
  the batched twin of the generator's method of the same name); what is not
  vectorised runs per image through the generator's own methods.

Only training batches are augmented; the caller never maps validation data.
TensorFlow and Keras are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import numbers
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from kfitx.data import _is_instance
from kfitx.errors import AugmentationError, message

__all__ = ["Augmentation", "adapt", "image_data_generator_class", "map_dataset"]

_ACCEPTED = (
    "`augment` must be None, a function fn(x, y) -> (x, y) on numpy batches, a Keras "
    "preprocessing layer (or a list / keras.Sequential of them), or an ImageDataGenerator"
)
_STREAM = 0x61756721  # folded into every batch seed, so augmentation never reuses the shuffle's seeds
_LEGACY_MODULE = "keras.src.legacy.preprocessing.image"
_NUMPY_RANDOM = threading.Lock()  # ImageDataGenerator draws from numpy's global RNG
_SEEDING = threading.RLock()  # held while Keras layers are traced with per-batch seeds


class Augmentation:
    """One augmentation, ready to be mapped over training batches.

    Attributes:
        kind: ``"callable"``, ``"keras layers"`` or ``"ImageDataGenerator"``.
        in_graph: True when :meth:`apply` is TensorFlow ops only (no Python per batch).
        error: The first exception raised while the pipeline ran (Python parts
            only), or ``None``. :func:`map_dataset` clears it.
        error_batch: Index (from the dataset's ``enumerate``) of the failed batch.
    """

    kind: str = "augmentation"
    in_graph: bool = True

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.error_batch: int | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        """One line for logs."""
        raise NotImplementedError

    def check(self, x_spec: Any) -> None:
        """Refuses, at build time, an x this augmentation cannot take.

        Args:
            x_spec: The ``TensorSpec`` of x (or a nest of them, for nested inputs).

        Raises:
            AugmentationError: here, unless x is a single tensor.
        """
        import tensorflow as tf

        if not isinstance(x_spec, tf.TensorSpec):
            raise AugmentationError(message(
                f"{self.kind} augmentation needs x to be a single tensor",
                f"x of structure {x_spec}",
                "Pass a Python function fn(x, y) -> (x, y) to augment nested inputs, or apply "
                "the augmentation inside the model."))

    def apply(self, x: Any, y: Any, *, seed: Any, batch: Any) -> tuple[Any, Any]:
        """Augments one batch in a tf.data map function.

        Args:
            x: The batch's inputs (tensors).
            y: Its targets, or ``None``.
            seed: An int64 tensor of shape ``[2]``, this batch's stateless seed.
            batch: An int64 scalar tensor, the batch's index.

        Returns:
            ``(x, y)`` augmented.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<kfitx Augmentation: {self.describe()}>"

    def _record(self, error: BaseException, batch: int) -> None:
        with self._lock:  # several tf.data threads may fail at once: the first wins
            if self.error is None:
                self.error, self.error_batch = error, batch


def _numpy_call(aug: Augmentation, body: Callable[..., list[np.ndarray]], batch: Any,
                tensors: list[Any], like: list[Any], dtypes: list[Any] | None = None) -> list[Any]:
    """Runs ``body(index, *arrays)`` in ``tf.numpy_function``; records what it raises.

    The outputs get the static shapes of ``like`` and the dtypes ``dtypes`` (those of
    ``like`` by default), so Keras sees known shapes.
    """
    import tensorflow as tf

    def run(index: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
        n = int(index)
        try:
            return body(n, *arrays)
        except Exception as err:  # recorded for the strategy's report, then re-raised to stop the pipeline
            aug._record(err, n)
            raise

    dtypes = dtypes or [t.dtype for t in like]
    outs = tf.numpy_function(run, [batch, *tensors], Tout=dtypes, stateful=True, name="kfitx_augment")
    for out, ref in zip(outs, like):
        out.set_shape(ref.shape)
    return list(outs)


def _writeable(array: np.ndarray) -> np.ndarray:
    return array if array.flags.writeable else array.copy()


# --- 1. A Python function on numpy batches --------------------------------------------------

class _CallableAugmentation(Augmentation):
    kind = "callable"
    in_graph = False

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        try:
            self._wants_rng = "rng" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # builtins without a signature
            self._wants_rng = False

    def describe(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
        rng = ", seeded rng per batch" if self._wants_rng else ""
        return f"callable {name} on numpy batches (Python, in tf.data threads{rng})"

    def check(self, x_spec: Any) -> None:
        """Any nest of tensors is fine: the function gets it as numpy arrays."""

    def apply(self, x: Any, y: Any, *, seed: Any, batch: Any) -> tuple[Any, Any]:
        import tensorflow as tf

        flat_x, flat_y = tf.nest.flatten(x), ([] if y is None else tf.nest.flatten(y))
        nx = len(flat_x)

        def body(n: int, seed_words: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
            arrays = tuple(_writeable(a) for a in arrays)
            xs = tf.nest.pack_sequence_as(x, list(arrays[:nx]))
            kwargs = {"rng": np.random.default_rng(seed_words.view(np.uint64))} if self._wants_rng else {}
            if y is None:
                got_x, got_y = self.fn(xs, **kwargs), None
            else:
                result = self.fn(xs, tf.nest.pack_sequence_as(y, list(arrays[nx:])), **kwargs)
                if not isinstance(result, (tuple, list)) or len(result) != 2:
                    raise self._bad(n, "a pair (x, y)", _kind_of(result),
                                    "Return both, e.g. `return x, y`, even if y is unchanged.")
                got_x, got_y = result
            out = self._checked(n, "x", x, got_x, arrays[:nx])
            if y is not None:
                out += self._checked(n, "y", y, got_y, arrays[nx:])
            return out

        outs = _numpy_call(self, body, batch, [seed, *flat_x, *flat_y], flat_x + flat_y)
        new_x = tf.nest.pack_sequence_as(x, outs[:nx])
        return new_x, (None if y is None else tf.nest.pack_sequence_as(y, outs[nx:]))

    def _bad(self, n: int, expected: str, received: str, todo: str) -> AugmentationError:
        return AugmentationError(message(f"The augmentation must return {expected} for batch {n}",
                                         f"{received} for batch {n}", todo))

    def _checked(self, n: int, role: str, structure: Any, got: Any, given: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        import tensorflow as tf

        try:
            tf.nest.assert_same_structure(structure, got, check_types=False)
        except (TypeError, ValueError):
            raise self._bad(n, f"{role} with the structure it was given ({len(given)} array(s))",
                            f"{role} as {_kind_of(got)}", "Return arrays nested as the batch was.") from None
        out = []
        for i, (leaf, ref) in enumerate(zip(tf.nest.flatten(got), given)):
            name = role if len(given) == 1 else f"{role}[{i}]"
            array = np.asarray(leaf)
            if array.shape != ref.shape:
                raise self._bad(n, f"{name} of shape {ref.shape} (as given; batch size {len(ref)})",
                                f"augmentation returned {name} of shape {array.shape}",
                                "Keep every sample and its shape; crop or resize inside the model instead.")
            if not np.can_cast(array.dtype, ref.dtype, "same_kind"):
                raise self._bad(n, f"{name} of dtype {ref.dtype} or one castable to it",
                                f"augmentation returned {name} of dtype {array.dtype}",
                                f"Cast it back (e.g. .astype('{ref.dtype}')), or convert the data to "
                                "floats before augmenting.")
            out.append(array.astype(ref.dtype, copy=False))
        return out


def _kind_of(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + ("" if shape is None else f" of shape {tuple(shape)}")


# --- 2. Keras preprocessing layers ---------------------------------------------------------

class _LayersAugmentation(Augmentation):
    kind = "keras layers"
    in_graph = True

    def __init__(self, layers: list[Any]) -> None:
        super().__init__()
        self.layers = layers

    def describe(self) -> str:
        names = []
        for layer in self.layers:
            inner = getattr(layer, "layers", None) or [layer]  # a Sequential: name what it holds
            names.extend(type(sub).__name__ for sub in inner)
        return f"Keras layers {', '.join(names)} in tf.data (training=True, seeded per batch)"

    def apply(self, x: Any, y: Any, *, seed: Any, batch: Any) -> tuple[Any, Any]:
        import tensorflow as tf

        out = x
        with _seeded_per_batch(self._seed_generators(), seed):
            for layer in self.layers:
                try:
                    out = layer(out, training=True)
                except (TypeError, ValueError) as err:
                    raise AugmentationError(message(
                        f"Augmentation layers must accept the batches' x ({x.dtype.name} of shape {x.shape})",
                        f"{type(layer).__name__} raised {type(err).__name__}: {err}",
                        "Check the layer's expected input (images are (batch, rows, cols, channels)).")) from err
        out = tf.convert_to_tensor(out)
        if not out.shape.is_compatible_with(x.shape):
            raise AugmentationError(message(
                "Augmentation layers must keep the shape of x (validation batches are not augmented)",
                f"x of shape {x.shape} became {out.shape}",
                "Put layers that crop or resize (RandomCrop, Resizing) inside the model."))
        out.set_shape(x.shape)
        return (tf.cast(out, x.dtype) if x.dtype.is_floating else out), y

    def _seed_generators(self) -> list[Any]:
        found: dict[int, Any] = {}
        for layer in self.layers:
            for sub in layer._flatten_layers(include_self=True, recursive=True):
                for gen in [*getattr(sub, "_seed_generators", ()),
                            *getattr(sub, "_backend_generators", {}).values()]:
                    found[id(gen)] = gen
        return list(found.values())


@contextlib.contextmanager
def _seeded_per_batch(generators: list[Any], seed: Any) -> Iterator[None]:
    """While a map function is traced, the layers' ``SeedGenerator``s draw from ``seed``.

    A ``SeedGenerator`` is a variable that each call advances; in a parallel map the
    calls race for it, so the same seed gave a different stream each run. Drawn from
    the per-batch seed instead, a run is reproducible and each pass differs.
    """
    import tensorflow as tf

    counter = itertools.count()

    def next_seed(ordered: bool = True) -> Any:
        return tf.random.experimental.stateless_fold_in(seed, next(counter))

    with _SEEDING:
        for gen in generators:
            gen.next = next_seed  # an instance attribute hides the method while tracing
        try:
            yield
        finally:
            for gen in generators:
                del gen.next


def _as_layers(augment: Any) -> list[Any] | None:
    """The layers in ``augment`` (one, a list / tuple, a Sequential), else ``None``."""
    if _is_instance(augment, "keras", "layers.Layer"):
        return [augment]
    if isinstance(augment, (list, tuple)) and augment and all(
            _is_instance(item, "keras", "layers.Layer") for item in augment):
        return list(augment)
    return None


# --- 3. ImageDataGenerator ------------------------------------------------------------------

def image_data_generator_class() -> type:
    """Keras's ``ImageDataGenerator`` class.

    Keras 3 keeps it only in its legacy namespace, reachable as
    ``tf.keras.preprocessing.image.ImageDataGenerator`` (the class is
    ``keras.src.legacy.preprocessing.image.ImageDataGenerator``);
    ``keras.preprocessing.image`` has no ``ImageDataGenerator``.

    Raises:
        AugmentationError: if this Keras has none.
    """
    import importlib

    try:
        return importlib.import_module(_LEGACY_MODULE).ImageDataGenerator
    except (ImportError, AttributeError):
        import keras

        raise AugmentationError(message(
            "ImageDataGenerator, which Keras 3 keeps in its legacy namespace "
            "(tf.keras.preprocessing.image.ImageDataGenerator)",
            f"keras {keras.__version__} without {_LEGACY_MODULE}.ImageDataGenerator",
            "Use Keras preprocessing layers instead (keras.layers.RandomRotation, RandomZoom, "
            "RandomTranslation, RandomFlip, Rescaling), or install a Keras 3 release that has it.")) from None


def _is_image_data_generator(obj: Any) -> bool:
    if _is_instance(obj, _LEGACY_MODULE, "ImageDataGenerator"):
        return True
    return not isinstance(obj, type) and all(
        callable(getattr(obj, name, None)) for name in ("random_transform", "standardize", "flow"))


_GEOMETRY = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")
_DEFAULTS: dict[str, Any] = {
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
_EDGE = 1e-3  # pixels: how far outside the image a sampled point still counts as on its edge


class _ImageDataGeneratorAugmentation(Augmentation):
    kind = "ImageDataGenerator"

    def __init__(self, idg: Any) -> None:
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
            value = getattr(idg, name, getattr(idg, f"_{name}", default))
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
        if getattr(idg, "_validation_split", 0.0):
            text += "; validation_split not applied (use fit's validation_split)"
        return text

    def check(self, x_spec: Any) -> None:
        super().check(x_spec)
        if x_spec.shape.rank != 4:
            raise AugmentationError(message(
                "ImageDataGenerator augments batches of images of rank 4 "
                f"{_LAYOUTS[getattr(self.idg, 'data_format', 'channels_last')]}",
                f"x of shape {x_spec.shape}", "Reshape the images, or use another kind of augmentation."))
        if self._per_image_reason() is None:
            _check_options(self.idg, x_spec.shape)

    def apply(self, x: Any, y: Any, *, seed: Any, batch: Any) -> tuple[Any, Any]:
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

    def _per_image_body(self, dtype: Any) -> Callable[..., list[np.ndarray]]:
        idg, np_dtype = self.idg, np.dtype(dtype.as_numpy_dtype)
        split = all(callable(getattr(idg, m, None)) for m in ("get_random_transform", "apply_transform")) and (
            getattr(type(idg), "random_transform", None) is getattr(image_data_generator_class(), "random_transform"))

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


def _differs(value: Any, default: Any) -> bool:
    try:
        return not np.array_equal(value, default)
    except (TypeError, ValueError):
        return True


def _check_options(idg: Any, shape: Any) -> None:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _zca(idg: Any) -> Any:
    matrix = getattr(idg, "zca_whitening_matrix", None)
    return getattr(idg, "principal_components", None) if matrix is None else matrix


def _shift_draw(spec: Any, u: Any, sign_u: Any, size: Any) -> Any:
    """A width / height shift drawn as ``get_random_transform`` draws it, in pixels."""
    import tensorflow as tf

    if np.ndim(spec) == 1 or (isinstance(spec, numbers.Integral) and spec > 0):  # np.random.choice(spec)
        values = np.arange(spec) if np.ndim(spec) == 0 else np.asarray(spec, dtype=np.float64)
        index = tf.minimum(tf.cast(u * len(values), tf.int32), len(values) - 1)
        value = tf.gather(tf.constant(values, tf.float32), index) * tf.where(sign_u < 0.5, -1.0, 1.0)
    else:  # the ValueError branch: a float
        value = _uniform(u, -float(spec), float(spec))
    return value * size if np.max(spec) < 1 else value  # fractions of the image's size


def _uniform(u: Any, low: float, high: float) -> Any:
    return low + (high - low) * u  # np.random.uniform(low, high)


def _random_params(idg: Any, shape: Any, seed: Any) -> dict[str, Any]:
    """Per-sample transform parameters, drawn as ``idg.get_random_transform`` draws them.

    Args:
        idg: The ImageDataGenerator.
        shape: The batch's shape (a tensor or a list), in ``idg.data_format``.
        seed: A stateless seed, shape ``[2]``.

    Returns:
        A dict of ``[batch]`` tensors under ``get_random_transform``'s keys; the
        keys of options that are off are left out.
    """
    import tensorflow as tf

    shape = tf.cast(shape, tf.int32)
    rows, cols = (shape[2], shape[3]) if idg.data_format == "channels_first" else (shape[1], shape[2])
    u = tf.random.stateless_uniform(tf.stack([12, shape[0]]), seed=seed, dtype=tf.float32)
    zoom = idg.zoom_range if np.ndim(idg.zoom_range) == 1 else [1 - idg.zoom_range, 1 + idg.zoom_range]
    params = {}  # an option that is off leaves its key out: nothing to apply
    if idg.rotation_range:
        params["theta"] = _uniform(u[0], -idg.rotation_range, idg.rotation_range)
    if np.any(idg.height_shift_range):
        params["tx"] = _shift_draw(idg.height_shift_range, u[1], u[2], tf.cast(rows, tf.float32))
    if np.any(idg.width_shift_range):
        params["ty"] = _shift_draw(idg.width_shift_range, u[3], u[4], tf.cast(cols, tf.float32))
    if idg.shear_range:
        params["shear"] = _uniform(u[5], -idg.shear_range, idg.shear_range)
    if not (zoom[0] == 1 and zoom[1] == 1):
        params["zx"], params["zy"] = _uniform(u[6], zoom[0], zoom[1]), _uniform(u[7], zoom[0], zoom[1])
    if idg.horizontal_flip:
        params["flip_horizontal"] = u[8] < 0.5
    if idg.vertical_flip:
        params["flip_vertical"] = u[9] < 0.5
    if idg.channel_shift_range != 0:
        params["channel_shift_intensity"] = _uniform(u[10], -idg.channel_shift_range, idg.channel_shift_range)
    if idg.brightness_range is not None:
        params["brightness"] = _uniform(u[11], *idg.brightness_range)
    return params


def _affine_matrices(params: dict[str, Any], batch: Any, rows: Any, cols: Any) -> Any:
    """``[batch, 3, 3]`` output-to-input maps in ImageProjectiveTransform's (column, row) frame.

    ``apply_affine_transform`` composes rotation, shift, shear, zoom, centres the
    result on ``(rows / 2 - 0.5, cols / 2 - 0.5)``, then swaps the axes before
    calling scipy, which indexes (row, column). Swapped twice, its matrix is exactly
    the one ``ImageProjectiveTransformV3`` wants, whose points are (x=column, y=row)
    -- including the generator's quirks: ``tx`` (from ``height_shift_range``)
    moves images along the columns, and a non-square image turns about a point off
    its centre. The flips, which the generator applies afterwards, are folded in.
    """
    import tensorflow as tf

    def get(key: str, default: float) -> Any:
        value = params.get(key)
        return tf.fill([batch], default) if value is None else tf.cast(tf.reshape(value, [batch]), tf.float32)

    theta = get("theta", 0.0) * (math.pi / 180)
    shear = get("shear", 0.0) * (math.pi / 180)
    tx, ty, zx, zy = get("tx", 0.0), get("ty", 0.0), get("zx", 1.0), get("zy", 1.0)
    one, zero = tf.ones([batch]), tf.zeros([batch])

    def matrix(*rows_: list[Any]) -> Any:
        return tf.stack([tf.stack(r, axis=-1) for r in rows_], axis=-2)

    cos, sin = tf.cos(theta), tf.sin(theta)
    m = matrix([cos, -sin, zero], [sin, cos, zero], [zero, zero, one])
    m = m @ matrix([one, zero, tx], [zero, one, ty], [zero, zero, one])
    m = m @ matrix([one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one])
    m = m @ matrix([zx, zero, zero], [zero, zy, zero], [zero, zero, one])
    ox, oy = tf.cast(rows, tf.float32) / 2 - 0.5, tf.cast(cols, tf.float32) / 2 - 0.5
    m = matrix([one, zero, one * ox], [zero, one, one * oy], [zero, zero, one]) @ m @ matrix(
        [one, zero, -one * ox], [zero, one, -one * oy], [zero, zero, one])
    fh = tf.cast(tf.reshape(params.get("flip_horizontal", tf.zeros([batch], tf.bool)), [batch]), tf.bool)
    fv = tf.cast(tf.reshape(params.get("flip_vertical", tf.zeros([batch], tf.bool)), [batch]), tf.bool)
    sx, sy = tf.where(fh, -1.0, 1.0), tf.where(fv, -1.0, 1.0)
    last_col, last_row = tf.cast(cols, tf.float32) - 1, tf.cast(rows, tf.float32) - 1
    flip = matrix([sx, zero, tf.where(fh, last_col, 0.0)], [zero, sy, tf.where(fv, last_row, 0.0)],
                  [zero, zero, one])
    return m @ flip


def _input_coordinates(m: Any, rows: Any, cols: Any) -> tuple[Any, Any]:
    """Where each output pixel reads from: ``[batch, rows, cols]`` columns and rows."""
    import tensorflow as tf

    ys, xs = tf.meshgrid(tf.range(tf.cast(rows, tf.float32)), tf.range(tf.cast(cols, tf.float32)), indexing="ij")
    entry = lambda i, j: m[:, i, j][:, None, None]  # noqa: E731
    return (entry(0, 0) * xs + entry(0, 1) * ys + entry(0, 2),
            entry(1, 0) * xs + entry(1, 1) * ys + entry(1, 2))


def _bilinear(images: Any, x_in: Any, y_in: Any) -> Any:
    """Bilinear samples of NHWC ``images`` at in-range ``[batch, rows, cols]`` coordinates."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, rows, cols = shape[0], shape[1], shape[2]
    x0, y0 = tf.floor(x_in), tf.floor(y_in)
    wx, wy = tf.cast((x_in - x0)[..., None], images.dtype), tf.cast((y_in - y0)[..., None], images.dtype)
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, cols - 1), tf.minimum(y0 + 1, rows - 1)
    pixels = tf.reshape(images, [-1, shape[3]])  # one row per pixel: the channels are read together
    base = (tf.range(batch) * rows * cols)[:, None, None]
    at = lambda yy, xx: tf.gather(pixels, base + yy * cols + xx)  # noqa: E731
    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


_COMPILED_WARPS: dict[str, Any] = {}


def _compiled_warp(fill_mode: str) -> Any:
    """The warp for ``fill_mode`` ("nearest", "constant" or "wrap") as one XLA-compiled function.

    Coordinates are computed once per pixel (not per channel, as ImageProjectiveTransformV3
    does) and the four neighbours gathered as whole pixels; compiled, this is ~6x faster than
    that op at 96x96 inside tf.data, with the same values.
    """
    import tensorflow as tf

    if fill_mode not in _COMPILED_WARPS:
        def warp(images: Any, m: Any, cval: Any) -> Any:
            shape = tf.shape(images)
            rows, cols = shape[1], shape[2]
            x_in, y_in = _input_coordinates(m, rows, cols)
            last_col, last_row = tf.cast(cols - 1, tf.float32), tf.cast(rows - 1, tf.float32)
            # A point computed a float32 rounding error outside the edge is on it (scipy's float64 says so).
            inside = lambda c, last: (c >= -_EDGE) & (c <= last + _EDGE)  # noqa: E731
            mask = inside(x_in, last_col) & inside(y_in, last_row)
            if fill_mode == "wrap":  # scipy's "wrap": period size - 1, not size (TF's WRAP)
                def wrap(c: Any, last: Any) -> Any:
                    period = tf.math.floormod(c, tf.maximum(last, 1.0)) * tf.cast(last > 0, c.dtype)
                    return tf.where(inside(c, last), tf.clip_by_value(c, 0.0, last), period)

                x_in, y_in = wrap(x_in, last_col), wrap(y_in, last_row)
            else:  # scipy's "nearest": the edge pixel continues outward
                x_in, y_in = tf.clip_by_value(x_in, 0.0, last_col), tf.clip_by_value(y_in, 0.0, last_row)
            out = _bilinear(images, x_in, y_in)
            if fill_mode == "constant":  # scipy: cval wherever the point is outside, no blending at the edge
                out = tf.where(mask[..., None], out, tf.cast(cval, out.dtype))
            return out

        _COMPILED_WARPS[fill_mode] = tf.function(warp, jit_compile=True, reduce_retracing=True)
    return _COMPILED_WARPS[fill_mode]


def _warp(images: Any, m: Any, fill_mode: str, cval: float) -> Any:
    """Bilinear warp of NHWC ``images`` with scipy's (order 1) edge modes."""
    import tensorflow as tf

    if fill_mode != "reflect":
        return _compiled_warp(fill_mode)(images, m, tf.constant(cval, tf.float32))
    shape = tf.shape(images)
    # TF's REFLECT is scipy's "reflect".
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.reshape(m, [-1, 9])[:, :8], output_shape=tf.stack([shape[1], shape[2]]),
        fill_value=tf.constant(cval, tf.float32), interpolation="BILINEAR", fill_mode="REFLECT")


def _apply_transform(idg: Any, x: Any, params: dict[str, Any]) -> Any:
    """``idg.apply_transform`` on a whole batch, with per-sample ``params``.

    Args:
        idg: The ImageDataGenerator (its fill_mode, cval, data_format are used).
        x: A float batch in ``idg.data_format``.
        params: ``get_random_transform``'s keys, each a ``[batch]`` array; missing
            keys (or ``None``) mean "not applied".

    Returns:
        The batch transformed, one bilinear resampling per image.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if idg.data_format == "channels_first":
        x = tf.transpose(x, [0, 2, 3, 1])
    shape = tf.shape(x)
    geometry = {key for key in _GEOMETRY if params.get(key) is not None}
    if geometry <= {"flip_horizontal", "flip_vertical"}:  # flips alone: no resampling needed
        for key, axis in (("flip_horizontal", 2), ("flip_vertical", 1)):
            if key in geometry:
                flip = tf.reshape(tf.cast(params[key], tf.bool), [-1, 1, 1, 1])
                x = tf.where(flip, tf.reverse(x, [axis]), x)
    else:
        m = _affine_matrices(params, shape[0], shape[1], shape[2])
        x = _warp(x, m, idg.fill_mode, float(idg.cval))
    intensity = params.get("channel_shift_intensity")
    if intensity is not None:  # apply_channel_shift: clipped to the image's own range
        low = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
        high = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
        x = tf.clip_by_value(x + tf.reshape(tf.cast(intensity, x.dtype), [-1, 1, 1, 1]), low, high)
    brightness = params.get("brightness")
    if brightness is not None:
        x = _brightness(x, tf.reshape(tf.cast(brightness, tf.float32), [-1, 1, 1, 1]))
    if idg.data_format == "channels_first":
        x = tf.transpose(x, [0, 3, 1, 2])
    return x


def _brightness(x: Any, factor: Any) -> Any:
    """``apply_brightness_shift(x, b, scale=False)``: via 8 bits, as PIL computes it."""
    import tensorflow as tf

    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    low = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
    rescaled = (low < 0) | (high > 255)  # array_to_img rescales such images to 0..255 first
    span = high - low
    scaled = tf.where(rescaled, tf.math.divide_no_nan(x - low, span) * 255, x)
    pixels = tf.floor(scaled)  # .astype("uint8")
    if x.shape[-1] == 4:  # RGBA: PIL keeps alpha
        factor = tf.concat([tf.repeat(factor, 3, axis=-1), tf.ones_like(factor)], axis=-1)
    out = tf.clip_by_value(tf.floor(pixels * factor), 0, 255)  # Image.blend(black, image, b)
    out = tf.where(rescaled, out / 255 * span + low, out)
    return tf.cast(out, dtype)


def _standardize(idg: Any, x: Any) -> Any:
    """``idg.standardize`` on a whole batch (in ``idg.data_format``), in its order.

    All but ``preprocessing_function``, which comes first and runs per image in
    Python (see ``_ImageDataGeneratorAugmentation.apply``).
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    axes = [1, 2, 3]
    if idg.rescale:
        x = x * tf.cast(idg.rescale, x.dtype)
    if idg.samplewise_center:
        x = x - tf.reduce_mean(x, axis=axes, keepdims=True)
    if idg.samplewise_std_normalization:
        x = x / (tf.math.reduce_std(x, axis=axes, keepdims=True) + 1e-6)
    if idg.featurewise_center and idg.mean is not None:
        x = x - tf.cast(idg.mean, x.dtype)
    if idg.featurewise_std_normalization and idg.std is not None:
        x = x / (tf.cast(idg.std, x.dtype) + 1e-6)
    if idg.zca_whitening and _zca(idg) is not None:
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, tf.reduce_prod(shape[-3:])])
        x = tf.reshape(flat @ tf.cast(_zca(idg), x.dtype), shape)
    return x


# --- adapt and map ---------------------------------------------------------------------------

def adapt(augment: Any) -> Augmentation | None:
    """Turns what a user passes as ``augment`` into an :class:`Augmentation`.

    Args:
        augment: ``None``; an :class:`Augmentation`; a function ``fn(x, y) -> (x, y)``
            (or ``fn(x) -> x`` for data without targets) on numpy batches, which
            gets a seeded ``numpy.random.Generator`` if it takes a keyword ``rng``;
            a Keras preprocessing layer, a list / tuple or ``keras.Sequential`` of
            them; or an ``ImageDataGenerator`` (see :func:`image_data_generator_class`).

    Returns:
        ``None`` for ``None``, else the augmentation.

    Raises:
        AugmentationError: for anything else, listing what is accepted.
    """
    if augment is None or isinstance(augment, Augmentation):
        return augment
    if _is_image_data_generator(augment):
        return _ImageDataGeneratorAugmentation(augment)
    layers = _as_layers(augment)
    if layers is not None:
        return _LayersAugmentation(layers)
    if isinstance(augment, type):
        raise AugmentationError(message(_ACCEPTED, f"the class {augment.__name__} itself",
                                        f"Pass an instance, e.g. {augment.__name__}(...)."))
    if isinstance(augment, (list, tuple)):
        bad = [type(item).__name__ for item in augment if not _is_instance(item, "keras", "layers.Layer")]
        raise AugmentationError(message(_ACCEPTED, f"a {type(augment).__name__} holding "
                                        f"{', '.join(bad) or 'nothing'}",
                                        "A list may hold Keras layers only; wrap other steps in one function."))
    if callable(augment):
        return _CallableAugmentation(augment)
    shown = repr(augment) if isinstance(augment, (str, int, float)) else type(augment).__name__
    raise AugmentationError(message(_ACCEPTED, shown, "See docs/augment.md for an example of each."))


def map_dataset(dataset: Any, augmentation: Augmentation, *, seed: int | None = None) -> Any:
    """Applies ``augmentation`` to the x of every batch of ``dataset``.

    Each batch gets a stateless seed from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``: the same ``seed`` gives the same stream,
    each new iteration (epoch) new augmentations. The map runs in parallel
    (``AUTOTUNE``) and keeps the order; the caller prefetches. ``error`` and
    ``error_batch`` of the augmentation are cleared for the new pipeline.

    Args:
        dataset: A ``tf.data.Dataset`` of batches: ``x``, ``(x,)``, ``(x, y)`` or
            ``(x, y, sample_weight)``. Training batches only.
        augmentation: From :func:`adapt` (anything :func:`adapt` takes is adapted).
        seed: Seed of the augmentation stream; ``None`` for a random one.

    Returns:
        The dataset with x augmented: same structure, shapes and dtypes (integer x
        augmented by layers or an ImageDataGenerator comes out as floats); y and
        sample weights unchanged (a Python function may change y's values).

    Raises:
        AugmentationError: if this augmentation cannot handle these batches.
    """
    import tensorflow as tf

    augmentation = adapt(augmentation)
    if augmentation is None:
        return dataset
    spec = dataset.element_spec
    packed = isinstance(spec, tuple)
    if packed and not 1 <= len(spec) <= 3:
        raise AugmentationError(message(
            "Batches must be x, (x,), (x, y) or (x, y, sample_weight)", f"tuples of {len(spec)} items",
            "Pack several inputs as a tuple or dict inside x: ((x1, x2), y)."))
    augmentation.check(spec[0] if packed else spec)
    augmentation.error = augmentation.error_batch = None

    @tf.autograph.experimental.do_not_convert
    def augment(indexed: Any, random: Any) -> Any:
        index, element = indexed
        batch_seed = tf.random.experimental.stateless_fold_in(tf.stack([random, index]), _STREAM)
        x, rest = (element[0], element[1:]) if packed else (element, ())
        new_x, new_y = augmentation.apply(x, rest[0] if rest else None, seed=batch_seed, batch=index)
        if not packed:
            return new_x
        return (new_x,) + ((new_y,) if rest else ()) + tuple(rest[1:])

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((dataset.enumerate(), seeds)).map(
        augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
