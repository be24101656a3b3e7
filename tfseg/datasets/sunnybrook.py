"""The Sunnybrook cardiac MR left-ventricle dataset (2009 LV Segmentation Challenge): find and load samples.

On disk, images and expert contours live in two trees that are tied together by a fixed table
(`SAX_SERIES`) from case to the number of its short-axis (SAX) cine series::

    <image_dir>/<case>/IM-<series>-<NNNN>.dcm
    <contour_dir>/<case>/contours-manual/IRCCI-expert/IM-0001-<NNNN>-<kind>-manual.txt

Contour files always say ``IM-0001`` whatever the series; ``<NNNN>`` is the image number. Case
folders may be zero-padded on either side (``SC-HF-I-01`` and ``SC-HF-I-1`` are the same case).
Only images that have a contour of the chosen kind are samples. The finder only looks at names
and parses contour text; pixels are read later, by `load_sample`.

Example:
    >>> import tempfile
    >>> from tfseg.datasets.synthetic import write_sunnybrook
    >>> ds = write_sunnybrook(tempfile.mkdtemp(), num_cases=2, images_per_case=4,
    ...                       contoured_per_case=2, image_size=64)
    >>> records = find_sunnybrook(ds.image_dir, ds.contour_dir)
    >>> [(r.case, r.image_number) for r in records]
    [('SC-HF-I-1', 2), ('SC-HF-I-1', 3), ('SC-HF-I-2', 3), ('SC-HF-I-2', 4)]
    >>> image, mask = load_sample(records[0])
    >>> image.shape, mask.dtype.name
    ((64, 64), 'uint8')
"""
import dataclasses
import logging
import os
import re

import numpy as np

from tfseg.utils.problems import problem_log
from tfseg.errors import ConfigError, DataError
from tfseg.io import contours as contour_io
from tfseg.io import dicom as dicom_io

logger = logging.getLogger(__name__)

#: Published table from challenge case to its short-axis cine series number.
SAX_SERIES = {
    "SC-HF-I-1": "0004",
    "SC-HF-I-2": "0106",
    "SC-HF-I-4": "0116",
    "SC-HF-I-40": "0134",
    "SC-HF-NI-3": "0379",
    "SC-HF-NI-4": "0501",
    "SC-HF-NI-34": "0446",
    "SC-HF-NI-36": "0474",
    "SC-HYP-1": "0550",
    "SC-HYP-3": "0650",
    "SC-HYP-38": "0734",
    "SC-HYP-40": "0755",
    "SC-N-2": "0898",
    "SC-N-3": "0915",
    "SC-N-40": "0944",
}

#: Contour kinds of the challenge: endocardium, epicardium, two papillary muscles.
CONTOUR_KINDS = ("icontour", "ocontour", "p1contour", "p2contour")

#: Sub-path of a contour case folder holding the expert contour files.
EXPERT_SUBDIR = os.path.join("contours-manual", "IRCCI-expert")

CONTOUR_PATTERN = "IM-0001-<NNNN>-<kind>-manual.txt"
IMAGE_PATTERN = "IM-<series>-<NNNN>.dcm"

_CONTOUR_RE = re.compile(r"^IM-(\d+)-(\d+)-([a-z0-9]+)-manual\.txt$", re.IGNORECASE)
_CASE_RE = re.compile(r"^(.*\D)0*(\d+)$")


@dataclasses.dataclass(frozen=True)
class SunnybrookRecord:
    """One sample: a DICOM image and its expert contour.

    Attributes:
        case: canonical case id, e.g. ``"SC-HF-I-1"``.
        image_path: path of the DICOM file.
        contour_path: path of the contour text file.
        image_number: the image number ``NNNN`` shared by both file names.
        contour_kind: ``"icontour"``, ``"ocontour"``, ``"p1contour"`` or ``"p2contour"``.
    """

    case: str
    image_path: str
    contour_path: str
    image_number: int
    contour_kind: str


def canonical_case(name):
    """The canonical form of a case id: upper case, no zero padding in the trailing number.

    Args:
        name: a case id or folder name, e.g. ``"SC-HF-I-01"``.

    Returns:
        The canonical id, e.g. ``"SC-HF-I-1"``.

    Example:
        >>> canonical_case("SC-HF-I-01"), canonical_case("sc-n-40")
        ('SC-HF-I-1', 'SC-N-40')
    """
    name = str(name).strip().upper()
    match = _CASE_RE.match(name)
    if match is None:
        return name
    return f"{match.group(1)}{int(match.group(2))}"


