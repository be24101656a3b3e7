"""NIfTI-1/NIfTI-2 volumes in and out (nibabel), with the one axis convention of tfseg.

**Axis convention.** nibabel hands out arrays indexed `[i, j, k]` (`[i, j, k, t]` for 4D),
i.e. x fastest in the file, and an affine mapping voxel `(i, j, k)` to world RAS+ millimetres.
tfseg works channels last with the slice axis first, so in memory a volume is::

    memory[d, h, w]    == nifti[i=w, j=h, k=d]          (D = k/z, H = j/y, W = i/x)
    memory[d, h, w, c] == nifti[i=w, j=h, k=d, c]       (4D: the 4th NIfTI axis becomes channels)

that is `memory = nifti.transpose(2, 1, 0[, 3])`, and writing transposes back. The affine is
kept exactly as nibabel gives it (voxel `(i, j, k)` -> world RAS+ mm): the world position of
memory voxel `(d, h, w)` is `affine @ (w, h, d, 1)` (`Volume.world` does this). Spacings are
given in memory order, `(dz, dy, dx)`. For an axial scan in RAS orientation D runs inferior to
superior, H posterior to anterior and W left to right, so `memory[d]` is an axial slice.

Supported: single-file NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`) with 3 or 4 dimensions (a
trailing NIfTI dimension of size 1 counts: `(x, y, z, 1)` gives `(D, H, W, 1)`).

Resampling (`resample`) keeps the **field-of-view centre**: the new grid covers the same extent
(number of voxels times spacing, rounded to whole voxels) centred on the same world point, and
its affine maps every new voxel to the world point it was sampled from.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "label.nii.gz")
    >>> labels = np.zeros((4, 5, 6), np.uint8)   # (D, H, W)
    >>> labels[1, 2, 3] = 2
    >>> _ = write_nifti(path, labels, np.diag([0.5, 0.5, 2.0, 1.0]))
    >>> volume = read_nifti(path)
    >>> volume.shape, volume.array.dtype, volume.spacing, orientation(volume.affine)
    ((4, 5, 6), dtype('uint8'), (2.0, 0.5, 0.5), 'RAS')
    >>> int(volume.array[1, 2, 3]), volume.world((1, 2, 3)).tolist()
    (2, [1.5, 1.0, 2.0])
"""
import dataclasses
import logging
import math
import os

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt_lib
from scipy import ndimage

from tfseg.errors import ConfigError, DataError
from tfseg.io.limits import check_file_holds, check_volume_bytes
from tfseg.io.volume import Volume
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

SUFFIXES = (".nii", ".nii.gz")
_SUPPORTED = "supported: single-file NIfTI-1/NIfTI-2 (.nii, .nii.gz) with 3 or 4 dimensions"
_NIFTI_MAX_DIM = 32767  # NIfTI-1 stores dimensions as int16

__all__ = ["Volume", "read_nifti", "open_nifti", "write_nifti", "to_memory", "to_nifti", "orientation",
           "reorient", "restore_orientation", "Reorientation", "resample"]


def to_memory(nifti_array):
    """Map a NIfTI-ordered array `(i, j, k[, c])` to the memory layout `(D, H, W[, C])`."""
    axes = (2, 1, 0) + tuple(range(3, nifti_array.ndim))
    return np.ascontiguousarray(np.transpose(nifti_array, axes))


def to_nifti(memory_array):
    """Map a memory-layout array `(D, H, W[, C])` to NIfTI order `(i, j, k[, c])` (a view)."""
    axes = (2, 1, 0) + tuple(range(3, memory_array.ndim))
    return np.transpose(memory_array, axes)


