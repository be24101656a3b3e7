"""A dataset fingerprint: what a folder of cases holds, and what is wrong with it, before training.

`fingerprint(data)` recognizes the layouts tfseg reads (through the finders of this package) and
summarizes them, as nnU-Net's dataset fingerprint does:

- a BraTS release folder (`tfseg.datasets.brats.find_brats`), a Clara/Decathlon datalist JSON
  (`tfseg.datasets.datalist.read_datalist`, all sections), the Kaggle LGG folder
  (`tfseg.datasets.lgg.find_lgg`), a Sunnybrook image folder with its contour folder
  (`tfseg.datasets.sunnybrook.find_sunnybrook`), or a folder of NIfTI files (images paired with
  the labels named ``<case>_seg``/``_label``/``_mask``, `label_case_id`, or of the same name in a
  ``labels*`` folder, as the Decathlon's ``imagesTr``/``labelsTr``);
- cases (items: volumes, or slices for the 2D sets; and patients), shapes, spacings and
  orientations (nibabel axis codes, e.g. "RAS"), in tfseg's memory order `(D, H, W)`;
- per modality, intensity statistics inside the foreground (the non-zero voxels, as in the
  skull-stripped BraTS volumes): mean, standard deviation, 0.5 and 99.5 percentiles, min, max;
- label values with their share of all voxels and the number of items holding them;
- the bounding boxes of the labelled foreground (label > 0) and of the non-zero image: median
  and maximum size per axis, in voxels and mm;
- problems: image and label grids that differ (shape or affine), label values the dataset does not
  define (3 in a BraTS set, whose labels are 0/1/2/4), an orientation other than the majority's, a
  patient in two datalist sections, and the files the finders could not use.

**Cost.** Headers are read for every file; label maps are read whole (they compress well and are
needed for exact label counts and boxes); images are read with a stride (`stride`, every 2nd voxel
per axis by default) and only for an evenly spread subset of `intensity_cases` items, so the
intensity statistics and non-zero boxes are estimates (boxes to within `stride` voxels) and a
1251-case BraTS release is fingerprinted in minutes. With `stride=1` and `intensity_cases=None`
the figures are exact: the pooled mean and standard deviation are computed from running sums, the
percentiles from up to `samples_per_case` foreground voxels per case and channel (all of them when
fewer, numpy's linear interpolation).

Example:
    >>> import tempfile
    >>> from tfseg.datasets.synthetic_mni import write_mni_brats
    >>> ds = write_mni_brats(tempfile.mkdtemp(), num_cases=2, spacing=8.0)
    >>> fp = fingerprint(ds.root)
    >>> fp.kind, fp.num_items, fp.modalities, fp.problems
    ('brats', 2, ('t1', 't1ce', 't2', 'flair'), [])
    >>> sorted(fp.labels)
    [0, 1, 2, 4]
"""
import concurrent.futures
import dataclasses
import logging
import os
import re
import zlib
from collections import Counter

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.problems import ProblemLog

logger = logging.getLogger(__name__)

#: Label values each dataset defines; other values are reported as problems.
EXPECTED_LABELS = {"brats": (0, 1, 2, 4), "lgg": (0, 255), "sunnybrook": (0, 1)}

#: File-name endings that mark a label map in a folder of NIfTI files (case-insensitive).
LABEL_SUFFIXES = ("_seg", "_label", "_labels", "_mask", "_gt", "_truth")

