"""Score label maps written by any tool against the truth: `tfseg evaluate PRED TRUTH`.

**Inputs.** PRED and TRUTH are each a folder (searched recursively), a Clara/Decathlon datalist
JSON (its entries' ``label`` files; for PRED, ``label`` or else the first ``image``), or a single
file. Label maps may be NIfTI (``.nii``, ``.nii.gz``; spacing and affine from the header) or 2D
PNG/TIFF masks (spacing 1; a binary 0/255 mask counts as labels 0/1).

**Pairing rule.** A file's case id is its name without the extension and without one trailing
suffix among `SUFFIXES` (``_seg``, ``_pred``, ``_prediction``, ``_mask``, ``_label``, ``_labels``,
``_gt``, ``_truth``; case-insensitive, also with ``-`` instead of ``_``): ``BraTS2021_00000.nii.gz``,
``BraTS2021_00000_seg.nii.gz`` and ``BraTS2021_00000_pred.nii.gz`` are all case
``BraTS2021_00000``. In folders, BraTS modality images (``<case>_t1.nii.gz`` ...) are passed over,
so a BraTS release folder can be the truth, and so are ``*_probabilities.*`` files (`tfseg predict`
writes them beside the label maps). Files are paired by case id; unpaired files are
reported (and listed in the summary), two files of one case on one side are an error.

**Scores.** Per case and per class (each non-zero label value found in either side, or `labels`),
and with ``regions="brats"`` per BraTS region (WT = {1, 2, 4}, TC = {1, 4}, ET = {4}): Dice, IoU,
precision, recall (`tfseg.metrics.score_from_counts`: a class absent from both scores 1) and HD95
in mm (`tfseg.metrics.hausdorff_distance_95`, spacing from the truth's header; NaN when exactly
one side is empty, or `hd95_empty`). The prediction must lie on the truth's grid: another shape, or
for NIfTI another affine (beyond 1e-3 mm), is an error naming both files.

**Outputs** (atomically): ``per_case.csv`` (one row per case: ``case_id``, ``prediction``,
``truth``, then ``<metric>_<class>`` columns, e.g. ``dice_1``, ``hd95_WT``) and ``summary.json``
(``mean``, ``median``, ``std``, ``n``, ``undefined`` per column, over the cases where defined;
``unpaired`` files; the settings).

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from tfseg.io.nifti import write_nifti
    >>> folder = tempfile.mkdtemp()
    >>> truth = np.zeros((4, 4, 4), np.uint8); truth[1:3, 1:3, 1:3] = 1
    >>> pred = truth.copy(); pred[1, 1, 1] = 0
    >>> _ = write_nifti(os.path.join(folder, "t", "a_seg.nii.gz"), truth, np.eye(4))
    >>> _ = write_nifti(os.path.join(folder, "p", "a.nii.gz"), pred, np.eye(4))
    >>> result = evaluate(os.path.join(folder, "p"), os.path.join(folder, "t"))
    >>> round(result.cases[0]["dice_1"], 4)                                    # 2*7 / (7 + 8)
    0.9333
"""
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re

import numpy as np

from tfseg.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Name endings removed (one of them) to get a file's case id.
SUFFIXES = ("seg", "pred", "prediction", "mask", "label", "labels", "gt", "truth")
METRICS = ("dice", "iou", "precision", "recall", "hd95")
LABEL_EXTENSIONS = (".nii.gz", ".nii", ".png", ".tif", ".tiff")
_SUFFIX_RE = re.compile(rf"^(?P<case>.+?)[_-](?:{'|'.join(SUFFIXES)})$", re.IGNORECASE)
_AFFINE_ATOL = 1e-3


def case_id(path):
    """The case id a label file's name gives (see the module docstring's pairing rule).

    Example:
        >>> case_id("/out/BraTS2021_00000_seg.nii.gz"), case_id("TCGA_CS_4941_19960909_3_mask.tif")
        ('BraTS2021_00000', 'TCGA_CS_4941_19960909_3')
    """
    name = os.path.basename(os.fspath(path))
    for extension in LABEL_EXTENSIONS:
        if name.lower().endswith(extension):
            name = name[:-len(extension)]
            break
    match = _SUFFIX_RE.match(name)
    return match.group("case") if match else name