def read_nifti(path, dtype=None):
    """Read a 3D or 4D NIfTI file into the memory layout `(D, H, W[, C])` with its affine.

    Args:
        path: a `.nii` or `.nii.gz` file (NIfTI-1 or NIfTI-2).
        dtype: the array dtype wanted, or None for nibabel's: the stored type (integer label
            volumes stay integer) when scl_slope/scl_inter are absent or identity, else the
            scaled floating type nibabel returns. A floating dtype goes through `get_fdata`.

    Returns:
        A `Volume` with the array in native byte order, nibabel's affine and header, and `path`.

    Raises:
        DataError: the file is missing, not NIfTI, corrupt or truncated, or has a number of
            dimensions other than 3 or 4.

    Example:
        >>> from pathlib import Path
        >>> import nibabel
        >>> volume = read_nifti(Path(nibabel.__file__).parent / "tests/data/example4d.nii.gz")
        >>> volume.shape, volume.array.dtype
        ((24, 96, 128, 2), dtype('int16'))
    """
    img = _load(path)
    ndim = len(img.shape)
    if ndim not in (3, 4):
        raise DataError(path, f"has {ndim} dimensions {tuple(img.shape)}; {_SUPPORTED}")
    _check_claimed_size(path, img, dtype)
    try:
        if dtype is not None and np.dtype(dtype).kind == "f":
            data = img.get_fdata(dtype=np.dtype(dtype))
        else:
            data = np.asanyarray(img.dataobj)
            if dtype is not None:
                data = data.astype(dtype)
        if data.dtype.byteorder not in ("=", "|"):
            data = data.astype(data.dtype.newbyteorder("="))
        array = to_memory(data)
    except Exception as exc:  # nibabel and numpy raise many types on damaged data
        raise DataError(path, f"cannot read the voxel data, the file is truncated or corrupt "
                              f"({_describe(exc)})") from None
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(path, f"the affine is not a valid voxel-to-world transform:\n{affine}")
    return Volume(array, affine, header=img.header, path=str(path))


def _describe(exc):
    """`Type: message` on one line, at most about 200 characters."""
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_claimed_size(path, img, dtype):
    """Refuse, before any allocation, a volume larger than the limit or than its file can hold."""
    header = img.header
    shape = tuple(int(d) for d in header.get_data_shape())
    if any(d <= 0 for d in shape):
        raise DataError(path, f"the header gives a zero or negative dimension {shape}")
    disk = header.get_data_dtype()
    if disk.fields is not None and dtype is not None and np.dtype(dtype).fields is None:
        raise DataError(path, f"holds {disk} (colour) voxels, which cannot be read as {np.dtype(dtype)}; "
                              f"read with dtype=None")
    voxels = math.prod(shape)
    slope, inter = header.get_slope_inter()
    scaled = (slope is not None and slope != 1) or (inter is not None and inter != 0)
    if dtype is not None:
        out = np.dtype(dtype).itemsize
    else:
        out = 8 if scaled else disk.itemsize
    check_volume_bytes(path, voxels * max(out, disk.itemsize))
    check_file_holds(path, int(header.get_data_offset()) + voxels * disk.itemsize)


def open_nifti(path):
    """The nibabel image of a NIfTI file with its header read and its voxels not (a lazy proxy).

    For cheap scans of many files: `image.shape`, `image.affine` and `image.header` cost a header
    read; `np.asarray(image.dataobj)` reads the voxels (NIfTI axis order, not tfseg's memory order).

    Raises:
        DataError: the file is missing, a folder, not NIfTI, or its header is unreadable.

    Example:
        >>> from pathlib import Path
        >>> import nibabel
        >>> open_nifti(Path(nibabel.__file__).parent / "tests/data/example4d.nii.gz").shape
        (128, 96, 24, 2)
    """
    return _load(path)


