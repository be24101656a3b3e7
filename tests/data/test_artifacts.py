"""Tests of tfseg.data.transforms.artifacts (noise, bias field) and intensity.percentile_stretch."""
import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms import artifacts
from tfseg.data.transforms.intensity import brain_mask, masked_percentiles, percentile_stretch
from tfseg.errors import ConfigError


def brain_image(size=64, seed=0):
    """Raw-looking 3-channel MRI patch: positive intensities in a disc, zero outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.35) ** 2
    image = rng.gamma(2.0, [300.0, 800.0, 150.0], (size, size, 3)).astype(np.float32) + 1.0
    return image * inside[..., None], inside


# ---- percentile stretch ----

def test_percentile_stretch_matches_numpy():
    image, inside = brain_image()
    out = percentile_stretch(image).numpy()  # default mask: any channel non-zero = the disc
    for c in range(3):
        low, high = np.percentile(image[..., c][inside], [0.5, 99.5])
        expected = (np.clip(image[..., c], low, high) - low) / (high - low) * 2.0 - 1.0
        np.testing.assert_allclose(out[..., c][inside], expected[inside], atol=1e-5)
    assert np.all(out[~inside] == -1.0)
    assert out.min() == -1.0 and out.max() == pytest.approx(1.0)


def test_percentile_stretch_with_a_given_mask_and_range():
    image, _ = brain_image(seed=1)
    mask = np.zeros(image.shape[:2], bool)
    mask[10:30, 20:50] = True
    out = percentile_stretch(image, mask, low=5, high=90, out_min=0.0, out_max=10.0).numpy()
    for c in range(3):
        values = image[..., c][mask]
        low, high = np.percentile(values, [5, 90])
        expected = (np.clip(values, low, high) - low) / (high - low) * 10.0
        np.testing.assert_allclose(out[..., c][mask], expected, rtol=1e-5, atol=1e-4)
    assert np.all(out[~mask] == 0.0)
    quantiles = masked_percentiles(image, mask, [0, 37.5, 100]).numpy()
    np.testing.assert_allclose(quantiles, np.percentile(image[mask], [0, 37.5, 100], axis=0), rtol=1e-6)


def test_percentile_stretch_empty_mask_and_constant_channel_are_safe():
    out = percentile_stretch(tf.zeros((8, 8, 3))).numpy()
    assert np.all(out == -1.0)
    image, inside = brain_image(size=16)
    image[..., 1] = np.where(inside, 5.0, 0.0)  # constant inside the brain
    out = percentile_stretch(image).numpy()
    assert np.all(np.isfinite(out)) and np.all(out[..., 1] == -1.0)
    assert out[..., 0][inside].max() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="percentiles"):
        percentile_stretch(image, low=50, high=10)
    with pytest.raises(ConfigError, match="out_min"):
        percentile_stretch(image, out_min=1.0, out_max=-1.0)


def test_percentile_stretch_runs_in_graph_mode_on_dynamic_shapes():
    image, inside = brain_image(size=32, seed=2)
    fn = tf.function(percentile_stretch, input_signature=[tf.TensorSpec((None, None, 3), tf.float32)])
    np.testing.assert_allclose(fn(image).numpy(), percentile_stretch(image).numpy(), atol=1e-6)
    np.testing.assert_array_equal(brain_mask(image).numpy(), inside)
    assert np.all(fn(tf.zeros((4, 5, 3))).numpy() == -1.0)


# ---- noise ----

def test_gaussian_noise_statistics_mask_and_seed():
    image = tf.fill((128, 128, 3), 2.0)
    out = artifacts.gaussian_noise(image, 0.5, (1, 2)).numpy()
    assert np.std(out - 2.0) == pytest.approx(0.5, rel=0.05)
    assert abs(np.mean(out - 2.0)) < 0.02
    np.testing.assert_array_equal(out, artifacts.gaussian_noise(image, 0.5, (1, 2)).numpy())
    assert not np.allclose(out, artifacts.gaussian_noise(image, 0.5, (1, 3)).numpy())
    mask = np.zeros((128, 128), bool)
    mask[:, :64] = True
    masked = artifacts.gaussian_noise(image, 0.5, (1, 2), mask=mask).numpy()
    assert np.all(masked[:, 64:] == 2.0) and np.std(masked[:, :64]) > 0.4
    np.testing.assert_array_equal(artifacts.gaussian_noise(image, 0.0, (1, 2)).numpy(), image.numpy())


def test_random_noise_draws_std_in_range():
    image = tf.zeros((64, 64, 1))
    stds = [np.std(artifacts.random_noise(image, (s, 7), std=0.1).numpy()) for s in range(12)]
    assert max(stds) <= 0.1 * 1.1 and min(stds) < 0.05 and max(stds) > 0.05
    np.testing.assert_array_equal(artifacts.random_noise(image, (3, 7)).numpy(),
                                  artifacts.random_noise(image, (3, 7)).numpy())
    with pytest.raises(ConfigError, match="std"):
        artifacts.random_noise(image, (3, 7), std=-0.1)


# ---- bias field ----

def numpy_bias_field(shape, coefficients, order):
    y = np.linspace(-1.0, 1.0, shape[0])[:, None]
    x = np.linspace(-1.0, 1.0, shape[1])[None, :]
    field = np.zeros(shape)
    k = 0
    for i in range(order + 1):
        for j in range(order + 1 - i):
            field += coefficients[k] * y ** i * x ** j
            k += 1
    return np.exp(field)


def test_bias_field_matches_numpy_polynomial():
    image, inside = brain_image(size=32, seed=3)
    coefficients = np.linspace(-0.3, 0.3, 10)
    out = artifacts.bias_field(image, coefficients, order=3).numpy()
    field = numpy_bias_field((32, 32), coefficients, 3)
    np.testing.assert_allclose(out, image * field[..., None], rtol=1e-5)
    # only the terms in y: the field does not vary along x
    # order 2 terms (i, j): (0,0), (0,1), (0,2), (1,0), (1,1), (2,0); the fourth is y
    only_y = np.array([0.0, 0.0, 0.0, 0.4, 0.0, 0.0])
    field2 = artifacts.bias_field_map((5, 7), only_y, order=2).numpy()
    np.testing.assert_allclose(field2[:, 0], np.exp(0.4 * np.linspace(-1, 1, 5)), rtol=1e-6)
    np.testing.assert_allclose(field2, np.repeat(field2[:, :1], 7, axis=1), rtol=1e-6)
    np.testing.assert_allclose(artifacts.bias_field(image, np.zeros(10)).numpy(), image)
    masked = artifacts.bias_field(image, coefficients, mask=~inside).numpy()
    np.testing.assert_array_equal(masked[inside], image[inside])
    with pytest.raises(ConfigError, match="10 coefficients"):
        artifacts.bias_field(image, np.zeros(6), order=3)


def test_random_bias_field_is_seeded_and_bounded():
    image = tf.ones((32, 32, 3))
    a = artifacts.random_bias_field(image, (5, 5)).numpy()
    np.testing.assert_array_equal(a, artifacts.random_bias_field(image, (5, 5)).numpy())
    assert not np.allclose(a, artifacts.random_bias_field(image, (5, 6)).numpy())
    np.testing.assert_allclose(a[..., 0], a[..., 2])  # one field for all channels
    assert np.all(a > np.exp(-1.0)) and np.all(a < np.exp(1.0))  # |sum of 10 terms| <= 10 * 0.1
    coefficients = artifacts.bias_coefficients((1, 1), 0.1, order=3).numpy()
    assert coefficients.shape == (10,) and np.abs(coefficients).max() <= 0.1


def test_artifacts_run_in_dataset_map():
    image, inside = brain_image(size=32, seed=4)
    data = tf.data.Dataset.from_tensors((image, inside)).repeat(2)
    seeds = tf.data.Dataset.random(seed=1).batch(2)

    def augment(pair, seed):
        img, mask = pair
        split = tf.random.experimental.stateless_split(seed, 2)
        img = artifacts.random_noise(img, split[0], std=5.0, mask=mask)
        return artifacts.random_bias_field(img, split[1], mask=mask)

    mapped = tf.data.Dataset.zip((data, seeds)).map(augment)
    assert mapped.element_spec.shape.as_list() == [32, 32, 3]
    outputs = [x.numpy() for x in mapped]
    assert not np.allclose(outputs[0], outputs[1])
    assert all(np.all(o[~inside] == 0.0) for o in outputs)
