"""Datalist JSON files (NVIDIA Clara / Medical Segmentation Decathlon style): read, write, build.

A datalist names the files of each case, section by section::

    {"training":   [{"image": ["a_t1.nii.gz", "a_t1ce.nii.gz", "a_t2.nii.gz", "a_flair.nii.gz"],
                     "label": "a_seg.nii.gz"}, ...],
     "validation": [...],
     "testing":    [{"image": "c.nii.gz"}, "d.nii.gz", ...]}

``"image"`` is one path or a list of paths (one per channel, in `tfseg.datasets.brats.MODALITIES`
order for BraTS); ``"label"`` is optional (null or absent for unlabeled cases); an ``"id"`` or
``"case_id"`` key names the case, otherwise the id is the first image's file name without its
extension and modality suffix. A bare path string is an image-only entry (the Decathlon's ``"test"``
list). Relative paths are resolved against `base_dir`, by default the JSON file's folder. Other
top-level keys (``"name"``, ``"labels"``, ...) are ignored.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> record = DatalistRecord("a", (os.path.join(folder, "a_flair.nii.gz"),), None)
    >>> path = os.path.join(folder, "datalist.json")
    >>> write_datalist(path, {"testing": [record]})
    >>> read_datalist(path, check_files=False)["testing"] == [record]
    True
"""
import dataclasses
import json
import logging
import os
from typing import Optional, Tuple

from tfseg.datasets import splits
from tfseg.datasets.brats import parse_name
from tfseg.utils.problems import problem_log
from tfseg.errors import ConfigError, DataError, shorten
from tfseg.utils.atomic import atomic_write_json
from tfseg.utils.paths import safe_name

logger = logging.getLogger(__name__)

#: Sections read when none are named, in this order, where present.
SECTIONS = ("training", "validation", "testing", "test")

_ID_KEYS = ("id", "case_id")
_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".h5", ".hdf5", ".npy", ".npz", ".tif", ".tiff",
               ".png", ".dcm")


@dataclasses.dataclass(frozen=True)
class DatalistRecord:
    """One datalist entry with its paths resolved.

    Attributes:
        case_id: the case id (from an ``"id"``/``"case_id"`` key or the first image's name).
        images: absolute paths of the image files, one per channel.
        label: absolute path of the label file, or None.
    """

    case_id: str
    images: Tuple[str, ...]
    label: Optional[str] = None

    @property
    def case(self):
        """The case id (the key `tfseg.datasets.splits.split_by_patient` groups on)."""
        return self.case_id


def case_id_from_path(path):
    """The case id a file name implies: the name without extension and BraTS modality suffix.

    Example:
        >>> case_id_from_path("/data/BraTS2021_00000/BraTS2021_00000_t1.nii.gz")
        'BraTS2021_00000'
        >>> case_id_from_path("imagesTr/BRATS_001.nii.gz")
        'BRATS_001'
    """
    name = os.path.basename(os.fspath(path))
    parsed = parse_name(name)
    if parsed is not None:
        return parsed[0]
    lower = name.lower()
    for extension in _EXTENSIONS:
        if lower.endswith(extension) and len(name) > len(extension):
            return name[:-len(extension)]
    return name


def _resolve(value, base_dir):
    return os.path.normpath(value if os.path.isabs(value) else os.path.join(base_dir, value))


def _is_path(value):
    return isinstance(value, str) and value.strip() != ""


