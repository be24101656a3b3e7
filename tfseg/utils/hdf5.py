"""Opening HDF5 files for reading with a clear error naming the file.

Example:
    >>> import tempfile
    >>> open_hdf5(tempfile.mkdtemp() + "/missing.h5")
    Traceback (most recent call last):
    ...
    tfseg.errors.DataError: .../missing.h5: file not found
"""
import os

from tfseg.errors import DataError


def open_hdf5(path, what="file"):
    """`h5py.File(path, "r")`, or `DataError(path, ...)` when it is missing or not HDF5.

    Args:
        path: the file.
        what: how the file is named in the "not found" message (e.g. "predictions file").

    Returns:
        An open `h5py.File` (use it as a context manager).
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, f"{what} not found")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataError(path, f"not a readable HDF5 file ({error})") from None