def _load(path):
    """nibabel's single-file NIfTI image for `path`, or a DataError saying why not."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DataError(path, "file not found")
    if os.path.isdir(name):
        raise DataError(path, "is a folder, not a NIfTI file")
    if not name.lower().endswith(SUFFIXES):
        raise DataError(path, f"not a NIfTI file name; {_SUPPORTED}")
    try:
        img = nib.load(name)
    except nib.filebasedimages.ImageFileError as exc:
        raise DataError(path, f"not a NIfTI file nibabel can read ({_describe(exc)}); {_SUPPORTED}") from None
    except Exception as exc:  # nibabel raises many types (HeaderDataError, OSError, zlib.error...)
        raise DataError(path, f"cannot read the header, the file is truncated or corrupt "
                              f"({_describe(exc)})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(path, f"is a {type(img).__name__}, not a NIfTI volume; {_SUPPORTED}")
    return img


def write_nifti(path, array, affine, header=None, dtype=None):
    """Write a memory-layout array `(D, H, W[, C])` as a NIfTI file, atomically.

    The array is transposed back to NIfTI order. qform and sform are both set to `affine`;
    their codes are taken from `header` when it has non-zero ones (a zero code is replaced by the
    other one), else both are 1 (scanner). Other header fields (descriptions, units, TR in
    pixdim[4]) are kept from `header`; the data type is `dtype`, else the array's own, with
    three adjustments nibabel needs: bool -> uint8, int64/uint64 -> int32 (values checked) and
    float16 -> float32. A NIfTI-2 header, or a dimension above 32767, gives a NIfTI-2 file.

    Args:
        path: destination ending in `.nii` (uncompressed) or `.nii.gz` (gzip).
        array: `(D, H, W)` or `(D, H, W, C)` numpy array.
        affine: 4x4 voxel `(i, j, k)` -> world RAS+ mm.
        header: optional nibabel NIfTI header to take codes and descriptive fields from.
        dtype: optional on-disk data type; the array is cast to it (integer types must hold
            its values; no scaling is stored).

    Returns:
        `path`, as given.

    Raises:
        ConfigError: bad suffix, array rank, affine or dtype.
        DataError: the file cannot be written.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "image.nii")
        >>> _ = write_nifti(path, np.ones((2, 3, 4), np.float32), np.eye(4))
        >>> read_nifti(path).shape
        (2, 3, 4)
    """
    name = os.fspath(path)
    if not name.endswith(SUFFIXES):
        raise ConfigError(f"a NIfTI path must end in .nii or .nii.gz, got {name!r}")
    array = np.asarray(array)
    if array.ndim not in (3, 4) or array.size == 0:
        raise ConfigError(f"array must be a non-empty (D, H, W) or (D, H, W, C) array, "
                          f"got shape {array.shape}")
    affine = _check_affine(affine)
    array, dtype = _disk_dtype(array, dtype)
    data = to_nifti(array)
    nifti2 = isinstance(header, nib.Nifti2Header) or max(data.shape) > _NIFTI_MAX_DIM
    image_class = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    if header is not None and not isinstance(header, nib.Nifti1Header):
        raise ConfigError(f"header must be a nibabel NIfTI header, got {type(header).__name__}")
    if header is not None and nifti2 and not isinstance(header, nib.Nifti2Header):
        header = nib.Nifti2Header.from_header(header)
    img = image_class(data, affine, header=header, dtype=dtype)
    img.set_data_dtype(dtype)
    qcode, scode = _codes(header)
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    if header is not None:
        img.header.set_slope_inter(np.nan, np.nan)  # no stale scaling from the source file
    try:
        with atomic_path(name) as tmp:
            nib.save(img, tmp)
    except OSError as exc:
        raise DataError(path, f"cannot write: {exc.strerror or exc}") from None
    logger.debug("wrote %s %s %s", name, array.shape, dtype)
    return path


def _check_affine(affine):
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ConfigError(f"affine must be a finite 4x4 matrix, got {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ConfigError(f"affine is singular:\n{affine}")
    return affine


def _disk_dtype(array, dtype):
    """The array (converted if needed) and the on-disk dtype for write_nifti."""
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind not in "iufc" or dtype == np.float16 or array.dtype.kind not in "biufc":
            raise ConfigError(f"cannot store {array.dtype} values as {dtype} in NIfTI; use e.g. "
                              f"uint8, int16, int32 or float32")
        if dtype.kind in "iu" and array.size and array.dtype.kind != "b":
            info = np.iinfo(dtype)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise ConfigError(f"values from {low} to {high} do not fit dtype {dtype}")
        return array.astype(dtype.newbyteorder("=")), dtype.newbyteorder("=")
    if array.dtype.kind == "b":
        return array.astype(np.uint8), np.dtype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32), np.dtype(np.float32)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ConfigError(f"{array.dtype} values outside the int32 range; pass dtype "
                              f"explicitly (e.g. dtype=np.int64 or np.float64)")
        return array.astype(np.int32), np.dtype(np.int32)
    if array.dtype.kind not in "iufc":
        raise ConfigError(f"cannot store an array of dtype {array.dtype} in NIfTI")
    return array, array.dtype.newbyteorder("=")


def _codes(header):
    """(qform_code, sform_code) for a written file: the header's non-zero ones, else scanner (1)."""
    if header is None:
        return 1, 1
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    qcode = qcode or scode or 1
    scode = scode or qcode
    return qcode, scode


