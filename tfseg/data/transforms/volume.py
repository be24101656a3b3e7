"""3D transforms for one multi-modal case, as TensorFlow ops for tf.data.

A case is an image `(D, H, W, C)` (float, or an integer type for the spatial transforms) and a
label `(D, H, W)` (integer map) or `(D, H, W, K)` (region channels), channels last. Image and
label always share the geometry: every spatial transform moves both the same way, and labels are
never interpolated (crops and flips only copy voxels).

Random transforms sample their parameters from a stateless `seed` (an int32/int64 tensor of shape
`(2,)`, e.g. from `tf.data.Dataset.random`) and then call the deterministic function, so an
augmentation is reproducible from its seed and the deterministic part is testable by hand.

Conventions (chosen to match MONAI and Myronenko 2018, arXiv 1810.11654):

- `zscore_nonzero`: per channel, mean and (population) standard deviation over the voxels where
  that channel is non-zero; those voxels become `(x - mean) / std`, zero voxels stay 0 (MONAI's
  `NormalizeIntensityd(nonzero=True, channel_wise=True)`). A channel with zero spread is only
  shifted (std taken as 1); an all-zero channel stays 0.
- crops: a window that reaches outside the volume is filled with zeros (image and label), so a
  volume smaller than the crop is padded. `random_crop` centres the volume on an axis where it is
  smaller than the crop (equal zero margins before and after, the odd voxel after).
- `intensity_shift_scale`: per channel `x * scale + shift * std`, with `std` the channel's
  standard deviation over its non-zero voxels (or one given, e.g. 1 after `zscore_nonzero` on
  the whole volume). With `nonzero=True` (the default) only non-zero voxels change, so the
  background of a skull-stripped scan stays exactly 0 and keeps marking "outside the brain";
  `nonzero=False` changes every voxel as MONAI's `RandScaleIntensityd` (`x * (1 + f)`) followed
  by `RandShiftIntensityd` (`x + o`) do.

Example:
    >>> import tensorflow as tf
    >>> image = tf.reshape(tf.range(24, dtype=tf.float32), (2, 3, 4, 1))
    >>> label = tf.cast(image[..., 0] > 20, tf.uint8)
    >>> img, lab = crop(image, label, start=(1, 1, 2), size=(1, 2, 3))
    >>> img[..., 0].numpy().tolist(), lab.numpy().tolist()
    ([[[18.0, 19.0, 0.0], [22.0, 23.0, 0.0]]], [[[0, 0, 0], [1, 1, 0]]])
    >>> img, lab = flip_axes(image, label, [False, False, True])
    >>> img[0, 0, :, 0].numpy().tolist()
    [3.0, 2.0, 1.0, 0.0]
"""
import tensorflow as tf

from tfseg.data.transforms.spatial import check_size
from tfseg.errors import ConfigError

__all__ = ["zscore_nonzero", "nonzero_moments", "crop", "crop_start", "random_crop", "flip_axes",
           "flip_mask", "random_flip", "intensity_shift_scale", "intensity_parameters", "random_intensity"]


def _check_size(size, name="size"):
    """Three positive ints (D, H, W) (or one int for all three), or ConfigError."""
    return check_size(size, 3, name)


def _check_probability(value, name):
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return value


def nonzero_moments(image):
    """Per-channel mean and population std over the non-zero voxels of `(D, H, W, C)`.

    Returns:
        `(mean, std)`, float32 tensors of shape `(C,)`. A channel without non-zero voxels has mean
        0 and std 1; a channel with zero spread has std 1 (so dividing by it is safe).

    Example:
        >>> import tensorflow as tf
        >>> mean, std = nonzero_moments(tf.constant([[[[0.0], [2.0], [4.0]]]]))
        >>> mean.numpy().tolist(), std.numpy().tolist()
        ([3.0], [1.0])
    """
    x = tf.cast(image, tf.float32)
    mask = tf.cast(tf.not_equal(x, 0.0), tf.float32)
    count = tf.reduce_sum(mask, axis=(0, 1, 2))
    safe = tf.maximum(count, 1.0)
    mean = tf.reduce_sum(x, axis=(0, 1, 2)) / safe
    var = tf.reduce_sum(tf.square((x - mean) * mask), axis=(0, 1, 2)) / safe
    std = tf.sqrt(var)
    std = tf.where(std > 0.0, std, tf.ones_like(std))
    return mean, std


