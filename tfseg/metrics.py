"""Segmentation metrics: streaming Keras metrics (Dice, IoU, precision, recall, pixel accuracy) and
numpy evaluation helpers for whole cases, sharing one definition of every score.

Input conventions of the streaming metrics (the same as `tfseg.losses`):

- ``y_pred``: probabilities, or logits with ``from_logits=True``, ``(B, *spatial, C)``, channels
  last, 2D or 3D.
- ``mode="softmax"``: ``y_true`` is an integer label map ``(B, *spatial)`` or ``(B, *spatial, 1)``
  (any int or float dtype), one-hot encoded to ``C`` classes; the predicted class is the argmax.
  Averages run over the foreground classes ``1..C-1`` unless ``include_background=True``.
  Labels outside ``[0, C)`` match no class (such pixels can only be false positives); the numpy
  helpers below reject them with a `DataError` instead.
- ``mode="sigmoid"``: ``y_true`` is a binary ``(B, *spatial, C)`` target, one channel per region
  (values > 0.5 are positive); a channel is predicted where its probability > ``threshold``.
  Averages run over all channels.

Counting is dataset-level: the metrics accumulate true positives (TP), false positives (FP) and
false negatives (FN) per class over everything seen since the last `reset_state()`, and compute the
score from those totals, so a validation score does not depend on the batch size (unlike the mean
of per-batch scores). Counts are kept in float64, exact for integer counts up to 2**53.

Scores (one definition, `score_from_counts`, used by the Keras metrics and the numpy helpers):

- Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN), precision = TP / (TP + FP),
  recall = TP / (TP + FN), per-class accuracy = (TP + TN) / N.
- **Empty masks**: a class absent from both truth and prediction (TP + FP + FN == 0) scores
  ``empty_value`` (1.0 by default: predicting nothing where there is nothing is perfect). A class
  absent from one side only scores 0 (e.g. precision of an empty prediction on a non-empty truth).
  Means over classes count every class, empty ones included.

Why Dice and not pixel accuracy: on a slice where the left ventricle covers 2% of the pixels, a
model predicting only background has pixel accuracy 0.98 and Dice 0.

Example:
    >>> import numpy as np
    >>> truth = np.array([[0, 1], [1, 1]]); pred = np.array([[0, 1], [0, 1]])
    >>> scores = segmentation_scores(pred, truth, num_classes=2)
    >>> [round(float(d), 4) for d in scores["dice"]]          # class 0: 2/(2+0+1), class 1: 4/(4+0+1)
    [0.6667, 0.8]
"""
import keras
import numpy as np
from keras import ops

from tfseg.errors import ConfigError, DataError
from tfseg.losses import check_mode, prepare_target, select_classes, spatial_axes

SCORES = ("dice", "iou", "precision", "recall", "accuracy")


# --------------------------------------------------------------------------------------------
# One definition of the scores, for numpy arrays and for tensors.
# --------------------------------------------------------------------------------------------

def score_from_counts(score, tp, fp, fn, tn, empty_value=1.0, xp=np):
    """A score from confusion counts, with the empty-mask rule; works on numpy arrays or tensors.

    Args:
        score: one of `SCORES`: "dice", "iou", "precision", "recall", "accuracy".
        tp, fp, fn, tn: per-class counts (arrays or tensors of one shape).
        empty_value: the score of a class with TP + FP + FN == 0 (for "accuracy": of zero pixels).
        xp: the array namespace: `numpy` (default) or `keras.ops`.

    Returns:
        Per-class scores, same shape as the counts.

    Example:
        >>> score_from_counts("dice", np.array([3, 0]), np.array([1, 0]), np.array([1, 0]), np.array([5, 10]))
        array([0.75, 1.  ])
    """
    if score == "dice":
        num, den = 2 * tp, 2 * tp + fp + fn
    elif score == "iou":
        num, den = tp, tp + fp + fn
    elif score == "precision":
        num, den = tp, tp + fp
    elif score == "recall":
        num, den = tp, tp + fn
    elif score == "accuracy":
        num, den = tp + tn, tp + fp + fn + tn
    else:
        raise ConfigError(f"score must be one of {SCORES}, got {score!r}")
    empty = (den == 0) if score == "accuracy" else (tp + fp + fn == 0)
    # A zero denominator with a non-empty class means a zero numerator too: the score is 0.
    return xp.where(empty, empty_value, num / xp.where(den > 0, den, 1))