_NIFTI = (".nii.gz", ".nii")
_AFFINE_ATOL = 1e-3  # mm: affines closer than this describe the same grid
_LABEL_RE = re.compile(rf"^(?P<case>.+?)(?P<suffix>{'|'.join(LABEL_SUFFIXES)})$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Item:
    """One volume (or 2D slice) to fingerprint: its files, patient and datalist section."""

    case_id: str
    images: tuple[str, ...]
    label: str | None = None
    patient: str | None = None
    split: str | None = None
    reader: str = "nifti"  # "nifti", "image" (PNG/TIFF) or "sunnybrook" (DICOM + contour)
    contour: str | None = None


@dataclasses.dataclass
class Fingerprint:
    """The summary of a dataset; `to_dict()` gives the JSON that `tfseg inspect --json` prints.

    Attributes:
        source: what was inspected.
        kind: "brats", "datalist", "lgg", "sunnybrook" or "nifti".
        spatial_dims: 3 for volumes, 2 for slices.
        num_items: volumes (or slices) inspected; `num_patients`: distinct patients.
        modalities: channel names (BraTS: t1, t1ce, t2, flair; otherwise channel0, ...).
        splits: datalist section -> number of items (empty for folders).
        shape, spacing: `{"median", "min", "max"}` per axis, memory order `(D, H, W)`.
        orientations: axis code -> number of items (3D only).
        intensity: modality -> {"mean", "std", "p0_5", "p99_5", "min", "max", "voxels", "cases"}.
        labels: label value -> {"fraction", "voxels", "items"}.
        label_bbox, nonzero_bbox: {"median", "max", "median_mm", "max_mm", "items"} sizes per axis.
        problems: dicts {"kind", "case", "path", "message"}; kinds "geometry", "labels",
            "orientation", "split", "file".
        settings: how it was computed (stride, intensity_cases, samples_per_case).
        cases: one dict per item (case_id, shape, spacing, orientation, label_bbox, labels).
    """

    source: str
    kind: str
    spatial_dims: int
    num_items: int
    num_patients: int
    modalities: tuple
    splits: dict
    shape: dict
    spacing: dict
    orientations: dict
    intensity: dict
    labels: dict
    label_bbox: dict
    nonzero_bbox: dict
    problems: list
    settings: dict
    cases: list

    def to_dict(self):
        """A JSON-ready dict (label values become strings, as JSON keys must)."""
        out = dataclasses.asdict(self)
        out["modalities"] = list(self.modalities)
        out["labels"] = {str(k): v for k, v in self.labels.items()}
        return out


# ----------------------------------------------------------------------------------------------
# Finding the items.
# ----------------------------------------------------------------------------------------------

def label_case_id(name):
    """`(case_id, is_label)` for a NIfTI file name: the stem, without a label suffix (`LABEL_SUFFIXES`).

    Example:
        >>> label_case_id("patient7_seg.nii.gz"), label_case_id("patient7.nii")
        (('patient7', True), ('patient7', False))
    """
    stem = name
    for extension in _NIFTI:
        if stem.lower().endswith(extension):
            stem = stem[:-len(extension)]
            break
    match = _LABEL_RE.match(stem)
    return (match.group("case"), True) if match else (stem, False)


def find_items(data, contour_dir=None, problems=None):
    """Recognize the layout of `data` and list its items.

    Args:
        data: a BraTS release folder, a datalist JSON, an LGG folder, a folder of NIfTI files, or
            the Sunnybrook image folder (with `contour_dir`).
        contour_dir: the Sunnybrook contour folder.
        problems: a `ProblemLog` (policy "skip") collecting the files the finders left out.

    Returns:
        `(kind, items)`: the layout name and a list of `Item`.

    Raises:
        DataError: `data` does not exist or holds none of the layouts.
    """
    problems = problems if problems is not None else ProblemLog("skip")
    data = os.path.abspath(os.fspath(data))
    if contour_dir is not None:
        from tfseg.datasets.sunnybrook import find_sunnybrook

        records = find_sunnybrook(data, contour_dir, problems=problems)
        return "sunnybrook", [Item(f"{r.case}/{r.image_number:04d}", (r.image_path,), None, r.case,
                                   reader="sunnybrook", contour=r.contour_path) for r in records]
    if not os.path.exists(data):
        raise DataError(data, "not found")
    if os.path.isfile(data):
        if not data.lower().endswith(".json"):
            raise DataError(data, "expected a folder or a datalist .json file")
        return "datalist", _datalist_items(data, problems)
    names = [n for _, _, files in os.walk(data) for n in files]
    lower = [n.lower() for n in names]
    if any(n.endswith(_NIFTI) and ("flair" in n or "t2f" in n) for n in lower):
        from tfseg.datasets.brats import find_brats

        cases = find_brats(data, require_label=False, problems=problems)
        return "brats", [Item(c.case_id, tuple(c.images), c.label, c.case_id) for c in cases]
    if any(n.endswith((".tif", ".tiff", ".png")) for n in lower):
        from tfseg.datasets.lgg import find_lgg

        records = find_lgg(data, problems=problems)
        return "lgg", [Item(f"{r.patient}_{r.slice_index}", (r.image,), r.mask, r.patient, reader="image")
                       for r in records]
    if any(n.endswith(_NIFTI) for n in lower):
        return "nifti", _nifti_folder_items(data, problems)
    raise DataError(data, "holds no BraTS case, LGG slice or NIfTI file; for Sunnybrook pass the image and "
                          "contour folders")


def _datalist_items(path, problems):
    from tfseg.datasets.datalist import read_datalist

    sections = read_datalist(path, problems=problems)
    return [Item(r.case_id, tuple(r.images), r.label, r.case_id, split=section)
            for section, records in sections.items() for r in records]


def _nifti_folder_items(folder, problems):
    images, labels = {}, {}
    for parent, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if not name.lower().endswith(_NIFTI) or name.startswith("."):
                continue
            case_id, is_label = label_case_id(name)
            is_label = is_label or os.path.basename(parent).lower().startswith("labels")  # Decathlon labelsTr/
            target = labels if is_label else images
            if case_id in target:
                problems.report(os.path.join(parent, name), f"a second file for case {case_id!r} "
                                                            f"(first: {target[case_id]})")
                continue
            target[case_id] = os.path.join(parent, name)
    for case_id in sorted(set(labels) - set(images)):
        problems.report(labels[case_id], "a label map without an image of the same case id")
    return [Item(case_id, (path,), labels.get(case_id), case_id) for case_id, path in sorted(images.items())]


# ----------------------------------------------------------------------------------------------
# Reading one item.
# ----------------------------------------------------------------------------------------------

def _nifti_header(path):
    from tfseg.io.nifti import open_nifti

    image = open_nifti(path)
    return image, tuple(int(s) for s in image.shape), np.asarray(image.affine, np.float64)


def _memory_spatial(nifti_shape):
    return tuple(nifti_shape[:3][::-1])


def _bbox_size(mask):
    """Size per axis of the bounding box of the non-zero entries, or None for an empty mask."""
    if not mask.any():
        return None
    sizes = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        index = np.flatnonzero(mask.any(axis=other))
        sizes.append(int(index[-1] - index[0] + 1))
    return tuple(sizes)


def _channel_stats(values, rng, cap):
    values = values.astype(np.float64, copy=False)
    sample = values if values.size <= cap else rng.choice(values, size=cap, replace=False)
    return {"n": int(values.size), "sum": float(values.sum()), "sum2": float(np.square(values).sum()),
            "min": float(values.min()) if values.size else None,
            "max": float(values.max()) if values.size else None, "sample": sample}


def _scan_item(item, kind, read_images, stride, cap, seed, expected):
    """Everything the fingerprint needs from one item, or raises DataError."""
    result = {"case_id": item.case_id, "problems": []}
    rng = np.random.default_rng([seed, zlib.crc32(item.case_id.encode())])
    if item.reader == "nifti":
        _scan_nifti(item, result, read_images, stride, cap, rng)
    else:
        _scan_2d(item, kind, result, read_images, stride, cap, rng)
    if expected is not None and result.get("labels"):
        unknown = sorted(set(result["labels"]) - set(expected))
        if unknown:
            message = f"label values {unknown} are not defined for this dataset (expected {list(expected)})"
            result["problems"].append(("labels", item.label, message))
    return result


def _scan_nifti(item, result, read_images, stride, cap, rng):
    headers = [_nifti_header(path) for path in item.images]
    reference_shape, reference_affine = _memory_spatial(headers[0][1]), headers[0][2]
    result.update(shape=reference_shape, spacing=_spacing_of(reference_affine),
                  orientation=_axcodes(reference_affine))
    for path, (_, shape, affine) in zip(item.images[1:], headers[1:]):
        _compare_grids(result, item.images[0], reference_shape, reference_affine, path, _memory_spatial(shape),
                       affine)
    if item.label is not None:
        label_image, label_shape, label_affine = _nifti_header(item.label)
        _compare_grids(result, item.images[0], reference_shape, reference_affine, item.label,
                       _memory_spatial(label_shape), label_affine)
        label = np.asarray(label_image.dataobj)
        if label.ndim == 4 and label.shape[3] == 1:
            label = label[..., 0]
        _label_counts(result, label, item.label)
        result["label_bbox"] = _bbox_size(label != 0)
        if result["label_bbox"] is not None:
            result["label_bbox"] = result["label_bbox"][::-1]  # NIfTI (i, j, k) -> memory (D, H, W)
    if read_images:
        channels = []
        for image, _, _ in headers:
            # whole-array read then stride: nibabel's strided reads of gzip files seek per row, far slower
            data = np.asarray(image.dataobj)[(slice(None, None, stride),) * 3]
            data = data[..., None] if data.ndim == 3 else data
            channels.extend(data[..., c] for c in range(data.shape[3]))
        _intensity(result, channels, stride, rng, cap, nifti_order=True)


def _scan_2d(item, kind, result, read_images, stride, cap, rng):
    if item.reader == "sunnybrook":
        from tfseg.datasets.sunnybrook import SunnybrookRecord, load_sample
        from tfseg.io.dicom import read_header

        record = SunnybrookRecord(item.patient, item.images[0], item.contour, 0, "icontour")
        image, label = load_sample(record)
        spacing = read_header(item.images[0]).pixel_spacing or (1.0, 1.0)
        path = item.contour
    else:
        from tfseg.io.images import read_image

        image = read_image(item.images[0])
        label = read_image(item.label) if item.label else None
        if label is not None and label.ndim == 3:
            label = label[..., 0]
        spacing = (1.0, 1.0)
        path = item.label
    result.update(shape=tuple(image.shape[:2]), spacing=tuple(float(s) for s in spacing), orientation=None)
    if label is not None:
        if label.shape[:2] != image.shape[:2]:
            message = f"mask of shape {label.shape[:2]} but image {item.images[0]} of shape {image.shape[:2]}"
            result["problems"].append(("geometry", path, message))
        _label_counts(result, label, path)
        result["label_bbox"] = _bbox_size(label != 0)
    if read_images:
        image = image[..., None] if image.ndim == 2 else image
        sub = image[::stride, ::stride]
        _intensity(result, [sub[..., c] for c in range(sub.shape[-1])], stride, rng, cap, nifti_order=False)


def _label_counts(result, label, path):
    if label.dtype.kind == "f" and (not np.all(np.isfinite(label)) or np.any(label != np.round(label))):
        result["problems"].append(("labels", path, "label map holds non-integer values"))
        label = np.round(np.nan_to_num(label))
    flat = label.ravel()
    if flat.dtype.kind in "iub" and flat.size and 0 <= flat.min() and flat.max() < 65536:
        counts = np.bincount(flat.astype(np.intp, copy=False))   # linear time, unlike np.unique's sort
        values = np.flatnonzero(counts)
        counts = counts[values]
    else:
        values, counts = np.unique(flat, return_counts=True)
    result["labels"] = {int(v): int(c) for v, c in zip(values, counts)}
    result["voxels"] = int(label.size)


def _intensity(result, channels, stride, rng, cap, nifti_order):
    stats, nonzero = [], None
    for channel in channels:
        foreground = channel != 0
        nonzero = foreground if nonzero is None else (nonzero | foreground)
        stats.append(_channel_stats(channel[foreground], rng, cap))
    result["intensity"] = stats
    box = _bbox_size(nonzero)
    if box is not None:
        box = tuple(min(b * stride, s) for b, s in zip(box[::-1] if nifti_order else box, result["shape"]))
    result["nonzero_bbox"] = box


def _compare_grids(result, reference_path, reference_shape, reference_affine, path, shape, affine):
    if shape != reference_shape:
        message = f"grid of shape {shape} (D, H, W) but {reference_path} has {reference_shape}"
        result["problems"].append(("geometry", path, message))
    elif not np.allclose(affine, reference_affine, atol=_AFFINE_ATOL):
        result["problems"].append(("geometry", path, (f"affine differs from {reference_path}'s "
                                                      f"(orientation {_axcodes(affine)} vs "
                                                      f"{_axcodes(reference_affine)}, max difference "
                                                      f"{np.abs(affine - reference_affine).max():.4g} mm)")))


def _spacing_of(affine):
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)[::-1])


