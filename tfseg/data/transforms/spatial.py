"""Spatial transforms for 2D image/mask pairs, as TensorFlow ops for tf.data.

Random transforms sample their parameters from a stateless seed and then call a deterministic
function, so an augmentation is reproducible from its seed and testable without randomness.
Image and mask always go through the same geometry; masks are resampled with nearest neighbour,
never interpolated.

Example:
    >>> import tensorflow as tf
    >>> image = tf.reshape(tf.range(16, dtype=tf.float32), (4, 4, 1))
    >>> mask = tf.cast(image > 7, tf.uint8)
    >>> img2, mask2 = flip(image, mask, horizontal=True, vertical=False)
    >>> img2[0, :, 0].numpy().tolist()
    [3.0, 2.0, 1.0, 0.0]
"""
import math

import tensorflow as tf

from tfseg.errors import ConfigError


def resize_pair(image, mask, size):
    """Resize an image bilinearly (antialiased when shrinking) and its mask by nearest neighbour.

    Args:
        image: float `(H, W, C)`.
        mask: integer `(H, W)` or `(H, W, 1)`.
        size: `(height, width)`.

    Returns:
        `(image, mask)` of spatial size `size`, image float32 and mask with its own dtype.
    """
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    squeeze = mask.shape.rank == 2
    mask3 = mask[..., None] if squeeze else mask
    resized = tf.image.resize(mask3, size, method="nearest")
    resized = tf.cast(resized, mask.dtype)
    return image, (resized[..., 0] if squeeze else resized)


def flip(image, mask, horizontal, vertical):
    """Mirror an image/mask pair left-right and/or up-down (boolean scalars, tensors allowed)."""
    image, mask = _with_channel(image), mask
    mask3 = mask[..., None] if mask.shape.rank == 2 else mask
    image = tf.cond(tf.cast(horizontal, tf.bool), lambda: tf.reverse(image, [1]), lambda: image)
    mask3 = tf.cond(tf.cast(horizontal, tf.bool), lambda: tf.reverse(mask3, [1]), lambda: mask3)
    image = tf.cond(tf.cast(vertical, tf.bool), lambda: tf.reverse(image, [0]), lambda: image)
    mask3 = tf.cond(tf.cast(vertical, tf.bool), lambda: tf.reverse(mask3, [0]), lambda: mask3)
    return image, (mask3[..., 0] if mask.shape.rank == 2 else mask3)


def rotation_matrix(angle, height, width):
    """The 8-parameter projective transform (output → input) of a rotation by `angle` radians about the centre."""
    angle = tf.cast(angle, tf.float32)
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    # input = R^-1 (output - c) + c, with R the counter-clockwise rotation in (x, y) image axes.
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zero = tf.zeros_like(cos)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])


def rotate(image, angle, interpolation="bilinear", fill_value=0.0):
    """Rotate `(H, W, C)` by `angle` radians about the image centre (same size, constant fill).

    Args:
        image: `(H, W, C)` tensor (float for bilinear; any numeric type for nearest).
        angle: radians, counter-clockwise as displayed (row 0 at the top).
        interpolation: "bilinear" for images, "nearest" for label maps.
        fill_value: value of pixels that come from outside the input.

    Returns:
        The rotated tensor, same shape and dtype.
    """
    dtype = image.dtype
    shape = tf.shape(image)
    transform = rotation_matrix(angle, shape[0], shape[1])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=transform, output_shape=shape[:2],
        fill_value=tf.cast(fill_value, tf.float32), interpolation=interpolation.upper(), fill_mode="CONSTANT")[0]
    if dtype.is_integer:
        out = tf.round(out)
    return tf.cast(out, dtype)


def rotate_pair(image, mask, angle):
    """Rotate an image (bilinear) and its mask (nearest neighbour) by the same angle."""
    squeeze = mask.shape.rank == 2
    mask3 = mask[..., None] if squeeze else mask
    image = rotate(_with_channel(image), angle, "bilinear")
    mask3 = rotate(mask3, angle, "nearest")
    return image, (mask3[..., 0] if squeeze else mask3)


