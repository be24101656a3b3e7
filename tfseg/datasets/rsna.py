"""The RSNA-MICCAI 2021 brain tumour radiogenomic classification data (BraTS 2021 task 2): find patients, read labels.

Layout of the competition release (one DICOM series per MRI type and patient)::

    <root>/train/00000/FLAIR/Image-1.dcm ... Image-<n>.dcm
    <root>/train/00000/{T1w,T1wCE,T2w}/Image-<n>.dcm
    <root>/train_labels.csv          BraTS21ID,MGMT_value   (0/1; ids written without zero padding)
    <root>/test/00001/...            unlabelled patients (the submission)

A patient id is the 5-digit, zero-padded BraTS 2021 id ("00012" is BraTS2021_00012 of task 1),
whatever the CSV writes ("12" or "00012"). The image numbers in the file names are not the slice
order: series are read with `tfseg.io.dicom.read_series`, which sorts slices by
ImagePositionPatient along the slice normal.

Splits are by patient (`split_patients`), with an explicit check that no patient is in two
parts (`check_disjoint`), and the option to leave out the patients a stage-1 segmenter was
trained on (`brats_to_rsna_id` maps BraTS case ids to patient ids).

Example:
    >>> rsna_id(12), brats_to_rsna_id("BraTS2021_00012"), rsna_to_brats_id("00012")
    ('00012', '00012', 'BraTS2021_00012')
"""
import csv
import dataclasses
import logging
import os
import re

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.problems import problem_log

logger = logging.getLogger(__name__)

__all__ = ["MRI_TYPES", "RsnaPatient", "rsna_id", "brats_to_rsna_id", "rsna_to_brats_id", "read_labels",
           "find_rsna", "read_patient_series", "split_patients", "check_disjoint"]

#: The MRI type folders of a patient, in the order used everywhere.
MRI_TYPES = ("FLAIR", "T1w", "T1wCE", "T2w")
#: BraTS modality name of each MRI type (for pooling stage-1 slices).
BRATS_MODALITY = {"FLAIR": "flair", "T1w": "t1", "T1wCE": "t1ce", "T2w": "t2"}


@dataclasses.dataclass(frozen=True)
class RsnaPatient:
    """One patient of the task-2 data.

    Attributes:
        patient: the 5-digit id ("00012").
        series: `{mri_type: folder}` of the patient's DICOM series.
        label: MGMT_value (0/1), or None for an unlabelled patient.
    """

    patient: str
    series: dict
    label: int | None = None


def rsna_id(value):
    """The 5-digit zero-padded patient id of `value` (an int, "12" or "00012").

    Raises:
        ConfigError: `value` is not a whole number in 0..99999.

    Example:
        >>> rsna_id("7"), rsna_id(123)
        ('00007', '00123')
    """
    text = str(value).strip()
    if not text.isdigit() or int(text) > 99999:
        raise ConfigError(f"a BraTS21ID must be a whole number of at most 5 digits, got {value!r}")
    return f"{int(text):05d}"


def brats_to_rsna_id(case_id):
    """The task-2 patient id of a BraTS 2021 case id ("BraTS2021_00012" -> "00012"); None if it is not one.

    Example:
        >>> brats_to_rsna_id("BraTS2021_01666"), brats_to_rsna_id("Brats18_TCIA01_131_1")
        ('01666', None)
    """
    match = re.fullmatch(r"BraTS2021_(\d{5})", str(case_id).strip())
    return match.group(1) if match else None


def rsna_to_brats_id(patient):
    """The BraTS 2021 task-1 case id of a task-2 patient id."""
    return f"BraTS2021_{rsna_id(patient)}"


def read_labels(path):
    """`{patient id: 0/1}` from a `BraTS21ID,MGMT_value` CSV.

    Raises:
        DataError: the file is unreadable, lacks the two columns, or a row has a bad id, a value
            other than 0/1, or a patient listed twice (the message gives the line).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "train_labels.csv")
        >>> _ = open(path, "w").write("BraTS21ID,MGMT_value\\n0,1\\n2,0\\n")
        >>> read_labels(path)
        {'00000': 1, '00002': 0}
    """
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
    except OSError as error:
        raise DataError(path, f"cannot read the labels: {error.strerror or error}") from error
    if not rows or [c.strip() for c in rows[0][:2]] != ["BraTS21ID", "MGMT_value"]:
        found = ",".join(rows[0]) if rows else "nothing"
        raise DataError(path, f"the header must be 'BraTS21ID,MGMT_value', got {found}")
    labels = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            patient = rsna_id(row[0])
        except ConfigError as error:
            raise DataError(path, str(error), line=line) from None
        value = row[1].strip() if len(row) > 1 else ""
        if value not in ("0", "1"):
            raise DataError(path, f"MGMT_value of {patient} must be 0 or 1, got {value!r}", line=line)
        if patient in labels:
            raise DataError(path, f"patient {patient} is listed twice", line=line)
        labels[patient] = int(value)
    return labels


