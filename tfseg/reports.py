"""Per-class evaluation report of a test set: precision, recall, accuracy, IoU, Dice and support.

Counts are pooled over every pixel (voxel) of the test set before any score is computed (one
`tfseg.metrics.confusion_counts` per batch, summed), so the report does not depend on how the
test set is cut into batches or cases. The scores follow `tfseg.metrics.score_from_counts`:

- precision = TP / (TP + FP), recall = TP / (TP + FN), accuracy = (TP + TN) / N,
  IoU = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN); support = TP + FN (true pixels).
- **Empty classes**: a class absent from both truth and prediction (TP + FP + FN == 0) scores
  `empty_value` (1.0 by default, as in `tfseg.metrics`: nothing predicted where there is
  nothing); pass `empty_value=float("nan")` to mark such classes "n/a" instead. A class absent
  from one side only scores 0 where its denominator is zero (e.g. the precision of a class that
  is never predicted). No division warnings either way.
- The "mean" row averages the foreground classes (1..C-1); NaN entries are left out of it.

Example:
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 1], [0, 0, 2]]); pred = np.array([[0, 1, 0], [0, 2, 2]])
    >>> report = per_class_report(pred, truth, ["background", "edema", "tumor"])
    >>> report["classes"]["tumor"]["dice"], report["classes"]["tumor"]["support"]
    (0.6666666666666666, 1)
    >>> print(format_report(report, digits=2))       # doctest: +NORMALIZE_WHITESPACE
    class       precision  recall  accuracy   iou  dice  support
    background       0.67    0.67      0.67  0.50  0.67        3
    edema            1.00    0.50      0.83  0.50  0.67        2
    tumor            0.50    1.00      0.83  0.50  0.67        1
    mean (fg)        0.75    0.75      0.83  0.50  0.67        3
"""
import logging
import math

import numpy as np

from tfseg.errors import ConfigError
from tfseg.metrics import confusion_counts, score_from_counts

logger = logging.getLogger(__name__)

#: The scores of a report, in the order of `format_report`'s columns.
REPORT_SCORES = ("precision", "recall", "accuracy", "iou", "dice")


def _class_names(class_names, num_classes):
    if class_names is None:
        if num_classes is None:
            raise ConfigError("give class_names or num_classes")
        return [str(index) for index in range(num_classes)]
    names = [str(name) for name in class_names]
    if num_classes is not None and len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names {names} for num_classes={num_classes}")
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must be unique, got {names}")
    if len(names) < 2:
        raise ConfigError(f"a report needs at least 2 classes (background and one foreground), got {names}")
    return names


def report_from_counts(tp, fp, fn, tn, class_names, empty_value=1.0):
    """Build a report from per-class confusion counts already summed over a test set.

    Args:
        tp, fp, fn, tn: per-class counts, arrays of shape `(C,)`.
        class_names: `C` unique names, background first.
        empty_value: score of a class absent from truth and prediction (see the module docstring).

    Returns:
        A dict: `"classes"`: name -> {precision, recall, accuracy, iou, dice (floats), support,
        tp, fp, fn, tn (ints)}; `"mean"`: score -> mean over the foreground classes, plus the
        summed foreground `support`; `"num_pixels"`; `"empty_value"`. Plain Python numbers, so
        `tfseg.utils.atomic.atomic_write_json` saves it as is.

    Example:
        >>> r = report_from_counts([5, 0], [0, 0], [0, 0], [0, 5], ["bg", "lesion"])
        >>> r["classes"]["lesion"]["dice"]                 # absent from both: empty_value
        1.0
    """
    counts = [np.asarray(c, np.int64) for c in (tp, fp, fn, tn)]
    names = _class_names(class_names, len(counts[0]))
    scores = {name: np.asarray(score_from_counts(name, *counts, empty_value=empty_value), np.float64)
              for name in REPORT_SCORES}
    tp, fp, fn, tn = counts
    classes = {}
    for index, name in enumerate(names):
        row = {score: float(values[index]) for score, values in scores.items()}
        row.update(support=int(tp[index] + fn[index]), tp=int(tp[index]), fp=int(fp[index]), fn=int(fn[index]),
                   tn=int(tn[index]))
        classes[name] = row
    mean = {}
    for score, values in scores.items():
        foreground = values[1:][~np.isnan(values[1:])]
        mean[score] = float(foreground.mean()) if foreground.size else math.nan
    mean["support"] = int((tp[1:] + fn[1:]).sum())
    num_pixels = int(tp[0] + fp[0] + fn[0] + tn[0])
    return {"classes": classes, "mean": mean, "num_pixels": num_pixels, "empty_value": float(empty_value)}


