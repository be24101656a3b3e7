"""Predict new, unlabelled inputs and write label maps that overlay the inputs: the `tfseg predict` core.

Three pieces, independent of any workflow:

- `discover_inputs(source)` turns what a user points at into `InputItem`s: a NIfTI file, a BraTS
  case folder or release folder (four modalities per case), a datalist JSON (its
  ``validation``/``testing``/``test`` entries, labels not needed), a DICOM series folder (one item
  per series), a single DICOM file, a folder of NIfTI files, or a folder of PNG/TIFF images. Each
  item carries the geometry of its arrays: the NIfTI affine and header of its first file; for
  DICOM the series' NIfTI RAS+ affine as `tfseg.io.dicom.read_series` (and so `tfseg convert`)
  gives it, from the headers alone (`tfseg.io.dicom.series_geometry`); none for 2D images.
- `write_prediction(item, label_map, output_dir, convention)` writes a label map on the input's
  grid in the dataset's own convention (`CONVENTIONS`): NIfTI with the input's affine and header
  (integer labels as given, or BraTS 0/1/2/4), LGG 0/255 masks, Sunnybrook 0/255 PNG masks plus a
  contour text file, and optional probabilities (NIfTI float32 4D for volumes, HDF5 for 2D).
- `predict_all(items, predict_fn, output_dir)` runs `predict_fn(image, item)` over the items with a
  progress bar (one log line per item when not on a terminal), writes every result, skips (or
  raises on) a bad case per `on_error`, and writes `predict_report.json`.

`predict_run(run_dir, source, output_dir)` and `tfseg predict RUN_DIR INPUT OUTPUT` use a run's
exported SavedModel (`serving_default`: raw float32 images of any size in, `probabilities` and
`labels` out, see `tfseg.export.savedmodel`) as `predict_fn`.

Memory layout: volumes are `(D, H, W, C)` (tfseg's channels-last memory order, `tfseg.io.nifti`),
2D images `(H, W, C)`; label maps drop the channel axis.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from tfseg.io.nifti import read_nifti, write_nifti
    >>> folder = tempfile.mkdtemp()
    >>> affine = np.diag([-0.9, -0.9, 2.0, 1.0])
    >>> _ = write_nifti(os.path.join(folder, "scan.nii.gz"), np.ones((4, 5, 6), np.float32), affine)
    >>> items = discover_inputs(os.path.join(folder, "scan.nii.gz"))
    >>> report = predict_all(items, lambda image, item: (image[..., 0] > 0).astype(np.uint8),
    ...                      os.path.join(folder, "out"), progress=False)
    >>> report["written"], np.allclose(read_nifti(report["cases"][0]["outputs"][0]).affine, affine)
    (1, True)
"""
import dataclasses
import json
import logging
import os
import sys
import time
import traceback

import numpy as np

from tfseg.errors import ConfigError, DataError, TfsegError
from tfseg.utils.problems import check_policy

logger = logging.getLogger(__name__)

#: Output conventions of `write_prediction`.
CONVENTIONS = ("nifti", "brats", "lgg", "sunnybrook")
#: Datalist sections predicted, where present.
DATALIST_SECTIONS = ("validation", "testing", "test")
REPORT_FILE = "predict_report.json"
#: Where `tfseg.export.savedmodel` stores its ServingSpec JSON inside a SavedModel (read here as a plain
#: file: inference does not import the export stage).
METADATA_FILE = os.path.join("assets.extra", "tfseg.json")

_NIFTI = (".nii.gz", ".nii")
_IMAGES = (".png", ".tif", ".tiff")
_LABEL_ENDINGS = ("_seg", "_label", "_labels", "_mask", "_gt", "_truth")