def _axcodes(affine):
    from tfseg.io.nifti import orientation

    return orientation(affine)


# ----------------------------------------------------------------------------------------------
# The fingerprint.
# ----------------------------------------------------------------------------------------------

def fingerprint(data, contour_dir=None, stride=2, intensity_cases=64, samples_per_case=10000,
                expected_labels=None, workers=1, seed=0):
    """Fingerprint a dataset: cases, geometry, intensities, labels, boxes and problems.

    Args:
        data: a dataset folder or datalist JSON (see `find_items`).
        contour_dir: the Sunnybrook contour folder (then `data` is the image folder).
        stride: read every `stride`-th image voxel per axis for the intensity statistics and
            non-zero boxes (1: all).
        intensity_cases: read images of at most this many items, evenly spread (None: all).
        samples_per_case: foreground values kept per item and channel for the percentiles.
        expected_labels: the label values the dataset defines; default by layout
            (`EXPECTED_LABELS`; a datalist or NIfTI folder of BraTS-named files counts as BraTS;
            otherwise no check).
        workers: threads reading items in parallel (decompression releases the GIL).
        seed: seed of the voxel sampling.

    Returns:
        A `Fingerprint`.

    Raises:
        DataError: `data` holds no recognized dataset or no readable item.
        ConfigError: a bad argument.
    """
    for name, value in (("stride", stride), ("samples_per_case", samples_per_case), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if intensity_cases is not None and (not isinstance(intensity_cases, (int, np.integer)) or intensity_cases < 0):
        raise ConfigError(f"intensity_cases must be a non-negative integer or None, got {intensity_cases!r}")
    log = ProblemLog("skip")
    kind, items = find_items(data, contour_dir=contour_dir, problems=log)
    if not items:
        raise DataError(data, "no case to inspect" + (f" ({log.summary()})" if len(log) else ""))
    if expected_labels is None:
        expected_labels = EXPECTED_LABELS.get(kind)
        if expected_labels is None and _brats_named(items):
            expected_labels = EXPECTED_LABELS["brats"]
    count = len(items) if intensity_cases is None else min(intensity_cases, len(items))
    read_set = set(np.unique(np.linspace(0, len(items) - 1, count).round().astype(int)).tolist()) if count else set()

    def scan(index):
        item = items[index]
        try:
            return _scan_item(item, kind, index in read_set, stride, samples_per_case, seed, expected_labels)
        except DataError as error:
            return {"case_id": item.case_id, "error": error}

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(scan, range(len(items))))
    problems = [{"kind": "file", "case": None, "path": p.path, "message": p.reason} for p in log.problems]
    scanned = []
    for item, result in zip(items, results):
        if "error" in result:
            problems.append({"kind": "file", "case": item.case_id, "path": result["error"].path,
                             "message": result["error"].reason})
            continue
        problems.extend({"kind": k, "case": item.case_id, "path": p, "message": m} for k, p, m in result["problems"])
        scanned.append((item, result))
    if not scanned:
        raise DataError(data, "no case could be read: " + "; ".join(p["message"] for p in problems[:3]))
    problems.extend(_orientation_problems(scanned))
    problems.extend(_split_problems(items))
    spatial_dims = len(scanned[0][1]["shape"])
    modalities = _modalities(kind, items, scanned)
    fp = Fingerprint(
        source=os.path.abspath(os.fspath(data)), kind=kind, spatial_dims=spatial_dims, num_items=len(scanned),
        num_patients=len({item.patient or item.case_id for item, _ in scanned}), modalities=modalities,
        splits=dict(Counter(item.split for item in items if item.split)),
        shape=_axis_summary([r["shape"] for _, r in scanned]),
        spacing=_axis_summary([r["spacing"] for _, r in scanned], integer=False),
        orientations=dict(Counter(r["orientation"] for _, r in scanned if r["orientation"])),
        intensity=_intensity_summary(modalities, [r["intensity"] for _, r in scanned if "intensity" in r]),
        labels=_label_summary([r for _, r in scanned]),
        label_bbox=_box_summary(scanned, "label_bbox"), nonzero_bbox=_box_summary(scanned, "nonzero_bbox"),
        problems=problems,
        settings={"stride": stride, "intensity_cases": count, "samples_per_case": samples_per_case,
                  "expected_labels": list(expected_labels) if expected_labels is not None else None},
        cases=[{"case_id": item.case_id, "split": item.split, "shape": list(r["shape"]),
                "spacing": [round(s, 4) for s in r["spacing"]], "orientation": r["orientation"],
                "labels": {str(k): v for k, v in r.get("labels", {}).items()},
                "label_bbox": list(r["label_bbox"]) if r.get("label_bbox") else None} for item, r in scanned])
    logger.info("fingerprint of %s: %d %s items, %d problem(s)", fp.source, fp.num_items, kind, len(problems))
    return fp


