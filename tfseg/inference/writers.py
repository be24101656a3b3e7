"""Write predictions to disk: one HDF5 file for a whole test set, or PNG outlines per case.

HDF5 layout (one group per case, so cases may differ in shape)::

    /ids                      UTF-8 strings, the case ids in order
    /cases/0/prediction       the predicted label map of ids[0] (any shape and dtype)
    /cases/0/image            optional: the input
    /cases/0/truth            optional: the ground truth
    /cases/0/probabilities    optional: per-class probabilities
    /cases/1/...
    attributes of /           `tfseg_format = "predictions-v1"`, `num_cases`, plus the caller's `attrs`

Groups are named by position rather than by id so any string is a valid id (ids with `/` or `.`
cannot be HDF5 names); each group also carries its id in the attribute `id`. Ids are stored as
text: integer ids come back as strings. The file is written under a temporary name and renamed
into place at the end, so an exception half-way leaves no file (or the previous one untouched).

Example:
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "predictions.h5")
    >>> _ = write_predictions_hdf5(path, ["BraTS20_001", "BraTS20_002"], [np.ones((2, 3), np.uint8)] * 2)
    >>> cases = read_predictions_hdf5(path)
    >>> list(cases), cases["BraTS20_002"]["prediction"].shape
    (['BraTS20_001', 'BraTS20_002'], (2, 3))
"""
import logging
import os
import re

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import atomic_path
from tfseg.utils.hdf5 import open_hdf5
from tfseg.utils.paths import output_path, safe_name

logger = logging.getLogger(__name__)

FORMAT = "predictions-v1"
FIELDS = ("prediction", "image", "truth", "probabilities")
COMPRESSIONS = ("gzip", "lzf", None)

#: Outline colours of `write_overlay_png`: truth, prediction, and where the two outlines coincide.
TRUTH_COLOUR = (0, 220, 0)
PREDICTION_COLOUR = (255, 40, 40)
BOTH_COLOUR = (255, 230, 0)


# --------------------------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------------------------

def _case_array(value, field, case_id, path):
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(path, f"{field} of case {case_id!r} is not a numeric array (dtype {arr.dtype})")
    return arr


def _write_attrs(target, attrs, where):
    for key, value in (attrs or {}).items():
        try:
            target.attrs[str(key)] = value
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where} attribute {key!r} cannot be stored in HDF5 ({error}); "
                              f"use numbers, strings or lists of them") from None


