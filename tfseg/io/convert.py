"""DICOM series to NIfTI, optionally resampled to a given spacing (linear for images, nearest
neighbour for labels), the data conversion step of the 3D workflows.

`convert_dicom_series` is the library call; `add_convert_arguments` and `run_convert` give the
same thing a command line (`tools/dicom2nifti.py`, `tfseg convert`). On the command line the
spacing is given as X Y Z (NIfTI order, as viewers and `fslinfo` show it); in the library it is
in tfseg's memory order `(dz, dy, dx)`, like `tfseg.io.nifti.resample`.

With an RT structure set (`rtstruct=`, `--rtstruct`), its ROIs are rasterized on the series
(`tfseg.io.rtstruct`) and written beside the image on the same grid: one mask per ROI
(`out_Heart.nii.gz`), or with `label_map`/`--label-map` one label map (`out_labels.nii.gz`, the
ROIs numbered 1, 2, ... in the order given) and its names (`out_labels.json`).

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
import re
from pathlib import Path

from tfseg.errors import ConfigError
from tfseg.io.dicom import read_series
from tfseg.io.nifti import resample, write_nifti
from tfseg.io.volume import Volume
from tfseg.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)


def convert_dicom_series(src, dst, spacing=None, label=False, series_instance_uid=None,
                         on_error="raise", rtstruct=None, rois=None, label_map=False):
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
        rtstruct: an RT structure set on this series, whose ROIs to write beside the image; the
            series it refers to is the one converted when `src` holds several.
        rois: the ROI names (case-insensitive) or numbers to write; default every ROI with
            contours.
        label_map: write the ROIs as one label map (1, 2, ... in the order of `rois`; where they
            overlap the later one wins) instead of one mask each.

    Returns:
        `dst`, as given; with `rtstruct`, the list `[dst, mask or label map files...]`.

    Raises:
        DataError: the series or structure set cannot be read (see `read_series`,
            `tfseg.io.rtstruct.rasterize_roi`) or a file cannot be written.
        ConfigError: bad spacing or output suffix.
    """
    if rtstruct is not None and series_instance_uid is None:
        series_instance_uid = _referenced_series(src, rtstruct)
    volume = read_series(src, series_instance_uid=series_instance_uid, on_error=on_error)
    extra = {} if rtstruct is None else _roi_arrays(rtstruct, volume, dst, rois, label_map)
    before, acquired = volume.spacing, volume.affine
    if spacing is not None:
        volume = resample(volume, spacing, order=0 if label else 1)
    write_nifti(dst, volume.array, volume.affine)
    logger.info("%s -> %s: %s %s, spacing %s mm (was %s)", src, dst, volume.shape,
                volume.array.dtype, _mm(volume.spacing), _mm(before))
    if rtstruct is None:
        return dst
    written = [dst]
    for path, (array, names) in extra.items():
        if spacing is not None:  # nearest neighbour: the masks stay masks, on the image's grid
            array = resample(Volume(array, acquired), spacing, order=0).array
        write_nifti(path, array, volume.affine)
        if names is not None:
            atomic_write_json(_stem(path) + ".json", names)
        logger.info("%s -> %s", rtstruct, path)
        written.append(path)
    return written


def _stem(path):
    """`path` without its .nii or .nii.gz suffix, as a str."""
    text = str(path)
    for suffix in (".nii.gz", ".nii"):
        if text.endswith(suffix):
            return text[:-len(suffix)]
    return text


def _referenced_series(src, rtstruct):
    """The SeriesInstanceUID of `src` the structure set refers to, or None (read_series picks)."""
    from tfseg.io.dicom import list_series
    from tfseg.io.rtstruct import referenced_series_uids

    present = {s.series_instance_uid for s in list_series(src)}
    chosen = [uid for uid in referenced_series_uids(rtstruct) if uid in present]
    return chosen[0] if chosen else None


