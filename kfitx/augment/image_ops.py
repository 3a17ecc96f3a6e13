"""``ImageDataGenerator`` semantics re-implemented on whole batches in TF ops.

:func:`_random_params`, :func:`_apply_transform` and :func:`_standardize` are
each the batched twin of the generator's method of the same name; the affine
warp (:func:`_warp`) has scipy's edge modes, XLA-compiled for images of 32x32 pixels and more.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import tensorflow as tf
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

#: ``warp(images, m, cval) -> images``: an affine warp of NHWC images by ``[batch, 3, 3]`` maps.
Warp = Callable[["tf.Tensor", "tf.Tensor", "tf.Tensor"], "tf.Tensor"]

_GEOMETRY = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")
_EDGE = 1e-3  # pixels: how far outside the image a sampled point still counts as on its edge


def _zca(idg: ImageDataGenerator) -> NDArray[np.floating] | None:
    matrix = getattr(idg, "zca_whitening_matrix", None)
    return getattr(idg, "principal_components", None) if matrix is None else matrix


def _shift_draw(spec: float | Sequence[float], u: tf.Tensor, sign_u: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """A width / height shift drawn as ``get_random_transform`` draws it, in pixels."""
    import tensorflow as tf

    if np.ndim(spec) == 1 or (isinstance(spec, numbers.Integral) and int(spec) > 0):  # np.random.choice(spec)
        values = np.arange(cast(int, spec)) if np.ndim(spec) == 0 else np.asarray(spec, dtype=np.float64)
        index = tf.minimum(tf.cast(u * len(values), tf.int32), len(values) - 1)
        value = tf.gather(tf.constant(values, tf.float32), index) * tf.where(sign_u < 0.5, -1.0, 1.0)
    else:  # the ValueError branch: a float
        value = _uniform(u, -float(cast(float, spec)), float(cast(float, spec)))
    return value * size if np.max(spec) < 1 else value  # fractions of the image's size


def _uniform(u: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return low + (high - low) * u  # np.random.uniform(low, high)


def _random_params(idg: ImageDataGenerator, shape: tf.Tensor | Sequence[int], seed: tf.Tensor) -> dict[str, tf.Tensor]:
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


def _affine_matrices(params: dict[str, tf.Tensor], batch: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
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

    def get(key: str, default: float) -> tf.Tensor:
        value = params.get(key)
        return tf.fill([batch], default) if value is None else tf.cast(tf.reshape(value, [batch]), tf.float32)

    def flipped(key: str) -> tf.Tensor:
        value = params.get(key)
        return None if value is None else tf.cast(tf.reshape(value, [batch]), tf.bool)

    # The product rotation @ shift @ shear @ zoom, centred, @ flip, in closed form: a few
    # elementwise ops per batch rather than a chain of 3x3 products (each op costs more than its
    # arithmetic on small batches).
    theta = get("theta", 0.0) * (math.pi / 180)
    sheared = theta if params.get("shear") is None else theta + get("shear", 0.0) * (math.pi / 180)
    tx, ty, zx, zy = get("tx", 0.0), get("ty", 0.0), get("zx", 1.0), get("zy", 1.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    a, b = cos * zx, -tf.sin(sheared) * zy  # rotation @ shear @ zoom: [[a, b], [d, e]]
    d, e = sin * zx, tf.cos(sheared) * zy
    ox, oy = tf.cast(rows, tf.float32) / 2 - 0.5, tf.cast(cols, tf.float32) / 2 - 0.5
    # The translation, centred: rotation @ (tx, ty) + o - linear @ o.
    t0 = cos * tx - sin * ty + ox - (a * ox + b * oy)
    t1 = sin * tx + cos * ty + oy - (d * ox + e * oy)
    fh, fv = flipped("flip_horizontal"), flipped("flip_vertical")
    if fh is not None:  # x -> last_col - x: the first column changes sign, the translation moves
        last_col = tf.cast(cols, tf.float32) - 1
        t0, t1 = tf.where(fh, a * last_col + t0, t0), tf.where(fh, d * last_col + t1, t1)
        a, d = tf.where(fh, -a, a), tf.where(fh, -d, d)
    if fv is not None:
        last_row = tf.cast(rows, tf.float32) - 1
        t0, t1 = tf.where(fv, b * last_row + t0, t0), tf.where(fv, e * last_row + t1, t1)
        b, e = tf.where(fv, -b, b), tf.where(fv, -e, e)
    zero, one = tf.zeros([batch]), tf.ones([batch])
    return tf.reshape(tf.stack([a, b, t0, d, e, t1, zero, zero, one], axis=-1), [batch, 3, 3])


def _input_coordinates(m: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Where each output pixel reads from: ``[batch, rows, cols]`` columns and rows."""
    import tensorflow as tf

    ys, xs = tf.meshgrid(tf.range(tf.cast(rows, tf.float32)), tf.range(tf.cast(cols, tf.float32)), indexing="ij")
    entry = lambda i, j: m[:, i, j][:, None, None]
    return (entry(0, 0) * xs + entry(0, 1) * ys + entry(0, 2),
            entry(1, 0) * xs + entry(1, 1) * ys + entry(1, 2))


