"""DICOM series to NIfTI, optionally resampled to a given spacing (linear for images, nearest
neighbour for labels), the data conversion step of the 3D workflows.

`convert_dicom_series` is the library call; `add_convert_arguments` and `run_convert` give the
same thing a command line (`tools/dicom2nifti.py`, `tfseg convert`). On the command line the
spacing is given as X Y Z (NIfTI order, as viewers and `fslinfo` show it); in the library it is
in tfseg's memory order `(dz, dy, dx)`, like `tfseg.io.nifti.resample`.

Example:
    >>> import os, pathlib, tempfile
    >>> import numpy as np
    >>> from tfseg.io.dicom import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(4):
    ...     _ = write_image(folder / "dcm" / f"{k}.dcm", np.full((8, 8), k, np.int16),
    ...                     series_instance_uid="1.2.3", image_position=(0, 0, 2.0 * k))
    >>> out = convert_dicom_series(folder / "dcm", folder / "image.nii.gz", spacing=(1, 1, 1))
    >>> from tfseg.io.nifti import read_nifti
    >>> read_nifti(out).shape
    (8, 8, 8)
"""
import argparse
import logging

from tfseg.errors import ConfigError
from tfseg.io.dicom import read_series
from tfseg.io.nifti import resample, write_nifti

logger = logging.getLogger(__name__)


def convert_dicom_series(src, dst, spacing=None, label=False, series_instance_uid=None,
                         on_error="raise"):
    """Read a DICOM series, optionally resample it, and write it as a NIfTI file (atomically).

    Args:
        src: a folder (searched recursively) or a list of DICOM files.
        dst: the output `.nii` or `.nii.gz` file.
        spacing: None to keep the acquired grid, else the target spacing in mm in memory order
            `(dz, dy, dx)` or one number for isotropic voxels.
        label: the series is a label map: resample with nearest neighbour (values and integer
            type kept) instead of linear interpolation.
        series_instance_uid: which series to convert when `src` holds several.
        on_error: "raise" or "skip" for bad single files (see `read_series`).

    Returns:
        `dst`, as given.

    Raises:
        DataError: the series cannot be read (see `read_series`) or the file cannot be written.
        ConfigError: bad spacing or output suffix.
    """
    volume = read_series(src, series_instance_uid=series_instance_uid, on_error=on_error)
    before = volume.spacing
    if spacing is not None:
        volume = resample(volume, spacing, order=0 if label else 1)
    write_nifti(dst, volume.array, volume.affine)
    logger.info("%s -> %s: %s %s, spacing %s mm (was %s)", src, dst, volume.shape,
                volume.array.dtype, _mm(volume.spacing), _mm(before))
    return dst


def _mm(spacing):
    return "x".join(f"{v:.4g}" for v in spacing)


def add_convert_arguments(parser):
    """Add the DICOM-to-NIfTI arguments (SRC DST --spacing --label --series --on-error).

    Args:
        parser: an `argparse.ArgumentParser` (or a subparser).

    Returns:
        The parser.
    """
    parser.add_argument("src", metavar="SRC", help="folder of DICOM files (searched recursively)")
    parser.add_argument("dst", metavar="DST", help="output NIfTI file (.nii or .nii.gz)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM", default=None,
                        help="resample to this spacing in mm: X Y Z (NIfTI order) or one value "
                             "for isotropic voxels; default: keep the acquired grid")
    parser.add_argument("--label", action="store_true",
                        help="the series is a label map: nearest-neighbour resampling, values kept")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to convert when SRC holds several series")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="bad single files: stop (raise, default) or warn and skip them")
    return parser


def run_convert(args):
    """Run a conversion from parsed `add_convert_arguments` arguments.

    Args:
        args: an `argparse.Namespace` with src, dst, spacing (X Y Z or one value), label,
            series and on_error.

    Returns:
        The output path.

    Raises:
        ConfigError: --spacing has a number of values other than 1 or 3.
        DataError: as `convert_dicom_series`.
    """
    spacing = args.spacing
    if spacing is not None:
        if len(spacing) not in (1, 3):
            raise ConfigError(f"--spacing takes one value or three (X Y Z), got {spacing}")
        spacing = spacing[0] if len(spacing) == 1 else tuple(spacing[::-1])  # X Y Z -> dz dy dx
    return convert_dicom_series(args.src, args.dst, spacing=spacing, label=args.label,
                                series_instance_uid=args.series, on_error=args.on_error)


def build_parser(prog=None):
    """A stand-alone parser for the conversion (used by tools/dicom2nifti.py)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Convert a DICOM series to NIfTI, optionally resampled "
                               "(linear for images, nearest neighbour with --label).")
    return add_convert_arguments(parser)