def _roi_arrays(rtstruct, volume, dst, rois, label_map):
    """{output path: (uint8 array, names or None)} for the ROIs to write beside `dst`."""
    from tfseg.io.dicom_series import as_dicom_series
    from tfseg.io.rtstruct import find_roi, list_rois, rasterize_roi, rasterize_rois, read_rtstruct

    rtstruct, series = read_rtstruct(rtstruct), as_dicom_series(volume)
    if rois:
        chosen = [find_roi(rtstruct, roi) for roi in rois]
    else:
        chosen = [roi for roi in list_rois(rtstruct) if roi.contour_count]
        if not chosen:
            raise ConfigError(f"{rtstruct.filename}: no ROI with contours to write")
    stem = _stem(dst)
    suffix = ".nii.gz" if str(dst).endswith(".nii.gz") else ".nii"
    if label_map:
        classes = {roi.number: index for index, roi in enumerate(chosen, start=1)}
        labels = rasterize_rois(rtstruct, series, classes)
        names = {str(index): roi.name for index, roi in enumerate(chosen, start=1)}
        return {Path(f"{stem}_labels{suffix}"): (labels, names)}
    out = {}
    for roi in chosen:
        path = Path(f"{stem}_{_file_safe(roi.name)}{suffix}")
        if path in out:
            path = Path(f"{stem}_{_file_safe(roi.name)}_{roi.number}{suffix}")
        out[path] = (rasterize_roi(rtstruct, roi, series).astype("uint8"), None)
    return out


def _file_safe(name):
    """A ROI name as a file name part: letters, digits, '-', '.', '_' kept, the rest '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("_") or "roi"


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
    parser.add_argument("--rtstruct", metavar="FILE", default=None,
                        help="RT structure set on this series: write its ROIs beside DST "
                             "(DST_<ROI>.nii.gz), on the same grid")
    parser.add_argument("--roi", action="append", metavar="NAME", default=None,
                        help="with --rtstruct: a ROI to write (name, case-insensitive, or "
                             "number); repeat for several; default every ROI with contours")
    parser.add_argument("--label-map", action="store_true",
                        help="with --rtstruct: one label map DST_labels.nii.gz (ROIs numbered "
                             "1, 2, ... in --roi order) and its names in DST_labels.json")
    return parser


def run_convert(args):
    """Run a conversion from parsed `add_convert_arguments` arguments.

    Args:
        args: an `argparse.Namespace` with src, dst, spacing (X Y Z or one value), label,
            series, on_error, rtstruct, roi and label_map.

    Returns:
        The output path; with --rtstruct, the paths written, one per line.

    Raises:
        ConfigError: --spacing has a number of values other than 1 or 3, or --roi/--label-map
            without --rtstruct.
        DataError: as `convert_dicom_series`.
    """
    spacing = args.spacing
    if spacing is not None:
        if len(spacing) not in (1, 3):
            raise ConfigError(f"--spacing takes one value or three (X Y Z), got {spacing}")
        spacing = spacing[0] if len(spacing) == 1 else tuple(spacing[::-1])  # X Y Z -> dz dy dx
    rtstruct = getattr(args, "rtstruct", None)
    if rtstruct is None and (getattr(args, "roi", None) or getattr(args, "label_map", False)):
        raise ConfigError("--roi and --label-map need --rtstruct FILE")
    rois = [int(r) if r.strip().isdigit() else r for r in args.roi or []]
    written = convert_dicom_series(args.src, args.dst, spacing=spacing, label=args.label,
                                   series_instance_uid=args.series, on_error=args.on_error,
                                   rtstruct=rtstruct, rois=rois, label_map=args.label_map
                                   if rtstruct else False)
    return written if rtstruct is None else "\n".join(str(p) for p in written)


def build_parser(prog=None):
    """A stand-alone parser for the conversion (used by tools/dicom2nifti.py)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Convert a DICOM series to NIfTI, optionally resampled "
                               "(linear for images, nearest neighbour with --label).")
    return add_convert_arguments(parser)