@dataclasses.dataclass
class InputItem:
    """One input to predict, with the geometry its prediction must be written on.

    Attributes:
        case_id: the case's name (file stem, BraTS case id, datalist id, series UID).
        kind: "nifti" (one file per channel), "dicom_series", "dicom_file" or "image" (PNG/TIFF).
        paths: the files read: one per channel (NIfTI), the slices in order (DICOM), the image.
        output_name: a safe, unique file stem for the outputs.
        shape: spatial shape in memory order, `(D, H, W)`, or `(H, W)` for 2D images and single
            DICOM files.
        affine: NIfTI voxel `(i, j, k)` -> world RAS+ mm of the input grid; None for 2D images.
        header: the nibabel header of the first NIfTI file, or None.
        series_instance_uid: the DICOM series, or None.
        suffix: the input image's extension for 2D images (".png", ".tif"), else None.
    """

    case_id: str
    kind: str
    paths: tuple[str, ...]
    output_name: str
    shape: tuple
    affine: np.ndarray | None = None
    header: object = None
    series_instance_uid: str | None = None
    suffix: str | None = None

    @property
    def spatial_dims(self):
        """2 for images and single DICOM files, 3 for volumes."""
        return len(self.shape)


# ----------------------------------------------------------------------------------------------
# Discovering inputs.
# ----------------------------------------------------------------------------------------------

def _strip(name, extensions):
    for extension in extensions:
        if name.lower().endswith(extension):
            return name[:-len(extension)]
    return name


def _is_label_name(name):
    return _strip(name, _NIFTI + _IMAGES).lower().endswith(_LABEL_ENDINGS)


def _nifti_item(case_id, paths):
    from tfseg.io.nifti import open_nifti

    first = open_nifti(paths[0])
    shape = tuple(int(s) for s in first.shape[:3][::-1])
    affine = np.asarray(first.affine, np.float64)
    for path in paths[1:]:  # headers only
        other = open_nifti(path)
        other_shape = tuple(int(s) for s in other.shape[:3][::-1])
        if other_shape != shape or not np.allclose(other.affine, affine, atol=1e-3):
            raise DataError(path, f"grid {other_shape} differs from {paths[0]}'s {shape} (shape or affine): the "
                                  f"channels of one case must share one grid")
    return InputItem(case_id, "nifti", tuple(paths), case_id, shape, affine, first.header)


def _dicom_items(source, series_instance_uid=None):
    from tfseg.io.dicom import list_series, series_geometry

    if isinstance(source, (list, tuple)):
        affine, shape, files = series_geometry(list(source), series_instance_uid)
        return [InputItem(os.path.basename(files[0]), "dicom_series", tuple(files), "", shape, affine)]
    items = []
    for info in list_series(source, on_error="skip"):
        if series_instance_uid is not None and info.series_instance_uid != str(series_instance_uid):
            continue
        try:
            affine, shape, files = series_geometry(info.files, info.series_instance_uid)
        except DataError as error:  # e.g. a cine series: several images per position -> one item each
            logger.info("series %s is not one volume (%s); each of its %d images is predicted alone",
                        info.series_instance_uid, error.reason, len(info.files))
            items.extend(_dicom_file_item(path) for path in sorted(info.files))
            continue
        name = f"series{info.series_number}" if info.series_number is not None else info.series_instance_uid
        items.append(InputItem(name, "dicom_series", tuple(files), "", shape, affine,
                               series_instance_uid=info.series_instance_uid))
    if len(items) == 1 and items[0].kind == "dicom_series":
        items[0].case_id = os.path.basename(os.path.normpath(os.fspath(source)))
    return items


def _dicom_file_item(path):
    from tfseg.io.dicom import read_header, series_geometry

    header = read_header(path)
    if header.image_position is not None and header.image_orientation is not None and header.pixel_spacing:
        affine, shape, _ = series_geometry([path])
    else:
        logger.info("%s: no plane geometry, its prediction is placed on a unit grid", path)
        affine, shape = None, None
    stem = _strip(os.path.basename(path), (".dcm", ".dicom"))
    item = InputItem(stem, "dicom_file", (os.fspath(path),), "", (0, 0), affine,
                     series_instance_uid=header.series_instance_uid)
    if shape is not None:
        item.shape = tuple(shape[1:])
    return item