def zscore_nonzero(image):
    """Z-score each channel over its non-zero voxels; zero voxels stay 0.

    Args:
        image: `(D, H, W, C)` tensor (any real dtype).

    Returns:
        float32 `(D, H, W, C)`: `(x - mean_c) / std_c` where channel c is non-zero, else 0.

    Example:
        >>> import tensorflow as tf
        >>> zscore_nonzero(tf.constant([[[[0.0], [2.0], [4.0]]]]))[0, 0, :, 0].numpy().tolist()
        [0.0, -1.0, 1.0]
    """
    x = tf.cast(image, tf.float32)
    mean, std = nonzero_moments(x)
    return tf.where(tf.not_equal(x, 0.0), (x - mean) / std, tf.zeros_like(x))


def crop(image, label, start, size):
    """Cut the window `[start, start + size)` from image and label; outside the volume is 0.

    Args:
        image: `(D, H, W, C)` tensor.
        label: `(D, H, W)` or `(D, H, W, K)` tensor with the image's spatial shape, or None.
        start: three ints (a tensor allowed); may be negative or run past the end, the missing
            part is padded with zeros.
        size: three ints `(d, h, w)`, the output's spatial shape.

    Returns:
        `(image, label)` of spatial shape `size`, dtypes unchanged (label None stays None).

    Example:
        >>> import tensorflow as tf
        >>> img, _ = crop(tf.ones((2, 2, 2, 1)), None, (-1, 0, 0), (4, 2, 2))
        >>> img[:, 0, 0, 0].numpy().tolist()
        [0.0, 1.0, 1.0, 0.0]
    """
    size = _check_size(size)
    image = tf.convert_to_tensor(image)
    start = tf.cast(tf.convert_to_tensor(start), tf.int32)
    out_image = _crop_one(image, start, size)
    out_label = None if label is None else _crop_one(tf.convert_to_tensor(label), start, size)
    return out_image, out_label


def _crop_one(x, start, size):
    """Window of `x` (spatial axes first) with zero fill outside; static output shape."""
    shape = tf.shape(x)[:3]
    size_t = tf.constant(size, tf.int32)
    lo = tf.clip_by_value(start, 0, shape)
    hi = tf.clip_by_value(start + size_t, 0, shape)
    extent = tf.maximum(hi - lo, 0)
    rank = x.shape.rank
    tail = tf.zeros([rank - 3], tf.int32)
    piece = tf.slice(x, tf.concat([lo, tail], 0), tf.concat([extent, tf.fill([rank - 3], -1)], 0))
    before = tf.clip_by_value(lo - start, 0, size_t)
    after = size_t - extent - before
    paddings = tf.concat([tf.stack([before, after], axis=1), tf.zeros([rank - 3, 2], tf.int32)], 0)
    out = tf.pad(piece, paddings)
    out.set_shape(list(size) + x.shape[3:].as_list())
    return out