def _bilinear(images: tf.Tensor, x_in: tf.Tensor, y_in: tf.Tensor) -> tf.Tensor:
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
    at = lambda yy, xx: tf.gather(pixels, base + yy * cols + xx)
    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


_COMPILED_WARPS: dict[str, Warp] = {}
#: Images of fewer pixels are warped by the same ops uncompiled: there XLA's compile (~0.1-0.3 s per batch
#: shape, the partial last batch a second one) costs more than a whole short fit saves (8x8: the same speed).
_COMPILE_FROM_PIXELS = 32 * 32


def _warp_body(fill_mode: str) -> Warp:
    """The warp for ``fill_mode`` ("nearest", "constant" or "wrap"), in TF ops.

    Coordinates are computed once per pixel (not per channel, as ImageProjectiveTransformV3
    does) and the four neighbours gathered as whole pixels.
    """
    import tensorflow as tf

    def warp(images: tf.Tensor, m: tf.Tensor, cval: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        rows, cols = shape[1], shape[2]
        x_in, y_in = _input_coordinates(m, rows, cols)
        last_col, last_row = tf.cast(cols - 1, tf.float32), tf.cast(rows - 1, tf.float32)
        # A point computed a float32 rounding error outside the edge is on it (scipy's float64 says so).
        inside = lambda c, last: (c >= -_EDGE) & (c <= last + _EDGE)
        mask = inside(x_in, last_col) & inside(y_in, last_row)
        if fill_mode == "wrap":  # scipy's "wrap": period size - 1, not size (TF's WRAP)
            def wrap(c: tf.Tensor, last: tf.Tensor) -> tf.Tensor:
                period = tf.math.floormod(c, tf.maximum(last, 1.0)) * tf.cast(last > 0, c.dtype)
                return tf.where(inside(c, last), tf.clip_by_value(c, 0.0, last), period)

            x_in, y_in = wrap(x_in, last_col), wrap(y_in, last_row)
        else:  # scipy's "nearest": the edge pixel continues outward
            x_in, y_in = tf.clip_by_value(x_in, 0.0, last_col), tf.clip_by_value(y_in, 0.0, last_row)
        out = _bilinear(images, x_in, y_in)
        if fill_mode == "constant":  # scipy: cval wherever the point is outside, no blending at the edge
            out = tf.where(mask[..., None], out, tf.cast(cval, out.dtype))
        return out

    return warp


def _compiled_warp(fill_mode: str) -> Warp:
    """:func:`_warp_body` as one XLA-compiled function, made once per process (every fit reuses it).

    Compiled, this is ~6x faster than ImageProjectiveTransformV3 at 96x96 inside tf.data, with the same values.
    """
    import tensorflow as tf

    if fill_mode not in _COMPILED_WARPS:
        # autograph=False: nothing to convert (the branches are on Python values), and converting cost ~0.8 s.
        _COMPILED_WARPS[fill_mode] = tf.function(_warp_body(fill_mode), jit_compile=True, reduce_retracing=True,
                                                 autograph=False)
    return _COMPILED_WARPS[fill_mode]


def _warp(images: tf.Tensor, m: tf.Tensor, fill_mode: str, cval: float) -> tf.Tensor:
    """Bilinear warp of NHWC ``images`` with scipy's (order 1) edge modes."""
    import tensorflow as tf

    if fill_mode != "reflect":
        rows, cols = images.shape[1], images.shape[2]
        small = rows is not None and cols is not None and rows * cols < _COMPILE_FROM_PIXELS
        warp = _warp_body(fill_mode) if small else _compiled_warp(fill_mode)
        return warp(images, m, tf.constant(cval, tf.float32))
    shape = tf.shape(images)
    # TF's REFLECT is scipy's "reflect".
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.reshape(m, [-1, 9])[:, :8], output_shape=tf.stack([shape[1], shape[2]]),
        fill_value=tf.constant(cval, tf.float32), interpolation="BILINEAR", fill_mode="REFLECT")


def _apply_transform(idg: ImageDataGenerator, x: tf.Tensor, params: dict[str, tf.Tensor]) -> tf.Tensor:
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


def _brightness(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
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


def _standardize(idg: ImageDataGenerator, x: tf.Tensor) -> tf.Tensor:
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
