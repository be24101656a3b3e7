"""Geometric deformations of 2D image/label pairs (affine, anisotropy, elastic), as TF ops for tf.data.

Every transform has a deterministic form that takes its parameters and a `random_*` form that draws
them from a stateless `seed` (int tensor of shape `(2,)`, e.g. from `tf.data.Dataset.random`) and
calls the deterministic one, so an augmentation is reproducible from its seed (TorchIO's pattern).

Conventions:

- image `(H, W, C)` float, label `(H, W)` or `(H, W, K)` integer map; both go through the very same
  geometry, the image resampled bilinearly and the label by nearest neighbour (never interpolated).
  Pixels that come from outside the input are 0 in both.
- pairs of per-axis values are ordered like the array axes: `(along H, along W)` = (rows, columns).
- `affine` and `elastic` map each output pixel back to the input position it samples (the inverse
  map, as every image warp does), with the centre of the image `((H-1)/2, (W-1)/2)` fixed.
- `anisotropy` follows TorchIO's `RandomAnisotropy`: one axis is downsampled by `factor` with
  nearest neighbour and resized back linearly, simulating a thick-slice acquisition; the label is
  left untouched (it stands for the true anatomy).
- `random_elastic` follows TorchIO's `RandomElasticDeformation`: a coarse grid of
  `control_points x control_points` displacements, uniform in `±max_displacement` pixels, with
  the border control points locked at 0, is upsampled bicubically (corners aligned) to a smooth
  dense field.

Example:
    >>> import tensorflow as tf
    >>> image = tf.reshape(tf.range(16.0), (4, 4, 1))
    >>> label = tf.cast(image[..., 0] > 7, tf.int32)
    >>> img, lab = affine(image, label, angle=0.0, translation=(1, 0))
    >>> img[:, 0, 0].numpy().tolist(), lab[:, 0].numpy().tolist()
    ([0.0, 0.0, 4.0, 8.0], [0, 0, 0, 1])
"""
import math

import tensorflow as tf

from tfseg.errors import ConfigError

__all__ = ["affine", "affine_matrix", "affine_parameters", "random_affine", "anisotropy",
           "anisotropy_parameters", "random_anisotropy", "elastic", "elastic_displacement",
           "random_elastic", "sample_bilinear", "sample_nearest"]