def _datalist_items(path):
    from tfseg.datasets.datalist import read_datalist

    sections = read_datalist(path, check_files=False)
    present = [name for name in DATALIST_SECTIONS if name in sections]
    if not present:
        raise DataError(path, f"no {'/'.join(DATALIST_SECTIONS)} section to predict (found "
                              f"{', '.join(sections)})")
    items = []
    for records in (sections[name] for name in present):
        for record in records:
            for image in record.images:
                if not os.path.isfile(image):
                    raise DataError(image, f"image listed in {path} not found")
            items.append(_nifti_item(record.case_id, record.images))
    return items


def _folder_items(folder):
    names = sorted(os.path.join(parent, n) for parent, _, files in os.walk(folder) for n in files
                   if not n.startswith("."))
    lower = [os.path.basename(n).lower() for n in names]
    if any(n.endswith(_NIFTI) and ("flair" in n or "t2f" in n) for n in lower):
        from tfseg.datasets.brats import find_brats

        return [_nifti_item(case.case_id, case.images) for case in find_brats(folder, require_label=False,
                                                                              on_error="raise")]
    nifti = [n for n, low in zip(names, lower) if low.endswith(_NIFTI) and not _is_label_name(low)
             and not os.path.basename(os.path.dirname(n)).lower().startswith("labels")]  # Decathlon labelsTr/
    if nifti:
        return [_nifti_item(_strip(os.path.basename(p), _NIFTI), (p,)) for p in nifti]
    images = [n for n, low in zip(names, lower) if low.endswith(_IMAGES) and not _is_label_name(low)]
    if images:
        from tfseg.io.images import read_image

        items = []
        for path in images:
            stem, suffix = os.path.splitext(os.path.basename(path))
            shape = read_image(path).shape[:2]
            items.append(InputItem(stem, "image", (path,), "", tuple(shape), suffix=suffix.lower()))
        return items
    if not names:
        raise DataError(folder, "is empty: no NIfTI file, PNG/TIFF image or DICOM series")
    return _dicom_items(folder)  # a DataError names the folder when it holds no DICOM series either


def discover_inputs(source, series_instance_uid=None):
    """List what to predict in `source`, with each item's geometry (headers only; no pixels read).

    Args:
        source: a NIfTI file, a BraTS case or release folder, a datalist JSON, a DICOM series
            folder (one item per series, or per image for a series that is not one volume), a
            DICOM file, a list of DICOM files (one series), a folder of NIfTI files (files named
            like labels, `_seg`/`_mask`..., or in a ``labels*`` folder are passed over) or a
            folder of PNG/TIFF images (likewise).
        series_instance_uid: in a DICOM folder, only this series.

    Returns:
        A list of `InputItem`, with unique `output_name`s.

    Raises:
        DataError: nothing to predict, an unreadable header, channels of a case on different grids.

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic_mni import write_mni_brats
        >>> ds = write_mni_brats(tempfile.mkdtemp(), num_cases=2, spacing=8.0)
        >>> [(i.case_id, i.kind, len(i.paths), i.shape) for i in discover_inputs(ds.root)]
        [('BraTS2021_00000', 'nifti', 4, (24, 29, 25)), ('BraTS2021_00001', 'nifti', 4, (24, 29, 25))]
    """
    if isinstance(source, (list, tuple)):
        items = _dicom_items(list(source), series_instance_uid)
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise DataError(path, "not found")
        low = path.lower()
        if os.path.isdir(path):
            items = _folder_items(path)
        elif low.endswith(_NIFTI):
            items = [_nifti_item(_strip(os.path.basename(path), _NIFTI), (path,))]
        elif low.endswith(".json"):
            items = _datalist_items(path)
        elif low.endswith(_IMAGES):
            from tfseg.io.images import read_image

            stem, suffix = os.path.splitext(os.path.basename(path))
            items = [InputItem(stem, "image", (path,), "", tuple(read_image(path).shape[:2]), suffix=suffix.lower())]
        else:
            items = [_dicom_file_item(path)]
    if not items:
        raise DataError(source, "nothing to predict")
    _name_outputs(items)
    return items