def _series_string(case, value):
    """A series number as the 4-digit string used in image file names; ConfigError if it is not one."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ConfigError(f"series number of case {case!r} must be a non-negative integer "
                          f"or a string of digits like '0004', got {value!r}")
    if not 0 <= number <= 9999:
        raise ConfigError(f"series number of case {case!r} must be between 0 and 9999, got {number}")
    return f"{number:04d}"


def series_table(series=None, replace=False):
    """The case -> series table to use: `SAX_SERIES` with the user's entries merged over it.

    Args:
        series: optional mapping from case id (any padding) to series number (int or digit string).
        replace: use `series` alone instead of merging it over `SAX_SERIES`.

    Returns:
        A dict from canonical case id to 4-digit series string.

    Example:
        >>> series_table({"SC-N-02": 12})["SC-N-2"]
        '0012'
        >>> sorted(series_table({"SC-X-1": "7"}, replace=True).items())
        [('SC-X-1', '0007')]
    """
    table = {} if replace else dict(SAX_SERIES)
    if series is None:
        if replace:
            raise ConfigError("replace=True needs a series table, got series=None")
        return table
    if not hasattr(series, "items"):
        raise ConfigError(f"series must be a mapping from case id to series number, got {type(series).__name__}")
    for case, value in series.items():
        table[canonical_case(case)] = _series_string(case, value)
    return table


def _listdir(folder):
    """Entry names of `folder`, or a DataError saying why it cannot be listed."""
    try:
        return os.listdir(folder)
    except OSError as error:
        raise DataError(folder, f"cannot list folder: {error.strerror or error}") from None


def _list_dirs(folder):
    """Sub-folder names of `folder`, sorted; hidden ones left out."""
    return sorted(n for n in _listdir(folder) if not n.startswith(".") and os.path.isdir(os.path.join(folder, n)))


def _image_folders(image_dir, log):
    """Map canonical case id -> image folder path; two folders for one case are a problem."""
    folders = {}
    for name in _list_dirs(image_dir):
        case = canonical_case(name)
        path = os.path.join(image_dir, name)
        if case in folders:
            log.report(path, f"a second image folder for case {case} (first: {folders[case]}); ignored")
            continue
        folders[case] = path
    return folders


def _check_dir(path, what, expected):
    if path is None or not os.path.isdir(path):
        raise DataError(path, f"{what} folder not found; expected a folder laid out as {expected}")


def find_sunnybrook(image_dir, contour_dir, contour="icontour", series=None, on_error="skip", problems=None,
                    replace_series=False):
    """Find the Sunnybrook samples: images that have an expert contour of the chosen kind.

    Walks ``<contour_dir>/<case>/contours-manual/IRCCI-expert/``, maps each contour file
    ``IM-0001-<NNNN>-<kind>-manual.txt`` to ``<image_dir>/<case>/IM-<series>-<NNNN>.dcm`` through the
    case's series number, and parses every contour so a malformed one is caught here. Pixels are not
    read. Bad records (a case not in the series table, a case without an image folder, a contour
    without its image, a contour file with an unexpected name or unreadable text, two contours for
    one image) go through the `on_error` policy.

    Args:
        image_dir: root of the image tree (one folder per case, zero-padded or not).
        contour_dir: root of the contour tree (one folder per case, zero-padded or not).
        contour: which contour kind makes the samples: one of `CONTOUR_KINDS`.
        series: optional mapping case -> series number merged over `SAX_SERIES` (e.g. for
            extra cases or a local renumbering); see `series_table`.
        on_error: ``"skip"`` (warn, record in the problem log, leave out) or ``"raise"`` (DataError).
        problems: an existing `ProblemLog` to append to; when given, its policy is used and
            `on_error` is ignored.
        replace_series: use `series` alone instead of merging it over `SAX_SERIES`.

    Returns:
        A list of `SunnybrookRecord`, sorted by (case, image_number).

    Raises:
        DataError: a folder is missing or holds no contours at all, or a record is bad under "raise".
        ConfigError: an unknown contour kind, on_error policy or a malformed series table.

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic import write_sunnybrook
        >>> ds = write_sunnybrook(tempfile.mkdtemp(), num_cases=1, images_per_case=3,
        ...                       contoured_per_case=2, image_size=48)
        >>> len(find_sunnybrook(ds.image_dir, ds.contour_dir, contour="ocontour"))
        2
    """
    if contour not in CONTOUR_KINDS:
        raise ConfigError(f"contour must be one of {CONTOUR_KINDS}, got {contour!r}")
    problems = problem_log(problems, on_error)
    table = series_table(series, replace=replace_series)
    image_layout = os.path.join("<image_dir>", "<case>", IMAGE_PATTERN)
    contour_layout = os.path.join("<contour_dir>", "<case>", EXPERT_SUBDIR, CONTOUR_PATTERN)
    _check_dir(image_dir, "image", image_layout)
    _check_dir(contour_dir, "contour", contour_layout)
    image_dir, contour_dir = os.fspath(image_dir), os.fspath(contour_dir)

    image_folders = _image_folders(image_dir, problems)
    image_listing = {}  # image folder -> set of file names, listed once
    found = {}  # (case, image number) -> record
    contour_files = 0
    for folder_name in _list_dirs(contour_dir):
        case_dir = os.path.join(contour_dir, folder_name)
        expert_dir = os.path.join(case_dir, EXPERT_SUBDIR)
        if not os.path.isdir(expert_dir):
            logger.debug("%s has no %s folder; not a contour case folder", case_dir, EXPERT_SUBDIR)
            continue
        case = canonical_case(folder_name)
        names = sorted(n for n in _listdir(expert_dir)
                       if not n.startswith(".") and os.path.isfile(os.path.join(expert_dir, n)))
        matches = []
        for name in names:
            path = os.path.join(expert_dir, name)
            match = _CONTOUR_RE.match(name)
            if match is None or match.group(3).lower() not in CONTOUR_KINDS:
                if name.lower().endswith(".txt"):
                    problems.report(path, f"contour file name does not match {CONTOUR_PATTERN} "
                                          f"with <kind> one of {', '.join(CONTOUR_KINDS)}")
                else:
                    logger.debug("ignoring %s: not a contour text file", path)
                continue
            contour_files += 1
            if match.group(3).lower() == contour:
                matches.append((int(match.group(2)), path))
        if not matches:
            continue
        if case not in table:
            problems.report(case_dir, f"case {case} is not in the series table (known: {', '.join(sorted(table))}); "
                                      "pass series={case: number} to add it")
            continue
        image_folder = image_folders.get(case)
        if image_folder is None:
            problems.report(os.path.join(image_dir, case),
                            f"no image folder for case {case} (contours in {case_dir}); expected {image_layout}")
            continue
        if image_folder not in image_listing:
            image_listing[image_folder] = set(_listdir(image_folder))
        present = image_listing[image_folder]
        for number, path in matches:
            image_name = f"IM-{table[case]}-{number:04d}.dcm"
            image_path = os.path.join(image_folder, image_name)
            if image_name not in present:
                problems.report(path, f"no image for this contour: expected {image_path} (series {table[case]})")
                continue
            if (case, number) in found:
                problems.report(path, f"a second {contour} for image {number} of case {case} "
                                      f"(first: {found[case, number].contour_path}); ignored")
                continue
            try:
                points = contour_io.read_contour(path)
            except DataError as error:
                problems.report_error(error)
                continue
            if len(points) < 3:
                problems.report(path, f"a contour needs at least 3 points, got {len(points)}")
                continue
            found[case, number] = SunnybrookRecord(case, image_path, path, number, contour)
    if contour_files == 0:
        raise DataError(contour_dir, f"no contour files found; expected {contour_layout}")
    records = sorted(found.values(), key=lambda r: (r.case, r.image_number))
    logger.info("found %d Sunnybrook %s samples in %d cases (%d skipped)", len(records), contour,
                len({r.case for r in records}), len(problems))
    return records


def load_sample(record):
    """Read one sample: the image (rescale applied) and its contour rasterized at the image's size.

    Args:
        record: a `SunnybrookRecord` (anything with ``image_path`` and ``contour_path``).

    Returns:
        ``(image, mask)``: float32 ``(H, W)`` intensities and uint8 ``(H, W)`` 0/1 label.

    Raises:
        DataError: the image is not a single 2D grayscale frame, or the contour lies far outside
            the image (a sign of a wrong image/contour pairing or coordinate convention).

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic import write_sunnybrook
        >>> ds = write_sunnybrook(tempfile.mkdtemp(), num_cases=1, images_per_case=2,
        ...                       contoured_per_case=1, image_size=48)
        >>> image, mask = load_sample(find_sunnybrook(ds.image_dir, ds.contour_dir)[0])
        >>> image.dtype.name, mask.shape, int(mask.max())
        ('float32', (48, 48), 1)
    """
    image = dicom_io.read_image(record.image_path).array
    if image.ndim != 2:
        raise DataError(record.image_path, f"expected one 2D grayscale frame, got pixel array of shape {image.shape} "
                                           "(multi-frame or colour images are not Sunnybrook samples)")
    points = contour_io.read_contour(record.contour_path)
    height, width = image.shape
    x, y = points[:, 0], points[:, 1]
    far = (x < -width) | (x > 2 * width) | (y < -height) | (y > 2 * height)
    if far.any():
        k = int(np.argmax(far))
        raise DataError(record.contour_path, f"contour point {k + 1} (x={x[k]:.2f}, y={y[k]:.2f}) lies far outside "
                                             f"the {height}x{width} image {record.image_path}; wrong image or "
                                             "coordinate convention?")
    if x.max() < -0.5 or x.min() > width - 0.5 or y.max() < -0.5 or y.min() > height - 0.5:
        raise DataError(record.contour_path, f"contour lies entirely outside the {height}x{width} image "
                                             f"{record.image_path}; wrong image or coordinate convention?")
    mask = contour_io.polygon_to_mask(points, (height, width)).astype(np.uint8)
    return image.astype(np.float32, copy=False), mask