# --------------------------------------------------------------------------------------------
# Numpy evaluation of whole cases.
# --------------------------------------------------------------------------------------------

def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _label_array(labels, what, num_classes, source):
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError(source, f"{what} labels must be whole numbers, got non-integer values")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DataError(source, f"{what} labels must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])[:5].tolist()
        raise DataError(source, f"{what} labels {bad} are outside [0, {num_classes}) "
                                f"(remap labels first, e.g. BraTS 4 -> 3)")
    return arr.astype(np.int64, copy=False)


def confusion_counts(pred_labels, true_labels, num_classes, source="labels"):
    """Per-class TP, FP, FN and TN of a predicted label map against the truth.

    Args:
        pred_labels: integer (or whole-valued float, or bool) label map of any shape.
        true_labels: the ground truth, same shape.
        num_classes: number of classes `C`; labels must lie in `[0, C)`.
        source: the case (e.g. its label file) named in errors.

    Returns:
        `(tp, fp, fn, tn)`, four int64 arrays of shape `(C,)`.

    Raises:
        DataError: shapes differ, or labels are not whole numbers in `[0, C)`.

    Example:
        >>> tp, fp, fn, tn = confusion_counts(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
        >>> tp.tolist(), fp.tolist(), fn.tolist(), tn.tolist()
        ([1, 1, 1], [0, 1, 0], [0, 0, 1], [3, 2, 2])
    """
    num_classes = _check_num_classes(num_classes)
    pred = _label_array(pred_labels, "predicted", num_classes, source)
    true = _label_array(true_labels, "true", num_classes, source)
    if pred.shape != true.shape:
        raise DataError(source, f"prediction shape {pred.shape} differs from truth shape {true.shape}")
    matrix = np.bincount((true * num_classes + pred).ravel(), minlength=num_classes ** 2)
    matrix = matrix.reshape(num_classes, num_classes)   # rows: truth, columns: prediction
    tp = np.diag(matrix).copy()
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    tn = true.size - tp - fp - fn
    return tp, fp, fn, tn


def segmentation_scores(pred_labels, true_labels, num_classes, empty_value=1.0, source="labels"):
    """Per-class Dice, IoU, precision, recall and accuracy of one case (or of any label arrays).

    Args:
        pred_labels: predicted label map (integers in `[0, num_classes)`).
        true_labels: ground-truth label map, same shape.
        num_classes: number of classes.
        empty_value: score of a class absent from both (see the module docstring).
        source: the case named in errors.

    Returns:
        A dict mapping each name in `SCORES` to a float64 array of shape `(num_classes,)`. To pool
        several cases, sum their `confusion_counts` and call `score_from_counts`.

    Example:
        >>> s = segmentation_scores(np.zeros((4, 4), int), np.zeros((4, 4), int), num_classes=2)
        >>> s["dice"].tolist(), s["iou"].tolist()                    # class 1 empty in both: 1.0
        ([1.0, 1.0], [1.0, 1.0])
    """
    counts = confusion_counts(pred_labels, true_labels, num_classes, source=source)
    return {name: np.asarray(score_from_counts(name, *counts, empty_value=empty_value), dtype=np.float64)
            for name in SCORES}


# --------------------------------------------------------------------------------------------
# Tensor counting shared by the streaming metrics.
# --------------------------------------------------------------------------------------------

def _check_threshold(threshold):
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")
    return float(threshold)


def predicted_mask(y_pred, mode, threshold=0.5, from_logits=False):
    """Hard predictions of `y_pred` as a 0/1 float32 tensor of its shape.

    Softmax: one-hot of the argmax (logits or probabilities alike). Sigmoid: probability
    (sigmoid of the logits with `from_logits`) > `threshold`, per channel.
    """
    check_mode(mode)
    y_pred = ops.cast(y_pred, "float32")
    if mode == "softmax":
        return ops.one_hot(ops.argmax(y_pred, axis=-1), y_pred.shape[-1], dtype="float32")
    probs = ops.sigmoid(y_pred) if from_logits else y_pred
    return ops.cast(probs > threshold, "float32")


def true_mask(y_true, y_pred, mode):
    """The truth as a 0/1 float32 tensor of `y_pred`'s shape (one-hot labels, or target > 0.5)."""
    target = prepare_target(y_true, ops.cast(y_pred, "float32"), mode)
    return target if mode == "softmax" else ops.cast(target > 0.5, "float32")


def _pixel_weights(sample_weight, y_pred):
    """`sample_weight` as a float32 tensor broadcastable to `(B, *spatial, 1)`, or None."""
    if sample_weight is None:
        return None
    weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
    rank, weight_rank = len(y_pred.shape), len(weight.shape)
    if weight_rank == rank:
        if weight.shape[-1] not in (1, None):
            raise ConfigError(f"sample_weight shape {tuple(weight.shape)} must broadcast to "
                              f"(B, *spatial, 1) for y_pred shape {tuple(y_pred.shape)}")
        return weight
    if weight_rank > rank:
        raise ConfigError(f"sample_weight shape {tuple(weight.shape)} has more axes than y_pred "
                          f"{tuple(y_pred.shape)}")
    if weight_rank == 0:
        return ops.reshape(weight, (1,) * rank)
    for _ in range(rank - weight_rank):     # (B,) -> (B, 1, ..., 1); (B, *spatial) -> (B, *spatial, 1)
        weight = ops.expand_dims(weight, -1)
    return weight


def _count(x):
    """Sum `(B, *spatial, C)` over all but the last axis: per sample in float32 (exact for 0/1
    values below 2**24 per sample and class), then over the batch in float64."""
    per_sample = ops.sum(x, axis=spatial_axes(x))
    return ops.sum(ops.cast(per_sample, "float64"), axis=0)


def batch_confusion_counts(y_true, y_pred, mode="softmax", threshold=0.5, from_logits=False, sample_weight=None):
    """Per-class TP, FP, FN and the pixel count of one batch, as float64 tensors.

    Args:
        y_true, y_pred: a batch in the layout of the module docstring.
        mode: "softmax" or "sigmoid".
        threshold: sigmoid-mode decision threshold on probabilities.
        from_logits: `y_pred` holds logits.
        sample_weight: optional weights of shape `(B,)`, `(B, *spatial)` or `(B, *spatial, 1)`.

    Returns:
        `(tp, fp, fn, total)`: three `(C,)` tensors and the (weighted) number of pixels, a scalar;
        TN per class is `total - tp - fp - fn`.
    """
    truth = true_mask(y_true, y_pred, mode)
    pred = predicted_mask(y_pred, mode, threshold, from_logits)
    weight = ops.ones_like(pred[..., :1])
    if sample_weight is not None:
        weight = weight * _pixel_weights(sample_weight, pred)
    tp = _count(truth * pred * weight)
    fp = _count(pred * weight) - tp
    fn = _count(truth * weight) - tp
    total = _count(weight)[0]
    return tp, fp, fn, total


# --------------------------------------------------------------------------------------------
# Streaming Keras metrics.
# --------------------------------------------------------------------------------------------

class _ConfusionScore(keras.metrics.Metric):
    """Accumulates per-class TP/FP/FN since the last reset; subclasses name the score in `score`."""

    score = None

    def __init__(self, num_classes, class_id=None, mode="softmax", threshold=0.5, from_logits=False,
                 include_background=False, empty_value=1.0, name=None, dtype=None):
        super().__init__(name=name or self.score, dtype=dtype)
        self.num_classes = _check_num_classes(num_classes)
        self.mode = check_mode(mode)
        if self.mode == "softmax" and self.num_classes < 2:
            raise ConfigError("mode 'softmax' needs num_classes >= 2 (background + classes)")
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer))
                                     or not 0 <= class_id < self.num_classes):
            raise ConfigError(f"class_id must be None or an integer in [0, {self.num_classes}), got {class_id!r}")
        self.class_id = None if class_id is None else int(class_id)
        self.threshold = _check_threshold(threshold)
        self.from_logits = bool(from_logits)
        self.include_background = bool(include_background)
        self.empty_value = float(empty_value)
        shape = (self.num_classes,)
        self.true_positives = self.add_variable(shape, "zeros", dtype="float64", name="true_positives")
        self.false_positives = self.add_variable(shape, "zeros", dtype="float64", name="false_positives")
        self.false_negatives = self.add_variable(shape, "zeros", dtype="float64", name="false_negatives")
        self.total = self.add_variable((), "zeros", dtype="float64", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        channels = y_pred.shape[-1]
        if channels is not None and channels != self.num_classes:
            raise ConfigError(f"{type(self).__name__} was built for num_classes={self.num_classes} but y_pred "
                              f"has {channels} channels (shape {tuple(y_pred.shape)})")
        tp, fp, fn, total = batch_confusion_counts(y_true, y_pred, self.mode, self.threshold, self.from_logits,
                                                   sample_weight)
        self.true_positives.assign_add(tp)
        self.false_positives.assign_add(fp)
        self.false_negatives.assign_add(fn)
        self.total.assign_add(total)

    def result_per_class(self):
        """The score of every class (channel), shape `(num_classes,)`, from the counts so far."""
        tp, fp, fn, total = (ops.convert_to_tensor(v) for v in (
            self.true_positives, self.false_positives, self.false_negatives, self.total))
        scores = score_from_counts(self.score, tp, fp, fn, total - tp - fp - fn, self.empty_value, xp=ops)
        return ops.cast(scores, self.dtype)

    def result(self):
        scores = self.result_per_class()
        if self.class_id is not None:
            return scores[self.class_id]
        return ops.mean(select_classes(scores, self.mode, self.include_background))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "class_id": self.class_id,
                "mode": self.mode, "threshold": self.threshold, "from_logits": self.from_logits,
                "include_background": self.include_background, "empty_value": self.empty_value}


