"""The lower-grade glioma MRI dataset of Kaggle (lgg-mri-segmentation): find slices, load samples.

Two on-disk layouts are recognised:

- **Kaggle** (the download)::

      kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif        RGB uint8 slice
      kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1_mask.tif   0/255 FLAIR abnormality
      kaggle_3m/data.csv, kaggle_3m/README.md                              (ignored)

  The patient is the folder name, the slice index the number after the last ``_`` (1-based).
- **Flat**: ``train_image/<name>.tif`` with ``train_mask/<name>.tif`` or ``<name>_mask.tif``
  (``.tiff`` and ``.png`` are accepted too). The patient is the ``TCGA_XX_XXXX_YYYYMMDD`` prefix of
  the name, else the name without its trailing ``_<n>``.

`find_lgg` accepts the folder holding ``kaggle_3m/``, ``kaggle_3m`` itself, or the folder holding
``train_image/`` and ``train_mask/``. Each slice's three channels are the pre-contrast, FLAIR and
post-contrast images (`CHANNELS`); the mask marks the FLAIR abnormality.

Example:
    >>> import tempfile
    >>> from tfseg.datasets.synthetic_lgg import write_lgg
    >>> ds = write_lgg(tempfile.mkdtemp(), num_patients=2, slices_per_patient=3, image_size=32)
    >>> records = find_lgg(ds.root)
    >>> len(records), records[0].slice_index, records[0].patient == records[0].case
    (6, 1, True)
    >>> image, mask = load_sample(records[0])
    >>> image.shape, image.dtype.name, mask.shape, mask.dtype.name
    ((32, 32, 3), 'float32', (32, 32), 'uint8')
"""
import dataclasses
import logging
import os
import re

import numpy as np

from tfseg.errors import DataError
from tfseg.io.images import read_image, read_mask
from tfseg.utils.problems import problem_log

logger = logging.getLogger(__name__)

#: The three channels of every slice, in file order.
CHANNELS = ("pre-contrast", "flair", "post-contrast")
KAGGLE_DIR = "kaggle_3m"
FLAT_IMAGE_DIR = "train_image"
FLAT_MASK_DIR = "train_mask"
MASK_SUFFIX = "_mask"
#: File name endings taken as slices or masks (case-insensitive); other files are ignored.
SLICE_SUFFIXES = (".tif", ".tiff", ".png")

LAYOUT = (f"'{KAGGLE_DIR}/<patient>/<patient>_<n>.tif' with '<patient>_<n>{MASK_SUFFIX}.tif' (pass the folder "
          f"holding {KAGGLE_DIR}/ or {KAGGLE_DIR} itself), or '{FLAT_IMAGE_DIR}/<name>.tif' with "
          f"'{FLAT_MASK_DIR}/<name>.tif' or '<name>{MASK_SUFFIX}.tif'")

_SLICE_NAME = re.compile(r"^(?P<stem>.+?)_(?P<index>\d+)$")
_PATIENT_PREFIX = re.compile(r"^(TCGA_[A-Za-z0-9]{2}_[A-Za-z0-9]{4}_\d{8})(?:_|$)")


@dataclasses.dataclass(frozen=True)
class LggRecord:
    """One slice of the LGG dataset: its image and mask files and where it belongs.

    Attributes:
        image: path of the 3-channel slice.
        mask: path of its binary mask.
        patient: patient id, e.g. ``TCGA_CS_4941_19960909``.
        slice_index: the slice number in the file name (1-based in the Kaggle data).
    """

    image: str
    mask: str
    patient: str
    slice_index: int

    @property
    def case(self):
        """The patient id (the name `split_by_patient` and other datasets' code use)."""
        return self.patient


def _listdir(folder):
    try:
        return sorted(os.listdir(folder))
    except OSError as error:
        raise DataError(folder, f"cannot list folder ({error.strerror or error})") from None


def _slice_files(folder):
    """Names in `folder` that are image files (not hidden), with their stem, sorted."""
    found = []
    for name in _listdir(folder):
        stem, suffix = os.path.splitext(name)
        if name.startswith(".") or suffix.lower() not in SLICE_SUFFIXES:
            continue
        if os.path.isfile(os.path.join(folder, name)):
            found.append((name, stem))
    return found


def _is_mask_stem(stem):
    return stem.lower().endswith(MASK_SUFFIX)


def _holds_patient_folders(root):
    """True when some folder in `root` holds a ``*_mask`` slice: `root` is a ``kaggle_3m`` folder."""
    for name in _listdir(root):
        folder = os.path.join(root, name)
        if not name.startswith(".") and os.path.isdir(folder) and \
                any(_is_mask_stem(stem) for _, stem in _slice_files(folder)):
            return True
    return False


