"""Label maps drawn over images, as PNG: three orthogonal planes of a volume (`three_plane_overlay`,
filled labels), or one 2D slice with the outlines of truth and prediction (`write_overlay_png`,
`write_overlay_pngs` for a test set). Both show the image through the same gray `window`.

Volumes are channels-last `(D, H, W)` in tfseg's memory layout (D = NIfTI k, H = j, W = i), so
the axial plane is `volume[k]`, the coronal plane `volume[:, j]` and the sagittal plane
`volume[:, :, i]`; coronal and sagittal views are drawn with the slice axis pointing up and with
the aspect ratio of the voxel spacing.

Example:
    >>> import numpy as np, tempfile, os
    >>> volume = np.random.rand(8, 16, 16).astype("float32")
    >>> labels = np.zeros((8, 16, 16), np.uint8); labels[3:5, 6:9, 6:9] = 2
    >>> path = three_plane_overlay(volume, os.path.join(tempfile.mkdtemp(), "case.png"), labels=labels)
    >>> os.path.getsize(path) > 0
    True
"""
import logging
import os

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import atomic_path
from tfseg.utils.paths import output_path

logger = logging.getLogger(__name__)

#: Colours of the BraTS labels (and of labels 1-3 of other tasks): red, green, yellow, blue.
LABEL_COLOURS = {1: (1.0, 0.1, 0.1), 2: (0.1, 0.9, 0.1), 3: (0.2, 0.4, 1.0), 4: (1.0, 0.9, 0.0)}

#: Outline colours of `write_overlay_png`: truth, prediction, and where the two outlines coincide.
TRUTH_COLOUR = (0, 220, 0)
PREDICTION_COLOUR = (255, 40, 40)
BOTH_COLOUR = (255, 230, 0)


def _rgba(labels, alpha):
    out = np.zeros(labels.shape + (4,), np.float32)
    for value, colour in LABEL_COLOURS.items():
        out[labels == value] = (*colour, alpha)
    other = (labels > 0) & ~np.isin(labels, list(LABEL_COLOURS))
    out[other] = (1.0, 0.0, 1.0, alpha)
    return out


def window(image):
    """Gray levels in [0, 1]: the image's 0.5-99.5 percentile range stretched to [0, 1], clipped.

    Example:
        >>> window(np.arange(5.0)).round(3).tolist()
        [0.0, 0.247, 0.5, 0.753, 1.0]
    """
    low, high = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1)


