"""Sliding-window inference over whole 2D or 3D volumes, with memory bounded by the window batch.

Windows of size `roi_size` lie on a regular grid with stride `int(roi * (1 - overlap))` per axis,
the last window flush with the far border (MONAI's scan rule: per axis
`ceil((size - roi) / stride) + 1` windows, so 18 windows for 240x240x155 at roi 128, overlap 0.5).
An axis shorter than the roi is padded symmetrically (`pad_mode`) inside each window and cropped
back. Window predictions are blended with a Gaussian importance map (sigma = `sigma_scale * roi`,
as MONAI) or constant weights, and normalized by the summed weights.

Memory: the only volume-sized arrays are the output accumulator `(*spatial, K)` float32 and the
input itself. Windows are cut out (and cast to float32) a batch at a time, never all stacked.
Because the grid is a product of per-axis starts and the importance map is a product of per-axis
profiles, the summed weights are separable too: the normalizer is kept as one 1-D profile per axis
instead of a volume-sized weight map.

Example:
    >>> import numpy as np
    >>> volume = np.random.default_rng(0).normal(size=(40, 36, 1)).astype("float32")
    >>> out = sliding_window_inference(volume, lambda x: 1 / (1 + np.exp(-x)), roi_size=(16, 16))
    >>> bool(np.allclose(out, 1 / (1 + np.exp(-volume)), atol=1e-6)), count_windows((40, 36), (16, 16))
    (True, 16)
"""
import itertools
import logging
import math
import weakref

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.progress import progress_bar

logger = logging.getLogger(__name__)

BLEND_MODES = ("gaussian", "constant")
PAD_MODES = ("constant", "edge", "reflect", "symmetric")


# --------------------------------------------------------------------------------------------
# The grid.
# --------------------------------------------------------------------------------------------

def _resolve_roi(shape, roi_size):
    """`roi_size` as a tuple of ints; None or a value <= 0 on an axis means that axis's full size."""
    shape = tuple(int(s) for s in shape)
    if roi_size is None:
        return shape
    if np.isscalar(roi_size):
        roi_size = (roi_size,) * len(shape)
    roi_size = tuple(roi_size)
    if len(roi_size) != len(shape):
        raise ConfigError(f"roi_size {roi_size} has {len(roi_size)} axes but the volume has "
                          f"{len(shape)} spatial axes {shape}")
    roi = []
    for r, s in zip(roi_size, shape):
        if r is None or (not isinstance(r, bool) and isinstance(r, (int, np.integer)) and r <= 0):
            roi.append(max(s, 1))
        elif isinstance(r, bool) or not isinstance(r, (int, np.integer)):
            raise ConfigError(f"roi_size entries must be integers, got {roi_size!r}")
        else:
            roi.append(int(r))
    return tuple(roi)


def _resolve_overlap(overlap, ndim):
    values = (overlap,) * ndim if np.isscalar(overlap) else tuple(overlap)
    if len(values) != ndim:
        raise ConfigError(f"overlap {overlap!r} must be one number or one per spatial axis ({ndim})")
    for v in values:
        if isinstance(v, bool) or not 0.0 <= float(v) < 1.0:
            raise ConfigError(f"overlap must lie in [0, 1), got {overlap!r}")
    return tuple(float(v) for v in values)


def _axis_starts(size, roi, overlap):
    """Window starts along one axis of the (padded) extent `max(size, roi)`, MONAI's rule."""
    extent = max(size, roi)
    if roi >= extent:
        return [0]
    stride = max(int(roi * (1.0 - overlap)), 1)
    count = int(math.ceil((extent - roi) / stride)) + 1
    return [min(i * stride, extent - roi) for i in range(count)]


def _grid(shape, roi_size, overlap):
    roi = _resolve_roi(shape, roi_size)
    overlap = _resolve_overlap(overlap, len(roi))
    starts = [_axis_starts(s, r, o) for s, r, o in zip(shape, roi, overlap)]
    return roi, starts


def window_grid(shape, roi_size, overlap=0.5):
    """The windows `sliding_window_inference` visits, as tuples of slices into the volume.

    Args:
        shape: spatial shape of the volume, e.g. `(240, 240, 155)` (no channel axis).
        roi_size: window size per axis (an int for all axes; None or <= 0 on an axis: its full size).
        overlap: fraction of a window shared with the next one, in [0, 1), one number or one per axis.

    Returns:
        A list of tuples of slices, one tuple per window, in C order of the grid. On an axis shorter
        than the roi the slice covers the whole axis (the window is padded up to the roi).

    Example:
        >>> window_grid((6, 4), roi_size=4, overlap=0.5)
        [(slice(0, 4, None), slice(0, 4, None)), (slice(2, 6, None), slice(0, 4, None))]
    """
    shape = tuple(int(s) for s in shape)
    roi, starts = _grid(shape, roi_size, overlap)
    windows = []
    for corner in itertools.product(*starts):
        windows.append(tuple(slice(*_clip(c, r, s)) for c, r, s in zip(corner, roi, shape)))
    return windows


