"""Slice stacks for sequence classifiers: slice filter, [image, WT, ET] channels, fixed-length chunks, zoom-in TTA.

Workflow W5's stage 2 feeds a patient's series to a CNN + BiLSTM classifier
(`tfseg.models.sequence`) as chunks of consecutive slices. Steps, each a function here:

1. `keep_tumour_slices`: keep the slices whose predicted tumour covers more than `min_ratio` of
   the brain and forms at most `max_contours` separate regions (connected components);
2. `stack_channels`: image, WT probability and ET probability as the 3 channels of each slice;
3. `chunk_indices` / `make_chunks`: chunks of `length` consecutive kept slices every `stride`
   slices, with an explicit policy for the end of the stack (`CHUNK_POLICIES`);
4. `zoom_in`: the test-time augmentation, a centre crop by `1 / factor` resized back.

Everything is numpy in and out except `zoom_in` and `resize_slices`, which use TensorFlow's resize.

Example:
    >>> [c.tolist() for c in chunk_indices(7, length=4, stride=2)]
    [[0, 1, 2, 3], [2, 3, 4, 5], [3, 4, 5, 6]]
"""
import logging

import numpy as np

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["CHUNK_POLICIES", "PAD_MODES", "chunk_indices", "make_chunks", "count_contours", "slice_filter",
           "keep_tumour_slices", "stack_channels", "normalize_series", "resize_slices", "zoom_in"]

#: What happens to the slices after the last full chunk, and to a stack shorter than one chunk:
#: "shift": one more chunk that ends at the last slice (it overlaps its predecessor by more than
#:     `length - stride`); a stack shorter than one chunk is padded to one chunk.
#: "pad": one more chunk starting `stride` after the last full one, padded past the last slice;
#:     a stack shorter than one chunk is padded to one chunk.
#: "drop": slices after the last full chunk are not used; a stack shorter than one chunk gives none.
CHUNK_POLICIES = ("shift", "pad", "drop")
#: How a chunk is padded past the last slice: "edge" repeats the last slice, "zero" uses blank slices.
PAD_MODES = ("edge", "zero")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def chunk_indices(num_slices, length=35, stride=5, policy="shift", pad_mode="edge"):
    """The slice indices of each chunk of a stack of `num_slices` slices.

    Args:
        num_slices: slices in the stack (0 gives no chunk).
        length: slices per chunk (35 in the seed).
        stride: step between the first slices of consecutive chunks (5 in the seed).
        policy: one of `CHUNK_POLICIES` (see there).
        pad_mode: one of `PAD_MODES`; padding positions hold the last index ("edge") or -1 ("zero").

    Returns:
        A list of int arrays of `length` indices each, in stack order.

    Example:
        >>> [c.tolist() for c in chunk_indices(7, length=4, stride=2, policy="pad")]
        [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 6]]
        >>> [c.tolist() for c in chunk_indices(2, length=4, stride=2, pad_mode="zero")]
        [[0, 1, -1, -1]]
        >>> chunk_indices(7, length=4, stride=2, policy="drop")[-1].tolist()
        [2, 3, 4, 5]
    """
    length, stride = _positive_int("length", length), _positive_int("stride", stride)
    if isinstance(num_slices, bool) or not isinstance(num_slices, (int, np.integer)) or num_slices < 0:
        raise ConfigError(f"num_slices must be a non-negative integer, got {num_slices!r}")
    if policy not in CHUNK_POLICIES:
        raise ConfigError(f"chunk policy must be one of {CHUNK_POLICIES}, got {policy!r}")
    if pad_mode not in PAD_MODES:
        raise ConfigError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    n = int(num_slices)
    if n == 0 or (n < length and policy == "drop"):
        return []
    starts = list(range(0, n - length + 1, stride)) if n >= length else []
    covered = starts[-1] + length if starts else 0
    if covered < n:
        if policy == "shift" and n >= length:
            starts.append(n - length)
        elif policy in ("pad", "shift"):
            starts.append(starts[-1] + stride if starts else 0)
    fill = n - 1 if pad_mode == "edge" else -1
    chunks = []
    for start in starts:
        index = np.arange(start, start + length)
        index[index >= n] = fill
        chunks.append(index)
    return chunks