def _brats_named(items):
    from tfseg.datasets.brats import parse_name

    return all(parse_name(os.path.basename(path)) is not None for item in items[:20] for path in item.images)


def _modalities(kind, items, scanned):
    if kind in ("brats", "datalist", "nifti") and _brats_named(items):
        from tfseg.datasets.brats import parse_name

        return tuple(parse_name(os.path.basename(path))[1] for path in items[0].images)
    channels = next((len(r["intensity"]) for _, r in scanned if "intensity" in r), len(items[0].images))
    return tuple(f"channel{c}" for c in range(channels))


def _orientation_problems(scanned):
    codes = Counter(r["orientation"] for _, r in scanned if r["orientation"])
    if len(codes) < 2:
        return []
    majority, majority_count = codes.most_common(1)[0]
    return [{"kind": "orientation", "case": item.case_id, "path": item.images[0],
             "message": f"orientation {r['orientation']}, while {majority_count} of {len(scanned)} cases are "
                        f"{majority} (a flipped or differently stored volume)"}
            for item, r in scanned if r["orientation"] and r["orientation"] != majority]


def _split_problems(items):
    sections = {}
    for item in items:
        if item.split:
            sections.setdefault(item.patient or item.case_id, set()).add(item.split)
    return [{"kind": "split", "case": patient, "path": None,
             "message": f"patient {patient!r} is in several datalist sections: {', '.join(sorted(found))}"}
            for patient, found in sorted(sections.items()) if len(found) > 1]