def report_from_batches(pairs, num_classes=None, class_names=None, empty_value=1.0):
    """Accumulate confusion counts over `(prediction, truth)` label maps, then build the report.

    Only the per-class counts are kept between batches, so a test set of any size can be
    evaluated from a generator (e.g. a `tf.data` iterator after an argmax).

    Args:
        pairs: iterable of `(pred_labels, true_labels)`, integer label maps of equal shape per
            pair (any shape; shapes may change from pair to pair). Tensors are converted to numpy.
        num_classes: number of classes `C`; default `len(class_names)`.
        class_names: `C` unique names, background first; default "0", "1", ...
        empty_value: score of a class absent from truth and prediction.

    Returns:
        The report dict of `report_from_counts`.

    Raises:
        DataError: a pair has labels outside `[0, C)`, non-integer labels or mismatched shapes
            (the message names the batch, counted from 0).
        ConfigError: no pairs, or class names that do not match `num_classes`.

    Example:
        >>> import numpy as np
        >>> batches = [(np.array([[1, 0]]), np.array([[1, 1]])), (np.array([1]), np.array([0]))]
        >>> r = report_from_batches(batches, 2, ["bg", "fg"])
        >>> r["classes"]["fg"]["precision"], r["classes"]["fg"]["recall"]
        (0.5, 0.5)
    """
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    names = _class_names(class_names, num_classes)
    total = None
    count = 0
    for count, pair in enumerate(pairs, start=1):
        try:
            pred, truth = pair
        except (TypeError, ValueError):
            raise ConfigError(f"pairs must yield (prediction, truth); item {count - 1} is {type(pair).__name__}") \
                from None
        counts = confusion_counts(np.asarray(pred), np.asarray(truth), len(names), source=f"batch {count - 1}")
        total = counts if total is None else tuple(a + b for a, b in zip(total, counts))
    if total is None:
        raise ConfigError("no (prediction, truth) pairs to evaluate")
    logger.debug("report over %d batches, %d pixels", count, int(total[0][0] + total[1][0] + total[2][0] +
                                                                  total[3][0]))
    return report_from_counts(*total, names, empty_value=empty_value)


def per_class_report(pred_labels, true_labels, class_names, empty_value=1.0):
    """Per-class precision, recall, accuracy, IoU, Dice and support over all pixels of a test set.

    Args:
        pred_labels: predicted label map(s), any shape (e.g. `(N, H, W)` stacked test slices), or a
            list of label maps (cases of different shapes).
        true_labels: ground truth, same shape (or a list of the same length).
        class_names: names of the classes `0..C-1`, background first.
        empty_value: score of a class absent from truth and prediction.

    Returns:
        The report dict of `report_from_counts`.

    Raises:
        DataError: shapes differ, or labels are outside `[0, len(class_names))`.

    Example:
        >>> import numpy as np
        >>> r = per_class_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ["bg", "fg"])
        >>> r["classes"]["fg"]["iou"], r["mean"]["iou"]
        (0.5, 0.5)
    """
    if isinstance(pred_labels, (list, tuple)) and isinstance(true_labels, (list, tuple)):
        if len(pred_labels) != len(true_labels):
            raise ConfigError(f"{len(pred_labels)} predictions but {len(true_labels)} truths")
        pairs = zip(pred_labels, true_labels)
    else:
        pairs = [(pred_labels, true_labels)]
    return report_from_batches(pairs, class_names=class_names, empty_value=empty_value)


def _number(value, digits):
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"


def format_report(report, digits=3):
    """The report as an aligned text table: one row per class and a foreground-mean row.

    Args:
        report: a dict from `per_class_report` / `report_from_batches`.
        digits: decimals of the scores.

    Returns:
        The table as a string (no trailing newline). NaN scores print as "n/a".

    Example:
        >>> import numpy as np
        >>> text = format_report(per_class_report(np.array([0, 1]), np.array([0, 1]), ["bg", "fg"]))
        >>> text.splitlines()[0].split()
        ['class', 'precision', 'recall', 'accuracy', 'iou', 'dice', 'support']
    """
    header = ["class", *REPORT_SCORES, "support"]
    rows = [[name, *(_number(values[s], digits) for s in REPORT_SCORES), str(values["support"])]
            for name, values in report["classes"].items()]
    mean = report["mean"]
    rows.append(["mean (fg)", *(_number(mean[s], digits) for s in REPORT_SCORES), str(mean["support"])])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = []
    for row in [header] + rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_rows(rows, footer=None):
    """An aligned two-column text table of `(name, value)` rows, with an optional last line.

    Example:
        >>> print(format_rows([("Dice", "0.91"), ("epochs", "20")]))
        Dice    0.91
        epochs  20
    """
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if footer:
        lines.append(footer)
    return "\n".join(lines)
