"""Tests of tfseg.data.patches (patch grids and foreground-filtered patch extraction)."""
import numpy as np
import pytest

from tfseg.data.patches import extract_patches, patch_grid, patch_starts
from tfseg.errors import ConfigError


@pytest.mark.parametrize("length,patch,stride", [(240, 128, 64), (10, 4, 3), (11, 4, 3), (128, 128, 64),
                                                 (7, 3, 1), (130, 128, 128), (5, 5, 2)])
def test_starts_cover_the_axis_flush_with_the_end(length, patch, stride):
    starts = patch_starts(length, patch, stride)
    assert starts[0] == 0 and starts[-1] == length - patch
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + patch] = True
    assert covered.all()


def test_starts_known_values_and_short_axis():
    assert patch_starts(240, 128, 64) == [0, 64, 112]
    assert patch_starts(12, 4, 4) == [0, 4, 8]
    assert patch_starts(100, 128, 64) == [0]
    assert patch_starts(1, 4, 2) == [0]


@pytest.mark.parametrize("args", [(0, 4, 2), (10, 0, 2), (10, 4, 0), (10, 4, 5), (10.0, 4, 2), (10, True, 1)])
def test_starts_bad_arguments(args):
    with pytest.raises(ConfigError):
        patch_starts(*args)


def test_grid_is_row_major_and_rectangular():
    grid = patch_grid((10, 7), (4, 3), (3, 2))
    rows, cols = patch_starts(10, 4, 3), patch_starts(7, 3, 2)
    assert grid.tolist() == [[r, c] for r in rows for c in cols]
    with pytest.raises(ConfigError, match="shape2d"):
        patch_grid((10,), 4, 2)
    with pytest.raises(ConfigError, match="patch_size"):
        patch_grid((10, 10), (4, 4, 4), 2)


def test_extract_keeps_foreground_patches_with_exact_content():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(12, 12, 3)).astype(np.float32)
    label = np.zeros((12, 12), np.uint8)
    label[1, 1] = 4
    label[9:11, 9:11] = 2  # four pixels
    patches, labels, origins = extract_patches(image, label, 4, 4, min_foreground=1)
    assert origins.tolist() == [[0, 0], [8, 8]]
    for patch, lab, (r, c) in zip(patches, labels, origins):
        np.testing.assert_array_equal(patch, image[r:r + 4, c:c + 4])
        np.testing.assert_array_equal(lab, label[r:r + 4, c:c + 4])
    assert patches.dtype == np.float32 and labels.dtype == np.uint8 and origins.dtype == np.int64
    # Thresholds count pixels: only the 2x2 blob reaches 4.
    assert extract_patches(image, label, 4, 4, min_foreground=4)[2].tolist() == [[8, 8]]
    assert extract_patches(image, label, 4, 4, min_foreground=5)[0].shape == (0, 4, 4, 3)
    # min_foreground=0 keeps the whole grid.
    assert len(extract_patches(image, label, 4, 2, min_foreground=0)[0]) == len(patch_grid((12, 12), 4, 2))


def test_foreground_counts_match_brute_force():
    rng = np.random.default_rng(1)
    label = (rng.random((23, 17)) < 0.05).astype(np.uint8) * 2
    image = np.ones((23, 17, 1), np.float32)
    for threshold in (1, 2, 3):
        _, _, origins = extract_patches(image, label, (8, 6), (3, 4), min_foreground=threshold)
        expected = [[r, c] for r, c in patch_grid((23, 17), (8, 6), (3, 4))
                    if np.count_nonzero(label[r:r + 8, c:c + 6]) >= threshold]
        assert origins.tolist() == expected


def test_small_slice_is_zero_padded():
    image = np.full((3, 5, 2), 7.0, np.float32)
    label = np.ones((3, 5), np.uint8)
    patches, labels, origins = extract_patches(image, label, 8, 4)
    assert patches.shape == (1, 8, 8, 2) and origins.tolist() == [[0, 0]]
    np.testing.assert_array_equal(patches[0, :3, :5], image)
    assert not patches[0, 3:].any() and not patches[0, :, 5:].any()
    assert labels[0].sum() == 15


def test_bad_inputs():
    with pytest.raises(ConfigError, match="same size"):
        extract_patches(np.zeros((4, 4, 1)), np.zeros((4, 5)), 2, 2)
    with pytest.raises(ConfigError, match="same size"):
        extract_patches(np.zeros((4, 4)), np.zeros((4, 4)), 2, 2)
    with pytest.raises(ConfigError, match="min_foreground"):
        extract_patches(np.zeros((4, 4, 1)), np.zeros((4, 4)), 2, 2, min_foreground=-1)
    with pytest.raises(ConfigError, match="stride"):
        extract_patches(np.zeros((4, 4, 1)), np.zeros((4, 4)), 2, 3)
