import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from tfseg.errors import ConfigError, DataError
from tfseg.metrics import hausdorff_distance_95, mean_region_scores
from tfseg.workflows.brats_regions import brats_region_scores


def surface_by_hand(mask):
    """Voxels of the mask with a face neighbour outside the mask or outside the array."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[(slice(1, -1),) * mask.ndim]
    outside_neighbour = np.zeros_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            outside_neighbour |= ~np.roll(padded, shift, axis=axis)[(slice(1, -1),) * mask.ndim]
    return inner & outside_neighbour


def hd95_brute_force(a, b, spacing):
    """Independent reference: all pairwise distances between surface voxel centres (mm)."""
    pa = np.argwhere(surface_by_hand(a)) * np.asarray(spacing)
    pb = np.argwhere(surface_by_hand(b)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


def random_blob(shape, seed, fill=0.3):
    """A random, lumpy mask (smoothed noise, thresholded), sometimes touching the array border."""
    from scipy import ndimage
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    return noise > np.quantile(noise, 1 - fill)


@pytest.mark.parametrize("seed", range(4))
def test_against_brute_force_reference(seed):
    shape = (14, 12, 10)
    a, b = random_blob(shape, seed), random_blob(shape, seed + 100, fill=0.2)
    spacing = (1.0, 0.7, 2.5)
    assert hausdorff_distance_95(a, b, spacing) == pytest.approx(hd95_brute_force(a, b, spacing), abs=1e-9)
    assert hausdorff_distance_95(a, b) == pytest.approx(hd95_brute_force(a, b, (1, 1, 1)), abs=1e-9)


def test_2d_against_brute_force():
    a, b = random_blob((30, 25), 7), random_blob((30, 25), 8)
    assert hausdorff_distance_95(a, b, 0.5) == pytest.approx(hd95_brute_force(a, b, (0.5, 0.5)), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_against_medpy(seed):
    binary = pytest.importorskip("medpy.metric.binary")
    shape = (20, 16, 12)
    a, b = random_blob(shape, seed, fill=0.15), random_blob(shape, seed + 50, fill=0.25)
    for spacing in [(1.0, 1.0, 1.0), (0.9, 1.3, 3.0)]:
        for connectivity in (1, 3):
            expected = binary.hd95(a, b, voxelspacing=spacing, connectivity=connectivity)
            got = hausdorff_distance_95(a, b, spacing, connectivity=connectivity)
            assert got == pytest.approx(expected, abs=1e-6)


def test_small_objects_far_from_the_border_match_full_array():
    # Cropping to the masks' bounding box must not change anything: same masks in a larger array.
    a, b = random_blob((10, 9, 8), 3), random_blob((10, 9, 8), 4)
    big_a, big_b = np.zeros((30, 25, 20), bool), np.zeros((30, 25, 20), bool)
    big_a[5:15, 6:15, 4:12], big_b[5:15, 6:15, 4:12] = a, b
    # Inside the big array the masks no longer touch the border, so compare with the same masks
    # padded by one voxel (same surfaces).
    pa, pb = np.pad(a, 1), np.pad(b, 1)
    assert hausdorff_distance_95(big_a, big_b, (1, 2, 3)) == pytest.approx(hausdorff_distance_95(pa, pb, (1, 2, 3)))


def test_hand_cases():
    a, b = np.zeros((9, 9, 9), bool), np.zeros((9, 9, 9), bool)
    a[1, 2, 3] = True
    b[4, 6, 3] = True
    assert hausdorff_distance_95(a, b) == pytest.approx(5.0)                 # 3-4-5 triangle
    assert hausdorff_distance_95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(math.hypot(6, 4))
    assert hausdorff_distance_95(a, a) == 0.0
    # Symmetric.
    c = random_blob((9, 9, 9), 1)
    assert hausdorff_distance_95(a, c) == pytest.approx(hausdorff_distance_95(c, a))


def test_empty_masks():
    empty, full = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
    full[2, 2] = True
    assert hausdorff_distance_95(empty, empty) == 0.0
    assert math.isnan(hausdorff_distance_95(empty, full))
    assert math.isnan(hausdorff_distance_95(full, empty))
    assert hausdorff_distance_95(full, empty, empty_value=373.13) == 373.13
    assert hausdorff_distance_95(empty, full, empty_value=np.inf) == np.inf


def test_bad_arguments():
    a = np.zeros((4, 4), bool)
    with pytest.raises(DataError, match="case3: prediction shape"):
        hausdorff_distance_95(a, np.zeros((4, 5)), source="case3")
    with pytest.raises(ConfigError, match="spacing"):
        hausdorff_distance_95(a, a, spacing=(1.0, 0.0))
    with pytest.raises(ConfigError, match="spacing"):
        hausdorff_distance_95(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="connectivity"):
        hausdorff_distance_95(a, a, connectivity=3)


def test_brats_region_scores_and_mean():
    truth = np.zeros((12, 12, 12), np.uint8)
    truth[2:10, 2:10, 2:10] = 2
    truth[4:8, 4:8, 4:8] = 1
    truth[5:7, 5:7, 5:7] = 4
    pred = truth.copy()
    pred[5:7, 5:7, 5:7] = 1                       # ET missed (labelled core instead)
    pred[2, 2:10, 2:10] = 0                       # one WT face missed
    scores = brats_region_scores(pred, truth, spacing=(1.0, 1.0, 1.0))
    assert set(scores) == {"WT", "TC", "ET"}
    wt_pred, wt_true = pred > 0, truth > 0
    tp = np.count_nonzero(wt_pred & wt_true)
    assert scores["WT"]["dice"] == pytest.approx(2 * tp / (wt_pred.sum() + wt_true.sum()))
    assert scores["WT"]["hd95"] == pytest.approx(hausdorff_distance_95(wt_pred, wt_true))
    assert scores["TC"] == {"dice": 1.0, "hd95": 0.0}
    assert scores["ET"]["dice"] == 0.0 and math.isnan(scores["ET"]["hd95"])
    assert brats_region_scores(pred, truth, empty_value=373.13)["ET"]["hd95"] == 373.13

    perfect = brats_region_scores(truth, truth)
    summary = mean_region_scores([scores, perfect])
    assert summary["ET"] == {"dice": 0.5, "hd95": 0.0, "cases": 2, "dice_undefined": 0,
                             "hd95_undefined": 1}
    assert summary["WT"]["hd95"] == pytest.approx(scores["WT"]["hd95"] / 2)
    assert summary["TC"]["dice"] == 1.0

    with pytest.raises(DataError, match=r"pred.nii.gz: labels \[3\] are not BraTS labels"):
        brats_region_scores(np.full((3, 3), 3), np.zeros((3, 3)), source="pred.nii.gz")
    with pytest.raises(DataError, match="differs from truth shape"):
        brats_region_scores(np.zeros((3, 3)), np.zeros((3, 4)))