_SCORE_ARGS = """
    Args:
        num_classes: number of classes (softmax) or channels (sigmoid) of `y_pred`.
        class_id: report this class (channel) only; None: the mean over classes (foreground
            classes in softmax mode unless `include_background`, every channel in sigmoid mode),
            empty classes included with `empty_value`.
        mode: "softmax" (label-map truth, argmax prediction) or "sigmoid" (multi-channel binary
            truth, prediction = probability > `threshold`).
        threshold: sigmoid-mode decision threshold.
        from_logits: `y_pred` holds logits.
        include_background: softmax mode: count class 0 in the mean.
        empty_value: score of a class absent from both truth and prediction since the last reset.
        name: metric name; defaults to the score's name ("dice", "iou", "precision", "recall").
        dtype: dtype of the result (counts are float64).
"""


@keras.saving.register_keras_serializable(package="tfseg")
class DiceScore(_ConfusionScore):
    __doc__ = """Dataset-level Dice, 2TP / (2TP + FP + FN), from counts accumulated since the last reset.
""" + _SCORE_ARGS + """
    Example:
        >>> m = DiceScore(num_classes=2)
        >>> m.update_state(np.array([[[0, 1], [1, 1]]]), np.eye(2)[np.array([[[0, 1], [0, 1]]])])
        >>> round(float(m.result()), 4)                                   # 2*2 / (2*2 + 0 + 1)
        0.8
    """
    score = "dice"