def orientation(affine):
    """The axis codes of a NIfTI affine, e.g. "RAS" or "LPS" (nibabel's aff2axcodes).

    The letters are for NIfTI axes i, j, k, i.e. memory axes W, H, D: "RAS" means W runs to the
    right, H to anterior, D to superior.

    Example:
        >>> orientation(np.diag([-1.0, -1.0, 1.0, 1.0]))
        'LPS'
    """
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


@dataclasses.dataclass(frozen=True)
class Reorientation:
    """What `reorient` did, so `restore_orientation` can put an array back on the original grid.

    Attributes:
        inverse: nibabel orientation array mapping the reoriented NIfTI axes to the original ones.
        shape: the reoriented spatial shape in memory order `(D, H, W)`.
        source: the original orientation code, e.g. "LPS".
        target: the reoriented orientation code, e.g. "RAS".
    """

    inverse: np.ndarray
    shape: tuple
    source: str
    target: str


def reorient(volume, target="RAS"):
    """Flip/permute a volume's axes so its orientation is the closest to `target`.

    Only whole-axis flips and permutations (no interpolation): values are unchanged and the new
    affine places every voxel at the same world point. For an oblique affine the result is the
    permutation closest to `target` (nibabel's io_orientation).

    Args:
        volume: a `Volume`.
        target: three axis codes, e.g. "RAS" (nibabel's canonical) or "LPS".

    Returns:
        `(reoriented_volume, undo)` where `undo` is a `Reorientation` for `restore_orientation`.

    Raises:
        ConfigError: `target` is not a valid orientation code.

    Example:
        >>> lps = Volume(np.arange(24).reshape(2, 3, 4), np.diag([-1.0, -1.0, 1.0, 1.0]))
        >>> ras, undo = reorient(lps)
        >>> orientation(ras.affine), ras.array[0, 0, 0]
        ('RAS', np.int64(11))
        >>> bool(np.array_equal(restore_orientation(ras.array, undo), lps.array))
        True
    """
    target_ornt = _target_ornt(target)
    data = to_nifti(volume.array)
    source_ornt = ornt_lib.io_orientation(volume.affine)
    transform = ornt_lib.ornt_transform(source_ornt, target_ornt)
    moved = ornt_lib.apply_orientation(data, transform)
    affine = volume.affine @ ornt_lib.inv_ornt_aff(transform, data.shape[:3])
    undo = Reorientation(inverse=ornt_lib.ornt_transform(target_ornt, source_ornt),
                         shape=tuple(moved.shape[:3][::-1]),
                         source=orientation(volume.affine), target=orientation(affine))
    result = Volume(to_memory(moved), affine, header=volume.header, path=volume.path,
                    meta=dict(volume.meta))
    return result, undo


def _target_ornt(target):
    codes = tuple(str(target).upper())
    try:
        ornt = ornt_lib.axcodes2ornt(codes)
    except Exception:
        ornt = None
    if len(codes) != 3 or ornt is None or np.isnan(ornt).any():
        raise ConfigError(f"target must be three axis codes with one of L/R, A/P, S/I each, "
                          f"e.g. 'RAS' or 'LPS', got {target!r}")
    return ornt


def restore_orientation(array, undo):
    """Map an array on the reoriented grid back onto the original voxel grid.

    Args:
        array: `(D, H, W)` or `(D, H, W, C)` in the reoriented memory layout (e.g. a prediction
            made on the output of `reorient`).
        undo: the `Reorientation` returned by `reorient`.

    Returns:
        The array in the original memory layout; saved with the original affine it covers the
        same world points.

    Raises:
        ConfigError: the array's spatial shape is not the reoriented one.
    """
    array = np.asarray(array)
    if tuple(array.shape[:3]) != tuple(undo.shape):
        raise ConfigError(f"array of spatial shape {array.shape[:3]} does not match the "
                          f"reoriented grid {tuple(undo.shape)}")
    return to_memory(ornt_lib.apply_orientation(to_nifti(array), undo.inverse))