def count_windows(shape, roi_size, overlap=0.5):
    """Number of windows of the grid, without listing them (MONAI's count: 18 for 240x240x155, roi 128).

    Example:
        >>> count_windows((240, 240, 155), 128, 0.5)
        18
    """
    shape = tuple(int(s) for s in shape)
    _, starts = _grid(shape, roi_size, overlap)
    return int(np.prod([len(s) for s in starts]))


def _clip(start, roi, size):
    """The window `[start, start + roi)` as `(lo, hi)` in volume coordinates (the whole axis if shorter)."""
    return start, min(start + roi, size)


# --------------------------------------------------------------------------------------------
# Importance maps.
# --------------------------------------------------------------------------------------------

def importance_profiles(roi, blend="gaussian", sigma_scale=0.125):
    """Per-axis 1-D weight profiles whose outer product is the window's importance map.

    Gaussian: `exp(-x**2 / (2 sigma**2))` with `x` measured from the window centre
    `(roi - 1) / 2` and `sigma = sigma_scale * roi`, as MONAI; each profile is floored at 1e-3 so
    no weight underflows. Constant: ones.

    Returns:
        A list of float64 arrays, one of length `roi[i]` per axis.
    """
    if blend not in BLEND_MODES:
        raise ConfigError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    scales = (sigma_scale,) * len(roi) if np.isscalar(sigma_scale) else tuple(sigma_scale)
    if len(scales) != len(roi) or any(float(s) <= 0 for s in scales):
        raise ConfigError(f"sigma_scale must be a positive number or one per axis, got {sigma_scale!r}")
    profiles = []
    for r, scale in zip(roi, scales):
        if blend == "constant":
            profiles.append(np.ones(r))
            continue
        x = np.arange(r) - (r - 1) / 2.0
        sigma = float(scale) * r
        profiles.append(np.maximum(np.exp(-x ** 2 / (2.0 * sigma ** 2)), 1e-3))
    return profiles


def _outer(profiles):
    out = np.asarray(profiles[0], np.float32)
    for p in profiles[1:]:
        out = np.multiply.outer(out, np.asarray(p, np.float32))
    return out


# --------------------------------------------------------------------------------------------
# Inference.
# --------------------------------------------------------------------------------------------

def _pad_window(piece, roi, shape, pad_mode):
    """Pad a cut-out piece up to `roi` on the axes shorter than the roi (symmetric, as the grid)."""
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for r, s in zip(roi, shape)]
    if not any(b or a for b, a in pads):
        return piece
    return np.pad(piece, pads + [(0, 0)], mode=pad_mode)


