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
import numpy as np
import tensorflow as tf

from tfseg.errors import ConfigError

NORMALIZATIONS = ("zscore", "zscore_nonzero", "percentile", "minmax", "none")


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
            skull-stripped MRI such as BraTS; `zscore_nonzero`), "percentile" (per channel, the (0.5, 99.5) percentiles
            inside the brain mask stretched to [-1, 1], outside -1: `percentile_stretch`), "minmax"
            (to [0, 1]) or "none".
        eps: "zscore" and "minmax": guards constant images, which map to all zeros instead of NaN
            ("zscore_nonzero" follows `nonzero_moments`).

    Returns:
        A float32 tensor of the same shape.
    """
    check_normalization(method)
    image = tf.cast(image, tf.float32)
    if method == "none":
        return image
    if method == "zscore_nonzero":
        return zscore_nonzero(image)
    if method == "percentile":
        return percentile_stretch(image)
    if method == "zscore":
        mean = tf.reduce_mean(image)
        std = tf.math.reduce_std(image)
        return (image - mean) / tf.maximum(std, eps)
    low = tf.reduce_min(image)
    high = tf.reduce_max(image)
    return (image - low) / tf.maximum(high - low, eps)


#: Relative spread under which a channel's non-zero voxels count as constant: a standard deviation
#: of at most `ZERO_SPREAD * max(1, |mean|)` is taken as 1, so a constant channel is only shifted
#: (to 0) instead of having float rounding noise divided by a tiny number. MONAI's
#: `NormalizeIntensity(nonzero=True)` takes an exactly zero std as 1 the same way.
ZERO_SPREAD = 1e-5


def nonzero_moments(image):
    """Per-channel mean and population std over the non-zero voxels of a channels-last image.

    The one rule of tfseg's non-zero z-score, used by training, validation and the serving
    signature alike (`nonzero_stats` is the same rule in numpy, for one channel). Zeros add
    nothing to the sums, so the mean is `sum(x) / count(x != 0)`.

    Args:
        image: `(H, W, C)` or `(D, H, W, C)` tensor, any real dtype.

    Returns:
        `(mean, std)`, float32 tensors of shape `(C,)`. A channel without non-zero voxels has mean
        0 and std 1; a channel with no spread (`ZERO_SPREAD`) has std 1, so dividing is safe.

    Example:
        >>> import tensorflow as tf
        >>> mean, std = nonzero_moments(tf.constant([[[[0.0], [2.0], [4.0]]]]))
        >>> mean.numpy().tolist(), std.numpy().tolist()
        ([3.0], [1.0])
    """
    x = tf.cast(image, tf.float32)
    inside = tf.not_equal(x, 0.0)
    mask = tf.cast(inside, tf.float32)
    axes = list(range(x.shape.rank - 1))
    count = tf.maximum(tf.reduce_sum(mask, axis=axes), 1.0)
    # Sums of values shifted by one of the channel's own values: exact for a constant channel
    # (float32 sums of large equal values are not) and better conditioned for any other.
    # The largest non-zero value: outside voxels stand in as the channel's minimum, which never wins
    # (and no infinity is needed, which ONNX/TFLite exports would turn into NaN). Without non-zero
    # voxels the channel is all zeros and the reference is 0.
    lowest = tf.reduce_min(x, axis=axes, keepdims=True)
    reference = tf.reduce_max(tf.where(inside, x, tf.broadcast_to(lowest, tf.shape(x))), axis=axes)
    shifted = (x - reference) * mask
    offset = tf.reduce_sum(shifted, axis=axes) / count
    std = tf.sqrt(tf.reduce_sum(tf.square((shifted - offset) * mask), axis=axes) / count)
    mean = reference + offset
    spread = std > ZERO_SPREAD * tf.maximum(1.0, tf.abs(mean))
    return mean, tf.where(spread, std, tf.ones_like(std))


def zscore_nonzero(image):
    """Z-score each channel over its non-zero voxels (`nonzero_moments`); zero voxels stay 0.

    MONAI's `NormalizeIntensityd(nonzero=True, channel_wise=True)`: for skull-stripped MRI such
    as BraTS, where 0 marks "outside the brain".

    Args:
        image: `(H, W, C)` or `(D, H, W, C)` tensor, any real dtype.

    Returns:
        float32 tensor of the same shape: `(x - mean_c) / std_c` where channel c is non-zero, else 0.

    Example:
        >>> import tensorflow as tf
        >>> zscore_nonzero(tf.constant([[[[0.0], [2.0], [4.0]]]]))[0, 0, :, 0].numpy().tolist()
        [0.0, -1.0, 1.0]
    """
    x = tf.cast(image, tf.float32)
    mean, std = nonzero_moments(x)
    return tf.where(tf.not_equal(x, 0.0), (x - mean) / std, tf.zeros_like(x))


def nonzero_stats(array):
    """`nonzero_moments` of one channel in numpy: mean and population std of its non-zero voxels.

    Computed in float64 with one pass for the count and two reductions (sum, sum of squares);
    zeros add nothing to the sums, so no mask is built. Integer volumes up to 16 bits are summed
    exactly in int64 (int16 squares summed over 2**33 voxels still fit). The same rule as
    `nonzero_moments` (std 1 for no spread, `ZERO_SPREAD`), so a volume normalized with these
    figures equals `zscore_nonzero` of it up to float32 rounding.

    Args:
        array: numpy volume of any shape and real dtype (one channel).

    Returns:
        `(mean, std)` as Python floats; `(0.0, 1.0)` for an all-zero volume.

    Example:
        >>> import numpy as np
        >>> nonzero_stats(np.array([0, 2, 4], np.int16))
        (3.0, 1.0)
    """
    flat = np.ravel(array)
    count = int(np.count_nonzero(flat))
    if not count:
        return 0.0, 1.0
    exact = flat.dtype.kind in "iub" and flat.dtype.itemsize <= 2
    accumulator = np.int64 if exact else np.float64
    total = float(flat.sum(dtype=accumulator))
    square = float(np.einsum("i,i->", flat, flat, dtype=accumulator, casting="unsafe"))
    mean = total / count
    std = float(np.sqrt(max(square / count - mean * mean, 0.0)))
    return mean, (std if std > ZERO_SPREAD * max(1.0, abs(mean)) else 1.0)


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


def brain_mask(image):
    """Pixels (voxels) where any channel is non-zero: the brain of a skull-stripped scan, as a bool tensor.

    The rule of `brain_mask_array` (numpy) as a TensorFlow op.

    Args:
        image: channels-last `(H, W, C)` or `(D, H, W, C)` tensor.

    Returns:
        bool tensor of the image's spatial shape.

    Raises:
        ConfigError: the image has no channel axis (rank below 3).

    Example:
        >>> import tensorflow as tf
        >>> brain_mask(tf.constant([[[0.0, 0.0], [0.0, 3.0]]])).numpy().tolist()
        [[False, True]]
    """
    image = tf.convert_to_tensor(image)
    _check_channels_last(image.shape.rank, image.shape)
    return tf.reduce_any(tf.not_equal(tf.cast(image, tf.float32), 0.0), axis=-1)


def brain_mask_array(image):
    """`brain_mask` in numpy (same rule, same errors): a bool array of the image's spatial shape.

    Example:
        >>> import numpy as np
        >>> brain_mask_array(np.array([[[0, 0], [0, 3]]])).tolist()
        [[False, True]]
    """
    image = np.asarray(image)
    _check_channels_last(image.ndim, image.shape)
    return np.any(image != 0, axis=-1)


def _check_channels_last(rank, shape):
    if rank is not None and rank < 3:
        raise ConfigError(f"image must be channels-last (H, W, C) or (D, H, W, C), got shape {tuple(shape)}")


def masked_percentiles(image, mask, percentiles):
    """Per-channel percentiles of the pixels inside `mask`, with numpy's default (linear) interpolation.

    Args:
        image: float `(H, W, C)`.
        mask: bool `(H, W)`.
        percentiles: Python list of numbers in [0, 100].

    Returns:
        float32 `(len(percentiles), C)`; all zeros when the mask is empty.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.constant([[1.0, 2.0, 3.0, 4.0]])[..., None]
        >>> masked_percentiles(image, tf.ones((1, 4), tf.bool), [0, 50, 100])[:, 0].numpy().tolist()
        [1.0, 2.5, 4.0]
    """
    image = tf.cast(image, tf.float32)
    channels = tf.shape(image)[-1]
    values = tf.boolean_mask(tf.reshape(image, [-1, channels]), tf.reshape(tf.cast(mask, tf.bool), [-1]))
    count = tf.shape(values)[0]
    # A zero row after the sorted values keeps every gather in range when the mask is empty.
    ordered = tf.concat([tf.sort(values, axis=0), tf.zeros([1, channels])], axis=0)
    last = tf.cast(tf.maximum(count - 1, 0), tf.float32)
    position = tf.constant([float(q) for q in percentiles], tf.float32) / 100.0 * last
    below = tf.floor(position)
    weight = (position - below)[:, None]
    below_i = tf.cast(below, tf.int32)
    above_i = tf.minimum(below_i + 1, tf.maximum(count - 1, 0))
    return tf.gather(ordered, below_i) * (1.0 - weight) + tf.gather(ordered, above_i) * weight


def percentile_stretch(image, mask=None, low=0.5, high=99.5, out_min=-1.0, out_max=1.0):
    """Clip each channel to its `[low, high]` percentiles inside `mask` and map that range to `[out_min, out_max]`.

    TorchIO's `RescaleIntensity(out_min_max, percentiles, masking_method)`, per channel. Percentiles
    use numpy's default linear interpolation, computed with a sort and gathers (graph mode). Pixels
    outside the mask are set to `out_min`; a channel whose two percentiles are equal (constant
    inside the mask), and every pixel when the mask is empty, map to `out_min` too (no NaN).

    Args:
        image: float `(H, W, C)`, raw intensities.
        mask: bool `(H, W)`; None takes the brain, where any channel is non-zero (`brain_mask`).
        low, high: percentiles, `0 <= low < high <= 100`.
        out_min, out_max: output range, `out_min < out_max`.

    Returns:
        float32 `(H, W, C)` in `[out_min, out_max]`.

    Example:
        >>> import tensorflow as tf
        >>> image = tf.constant([[0.0, 10.0, 20.0, 30.0]])[..., None]
        >>> percentile_stretch(image, low=0, high=100)[0, :, 0].numpy().tolist()
        [-1.0, -1.0, 0.0, 1.0]
    """
    low, high, out_min, out_max = float(low), float(high), float(out_min), float(out_max)
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got ({low}, {high})")
    if not out_min < out_max:
        raise ConfigError(f"output range must have out_min < out_max, got ({out_min}, {out_max})")
    image = tf.cast(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    mask = brain_mask(image) if mask is None else tf.cast(mask, tf.bool)
    if mask.shape.rank == 3:
        mask = mask[..., 0]
    bounds = masked_percentiles(image, mask, [low, high])
    lo, hi = bounds[0], bounds[1]
    spread = hi - lo
    unit = tf.math.divide_no_nan(tf.clip_by_value(image, lo, hi) - lo, spread)
    out = out_min + unit * (out_max - out_min)
    return tf.where(mask[..., None], out, tf.fill(tf.shape(out), out_min))
