import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms.labels import (REGION_NAMES, brats_regions, merge_region_masks, regions_to_brats_labels,
                                          remap_labels)
from tfseg.errors import ConfigError, DataError


def random_brats(shape=(6, 7, 5), seed=0):
    return np.random.default_rng(seed).choice(np.array([0, 1, 2, 4], np.uint8), size=shape)


def test_regions_by_hand():
    assert REGION_NAMES == ("WT", "TC", "ET")
    label = np.array([[0, 1], [2, 4]], np.int16)
    regions = brats_regions(label)
    assert regions.shape == (2, 2, 3) and regions.dtype == np.float32
    assert regions[..., 0].tolist() == [[0, 1], [1, 1]]          # WT = {1, 2, 4}
    assert regions[..., 1].tolist() == [[0, 1], [0, 1]]          # TC = {1, 4}
    assert regions[..., 2].tolist() == [[0, 0], [0, 1]]          # ET = {4}
    tensor = brats_regions(tf.constant(label), dtype="uint8")
    assert isinstance(tensor, tf.Tensor) and tensor.dtype == tf.uint8
    np.testing.assert_array_equal(tensor.numpy(), regions.astype(np.uint8))


@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip_numpy_and_tf(seed):
    label = random_brats(seed=seed)
    np.testing.assert_array_equal(regions_to_brats_labels(brats_regions(label)), label)
    back = regions_to_brats_labels(brats_regions(tf.constant(label)))
    assert isinstance(back, tf.Tensor) and back.dtype == tf.uint8
    np.testing.assert_array_equal(back.numpy(), label)
    # Float labels (as NIfTI often stores them) work the same.
    np.testing.assert_array_equal(brats_regions(label.astype(np.float32)), brats_regions(label))
    np.testing.assert_array_equal(brats_regions(tf.constant(label.astype(np.float32))).numpy(), brats_regions(label))


def test_tf_inside_dataset_map():
    labels = np.stack([random_brats((4, 4), seed=s) for s in range(3)])
    ds = tf.data.Dataset.from_tensor_slices(labels).map(lambda y: regions_to_brats_labels(brats_regions(y)))
    np.testing.assert_array_equal(np.stack([y.numpy() for y in ds]), labels)


def test_inconsistent_regions_inner_wins():
    # WT TC ET  -> label
    regions = np.array([[0, 0, 1],      # ET without WT/TC: 4
                        [0, 1, 0],      # TC without WT: 1
                        [1, 0, 1],      # ET inside WT but not TC: 4
                        [1, 0, 0],      # 2
                        [1, 1, 0],      # 1
                        [0, 0, 0]], np.float32)
    expected = [4, 1, 4, 2, 1, 0]
    assert regions_to_brats_labels(regions).tolist() == expected
    assert regions_to_brats_labels(tf.constant(regions)).numpy().tolist() == expected
    # Probabilities and the threshold.
    probs = np.array([[0.6, 0.4, 0.2], [0.6, 0.7, 0.2]])
    assert regions_to_brats_labels(probs).tolist() == [2, 1]
    assert regions_to_brats_labels(probs, threshold=0.65).tolist() == [0, 1]
    with pytest.raises(ConfigError, match="3 channels"):
        regions_to_brats_labels(np.zeros((4, 2)))


def test_merge_region_masks():
    wt = np.array([[1, 1, 1, 0], [0, 255, 0, 0]], np.uint8)    # any nonzero value is inside
    tc = np.array([[0, 1, 1, 0], [0, 0, 0, 0]], bool)
    et = np.array([[0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    merged = merge_region_masks(wt, tc, et)
    assert merged.dtype == np.uint8
    assert merged.tolist() == [[2, 1, 4, 0], [0, 2, 0, 4]]
    label = random_brats(seed=3)
    regions = brats_regions(label, dtype=bool)
    np.testing.assert_array_equal(merge_region_masks(*np.moveaxis(regions, -1, 0)), label)
    with pytest.raises(DataError, match="case7: region masks differ in shape"):
        merge_region_masks(wt, tc, et[:, :3], source="case7")


def test_invalid_brats_labels():
    with pytest.raises(DataError, match=r"seg.nii.gz: labels \[3\] are not BraTS labels"):
        brats_regions(np.array([0, 3, 4]), source="seg.nii.gz")
    with pytest.raises(DataError, match="whole numbers"):
        brats_regions(np.array([0.5, 1.0]))
    # TensorFlow: documented: a value outside {0, 1, 2, 4} belongs to no region.
    assert brats_regions(tf.constant([3]), dtype="int32").numpy().tolist() == [[0, 0, 0]]


def test_remap_numpy_and_tf():
    mapping = {0: 0, 1: 1, 2: 2, 4: 3}
    label = random_brats(seed=4)
    expected = np.where(label == 4, 3, label)
    out = remap_labels(label, mapping)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    out_tf = remap_labels(tf.constant(label), mapping, dtype="int32")
    assert out_tf.dtype == tf.int32
    np.testing.assert_array_equal(out_tf.numpy(), expected)
    # Values not in the mapping: an error by default, or the default value.
    with pytest.raises(DataError, match=r"seg.nii.gz: labels \[3, 7\] are not in the mapping"):
        remap_labels(np.array([0, 3, 7, 4]), mapping, source="seg.nii.gz")
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the mapping"):
        remap_labels(tf.constant([0, 3, 4]), mapping)
    assert remap_labels(np.array([0, 3, 9, -2, 4]), mapping, default=0).tolist() == [0, 0, 0, 0, 3]
    assert remap_labels(tf.constant([0, 3, 9, -2, 4]), mapping, default=0).numpy().tolist() == [0, 0, 0, 0, 3]
    # A mapping onto -1 stays distinguishable from "not mapped".
    assert remap_labels(np.array([0, 1], np.int8), {0: -1, 1: 5}).tolist() == [-1, 5]
    with pytest.raises(DataError, match="not in the mapping"):
        remap_labels(np.array([0, 2]), {0: -1, 1: 5})


def test_remap_bad_arguments():
    with pytest.raises(ConfigError, match="non-empty dict"):
        remap_labels(np.zeros(3, int), {})
    with pytest.raises(ConfigError, match="negative"):
        remap_labels(np.zeros(3, int), {-1: 0})
    with pytest.raises(ConfigError, match="not an integer"):
        remap_labels(np.zeros(3, int), {0: 1.5})
    with pytest.raises(ConfigError, match="do not fit dtype uint8"):
        remap_labels(np.zeros(3, np.uint8), {0: 300})