def make_chunks(stack, length=35, stride=5, policy="shift", pad_mode="edge"):
    """The chunks of a slice stack `(N, H, W, C)` as one array `(K, length, H, W, C)`.

    Args:
        stack: the slices in order.
        length, stride, policy, pad_mode: as for `chunk_indices`.

    Returns:
        An array of `stack`'s dtype; `K = len(chunk_indices(N, ...))` (may be 0).

    Example:
        >>> stack = np.arange(3.0).reshape(3, 1, 1, 1)
        >>> make_chunks(stack, length=2, stride=2, policy="pad", pad_mode="zero")[:, :, 0, 0, 0]
        array([[0., 1.],
               [2., 0.]])
    """
    stack = np.asarray(stack)
    if stack.ndim < 2:
        raise ConfigError(f"a slice stack needs a leading slice axis, got shape {stack.shape}")
    index = chunk_indices(len(stack), length, stride, policy, pad_mode)
    if not index:
        return np.zeros((0, length) + stack.shape[1:], stack.dtype)
    index = np.stack(index)
    chunks = stack[np.maximum(index, 0)]
    chunks[index < 0] = 0
    return chunks


def count_contours(mask):
    """The number of separate regions (8-connected components) of a 2D mask, as `cv2.findContours`'s outer contours.

    Example:
        >>> count_contours(np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0]]))
        3
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ConfigError(f"count_contours needs a 2D mask, got shape {mask.shape}")
    return int(ndimage.label(mask > 0, structure=np.ones((3, 3), int))[1])


def slice_filter(tumour, brain, min_ratio=0.025, max_contours=5):
    """Which slices to keep: tumour/brain area ratio above `min_ratio` and at most `max_contours` tumour regions.

    Args:
        tumour: `(N, H, W)` tumour masks (non-zero = tumour), e.g. the thresholded predicted WT.
        brain: `(N, H, W)` brain masks (non-zero = brain).
        min_ratio: keep a slice whose ratio exceeds this (0.025 in the seed).
        max_contours: keep a slice with at most this many separate tumour regions (5 in the seed);
            None for no limit.

    Returns:
        A bool array `(N,)`.

    Example:
        >>> tumour = np.zeros((2, 4, 4)); tumour[0, :2, :2] = 1; tumour[1, 0, 0] = 1
        >>> slice_filter(tumour, np.ones((2, 4, 4)), min_ratio=0.1).tolist()
        [True, False]
    """
    from tfseg.data.slices import tumour_brain_ratio

    tumour, brain = np.asarray(tumour), np.asarray(brain)
    if tumour.shape != brain.shape or tumour.ndim != 3:
        raise ConfigError(f"tumour and brain masks must be (N, H, W) of one shape, "
                          f"got {tumour.shape} and {brain.shape}")
    if not 0.0 <= float(min_ratio) < 1.0:
        raise ConfigError(f"min_ratio must be in [0, 1), got {min_ratio!r}")
    if max_contours is not None:
        max_contours = _positive_int("max_contours", max_contours)
    keep = np.zeros(len(tumour), bool)
    for k in range(len(tumour)):
        if tumour_brain_ratio(tumour[k], brain[k]) > min_ratio:
            keep[k] = max_contours is None or count_contours(tumour[k]) <= max_contours
    return keep


def keep_tumour_slices(image, wt, min_ratio=0.025, max_contours=5, threshold=0.5):
    """Indices of the slices of a series to keep, from the image (brain = non-zero) and the predicted WT probability.

    Args:
        image: `(N, H, W)` series (zero outside the head/brain).
        wt: `(N, H, W)` predicted whole-tumour probability.
        min_ratio, max_contours: as for `slice_filter`.
        threshold: WT probability above which a pixel is tumour.

    Returns:
        An int array of the kept slice indices, in order.

    Example:
        >>> wt = np.zeros((3, 4, 4)); wt[1, 1:3, 1:3] = 0.9
        >>> keep_tumour_slices(np.ones((3, 4, 4)), wt).tolist()
        [1]
    """
    image, wt = np.asarray(image), np.asarray(wt)
    return np.flatnonzero(slice_filter(wt > threshold, image != 0, min_ratio, max_contours))


def normalize_series(volume, percentile=99.5, level=1.0):
    """Scale a series to [0, 1]: the `percentile` of its non-zero voxels maps to `level`, then clipped to [0, 1].

    With the median (`percentile=50`) and `level=0.25`, the brain sits near 0.25 and a tumour up
    to 4 times brighter keeps its contrast; a high percentile with `level=1` would map a bright
    tumour core to 1 whatever its brightness.

    Example:
        >>> normalize_series(np.array([0.0, 2.0, 4.0]), percentile=100).tolist()
        [0.0, 0.5, 1.0]
        >>> normalize_series(np.array([0.0, 1.0, 2.0, 9.0]), percentile=50, level=0.25).tolist()
        [0.0, 0.125, 0.25, 1.0]
    """
    volume = np.asarray(volume, np.float32)
    inside = volume[volume != 0]
    scale = float(np.percentile(inside, percentile)) if inside.size else 0.0
    return np.clip(volume * np.float32(level / scale), 0.0, 1.0) if scale > 0 else np.zeros_like(volume)


def stack_channels(image, wt, et):
    """The 3-channel input of each slice: `[image, WT, ET]` stacked channels last, float32.

    Args:
        image, wt, et: arrays of one shape `(..., H, W)`.

    Returns:
        `(..., H, W, 3)` float32.

    Example:
        >>> stack_channels(np.ones((2, 2)), np.zeros((2, 2)), np.full((2, 2), 0.5))[0, 0].tolist()
        [1.0, 0.0, 0.5]
    """
    arrays = [np.asarray(a, np.float32) for a in (image, wt, et)]
    if len({a.shape for a in arrays}) != 1:
        raise ConfigError(f"image, WT and ET must have one shape, got {[a.shape for a in arrays]}")
    return np.stack(arrays, axis=-1)


def resize_slices(slices, size):
    """Resize `(..., H, W, C)` slices to `(..., size, size, C)` (bilinear, antialiased), float32 numpy.

    Example:
        >>> resize_slices(np.ones((2, 3, 8, 8, 3)), 4).shape
        (2, 3, 4, 4, 3)
    """
    import tensorflow as tf

    slices = np.asarray(slices, np.float32)
    if slices.ndim < 3:
        raise ConfigError(f"slices must be (..., H, W, C), got shape {slices.shape}")
    size = _positive_int("size", size)
    if slices.shape[-3:-1] == (size, size):
        return slices
    flat = slices.reshape((-1,) + slices.shape[-3:])
    resized = tf.image.resize(flat, (size, size), antialias=True).numpy()
    return resized.reshape(slices.shape[:-3] + (size, size, slices.shape[-1]))


def zoom_in(slices, factor=1.2):
    """Zoom-in test-time augmentation: the centre `1 / factor` of each slice, resized back to its size.

    Args:
        slices: `(..., H, W, C)` array.
        factor: the zoom (1.2 in the seed); 1 returns the slices unchanged.

    Returns:
        A float32 array of `slices`' shape.

    Example:
        >>> x = np.zeros((1, 10, 10, 1)); x[0, 4:6, 4:6] = 1
        >>> y = zoom_in(x, 2.0)
        >>> y.shape, float(y.sum()) > float(x.sum())
        ((1, 10, 10, 1), True)
    """
    import tensorflow as tf

    if not float(factor) >= 1.0:
        raise ConfigError(f"zoom factor must be at least 1, got {factor!r}")
    slices = np.asarray(slices, np.float32)
    if factor == 1.0:
        return slices
    height, width = slices.shape[-3:-1]
    crop_h, crop_w = max(1, int(round(height / factor))), max(1, int(round(width / factor)))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    flat = slices.reshape((-1,) + slices.shape[-3:])[:, top:top + crop_h, left:left + crop_w]
    return tf.image.resize(flat, (height, width)).numpy().reshape(slices.shape)
