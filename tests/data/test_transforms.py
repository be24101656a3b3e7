import math

import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms.intensity import gray_to_rgb, normalize_batch, normalize_intensity
from tfseg.data.transforms.spatial import (flip, random_flip_rotate, resize_pair, rotate, rotate_pair)
from tfseg.errors import ConfigError


def blob(size=48, centre=(20.0, 28.0), radius=9.0):
    """A smooth bright disc; its mask is derived from the image by a threshold."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r = np.hypot(yy - centre[0], xx - centre[1])
    image = 1.0 / (1.0 + np.exp((r - radius) / 1.5))
    return image[..., None].astype(np.float32), (image > 0.5).astype(np.int32)


def test_zscore_and_minmax():
    x = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4, 1))
    z = normalize_intensity(x, "zscore").numpy()
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-5
    m = normalize_intensity(x, "minmax").numpy()
    assert m.min() == 0 and m.max() == 1
    assert np.all(np.isfinite(normalize_intensity(tf.zeros((4, 4, 1)), "zscore").numpy()))
    batch = normalize_batch(tf.stack([x, 10 * x + 3]), "zscore").numpy()
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-5)
    with pytest.raises(ConfigError, match="normalization must be one of"):
        normalize_intensity(x, "histogram")
    stretched = normalize_intensity(x + 1.0, "percentile").numpy()
    assert stretched.min() == -1.0 and stretched.max() == 1.0


def test_gray_to_rgb():
    assert gray_to_rgb(tf.zeros((4, 4, 1))).shape == (4, 4, 3)
    assert gray_to_rgb(tf.zeros((4, 4, 3))).shape == (4, 4, 3)


def test_resize_pair_keeps_labels():
    image, mask = blob()
    mask = mask * 3  # labels other than 0/1 must survive unchanged
    small_image, small_mask = resize_pair(tf.constant(image), tf.constant(mask), (24, 24))
    assert small_image.shape == (24, 24, 1) and small_mask.shape == (24, 24)
    assert set(np.unique(small_mask.numpy())) <= {0, 3}
    assert small_mask.dtype == tf.int32


def test_flip_is_mirror():
    image, mask = blob()
    flipped, flipped_mask = flip(tf.constant(image), tf.constant(mask), True, True)
    np.testing.assert_array_equal(flipped.numpy(), image[::-1, ::-1])
    np.testing.assert_array_equal(flipped_mask.numpy(), mask[::-1, ::-1])


def test_rotate_quarter_turn_is_exact():
    image = np.random.default_rng(0).random((9, 9, 1)).astype(np.float32)
    rotated = rotate(tf.constant(image), math.pi / 2, "nearest").numpy()
    # a quarter turn about the centre is a permutation of pixels: some numpy rot90 must match it
    assert any(np.allclose(rotated[..., 0], np.rot90(image[..., 0], k)) for k in (1, 3))


@pytest.mark.parametrize("degrees", [-20.0, 7.0, 15.0])
def test_rotation_keeps_image_and_mask_aligned(degrees):
    image, mask = blob()
    rotated, rotated_mask = rotate_pair(tf.constant(image), tf.constant(mask), math.radians(degrees))
    derived = (rotated.numpy()[..., 0] > 0.5).astype(np.int32)
    disagree = np.mean(derived != rotated_mask.numpy())
    assert rotated_mask.numpy().sum() > 0.8 * mask.sum()
    assert disagree < 0.01, disagree  # only a few boundary pixels may differ
    assert set(np.unique(rotated_mask.numpy())) <= {0, 1}


def test_random_transform_is_reproducible_and_aligned():
    image, mask = blob()
    seed = tf.constant([3, 4], tf.int64)
    a = random_flip_rotate(tf.constant(image), tf.constant(mask), seed, max_degrees=20)
    b = random_flip_rotate(tf.constant(image), tf.constant(mask), seed, max_degrees=20)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    derived = (a[0].numpy()[..., 0] > 0.5).astype(np.int32)
    assert np.mean(derived != a[1].numpy()) < 0.01
    outputs = {random_flip_rotate(tf.constant(image), tf.constant(mask), tf.constant([s, 0], tf.int64),
                                  max_degrees=20)[0].numpy().tobytes() for s in range(6)}
    assert len(outputs) > 1