def _name_outputs(items):
    from tfseg.inference.writers import safe_file_name

    seen = {}
    for item in items:
        base = safe_file_name(item.case_id)
        count = seen.get(base, 0)
        seen[base] = count + 1
        item.output_name = base if not count else f"{base}_{count + 1}"


def load_item(item):
    """Read an item's pixels: float32 `(D, H, W, C)` for volumes, `(H, W, C)` for 2D inputs.

    The geometry read is checked against the item's (a file changed since `discover_inputs` is an
    error).

    Raises:
        DataError: unreadable files, or a grid that no longer matches the item.
    """
    if item.kind == "nifti":
        from tfseg.io.nifti import read_nifti

        channels = []
        for path in item.paths:
            volume = read_nifti(path, dtype=np.float32)
            array = volume.array if volume.array.ndim == 4 else volume.array[..., None]
            if array.shape[:3] != tuple(item.shape):
                raise DataError(path, f"shape {array.shape[:3]} differs from {tuple(item.shape)} found before")
            channels.append(array)
        return np.concatenate(channels, axis=-1).astype(np.float32, copy=False)
    if item.kind == "dicom_series":
        from tfseg.io.dicom import read_series

        volume = read_series(list(item.paths))
        if volume.shape != tuple(item.shape) or not np.allclose(volume.affine, item.affine, atol=1e-4):
            raise DataError(item.paths[0], "the series' geometry changed since it was listed")
        return volume.array.astype(np.float32)[..., None]
    if item.kind == "dicom_file":
        from tfseg.io.dicom import read_image

        array = read_image(item.paths[0]).array
        if array.ndim != 2:
            raise DataError(item.paths[0], f"expected one grayscale frame, got pixel array of shape {array.shape}")
        item.shape = tuple(array.shape)
        return array.astype(np.float32)[..., None]
    from tfseg.io.images import read_image

    array = read_image(item.paths[0]).astype(np.float32)
    return array[..., None] if array.ndim == 2 else array


# ----------------------------------------------------------------------------------------------
# Writing predictions.
# ----------------------------------------------------------------------------------------------

def mask_to_contour(mask):
    """The outline of a 2D mask's largest blob as an `(N, 2)` polyline of `(x, y)` points.

    The outline is the 0.5 level line of the mask (marching squares, scikit-image's
    `find_contours`), which runs between every inside pixel centre and its outside neighbours, so
    `tfseg.io.contours.polygon_to_mask(points, mask.shape)` gives back the blob (for a blob
    without holes) under the contour module's pixel-centre convention (x = column, y = row).

    Args:
        mask: `(H, W)` array, non-zero inside.

    Returns:
        float64 `(N, 2)`, or None for an empty mask.

    Example:
        >>> from tfseg.io.contours import polygon_to_mask
        >>> mask = np.zeros((6, 7), bool); mask[1:4, 2:6] = True
        >>> bool(np.array_equal(polygon_to_mask(mask_to_contour(mask), mask.shape), mask))
        True
    """
    from skimage import measure

    from tfseg.io.contours import polygon_area

    mask = np.asarray(mask) != 0
    if not mask.any():
        return None
    padded = np.pad(mask, 1).astype(np.float64)
    lines = [line for line in measure.find_contours(padded, 0.5) if len(line) >= 4]
    if not lines:
        return None
    points = [np.column_stack([line[:-1, 1] - 1.0, line[:-1, 0] - 1.0]) for line in lines]
    return max(points, key=lambda p: abs(polygon_area(p)))


def _label_dtype(labels):
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        return np.int16 if labels.min() >= -32768 and labels.max() <= 32767 else np.int32
    return np.uint8