def _add(records, seen, problems, image, mask, patient, index):
    key = (patient, index)
    if key in seen:
        problems.report(image, f"a second slice {index} of patient {patient} (first: {seen[key]}); ignored")
        return
    seen[key] = image
    records.append(LggRecord(image=image, mask=mask, patient=patient, slice_index=index))


def _find_kaggle(folder, problems):
    records, seen = [], {}
    for patient in _listdir(folder):
        patient_dir = os.path.join(folder, patient)
        if patient.startswith(".") or not os.path.isdir(patient_dir):
            continue  # data.csv, README.md and other files beside the patient folders
        files = _slice_files(patient_dir)
        if not files:
            logger.debug("no slices in %s; ignored", patient_dir)
            continue
        masks = {stem[:-len(MASK_SUFFIX)]: name for name, stem in files if _is_mask_stem(stem)}
        images = {stem: name for name, stem in files if not _is_mask_stem(stem)}
        for stem, name in images.items():
            path = os.path.join(patient_dir, name)
            match = _SLICE_NAME.match(stem)
            if match is None:
                problems.report(path, f"slice name does not end in '_<n>' (expected {patient}_<n>.tif)")
                continue
            if stem not in masks:
                problems.report(path, f"no mask for this slice: expected {stem}{MASK_SUFFIX}"
                                      f"{os.path.splitext(name)[1]} beside it")
                continue
            _add(records, seen, problems, path, os.path.join(patient_dir, masks[stem]), patient,
                 int(match.group("index")))
        for stem, name in masks.items():
            if stem not in images:
                problems.report(os.path.join(patient_dir, name), f"no slice image for this mask: expected "
                                                                 f"{stem}{os.path.splitext(name)[1]} beside it")
    return records


def flat_patient(stem):
    """Patient id and slice index from a flat-layout file name (without suffix).

    Args:
        stem: e.g. ``TCGA_CS_4941_19960909_12``.

    Returns:
        ``(patient, slice_index)``: the ``TCGA_XX_XXXX_YYYYMMDD`` prefix when there is one, else the
        stem without its trailing ``_<n>`` (the whole stem when it has none); the trailing number
        (0 when there is none).

    Example:
        >>> flat_patient("TCGA_CS_4941_19960909_12")
        ('TCGA_CS_4941_19960909', 12)
        >>> flat_patient("brain_07_3"), flat_patient("scan")
        (('brain_07', 3), ('scan', 0))
    """
    match = _SLICE_NAME.match(stem)
    index = int(match.group("index")) if match else 0
    prefix = _PATIENT_PREFIX.match(stem)
    if prefix:
        return prefix.group(1), index
    return (match.group("stem") if match else stem), index


def _find_flat(image_dir, mask_dir, problems):
    masks = {}
    for name, stem in _slice_files(mask_dir):
        masks.setdefault(stem, []).append(name)
    used = set()
    records, seen = [], {}
    for name, stem in _slice_files(image_dir):
        path = os.path.join(image_dir, name)
        candidates = [n for key in (stem, stem + MASK_SUFFIX) for n in masks.get(key, [])]
        if not candidates:
            problems.report(path, f"no mask for this image: expected {FLAT_MASK_DIR}/{stem}{os.path.splitext(name)[1]} "
                                  f"or {FLAT_MASK_DIR}/{stem}{MASK_SUFFIX}{os.path.splitext(name)[1]}")
            continue
        used.update(candidates)
        if len(candidates) > 1:
            problems.report(path, f"several masks match this image ({', '.join(candidates)}); ambiguous")
            continue
        patient, index = flat_patient(stem)
        _add(records, seen, problems, path, os.path.join(mask_dir, candidates[0]), patient, index)
    for stem, names in masks.items():
        for name in names:
            if name not in used:
                problems.report(os.path.join(mask_dir, name), f"no image in {FLAT_IMAGE_DIR}/ for this mask")
    return records


