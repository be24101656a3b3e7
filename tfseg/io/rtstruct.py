"""DICOM RT Structure Sets (RTSTRUCT): list ROIs, rasterize them on their image series, write them.

Reading. An RTSTRUCT holds, per ROI, closed planar contours in patient coordinates (LPS, mm),
each normally naming the image slice it was drawn on (Contour Image Sequence). `rasterize_roi`
puts a ROI on the grid of the CT/MR series it refers to:

- the ROI's Frame of Reference UID must be the series' (else the contours are in another
  coordinate system and a `DataError` says so);
- each contour goes to the slice whose SOPInstanceUID it references; a contour without a
  reference, or referencing an image outside the series, goes to the slice whose plane it lies in.
  Either way every point must lie within a quarter of the slice gap of that plane;
- the points are projected onto the slice plane (oblique series included) and converted to pixel
  `(x, y)` = (column, row) through ImagePositionPatient, ImageOrientationPatient and PixelSpacing;
- each contour is filled with the pixel-centre rule of `tfseg.io.contours.polygon_to_mask` (the
  rule of `skimage.draw.polygon2mask`), and the contours of one slice are combined by the
  even-odd rule (exclusive or): a contour inside another is a hole, one inside a hole an island;
- POINT and OPEN_PLANAR/OPEN_NONPLANAR contours enclose no area and are passed over (logged).

The mask has the memory layout `(D, H, W)` of `tfseg.io.dicom.read_series` on the same series,
so it can be written with that volume's affine (`tfseg convert ... --rtstruct`).

Writing. `write_rtstruct` traces each label of a label map slice by slice at the 0.5 level of its
mask (`skimage.measure.find_contours` on the zero-padded mask, so every contour is closed),
converts the points to patient coordinates and writes one ROI per label, referencing the series'
SOP instances. Tracing runs between pixel centres, so rasterizing the written contours with
`rasterize_roi` gives back the same mask (the one-pixel tolerance the round trip is tested to).

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from tfseg.io.dicom import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(3):
    ...     _ = write_image(folder / "ct" / f"{k}.dcm", np.zeros((8, 8), np.int16), modality="CT",
    ...                     series_instance_uid="1.2.3", image_position=(0, 0, 3.0 * k))
    >>> labels = np.zeros((3, 8, 8), np.uint8)
    >>> labels[1, 2:6, 3:7] = 1
    >>> path = write_rtstruct(labels, folder / "ct", folder / "rtss.dcm", {1: "Heart"})
    >>> [(roi.name, roi.contour_count) for roi in list_rois(path)]
    [('Heart', 1)]
    >>> mask = rasterize_roi(path, "heart", folder / "ct")
    >>> bool((mask == (labels == 1)).all())
    True
"""
import dataclasses
import datetime
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RTStructureSetStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from tfseg.errors import ConfigError, DataError
from tfseg.io.contours import polygon_to_mask
from tfseg.io.dicom import atomic_write_dataset, new_dataset, read_dataset
from tfseg.io.dicom_series import as_dicom_series

logger = logging.getLogger(__name__)

#: The DICOM "Study Component Management" SOP class, conventionally used to reference a study.
_STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"
_PLANE_TOLERANCE = 0.25  # of the slice gap: how far a contour point may be off its slice plane
_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
           (255, 128, 0), (128, 0, 255), (0, 128, 255), (128, 255, 0))
_PATIENT_STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                           "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
                           "StudyID", "AccessionNumber")


@dataclasses.dataclass(frozen=True)
class RoiInfo:
    """One ROI of a structure set.

    Attributes:
        number: the ROI Number.
        name: the ROI Name (stripped).
        contour_count: the number of contours (of any geometric type) it holds.
        frame_of_reference_uid: the Referenced Frame of Reference UID of the ROI, or None.
    """

    number: int
    name: str
    contour_count: int
    frame_of_reference_uid: str | None


@dataclasses.dataclass(frozen=True)
class Contour:
    """One contour of a ROI: points in patient coordinates (LPS mm) and what it refers to.

    Attributes:
        points: `(N, 3)` float64.
        geometric_type: e.g. "CLOSED_PLANAR".
        referenced_sop_instance_uids: the images of its Contour Image Sequence (may be empty).
    """

    points: np.ndarray
    geometric_type: str
    referenced_sop_instance_uids: tuple