def _as_labels(label_map, item, convention):
    labels = np.asarray(label_map)
    if convention == "brats" and labels.ndim == item.spatial_dims + 1 and labels.shape[-1] == 3:
        from tfseg.data.transforms.labels import regions_to_brats_labels

        labels = regions_to_brats_labels(labels)
    if labels.ndim == item.spatial_dims + 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ConfigError(f"{item.case_id}: the label map holds non-integer values; pass labels, not "
                              f"probabilities")
        labels = labels.astype(np.int64)
    if tuple(labels.shape) != tuple(item.shape):
        raise ConfigError(f"{item.case_id}: label map of shape {labels.shape} but the input grid is "
                          f"{tuple(item.shape)}; predictions are written on the input's grid")
    if convention == "brats":
        bad = sorted(set(np.unique(labels).tolist()) - {0, 1, 2, 4})
        if bad:
            raise ConfigError(f"{item.case_id}: BraTS label maps hold 0, 1, 2 and 4, got also {bad}")
    if convention in ("lgg", "sunnybrook"):
        labels = labels != 0
    return labels


def _write_volume(path, array, item, dtype):
    from tfseg.io.nifti import write_nifti

    if array.ndim == item.spatial_dims and item.spatial_dims == 2:
        array = array[None]  # one slice: (1, H, W)
    elif array.ndim == 3 and item.spatial_dims == 2:
        array = array[None]  # probabilities of one slice: (1, H, W, C)
    affine = item.affine if item.affine is not None else np.eye(4)
    header = item.header if item.kind == "nifti" else None
    return write_nifti(path, array, affine, header=header, dtype=dtype)


def _write_hdf5(path, array, item):
    import h5py

    from tfseg.utils.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("probabilities", data=np.asarray(array, np.float32), compression="gzip")
        handle.attrs["case_id"] = item.case_id
        handle.attrs["source"] = item.paths[0]
    return path


def _write_tiff(path, array):
    import tifffile

    from tfseg.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array)
    return path


def write_prediction(item, label_map, output_dir, convention="nifti", probabilities=None, contour_kind="icontour"):
    """Write one prediction on the input's grid, in a dataset's convention; returns the paths written.

    Conventions (`CONVENTIONS`):

    - ``"nifti"``: the integer label map as given; volumes and DICOM inputs as
      ``<name>.nii.gz`` with the input's affine (and header for NIfTI inputs), 2D images as
      ``<name>.png`` (uint8 labels);
    - ``"brats"``: as "nifti", values checked to be BraTS labels 0/1/2/4 (a 3-channel WT/TC/ET
      map is merged first, `tfseg.data.transforms.labels.regions_to_brats_labels`);
    - ``"lgg"``: a 0/255 mask ``<name>_mask.tif`` (``.png`` for a PNG input), as the Kaggle set;
    - ``"sunnybrook"``: a 0/255 mask ``<name>_mask.png`` and, when not empty, the outline of its
      largest blob as ``<name>-<contour_kind>-auto.txt`` (`mask_to_contour`; `x y` per line,
      the reader convention of `tfseg.io.contours`).

    Probabilities, when given (`(*spatial, C)` float), go to ``<name>_probabilities.nii.gz``
    (float32, 4D, the input's affine) for volumes and DICOM inputs, ``<name>_probabilities.h5``
    (dataset ``probabilities``) for 2D images.

    Args:
        item: the `InputItem` predicted.
        label_map: integer labels of the item's spatial shape (or region channels for "brats").
        output_dir: the folder written into (created).
        convention: one of `CONVENTIONS`.
        probabilities: optional per-class probabilities.
        contour_kind: the contour name in Sunnybrook file names.

    Returns:
        The list of paths written.

    Raises:
        ConfigError: an unknown convention, a label map off the input's grid, or values the
            convention does not allow.
    """
    from tfseg.io.contours import write_contour
    from tfseg.io.images import write_png

    if convention not in CONVENTIONS:
        raise ConfigError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    labels = _as_labels(label_map, item, convention)
    os.makedirs(output_dir, exist_ok=True)
    base = os.path.join(output_dir, item.output_name)
    written = []
    if convention in ("nifti", "brats"):
        if item.kind == "image":
            if labels.min() < 0 or labels.max() > 255:
                raise ConfigError(f"{item.case_id}: labels outside 0..255 cannot be written as a PNG label map")
            write_png(base + ".png", labels.astype(np.uint8))
            written.append(base + ".png")
        else:
            written.append(_write_volume(base + ".nii.gz", labels, item, _label_dtype(labels)))
    else:
        mask = (labels * 255).astype(np.uint8)
        if mask.ndim != 2:
            raise ConfigError(f"{item.case_id}: the {convention} convention writes 2D masks, got shape {mask.shape}")
        if convention == "lgg" and item.suffix != ".png":
            written.append(_write_tiff(base + "_mask.tif", mask))
        else:
            write_png(base + "_mask.png", mask)
            written.append(base + "_mask.png")
        if convention == "sunnybrook":
            points = mask_to_contour(mask)
            if points is not None:
                written.append(os.fspath(write_contour(f"{base}-{contour_kind}-auto.txt", points)))
    if probabilities is not None:
        probabilities = np.asarray(probabilities, np.float32)
        if tuple(probabilities.shape[:item.spatial_dims]) != tuple(item.shape):
            raise ConfigError(f"{item.case_id}: probabilities of shape {probabilities.shape} do not match the "
                              f"input grid {tuple(item.shape)}")
        if probabilities.ndim == item.spatial_dims:
            probabilities = probabilities[..., None]
        if item.kind == "image" or (item.affine is None and item.spatial_dims == 2):
            written.append(_write_hdf5(base + "_probabilities.h5", probabilities, item))
        else:
            written.append(_write_volume(base + "_probabilities.nii.gz", probabilities, item, np.float32))
    return [os.fspath(p) for p in written]