def _parse_entry(entry, where, json_path, base_dir):
    """One entry -> (DatalistRecord, [(field, path)]) or DataError naming `where`."""
    if _is_path(entry):
        entry = {"image": entry}
    if not isinstance(entry, dict):
        raise DataError(json_path, f"{where}: expected an object with an 'image' key or a path, "
                                   f"got {type(entry).__name__}")
    if "image" not in entry:
        raise DataError(json_path, f"{where}: missing the 'image' key")
    image = entry["image"]
    if _is_path(image):
        image = [image]
    if not isinstance(image, list) or not image or not all(_is_path(p) for p in image):
        raise DataError(json_path, f"{where}.image: expected a path or a list of paths, got {shorten(repr(image))}")
    label = entry.get("label")
    if label is not None and not _is_path(label):
        raise DataError(json_path, f"{where}.label: expected a path or null, got {shorten(repr(label))}")
    case_id = None
    for key in _ID_KEYS:
        if key in entry:
            value = entry[key]
            if not _is_path(value) and (not isinstance(value, int) or isinstance(value, bool)):
                raise DataError(json_path, f"{where}.{key}: expected a string, got {shorten(repr(value))}")
            case_id = str(value)
            try:
                safe_name(case_id)  # it names output files: refused here, before any work
            except DataError as error:
                raise DataError(json_path, f"{where}.{key}: {error.reason}: {shorten(repr(case_id))}") from None
            break
    images = tuple(_resolve(p, base_dir) for p in image)
    label = None if label is None else _resolve(label, base_dir)
    record = DatalistRecord(case_id or case_id_from_path(images[0]), images, label)
    files = [(f"{where}.image[{k}]" if len(images) > 1 else f"{where}.image", p) for k, p in enumerate(images)]
    if label is not None:
        files.append((f"{where}.label", label))
    return record, files


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DataError(path, "datalist file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read datalist: {getattr(error, 'strerror', None) or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON: {error.msg} (column {error.colno})", line=error.lineno) from None


def read_datalist(path, base_dir=None, sections=None, check_files=True, on_error="raise", problems=None):
    """Read a Clara/Decathlon datalist JSON into records with absolute paths.

    The structure is checked first: a malformed entry raises `DataError` naming the section and
    index (``training[3].image: expected a path or a list of paths``) whatever the policy, since
    the file itself needs fixing. Listed files that do not exist (with `check_files`) are problems
    under `on_error`: the entry is dropped under ``"skip"``.

    Args:
        path: the datalist JSON file.
        base_dir: folder that relative paths are resolved against; default the JSON file's folder.
        sections: names of the sections to read; default those of `SECTIONS` present in the file.
            A named section that is absent is an error.
        check_files: check that every listed image and label file exists.
        on_error: ``"raise"`` (DataError) or ``"skip"`` (warn, record, drop the entry) for missing files.
        problems: an existing `ProblemLog` to append to; when given, its policy is used.

    Returns:
        A dict section name -> list of `DatalistRecord`, in file order.

    Raises:
        DataError: unreadable or malformed file or entry, a missing section, or a missing file under "raise".
        ConfigError: a bad `sections` argument or on_error policy.

    Example:
        >>> import json, os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> path = os.path.join(folder, "list.json")
        >>> _ = open(path, "w").write(json.dumps({"training": [{"image": ["x_t1.nii", "x_flair.nii"],
        ...                                                     "label": "x_seg.nii"}]}))
        >>> record = read_datalist(path, check_files=False)["training"][0]
        >>> record.case_id, os.path.relpath(record.label, folder)
        ('x', 'x_seg.nii')
    """
    problems = problem_log(problems, on_error)
    if isinstance(sections, str):
        sections = (sections,)
    if sections is not None and (not sections or not all(isinstance(s, str) and s for s in sections)):
        raise ConfigError(f"sections must be a list of section names, got {sections!r}")
    path = os.path.abspath(os.fspath(path))
    base_dir = os.path.dirname(path) if base_dir is None else os.path.abspath(os.fspath(base_dir))
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"a datalist must be a JSON object of sections such as "
                              f"{{\"training\": [...]}}, got {type(data).__name__}")
    if sections is None:
        sections = [s for s in SECTIONS if s in data]
        if not sections:
            raise DataError(path, f"no datalist sections: expected one of {', '.join(SECTIONS)}, "
                                  f"found keys {', '.join(map(str, data)) or 'none'}")
    else:
        missing = [s for s in sections if s not in data]
        if missing:
            raise DataError(path, f"no section {', '.join(map(repr, missing))}; sections present: "
                                  f"{', '.join(k for k, v in data.items() if isinstance(v, list)) or 'none'}")
    parsed = {}
    for section in sections:
        entries = data[section]
        if not isinstance(entries, list):
            raise DataError(path, f"{section}: expected a list of entries, got {type(entries).__name__}")
        parsed[section] = [_parse_entry(entry, f"{section}[{index}]", path, base_dir)
                           for index, entry in enumerate(entries)]
    result = {}
    for section, items in parsed.items():
        records = []
        for record, files in items:
            missing = [(field, p) for field, p in files if check_files and not os.path.isfile(p)]
            if missing:
                field, first = missing[0]
                problems.report(first, f"file listed in {path} ({field}) not found"
                                       + (f", and {len(missing) - 1} more of this entry" if len(missing) > 1 else ""))
                continue
            records.append(record)
        result[section] = records
    logger.info("read datalist %s: %s", path, ", ".join(f"{s} {len(r)}" for s, r in result.items()))
    return result