def read_rtstruct(path):
    """Read an RT Structure Set file and check that it is one.

    Args:
        path: the RTSTRUCT file, or an already read pydicom `Dataset` (returned as is, checked).

    Returns:
        The pydicom `Dataset`.

    Raises:
        DataError: the file is missing, not DICOM, or not an RT Structure Set.

    Example:
        >>> read_rtstruct(pydicom.data.get_testdata_file("rtstruct.dcm")).Modality
        'RTSTRUCT'
    """
    if isinstance(path, Dataset):
        ds, where = path, getattr(path, "filename", None) or "RTSTRUCT dataset"
    else:
        ds, where = read_dataset(path, stop_before_pixels=False), path
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RTStructureSetStorage and str(ds.get("Modality", "")) != "RTSTRUCT":
        kind = str(ds.get("Modality", "")) or "unknown modality"
        raise DataError(where, f"not an RT Structure Set (Modality {kind}, SOP class "
                               f"{pydicom.uid.UID(sop_class).name if sop_class else 'none'})")
    if "StructureSetROISequence" not in ds:
        raise DataError(where, "RT Structure Set without a Structure Set ROI Sequence")
    return ds


def _where(ds):
    return str(getattr(ds, "filename", None) or "RTSTRUCT dataset")


def list_rois(rtstruct):
    """The ROIs of a structure set, in file order.

    Args:
        rtstruct: an RTSTRUCT path or pydicom `Dataset`.

    Returns:
        A list of `RoiInfo`.

    Example:
        >>> rois = list_rois(pydicom.data.get_testdata_file("rtstruct.dcm"))
        >>> [(r.number, r.name, r.contour_count) for r in rois]
        [(1, 'patient', 3), (2, 'Isocenter 1', 1), (3, 'Isocenter 2', 1)]
    """
    ds = read_rtstruct(rtstruct)
    counts = {}
    for item in ds.get("ROIContourSequence", []):
        number = _int(item.get("ReferencedROINumber"))
        counts[number] = counts.get(number, 0) + len(item.get("ContourSequence", []) or [])
    rois = []
    for item in ds.StructureSetROISequence:
        number = _int(item.get("ROINumber"))
        frame = str(item.get("ReferencedFrameOfReferenceUID", "")).strip() or None
        rois.append(RoiInfo(number, str(item.get("ROIName", "")).strip(), counts.get(number, 0),
                            frame))
    return rois


def referenced_series_uids(rtstruct):
    """The SeriesInstanceUIDs the structure set refers to (Referenced Frame of Reference Sequence).

    Example:
        >>> referenced_series_uids(pydicom.data.get_testdata_file("rtstruct.dcm"))
        ['1.2.826.0.1.3680043.8.498.2010020400001.2.1.1']
    """
    ds = read_rtstruct(rtstruct)
    uids = []
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uid = str(series.get("SeriesInstanceUID", "")).strip()
                if uid and uid not in uids:
                    uids.append(uid)
    return uids


def find_roi(rtstruct, roi):
    """The `RoiInfo` of a ROI given by name (case-insensitive, outer spaces ignored) or number.

    Raises:
        DataError: no such ROI (the message lists the ROIs there are), or a name held by several.
    """
    ds = read_rtstruct(rtstruct)
    rois = list_rois(ds)
    if isinstance(roi, RoiInfo):
        roi = roi.number
    if isinstance(roi, (int, np.integer)) and not isinstance(roi, bool):
        found = [r for r in rois if r.number == int(roi)]
    else:
        key = str(roi).strip().casefold()
        found = [r for r in rois if r.name.casefold() == key]
    if not found:
        names = ", ".join(f"{r.number}: {r.name!r}" for r in rois) or "none"
        raise DataError(_where(ds), f"no ROI {roi!r}; the structure set holds {names}")
    if len(found) > 1:
        raise DataError(_where(ds), f"{len(found)} ROIs are named {roi!r} (numbers "
                                    f"{[r.number for r in found]}); pass the ROI number")
    return found[0]