# ----------------------------------------------------------------------------------------------
# The prediction loop.
# ----------------------------------------------------------------------------------------------

def predict_all(items, predict_fn, output_dir, convention="nifti", on_error="skip", tta=False, progress=True,
                contour_kind="icontour"):
    """Predict every item, write its outputs, and report per case; writes `predict_report.json`.

    Args:
        items: `InputItem`s from `discover_inputs`.
        predict_fn: `predict_fn(image, item) -> label_map` or `-> (label_map, probabilities)`;
            `image` is float32 `(D, H, W, C)` or `(H, W, C)` (`load_item`). With `tta=True` it is
            called as `predict_fn(image, item, tta=True)` (the caller's model path does the
            flips, e.g. `tfseg.inference.tta.flip_tta`).
        output_dir: the folder for the outputs and the report.
        convention: see `write_prediction`.
        on_error: "skip": a case that fails (unreadable input, model error, bad output) is
            logged, recorded in the report and passed over; "raise": the error propagates (the
            report written so far is kept).
        tta: ask `predict_fn` for test-time augmentation.
        progress: a tqdm bar on a terminal, else one log line per item; False: quiet.
        contour_kind: Sunnybrook contour name (see `write_prediction`).

    Returns:
        The report dict: ``total``, ``written``, ``failed``, ``seconds`` and ``cases`` (per item:
        ``case_id``, ``inputs``, ``outputs``, ``status`` "ok" or "failed", ``error``, ``seconds``).
    """
    check_policy(on_error)
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    os.makedirs(output_dir, exist_ok=True)
    items = list(items)
    report = {"total": len(items), "written": 0, "failed": 0, "seconds": 0.0, "output_dir": os.fspath(output_dir),
              "convention": convention, "tta": bool(tta), "cases": []}
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="case", desc="predict")
    start = time.perf_counter()
    try:
        for index, item in enumerate(items):
            entry = _predict_one(item, predict_fn, output_dir, convention, tta, contour_kind, on_error, report)
            report["seconds"] = round(time.perf_counter() - start, 3)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=report["failed"])
            elif progress:
                logger.info("[%d/%d] %s %s (%.1f s)%s", index + 1, len(items), item.case_id, entry["status"],
                            entry["seconds"], f": {entry['error']}" if entry["error"] else "")
    finally:
        if bar is not None:
            bar.close()
        _write_report(output_dir, report)
    if report["failed"]:
        logger.warning("%d of %d case(s) failed; see %s", report["failed"], len(items),
                       os.path.join(output_dir, REPORT_FILE))
    return report


