"""The headers and plane geometry of a DICOM series, without its pixels: what objects that refer to
a series (RT structure sets, segmentations) need to place themselves on it.

`read_series_headers` finds, sorts and checks the slices exactly as `tfseg.io.dicom.read_series`
does (same scan, same sort along the slice normal, same checks, same RAS affine), so a mask built
on a `DicomSeries` has the memory layout `(D, H, W)` of the volume `read_series` returns for the
same files, and can be written to NIfTI with that volume's affine. Patient coordinates here are
DICOM's (LPS, mm); pixel coordinates are `(x, y)` = (column, row), as in `tfseg.io.contours`.

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from tfseg.io.dicom import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(3):
    ...     _ = write_image(folder / f"{k}.dcm", np.zeros((4, 5), np.int16),
    ...                     series_instance_uid="1.2.3", image_position=(-10, -20, 2.0 * k),
    ...                     pixel_spacing=(0.5, 0.25))
    >>> series = read_series_headers(folder)
    >>> series.shape, series.slice_gap
    ((3, 4, 5), 2.0)
    >>> series.patient_to_pixel([[-9.0, -19.0, 4.0]], 2)[0].tolist()   # (x = column, y = row)
    [4.0, 2.0]
"""
import dataclasses
import logging
from pathlib import Path

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.io.dicom import arrange_slices, choose_series, read_dataset
from tfseg.io.volume import Volume
from tfseg.utils.problems import ProblemLog

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DicomSeries:
    """The slices of one DICOM series in slice order, headers only, with their geometry.

    Attributes:
        datasets: one pydicom `Dataset` per slice (read without pixel data), sorted along the
            slice normal as `read_series` sorts them.
        files: the file of each slice, same order.
        affine: the 4x4 NIfTI (RAS+) affine of the series volume, as `read_series` gives it.
        problems: the files left out under ``on_error="skip"`` (as text).
    """

    datasets: list
    files: list
    affine: np.ndarray
    problems: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)
        first = self.datasets[0]
        orientation = np.array([float(v) for v in first.ImageOrientationPatient])
        self.row_cosine, self.col_cosine = orientation[:3], orientation[3:]
        self.normal = np.cross(self.row_cosine, self.col_cosine)
        self.pixel_spacing = tuple(float(v) for v in first.PixelSpacing)  # (between rows, cols)
        self.positions = np.array([[float(v) for v in ds.ImagePositionPatient]
                                   for ds in self.datasets])

    @property
    def shape(self):
        """`(D, H, W)`: slices, rows, columns (the memory layout of `read_series`)."""
        first = self.datasets[0]
        return (len(self.datasets), int(first.Rows), int(first.Columns))

    @property
    def slice_gap(self):
        """The distance between consecutive slices along the normal, in mm (the affine's k step)."""
        return float(np.linalg.norm(self.affine[:3, 2]))

    @property
    def series_instance_uid(self):
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def study_instance_uid(self):
        return str(self.datasets[0].get("StudyInstanceUID", "")) or None

    @property
    def frame_of_reference_uid(self):
        return str(self.datasets[0].get("FrameOfReferenceUID", "")) or None

    @property
    def sop_instance_uids(self):
        """The SOPInstanceUID of each slice, in slice order."""
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    def slice_of(self, sop_instance_uid):
        """The slice index of an SOP instance UID, or None when the series does not hold it."""
        if not hasattr(self, "_index"):
            self._index = {uid: k for k, uid in enumerate(self.sop_instance_uids)}
        return self._index.get(str(sop_instance_uid).strip())

    def along_normal(self, points):
        """The distance of patient points (LPS mm, `(N, 3)`) along the slice normal, in mm,
        measured from the first slice's plane (slice k lies at `k * slice_gap`)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return (points - self.positions[0]) @ self.normal

    def patient_to_pixel(self, points, slice_index):
        """Project patient points (LPS mm, `(N, 3)`) onto the plane of one slice, in pixels.

        Args:
            points: `(N, 3)` patient coordinates.
            slice_index: the slice whose plane and origin are used.

        Returns:
            `(N, 2)` float64 `(x, y)` = (column, row) pixel coordinates (the offset along the
            normal is dropped: an oblique point is projected onto the plane).
        """
        offset = np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.positions[slice_index]
        rows_mm, cols_mm = self.pixel_spacing
        return np.stack([offset @ self.row_cosine / cols_mm, offset @ self.col_cosine / rows_mm],
                        axis=1)

    def pixel_to_patient(self, xy, slice_index):
        """Patient coordinates (LPS mm, `(N, 3)`) of `(x, y)` = (column, row) pixel positions on
        one slice: the inverse of `patient_to_pixel` for points on the slice plane."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        rows_mm, cols_mm = self.pixel_spacing
        return (self.positions[slice_index] + np.outer(xy[:, 0] * cols_mm, self.row_cosine)
                + np.outer(xy[:, 1] * rows_mm, self.col_cosine))


