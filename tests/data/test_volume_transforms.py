"""Tests of tfseg.data.transforms.volume (3D transforms as TF ops)."""
import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms.intensity import nonzero_moments, zscore_nonzero
from tfseg.data.transforms.volume import (crop, crop_start, flip_axes, intensity_parameters, intensity_shift_scale,
                                          random_crop, random_flip, random_intensity)
from tfseg.errors import ConfigError


def _image(shape=(16, 24, 20, 2), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 500, size=shape).astype(np.float32)
    image[: shape[0] // 4] = 0                    # background slab, zero in every channel
    image[shape[0] // 2, :, :, -1] = 0             # extra zeros in the last channel only
    return image


def test_zscore_nonzero_matches_numpy():
    image = _image()
    out = zscore_nonzero(tf.constant(image)).numpy()
    for c in range(image.shape[-1]):
        x = image[..., c]
        nz = x != 0
        expected = np.zeros_like(x)
        expected[nz] = (x[nz] - x[nz].mean()) / x[nz].std()
        np.testing.assert_allclose(out[..., c], expected, atol=1e-5)
        assert np.all(out[..., c][~nz] == 0)


def test_zscore_constant_and_empty_channels():
    image = np.zeros((4, 4, 4, 2), np.float32)
    image[1:3, 1:3, 1:3, 0] = 7.0   # constant non-zero: shifted to 0, std taken as 1
    out = zscore_nonzero(tf.constant(image)).numpy()
    assert np.all(out == 0)
    mean, std = nonzero_moments(tf.constant(image))
    assert mean.numpy().tolist() == [7.0, 0.0] and std.numpy().tolist() == [1.0, 1.0]


def test_crop_inside_and_padding():
    image = _image((6, 7, 8, 2))
    label = (image[..., 0] > 250).astype(np.uint8)
    img, lab = crop(tf.constant(image), tf.constant(label), (1, 2, 3), (3, 4, 5))
    np.testing.assert_array_equal(img.numpy(), image[1:4, 2:6, 3:8])
    np.testing.assert_array_equal(lab.numpy(), label[1:4, 2:6, 3:8])
    assert lab.dtype == tf.uint8
    # a window reaching outside on every side: zeros there, the volume in the middle
    img, lab = crop(tf.constant(image), tf.constant(label), (-2, -1, 0), (10, 9, 10))
    assert img.shape == (10, 9, 10, 2) and lab.shape == (10, 9, 10)
    np.testing.assert_array_equal(img.numpy()[2:8, 1:8, 0:8], image)
    np.testing.assert_array_equal(lab.numpy()[2:8, 1:8, 0:8], label)
    assert img.numpy().sum() == image.sum() and lab.numpy().sum() == label.sum()


def test_random_crop_pads_small_volume_centred():
    image = np.ones((4, 10, 10, 1), np.float32)
    img, lab = random_crop(tf.constant(image), tf.ones((4, 10, 10), tf.int32), (8, 6, 6), seed=(3, 4))
    assert img.shape == (8, 6, 6, 1) and lab.shape == (8, 6, 6)
    depth_profile = img.numpy()[:, 0, 0, 0].tolist()
    assert depth_profile == [0, 0, 1, 1, 1, 1, 0, 0]
    np.testing.assert_array_equal(lab.numpy(), img.numpy()[..., 0])


def test_random_crop_is_seeded_and_uniform_starts_vary():
    image = tf.constant(_image((20, 20, 20, 1)))
    a, _ = random_crop(image, None, (8, 8, 8), seed=(1, 2))
    b, _ = random_crop(image, None, (8, 8, 8), seed=(1, 2))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    starts = {tuple(crop_start((20, 20, 20), (8, 8, 8), (s, 0)).numpy()) for s in range(20)}
    assert len(starts) > 10
    assert all(0 <= v <= 12 for start in starts for v in start)


def test_foreground_crop_contains_foreground():
    label = np.zeros((24, 24, 16), np.uint8)
    label[20, 2, 13] = 4
    label[21, 3, 14] = 2
    image = tf.constant(_image((24, 24, 16, 2)))
    for s in range(15):
        _, lab = random_crop(image, tf.constant(label), (6, 6, 6), seed=(s, 7), foreground_probability=1.0)
        assert lab.numpy().max() > 0
    # (D, H, W, K) region labels count as foreground too; no foreground falls back to uniform
    regions = np.stack([label > 0, label == 4], -1).astype(np.float32)
    _, lab = random_crop(image, tf.constant(regions), (6, 6, 6), seed=(0, 1), foreground_probability=1.0)
    assert lab.shape == (6, 6, 6, 2) and lab.numpy().max() == 1
    _, lab = random_crop(image, tf.zeros((24, 24, 16), tf.uint8), (6, 6, 6), seed=(0, 1), foreground_probability=1.0)
    assert lab.shape == (6, 6, 6)


def test_flips_are_mirrors_and_keep_alignment():
    image = _image((6, 7, 8, 2))
    label = (image[..., 1] > 250).astype(np.int32)   # label derived from the image
    for mask in ([True, False, False], [False, True, True], [True, True, True], [False, False, False]):
        img, lab = flip_axes(tf.constant(image), tf.constant(label), mask)
        axes = [i for i in range(3) if mask[i]]
        np.testing.assert_array_equal(img.numpy(), np.flip(image, axes) if axes else image)
        np.testing.assert_array_equal(lab.numpy(), (img.numpy()[..., 1] > 250).astype(np.int32))
    img, lab = random_flip(tf.constant(image), tf.constant(label), seed=(5, 5), probability=1.0)
    np.testing.assert_array_equal(img.numpy(), image[::-1, ::-1, ::-1])
    img, _ = random_flip(tf.constant(image), None, seed=(5, 5), probability=0.0)
    np.testing.assert_array_equal(img.numpy(), image)


def test_random_flip_seeded():
    image = tf.constant(_image((4, 4, 4, 1)))
    outs = [random_flip(image, None, seed=(s, 1))[0].numpy() for s in range(12)]
    again = [random_flip(image, None, seed=(s, 1))[0].numpy() for s in range(12)]
    for a, b in zip(outs, again):
        np.testing.assert_array_equal(a, b)
    assert len({o.tobytes() for o in outs}) > 2


def test_intensity_shift_scale_by_hand():
    image = _image((5, 5, 5, 2))
    shift, scale = np.array([0.1, -0.05], np.float32), np.array([1.1, 0.9], np.float32)
    out = intensity_shift_scale(tf.constant(image), shift, scale).numpy()
    for c in range(2):
        x = image[..., c]
        nz = x != 0
        expected = np.where(nz, x * scale[c] + shift[c] * x[nz].std(), 0)
        np.testing.assert_allclose(out[..., c], expected, rtol=1e-5)
    out = intensity_shift_scale(tf.constant(image), 0.5, 2.0, std=1.0, nonzero=False).numpy()
    np.testing.assert_allclose(out, image * 2.0 + 0.5, rtol=1e-6)


def test_random_intensity_ranges_and_seed():
    shifts, scales = intensity_parameters((1, 2), 4, shift=0.1, scale=0.1)
    assert np.all(np.abs(shifts.numpy()) <= 0.1) and np.all(np.abs(scales.numpy() - 1) <= 0.1)
    image = tf.constant(_image((5, 5, 5, 4)))
    a = random_intensity(image, (9, 9)).numpy()
    np.testing.assert_array_equal(a, random_intensity(image, (9, 9)).numpy())
    assert not np.array_equal(a, random_intensity(image, (9, 10)).numpy())
    assert np.all(a[image.numpy() == 0] == 0)


def test_bad_arguments():
    image = tf.zeros((4, 4, 4, 1))
    with pytest.raises(ConfigError, match="size"):
        crop(image, None, (0, 0, 0), (4, 4))
    with pytest.raises(ConfigError, match="foreground_probability"):
        random_crop(image, None, (2, 2, 2), (1, 1), foreground_probability=1.5)
    with pytest.raises(ConfigError, match="scale"):
        random_intensity(image, (1, 1), scale=1.0)
