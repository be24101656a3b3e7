"""The BraTS brain-tumour MR datasets (2018-2021 and later layouts): find cases, name their labels.

A BraTS case is four co-registered, skull-stripped MR volumes and, in training releases, a label
map, each a NIfTI file named ``<case>_<suffix>.nii.gz`` (or ``.nii``) inside the case's folder::

    2021: <root>/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz
    2020: <root>/BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii
    2018, 2019: <root>/HGG/Brats18_TCIA01_131_1/Brats18_TCIA01_131_1_{...}.nii.gz  (and LGG/)

The finder does not rely on one of these trees: it walks `root`, takes every FLAIR file as the mark
of a case (the case id is the file name before ``_flair``) and looks for the other files of that
case in the same folder, so flat folders and extra nesting levels work too. Spelling variants of
the modality suffixes are accepted (case-insensitive, ``_`` or ``-`` before the suffix):

- ``t1``: ``t1``, ``t1n`` (BraTS 2023);
- ``t1ce`` (post-contrast T1): ``t1ce``, ``t1gd`` (TCIA's preprocessed releases), ``t1c`` (2023);
- ``t2``: ``t2``, ``t2w`` (2023);
- ``flair``: ``flair``, ``t2f`` (2023);
- label: ``seg``; a case folder whose only label-like file has another name (BraTS 2020 case
  355 ships ``W39_1998.09.19_Segm.nii``) gets that file.

The grade (``"HGG"``/``"LGG"``) comes from an ``HGG``/``LGG`` folder above the case (2018/2019)
or from the release's ``name_mapping.csv`` (2020); otherwise it is None. Only names are looked
at; pixels are read later.

Channel order: everywhere in tfseg the four modalities are stacked as `MODALITIES`, i.e.
``(t1, t1ce, t2, flair)``, the order of the Clara/Decathlon BraTS datalists.

Labels (`LABELS`): 0 background, 1 necrotic and non-enhancing tumour core, 2 peritumoural oedema,
4 GD-enhancing tumour (there is no 3 since 2017). Evaluation uses three nested regions
(`REGIONS`): whole tumour WT = {1, 2, 4}, tumour core TC = {1, 4}, enhancing tumour ET = {4}.

Example:
    >>> import tempfile
    >>> from tfseg.datasets.synthetic import write_brats
    >>> ds = write_brats(tempfile.mkdtemp(), num_cases=2, shape=(24, 24, 16))
    >>> cases = find_brats(ds.root)
    >>> [c.case_id for c in cases]
    ['BraTS2021_00000', 'BraTS2021_00001']
    >>> [parse_name(os.path.basename(p))[1] for p in cases[0].images]
    ['t1', 't1ce', 't2', 'flair']
    >>> os.path.basename(cases[0].label)
    'BraTS2021_00000_seg.nii.gz'
"""
import csv
import dataclasses
import logging
import os
import re
from typing import Optional, Tuple

from tfseg.errors import DataError
from tfseg.utils.checks import distinct_choices
from tfseg.utils.problems import problem_log

logger = logging.getLogger(__name__)

#: The four modalities, in the channel order used everywhere in tfseg.
MODALITIES = ("t1", "t1ce", "t2", "flair")

#: File-name suffixes accepted for each modality (lower case); the first is the canonical one.
MODALITY_SUFFIXES = {
    "t1": ("t1", "t1n"),
    "t1ce": ("t1ce", "t1gd", "t1c"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f"),
}

#: File-name suffix of the label map.
LABEL_SUFFIX = "seg"

#: The BraTS label values and what they mark.
LABELS = {0: "background", 1: "necrotic/non-enhancing core", 2: "edema", 4: "enhancing tumour"}

#: The nested evaluation regions, as the label values each one gathers.
REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}

#: Grades named by the folders of the 2018/2019 releases.
GRADES = ("HGG", "LGG")

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
LAYOUT = os.path.join("<root>", "<case>", "<case>_{t1,t1ce,t2,flair,seg}.nii.gz")

_SUFFIX_TO_KEY = {s: key for key, suffixes in MODALITY_SUFFIXES.items() for s in suffixes}
_SUFFIX_TO_KEY[LABEL_SUFFIX] = LABEL_SUFFIX
_FILE_RE = re.compile(r"^(?P<case>.+?)[_-](?P<suffix>%s)\.nii(?:\.gz)?$"
                      % "|".join(sorted(_SUFFIX_TO_KEY, key=len, reverse=True)), re.IGNORECASE)