def _pair(value, name):
    """Two floats from a scalar or a pair."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number or a pair of numbers, got {value!r}") from None
    return first, second


def _range(value, name, symmetric_of=None, minimum=None):
    """A `(low, high)` range: a pair, or `±value` (or `symmetric_of ± value`) from a scalar."""
    if isinstance(value, (int, float)):
        value = float(value)
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value!r}")
        centre = 0.0 if symmetric_of is None else symmetric_of
        low, high = centre - value, centre + value
    else:
        low, high = _pair(value, name)
    if low > high or (minimum is not None and low < minimum):
        bound = "" if minimum is None else f" with low >= {minimum}"
        raise ConfigError(f"{name} must be a range (low, high), low <= high{bound}, got {value!r}")
    return low, high


def _split_label(label):
    """`(label3, squeeze)`: the label with a channel axis, and whether to drop it again."""
    label = tf.convert_to_tensor(label)
    squeeze = label.shape.rank == 2
    return (label[..., None] if squeeze else label), squeeze


def _image3(image):
    image = tf.convert_to_tensor(image)
    return image[..., None] if image.shape.rank == 2 else image


def affine_matrix(angle, scale=(1.0, 1.0), translation=(0.0, 0.0), shear=0.0, height=1, width=1):
    """The 8-parameter output→input projective transform of an affine map about the image centre.

    The forward map, in `(x, y)` = (column, row) coordinates about the centre `c`, is
    `p_out = c + t + R(angle) · Shear(shear) · S(scale) · (p_in - c)`; the returned transform is its
    inverse, as `tf.raw_ops.ImageProjectiveTransformV3` expects. The rotation has the sense of
    `spatial.rotate` (the same angle in degrees gives the same image).

    Args:
        angle: rotation in degrees (float or scalar tensor).
        scale: zoom factors `(along H, along W)`; > 1 enlarges.
        translation: shift in pixels `(along H, along W)`; positive moves content down / right.
        shear: shear angle in degrees: columns shift by `tan(shear) · (row - centre row)`.
        height, width: image size (ints or scalar tensors).

    Returns:
        float32 tensor `(8,)`.
    """
    rad = tf.cast(angle, tf.float32) * (math.pi / 180.0)
    scale = tf.cast(tf.convert_to_tensor(scale), tf.float32)
    translation = tf.cast(tf.convert_to_tensor(translation), tf.float32)
    shear_rad = tf.cast(shear, tf.float32) * (math.pi / 180.0)
    sy, sx = scale[0], scale[1]
    ty, tx = translation[0], translation[1]
    cos, sin = tf.cos(rad), tf.sin(rad)
    k = tf.tan(shear_rad)
    # Forward linear part M = R · Shear · S with R = [[cos, -sin], [sin, cos]] (the inverse of the one
    # in spatial.rotation_matrix), Shear = [[1, k], [0, 1]], S = diag(sx, sy).
    m00, m01 = cos * sx, (cos * k - sin) * sy
    m10, m11 = sin * sx, (sin * k + cos) * sy
    det = m00 * m11 - m01 * m10
    a0, a1 = m11 / det, -m01 / det
    b0, b1 = -m10 / det, m00 / det
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    # p_in = c + M^-1 (p_out - c - t)
    ox, oy = cx + tx, cy + ty
    a2 = cx - a0 * ox - a1 * oy
    b2 = cy - b0 * ox - b1 * oy
    zero = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])


def _warp(x, transform, interpolation):
    """Apply an output→input projective transform to `(H, W, C)`, zero fill, dtype kept."""
    dtype = x.dtype
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(x, tf.float32)[None], transforms=transform[None], output_shape=tf.shape(x)[:2],
        fill_value=tf.constant(0.0), interpolation=interpolation, fill_mode="CONSTANT")[0]
    if dtype.is_integer:
        out = tf.round(out)
    out = tf.cast(out, dtype)
    out.set_shape(x.shape)
    return out


def affine(image, label, angle, scale=(1.0, 1.0), translation=(0.0, 0.0), shear=0.0):
    """Rotate, scale, shear and translate an image (bilinear) and its label (nearest) alike.

    Args:
        image: float `(H, W, C)`.
        label: integer `(H, W)` or `(H, W, K)`, or None.
        angle: rotation in degrees about the image centre (same sense as `spatial.rotate`).
        scale: `(along H, along W)` zoom factors, or one number for both; must be > 0.
        translation: `(along H, along W)` shift in pixels.
        shear: shear angle in degrees (see `affine_matrix`).

    Returns:
        `(image, label)`, same shapes and dtypes; pixels from outside the input are 0.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.reshape(tf.range(4.0), (2, 2, 1))
        >>> img, _ = affine(image, None, angle=90.0)
        >>> img[..., 0].numpy().round(4).tolist()
        [[2.0, 0.0], [3.0, 1.0]]
    """
    image = _image3(image)
    if isinstance(scale, (int, float)):
        scale = (float(scale), float(scale))
    shape = tf.shape(image)
    transform = affine_matrix(angle, scale, translation, shear, shape[0], shape[1])
    out_image = _warp(image, transform, "BILINEAR")
    if label is None:
        return out_image, None
    label3, squeeze = _split_label(label)
    out_label = _warp(label3, transform, "NEAREST")
    return out_image, (out_label[..., 0] if squeeze else out_label)


def affine_parameters(seed, degrees=20.0, scale=(0.9, 1.1), translation=0.0, isotropic=False):
    """Draw `(angle, scale, translation)` as TorchIO's RandomAffine does (each uniform in its range).

    Args:
        seed: stateless seed, shape `(2,)`.
        degrees: angle range in degrees: a number `d` for `(-d, d)`, or `(low, high)`.
        scale: zoom range `(low, high)`, or a number `s` for `(1 - s, 1 + s)`; drawn per axis
            unless `isotropic`.
        translation: shift range in pixels: a number `t` for `(-t, t)`, or `(low, high)`; per axis.
        isotropic: one zoom factor for both axes.

    Returns:
        `(angle, scale, translation)`: float32 scalar, `(2,)` and `(2,)` tensors.
    """
    deg_lo, deg_hi = _range(degrees, "degrees")
    sc_lo, sc_hi = _range(scale, "scale", symmetric_of=1.0)
    if sc_lo <= 0:
        raise ConfigError(f"scale factors must be > 0, got {scale!r}")
    tr_lo, tr_hi = _range(translation, "translation")
    u = tf.random.stateless_uniform([5], seed=tf.cast(seed, tf.int64))
    angle = deg_lo + u[0] * (deg_hi - deg_lo)
    zoom = sc_lo + u[1:3] * (sc_hi - sc_lo)
    if isotropic:
        zoom = tf.stack([zoom[0], zoom[0]])
    shift = tr_lo + u[3:5] * (tr_hi - tr_lo)
    return angle, zoom, shift


def random_affine(image, label, seed, degrees=20.0, scale=(0.9, 1.1), translation=0.0, isotropic=False):
    """Random affine map of an image/label pair; parameters from `affine_parameters(seed, ...)`.

    Example:
        >>> import tensorflow as tf
        >>> img, lab = random_affine(tf.ones((8, 8, 2)), tf.zeros((8, 8), tf.int32), seed=(1, 2))
        >>> tuple(img.shape), tuple(lab.shape)
        ((8, 8, 2), (8, 8))
    """
    angle, zoom, shift = affine_parameters(seed, degrees, scale, translation, isotropic)
    return affine(image, label, angle, zoom, shift)


def anisotropy(image, label, factor, axis):
    """Simulate thick slices along one axis: nearest downsampling by `factor`, linear upsampling back.

    Args:
        image: float `(H, W, C)`.
        label: returned unchanged (or None).
        factor: downsampling factor >= 1 (float or scalar tensor); the axis keeps
            `max(1, round(n / factor))` samples before being resized back to `n`.
        axis: 0 (H) or 1 (W); a Python int or an int scalar tensor.

    Returns:
        `(image, label)`: float32 image of the same shape, label untouched.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.reshape(tf.range(4.0), (1, 4, 1))
        >>> img, _ = anisotropy(image, None, factor=2.0, axis=1)
        >>> img[0, :, 0].numpy().tolist()
        [1.0, 1.5, 2.5, 3.0]
    """
    if isinstance(axis, int) and axis not in (0, 1):
        raise ConfigError(f"anisotropy axis must be 0 (H) or 1 (W), got {axis!r}")
    image = tf.cast(_image3(image), tf.float32)
    shape = tf.shape(image)[:2]
    axis_t = tf.cast(axis, tf.int32)
    factor = tf.maximum(tf.cast(factor, tf.float32), 1.0)
    reduced = tf.maximum(tf.cast(tf.round(tf.cast(shape, tf.float32) / factor), tf.int32), 1)
    small = tf.where(tf.range(2) == axis_t, reduced, shape)
    low = tf.image.resize(image, small, method="nearest")
    out = tf.image.resize(low, shape, method="bilinear")
    out.set_shape(image.shape)
    return out, label


def anisotropy_parameters(seed, downsampling=(1.5, 2.5), axes=(0, 1)):
    """Draw `(factor, axis)`: factor uniform in `downsampling`, axis uniformly among `axes`."""
    low, high = _range(downsampling, "downsampling", minimum=1.0)
    axes = tuple(int(a) for a in axes)
    if not axes or any(a not in (0, 1) for a in axes):
        raise ConfigError(f"anisotropy axes must be a non-empty subset of (0, 1), got {axes!r}")
    u = tf.random.stateless_uniform([2], seed=tf.cast(seed, tf.int64))
    factor = low + u[0] * (high - low)
    index = tf.minimum(tf.cast(u[1] * len(axes), tf.int32), len(axes) - 1)
    axis = tf.gather(tf.constant(axes, tf.int32), index)
    return factor, axis


def random_anisotropy(image, label, seed, downsampling=(1.5, 2.5), axes=(0, 1)):
    """Random `anisotropy` (TorchIO's RandomAnisotropy): factor in `downsampling`, one of `axes`."""
    factor, axis = anisotropy_parameters(seed, downsampling, axes)
    return anisotropy(image, label, factor, axis)


def _grid(displacement):
    """Sampling positions `(rows, cols)` = pixel grid + displacement, float32 `(H, W)` each."""
    displacement = tf.cast(displacement, tf.float32)
    shape = tf.shape(displacement)
    rows = tf.cast(tf.range(shape[0]), tf.float32)[:, None] + displacement[..., 0]
    cols = tf.cast(tf.range(shape[1]), tf.float32)[None, :] + displacement[..., 1]
    return rows, cols


def _gather(x, rows, cols):
    """`x[rows, cols]` for int position maps, 0 where outside; `x` is `(H, W, C)`."""
    shape = tf.shape(x)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    index = tf.stack([tf.clip_by_value(rows, 0, shape[0] - 1), tf.clip_by_value(cols, 0, shape[1] - 1)], -1)
    values = tf.gather_nd(x, index)
    return tf.where(inside[..., None], values, tf.zeros_like(values))


def sample_bilinear(image, rows, cols):
    """Bilinear samples of `(H, W, C)` at float positions `rows, cols` `(h, w)`; outside pixels count as 0.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.constant([[0.0, 2.0], [4.0, 6.0]])[..., None]
        >>> float(sample_bilinear(image, tf.constant([[0.5]]), tf.constant([[0.5]]))[0, 0, 0])
        3.0
    """
    image = tf.cast(image, tf.float32)
    r0f, c0f = tf.floor(rows), tf.floor(cols)
    wr, wc = (rows - r0f)[..., None], (cols - c0f)[..., None]
    r0, c0 = tf.cast(r0f, tf.int32), tf.cast(c0f, tf.int32)
    top = _gather(image, r0, c0) * (1.0 - wc) + _gather(image, r0, c0 + 1) * wc
    bottom = _gather(image, r0 + 1, c0) * (1.0 - wc) + _gather(image, r0 + 1, c0 + 1) * wc
    return top * (1.0 - wr) + bottom * wr


def sample_nearest(x, rows, cols):
    """Nearest-neighbour samples (halves round up) of `(H, W, C)` at float positions; 0 outside."""
    rows = tf.cast(tf.floor(rows + 0.5), tf.int32)
    cols = tf.cast(tf.floor(cols + 0.5), tf.int32)
    return _gather(x, rows, cols)


def elastic(image, label, displacement):
    """Warp an image (bilinear) and its label (nearest) by a dense displacement field.

    Output pixel `(i, j)` takes the input at `(i + displacement[i, j, 0], j + displacement[i, j, 1])`;
    positions outside the input give 0.

    Args:
        image: float `(H, W, C)`.
        label: integer `(H, W)` or `(H, W, K)`, or None.
        displacement: float `(H, W, 2)` in pixels, `(along H, along W)`.

    Returns:
        `(image, label)`, same shapes; image float32, label dtype kept.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.reshape(tf.range(3.0), (1, 3, 1))
        >>> field = tf.stack([tf.zeros((1, 3)), tf.fill((1, 3), 0.5)], -1)
        >>> img, _ = elastic(image, None, field)
        >>> img[0, :, 0].numpy().tolist()
        [0.5, 1.5, 1.0]
    """
    image = _image3(image)
    rows, cols = _grid(displacement)
    out_image = sample_bilinear(image, rows, cols)
    out_image.set_shape(image.shape)
    if label is None:
        return out_image, None
    label3, squeeze = _split_label(label)
    out_label = sample_nearest(label3, rows, cols)
    out_label.set_shape(label3.shape)
    return out_image, (out_label[..., 0] if squeeze else out_label)


def elastic_displacement(seed, shape, control_points=7, max_displacement=7.5, locked_borders=True):
    """A smooth random displacement field `(H, W, 2)` in pixels, TorchIO-like.

    A `control_points x control_points` grid of displacements uniform in `±max_displacement`
    (per axis; the outer ring set to 0 when `locked_borders`) is upsampled bicubically with
    corners aligned, so the grid spans the image exactly.

    Args:
        seed: stateless seed, shape `(2,)`.
        shape: `(H, W)` (ints or an int tensor).
        control_points: grid size per axis, >= 4 (so that two points per axis stay free when the
            borders are locked).
        max_displacement: a number or `(along H, along W)`, pixels, >= 0.
        locked_borders: keep the image border in place.

    Returns:
        float32 `(H, W, 2)`.
    """
    control_points = int(control_points)
    if control_points < 4:
        raise ConfigError(f"control_points must be >= 4, got {control_points!r}")
    max_h, max_w = _pair(max_displacement, "max_displacement")
    if min(max_h, max_w) < 0:
        raise ConfigError(f"max_displacement must be >= 0, got {max_displacement!r}")
    coarse = tf.random.stateless_uniform([control_points, control_points, 2], seed=tf.cast(seed, tf.int64),
                                         minval=-1.0, maxval=1.0) * tf.constant([max_h, max_w])
    if locked_borders:
        inner = tf.ones([control_points - 2, control_points - 2, 2])
        coarse = coarse * tf.pad(inner, [[1, 1], [1, 1], [0, 0]])
    shape = tf.cast(tf.convert_to_tensor(shape), tf.int32)[:2]
    dense = tf.raw_ops.ResizeBicubic(images=coarse[None], size=shape, align_corners=True,
                                     half_pixel_centers=False)[0]
    return dense


def random_elastic(image, label, seed, control_points=7, max_displacement=7.5, locked_borders=True):
    """Random smooth elastic deformation (TorchIO's RandomElasticDeformation, in 2D).

    Example:
        >>> import tensorflow as tf
        >>> img, lab = random_elastic(tf.ones((16, 16, 1)), tf.ones((16, 16), tf.int32), seed=(0, 1))
        >>> int(lab[0, 0]), tuple(img.shape)
        (1, (16, 16, 1))
    """
    image = _image3(image)
    field = elastic_displacement(seed, tf.shape(image)[:2], control_points, max_displacement, locked_borders)
    return elastic(image, label, field)
