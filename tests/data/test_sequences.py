"""Tests of chunking, the tumour slice filter, channel stacking and zoom-in TTA."""
import numpy as np
import pytest

from tfseg.data.sequences import (chunk_indices, count_contours, keep_tumour_slices, make_chunks, normalize_series,
                                  slice_filter, stack_channels, zoom_in)
from tfseg.errors import ConfigError


def starts(chunks):
    return [int(c[0]) for c in chunks]


def test_full_chunks_every_stride():
    chunks = chunk_indices(45, length=35, stride=5)
    assert starts(chunks) == [0, 5, 10]
    assert all(len(c) == 35 for c in chunks)
    assert chunks[-1].tolist() == list(range(10, 45))  # 45 - 35 = 10 is a stride multiple: no extra chunk


@pytest.mark.parametrize("policy, expected_starts, last", [
    ("shift", [0, 5, 10, 12], list(range(12, 47))),
    ("pad", [0, 5, 10, 15], list(range(15, 47)) + [46] * 3),
    ("drop", [0, 5, 10], list(range(10, 45))),
])
def test_last_partial_chunk_policy(policy, expected_starts, last):
    chunks = chunk_indices(47, length=35, stride=5, policy=policy)
    assert starts(chunks) == expected_starts
    assert chunks[-1].tolist() == last
    assert {len(c) for c in chunks} == {35}


@pytest.mark.parametrize("policy, pad_mode, expected", [
    ("shift", "edge", [[0, 1, 2, 2, 2]]),
    ("pad", "zero", [[0, 1, 2, -1, -1]]),
    ("drop", "edge", []),
])
def test_stack_shorter_than_one_chunk(policy, pad_mode, expected):
    assert [c.tolist() for c in chunk_indices(3, length=5, stride=2, policy=policy, pad_mode=pad_mode)] == expected


def test_every_slice_is_in_a_chunk_except_with_drop():
    for n in range(1, 30):
        for policy in ("shift", "pad"):
            chunks = chunk_indices(n, length=7, stride=3, policy=policy)
            assert set(np.concatenate(chunks).tolist()) == set(range(n)), (n, policy)


def test_make_chunks_values_and_zero_padding():
    stack = np.arange(1, 7, dtype=np.float32).reshape(6, 1, 1, 1)
    chunks = make_chunks(stack, length=3, stride=2, policy="pad", pad_mode="zero")
    assert chunks.shape == (3, 3, 1, 1, 1)
    assert chunks[..., 0, 0, 0].tolist() == [[1, 2, 3], [3, 4, 5], [5, 6, 0]]
    assert make_chunks(np.zeros((0, 2, 2, 3)), length=3, stride=1).shape == (0, 3, 2, 2, 3)


def test_bad_chunk_arguments():
    with pytest.raises(ConfigError):
        chunk_indices(10, length=0)
    with pytest.raises(ConfigError):
        chunk_indices(10, policy="wrap")


def test_count_contours_against_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((24, 24)) > 0.85).astype(np.uint8)
        mask[10:14, 10:14] = 1  # solid blobs, no holes: external contours = 8-connected components
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        holes = np.pad(mask, 1) == 0
        from scipy import ndimage
        if ndimage.label(holes)[1] > 1:  # a background region enclosed by tumour: not comparable
            continue
        assert count_contours(mask) == len(contours)


def test_slice_filter_ratio_threshold_is_strict():
    brain = np.ones((3, 10, 10))
    tumour = np.zeros((3, 10, 10))
    tumour[0, :2, :1] = 1   # 2 of 100 pixels: ratio 0.02
    tumour[1, :5, :1] = 1   # 0.05
    tumour[2, :5, :5] = 1   # 0.25
    assert slice_filter(tumour, brain, min_ratio=0.025).tolist() == [False, True, True]
    assert slice_filter(tumour, brain, min_ratio=0.05).tolist() == [False, False, True]  # > not >=
    brain[1, 5:] = 0   # half the brain: ratio 0.1
    assert slice_filter(tumour[1:2], brain[1:2], min_ratio=0.09).tolist() == [True]


def test_slice_filter_contour_limit():
    tumour = np.zeros((2, 20, 20))
    for k in range(6):
        tumour[0, 3 * k:3 * k + 2, 0:2] = 1   # 6 separate regions
        tumour[1, 3 * k:3 * k + 2, 0:2] = 1
    tumour[1, :, 1] = 1                       # joined into one
    brain = np.ones_like(tumour)
    assert slice_filter(tumour, brain, min_ratio=0.0, max_contours=5).tolist() == [False, True]
    assert slice_filter(tumour, brain, min_ratio=0.0, max_contours=6).tolist() == [True, True]
    assert slice_filter(tumour, brain, min_ratio=0.0, max_contours=None).tolist() == [True, True]


def test_keep_tumour_slices_uses_probability_threshold_and_nonzero_brain():
    image = np.ones((3, 10, 10))
    image[:, :, 5:] = 0          # brain = left half, 50 pixels
    wt = np.zeros((3, 10, 10))
    wt[0, :2, :1] = 0.9          # 2 / 50 = 0.04 > 0.025
    wt[1, :2, :1] = 0.4          # below the probability threshold
    wt[2, :1, :1] = 0.9          # 1 / 50 = 0.02
    assert keep_tumour_slices(image, wt).tolist() == [0]


def test_stack_channels_and_normalize():
    image = np.array([[0.0, 10.0], [20.0, 40.0]])
    stacked = stack_channels(normalize_series(image, percentile=100), image > 5, image > 15)
    assert stacked.shape == (2, 2, 3) and stacked.dtype == np.float32
    assert stacked[1, 0].tolist() == [0.5, 1.0, 1.0]
    with pytest.raises(ConfigError):
        stack_channels(image, image[:1], image)


def test_zoom_in_centre_crop():
    x = np.zeros((1, 2, 60, 60, 1), np.float32)
    x[..., 20:40, 20:40, :] = 1.0
    y = zoom_in(x, 1.2)   # centre 50x50 resized to 60x60: the square grows by 1.2 per side
    assert y.shape == x.shape
    np.testing.assert_allclose(y.sum() / x.sum(), 1.2 ** 2, rtol=0.02)
    np.testing.assert_array_equal(zoom_in(x, 1.0), x)
    # an image constant along the width is unchanged along it
    ramp = np.tile(np.arange(12, dtype=np.float32)[:, None], (1, 12))[None, :, :, None]
    assert np.allclose(zoom_in(ramp, 1.2)[0, :, 0, 0], zoom_in(ramp, 1.2)[0, :, 11, 0])