def _axis_summary(values, integer=True):
    array = np.asarray(values, np.float64)
    median = np.median(array, axis=0)
    cast = (lambda v: [round(x) for x in v]) if integer else (lambda v: [round(float(x), 4) for x in v])
    return {"median": cast(median), "min": cast(array.min(axis=0)), "max": cast(array.max(axis=0))}


def _box_summary(scanned, key):
    boxes = [(r[key], r["spacing"]) for _, r in scanned if r.get(key)]
    if not boxes:
        return {"median": None, "max": None, "median_mm": None, "max_mm": None, "items": 0}
    sizes = np.asarray([b for b, _ in boxes], np.float64)
    mm = np.asarray([np.multiply(b, s) for b, s in boxes], np.float64)
    return {"median": [int(np.ceil(v)) for v in np.median(sizes, axis=0)],
            "max": [int(v) for v in sizes.max(axis=0)],
            "median_mm": [round(float(v), 2) for v in np.median(mm, axis=0)],
            "max_mm": [round(float(v), 2) for v in mm.max(axis=0)], "items": len(boxes)}


def _label_summary(results):
    voxels = sum(r.get("voxels", 0) for r in results if "labels" in r)
    totals, holders = Counter(), Counter()
    for r in results:
        for value, count in r.get("labels", {}).items():
            totals[value] += count
            holders[value] += 1
    return {value: {"fraction": totals[value] / voxels, "voxels": int(totals[value]), "items": holders[value]}
            for value in sorted(totals)}