@keras.saving.register_keras_serializable(package="tfseg")
class IoUScore(_ConfusionScore):
    __doc__ = """Dataset-level IoU (Jaccard), TP / (TP + FP + FN), from counts accumulated since the last reset.
""" + _SCORE_ARGS + """
    Example:
        >>> m = IoUScore(num_classes=2)
        >>> m.update_state(np.array([[[0, 1], [1, 1]]]), np.eye(2)[np.array([[[0, 1], [0, 1]]])])
        >>> round(float(m.result()), 4)                                   # 2 / (2 + 0 + 1)
        0.6667
    """
    score = "iou"


@keras.saving.register_keras_serializable(package="tfseg")
class PrecisionScore(_ConfusionScore):
    __doc__ = """Dataset-level precision, TP / (TP + FP), from counts accumulated since the last reset.
""" + _SCORE_ARGS + """
    Example:
        >>> m = PrecisionScore(num_classes=2)
        >>> m.update_state(np.array([[[0, 1], [1, 1]]]), np.eye(2)[np.array([[[1, 1], [0, 1]]])])
        >>> round(float(m.result()), 4)                                   # 2 / (2 + 1)
        0.6667
    """
    score = "precision"


@keras.saving.register_keras_serializable(package="tfseg")
class RecallScore(_ConfusionScore):
    __doc__ = """Dataset-level recall (sensitivity), TP / (TP + FN), from counts accumulated since the last reset.
""" + _SCORE_ARGS + """
    Example:
        >>> m = RecallScore(num_classes=2)
        >>> m.update_state(np.array([[[0, 1], [1, 1]]]), np.eye(2)[np.array([[[1, 1], [0, 1]]])])
        >>> round(float(m.result()), 4)                                   # 2 / (2 + 1)
        0.6667
    """
    score = "recall"


