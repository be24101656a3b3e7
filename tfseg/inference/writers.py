"""Write predictions to disk: one HDF5 file for a whole test set (PNG overlays: `tfseg.viz.overlays`).

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

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import atomic_path
from tfseg.utils.hdf5 import open_hdf5
from tfseg.utils.paths import safe_name

logger = logging.getLogger(__name__)

FORMAT = "predictions-v1"
FIELDS = ("prediction", "image", "truth", "probabilities")
COMPRESSIONS = ("gzip", "lzf", None)



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


def safe_file_name(case_id):
    """A file name for a case id (`tfseg.utils.paths.safe_name`): characters other than letters, digits,
    `.`, `_`, `-` become `_`; ids that try to leave the folder (`..`, absolute paths) are refused.

    Example:
        >>> safe_file_name("SC-HF-I-1/IM-0001 0048")
        'SC-HF-I-1_IM-0001_0048'
    """
    return safe_name(case_id)
