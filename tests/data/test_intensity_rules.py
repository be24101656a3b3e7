"""One non-zero z-score and one brain mask: the numpy and TensorFlow variants follow the same rule,
and training (pipeline3d, volume transforms) and serving (normalize_intensity) use them."""
import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms import intensity
from tfseg.data.transforms.intensity import (ZERO_SPREAD, brain_mask, brain_mask_array, nonzero_moments,
                                             nonzero_stats, normalize_intensity, zscore_nonzero)
from tfseg.errors import ConfigError


def _volume(seed=0, shape=(6, 7, 5, 3)):
    rng = np.random.default_rng(seed)
    volume = rng.integers(-400, 900, size=shape).astype(np.int16)
    volume[:2] = 0                      # background in every channel
    volume[3, :, :, 1] = 0              # extra zeros in one channel
    return volume


def test_numpy_and_tensorflow_moments_agree():
    volume = _volume()
    mean, std = nonzero_moments(tf.constant(volume))
    for c in range(volume.shape[-1]):
        m, s = nonzero_stats(volume[..., c])
        inside = volume[..., c][volume[..., c] != 0].astype(np.float64)
        assert m == pytest.approx(inside.mean(), rel=1e-12) and s == pytest.approx(inside.std(), rel=1e-12)
        assert float(mean[c]) == pytest.approx(m, rel=1e-5) and float(std[c]) == pytest.approx(s, rel=1e-5)


@pytest.mark.parametrize("value", [7.0, 1234.5, -3.0e4])
def test_constant_channel_is_only_shifted_by_both_rules(value):
    volume = np.zeros((40, 40, 30, 2), np.float32)
    volume[2:38, 3:37, 1:29, 0] = value     # float32 sums of a constant are not exact: no noise / tiny std
    mean, std = nonzero_moments(tf.constant(volume))
    assert std.numpy().tolist() == [1.0, 1.0]
    assert nonzero_stats(volume[..., 0]) == (pytest.approx(value), 1.0)
    assert nonzero_stats(volume[..., 1]) == (0.0, 1.0)
    assert np.abs(zscore_nonzero(tf.constant(volume)).numpy()).max() < 1e-3


def test_spread_just_above_the_floor_is_kept():
    channel = np.array([0.0, 100.0, 100.0 + 4 * ZERO_SPREAD * 100.0])
    _, std = nonzero_stats(channel)
    assert std == pytest.approx(2 * ZERO_SPREAD * 100.0)
    _, tf_std = nonzero_moments(tf.constant(channel[:, None], tf.float64))
    assert float(tf_std[0]) == pytest.approx(std, rel=1e-3)


def test_serving_and_training_use_the_same_zscore():
    volume = _volume(seed=1).astype(np.float32)
    served = normalize_intensity(tf.constant(volume), "zscore_nonzero").numpy()
    trained = zscore_nonzero(tf.constant(volume)).numpy()
    np.testing.assert_array_equal(served, trained)
    # by hand, channel 1
    x = volume[..., 1]
    inside = x != 0
    expected = np.where(inside, (x - x[inside].mean()) / x[inside].std(), 0.0)
    np.testing.assert_allclose(trained[..., 1], expected, atol=1e-5)
    assert not hasattr(intensity, "zscore_nonzero_channels")


def test_pipeline3d_and_volume_use_the_one_rule():
    from tfseg.data import pipeline3d
    from tfseg.data.transforms import volume

    assert pipeline3d.nonzero_stats is nonzero_stats
    assert volume.nonzero_moments is nonzero_moments


def test_brain_masks_agree_in_2d_and_3d():
    for image in (_volume(seed=2)[3], _volume(seed=3)):
        expected = np.any(image != 0, axis=-1)
        np.testing.assert_array_equal(brain_mask_array(image), expected)
        np.testing.assert_array_equal(brain_mask(tf.constant(image)).numpy(), expected)
    for bad in (np.ones((3, 3)), np.ones(4)):
        with pytest.raises(ConfigError, match="channels-last"):
            brain_mask_array(bad)
        with pytest.raises(ConfigError, match="channels-last"):
            brain_mask(tf.constant(bad))