def random_flip_rotate(image, mask, seed, flip_probability=0.5, vertical_flip=True, max_degrees=10.0):
    """Randomly mirror and rotate an image/mask pair; parameters drawn from a stateless `seed`.

    Args:
        image: float `(H, W, C)`.
        mask: integer `(H, W)` or `(H, W, 1)`.
        seed: int32/int64 tensor of shape `(2,)` (e.g. from `tf.data.Dataset.random`).
        flip_probability: probability of each enabled flip.
        vertical_flip: also flip up-down (short-axis cardiac slices have no preferred up).
        max_degrees: rotation angle drawn uniformly in `[-max_degrees, max_degrees]`; 0 disables.

    Returns:
        The augmented `(image, mask)`.
    """
    draws = tf.random.stateless_uniform([3], seed=seed)
    horizontal = draws[0] < flip_probability
    vertical = tf.logical_and(draws[1] < flip_probability, vertical_flip)
    image, mask = flip(image, mask, horizontal, vertical)
    if max_degrees:
        angle = (2.0 * draws[2] - 1.0) * (max_degrees * math.pi / 180.0)
        image, mask = rotate_pair(image, mask, angle)
    return image, mask


def _with_channel(image):
    return image[..., None] if image.shape.rank == 2 else image


def check_size(size, ndim, name="size"):
    """`ndim` positive ints from an int (repeated) or a sequence of `ndim` ints, else ConfigError.

    Example:
        >>> check_size(128, 2), check_size((8, 16, 16), 3)
        ((128, 128), (8, 16, 16))
    """
    axes = "(height, width)" if ndim == 2 else "(D, H, W)" if ndim == 3 else f"{ndim} sizes"
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size,) * ndim
    try:
        size = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive int or {axes}, got {size!r}") from None
    if len(size) != ndim or min(size) < 1:
        raise ConfigError(f"{name} must be a positive int or {axes}, got {size!r}")
    return size


def check_size_2d(size, name="size"):
    """`(height, width)` from an int or a pair of positive ints, else ConfigError (`check_size` in 2D).

    Example:
        >>> check_size_2d(128)
        (128, 128)
    """
    return check_size(size, 2, name)


def pad_or_crop(image, label, size):
    """Centre-crop or zero-pad an image and its label to `size` (TorchIO's CropOrPad, in 2D).

    On each axis the window is centred; when the difference is odd the extra pixel is cut (or
    padded) after, as in `tf.image.resize_with_crop_or_pad` and the 3D `volume.crop`.

    Args:
        image: `(H, W, C)` tensor (sizes may be dynamic).
        label: `(H, W)` or `(H, W, K)` tensor with the image's spatial size, or None.
        size: an int or `(height, width)`.

    Returns:
        `(image, label)` with the static spatial shape `size`, dtypes unchanged.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.reshape(tf.range(1.0, 10.0), (3, 3, 1))
        >>> img, lab = pad_or_crop(image, tf.ones((3, 3), tf.int32), (4, 2))
        >>> img[..., 0].numpy().tolist(), lab.numpy().tolist()
        ([[1.0, 2.0], [4.0, 5.0], [7.0, 8.0], [0.0, 0.0]], [[1, 1], [1, 1], [1, 1], [0, 0]])
    """
    height, width = check_size_2d(size)
    image = _with_channel(tf.convert_to_tensor(image))
    image = tf.image.resize_with_crop_or_pad(image, height, width)
    if label is None:
        return image, None
    label = tf.convert_to_tensor(label)
    squeeze = label.shape.rank == 2
    label3 = label[..., None] if squeeze else label
    label3 = tf.image.resize_with_crop_or_pad(label3, height, width)
    return image, (label3[..., 0] if squeeze else label3)