def write_predictions_hdf5(path, ids, predictions, images=None, truths=None, probabilities=None, attrs=None,
                           compression="gzip"):
    """Write the predictions of a test set (and optionally inputs, truths, probabilities) to one HDF5 file.

    Cases are written one at a time, so `predictions` (and the others) may be generators that
    never hold the whole test set in memory.

    Args:
        path: the `.h5` file to write (atomically; its folder is created).
        ids: the case ids (unique; stored as UTF-8 text).
        predictions: one array per id (label maps, any shape), or a stacked array `(N, ...)`.
        images, truths, probabilities: optional, one array per id each, the same way.
        attrs: optional dict of file attributes (numbers, strings, lists), e.g. the model name.
        compression: "gzip" (default), "lzf" or None.

    Returns:
        `path`.

    Raises:
        ConfigError: duplicate ids, an unknown compression, lengths that differ, or an attribute
            HDF5 cannot store.
        DataError: a value is not a numeric array (the file is then not written).

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "p.h5")
        >>> _ = write_predictions_hdf5(path, ["a"], np.zeros((1, 4, 4), np.uint8), attrs={"model": "unet"})
        >>> read_predictions_hdf5(path, with_attrs=True)[1]["model"]
        'unet'
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    ids = [str(case_id) for case_id in ids]
    duplicates = sorted({case_id for case_id in ids if ids.count(case_id) > 1})
    if duplicates:
        raise ConfigError(f"case ids must be unique; repeated: {duplicates[:5]}")
    columns = {"prediction": predictions, "image": images, "truth": truths, "probabilities": probabilities}
    columns = {field: values for field, values in columns.items() if values is not None}
    for field, values in columns.items():
        if hasattr(values, "__len__") and len(values) != len(ids):
            raise ConfigError(f"{len(ids)} ids but {len(values)} {field} values")
    path = os.fspath(path)
    iterators = {field: iter(values) for field, values in columns.items()}
    string = h5py.string_dtype("utf-8")
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            handle.attrs["tfseg_format"] = FORMAT
            handle.attrs["num_cases"] = len(ids)
            _write_attrs(handle, attrs, "file")
            handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
            cases = handle.create_group("cases")
            for index, case_id in enumerate(ids):
                group = cases.create_group(str(index))
                group.attrs["id"] = case_id
                for field, iterator in iterators.items():
                    try:
                        value = next(iterator)
                    except StopIteration:
                        raise ConfigError(f"{len(ids)} ids but only {index} {field} values") from None
                    arr = _case_array(value, field, case_id, path)
                    compress = compression if arr.ndim and arr.size else None
                    group.create_dataset(field, data=arr, compression=compress)
            for field, iterator in iterators.items():
                if next(iterator, None) is not None:
                    raise ConfigError(f"{len(ids)} ids but more {field} values")
    logger.info("wrote %d predicted cases to %s", len(ids), path)
    return path


def read_predictions_hdf5(path, with_attrs=False):
    """Read a file written by `write_predictions_hdf5`.

    Args:
        path: the `.h5` file.
        with_attrs: also return the file attributes.

    Returns:
        A dict id -> {"prediction": array, and "image", "truth", "probabilities" where stored},
        in the order written; with `with_attrs`, a pair `(cases, attrs)` where `attrs` is a dict
        (including `tfseg_format` and `num_cases`).

    Raises:
        DataError: the file is missing, not HDF5, or not laid out as above.

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "p.h5")
        >>> _ = write_predictions_hdf5(path, [7], [np.eye(2)], truths=[np.eye(2)])
        >>> sorted(read_predictions_hdf5(path)["7"])
        ['prediction', 'truth']
    """
    path = os.fspath(path)
    with open_hdf5(path, "predictions file") as handle:
        if handle.attrs.get("tfseg_format") != FORMAT or "ids" not in handle or "cases" not in handle:
            raise DataError(path, f"not a tfseg predictions file (expected attribute tfseg_format={FORMAT!r}, "
                                  f"datasets 'ids' and 'cases')")
        ids = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in handle["ids"][()]]
        cases = {}
        for index, case_id in enumerate(ids):
            group = handle["cases"].get(str(index))
            if group is None or "prediction" not in group:
                raise DataError(path, f"case {case_id!r} (group /cases/{index}) has no prediction")
            cases[case_id] = {field: group[field][()] for field in FIELDS if field in group}
        attrs = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in handle.attrs.items()}
    return (cases, attrs) if with_attrs else cases


# --------------------------------------------------------------------------------------------
# PNG outlines
# --------------------------------------------------------------------------------------------

def _gray_image(image, channel, path):
    arr = np.asarray(image)
    if arr.ndim == 3:
        if not -arr.shape[-1] <= channel < arr.shape[-1]:
            raise ConfigError(f"channel {channel} is out of range for an image with {arr.shape[-1]} channels")
        arr = arr[..., channel]
    if arr.ndim != 2:
        raise DataError(path, f"image must be (H, W) or (H, W, C), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(path, f"image must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(path, "image holds NaN or infinite values")
    low, high = np.percentile(arr, (0.5, 99.5)) if arr.size else (0.0, 1.0)
    return np.clip((arr - low) / max(high - low, 1e-6), 0, 1)


def _label_map(labels, shape, what, path):
    """Validated integer label map of the image's shape, or None."""
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise DataError(path, f"{what} shape {arr.shape} differs from the image shape {shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(path, f"{what} must be a label map, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise DataError(path, f"{what} must be a label map of whole numbers (threshold or argmax first)")
    return arr.astype(np.int64)


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
    (`PREDICTION_COLOUR`), yellow where they coincide (`BOTH_COLOUR`). The gray window is the
    0.5-99.5 percentile range of the image.

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
    gray = _gray_image(image, channel, path)
    truth = _label_map(truth, gray.shape, "truth", path)
    prediction = _label_map(prediction, gray.shape, "prediction", path)
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


def safe_file_name(case_id):
    """A file name for a case id (`tfseg.utils.paths.safe_name`): characters other than letters, digits,
    `.`, `_`, `-` become `_`; ids that try to leave the folder (`..`, absolute paths) are refused.

    Example:
        >>> safe_file_name("SC-HF-I-1/IM-0001 0048")
        'SC-HF-I-1_IM-0001_0048'
    """
    return safe_name(case_id)


def write_overlay_pngs(folder, ids, images, truths=None, predictions=None, **options):
    """Write one outline PNG per case, `<folder>/<id>.png` (see `write_overlay_png`).

    Args:
        folder: output folder (created).
        ids: case ids; file names are `safe_file_name(id) + ".png"`.
        images: one `(H, W)` / `(H, W, C)` image per id (a list, a stacked array or a generator).
        truths: optional label maps, one per id.
        predictions: optional label maps, one per id.
        **options: passed to `write_overlay_png` (`channel`, `zoom`).

    Returns:
        The list of written paths, in the order of `ids`.

    Raises:
        ConfigError: two ids map to the same file name, or the lengths differ.
        DataError: an id is not usable as a file name (`..`, an absolute path; see
            `tfseg.utils.paths`); nothing is written then.

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