def find_rsna(folder, labels=None, mri_types=MRI_TYPES, on_error="raise", problems=None):
    """The patients in a task-2 folder (`<folder>/<patient>/<MRI type>/*.dcm`), sorted by id.

    Args:
        folder: e.g. `<root>/train` or `<root>/test`.
        labels: a labels CSV path, a `{patient: label}` dict, or None (unlabelled patients).
        mri_types: the MRI types every patient must have.
        on_error: "raise" or "skip" a patient with a missing series or without a label.
        problems: optional `ProblemLog` that skipped patients are added to.

    Returns:
        A list of `RsnaPatient`.

    Raises:
        DataError: `folder` is missing or holds no patient, or a bad patient under "raise".
    """
    unknown = [t for t in mri_types if t not in MRI_TYPES]
    if unknown or not mri_types:
        raise ConfigError(f"mri_types must be a non-empty subset of {MRI_TYPES}, got {tuple(mri_types)}")
    if not os.path.isdir(folder):
        raise DataError(folder, "no such folder of patients")
    known = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else labels
    log = problem_log(problems, on_error)
    patients = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        if not name.isdigit():
            logger.info("passing over %s: not a patient folder (the name is not a BraTS21ID)", path)
            continue
        patient = rsna_id(name)
        series = {}
        for mri_type in mri_types:
            where = os.path.join(path, mri_type)
            if not os.path.isdir(where) or not any(f.lower().endswith(".dcm") for f in os.listdir(where)):
                log.report(where, f"patient {patient} has no {mri_type} series (no .dcm file)")
                break
            series[mri_type] = where
        else:
            label = None
            if known is not None:
                label = known.get(patient)
                if label is None:
                    log.report(path, f"patient {patient} has no MGMT_value in the labels")
                    continue
            patients.append(RsnaPatient(patient, series, label))
    if not patients:
        raise DataError(folder, "holds no patient folder with all of " + ", ".join(mri_types))
    logger.info("%d patients in %s", len(patients), folder)
    return patients


def read_patient_series(patient, mri_type, on_error="raise"):
    """One series of a patient as a `(N, H, W)` float32 array, slices in position order.

    Raises:
        DataError: the series cannot be read (see `tfseg.io.dicom.read_series`).
    """
    from tfseg.io.dicom import read_series

    return np.asarray(read_series(patient.series[mri_type], on_error=on_error).array, np.float32)


def check_disjoint(**parts):
    """Raise if a patient is in two of the named parts (lists of `RsnaPatient` or of ids).

    Raises:
        ConfigError: naming the first patient found in two parts, and the parts.

    Example:
        >>> check_disjoint(train=["00001", "00002"], val=["00003"])
        >>> check_disjoint(train=["00001"], val=["00001"])
        Traceback (most recent call last):
        ...
        tfseg.errors.ConfigError: patient 00001 is in both 'train' and 'val': the split leaks patients
    """
    seen = {}
    for name, items in parts.items():
        for item in items:
            patient = getattr(item, "patient", item)
            if patient in seen and seen[patient] != name:
                raise ConfigError(f"patient {patient} is in both {seen[patient]!r} and {name!r}: "
                                  "the split leaks patients")
            seen[patient] = name


def split_patients(patients, val_fraction=0.2, seed=0, exclude=(), stratify=True):
    """Train and validation patients, split by patient, after leaving out `exclude`.

    With `stratify`, the patients of each label (None counting as one) are split separately, so
    both parts keep the label balance (a small validation set then has both classes).

    Args:
        patients: `RsnaPatient` records (one per patient).
        val_fraction: share of the patients held out (20% in the seed).
        seed: seed of the shuffle.
        exclude: patient ids (or BraTS 2021 case ids) to leave out, e.g. the stage-1 training cases.
        stratify: split each label's patients separately.

    Returns:
        `(train, val)` lists of `RsnaPatient`.

    Raises:
        ConfigError: a patient listed twice, or nothing left to train on.

    Example:
        >>> records = [RsnaPatient(f"{k:05d}", {}, k % 2) for k in range(10)]
        >>> train, val = split_patients(records, 0.2, exclude=["BraTS2021_00000"])
        >>> len(train), len(val)
        (7, 2)
    """
    from tfseg.datasets.splits import split_by_patient

    ids = [p.patient for p in patients]
    duplicated = sorted({p for p in ids if ids.count(p) > 1})
    if duplicated:
        raise ConfigError(f"patient {duplicated[0]} appears in more than one record")
    drop = {brats_to_rsna_id(e) or rsna_id(e) for e in exclude}
    kept = [p for p in patients if p.patient not in drop]
    if len(kept) < len(patients):
        logger.info("left out %d patient(s) of the stage-1 training data", len(patients) - len(kept))
    if not kept:
        raise ConfigError("no patient left after leaving out the excluded ones")
    groups = {}
    for patient in kept:
        groups.setdefault(patient.label if stratify else None, []).append(patient)
    train, val = [], []
    for label in sorted(groups, key=str):
        split = split_by_patient(groups[label], val_fraction=val_fraction, seed=seed)
        train += split.train
        val += split.val
    order = {p.patient: k for k, p in enumerate(kept)}
    train.sort(key=lambda p: order[p.patient])
    val.sort(key=lambda p: order[p.patient])
    check_disjoint(train=train, val=val)
    return train, val