def roi_contours(rtstruct, roi):
    """The contours of one ROI, in patient coordinates.

    Args:
        rtstruct: an RTSTRUCT path or pydicom `Dataset`.
        roi: a ROI name (case-insensitive), number or `RoiInfo`.

    Returns:
        A list of `Contour`, in file order (empty for a ROI without contours).

    Raises:
        DataError: no such ROI, or Contour Data that are not triples of numbers.

    Example:
        >>> contours = roi_contours(pydicom.data.get_testdata_file("rtstruct.dcm"), "PATIENT")
        >>> [(c.geometric_type, c.points.shape) for c in contours][:2]
        [('CLOSED_PLANAR', (5, 3)), ('CLOSED_PLANAR', (6, 3))]
        >>> roi_contours(pydicom.data.get_testdata_file("rtstruct.dcm"), 2)[0].geometric_type
        'POINT'
    """
    ds = read_rtstruct(rtstruct)
    info = find_roi(ds, roi)
    contours = []
    for item in ds.get("ROIContourSequence", []):
        if _int(item.get("ReferencedROINumber")) != info.number:
            continue
        for k, contour in enumerate(item.get("ContourSequence", []) or []):
            try:
                points = np.array([float(v) for v in contour.ContourData], dtype=np.float64)
                points = points.reshape(-1, 3)
            except (AttributeError, ValueError, TypeError):
                raise DataError(_where(ds), f"ROI {info.name!r}: contour {k} has no Contour Data "
                                            f"of (x, y, z) triples") from None
            if not np.isfinite(points).all():
                raise DataError(_where(ds), f"ROI {info.name!r}: contour {k} has non-finite "
                                            f"Contour Data")
            refs = tuple(str(image.ReferencedSOPInstanceUID).strip()
                         for image in contour.get("ContourImageSequence", []) or []
                         if "ReferencedSOPInstanceUID" in image)
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).strip().upper()
            contours.append(Contour(points, kind, refs))
    return contours


def rasterize_roi(rtstruct, roi, series):
    """Rasterize one ROI on the grid of the image series it refers to.

    Args:
        rtstruct: an RTSTRUCT path or pydicom `Dataset`.
        roi: a ROI name (case-insensitive), number or `RoiInfo`.
        series: the referenced CT/MR series: a folder (or list of files), a `DicomSeries`, or the
            `Volume` `tfseg.io.dicom.read_series` returned for it.

    Returns:
        A bool array `(D, H, W)` on the series grid (memory layout of `read_series`).

    Raises:
        DataError: no such ROI; the ROI's frame of reference is not the series'; a contour off
            every slice plane of the series (names the contour and its distance).

    Example:
        >>> import pathlib, tempfile
        >>> from tfseg.io.dicom import write_image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for k in range(2):
        ...     _ = write_image(folder / f"{k}.dcm", np.zeros((6, 6), np.int16),
        ...                     series_instance_uid="1.2.3", image_position=(0, 0, k))
        >>> labels = np.zeros((2, 6, 6), np.uint8); labels[0, 1:4, 1:5] = 1
        >>> rtss = write_rtstruct(labels, folder, folder.parent / "rtss_doc.dcm", ["GTV"])
        >>> int(rasterize_roi(rtss, "GTV", folder).sum())
        12
    """
    ds = read_rtstruct(rtstruct)
    series = as_dicom_series(series)
    info = find_roi(ds, roi)
    where = _where(ds)
    frame = series.frame_of_reference_uid
    if info.frame_of_reference_uid and frame and info.frame_of_reference_uid != frame:
        raise DataError(where, f"ROI {info.name!r} is in frame of reference "
                               f"{info.frame_of_reference_uid}, the series "
                               f"{series.series_instance_uid} in {frame}: the contours are not in "
                               f"the series' coordinate system")
    depth, height, width = series.shape
    mask = np.zeros((depth, height, width), dtype=bool)
    skipped = {}
    for k, contour in enumerate(roi_contours(ds, info)):
        if contour.geometric_type != "CLOSED_PLANAR":
            skipped[contour.geometric_type] = skipped.get(contour.geometric_type, 0) + 1
            continue
        if len(contour.points) < 3:
            skipped["fewer than 3 points"] = skipped.get("fewer than 3 points", 0) + 1
            continue
        index = _slice_for(contour, series, where, f"ROI {info.name!r} contour {k}")
        xy = series.patient_to_pixel(contour.points, index)
        mask[index] ^= polygon_to_mask(xy, (height, width))
    for kind, count in skipped.items():
        logger.info("%s: ROI %r: %d contour(s) %s passed over (no area)", where, info.name, count,
                    kind)
    return mask


def _slice_for(contour, series, where, name):
    """The slice index a contour belongs to (by SOP instance UID, else by position), checked."""
    along = series.along_normal(contour.points)
    gap = series.slice_gap
    found = [series.slice_of(uid) for uid in contour.referenced_sop_instance_uids]
    found = [index for index in found if index is not None]
    if found:
        index, how = found[0], "referenced"
    else:
        index, how = int(np.clip(np.rint(along.mean() / gap), 0, series.shape[0] - 1)), "nearest"
    plane = (series.positions[index] - series.positions[0]) @ series.normal
    off = float(np.abs(along - plane).max())
    if off > _PLANE_TOLERANCE * gap:
        raise DataError(where, f"{name} lies {off:.3g} mm off the plane of its {how} slice "
                               f"{index} of series {series.series_instance_uid} (slice gap "
                               f"{gap:.3g} mm): the contour is not on this series' slices")
    return index


