"""Tests of tfseg.data.pipeline3d (BraTS records -> tf.data of 3D crops)."""
import dataclasses
import gzip
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.pipeline3d import brats_dataset, check_cases, decode_case
from tfseg.data.transforms.intensity import nonzero_stats, zscore_nonzero
from tfseg.data.transforms.volume import crop
from tfseg.utils.problems import ProblemLog
from tfseg.datasets.synthetic import write_brats
from tfseg.errors import ConfigError, DataError

SHAPE = (24, 24, 16)          # NIfTI (x, y, z): memory (D, H, W) = (16, 24, 24)
MEMORY = SHAPE[::-1]


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    return write_brats(str(tmp_path_factory.mktemp("brats")), num_cases=3, shape=SHAPE, seed=3)


@pytest.fixture
def brats_copy(brats, tmp_path):
    """A private copy to damage, with its case records."""
    root = str(tmp_path / "copy")
    shutil.copytree(brats.root, root)
    cases = [dataclasses.replace(c, images=tuple(p.replace(brats.root, root) for p in c.images),
                                 label=c.label.replace(brats.root, root)) for c in brats.cases]
    return cases


def _full_volume(case):
    """(D, H, W, 4) float32 image and (D, H, W) label read with nibabel directly."""
    image = np.stack([np.asanyarray(nib.load(p).dataobj).T for p in case.images], -1).astype(np.float32)
    return image, np.asanyarray(nib.load(case.label).dataobj).T


def _collect(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_training_shapes_dtypes_and_nested_regions(brats):
    ds = brats_dataset(brats.cases, crop_size=(8, 16, 12), batch_size=2, seed=1, num_parallel_reads=2)
    batches = _collect(ds)
    assert [x.shape for x, _ in batches] == [(2, 8, 16, 12, 4), (1, 8, 16, 12, 4)]
    for x, y in batches:
        assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == x.shape[:-1] + (3,)
        assert set(np.unique(y)) <= {0.0, 1.0}
        wt, tc, et = y[..., 0], y[..., 1], y[..., 2]
        assert np.all(et <= tc) and np.all(tc <= wt)
    assert ds.element_spec[0].shape.as_list() == [None, 8, 16, 12, 4]


def test_foreground_crops_hit_the_tumour(brats):
    ds = brats_dataset(brats.cases, crop_size=(6, 6, 6), seed=2, foreground_probability=1.0, regions=False)
    for _ in range(2):
        for _, y in ds:
            assert y.dtype == tf.int32 and y.numpy().max() > 0
            assert set(np.unique(y.numpy())) <= {0, 1, 2, 4}


def test_seeded_reproducible_and_cache_equivalent(brats):
    def run(**kw):
        ds = brats_dataset(brats.cases, crop_size=(8, 8, 8), seed=kw.pop("seed", 4), **kw)
        return _collect(ds) + _collect(ds)   # two epochs

    first = run()
    for other in (run(), run(cache=True)):
        for (x1, y1), (x2, y2) in zip(first, other):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    # a second epoch draws new crops; another seed draws others again
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first[:3], first[3:]))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, run(seed=5)))


def test_early_crop_normalization_equals_full_volume_zscore(brats):
    # validation, whole volumes: the pipeline equals zscore_nonzero of the full volume
    ds = brats_dataset(brats.cases, crop_size=None, training=False)
    for case, (x, y) in zip(brats.cases, _collect(ds)):
        image, label = _full_volume(case)
        np.testing.assert_allclose(x[0], zscore_nonzero(tf.constant(image)).numpy(), atol=2e-5)
        assert x.shape == (1,) + MEMORY + (4,)
    # validation centre crop/pad: zscore on the full volume, then crop
    size = (20, 10, 9)
    ds = brats_dataset(brats.cases, crop_size=size, training=False, regions=False)
    for case, (x, y) in zip(brats.cases, _collect(ds)):
        image, label = _full_volume(case)
        start = (-2, 7, 7)   # D: 16 -> 20 padded 2 + 2; H, W: 24 -> centred crop
        expected, expected_label = crop(zscore_nonzero(tf.constant(image)), tf.constant(label), start, size)
        np.testing.assert_allclose(x[0], expected.numpy(), atol=2e-5)
        np.testing.assert_array_equal(y[0], expected_label.numpy().astype(np.int32))
    # training without augmentation, crop = whole volume (start 0): still the full-volume z-score
    ds = brats_dataset(brats.cases, crop_size=MEMORY, augment=False, seed=0)
    expected = {case.case_id: zscore_nonzero(tf.constant(_full_volume(case)[0])).numpy() for case in brats.cases}
    for x, _ in _collect(ds):
        assert min(np.abs(x[0] - e).max() for e in expected.values()) < 2e-5


