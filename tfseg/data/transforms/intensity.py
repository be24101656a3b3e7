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

NORMALIZATIONS = ("zscore", "minmax", "none")


def check_normalization(method):
    """Return `method` if it is a known normalization, else raise ConfigError listing the choices."""
    if method not in NORMALIZATIONS:
        raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
    return method


def normalize_intensity(image, method="zscore", eps=1e-6):
    """Normalize one image (channels last, any rank) over all its pixels and channels.

    Args:
        image: float tensor `(H, W, C)` or `(D, H, W, C)`.
        method: "zscore" (zero mean, unit standard deviation), "minmax" (to [0, 1]) or "none".
        eps: guards constant images, which map to all zeros instead of NaN.

    Returns:
        A float32 tensor of the same shape.
    """
    check_normalization(method)
    image = tf.cast(image, tf.float32)
    if method == "none":
        return image
    if method == "zscore":
        mean = tf.reduce_mean(image)
        std = tf.math.reduce_std(image)
        return (image - mean) / tf.maximum(std, eps)
    low = tf.reduce_min(image)
    high = tf.reduce_max(image)
    return (image - low) / tf.maximum(high - low, eps)


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