_LABEL_LIKE_RE = re.compile(r"seg(m|mentation)?\.nii(\.gz)?$", re.IGNORECASE)
_MAPPING_FILE = "name_mapping.csv"


@dataclasses.dataclass(frozen=True)
class BratsCase:
    """One BraTS case: its image files, label file and grade.

    Attributes:
        case_id: the case id, the file names' common prefix, e.g. ``"BraTS2021_00000"``.
        images: paths of the image files, in the order of the `modalities` asked of `find_brats`
            (by default `MODALITIES`: t1, t1ce, t2, flair).
        label: path of the label map, or None (validation/test releases).
        grade: ``"HGG"`` or ``"LGG"`` where the release says so, else None.
    """

    case_id: str
    images: Tuple[str, ...]
    label: Optional[str] = None
    grade: Optional[str] = None

    @property
    def case(self):
        """The case id (the key `tfseg.datasets.splits.split_by_patient` groups on)."""
        return self.case_id


def parse_name(name):
    """Split a BraTS file name into its case id and canonical suffix, or None when it is not one.

    Args:
        name: a file name such as ``"BraTS2021_00000_t1ce.nii.gz"``.

    Returns:
        ``(case_id, key)`` with key one of `MODALITIES` or ``"seg"``, or None.

    Example:
        >>> parse_name("BraTS20_Training_001_T1Gd.nii")
        ('BraTS20_Training_001', 't1ce')
        >>> parse_name("BraTS-GLI-00000-000-t2f.nii.gz")
        ('BraTS-GLI-00000-000', 'flair')
        >>> parse_name("notes.txt") is None
        True
    """
    match = _FILE_RE.match(name)
    if match is None:
        return None
    return match.group("case"), _SUFFIX_TO_KEY[match.group("suffix").lower()]


def _check_modalities(modalities):
    return distinct_choices(modalities, MODALITIES, "modalities")


def _listdir(folder):
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError as error:
        raise DataError(folder, f"cannot list folder: {error.strerror or error}") from None


def _flair_files(root):
    """Yield (folder, file name, case id) for every FLAIR file under `root`, in sorted walk order."""
    def on_error(error):
        raise DataError(getattr(error, "filename", root), f"cannot list folder: {error.strerror or error}")

    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            parsed = None if name.startswith(".") else parse_name(name)
            if parsed is not None and parsed[1] == "flair":
                yield folder, name, parsed[0]


def _grade_from_folders(root, folder):
    rel = os.path.relpath(folder, root)
    for part in reversed(rel.split(os.sep)):
        if part.upper() in GRADES:
            return part.upper()
    return None


def _grades_from_mapping(root):
    """Case id -> grade from the release's ``name_mapping.csv`` (BraTS 2020), or {} without one."""
    path = os.path.join(root, _MAPPING_FILE)
    if not os.path.isfile(path):
        return {}
    grades = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                grade = (row.get("Grade") or "").strip().upper()
                if grade not in GRADES:
                    continue
                for column, value in row.items():
                    if column and column.strip().lower().endswith("subject_id") and value and value.strip():
                        grades[value.strip()] = grade
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        logger.warning("%s: cannot read grades (%s); grades left unknown", path, error)
        return {}
    return grades


def _label_fallback(folder, names, case_ids_in_folder):
    """The one label-like file of a one-case folder whose label has a non-standard name, else None."""
    if len(case_ids_in_folder) != 1:
        return None
    candidates = [n for n in names if _LABEL_LIKE_RE.search(n) and parse_name(n) is None]
    return os.path.join(folder, candidates[0]) if len(candidates) == 1 else None


def _find_one(folder, by_key, case_id, key, what):
    """The single file of `case_id` for `key`, or `(None, reason, the file at fault)`."""
    found = by_key.get((case_id, key), [])
    if len(found) == 1:
        return os.path.join(folder, found[0]), None, None
    if not found:
        expected = os.path.join(folder, f"{case_id}_{key}.nii.gz")
        return None, f"missing {what}: expected {expected} (or .nii)", expected
    return None, f"several files for {what}: {', '.join(found)}", os.path.join(folder, found[0])