def _centre(labels, shape):
    if labels is not None and np.any(labels > 0):
        return tuple(int(round(c)) for c in np.argwhere(labels > 0).mean(axis=0))
    return tuple(s // 2 for s in shape)


def three_plane_overlay(volume, path, labels=None, prediction=None, spacing=(1.0, 1.0, 1.0), centre=None,
                        title=None, alpha=0.45):
    """Save axial, coronal and sagittal views of `volume` with label maps drawn over it.

    Args:
        volume: `(D, H, W)` image, or `(D, H, W, C)` (the last channel is shown, e.g. FLAIR).
        path: PNG file to write (atomically).
        labels: optional `(D, H, W)` integer label map (the truth), drawn in the first row.
        prediction: optional `(D, H, W)` label map, drawn in a second row when given.
        spacing: voxel size `(dz, dy, dx)` in mm, for the aspect ratio of the views.
        centre: voxel `(k, j, i)` the planes go through; default: the centroid of the labels.
        title: figure title.
        alpha: opacity of the labels.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = np.asarray(volume, np.float32)
    if volume.ndim == 4:
        volume = volume[..., -1]
    if volume.ndim != 3:
        raise ValueError(f"volume must be (D, H, W) or (D, H, W, C), got shape {volume.shape}")
    rows = [("truth", labels)] if prediction is None else [("truth", labels), ("prediction", prediction)]
    k, j, i = centre if centre is not None else _centre(labels if labels is not None else prediction, volume.shape)
    dz, dy, dx = spacing
    image = window(volume)
    planes = [("axial", lambda a: a[k], dy / dx, False), ("coronal", lambda a: a[:, j], dz / dx, True),
              ("sagittal", lambda a: a[:, :, i], dz / dy, True)]
    figure, axes = plt.subplots(len(rows), 3, figsize=(12, 4 * len(rows)), squeeze=False)
    for row, (name, label_map) in enumerate(rows):
        for column, (plane, take, aspect, flip_up) in enumerate(planes):
            axis = axes[row][column]
            origin = "lower" if flip_up else "upper"
            axis.imshow(take(image), cmap="gray", aspect=aspect, origin=origin, interpolation="nearest")
            if label_map is not None:
                axis.imshow(_rgba(take(np.asarray(label_map)), alpha), aspect=aspect, origin=origin,
                            interpolation="nearest")
            axis.set_title(f"{plane} ({name})")
            axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------------------------
# One 2D slice: outlines of the truth and the prediction, as PNG
# --------------------------------------------------------------------------------------------

def label_map(labels, shape, what, path):
    """Integer labels of the image's spatial shape (a trailing channel of 1 is dropped); None stays None.

    Raises:
        DataError: the shape differs, or the values are not whole numbers (naming `what` and `path`).
    """
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim == len(shape) + 1 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise DataError(path, f"{what} shape {arr.shape} differs from the image's spatial shape {tuple(shape)}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError(path, f"{what} must be a label map of whole numbers (take the argmax of "
                                  f"probabilities first), got non-integer values")
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(path, f"{what} must be an integer label map, got dtype {arr.dtype}")
    return arr


def display_image(image, spatial_ndim, channel, path):
    """The displayed channel of an image with `spatial_ndim` spatial axes, as finite float32.

    Raises:
        ConfigError: `channel` is out of range.
        DataError: the shape or dtype is not an image's, or it holds NaN or infinite values.
    """
    arr = np.asarray(image)
    if arr.ndim == spatial_ndim + 1:
        if not -arr.shape[-1] <= channel < arr.shape[-1]:
            raise ConfigError(f"channel {channel} is out of range for an image with {arr.shape[-1]} channels")
        arr = arr[..., channel]
    if arr.ndim != spatial_ndim:
        kind = "(D, H, W) or (D, H, W, C)" if spatial_ndim == 3 else "(H, W) or (H, W, C)"
        raise DataError(path, f"image must be {kind}, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise DataError(path, f"image must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise DataError(path, "image holds NaN or infinite values")
    return arr


def _outline(labels, shape):
    """Border pixels of the objects of a label map (also between two labels); all False for None."""
    from skimage.segmentation import find_boundaries

    if labels is None:
        return np.zeros(shape, bool)
    # "inner": the outline lies on the object's own border pixels, so one-pixel objects stay visible.
    return find_boundaries(labels, mode="inner")


def _zoom(arr, zoom):
    return arr if arr is None or zoom == 1 else np.repeat(np.repeat(arr, zoom, axis=0), zoom, axis=1)


def write_overlay_png(path, image, truth=None, prediction=None, channel=0, zoom=1):
    """Save a 2D image in gray with the outlines of the truth and the prediction drawn over it.

    Outlines are `skimage.segmentation.find_boundaries` of the label maps (object borders, and
    borders between classes): truth in green (`TRUTH_COLOUR`), prediction in red
    (`PREDICTION_COLOUR`), yellow where they coincide (`BOTH_COLOUR`). The gray levels are
    `window(image)` (its 0.5-99.5 percentile range), as in `three_plane_overlay`.

    Args:
        path: PNG file to write (atomically; its folder is created).
        image: `(H, W)` or `(H, W, C)` image (channel `channel` is shown).
        truth: optional `(H, W)` label map (bool, integers or whole-valued floats).
        prediction: optional `(H, W)` label map.
        channel: channel shown for a multi-channel image.
        zoom: integer upscaling (nearest neighbour) before drawing, for thin outlines on small images.

    Returns:
        `path`.

    Raises:
        DataError: shapes differ, labels are not whole numbers, or the image is not finite.

    Example:
        >>> import numpy as np, os, tempfile
        >>> mask = np.zeros((8, 8), np.uint8); mask[2:6, 2:6] = 1
        >>> out = write_overlay_png(os.path.join(tempfile.mkdtemp(), "a.png"), np.random.rand(8, 8), truth=mask)
        >>> from PIL import Image
        >>> Image.open(out).size
        (8, 8)
    """
    from PIL import Image

    if isinstance(zoom, bool) or not isinstance(zoom, int) or zoom < 1:
        raise ConfigError(f"zoom must be a positive integer, got {zoom!r}")
    path = os.fspath(path)
    gray = window(display_image(image, 2, channel, path))
    truth = label_map(truth, gray.shape, "truth", path)
    prediction = label_map(prediction, gray.shape, "prediction", path)
    if zoom > 1:
        gray, truth, prediction = _zoom(gray, zoom), _zoom(truth, zoom), _zoom(prediction, zoom)
    truth_edge = _outline(truth, gray.shape)
    prediction_edge = _outline(prediction, gray.shape)
    rgb = np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb[truth_edge] = TRUTH_COLOUR
    rgb[prediction_edge] = PREDICTION_COLOUR
    rgb[truth_edge & prediction_edge] = BOTH_COLOUR
    with atomic_path(path) as temporary:
        Image.fromarray(rgb, "RGB").save(temporary, format="PNG")
    return path


def write_overlay_pngs(folder, ids, images, truths=None, predictions=None, **options):
    """Write one outline PNG per case, `<folder>/<id>.png` (see `write_overlay_png`).

    Args:
        folder: output folder (created).
        ids: case ids; file names are `tfseg.utils.paths.output_path(folder, id, ".png")`'s.
        images: one `(H, W)` / `(H, W, C)` image per id (a list, a stacked array or a generator).
        truths: optional label maps, one per id.
        predictions: optional label maps, one per id.
        **options: passed to `write_overlay_png` (`channel`, `zoom`).

    Returns:
        The list of written paths, in the order of `ids`.

    Raises:
        ConfigError: two ids map to the same file name, or the lengths differ.

    Example:
        >>> import numpy as np, os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> paths = write_overlay_pngs(folder, ["a", "b"], np.random.rand(2, 8, 8), predictions=np.ones((2, 8, 8)))
        >>> sorted(os.listdir(folder))
        ['a.png', 'b.png']
    """
    ids = list(ids)
    names = [os.path.basename(output_path(folder, case_id, ".png")) for case_id in ids]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ConfigError(f"case ids map to the same file names {clashes[:5]}; make the ids unique")
    columns = [images] + [values for values in (truths, predictions) if values is not None]
    for values in columns:
        if hasattr(values, "__len__") and len(values) != len(ids):
            raise ConfigError(f"{len(ids)} ids but {len(values)} images, truths or predictions")
    truths = [None] * len(ids) if truths is None else truths
    predictions = [None] * len(ids) if predictions is None else predictions
    paths = []
    for name, image, truth, prediction in zip(names, images, truths, predictions):
        paths.append(write_overlay_png(os.path.join(os.fspath(folder), name), image, truth, prediction, **options))
    if len(paths) != len(ids):
        raise ConfigError(f"{len(ids)} ids but only {len(paths)} images, truths or predictions")
    logger.info("wrote %d overlay PNGs to %s", len(paths), folder)
    return paths
