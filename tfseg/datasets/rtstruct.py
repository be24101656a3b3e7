"""Training records from DICOM series with RT structure sets: `series folder + RTSTRUCT` pairs.

Hospitals keep their labels as RT structure sets whose ROI names vary from one planner to the
next ("Heart", "heart", "HEART "); a user table maps names to class indices,
case-insensitively and ignoring surrounding spaces, with several names allowed per class
(synonyms)::

    classes = {"Heart": 1, "Lung_L": 2, "Lt Lung": 2, "Lung_R": 3, "Rt Lung": 3}

`find_rtstruct_cases` checks each pair from headers only (the structure set parses, the series it
references is in the folder, the frames of reference agree, each class has a ROI) and returns the
records with a report of the ROI names the table did not match (to extend the table) and the
classes missing per case. A pair that cannot be used goes through the `on_error` policy
(`tfseg.utils.problems`). `load_case` reads the image volume and rasterizes the label map.

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from tfseg.io.dicom import write_image
    >>> from tfseg.io.rtstruct import write_rtstruct
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(2):
    ...     _ = write_image(root / "ct" / f"{k}.dcm", np.zeros((8, 8), np.int16),
    ...                     series_instance_uid="1.2.3", image_position=(0, 0, k))
    >>> labels = np.zeros((2, 8, 8), np.uint8); labels[1, 2:5, 2:6] = 1; labels[0, :2, :2] = 2
    >>> _ = write_rtstruct(labels, root / "ct", root / "rs.dcm", {1: "HEART", 2: "Couch"})
    >>> found = find_rtstruct_cases([(root / "ct", root / "rs.dcm")], {"heart": 1})
    >>> [(r.case_id, r.rois) for r in found.records], found.unmatched
    ([('ct', (('HEART', 1),))], {'Couch': ['ct']})
    >>> image, label_map = load_case(found.records[0])
    >>> image.shape, int(label_map.sum())
    ((2, 8, 8), 12)
"""
import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pydicom

from tfseg.errors import ConfigError, DataError
from tfseg.io.dicom import list_series, read_series
from tfseg.io.rtstruct import list_rois, rasterize_rois, read_rtstruct, referenced_series_uids
from tfseg.utils.problems import problem_log

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RtstructRecord:
    """One case: an image series and the structure set labelling it.

    Attributes:
        case_id: the case name (the series folder's name unless given).
        series_dir: the folder holding the image series.
        rtstruct: the RTSTRUCT file.
        series_instance_uid: the series of `series_dir` the structure set refers to.
        rois: `((ROI name as in the file, class index), ...)` for the ROIs the table matched.
    """

    case_id: str
    series_dir: str
    rtstruct: str
    series_instance_uid: str
    rois: tuple

    @property
    def case(self):
        """The case id (the key `tfseg.datasets.splits.split_by_patient` groups on)."""
        return self.case_id


@dataclasses.dataclass
class RtstructCases:
    """What `find_rtstruct_cases` found.

    Attributes:
        records: the usable cases, in input order.
        unmatched: `{ROI name: [case ids]}` for the ROI names the table does not map.
        missing: `{class index: [case ids]}` for the classes without a ROI in a case.
        problems: the `ProblemLog` the unusable pairs went to.
    """

    records: list
    unmatched: dict
    missing: dict
    problems: object

    def report(self):
        """A short text: cases kept and skipped, unmatched ROI names, missing classes."""
        lines = [f"{len(self.records)} case(s) with structure sets, {len(self.problems)} skipped"]
        if self.unmatched:
            lines.append("ROI names not in the class table (add them to use them):")
            lines += [f"  {name!r}: {len(cases)} case(s)"
                      for name, cases in sorted(self.unmatched.items(), key=lambda kv: -len(kv[1]))]
        if self.missing:
            lines.append("classes without a ROI:")
            lines += [f"  class {index}: {', '.join(cases)}"
                      for index, cases in sorted(self.missing.items())]
        summary = self.problems.summary()
        return "\n".join(lines + ([summary] if summary else []))


def normalize_class_table(classes):
    """`{name: index}` with names stripped and case-folded, indices checked (integers >= 1).

    Example:
        >>> normalize_class_table({" Heart": 1, "LUNG_L": 2})
        {'heart': 1, 'lung_l': 2}
    """
    if not isinstance(classes, dict) or not classes:
        raise ConfigError(f"classes must be a non-empty dict {{ROI name: class index}}, "
                          f"got {classes!r}")
    table = {}
    for name, index in classes.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"class table names must be non-empty strings, got {name!r}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise ConfigError(f"class index of {name!r} must be an integer >= 1 (0 is "
                              f"background), got {index!r}")
        key = name.strip().casefold()
        if table.get(key, index) != index:
            raise ConfigError(f"ROI name {name!r} is mapped to two classes, {table[key]} and "
                              f"{index}")
        table[key] = index
    return table