def sliding_window_inference(volume, predict_fn, roi_size, overlap=0.5, blend="gaussian", sigma_scale=0.125,
                             window_batch_size=4, pad_mode="constant", progress=False, out_dtype=np.float32,
                             source="volume"):
    """Predict a whole volume window by window and blend the windows into one probability map.

    Args:
        volume: numpy array `(D, H, W, C)` (3D) or `(H, W, C)` (2D), channels last; any numeric
            dtype (windows are cast to float32 one batch at a time).
        predict_fn: maps a float32 batch `(B, *roi, C)` to probabilities `(B, *roi, K)` (numpy or
            tensor), e.g. a Keras model's `predict_on_batch` or a `tf.function`; `B` is at most
            `window_batch_size` (the last batch may be smaller).
        roi_size: window size per spatial axis (an int for all axes; None or <= 0 on an axis: the
            full axis). Axes of the volume shorter than the roi are padded, then cropped back.
        overlap: fraction of overlap between neighbouring windows, in [0, 1).
        blend: "gaussian" (importance map, sigma = `sigma_scale * roi`) or "constant" (plain mean).
        sigma_scale: Gaussian sigma as a fraction of the roi, one number or one per axis.
        window_batch_size: windows per `predict_fn` call.
        pad_mode: numpy pad mode for axes shorter than the roi: "constant" (zeros), "edge",
            "reflect" or "symmetric".
        progress: show a progress bar over the window batches (one log line when not on a terminal).
        out_dtype: dtype of the returned map (accumulation is float32).
        source: the volume (e.g. its file) named in errors.

    Returns:
        Blended predictions `(*spatial, K)` of dtype `out_dtype`, the volume's spatial shape.

    Raises:
        DataError: the volume is not `(*spatial, C)` with 2 or 3 spatial axes.
        ConfigError: a bad argument, or `predict_fn` answered with the wrong shape.

    Example:
        >>> v = np.ones((10, 12, 9, 2), np.float32)
        >>> out = sliding_window_inference(v, lambda x: x[..., :1] * 0.5, roi_size=8, window_batch_size=3)
        >>> out.shape, bool(np.allclose(out, 0.5, atol=1e-6))
        ((10, 12, 9, 1), True)
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise DataError(source, f"expected a volume (D, H, W, C) or an image (H, W, C), channels last; "
                                f"got shape {volume.shape}")
    if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == bool):
        raise DataError(source, f"volume must be numeric, got dtype {volume.dtype}")
    if min(volume.shape) == 0:
        raise DataError(source, f"volume is empty, shape {volume.shape}")
    if isinstance(window_batch_size, bool) or not isinstance(window_batch_size, (int, np.integer)) \
            or window_batch_size < 1:
        raise ConfigError(f"window_batch_size must be a positive integer, got {window_batch_size!r}")
    if pad_mode not in PAD_MODES:
        raise ConfigError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    shape = volume.shape[:-1]
    roi, starts = _grid(shape, roi_size, overlap)
    profiles = importance_profiles(roi, blend, sigma_scale)
    importance = _outer(profiles)[..., None]                      # (*roi, 1) float32
    corners = list(itertools.product(*starts))
    logger.debug("sliding window: %s windows of %s over %s, batch %s", len(corners), roi, shape,
                 window_batch_size)

    # Separable normalizer: summed weights along each axis, over the padded extent, cropped back.
    normalizers = []
    for axis_starts, profile, r, s in zip(starts, profiles, roi, shape):
        total = np.zeros(max(r, s))
        for start in axis_starts:
            total[start:start + r] += profile
        before = max(r - s, 0) // 2
        normalizers.append(total[before:before + s])

    output = None
    batches = range(0, len(corners), window_batch_size)
    if progress:
        batches = progress_bar(batches, "windows", "batch")
    for first in batches:
        batch_corners = corners[first:first + window_batch_size]
        boxes = [tuple(_clip(c, r, s) for c, r, s in zip(corner, roi, shape)) for corner in batch_corners]
        batch = np.empty((len(boxes),) + roi + (volume.shape[-1],), np.float32)
        for i, box in enumerate(boxes):
            piece = volume[tuple(slice(lo, hi) for lo, hi in box)]
            batch[i] = _pad_window(piece, roi, shape, pad_mode)
        pred = np.asarray(predict_fn(batch))
        if pred.ndim != batch.ndim or pred.shape[:-1] != batch.shape[:-1]:
            raise ConfigError(f"predict_fn must map a batch {batch.shape} to (B, *roi, K) = "
                              f"({len(boxes)}, {', '.join(map(str, roi))}, K); got shape {pred.shape}")
        if output is None:
            output = np.zeros(shape + (pred.shape[-1],), np.float32)
        for i, box in enumerate(boxes):
            # Crop away the padding (axes shorter than the roi) and accumulate with the weights.
            inner = tuple(slice((max(r - s, 0) // 2), (max(r - s, 0) // 2) + (hi - lo))
                          for (lo, hi), r, s in zip(box, roi, shape))
            weights = importance[inner]
            output[tuple(slice(lo, hi) for lo, hi in box)] += pred[i][inner] * weights
    for axis, norm in enumerate(normalizers):
        index = [None] * len(shape) + [None]
        index[axis] = slice(None)
        output /= norm.astype(np.float32)[tuple(index)]
    return output if output.dtype == np.dtype(out_dtype) else output.astype(out_dtype)


# --------------------------------------------------------------------------------------------
# Keras models.
# --------------------------------------------------------------------------------------------

_PREDICT_FNS = weakref.WeakKeyDictionary()


def _first_output(y):
    if isinstance(y, dict):
        return next(iter(y.values()))
    if isinstance(y, (list, tuple)):
        return y[0]
    return y


def make_predict_fn(model, roi_size, channels, tta=False, tta_axes=None):
    """A `tf.function` running `model` on float32 batches `(None, *roi_size, channels)`, traced once.

    Args:
        model: a Keras model mapping `(B, *spatial, C)` to probabilities `(B, *spatial, K)`. With
            several outputs (e.g. segmentation + VAE reconstruction) the first one is used.
        roi_size: the window's spatial size (ints).
        channels: input channels `C`.
        tta: average over mirror flips of the spatial axes (see `tfseg.inference.tta.flip_tta`).
        tta_axes: spatial axes to flip with `tta` (None: all).

    Returns:
        A callable taking a numpy batch and returning a numpy array. Calls with the same model and
        arguments return the same function (no retracing across volumes).
    """
    import tensorflow as tf

    from tfseg.inference.tta import flip_tta

    key = (tuple(int(r) for r in roi_size), int(channels), bool(tta),
           None if tta_axes is None else tuple(tta_axes))
    cache = _PREDICT_FNS.setdefault(model, {})
    if key in cache:
        return cache[key]

    def forward(x):
        return tf.cast(_first_output(model(x, training=False)), tf.float32)

    if tta:
        forward = flip_tta(forward, axes=tta_axes)
    spec = tf.TensorSpec((None,) + key[0] + (key[1],), tf.float32)
    graph_fn = tf.function(forward, input_signature=[spec], reduce_retracing=True)

    def predict(batch):
        return graph_fn(tf.convert_to_tensor(batch, tf.float32)).numpy()

    predict.tf_function = graph_fn      # for introspection, e.g. its tracing count
    cache[key] = predict
    return predict


def predict_volume(model, volume, roi_size=None, overlap=0.5, blend="gaussian", sigma_scale=0.125,
                   window_batch_size=4, pad_mode="constant", tta=False, tta_axes=None, size_divisor=1,
                   progress=False, out_dtype=np.float32, source="volume", crop_to_nonzero=False):
    """Predict a whole volume with a Keras model: sliding windows, or one forward pass when it fits.

    The model runs inside a `tf.function` with input signature `(None, *roi, C)`, traced once
    per model, roi and channel count.

    Args:
        model: Keras model, channels last, probabilities out.
        volume: numpy `(D, H, W, C)` or `(H, W, C)`.
        roi_size: window size. None: the model's fixed input size on the axes where it has one,
            and the whole volume (rounded up to a multiple of `size_divisor`) on the others; a
            volume that fits within the roi is predicted in one padded forward pass.
        overlap, blend, sigma_scale, window_batch_size, pad_mode, progress, out_dtype, source:
            as `sliding_window_inference`.
        tta: mirror test-time augmentation over the spatial axes `tta_axes` (None: all).
        size_divisor: with `roi_size=None`, round whole-volume axes up to a multiple of this
            (e.g. 16 for a network that downsamples 4 times); the padding is cropped off.
        crop_to_nonzero: predict only inside the bounding box of the voxels where any channel is
            non-zero, and give the rest probability 0. For skull-stripped MRI (BraTS) the box is
            the brain: about half the windows of the full 240x240x155 grid, same result inside.

    Returns:
        Probabilities `(*spatial, K)`.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 1, activation="softmax")])
        >>> predict_volume(model, np.zeros((20, 30, 1), np.float32)).shape
        (20, 30, 2)
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise DataError(source, f"expected a volume (D, H, W, C) or an image (H, W, C), channels last; "
                                f"got shape {volume.shape}")
    shape = volume.shape[:-1]
    if isinstance(size_divisor, bool) or not isinstance(size_divisor, (int, np.integer)) or size_divisor < 1:
        raise ConfigError(f"size_divisor must be a positive integer, got {size_divisor!r}")
    if roi_size is None:
        model_shape = tuple(model.input_shape)
        if isinstance(model.input_shape, list):
            model_shape = tuple(model.input_shape[0])
        spatial = model_shape[1:-1]
        if len(spatial) != len(shape):
            raise ConfigError(f"model input {model_shape} does not match the volume's {len(shape)} spatial axes "
                              f"{volume.shape}")
        roi = tuple(int(m) if m is not None else -(-s // size_divisor) * size_divisor
                    for m, s in zip(spatial, shape))
    else:
        roi = _resolve_roi(shape, roi_size)
    fn = make_predict_fn(model, roi, volume.shape[-1], tta=tta, tta_axes=tta_axes)
    box = nonzero_box(volume) if crop_to_nonzero else tuple(slice(0, s) for s in shape)
    if box is None:  # nothing but zeros: nothing to find
        return np.zeros(shape + (_output_channels(model),), out_dtype)
    inside = sliding_window_inference(volume[box], fn, roi, overlap=overlap, blend=blend, sigma_scale=sigma_scale,
                                      window_batch_size=window_batch_size, pad_mode=pad_mode, progress=progress,
                                      out_dtype=out_dtype, source=source)
    if inside.shape[:-1] == shape:
        return inside
    out = np.zeros(shape + inside.shape[-1:], out_dtype)
    out[box] = inside
    return out


def nonzero_box(volume):
    """Slices of the bounding box of the voxels where any channel is non-zero (None if there are none).

    Example:
        >>> v = np.zeros((4, 5, 1)); v[1:3, 2, 0] = 1
        >>> nonzero_box(v)
        (slice(1, 3, None), slice(2, 3, None))
    """
    any_channel = np.any(np.asarray(volume) != 0, axis=-1)
    box = []
    for axis in range(any_channel.ndim):
        others = tuple(a for a in range(any_channel.ndim) if a != axis)
        hits = np.flatnonzero(np.any(any_channel, axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _output_channels(model):
    shape = model.output_shape
    if isinstance(shape, dict):
        shape = next(iter(shape.values()))
    elif isinstance(shape, list):
        shape = shape[0]
    return int(shape[-1])