def _is_modality_image(name):
    from tfseg.datasets.brats import parse_name

    parsed = parse_name(name)
    return parsed is not None and parsed[1] != "seg"


def label_files(source, prediction=False):
    """`{case_id: path}` of the label maps in a folder, datalist or single file.

    Args:
        source: folder (recursive; BraTS modality images passed over), datalist JSON or one file.
        prediction: for a datalist, fall back to an entry's first image when it has no label.

    Raises:
        DataError: `source` is missing or empty, or holds two files of one case.
    """
    source = os.fspath(source)
    if not os.path.exists(source):
        raise DataError(source, "not found")
    found = {}

    def add(key, path):
        if key in found:
            raise DataError(path, f"a second file for case {key!r} (first: {found[key]}); one label map per case")
        found[key] = path

    if os.path.isfile(source) and source.lower().endswith(".json"):
        from tfseg.datasets.datalist import read_datalist

        for records in read_datalist(source).values():
            for record in records:
                path = record.label or (record.images[0] if prediction and record.images else None)
                if path is not None:
                    add(record.case_id, path)
    elif os.path.isfile(source):
        add(case_id(source), source)
    else:
        for parent, folders, files in os.walk(source):
            folders.sort()
            for name in sorted(files):
                if name.startswith(".") or not name.lower().endswith(LABEL_EXTENSIONS) or _is_modality_image(name) \
                        or "_probabilities." in name:
                    continue
                add(case_id(name), os.path.join(parent, name))
    if not found:
        raise DataError(source, f"holds no label map ({', '.join(LABEL_EXTENSIONS)})")
    return found


def read_labels(path):
    """`(label array, spacing, affine or None)` of a NIfTI or PNG/TIFF label file.

    Raises:
        DataError: unreadable file, or values that are not whole numbers.
    """
    name = os.fspath(path).lower()
    if name.endswith((".nii", ".nii.gz")):
        from tfseg.io.nifti import read_nifti

        volume = read_nifti(path)
        array = volume.array
        if array.ndim == 4 and array.shape[3] == 1:
            array = array[..., 0]
        if array.ndim != 3:
            raise DataError(path, f"expected a 3D label map, got shape {array.shape}")
        spacing, affine = volume.spacing, volume.affine
    else:
        from tfseg.io.images import read_mask

        array = read_mask(path, binary=False) if not _binary_255(path) else read_mask(path)
        spacing, affine = (1.0, 1.0), None
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise DataError(path, "label map holds non-integer values (probabilities?); pass label maps")
        array = array.astype(np.int64)
    return array, spacing, affine


def _binary_255(path):
    """True for a two-valued 0/255 mask (LGG style), read as 0/1."""
    from tfseg.io.images import read_image

    values = np.unique(read_image(path))
    return values.size <= 2 and values.max() == 255 and values.min() == 0


def binary_scores(pred_mask, true_mask, spacing=None, hd95_empty=float("nan"), source="mask"):
    """Dice, IoU, precision, recall and HD95 of one binary mask pair.

    Example:
        >>> s = binary_scores(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
        >>> round(s["dice"], 4), s["precision"], s["recall"], round(s["hd95"], 2)  # distances 0, 1 and 0
        (0.6667, 0.5, 1.0, 0.9)
    """
    from tfseg.metrics import hausdorff_distance_95, score_from_counts

    pred, true = np.asarray(pred_mask) != 0, np.asarray(true_mask) != 0
    tp = int(np.count_nonzero(pred & true))
    fp, fn = int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(true)) - tp
    tn = pred.size - tp - fp - fn
    scores = {name: float(score_from_counts(name, tp, fp, fn, tn)) for name in METRICS[:4]}
    scores["hd95"] = hausdorff_distance_95(pred, true, spacing=spacing, empty_value=hd95_empty, source=source)
    return scores