def find_rtstruct_cases(pairs, classes, require_all=True, on_error="skip", problems=None):
    """Turn `(series folder, RTSTRUCT file)` pairs into training records (headers only).

    Args:
        pairs: a list of `(series_dir, rtstruct_path)`, or a dict `{case id: (series_dir,
            rtstruct_path)}`.
        classes: `{ROI name: class index >= 1}`, matched case-insensitively (see the module doc).
        require_all: a case without a ROI for every class in the table is a problem (True), or
            is kept with the classes it has (False; the label map then lacks those classes).
        on_error: "skip" (warn, record, leave the case out) or "raise" (DataError).
        problems: an existing `ProblemLog` to append to; its policy is used when given.

    Returns:
        An `RtstructCases` (records, unmatched names, missing classes, problems).

    Raises:
        ConfigError: a bad class table or policy.
        DataError: a bad pair under "raise", or no usable case at all.
    """
    problems = problem_log(problems, on_error)
    table = normalize_class_table(classes)
    items = pairs.items() if isinstance(pairs, dict) else [(None, pair) for pair in pairs]
    records, unmatched, missing = [], {}, {}
    for case_id, pair in items:
        try:
            series_dir, rtstruct = pair
        except (TypeError, ValueError):
            raise ConfigError(f"each pair must be (series folder, RTSTRUCT file), got {pair!r}"
                              ) from None
        case_id = str(case_id) if case_id is not None else Path(series_dir).name
        record = _check_pair(case_id, os.fspath(series_dir), os.fspath(rtstruct), table,
                             require_all, problems, unmatched, missing)
        if record is not None:
            records.append(record)
    if not records:
        raise DataError(", ".join(str(p[0]) for _, p in list(items)[:3]) or "pairs",
                        f"no usable series + RTSTRUCT pair ({len(problems)} problem(s))"
                        + (f":\n{problems.summary()}" if len(problems) else ""))
    found = RtstructCases(records, unmatched, missing, problems)
    logger.info("%s", found.report())
    return found


def _check_pair(case_id, series_dir, rtstruct, table, require_all, problems, unmatched, missing):
    """The record of one pair, or None (reported) when it cannot be used."""
    try:
        ds = read_rtstruct(rtstruct)
        references = referenced_series_uids(ds)
        series = {s.series_instance_uid: s for s in list_series(series_dir)}
    except DataError as error:
        problems.report_error(error)
        return None
    chosen = [uid for uid in references if uid in series]
    if not chosen and not references and len(series) == 1:
        chosen = list(series)  # a structure set without series reference, one series: that one
    if not chosen:
        problems.report(rtstruct, f"refers to series {references or 'none'}, but {series_dir} "
                                  f"holds {sorted(series)}")
        return None
    uid = chosen[0]
    first = series[uid].files[0]
    frame = str(pydicom.dcmread(first, stop_before_pixels=True,
                                specific_tags=["FrameOfReferenceUID"]).get(
                                    "FrameOfReferenceUID", "")).strip()
    rois, found = [], set()
    for roi in list_rois(ds):
        index = table.get(roi.name.strip().casefold())
        if index is None:
            unmatched.setdefault(roi.name, []).append(case_id)
            continue
        if roi.frame_of_reference_uid and frame and roi.frame_of_reference_uid != frame:
            problems.report(rtstruct, f"ROI {roi.name!r} is in frame of reference "
                                      f"{roi.frame_of_reference_uid}, series {uid} in {frame}")
            return None
        rois.append((roi.name, index))
        found.add(index)
    absent = sorted(set(table.values()) - found)
    for index in absent:
        missing.setdefault(index, []).append(case_id)
    if absent and require_all:
        names = sorted(name for name, index in table.items() if index in absent)
        problems.report(rtstruct, f"no ROI for class(es) {absent} (table names {names}); its "
                                  f"ROIs are {[r.name for r in list_rois(ds)]}")
        return None
    return RtstructRecord(case_id, series_dir, rtstruct, uid, tuple(rois))


def load_case(record):
    """Read a record's image volume and rasterize its label map on the same grid.

    Args:
        record: an `RtstructRecord`.

    Returns:
        `(volume, labels)`: the `Volume` of `tfseg.io.dicom.read_series` and a uint8 label map
        `(D, H, W)` (where ROIs overlap, the larger class index wins).

    Raises:
        DataError: the series or the structure set cannot be read or do not fit together.
    """
    volume = read_series(record.series_dir, series_instance_uid=record.series_instance_uid)
    if not record.rois:
        return volume, np.zeros(volume.spatial_shape, np.uint8)
    ds = read_rtstruct(record.rtstruct)
    numbers = {roi.name: roi.number for roi in list_rois(ds)}
    labels = rasterize_rois(ds, volume, {numbers[name]: index for name, index in record.rois})
    return volume, labels
