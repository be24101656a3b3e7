"""DICOM Segmentation (SEG) objects: a label map on a CT/MR series, written and read with highdicom.

`write_dicom_seg` writes one binary segment per named label, referencing the source series (its
study, frame of reference and every SOP instance a frame was derived from), so PACS viewers
(OHIF, 3D Slicer, Horos...) overlay it on the series. Segment numbers run 1..N over the named
labels in increasing label value (DICOM requires consecutive numbers); each segment's label is the
workflow's name for it. `read_dicom_seg` puts a SEG back on the series grid, exactly.

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from tfseg.io.dicom import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(3):
    ...     _ = write_image(folder / "ct" / f"{k}.dcm", np.zeros((6, 6), np.int16), modality="CT",
    ...                     study_instance_uid="1.2.3.1", series_instance_uid="1.2.3",
    ...                     image_position=(0, 0, 2.0 * k))
    >>> labels = np.zeros((3, 6, 6), np.uint8)
    >>> labels[1, 1:4, 2:5] = 2
    >>> path = write_dicom_seg(labels, folder / "ct", folder / "seg.dcm", {2: "Liver"})
    >>> back, names = read_dicom_seg(path, folder / "ct", label_names={2: "Liver"})
    >>> bool((back == labels).all()), names
    (True, {2: 'Liver'})
"""
import copy
import logging
from pathlib import Path

import numpy as np
from pydicom.valuerep import format_number_as_ds

from tfseg.errors import ConfigError, DataError
from tfseg.io.dicom_series import as_dicom_series
from tfseg.io.rtstruct import check_label_map, label_names_dict
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)


def write_dicom_seg(label_map, series, path, label_names, series_description="tfseg segmentation",
                    series_number=None, algorithm_name="tfseg", algorithm_version=None):
    """Write a label map as a binary DICOM SEG referencing its source series (atomically).

    Args:
        label_map: integer array `(D, H, W)` on the series grid (the memory layout of
            `tfseg.io.dicom.read_series`), 0 for background.
        series: a `DicomSeries`, the `Volume` `read_series` returned, or the series folder.
        path: the output file.
        label_names: `{value: name}` or a list naming the labels 1, 2, ...; every non-zero value in
            the map needs a name. Segment k (1-based) is the k-th named value in increasing order.
        series_description: the new series' description.
        series_number: the new series' number; default the source series number + 2000.
        algorithm_name: the algorithm named in each segment's description.
        algorithm_version: its version; default tfseg's.

    Returns:
        The path written, as a `pathlib.Path`.

    Raises:
        ConfigError: a label map whose shape is not the series', or labels without names.
        DataError: the series cannot be read, highdicom rejects it, or the file cannot be written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    import tfseg

    series = as_dicom_series(series)
    labels = check_label_map(label_map, series)
    names = label_names_dict(label_names, np.unique(labels))
    values = sorted(names)
    lookup = np.zeros(int(max(values[-1], labels.max())) + 1, dtype=np.uint16)
    lookup[values] = np.arange(1, len(values) + 1)
    segments = lookup[labels]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence,
        version=algorithm_version or tfseg.__version__)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=names[value],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm)
        for number, value in enumerate(values, start=1)]
    number = series.datasets[0].get("SeriesNumber")
    if series_number is None:
        series_number = int(number) + 2000 if number not in (None, "") else 2000
    dtype = np.uint8 if len(values) < 256 else np.uint16
    sources = _with_thickness(series)
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=segments.astype(dtype),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=generate_uid(),
            series_number=int(series_number), sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="tfseg", manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version or tfseg.__version__, device_serial_number="0",
            series_description=series_description, omit_empty_frames=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise DataError(series.files[0], f"highdicom cannot build a SEG on this series: "
                                         f"{type(exc).__name__}: {exc}") from None
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            seg.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        raise DataError(path, f"cannot write: {exc.strerror or exc}") from None
    logger.info("wrote %s: %d segment(s) on series %s", path, len(values),
                series.series_instance_uid)
    return path


def _with_thickness(series):
    """The series' headers, with the slice gap as SliceThickness where it is empty.

    SliceThickness may be empty in CT/MR images, but highdicom copies it into the SEG's Pixel
    Measures Sequence, where it is required (and highdicom cannot read the file back without it).
    """
    try:
        thickness = float(series.datasets[0].get("SliceThickness") or 0)
    except (TypeError, ValueError):
        thickness = 0.0
    if thickness > 0:
        return series.datasets
    patched = []
    for ds in series.datasets:
        ds = copy.copy(ds)  # shallow: only the one element is replaced
        ds.SliceThickness = format_number_as_ds(series.slice_gap)
        patched.append(ds)
    return patched


def read_dicom_seg(path, series, label_names=None):
    """Read a DICOM SEG back onto the grid of its source series, as a label map.

    Args:
        path: the SEG file.
        series: its source series (a `DicomSeries`, the `Volume` `read_series` returned, or a
            folder).
        label_names: optional `{value: name}` (or list for 1, 2, ...): segments are then given the
            value of the label with their name (case-insensitive), else their segment number.

    Returns:
        `(labels, names)`: an integer array `(D, H, W)` and `{value: segment label}`.

    Raises:
        DataError: not a SEG, a segment name missing from `label_names`, or segments that overlap.
    """
    import highdicom as hd

    series = as_dicom_series(series)
    try:
        seg = hd.seg.segread(path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except Exception as exc:  # pydicom/highdicom raise many types on a wrong file
        raise DataError(path, f"not a readable DICOM SEG ({type(exc).__name__}: {exc})") from None
    numbers = list(seg.segment_numbers)
    seg_names = {n: str(seg.get_segment_description(n).SegmentLabel) for n in numbers}
    value_of = {n: n for n in numbers}
    if label_names is not None:
        by_name = {name.casefold(): value for value, name in label_names_dict(label_names).items()}
        missing = [name for name in seg_names.values() if name.casefold() not in by_name]
        if missing:
            raise DataError(path, f"segment(s) {missing} not in label_names {by_name}")
        value_of = {n: by_name[name.casefold()] for n, name in seg_names.items()}
    referenced = set(seg.get_source_image_uids() and
                     [uid for _, _, uid in seg.get_source_image_uids()])
    uids = [uid for uid in series.sop_instance_uids if uid in referenced]
    depth, height, width = series.shape
    dtype = np.uint8 if max(value_of.values(), default=0) < 256 else np.uint16
    labels = np.zeros((depth, height, width), dtype=dtype)
    if uids:
        try:
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=True,
                relabel=False)
        except ValueError as exc:
            raise DataError(path, f"cannot map the SEG onto series {series.series_instance_uid}: "
                                  f"{exc}") from None
        lookup = np.zeros(max(numbers) + 1, dtype=dtype)
        for n, value in value_of.items():
            lookup[n] = value
        for uid, frame in zip(uids, pixels):
            labels[series.slice_of(uid)] = lookup[frame]
    elif numbers:
        raise ConfigError(f"{path}: the SEG references no SOP instance of series "
                          f"{series.series_instance_uid}")
    return labels, {value_of[n]: seg_names[n] for n in numbers}