def _intensity_summary(modalities, per_item):
    summary = {}
    for c, name in enumerate(modalities):
        parts = [stats[c] for stats in per_item if c < len(stats)]
        n = sum(p["n"] for p in parts)
        if not n:
            summary[name] = {"mean": None, "std": None, "p0_5": None, "p99_5": None, "min": None, "max": None,
                             "voxels": 0, "cases": len(parts)}
            continue
        total, total2 = sum(p["sum"] for p in parts), sum(p["sum2"] for p in parts)
        mean = total / n
        sample = np.concatenate([p["sample"] for p in parts])
        low, high = np.percentile(sample, [0.5, 99.5])
        summary[name] = {"mean": mean, "std": float(np.sqrt(max(total2 / n - mean * mean, 0.0))),
                         "p0_5": float(low), "p99_5": float(high),
                         "min": min(p["min"] for p in parts if p["n"]), "max": max(p["max"] for p in parts if p["n"]),
                         "voxels": int(n), "cases": len(parts)}
    return summary


def format_fingerprint(fp):
    """A short human-readable report of a `Fingerprint` (what `tfseg inspect` prints).

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic_mni import write_mni_brats
        >>> text = format_fingerprint(fingerprint(write_mni_brats(tempfile.mkdtemp(), 1, spacing=8.0).root))
        >>> text.splitlines()[0].split(":")[0]
        'dataset'
    """
    def axes(values):
        return "x".join(str(v) for v in values) if values else "-"

    lines = [f"dataset: {fp.source} ({fp.kind}, {fp.spatial_dims}D)",
             f"items: {fp.num_items}, patients: {fp.num_patients}"
             + (f", splits: {', '.join(f'{k} {v}' for k, v in fp.splits.items())}" if fp.splits else ""),
             (f"shape (D, H, W): median {axes(fp.shape['median'])}, min {axes(fp.shape['min'])}, "
              f"max {axes(fp.shape['max'])}"),
             (f"spacing mm: median {axes(fp.spacing['median'])}, min {axes(fp.spacing['min'])}, "
              f"max {axes(fp.spacing['max'])}")]
    if fp.orientations:
        lines.append("orientations: " + ", ".join(f"{k} {v}" for k, v in fp.orientations.items()))
    for name, stats in fp.intensity.items():
        if stats["mean"] is None:
            continue
        lines.append(f"intensity {name}: mean {stats['mean']:.4g}, std {stats['std']:.4g}, "
                     f"p0.5 {stats['p0_5']:.4g}, p99.5 {stats['p99_5']:.4g} ({stats['cases']} cases)")
    lines.append("labels: " + ", ".join(f"{v}: {s['fraction']:.4%} ({s['items']} items)" for v, s in fp.labels.items()))
    for key, title in (("label_bbox", "label box"), ("nonzero_bbox", "non-zero box")):
        box = getattr(fp, key)
        if box["median"]:
            lines.append(f"{title} (voxels): median {axes(box['median'])}, max {axes(box['max'])}")
    lines.append(f"problems: {len(fp.problems)}")
    lines.extend(f"  [{p['kind']}] {p['case'] or ''} {p['path'] or ''}: {p['message']}".replace("  ", " ", 1)
                 for p in fp.problems)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# `tfseg inspect`.