def rasterize_rois(rtstruct, series, classes):
    """A label map of several ROIs on the series grid, with one class index per ROI.

    Args:
        rtstruct: an RTSTRUCT path or pydicom `Dataset`.
        series: as in `rasterize_roi`.
        classes: `{roi name or number: class index >= 1}`; ROIs are painted in the order of
            increasing class index, so where ROIs overlap the larger index wins.

    Returns:
        A uint8 (uint16 for indices above 255) array `(D, H, W)`, 0 outside every ROI.

    Example:
        >>> import pathlib, tempfile
        >>> from tfseg.io.dicom import write_image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_image(folder / "0.dcm", np.zeros((4, 4), np.int16), series_instance_uid="1.2")
        >>> labels = np.zeros((1, 4, 4), np.uint8); labels[0, :2] = 1; labels[0, 2:, 1:3] = 2
        >>> rtss = write_rtstruct(labels, folder, folder.parent / "rtss_rois.dcm", ["A", "B"])
        >>> bool((rasterize_rois(rtss, folder, {"a": 1, "b": 2}) == labels).all())
        True
    """
    ds = read_rtstruct(rtstruct)
    series = as_dicom_series(series)
    if not classes:
        raise ConfigError("classes must map at least one ROI to a class index")
    for value in classes.values():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"class indices must be integers >= 1, got {value!r}")
    dtype = np.uint8 if max(classes.values()) <= 255 else np.uint16
    labels = np.zeros(series.shape, dtype=dtype)
    for roi, value in sorted(classes.items(), key=lambda kv: kv[1]):
        labels[rasterize_roi(ds, roi, series)] = value
    return labels


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def label_names_dict(label_names, values=None):
    """`{label value: name}` from a dict, or from a list naming the labels 1, 2, ... in order.

    Args:
        label_names: a dict `{value: name}` or a list/tuple of names for the values 1..N.
        values: the label values present (for the error message), or None.

    Returns:
        A dict `{int value >= 1: str name}`.

    Raises:
        ConfigError: a value < 1, an empty or duplicate name.

    Example:
        >>> label_names_dict(["Heart", "Lung"])
        {1: 'Heart', 2: 'Lung'}
    """
    if isinstance(label_names, dict):
        names = {int(k): str(v) for k, v in label_names.items()}
    elif isinstance(label_names, (list, tuple)):
        names = {k + 1: str(v) for k, v in enumerate(label_names)}
    else:
        raise ConfigError(f"label_names must be a dict {{value: name}} or a list of names for "
                          f"labels 1, 2, ..., got {type(label_names).__name__}")
    if not names:
        raise ConfigError("label_names is empty: name at least one label")
    if min(names) < 1:
        raise ConfigError(f"label values must be >= 1 (0 is background), got {sorted(names)}")
    stripped = [name.strip() for name in names.values()]
    if not all(stripped) or len({n.casefold() for n in stripped}) != len(stripped):
        raise ConfigError(f"label names must be non-empty and distinct, got {list(names.values())}")
    if values is not None:
        unnamed = sorted(set(int(v) for v in values) - set(names) - {0})
        if unnamed:
            raise ConfigError(f"label value(s) {unnamed} in the label map have no name in "
                              f"label_names {names}")
    return {value: name.strip() for value, name in names.items()}


def check_label_map(label_map, series):
    """`label_map` as an integer array of the series' shape `(D, H, W)`, else ConfigError."""
    labels = np.asarray(label_map)
    if labels.shape != series.shape:
        raise ConfigError(f"label map of shape {labels.shape} does not match the series "
                          f"{series.series_instance_uid} of shape {series.shape} (D, H, W)")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind not in "ui":
        if not np.array_equal(labels, np.round(labels)):
            raise ConfigError(f"label map must hold integer labels, got {labels.dtype} values")
        labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ConfigError("label map must not hold negative labels")
    return labels


def trace_mask(mask):
    """The closed contours of a 2D mask at the 0.5 level, in pixel `(x, y)` = (column, row).

    The mask is zero-padded first so contours touching the image border close too; a contour's
    last point is not repeated. Filling them with the even-odd rule of `polygon_to_mask` gives the
    mask back.

    Example:
        >>> mask = np.zeros((4, 5), bool); mask[1:3, 1:4] = True
        >>> from tfseg.io.contours import polygon_to_mask
        >>> bool((polygon_to_mask(trace_mask(mask)[0], mask.shape) == mask).all())
        True
    """
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask, dtype=np.float64), 1)
    contours = []
    for rc in find_contours(padded, 0.5):
        if len(rc) > 1 and np.array_equal(rc[0], rc[-1]):
            rc = rc[:-1]
        if len(rc) >= 3:
            contours.append(rc[:, ::-1] - 1.0)  # (row, col) in the padded image -> (x, y)
    return contours


