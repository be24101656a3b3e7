"""A synthetic RSNA-MICCAI task-2 dataset (MGMT status from DICOM series), the embedded default of workflow W5.

Each patient is a synthetic BraTS head (`tfseg.datasets.synthetic`'s drawing: brain, ventricles,
oedema around an enhancing or non-enhancing core, bias field, Rician noise), written as four
16-bit DICOM series in the competition layout::

    <root>/train/<BraTS21ID>/{FLAIR,T1w,T1wCE,T2w}/Image-<n>.dcm
    <root>/train_labels.csv      BraTS21ID,MGMT_value
    <root>/test/<BraTS21ID>/...  unlabelled patients
    <root>/sample_submission.csv BraTS21ID,MGMT_value (0.5 for every test patient)

The image numbers `<n>` (and InstanceNumber) are a random permutation of the slice order, so a
reader must sort by ImagePositionPatient to get the volume back. Axial slices, 1 mm spacing.

The label is learnable from the tumour's appearance, so a pipeline that loses the tumour (a
broken segmenter, a wrong slice order, a leak-free but shuffled label) shows in the AUC:
methylated tumours (MGMT_value 1) have their tumour core (necrosis and enhancing rim, or the
LGG-like core) `contrast` times brighter in every MRI type, unmethylated ones are drawn as
BraTS draws them. Labels alternate over a seeded permutation, so the classes are balanced.

Patient ids start at `first_id`: with the stage-1 BraTS cases written by
`tfseg.datasets.synthetic.write_brats` (ids 0 .. num_cases-1), `first_id < num_cases` makes the
first patients overlap the segmentation data, as 574 patients do in the real releases.

Example:
    >>> import tempfile
    >>> data = write_rsna(tempfile.mkdtemp(), num_train=2, num_test=1, shape=(24, 24, 16))
    >>> sorted(data.labels.items()), data.test_ids
    ([('00000', 0), ('00001', 1)], ('00002',))
"""
import dataclasses
import logging
import os
import shutil
import time

import numpy as np
from pydicom.uid import generate_uid

from tfseg.datasets.rsna import MRI_TYPES, BRATS_MODALITY, rsna_id
from tfseg.datasets.shapes import check_int
from tfseg.datasets.synthetic import (MARKER_NAME, brats_case_arrays, brats_is_lgg, marker_says_complete,
                                      read_marker, reuse_or_write, write_marker)
from tfseg.errors import ConfigError, DataError
from tfseg.io import dicom as dicom_io
from tfseg.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["SyntheticRsna", "write_rsna", "ensure_rsna"]

_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SyntheticRsna:
    """Where a synthetic task-2 dataset lies, and its truth.

    Attributes:
        root: the dataset folder.
        train_dir, test_dir: the labelled and unlabelled patient folders.
        labels_csv: `<root>/train_labels.csv`.
        labels: `{patient: MGMT_value}` of the training patients.
        test_ids: the unlabelled patients.
        test_labels: their true labels (not written to disk; for checking a submission).
    """

    root: str
    train_dir: str
    test_dir: str
    labels_csv: str
    labels: dict
    test_ids: tuple
    test_labels: dict


def _check_args(num_train, num_test, shape, seed, first_id, contrast):
    check_int("num_train", num_train, 2, 5000)
    check_int("num_test", num_test, 0, 5000)
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("first_id", first_id, 0, 99999 - num_train - num_test)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 3:
        raise ConfigError(f"shape must be three sizes (x, y, z), got {shape!r}")
    for size in shape:
        check_int("each size of shape", size, 16, 512)
    if not 0.2 <= float(contrast) <= 5.0:
        raise ConfigError(f"contrast must be in [0.2, 5], got {contrast!r}")
    return dict(num_train=int(num_train), num_test=int(num_test), shape=[int(s) for s in shape], seed=int(seed),
                first_id=int(first_id), contrast=float(contrast))


def _labels(kwargs):
    """Balanced 0/1 labels of all patients (train then test), alternating over a seeded permutation."""
    total = kwargs["num_train"] + kwargs["num_test"]
    order = np.random.default_rng([kwargs["seed"], 7]).permutation(total)
    labels = np.zeros(total, int)
    labels[order[::2]] = 1
    return labels


def _result(root, kwargs):
    ids = [rsna_id(kwargs["first_id"] + k) for k in range(kwargs["num_train"] + kwargs["num_test"])]
    labels = _labels(kwargs)
    train = {p: int(v) for p, v in zip(ids[:kwargs["num_train"]], labels)}
    test = {p: int(v) for p, v in zip(ids[kwargs["num_train"]:], labels[kwargs["num_train"]:])}
    return SyntheticRsna(root, os.path.join(root, "train"), os.path.join(root, "test"),
                         os.path.join(root, "train_labels.csv"), train, tuple(test), test)