def read_series_headers(source, series_instance_uid=None, on_error="raise", slice_tolerance=0.05):
    """Read the headers of a DICOM series (no pixel data), sorted and checked as `read_series` does.

    Args:
        source: a folder (searched recursively) or a list of files.
        series_instance_uid: the series to read when `source` holds several.
        on_error: "raise" or "skip" for bad single files (see `read_series`).
        slice_tolerance: see `read_series`.

    Returns:
        A `DicomSeries`.

    Raises:
        DataError: as `read_series` (no series, several series and no UID, inconsistent slices,
            uneven gaps), or a slice without SOPInstanceUID.

    Example:
        >>> import pathlib, tempfile
        >>> from tfseg.io.dicom import write_image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> uids = [write_image(folder / f"{k}.dcm", np.zeros((2, 2), np.int16),
        ...                     series_instance_uid="1.2.3", image_position=(0, 0, -k))
        ...         for k in range(3)]
        >>> read_series_headers(folder).sop_instance_uids == uids[::-1]   # sorted along +z
        True
    """
    problems = ProblemLog(on_error)
    if not (isinstance(slice_tolerance, (int, float)) and 0 < slice_tolerance < 1):
        raise ConfigError(f"slice_tolerance must be a fraction between 0 and 1, "
                          f"got {slice_tolerance!r}")
    chosen = choose_series(source, series_instance_uid, problems)
    slices, affine = arrange_slices([chosen.slices[path] for path in chosen.files], slice_tolerance)
    files = [item.header.path for item in slices]
    datasets = []
    for path in files:
        ds = read_dataset(path, stop_before_pixels=True)
        if not str(ds.get("SOPInstanceUID", "")).strip():
            raise DataError(path, "no SOPInstanceUID: the slice cannot be referenced")
        datasets.append(ds)
    return DicomSeries(datasets, files, affine, [str(p) for p in problems.problems])


def as_dicom_series(series, series_instance_uid=None):
    """A `DicomSeries` from what a caller holds: a `DicomSeries`, the `Volume` that
    `tfseg.io.dicom.read_series` returned (its files are re-read, headers only), or a folder/list
    of files.

    Args:
        series: one of the above.
        series_instance_uid: the series to read from a folder holding several.

    Returns:
        A `DicomSeries`.

    Raises:
        ConfigError: a `Volume` that does not come from `read_series` (no DICOM files in its meta).
        DataError: as `read_series_headers`.
    """
    if isinstance(series, DicomSeries):
        return series
    if isinstance(series, Volume):
        files = series.meta.get("files")
        if not files:
            raise ConfigError("the volume does not come from tfseg.io.dicom.read_series (no "
                              "'files' in its meta); pass the DICOM series folder instead")
        return read_series_headers(files, series_instance_uid=series.meta.get(
            "series_instance_uid"))
    if isinstance(series, (str, Path, list, tuple)):
        return read_series_headers(series, series_instance_uid=series_instance_uid)
    raise ConfigError(f"series must be a DicomSeries, a Volume from read_series or a folder, "
                      f"got {type(series).__name__}")