def crop_start(shape, size, seed, label=None, foreground_probability=0.0, classes=None):
    """Draw the start of a random crop window of `size` inside a volume of spatial `shape`.

    With probability `foreground_probability` (and when `label` has a voxel > 0) the window is
    placed so that it contains one foreground voxel drawn uniformly among all of them, at a
    uniformly random position inside the window (then clamped to the volume); otherwise the start
    is uniform over the positions where the window fits. On an axis where the volume is smaller
    than the window, the volume is centred (start = -(size - shape) // 2).

    With `classes` (label values, for a `(D, H, W)` label map), a foreground window is centred on
    a voxel of one class drawn uniformly among the classes present in the volume, then a voxel of
    that class: small classes (a few hundred voxels of enhancing tumour next to thousands of
    oedema) are seen as often as large ones, as nnU-Net oversamples each class.

    Args:
        shape: spatial shape `(D, H, W)` (int tensor or tuple).
        size: crop size `(d, h, w)`.
        seed: stateless seed, shape `(2,)`.
        label: `(D, H, W)` or `(D, H, W, K)` tensor (foreground = any value > 0), or None.
        foreground_probability: in [0, 1].
        classes: label values to sample in turn (e.g. BraTS `(1, 2, 4)`), or None for any voxel > 0.

    Returns:
        int32 tensor `(3,)`, for `crop`.

    Example:
        >>> import tensorflow as tf
        >>> label = tf.concat([tf.fill((10, 4, 4), 2), tf.fill((1, 4, 4), 4)], axis=0)   # one slice of 4
        >>> starts = [int(crop_start((11, 4, 4), (1, 4, 4), (0, i), tf.cast(label, tf.uint8), 1.0, (2, 4))[0])
        ...           for i in range(200)]
        >>> 0.3 < sum(s == 10 for s in starts) / 200 < 0.7      # class 4 drawn about half of the time
        True
    """
    size = _check_size(size)
    foreground_probability = _check_probability(foreground_probability, "foreground_probability")
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    shape = tf.cast(tf.convert_to_tensor(shape), tf.int32)[:3]
    size_t = tf.constant(size, tf.int32)
    fits = shape >= size_t
    centred = -((size_t - shape) // 2)
    room = tf.maximum(shape - size_t, 0)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    draws = tf.random.stateless_uniform([3], seed=seeds[0])
    uniform = tf.cast(tf.floor(draws * tf.cast(room + 1, tf.float32)), tf.int32)
    uniform = tf.where(fits, tf.minimum(uniform, room), centred)
    if label is None or foreground_probability == 0.0:
        return uniform
    label = tf.convert_to_tensor(label)

    def foreground_start():
        fg = label > tf.zeros([], label.dtype)
        if fg.shape.rank == 4:
            fg = tf.reduce_any(fg, axis=-1)
        if classes:
            values = tf.constant([int(c) for c in classes], label.dtype)
            present = tf.reduce_any(tf.equal(label[..., None], values), axis=[0, 1, 2])
            scores = tf.where(present, tf.random.stateless_uniform([len(classes)], seed=seeds[1] + 7), -1.0)
            chosen = values[tf.argmax(scores)]
            fg = tf.logical_and(fg, tf.equal(label, chosen))
        coords = tf.cast(tf.where(fg), tf.int32)
        count = tf.shape(coords)[0]

        def around_voxel():
            index = tf.random.stateless_uniform([], seed=seeds[2], maxval=count, dtype=tf.int32)
            voxel = coords[index]
            offset = tf.random.stateless_uniform([3], seed=seeds[3], maxval=tf.int32.max, dtype=tf.int32) % size_t
            return tf.where(fits, tf.clip_by_value(voxel - offset, 0, room), centred)

        return tf.cond(count > 0, around_voxel, lambda: uniform)

    choose = tf.random.stateless_uniform([], seed=seeds[1]) < foreground_probability
    return tf.cond(choose, foreground_start, lambda: uniform)


def random_crop(image, label, size, seed, foreground_probability=0.0, classes=None):
    """Crop a random window of `size` from image and label (zero-padded if the volume is smaller).

    Args:
        image: `(D, H, W, C)` tensor.
        label: `(D, H, W)` or `(D, H, W, K)` tensor, or None.
        size: `(d, h, w)`.
        seed: stateless seed, shape `(2,)`.
        foreground_probability: probability that the window is placed around a random voxel
            with label > 0 (see `crop_start`); 0 gives uniform windows.
        classes: label values sampled in turn for foreground windows (see `crop_start`).

    Returns:
        `(image, label)` of spatial shape `size`.

    Example:
        >>> import tensorflow as tf
        >>> label = tf.scatter_nd([[9, 9, 9]], tf.constant([1], tf.uint8), (12, 12, 12))
        >>> _, lab = random_crop(tf.zeros((12, 12, 12, 2)), label, (4, 4, 4), (1, 2), foreground_probability=1.0)
        >>> int(tf.reduce_sum(tf.cast(lab, tf.int32)))
        1
    """
    image = tf.convert_to_tensor(image)
    start = crop_start(tf.shape(image)[:3], size, seed, label, foreground_probability, classes)
    return crop(image, label, start, size)


def flip_axes(image, label, mask_of_axes):
    """Mirror image and label along the spatial axes where `mask_of_axes` (3 booleans) is True.

    Args:
        image: `(D, H, W, C)` tensor.
        label: `(D, H, W)` or `(D, H, W, K)` tensor, or None.
        mask_of_axes: three booleans (a bool tensor allowed) for axes D, H, W.

    Returns:
        The mirrored `(image, label)`.
    """
    mask = tf.reshape(tf.cast(mask_of_axes, tf.bool), [3])
    axes = tf.boolean_mask(tf.range(3, dtype=tf.int32), mask)
    image = tf.reverse(tf.convert_to_tensor(image), axes)
    if label is not None:
        label = tf.reverse(tf.convert_to_tensor(label), axes)
    return image, label


def flip_mask(seed, probability=0.5):
    """Three independent draws: flip axis i with probability `probability` (bool tensor `(3,)`)."""
    probability = _check_probability(probability, "probability")
    return tf.random.stateless_uniform([3], seed=tf.cast(seed, tf.int64)) < probability


def random_flip(image, label, seed, probability=0.5):
    """Mirror along each spatial axis independently with probability `probability`.

    Example:
        >>> import tensorflow as tf
        >>> img, _ = random_flip(tf.reshape(tf.range(8.0), (2, 2, 2, 1)), None, (3, 4), probability=1.0)
        >>> int(img[0, 0, 0, 0])
        7
    """
    return flip_axes(image, label, flip_mask(seed, probability))


def intensity_shift_scale(image, shift, scale, std=None, nonzero=True):
    """Per channel `x * scale + shift * std`, on the non-zero voxels (default) or on all.

    Args:
        image: float `(D, H, W, C)`.
        shift: `(C,)` (or scalar) shifts in units of the channel's standard deviation.
        scale: `(C,)` (or scalar) multiplicative factors.
        std: `(C,)` (or scalar) standard deviation to use; None computes it per channel over the
            image's non-zero voxels (as `nonzero_moments`). After `zscore_nonzero` of the whole
            volume it is exactly 1: pass `std=1.0` when the image is a crop of such a volume.
        nonzero: change only the voxels that are non-zero (background stays 0); False changes all.

    Returns:
        float32 `(D, H, W, C)`.

    Example:
        >>> import tensorflow as tf
        >>> x = tf.constant([[[[0.0], [1.0], [3.0]]]])
        >>> intensity_shift_scale(x, shift=0.5, scale=2.0)[0, 0, :, 0].numpy().tolist()
        [0.0, 2.5, 6.5]
    """
    x = tf.cast(image, tf.float32)
    if std is None:
        _, std = nonzero_moments(x)
    offset = tf.cast(shift, tf.float32) * tf.cast(std, tf.float32)
    out = x * tf.cast(scale, tf.float32) + offset
    if nonzero:
        out = tf.where(tf.not_equal(x, 0.0), out, tf.zeros_like(out))
    return out


def intensity_parameters(seed, channels, shift=0.1, scale=0.1):
    """Draw per-channel `(shift, scale)`: shift uniform in ±`shift`, scale uniform in 1 ± `scale`."""
    shift, scale = float(shift), float(scale)
    if shift < 0 or scale < 0 or scale >= 1:
        raise ConfigError(f"shift must be >= 0 and scale in [0, 1), got shift={shift!r}, scale={scale!r}")
    draws = tf.random.stateless_uniform([2, channels], seed=tf.cast(seed, tf.int64), minval=-1.0, maxval=1.0)
    return draws[0] * shift, 1.0 + draws[1] * scale


def random_intensity(image, seed, shift=0.1, scale=0.1, std=None, nonzero=True):
    """Random per-channel intensity shift (±`shift` std) and scale (1 ± `scale`), Myronenko 2018.

    Args:
        image: float `(D, H, W, C)` with a known channel count.
        seed: stateless seed, shape `(2,)`.
        shift, scale: ranges of the draws (defaults 0.1 and 0.1: shift ±0.1 std, scale 0.9-1.1).
        std, nonzero: as in `intensity_shift_scale`.

    Returns:
        float32 `(D, H, W, C)`.
    """
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    if channels is None:
        raise ConfigError("random_intensity needs an image with a known number of channels")
    shifts, scales = intensity_parameters(seed, channels, shift, scale)
    return intensity_shift_scale(image, shifts, scales, std=std, nonzero=nonzero)