def patient_volumes(shape, seed, index, label, contrast):
    """The four series of one patient, `{mri_type: int16 (z, y, x)}`, and its BraTS label map `(z, y, x)`.

    Example:
        >>> volumes, label = patient_volumes((24, 24, 16), 0, 0, 1, 1.6)
        >>> volumes["FLAIR"].shape, label.shape
        ((16, 24, 24), (16, 24, 24))
    """
    rng = np.random.default_rng([seed, 100_003, index])
    images, label_map = brats_case_arrays(tuple(shape), rng, lgg=brats_is_lgg(index), small=False)
    core = (label_map == 1) | (label_map == 4)
    volumes = {}
    for mri_type in MRI_TYPES:
        image = images[BRATS_MODALITY[mri_type]].astype(np.float32)
        if label:
            image[core] *= contrast
        stored = np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)
        volumes[mri_type] = stored.transpose(2, 1, 0)
    return volumes, label_map.transpose(2, 1, 0)


def _write_patient(folder, patient, volumes, seed):
    rng = np.random.default_rng([seed, int(patient)])
    study = generate_uid(entropy_srcs=[str(seed), patient, "study"])
    for number, mri_type in enumerate(MRI_TYPES, start=1):
        volume = volumes[mri_type]
        series = generate_uid(entropy_srcs=[str(seed), patient, mri_type])
        numbers = rng.permutation(len(volume)) + 1   # file names and InstanceNumber not in slice order
        for k, image in enumerate(np.ascontiguousarray(volume)):
            dicom_io.write_image(os.path.join(folder, mri_type, f"Image-{numbers[k]}.dcm"), image,
                                 patient_id=patient, study_instance_uid=study, series_instance_uid=series,
                                 series_number=number, instance_number=int(numbers[k]),
                                 image_position=(0.0, 0.0, float(k)), slice_thickness=1.0, description=mri_type)


def write_rsna(root, num_train=24, num_test=4, shape=(64, 64, 32), seed=0, first_id=0, contrast=1.6):
    """Write a synthetic task-2 dataset (see the module docstring) from a seed.

    Args:
        root: the dataset folder; empty, or holding a dataset written here before (replaced).
        num_train: labelled patients (at least 2).
        num_test: unlabelled patients.
        shape: (x, y, z) size of each series (z slices of y rows by x columns).
        seed: integer seed; the same arguments give the same pixels.
        first_id: the first patient id.
        contrast: the tumour core brightening of methylated tumours.

    Returns:
        A `SyntheticRsna`.

    Raises:
        ConfigError: an argument out of range.
        DataError: `root` holds other files.
    """
    kwargs = _check_args(num_train, num_test, shape, seed, first_id, contrast)
    root = os.path.abspath(os.fspath(root))
    os.makedirs(root, exist_ok=True)
    marker = read_marker(root)
    present = sorted(n for n in os.listdir(root) if not n.startswith(".") and n != MARKER_NAME)
    if present:
        if not marker or marker.get("dataset") != "rsna":
            raise DataError(root, f"already holds {', '.join(present[:3])} not written by write_rsna; "
                                  "choose an empty folder")
        for name in present:
            path = os.path.join(root, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    content = {"dataset": "rsna", "version": _FORMAT_VERSION, "kwargs": kwargs}
    write_marker(root, {**content, "complete": False})
    started = time.perf_counter()
    result = _result(root, kwargs)
    everyone = [*((p, v, result.train_dir) for p, v in result.labels.items()),
                *((p, v, result.test_dir) for p, v in result.test_labels.items())]
    for index, (patient, label, parent) in enumerate(everyone):
        volumes, _ = patient_volumes(kwargs["shape"], kwargs["seed"], kwargs["first_id"] + index, label,
                                     kwargs["contrast"])
        _write_patient(os.path.join(parent, patient), patient, volumes, kwargs["seed"])
    os.makedirs(result.test_dir, exist_ok=True)
    atomic_write_text(result.labels_csv, "BraTS21ID,MGMT_value\n"
                      + "".join(f"{p},{v}\n" for p, v in result.labels.items()))
    atomic_write_text(os.path.join(root, "sample_submission.csv"), "BraTS21ID,MGMT_value\n"
                      + "".join(f"{p},0.5\n" for p in result.test_ids))
    write_marker(root, {**content, "complete": True})
    logger.info("wrote synthetic RSNA task-2 dataset to %s: %d + %d patients of %s in %.1f s", root,
                kwargs["num_train"], kwargs["num_test"], "x".join(map(str, kwargs["shape"])),
                time.perf_counter() - started)
    return result


def _is_complete(root, kwargs):
    if not marker_says_complete(root, "rsna", _FORMAT_VERSION, kwargs):
        return False
    result = _result(root, kwargs)
    folders = [os.path.join(result.train_dir, p) for p in result.labels]
    folders += [os.path.join(result.test_dir, p) for p in result.test_ids]
    return os.path.isfile(result.labels_csv) and all(os.path.isdir(os.path.join(f, t))
                                                     for f in folders for t in MRI_TYPES)


def ensure_rsna(root, num_train=24, num_test=4, shape=(64, 64, 32), seed=0, first_id=0, contrast=1.6):
    """The synthetic task-2 dataset of these arguments at `root`, written only if it is not there yet.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> a = ensure_rsna(root, num_train=2, num_test=0, shape=(16, 16, 16))
        >>> ensure_rsna(root, num_train=2, num_test=0, shape=(16, 16, 16)) == a
        True
    """
    kwargs = _check_args(num_train, num_test, shape, seed, first_id, contrast)
    return reuse_or_write("RSNA task-2", root, kwargs, _is_complete, _result, write_rsna)