# ----------------------------------------------------------------------------------------------

def add_parser(subparsers):
    """Register `tfseg inspect DATA [CONTOURS] [--json]` on an argparse subparsers object."""
    parser = subparsers.add_parser("inspect", help="fingerprint a dataset: shapes, spacings, intensities, labels, "
                                                   "problems (exit 1 when there are problems)")
    parser.add_argument("data", help="BraTS folder, datalist JSON, LGG folder, NIfTI folder, or Sunnybrook images")
    parser.add_argument("contours", nargs="?", help="Sunnybrook contour folder (with the image folder as DATA)")
    parser.add_argument("--json", action="store_true", help="print the fingerprint as JSON")
    parser.add_argument("--out", help="also write the JSON to this file (atomically)")
    parser.add_argument("--stride", type=int, default=2, help="image read stride per axis (1: every voxel)")
    parser.add_argument("--intensity-cases", type=int, default=64, help="items whose images are read (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="reading threads")
    parser.set_defaults(handler=run)
    return parser


def run(args):
    """Handle `tfseg inspect`: print the report (or JSON); return 1 when problems were found, else 0."""
    import json

    from tfseg.utils.atomic import atomic_write_json

    fp = fingerprint(args.data, contour_dir=args.contours, stride=args.stride,
                     intensity_cases=args.intensity_cases, workers=args.workers)
    if args.out:
        atomic_write_json(args.out, fp.to_dict())
    print(json.dumps(fp.to_dict(), indent=2) if args.json else format_fingerprint(fp))
    return 1 if fp.problems else 0