def find_lgg(root, on_error="skip", problems=None):
    """Find the slices of the Kaggle LGG dataset under `root`, in the Kaggle or the flat layout.

    Only names are looked at; pixels are read by `load_sample`. A slice without its mask, a mask
    without its slice, a badly named slice or a slice number seen twice for one patient is a
    problem under the `on_error` policy. Files other than slices (``data.csv``, ``README.md``,
    hidden files) are ignored.

    Args:
        root: the folder holding ``kaggle_3m/``, the ``kaggle_3m`` folder itself, or the folder
            holding ``train_image/`` and ``train_mask/``.
        on_error: ``"skip"`` (warn, record in the problem log, leave out) or ``"raise"`` (DataError).
        problems: an existing `ProblemLog` to append to; when given, its policy is used and
            `on_error` is ignored.

    Returns:
        A list of `LggRecord`, sorted by patient, then by slice number (numerically).

    Raises:
        DataError: `root` is not a folder, has neither layout, or holds no complete slice; or a
            slice is bad under "raise".
        ConfigError: an unknown on_error policy or a `problems` that is not a `ProblemLog`.

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic_lgg import write_lgg
        >>> ds = write_lgg(tempfile.mkdtemp(), num_patients=3, slices_per_patient=2, image_size=32)
        >>> records = find_lgg(ds.root)
        >>> len({r.patient for r in records}), [r.slice_index for r in records[:2]]
        (3, [1, 2])
    """
    problems = problem_log(problems, on_error)
    if root is None or not os.path.isdir(root):
        raise DataError(root, f"LGG folder not found; expected a folder laid out as {LAYOUT}")
    root = os.fspath(root)
    before = len(problems)
    image_dir, mask_dir = os.path.join(root, FLAT_IMAGE_DIR), os.path.join(root, FLAT_MASK_DIR)
    if os.path.isdir(os.path.join(root, KAGGLE_DIR)):
        layout, records = "kaggle", _find_kaggle(os.path.join(root, KAGGLE_DIR), problems)
    elif os.path.isdir(image_dir) and os.path.isdir(mask_dir):
        layout, records = "flat", _find_flat(image_dir, mask_dir, problems)
    elif _holds_patient_folders(root):
        layout, records = "kaggle", _find_kaggle(root, problems)
    else:
        raise DataError(root, f"no LGG dataset here: expected {LAYOUT}")
    if not records:
        skipped = len(problems) - before
        raise DataError(root, f"no slice with its mask found in the {layout} layout"
                              f"{f' ({skipped} problem(s) logged)' if skipped else ''}; expected {LAYOUT}")
    records.sort(key=lambda r: (r.patient, r.slice_index))
    logger.info("found %d LGG slices of %d patients in %s (%s layout), %d skipped", len(records),
                len({r.patient for r in records}), root, layout, len(problems) - before)
    return records


#: The flat layout's held-out folders (rmldnn's `test_image/` and `test_mask/`).
FLAT_TEST_IMAGE_DIR, FLAT_TEST_MASK_DIR = "test_image", "test_mask"


def find_lgg_test(root, on_error="skip", problems=None):
    """The slices of the flat layout's own test split (`test_image/` + `test_mask/`), or None without one.

    Args:
        root: the folder holding ``train_image/`` and, maybe, ``test_image/`` and ``test_mask/``.
        on_error, problems: as for `find_lgg`.

    Returns:
        A list of `LggRecord` sorted like `find_lgg`'s, or None when `root` has no test folders.

    Example:
        >>> import tempfile
        >>> find_lgg_test(tempfile.mkdtemp()) is None
        True
    """
    image_dir = os.path.join(os.fspath(root), FLAT_TEST_IMAGE_DIR)
    mask_dir = os.path.join(os.fspath(root), FLAT_TEST_MASK_DIR)
    if not (os.path.isdir(image_dir) and os.path.isdir(mask_dir)):
        return None
    records = _find_flat(image_dir, mask_dir, problem_log(problems, on_error))
    if not records:
        raise DataError(image_dir, f"no slice with its mask in {FLAT_TEST_IMAGE_DIR}/ and {FLAT_TEST_MASK_DIR}/")
    records.sort(key=lambda r: (r.patient, r.slice_index))
    return records


def load_sample(record):
    """Read one slice and its mask.

    Args:
        record: an `LggRecord` (anything with ``image`` and ``mask`` paths).

    Returns:
        ``(image, mask)``: float32 ``(H, W, 3)`` with the stored intensities (0..255 for the Kaggle
        uint8 files; not normalized), and uint8 ``(H, W)`` in {0, 1}. A grayscale slice is repeated
        to three channels; an opaque alpha channel is dropped.

    Raises:
        DataError: a file is unreadable, the slice has another number of channels, the mask is not
            binary, or image and mask differ in size (the mask file is named).

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic_lgg import write_lgg
        >>> ds = write_lgg(tempfile.mkdtemp(), num_patients=1, slices_per_patient=2, image_size=32)
        >>> image, mask = load_sample(ds.find()[0])
        >>> image.shape, sorted(set(mask.ravel().tolist())) in ([0], [0, 1])
        ((32, 32, 3), True)
    """
    image = read_image(record.image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif image.shape[-1] == 4 and image[..., 3].min() == image[..., 3].max():
        image = image[..., :3]
    if image.shape[-1] != 3:
        raise DataError(record.image, f"expected a 3-channel slice ({', '.join(CHANNELS)}) or a grayscale one, "
                                      f"got shape {image.shape}")
    mask = read_mask(record.mask)
    if mask.shape != image.shape[:2]:
        raise DataError(record.mask, f"mask is {mask.shape[0]}x{mask.shape[1]} but its slice {record.image} is "
                                     f"{image.shape[0]}x{image.shape[1]}")
    return image.astype(np.float32), mask