@keras.saving.register_keras_serializable(package="tfseg")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of correctly classified pixels since the last reset.

    Softmax mode: pixels whose argmax equals the label. Sigmoid mode: channel-wise agreement,
    counted over every pixel and channel. High on imbalanced data even when nothing is found:
    read it next to `DiceScore`.

    Args:
        mode: "softmax" or "sigmoid".
        threshold: sigmoid-mode decision threshold.
        from_logits: `y_pred` holds logits.
        name: metric name.
        dtype: dtype of the result.

    Example:
        >>> m = PixelAccuracy()
        >>> m.update_state(np.array([[[0, 1], [1, 1]]]), np.eye(2)[np.array([[[0, 1], [0, 1]]])])
        >>> float(m.result())
        0.75
    """

    def __init__(self, mode="softmax", threshold=0.5, from_logits=False, name="pixel_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.mode = check_mode(mode)
        self.threshold = _check_threshold(threshold)
        self.from_logits = bool(from_logits)
        self.correct = self.add_variable((), "zeros", dtype="float64", name="correct")
        self.total = self.add_variable((), "zeros", dtype="float64", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, fn, total = batch_confusion_counts(y_true, y_pred, self.mode, self.threshold, self.from_logits,
                                                   sample_weight)
        if self.mode == "softmax":          # each pixel is a TP of exactly one class or of none
            correct = ops.sum(tp)
        else:                               # per channel: TP + TN = total - FP - FN
            correct = ops.sum(total - fp - fn)
            total = total * float(tp.shape[0])
        self.correct.assign_add(correct)
        self.total.assign_add(total)

    def result(self):
        correct, total = ops.convert_to_tensor(self.correct), ops.convert_to_tensor(self.total)
        return ops.cast(ops.where(total > 0, correct / ops.where(total > 0, total, 1), 0.0), self.dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "threshold": self.threshold,
                "from_logits": self.from_logits}


# --------------------------------------------------------------------------------------------
# Surface distance and the mean of per-case region scores (numpy, one case at a time).
# --------------------------------------------------------------------------------------------

def _binary_mask(mask, what, source):
    arr = np.asarray(mask)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(source, f"{what} mask must be numeric or boolean, got dtype {arr.dtype}")
    return arr != 0


def _spacing(spacing, ndim):
    if spacing is None:
        return (1.0,) * ndim
    values = (spacing,) * ndim if np.isscalar(spacing) else tuple(spacing)
    if len(values) != ndim:
        raise ConfigError(f"spacing {spacing!r} must be one number or one per axis ({ndim} axes)")
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"spacing must be numbers, got {spacing!r}") from None
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"spacing must be positive, got {spacing!r}")
    return values


def surface_distances(mask_from, mask_to, spacing=None, connectivity=1):
    """Distances (mm) from each surface voxel of `mask_from` to the nearest surface voxel of `mask_to`.

    The surface of a mask is the mask minus its binary erosion (structuring element of the given
    `connectivity`, 1 = faces; voxels on the array border count as surface), as medpy defines it.
    Both masks must be non-empty. Work is confined to the bounding box of both masks plus one voxel,
    which gives exactly the distances of the full array.

    Returns:
        A float64 array with one distance per surface voxel of `mask_from`.
    """
    from scipy import ndimage

    a, b = np.asarray(mask_from, bool), np.asarray(mask_to, bool)
    both = a | b
    box = []
    for axis in range(both.ndim):
        other = tuple(i for i in range(both.ndim) if i != axis)
        idx = np.flatnonzero(both.any(axis=other))
        box.append(slice(max(idx[0] - 1, 0), min(idx[-1] + 2, both.shape[axis])))
    a, b = a[tuple(box)], b[tuple(box)]
    structure = ndimage.generate_binary_structure(a.ndim, connectivity)
    surface_a = a ^ ndimage.binary_erosion(a, structure=structure, iterations=1)
    surface_b = b ^ ndimage.binary_erosion(b, structure=structure, iterations=1)
    distance_to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    return distance_to_b[surface_a]


def hausdorff_distance_95(pred_mask, true_mask, spacing=None, connectivity=1, empty_value=np.nan,
                          source="mask"):
    """Symmetric 95th-percentile Hausdorff distance between the surfaces of two binary masks, in mm.

    The distances from every surface voxel of the prediction to the truth's surface and from every
    surface voxel of the truth to the prediction's surface are pooled, and their 95th percentile
    (numpy's linear interpolation) is returned: medpy's `hd95`, equal to it to rounding.

    Empty masks (medpy raises on these):

    - both empty: 0.0 (nothing to find, nothing found);
    - one empty: `empty_value`, NaN by default (undefined; `mean_region_scores` counts such cases
      apart instead of averaging them). The BraTS challenge scores this case as 373.13 mm (the
      diagonal of its 240x240x155 volume): pass `empty_value=373.13` to follow it.

    Args:
        pred_mask, true_mask: masks of one shape, 2D or 3D (nonzero = inside).
        spacing: voxel size per axis in array order (one number for all axes); None: 1.
        connectivity: 1 (faces, medpy's default) up to `ndim` (full neighbourhood) for the surface.
        empty_value: result when exactly one mask is empty.
        source: the case named in errors.

    Returns:
        The distance as a Python float.

    Raises:
        DataError: the masks differ in shape.

    Example:
        >>> a = np.zeros((5, 5, 9), bool); b = a.copy()
        >>> a[2, 2, 1] = True; b[2, 2, 7] = True
        >>> hausdorff_distance_95(a, b, spacing=(1.0, 1.0, 2.0))     # 6 voxels of 2 mm
        12.0
    """
    pred = _binary_mask(pred_mask, "predicted", source)
    true = _binary_mask(true_mask, "true", source)
    if pred.shape != true.shape:
        raise DataError(source, f"prediction shape {pred.shape} differs from truth shape {true.shape}")
    if isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer)) \
            or not 1 <= connectivity <= max(pred.ndim, 1):
        raise ConfigError(f"connectivity must be an integer in [1, {pred.ndim}], got {connectivity!r}")
    sampling = _spacing(spacing, pred.ndim)
    has_pred, has_true = bool(pred.any()), bool(true.any())
    if not has_pred and not has_true:
        return 0.0
    if not has_pred or not has_true:
        return float(empty_value)
    distances = np.concatenate([surface_distances(pred, true, sampling, connectivity),
                                surface_distances(true, pred, sampling, connectivity)])
    return float(np.percentile(distances, 95))


def mean_region_scores(cases):
    """Mean of per-case region scores (e.g. `tfseg.workflows.brats_regions.brats_region_scores`), NaN left out.

    Args:
        cases: an iterable of dicts `{region: {score: value}}`.

    Returns:
        `{region: {score: mean, ..., "cases": n, "<score>_undefined": m}}`: each mean is taken
        over the cases where the score is defined (not NaN, e.g. HD95 with exactly one empty mask
        under the default `empty_value`); `cases` counts all cases and `<score>_undefined` the
        left-out ones. A score undefined in every case has mean NaN.

    Example:
        >>> mean_region_scores([{"ET": {"dice": 0.5, "hd95": 2.0}}, {"ET": {"dice": 1.0, "hd95": float("nan")}}])
        {'ET': {'dice': 0.75, 'hd95': 2.0, 'cases': 2, 'dice_undefined': 0, 'hd95_undefined': 1}}
    """
    values = {}
    for case in cases:
        for region, scores in case.items():
            for name, value in scores.items():
                values.setdefault(region, {}).setdefault(name, []).append(float(value))
    result = {}
    for region, scores in values.items():
        counts = {len(v) for v in scores.values()}
        if len(counts) != 1:
            raise ConfigError(f"region {region!r}: cases report different scores; got counts "
                              f"{ {k: len(v) for k, v in scores.items()} }")
        summary = {}
        undefined = {}
        for name, vals in scores.items():
            arr = np.asarray(vals, np.float64)
            defined = arr[~np.isnan(arr)]
            summary[name] = float(defined.mean()) if defined.size else float("nan")
            undefined[f"{name}_undefined"] = int(arr.size - defined.size)
        summary["cases"] = counts.pop()
        summary.update(undefined)
        result[region] = summary
    return result


# --------------------------------------------------------------------------------------------
# Classification: ROC AUC of scores against binary labels.
# --------------------------------------------------------------------------------------------

def roc_auc(labels, scores):
    """Area under the ROC curve of `scores` for binary `labels` (ties count one half), as scikit-learn computes it.

    The AUC is the probability that a random positive scores above a random negative: the
    Mann-Whitney U statistic over the number of positive-negative pairs, with tied scores given
    their average rank.

    Args:
        labels: 0/1 (or bool) array of the true classes.
        scores: float array of one length with `labels` (probabilities or logits).

    Returns:
        A float in [0, 1].

    Raises:
        ConfigError: lengths differ, labels are not 0/1, scores are not finite, or only one class
            is present (the AUC is undefined).

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ConfigError(f"roc_auc: {labels.size} labels but {scores.size} scores")
    if not np.all(np.isin(labels, (0, 1))):
        raise ConfigError(f"roc_auc: labels must be 0 or 1, got {sorted(set(labels.tolist()))[:5]}")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("roc_auc: scores hold NaN or infinite values")
    positive = labels == 1
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ConfigError(f"roc_auc: needs both classes, got {num_pos} positive and {num_neg} negative labels")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))