def _predict_one(item, predict_fn, output_dir, convention, tta, contour_kind, on_error, report):
    begin = time.perf_counter()
    entry = {"case_id": item.case_id, "inputs": list(item.paths), "outputs": [], "status": "ok", "error": None}
    report["cases"].append(entry)
    try:
        image = load_item(item)
        result = predict_fn(image, item, tta=True) if tta else predict_fn(image, item)
        labels, probabilities = result if isinstance(result, tuple) else (result, None)
        entry["outputs"] = write_prediction(item, labels, output_dir, convention, probabilities, contour_kind)
        report["written"] += 1
    except Exception as error:
        entry["status"] = "failed"
        entry["error"] = str(error) if isinstance(error, TfsegError) else f"{type(error).__name__}: {error}"
        report["failed"] += 1
        if on_error == "raise":
            entry["seconds"] = round(time.perf_counter() - begin, 3)
            raise
        logger.debug("%s failed:\n%s", item.case_id, traceback.format_exc())
    entry["seconds"] = round(time.perf_counter() - begin, 3)
    return entry


def _write_report(output_dir, report):
    from tfseg.utils.atomic import atomic_write_json

    atomic_write_json(os.path.join(output_dir, REPORT_FILE), report)


# ----------------------------------------------------------------------------------------------
# A run's SavedModel as predict_fn, and `tfseg predict`.
# ----------------------------------------------------------------------------------------------

#: Output convention of each workflow (the `workflow` in the SavedModel's metadata).
WORKFLOW_CONVENTIONS = {"brats": "brats", "brats2d": "brats", "brats_slices": "brats", "lgg": "lgg",
                        "sunnybrook": "sunnybrook"}


def load_run(run_dir):
    """`(config dict, serving signature, metadata dict)` of a training run's output folder.

    Raises:
        DataError: no ``saved_model/`` in `run_dir`.
    """
    import tensorflow as tf

    path = os.path.join(run_dir, "saved_model")
    if not os.path.isdir(path):
        raise DataError(run_dir, "no saved_model/ folder: pass the output folder of a training run")
    config = {}
    config_path = os.path.join(run_dir, "config.json")
    if os.path.isfile(config_path):
        with open(config_path) as stream:
            config = json.load(stream)
    saved = tf.saved_model.load(path)
    signature = saved.signatures["serving_default"]
    signature._tfseg_keep = saved  # the signature needs its SavedModel object alive
    metadata = {}
    metadata_path = os.path.join(path, METADATA_FILE)
    if os.path.isfile(metadata_path):
        with open(metadata_path) as stream:
            metadata = json.load(stream)
    return config, signature, metadata


def savedmodel_predict_fn(signature, metadata):
    """A `predict_fn` calling a SavedModel's `serving_default` on the whole input (batch of one).

    The exported signature normalizes, pads to the stride, and returns `labels` already in the
    model's label space; `label_values` in the metadata (e.g. brats2d's 0/1/2/4) map class
    indices to label values. With `tta=True` the probabilities are averaged over flips of the
    spatial axes and the labels recomputed as the signature would (arg-max, > 0.5, or BraTS).
    """
    import tensorflow as tf

    in_channels = int(metadata.get("in_channels", 1))
    label_values = (metadata.get("extra") or {}).get("label_values")

    def call(image):
        out = signature(image=tf.constant(image[None], tf.float32))
        return out["labels"].numpy()[0], out["probabilities"].numpy()[0]

    def predict_fn(image, item, tta=False):
        if image.shape[-1] != in_channels:
            raise DataError(item.paths[0], f"{image.shape[-1]} channel(s) but the model takes {in_channels}")
        labels, probabilities = call(image)
        if tta:
            from tfseg.inference.tta import flip_combinations

            spatial = tuple(range(image.ndim - 1))
            total, count = probabilities.astype(np.float64), 1
            for axes in flip_combinations(spatial):
                if not axes:
                    continue
                flipped = call(np.flip(image, axis=axes))[1]
                total += np.flip(flipped, axis=axes)
                count += 1
            probabilities = (total / count).astype(np.float32)
            labels = _labels_from(probabilities, metadata)
        if label_values and labels.ndim == image.ndim - 1:
            labels = np.asarray(label_values)[labels]
        return labels, probabilities

    return predict_fn


