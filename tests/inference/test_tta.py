import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError
from tfseg.inference.tta import flip_combinations, flip_tta


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def position_model(batch):
    """Not flip-equivariant: scales each voxel by a weight that depends on its position."""
    spatial = batch.shape[1:-1]
    weight = np.arange(1, np.prod(spatial) + 1, dtype=np.float32).reshape(spatial)
    return batch * weight[None, ..., None] + 0.1 * np.roll(batch, 1, axis=1)


def test_combinations():
    assert flip_combinations((0, 1, 2)) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert flip_combinations(()) == [()]


@pytest.mark.parametrize("shape", [(2, 5, 4, 3, 2), (3, 6, 5, 1)])
def test_equivariant_model_is_unchanged(shape):
    batch = rand(shape)
    pointwise = lambda x: np.tanh(2 * x) + x ** 2     # noqa: E731  (acts voxel by voxel)
    np.testing.assert_allclose(flip_tta(pointwise)(batch), pointwise(batch), atol=1e-6)


def test_non_equivariant_model_averages_by_hand():
    batch = rand((2, 4, 3, 5, 2), seed=1)
    axes = (0, 2)                                    # spatial D and W = array axes 1 and 3
    by_hand = []
    for flip_d, flip_w in itertools.product([False, True], repeat=2):
        x = batch
        if flip_d:
            x = x[:, ::-1]
        if flip_w:
            x = x[:, :, :, ::-1]
        y = position_model(x)
        if flip_w:
            y = y[:, :, :, ::-1]
        if flip_d:
            y = y[:, ::-1]
        by_hand.append(y)
    expected = np.mean(by_hand, axis=0)
    out = flip_tta(position_model, axes=axes)(batch)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out, position_model(batch), atol=1e-3)      # the model is not equivariant


def test_tensor_inputs_inside_tf_function():
    batch = rand((1, 4, 6, 2), seed=2)
    weight = tf.constant(np.arange(24, dtype=np.float32).reshape(1, 4, 6, 1))
    model = lambda x: x * weight                     # noqa: E731

    fn = tf.function(flip_tta(model, axes=(0, 1)))
    out = fn(tf.constant(batch)).numpy()
    w = weight.numpy()
    expected = batch * (w + w[:, ::-1] + w[:, :, ::-1] + w[:, ::-1, ::-1]) / 4
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_bad_axes():
    with pytest.raises(ConfigError, match="must not repeat"):
        flip_tta(lambda x: x, axes=(0, 0))
    with pytest.raises(ConfigError, match="non-negative"):
        flip_tta(lambda x: x, axes=(-1,))
    with pytest.raises(ConfigError, match="within the 2 spatial axes"):
        flip_tta(lambda x: x, axes=(0, 2))(np.zeros((1, 3, 3, 1)))
