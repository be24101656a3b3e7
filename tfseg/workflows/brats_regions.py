"""BraTS region scores: Dice and HD95 of the nested regions WT, TC and ET of one case.

The challenge's figures, computed on label maps with values {0, 1, 2, 4} (the regions come from
`tfseg.data.transforms.labels.brats_regions`); `tfseg.metrics.mean_region_scores` averages them
over cases.

Example:
    >>> import numpy as np
    >>> truth = np.zeros((4, 4, 4), np.uint8); truth[1:3, 1:3, 1:3] = 2; truth[1, 1, 1] = 4
    >>> s = brats_region_scores(truth, truth)
    >>> s["WT"], s["TC"]["dice"], s["ET"]["hd95"]
    ({'dice': 1.0, 'hd95': 0.0}, 1.0, 0.0)
"""
import numpy as np

from tfseg.data.transforms.labels import REGION_NAMES, brats_regions
from tfseg.errors import DataError
from tfseg.metrics import hausdorff_distance_95, score_from_counts

__all__ = ["brats_region_scores"]


def brats_region_scores(pred_labels, true_labels, spacing=None, empty_value=np.nan, source="labels"):
    """Dice and HD95 of the BraTS regions WT, TC and ET for one case.

    Args:
        pred_labels: predicted BraTS label map with values {0, 1, 2, 4} (e.g. from
            `tfseg.data.transforms.labels.regions_to_brats_labels`).
        true_labels: ground-truth label map, same shape.
        spacing: voxel size per axis in mm, array order (BraTS: 1 mm).
        empty_value: HD95 when exactly one of prediction and truth is empty (see
            `hausdorff_distance_95`). Dice of a region absent from both is 1.0, as in
            `tfseg.metrics.score_from_counts`.
        source: the case named in errors.

    Returns:
        `{"WT": {"dice": float, "hd95": float}, "TC": {...}, "ET": {...}}`.

    Raises:
        DataError: shapes differ, or a label outside {0, 1, 2, 4}.

    Example:
        >>> truth = np.zeros((4, 4, 4), np.uint8); truth[1:3, 1:3, 1:3] = 2; truth[1, 1, 1] = 4
        >>> s = brats_region_scores(truth, truth)
        >>> s["WT"], s["TC"]["dice"], s["ET"]["hd95"]
        ({'dice': 1.0, 'hd95': 0.0}, 1.0, 0.0)
    """
    pred = brats_regions(pred_labels, dtype=bool, source=source)
    true = brats_regions(true_labels, dtype=bool, source=source)
    if pred.shape != true.shape:
        raise DataError(source, f"prediction shape {pred.shape[:-1]} differs from truth shape {true.shape[:-1]}")
    scores = {}
    for channel, name in enumerate(REGION_NAMES):
        p, t = pred[..., channel], true[..., channel]
        tp = np.count_nonzero(p & t)
        fp, fn = np.count_nonzero(p) - tp, np.count_nonzero(t) - tp
        dice = float(score_from_counts("dice", tp, fp, fn, p.size - tp - fp - fn))
        hd95 = hausdorff_distance_95(p, t, spacing=spacing, empty_value=empty_value, source=source)
        scores[name] = {"dice": dice, "hd95": hd95}
    return scores
