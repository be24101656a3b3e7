"""Intensity transforms as TensorFlow ops, usable inside tf.data and inside an exported model.

The same function normalizes images in the training pipeline and in the SavedModel's serving
signature, so a served model sees exactly what it was trained on.

Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([[0.0, 2.0], [4.0, 6.0]])[..., None]
    >>> y = normalize_intensity(x, "minmax")
    >>> [round(float(v), 3) for v in tf.reshape(y, [-1])]
    [0.0, 0.333, 0.667, 1.0]
"""
import tensorflow as tf

from tfseg.errors import ConfigError

NORMALIZATIONS = ("zscore", "zscore_nonzero", "minmax", "none")


def check_normalization(method):
    """Return `method` if it is a known normalization, else raise ConfigError listing the choices."""
    if method not in NORMALIZATIONS:
        raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
    return method


def normalize_intensity(image, method="zscore", eps=1e-6):
    """Normalize one image (channels last, any rank) over all its pixels and channels.

    Args:
        image: float tensor `(H, W, C)` or `(D, H, W, C)`.
        method: "zscore" (zero mean, unit standard deviation over the whole image), "zscore_nonzero"
            (per channel, statistics over the channel's non-zero voxels, zeros stay zero: for
            skull-stripped MRI such as BraTS), "minmax" (to [0, 1]) or "none".
        eps: guards constant images, which map to all zeros instead of NaN.

    Returns:
        A float32 tensor of the same shape.
    """
    check_normalization(method)
    image = tf.cast(image, tf.float32)
    if method == "none":
        return image
    if method == "zscore_nonzero":
        return zscore_nonzero_channels(image, eps)
    if method == "zscore":
        mean = tf.reduce_mean(image)
        std = tf.math.reduce_std(image)
        return (image - mean) / tf.maximum(std, eps)
    low = tf.reduce_min(image)
    high = tf.reduce_max(image)
    return (image - low) / tf.maximum(high - low, eps)


def zscore_nonzero_channels(image, eps=1e-6):
    """Per channel: subtract the mean and divide by the std of its non-zero voxels; zeros stay zero.

    Example:
        >>> import tensorflow as tf
        >>> x = tf.constant([0.0, 2.0, 4.0])[:, None]
        >>> [round(float(v), 3) for v in tf.reshape(zscore_nonzero_channels(x), [-1])]
        [0.0, -1.0, 1.0]
    """
    image = tf.cast(image, tf.float32)
    mask = tf.cast(tf.not_equal(image, 0.0), tf.float32)
    axes = list(range(image.shape.rank - 1))
    count = tf.maximum(tf.reduce_sum(mask, axis=axes), 1.0)
    mean = tf.reduce_sum(image * mask, axis=axes) / count
    variance = tf.reduce_sum(tf.square(image - mean) * mask, axis=axes) / count
    return (image - mean) / tf.maximum(tf.sqrt(variance), eps) * mask


def normalize_batch(images, method="zscore", eps=1e-6):
    """`normalize_intensity` applied to each image of a batch `(B, ...)` independently."""
    check_normalization(method)
    return tf.map_fn(lambda image: normalize_intensity(image, method, eps), tf.cast(images, tf.float32))


def gray_to_rgb(image):
    """Repeat a single channel three times (for encoders pretrained on RGB); other images pass through."""
    channels = image.shape[-1]
    if channels == 1:
        return tf.repeat(image, 3, axis=-1)
    if channels is None:
        return tf.cond(tf.shape(image)[-1] == 1, lambda: tf.repeat(image, 3, axis=-1), lambda: image)
    return image