def resample(volume, spacing, order=1, mode="nearest", cval=0.0):
    """Resample a volume to a new voxel spacing, keeping its field-of-view centre in place.

    The new grid has `round(n * old / new)` voxels per axis (at least 1), centred on the same
    world point as the old grid; the new affine has the same directions, the new spacing, and
    maps each new voxel to the world point it was sampled from. Interpolation is scipy's
    `ndimage.affine_transform` (spline of the given order), channel by channel.

    Args:
        volume: a `Volume`, `(D, H, W)` or `(D, H, W, C)`.
        spacing: target spacing in mm in memory order `(dz, dy, dx)`, or one number (isotropic).
        order: spline order, 1 (linear, images) by default; 0 (nearest) for labels, which keeps
            the exact values and the dtype.
        mode: how points outside the input are filled (scipy's modes); "nearest" repeats the
            edge voxels, which the half-voxel margins of the new grid may touch.
        cval: the fill value for mode="constant"/"grid-constant".

    Returns:
        A new `Volume`. With `order=0` the dtype is kept; with a higher order integer input
        gives float32 and floating input keeps its dtype.

    Raises:
        ConfigError: bad spacing or order.

    Example:
        >>> volume = Volume(np.ones((10, 10, 10), np.float32), np.eye(4))
        >>> coarse = resample(volume, 2.0)
        >>> coarse.shape, coarse.spacing
        ((5, 5, 5), (2.0, 2.0, 2.0))
        >>> coarse.world((2, 2, 2)).tolist()   # the centre of the field of view stays at 4.5 mm
        [4.5, 4.5, 4.5]
    """
    new_spacing = _check_spacing(spacing)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 5:
        raise ConfigError(f"order must be an integer from 0 to 5, got {order!r}")
    old_spacing = np.array(volume.spacing)
    old_shape = np.array(volume.spatial_shape)
    new_shape = np.maximum(1, np.round(old_shape * old_spacing / new_spacing)).astype(int)
    scale = new_spacing / old_spacing  # old index per new index, memory order
    offset = (old_shape - 1) / 2.0 - scale * (new_shape - 1) / 2.0
    # new voxel v (memory) samples old continuous index scale * v + offset.
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(scale[::-1])
    index_map[:3, 3] = offset[::-1]
    affine = volume.affine @ index_map

    source = np.asarray(volume.array)
    if order == 0 or source.dtype.kind == "f":
        out_dtype = source.dtype
    else:
        out_dtype = np.float32
    channels = [source] if source.ndim == 3 else [source[..., c] for c in range(source.shape[3])]
    outputs = []
    for channel in channels:
        work = channel if order == 0 or channel.dtype == out_dtype else channel.astype(out_dtype)
        outputs.append(ndimage.affine_transform(work, scale, offset=offset,
                                                output_shape=tuple(new_shape), order=order,
                                                mode=mode, cval=cval, output=out_dtype))
    array = outputs[0] if source.ndim == 3 else np.stack(outputs, axis=-1)
    logger.debug("resampled %s at %s mm to %s at %s mm", tuple(old_shape), tuple(old_spacing),
                 tuple(new_shape), tuple(new_spacing))
    return Volume(array, affine, header=volume.header, path=volume.path, meta=dict(volume.meta))


def _check_spacing(spacing):
    """Target spacing as a (3,) float array in memory order, else ConfigError."""
    try:
        values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"spacing must be one number or three (dz, dy, dx), got {spacing!r}"
                          ) from None
    if values.ndim != 1 or values.size not in (1, 3):
        raise ConfigError(f"spacing must be one number or three (dz, dy, dx), got {spacing!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"spacing must be positive, got {spacing!r}")
    return np.broadcast_to(values, (3,)).astype(np.float64)
