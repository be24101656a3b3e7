"""Overlapping 2D patch grids over slices, keeping the patches that show some foreground.

A patch grid covers an axis of length `L` with patches of size `p` every `stride` pixels; the
last patch is moved back to end flush with the axis, so every pixel is covered and no patch
hangs over the edge. An axis shorter than the patch gets one patch at 0, and `extract_patches`
pads the slice with zeros at the end (bottom/right) up to the patch size.

Patches are numpy arrays, channels last: images `(N, p, p, C)`, labels `(N, p, p)`, origins
`(N, 2)` holding the `(row, column)` of each patch's top-left pixel in the slice.

Example:
    >>> import numpy as np
    >>> patch_starts(10, 4, 3)
    [0, 3, 6]
    >>> patch_starts(11, 4, 3)
    [0, 3, 6, 7]
    >>> image = np.ones((6, 6, 2), np.float32)
    >>> label = np.zeros((6, 6), np.uint8)
    >>> label[5, 5] = 2
    >>> patches, labels, origins = extract_patches(image, label, patch_size=4, stride=2)
    >>> patches.shape, labels.shape, origins.tolist()
    ((1, 4, 4, 2), (1, 4, 4), [[2, 2]])
"""
import numpy as np

from tfseg.errors import ConfigError

__all__ = ["patch_starts", "patch_grid", "extract_patches", "pair"]


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def pair(name, value):
    """`value` as a `(rows, columns)` pair of positive ints; an int means a square.

    Example:
        >>> pair("patch_size", 128), pair("stride", (32, 64))
        ((128, 128), (32, 64))
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must be an int or a (rows, columns) pair, got {value!r}")
    return tuple(_positive_int(name, v) for v in value)


def patch_starts(length, patch, stride):
    """Start offsets of patches of size `patch`, every `stride`, covering an axis of `length`.

    Args:
        length: the axis length (>= 1).
        patch: the patch size along the axis.
        stride: the step between starts (a stride above `patch` would leave gaps, and is refused).

    Returns:
        A list of ints, increasing; the last patch ends at `length` (`[0]` when `length <= patch`,
        and the caller pads the axis up to `patch`).

    Raises:
        ConfigError: a size is not a positive integer, or `stride > patch`.

    Example:
        >>> patch_starts(240, 128, 64)
        [0, 64, 112]
        >>> patch_starts(100, 128, 64)
        [0]
    """
    length = _positive_int("length", length)
    patch = _positive_int("patch", patch)
    stride = _positive_int("stride", stride)
    if stride > patch:
        raise ConfigError(f"stride {stride} is larger than the patch size {patch}: pixels between "
                          f"patches would never be seen")
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def patch_grid(shape2d, patch_size, stride):
    """The `(row, column)` origins of the patch grid over a 2D slice, row by row.

    Args:
        shape2d: the slice size `(H, W)`.
        patch_size: an int or a `(rows, columns)` pair.
        stride: an int or a `(rows, columns)` pair, each at most the patch size.

    Returns:
        An int64 array `(N, 2)` of top-left corners.

    Example:
        >>> patch_grid((6, 5), 4, 2).tolist()
        [[0, 0], [0, 1], [2, 0], [2, 1]]
    """
    if isinstance(shape2d, (str, bytes)) or not hasattr(shape2d, "__len__") or len(shape2d) != 2:
        raise ConfigError(f"shape2d must be (H, W), got {shape2d!r}")
    (ph, pw), (sh, sw) = pair("patch_size", patch_size), pair("stride", stride)
    rows = patch_starts(shape2d[0], ph, sh)
    cols = patch_starts(shape2d[1], pw, sw)
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64).reshape(-1, 2)


def extract_patches(image, label, patch_size, stride, min_foreground=1):
    """Cut a slice into grid patches and keep those with at least `min_foreground` labelled pixels.

    Args:
        image: `(H, W, C)` array.
        label: `(H, W)` integer label map; foreground is `label > 0`.
        patch_size: an int or a `(rows, columns)` pair; a slice smaller than it is zero-padded
            at the bottom/right (images and labels alike).
        stride: an int or a `(rows, columns)` pair.
        min_foreground: the least number of foreground pixels a patch must hold to be kept
            (0 keeps every patch).

    Returns:
        `(patches, labels, origins)`: `(N, p, p, C)` of the image's dtype, `(N, p, p)` of the
        label's dtype, and int64 `(N, 2)` top-left corners, in grid order (row by row).

    Raises:
        ConfigError: bad shapes or arguments.

    Example:
        >>> image = np.zeros((8, 8, 1), np.float32)
        >>> label = np.zeros((8, 8), np.uint8)
        >>> label[0:2, 0:2] = 1
        >>> _, _, origins = extract_patches(image, label, 4, 4, min_foreground=4)
        >>> origins.tolist()
        [[0, 0]]
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim != 3 or label.ndim != 2 or image.shape[:2] != label.shape:
        raise ConfigError(f"image must be (H, W, C) and label (H, W) of the same size, got "
                          f"{image.shape} and {label.shape}")
    if isinstance(min_foreground, bool) or not isinstance(min_foreground, (int, np.integer)) \
            or min_foreground < 0:
        raise ConfigError(f"min_foreground must be an integer >= 0, got {min_foreground!r}")
    (ph, pw) = pair("patch_size", patch_size)
    origins = patch_grid(label.shape, (ph, pw), stride)
    height, width = label.shape
    if height < ph or width < pw:
        pad_h, pad_w = max(ph - height, 0), max(pw - width, 0)
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        label = np.pad(label, ((0, pad_h), (0, pad_w)))
    # Foreground count of every grid patch from one summed-area table.
    table = np.zeros((label.shape[0] + 1, label.shape[1] + 1), np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(label > 0, axis=0), axis=1)
    r, c = origins[:, 0], origins[:, 1]
    counts = table[r + ph, c + pw] - table[r, c + pw] - table[r + ph, c] + table[r, c]
    origins = origins[counts >= min_foreground]
    patches = np.empty((len(origins), ph, pw, image.shape[2]), image.dtype)
    labels = np.empty((len(origins), ph, pw), label.dtype)
    for n, (row, col) in enumerate(origins):
        patches[n] = image[row:row + ph, col:col + pw]
        labels[n] = label[row:row + ph, col:col + pw]
    return patches, labels, origins