def _relative(path, base_dir):
    """`path` relative to `base_dir` (with forward slashes) when inside it, else absolute."""
    path = os.path.abspath(os.fspath(path))
    try:
        rel = os.path.relpath(path, base_dir)
    except ValueError:  # another drive on Windows
        return path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return rel.replace(os.sep, "/")


def _entry(item, where, base_dir):
    if isinstance(item, dict):
        if "image" not in item:
            raise ConfigError(f"{where}: a datalist entry needs an 'image' key, got keys {sorted(item)}")
        entry = dict(item)
        image = entry["image"]
        entry["image"] = (_relative(image, base_dir) if isinstance(image, (str, os.PathLike))
                          else [_relative(p, base_dir) for p in image])
        if entry.get("label") is not None:
            entry["label"] = _relative(entry["label"], base_dir)
        return entry
    images = getattr(item, "images", None)
    case_id = getattr(item, "case_id", None)
    if not images or case_id is None:
        raise ConfigError(f"{where}: expected a dict or a record with case_id, images and label, "
                          f"got {type(item).__name__}")
    paths = [_relative(p, base_dir) for p in images]
    entry = {"image": paths[0] if len(paths) == 1 else paths}
    label = getattr(item, "label", None)
    if label is not None:
        entry["label"] = _relative(label, base_dir)
    if case_id_from_path(images[0]) != case_id:
        entry["id"] = case_id
    return entry


def write_datalist(path, sections, base_dir=None):
    """Write a datalist JSON atomically, with paths relative to `base_dir` where they lie inside it.

    Args:
        path: the JSON file to write.
        sections: a dict section name -> list of records (`DatalistRecord`, `BratsCase`, anything
            with ``case_id``, ``images`` and ``label``) or of datalist dicts.
        base_dir: folder the relative paths are relative to; default the JSON file's folder (what
            `read_datalist` assumes). Paths outside it are written absolute.

    Raises:
        ConfigError: `sections` is not a dict of lists of records or entries.

    Example:
        >>> import json, os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> path = os.path.join(folder, "datalist.json")
        >>> write_datalist(path, {"training": [{"image": os.path.join(folder, "a", "a_t1.nii.gz")}]})
        >>> json.load(open(path))
        {'training': [{'image': 'a/a_t1.nii.gz'}]}
    """
    if not isinstance(sections, dict):
        raise ConfigError(f"sections must be a dict of section name -> list of records, got {type(sections).__name__}")
    path = os.path.abspath(os.fspath(path))
    base_dir = os.path.dirname(path) if base_dir is None else os.path.abspath(os.fspath(base_dir))
    out = {}
    for section, items in sections.items():
        if not isinstance(section, str) or isinstance(items, (str, dict)) or not hasattr(items, "__iter__"):
            raise ConfigError(f"section {section!r} must be named by a string and hold a list of records")
        out[section] = [_entry(item, f"{section}[{index}]", base_dir) for index, item in enumerate(items)]
    atomic_write_json(path, out)
    logger.info("wrote datalist %s: %s", path, ", ".join(f"{s} {len(r)}" for s, r in out.items()))


def datalist_from_cases(cases, val_fraction=0.2, test_fraction=0.0, seed=0):
    """Split case records by patient into datalist sections.

    Args:
        cases: records with a ``case`` or ``patient`` attribute (`BratsCase`, `DatalistRecord`).
        val_fraction: share of the patients for ``"validation"``.
        test_fraction: share of the patients for ``"testing"`` (the section is left out at 0).
        seed: seed of the split.

    Returns:
        A dict with ``"training"`` and ``"validation"`` (and ``"testing"``) lists of the records,
        ready for `write_datalist`.

    Example:
        >>> cases = [DatalistRecord(f"c{k}", (f"c{k}.nii",)) for k in range(5)]
        >>> {name: len(part) for name, part in datalist_from_cases(cases).items()}
        {'training': 4, 'validation': 1}
    """
    split = splits.split_by_patient(list(cases), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    out = {"training": split.train, "validation": split.val}
    if test_fraction:
        out["testing"] = split.test
    return out