def write_rtstruct(label_map, series, path, label_names, colors=None, structure_set_label="tfseg",
                   series_description="tfseg segmentation", series_number=None):
    """Write a label map as an RT Structure Set referencing the series it was segmented on.

    One ROI per named label (also those absent from the map, which get no contours), each slice's
    mask traced at the 0.5 level (`trace_mask`), the points converted to patient coordinates; each
    contour references its slice's SOP instance, the structure set the series and its frame of
    reference. Patient and study attributes are copied from the series. The file is written
    atomically.

    Args:
        label_map: integer array `(D, H, W)` on the series grid (the memory layout of
            `tfseg.io.dicom.read_series`), 0 for background.
        series: a `DicomSeries`, the `Volume` `read_series` returned, or the series folder.
        path: the output file.
        label_names: `{value: name}` or a list naming the labels 1, 2, ...
        colors: optional `{value: (r, g, b)}` display colours (0-255); default a fixed palette.
        structure_set_label: the Structure Set Label (16 characters at most).
        series_description: the new series' description.
        series_number: the new series' number; default the source series number + 1000.

    Returns:
        The path written, as a `pathlib.Path`.

    Raises:
        ConfigError: a label map whose shape is not the series', or labels without names.
        DataError: the series cannot be read or the file cannot be written.
    """
    series = as_dicom_series(series)
    labels = check_label_map(label_map, series)
    names = label_names_dict(label_names, np.unique(labels))
    colors = dict(colors or {})
    source = series.datasets[0]
    frame = series.frame_of_reference_uid
    if not frame:
        raise DataError(series.files[0], "no FrameOfReferenceUID: contours cannot be placed")
    now = datetime.datetime.now()
    sop_uid = generate_uid()

    ds = new_dataset(RTStructureSetStorage, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    for keyword in _PATIENT_STUDY_KEYWORDS:
        setattr(ds, keyword, source.get(keyword, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    number = source.get("SeriesNumber")
    ds.SeriesNumber = int(series_number if series_number is not None else
                          (int(number) + 1000 if number not in (None, "") else 1000))
    ds.SeriesDescription = series_description
    ds.Manufacturer = "tfseg"
    ds.InstanceNumber = 1
    ds.StructureSetLabel = str(structure_set_label)[:16]
    ds.StructureSetDate = ds.InstanceCreationDate
    ds.StructureSetTime = ds.InstanceCreationTime
    ds.ApprovalStatus = "UNAPPROVED"

    images = []
    for item in series.datasets:
        image = Dataset()
        image.ReferencedSOPClassUID = item.SOPClassUID
        image.ReferencedSOPInstanceUID = item.SOPInstanceUID
        images.append(image)
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = series.series_instance_uid
    referenced_series.ContourImageSequence = Sequence(images)
    study = Dataset()
    study.ReferencedSOPClassUID = _STUDY_REFERENCE_CLASS
    study.ReferencedSOPInstanceUID = series.study_instance_uid or generate_uid()
    study.RTReferencedSeriesSequence = Sequence([referenced_series])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame
    frame_item.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_item])

    rois, roi_contours_items, observations = [], [], []
    for number, (value, name) in enumerate(sorted(names.items()), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        item = Dataset()
        item.ROIDisplayColor = list(colors.get(value, _COLORS[(number - 1) % len(_COLORS)]))
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence(_contours_of(labels == value, series))
        roi_contours_items.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = ""
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(roi_contours_items)
    ds.RTROIObservationsSequence = Sequence(observations)
    path = Path(path)
    atomic_write_dataset(path, ds)
    logger.info("wrote %s: %d ROI(s) on series %s", path, len(rois), series.series_instance_uid)
    return path


def _contours_of(mask, series):
    """The Contour Sequence items of a `(D, H, W)` mask: traced per slice, in patient mm."""
    items = []
    for index in np.flatnonzero(mask.any(axis=(1, 2))):
        image = Dataset()
        image.ReferencedSOPClassUID = series.datasets[index].SOPClassUID
        image.ReferencedSOPInstanceUID = series.datasets[index].SOPInstanceUID
        for xy in trace_mask(mask[index]):
            points = series.pixel_to_patient(xy, int(index))
            item = Dataset()
            item.ContourImageSequence = Sequence([image])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourData = [format_number_as_ds(float(v)) for v in points.ravel()]
            items.append(item)
    return items


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