def find_brats(root, modalities=MODALITIES, require_label=True, on_error="skip", problems=None):
    """Find the BraTS cases under `root`, in any of the 2018-2021 layouts.

    Every FLAIR file marks a case; its other modalities and its label are looked up beside it by
    the case id. A case missing a modality, or its label when `require_label`, or found twice, is
    a problem under the `on_error` policy. Pixels are not read.

    Args:
        root: the release folder (e.g. ``MICCAI_BraTS2020_TrainingData`` or the folder holding
            ``HGG/`` and ``LGG/``).
        modalities: which modalities to return, and their order in `BratsCase.images`; names among
            `MODALITIES` (e.g. ``("flair", "t1ce", "t2")``).
        require_label: a case without a label map is a problem; pass False for validation and
            test releases (their cases get ``label=None``).
        on_error: ``"skip"`` (warn, record in the problem log, leave out) or ``"raise"`` (DataError).
        problems: an existing `ProblemLog` to append to; when given, its policy is used and
            `on_error` is ignored.

    Returns:
        A list of `BratsCase`, sorted by case id.

    Raises:
        DataError: `root` is not a folder or holds no FLAIR file at all, or a case is bad under "raise".
        ConfigError: unknown modalities or on_error policy.

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic import write_brats
        >>> ds = write_brats(tempfile.mkdtemp(), num_cases=4, shape=(24, 24, 16), layout="2018")
        >>> [(c.case_id, c.grade) for c in find_brats(ds.root, modalities=("flair",))][:2]
        [('Brats18_TCIA01_001_1', 'HGG'), ('Brats18_TCIA01_002_1', 'HGG')]
    """
    modalities = _check_modalities(modalities)
    problems = problem_log(problems, on_error)
    if root is None or not os.path.isdir(root):
        raise DataError(root, f"BraTS folder not found; expected a folder laid out as {LAYOUT}")
    root = os.fspath(root)
    mapping_grades = _grades_from_mapping(root)

    listings = {}  # folder -> (names, {(case, key): [names]}, case ids)
    seen = {}  # case id -> folder of its first FLAIR file
    cases = []
    for folder, flair_name, case_id in _flair_files(root):
        flair_path = os.path.join(folder, flair_name)
        if case_id in seen:
            if seen[case_id] != folder:
                problems.report(flair_path, f"a second copy of case {case_id} (first in {seen[case_id]}); ignored")
            continue  # in the same folder: a second FLAIR spelling, reported with the case
        seen[case_id] = folder
        if folder not in listings:
            names = _listdir(folder)
            by_key = {}
            for name in names:
                parsed = parse_name(name)
                if parsed is not None:
                    by_key.setdefault(parsed, []).append(name)
            listings[folder] = (names, by_key, {case for case, _ in by_key})
        names, by_key, case_ids = listings[folder]
        images, reasons, culprits = [], [], []
        for modality in modalities + (() if "flair" in modalities else ("flair",)):
            path, reason, culprit = _find_one(folder, by_key, case_id, modality, f"{modality} image")
            if modality in modalities:
                images.append(path)
            if reason:
                reasons.append(reason)
                culprits.append(culprit)
        label, label_reason, label_culprit = _find_one(folder, by_key, case_id, LABEL_SUFFIX, "label (seg)")
        if label is None and not by_key.get((case_id, LABEL_SUFFIX)):
            label = _label_fallback(folder, names, case_ids)
            if label is not None:
                label_reason = None
                logger.info("%s: using %s as the label of case %s", folder, os.path.basename(label), case_id)
        if label_reason and (require_label or by_key.get((case_id, LABEL_SUFFIX))):
            reasons.append(label_reason)
            culprits.append(label_culprit)
        if reasons:  # named by the (first) missing or doubled file, not by the FLAIR that marks the case
            problems.report(culprits[0], f"case {case_id}: " + "; ".join(reasons))
            continue
        grade = _grade_from_folders(root, folder) or mapping_grades.get(case_id)
        cases.append(BratsCase(case_id, tuple(images), label, grade))
    if not seen:
        raise DataError(root, f"no BraTS FLAIR files found; expected {LAYOUT}")
    cases.sort(key=lambda c: c.case_id)
    logger.info("found %d BraTS cases in %s (%d skipped)", len(cases), root, len(problems))
    return cases