def test_augmented_crop_keeps_background_zero_and_alignment(brats):
    ds = brats_dataset(brats.cases, crop_size=MEMORY, seed=7)
    full = [_full_volume(c) for c in brats.cases]
    for x, y in _collect(ds):
        x, y = x[0], y[0]
        # the image was flipped: find the case and flip that makes the background match
        matches = []
        for image, label in full:
            for axes in [tuple(a for a in range(3) if m >> a & 1) for m in range(8)]:
                flipped_image = np.flip(image, axes) if axes else image
                flipped_label = np.flip(label, axes) if axes else label
                if np.array_equal(flipped_image != 0, x != 0):
                    matches.append(np.array_equal(flipped_label > 0, y[..., 0] > 0))
        assert matches and all(matches)


def test_nonzero_stats_and_decode(brats):
    rng = np.random.default_rng(0)
    array = rng.integers(-3000, 3000, size=(30, 40, 50)).astype(np.int16)
    array[:10] = 0
    mean, std = nonzero_stats(array)
    nz = array[array != 0].astype(np.float64)
    assert mean == pytest.approx(nz.mean(), rel=1e-12) and std == pytest.approx(nz.std(), rel=1e-12)
    assert nonzero_stats(np.zeros(5, np.int16)) == (0.0, 1.0)
    images, label, means, stds = decode_case(brats.cases[0])
    assert len(images) == 4 and all(a.dtype == np.int16 and a.shape == MEMORY for a in images)
    assert label.dtype == np.uint8 and label.shape == MEMORY
    assert means.shape == (4,) and stds.dtype == np.float32


def test_mismatched_shape_is_reported_by_path(brats_copy):
    bad = brats_copy[1].images[2]
    nib.save(nib.Nifti1Image(np.ones((24, 24, 15), np.int16), np.eye(4)), bad)
    with pytest.raises(DataError, match="has shape") as info:
        brats_dataset(brats_copy, crop_size=(8, 8, 8))
    assert info.value.path == bad
    problems = ProblemLog("skip")
    ds = brats_dataset(brats_copy, crop_size=(8, 8, 8), batch_size=4, on_error="skip", problems=problems)
    assert [p.path for p in problems.problems] == [bad]
    assert next(iter(ds))[0].shape[0] == 2


def test_missing_file_and_label_are_reported(brats_copy):
    missing = brats_copy[0].images[3]
    os.remove(missing)
    with pytest.raises(DataError, match="file not found") as info:
        brats_dataset(brats_copy, training=False, crop_size=None)
    assert info.value.path == missing
    no_label = [dataclasses.replace(brats_copy[1], label=None), brats_copy[2]]
    with pytest.raises(DataError, match="no label"):
        brats_dataset(no_label)
    good, shapes, small_int = check_cases(brats_copy, on_error="skip")
    assert [c.case_id for c in good] == [c.case_id for c in brats_copy[1:]] and small_int
    assert shapes == [MEMORY, MEMORY]


def test_corrupt_voxel_data_names_the_file(brats_copy):
    bad = brats_copy[2].images[0]
    with gzip.open(bad, "rb") as handle:
        raw = handle.read()
    with gzip.open(bad, "wb") as handle:
        handle.write(raw[:len(raw) // 3])   # header intact, voxel data truncated
    with pytest.raises(tf.errors.OpError, match=os.path.basename(bad)):
        _collect(brats_dataset(brats_copy, training=False, crop_size=None))
    out = _collect(brats_dataset(brats_copy, training=False, crop_size=None, on_error="skip"))
    assert len(out) == 2


def test_bad_arguments(brats):
    with pytest.raises(ConfigError, match="crop_size"):
        brats_dataset(brats.cases, crop_size=(8, 8))
    with pytest.raises(ConfigError, match="training needs"):
        brats_dataset(brats.cases, crop_size=None)
    with pytest.raises(ConfigError, match="on_error"):
        brats_dataset(brats.cases, on_error="ignore")
    with pytest.raises(ConfigError, match="zero cases"):
        brats_dataset([])