def _labels_from(probabilities, metadata):
    if metadata.get("label_map") == "brats":
        from tfseg.data.transforms.labels import regions_to_brats_labels

        return regions_to_brats_labels(probabilities)
    if metadata.get("activation", "softmax") == "softmax":
        return np.argmax(probabilities, axis=-1)
    return (probabilities > 0.5).astype(np.uint8)


def predict_run(run_dir, source, output_dir, convention="auto", on_error="skip", tta=False, probabilities=False,
                progress=True):
    """Predict `source` with a run's exported SavedModel and write the outputs; returns the report.

    The whole input goes through `serving_default` at once (no sliding window): right for the 2D
    workflows and for volumes that fit in memory.

    Args:
        run_dir: a training run's output folder (``saved_model/``, ``config.json``).
        source: anything `discover_inputs` takes.
        output_dir: where the predictions and ``predict_report.json`` go.
        convention: one of `CONVENTIONS`, or "auto": the workflow's (`WORKFLOW_CONVENTIONS`), else "nifti".
        on_error, tta, progress: see `predict_all`.
        probabilities: also write the probabilities.

    Returns:
        The report of `predict_all`.
    """
    _, signature, metadata = load_run(run_dir)
    if convention == "auto":
        workflow = (metadata.get("extra") or {}).get("workflow")
        convention = WORKFLOW_CONVENTIONS.get(workflow, "brats" if metadata.get("label_map") == "brats" else "nifti")
    predict = savedmodel_predict_fn(signature, metadata)

    def predict_fn(image, item, tta=False):
        labels, probs = predict(image, item, tta=tta)
        return (labels, probs) if probabilities else labels

    return predict_all(discover_inputs(source), predict_fn, output_dir, convention=convention, on_error=on_error,
                       tta=tta, progress=progress)


def add_parser(subparsers):
    """Register `tfseg predict RUN_DIR INPUT OUTPUT` on an argparse subparsers object."""
    parser = subparsers.add_parser("predict", help="predict new inputs (NIfTI, BraTS folders, datalist, DICOM, "
                                                   "PNG/TIFF) with a training run's model")
    parser.add_argument("run_dir", help="a training run's output folder (saved_model/, config.json)")
    parser.add_argument("input", help="NIfTI file, BraTS case/release folder, datalist JSON, DICOM folder or file, "
                                      "folder of NIfTI or PNG/TIFF images")
    parser.add_argument("output", help="folder for the predictions and predict_report.json")
    parser.add_argument("--convention", default="auto", choices=("auto",) + CONVENTIONS,
                        help="output convention (auto: the workflow's)")
    parser.add_argument("--on-error", default="skip", choices=("skip", "raise"),
                        help="a bad case: skip it and report it (default), or stop")
    parser.add_argument("--probabilities", action="store_true", help="also write per-class probabilities")
    parser.add_argument("--tta", action="store_true", help="average over flips of the spatial axes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-case lines")
    parser.set_defaults(handler=run)
    return parser


def run(args):
    """Handle `tfseg predict`: print a one-line JSON summary; exit 1 when a case failed."""
    report = predict_run(args.run_dir, args.input, args.output, convention=args.convention,
                         on_error=args.on_error, tta=args.tta, probabilities=args.probabilities,
                         progress=not args.no_progress)
    print(json.dumps({"written": report["written"], "failed": report["failed"], "output": args.output,
                      "report": os.path.join(args.output, REPORT_FILE)}))
    return 1 if report["failed"] else 0