def case_scores(pred, truth, labels, regions=None, spacing=None, hd95_empty=float("nan"), source="labels"):
    """`{"<metric>_<class>": value}` for one case (classes = `labels`, then regions).

    Example:
        >>> truth = np.array([[0, 1, 2, 4]]); pred = np.array([[0, 1, 2, 2]])
        >>> s = case_scores(pred, truth, labels=(1, 2, 4), regions="brats")
        >>> s["dice_4"], s["dice_WT"], s["dice_TC"]
        (0.0, 1.0, 0.6666666666666666)
    """
    scores = {}
    for value in labels:
        for name, score in binary_scores(pred == value, truth == value, spacing, hd95_empty, source).items():
            scores[f"{name}_{value}"] = score
    if regions == "brats":
        from tfseg.datasets.brats import REGIONS

        for region, members in REGIONS.items():
            masks = (np.isin(pred, members), np.isin(truth, members))
            for name, score in binary_scores(*masks, spacing, hd95_empty, source).items():
                scores[f"{name}_{region}"] = score
    elif regions is not None:
        raise ConfigError(f"regions must be None or 'brats', got {regions!r}")
    return scores


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` computed: per-case rows, the summary, unpaired files and written paths."""

    cases: list
    summary: dict
    unpaired: dict
    csv_path: str = None
    json_path: str = None


def _check_grid(pred_path, pred, pred_affine, truth_path, truth, truth_affine):
    if pred.shape != truth.shape:
        raise DataError(pred_path, f"prediction of shape {pred.shape} but the truth {truth_path} has shape "
                                   f"{truth.shape}; predictions must lie on the truth's grid")
    if pred_affine is not None and truth_affine is not None and \
            not np.allclose(pred_affine, truth_affine, atol=_AFFINE_ATOL):
        raise DataError(pred_path, f"its affine differs from the truth {truth_path}'s by up to "
                                   f"{np.abs(pred_affine - truth_affine).max():.4g} mm: not the same grid "
                                   f"(resample or write the prediction with the input's affine)")


def _summary(rows, columns):
    summary = {}
    for column in columns:
        values = np.asarray([row[column] for row in rows], np.float64)
        defined = values[~np.isnan(values)]
        summary[column] = {"mean": float(defined.mean()) if defined.size else None,
                           "median": float(np.median(defined)) if defined.size else None,
                           "std": float(defined.std()) if defined.size else None,
                           "n": int(defined.size), "undefined": int(values.size - defined.size)}
    return summary


def evaluate(pred, truth, output_dir=None, labels=None, regions=None, hd95_empty=float("nan")):
    """Score every prediction against its truth, per case and class; write the CSV and JSON.

    Args:
        pred: folder, datalist JSON or file of predicted label maps.
        truth: folder, datalist JSON or file of true label maps.
        output_dir: where ``per_case.csv`` and ``summary.json`` go; None: nothing written.
        labels: the label values to score; None: every non-zero value found in either side.
        regions: None, or "brats" for the WT/TC/ET regions too.
        hd95_empty: HD95 when exactly one side is empty (NaN: left out of the means, counted as
            undefined; BraTS scores 373.13).

    Returns:
        An `Evaluation`.

    Raises:
        DataError: no pair, a shape or geometry mismatch (naming both files), unreadable files.
    """
    predictions, truths = label_files(pred, prediction=True), label_files(truth)
    paired = sorted(set(predictions) & set(truths))
    unpaired = {"prediction": sorted(predictions[k] for k in set(predictions) - set(truths)),
                "truth": sorted(truths[k] for k in set(truths) - set(predictions))}
    for side, files in unpaired.items():
        for path in files:
            logger.warning("unpaired %s file %s (no %s of case %r)", side, path,
                           "truth" if side == "prediction" else "prediction", case_id(path))
    if not paired:
        raise DataError(pred, f"no prediction pairs with a truth file of {truth} by case id "
                              f"(e.g. {next(iter(predictions))!r} vs {next(iter(truths))!r})")
    loaded = []
    for key in paired:
        p, _, p_affine = read_labels(predictions[key])
        t, t_spacing, t_affine = read_labels(truths[key])
        _check_grid(predictions[key], p, p_affine, truths[key], t, t_affine)
        loaded.append((key, p, t, t_spacing))
    if labels is None:
        values = set()
        for _, p, t, _ in loaded:
            values.update(np.unique(p).tolist())
            values.update(np.unique(t).tolist())
        labels = sorted(int(v) for v in values if v != 0)
    labels = tuple(int(v) for v in labels)
    rows = []
    for key, p, t, spacing in loaded:
        scores = case_scores(p, t, labels, regions=regions, spacing=spacing, hd95_empty=hd95_empty,
                             source=predictions[key])
        rows.append({"case_id": key, "prediction": predictions[key], "truth": truths[key], **scores})
    columns = [c for c in rows[0] if c not in ("case_id", "prediction", "truth")]
    result = Evaluation(cases=rows, summary=_summary(rows, columns), unpaired=unpaired)
    if output_dir is not None:
        result.csv_path, result.json_path = _write(result, output_dir, columns,
                                                   {"prediction": os.fspath(pred), "truth": os.fspath(truth),
                                                    "labels": list(labels), "regions": regions,
                                                    "hd95_empty": hd95_empty})
    return result


def _write(result, output_dir, columns, settings):
    from tfseg.utils.atomic import atomic_write_json, atomic_write_text

    os.makedirs(output_dir, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case_id", "prediction", "truth"] + columns, lineterminator="\n")
    writer.writeheader()
    for row in result.cases:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    csv_path = os.path.join(output_dir, "per_case.csv")
    json_path = os.path.join(output_dir, "summary.json")
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_json(json_path, {"cases": len(result.cases), "metrics": result.summary,
                                  "unpaired": result.unpaired, "settings": _json_safe(settings)})
    return csv_path, json_path


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def format_summary(result):
    """A text table: one row per column of scores with mean, median, std and n."""
    width = max(len(k) for k in result.summary)
    lines = [f"{'metric':<{width}}  {'mean':>8}  {'median':>8}  {'std':>8}  n"]
    for name, s in result.summary.items():
        cells = [f"{s[k]:8.4f}" if s[k] is not None else f"{'-':>8}" for k in ("mean", "median", "std")]
        lines.append(f"{name:<{width}}  {'  '.join(cells)}  {s['n']}")
    return "\n".join(lines)


def add_parser(subparsers):
    """Register `tfseg evaluate PRED TRUTH` on an argparse subparsers object."""
    parser = subparsers.add_parser("evaluate", help="score label maps from any tool against the truth: per-case CSV "
                                                    "and summary JSON of Dice, IoU, precision, recall, HD95")
    parser.add_argument("pred", help="folder, datalist JSON or file of predicted label maps")
    parser.add_argument("truth", help="folder, datalist JSON or file of true label maps")
    parser.add_argument("--out", default="evaluation", help="folder for per_case.csv and summary.json")
    parser.add_argument("--labels", help="comma-separated label values to score (default: all non-zero found)")
    parser.add_argument("--regions", choices=("brats",), help="also score the BraTS regions WT, TC, ET")
    parser.add_argument("--hd95-empty", type=float, default=float("nan"),
                        help="HD95 when one side is empty (default NaN: left out; BraTS uses 373.13)")
    parser.set_defaults(handler=run)
    return parser


def run(args):
    """Handle `tfseg evaluate`: print the summary table and the written paths; 0 on success."""
    labels = None
    if args.labels:
        try:
            labels = [int(v) for v in args.labels.split(",")]
        except ValueError:
            raise ConfigError(f"--labels must be comma-separated integers, got {args.labels!r}") from None
    result = evaluate(args.pred, args.truth, output_dir=args.out, labels=labels, regions=args.regions,
                      hd95_empty=args.hd95_empty)
    print(format_summary(result))
    unpaired = sum(len(v) for v in result.unpaired.values())
    print(json.dumps({"cases": len(result.cases), "unpaired": unpaired, "per_case": result.csv_path,
                      "summary": result.json_path}))
    return 0
