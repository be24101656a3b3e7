import math

import keras
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.inference.sliding_window import (count_windows, make_predict_fn, predict_volume,
                                            sliding_window_inference, window_grid)


def pointwise_model(spatial_dims, channels=2, classes=3, seed=0):
    """A 1x1(x1) convolution + sigmoid: each output voxel depends on its input voxel only."""
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv3D if spatial_dims == 3 else keras.layers.Conv2D
    return keras.Sequential([keras.Input((None,) * spatial_dims + (channels,)),
                             conv(classes, 1, activation="sigmoid", bias_initializer="random_normal")])


def conv3_model(spatial_dims, channels=2, classes=2, seed=1):
    """A 3x3(x3) same-padded convolution: outputs depend on neighbours (zero padding at the border)."""
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv3D if spatial_dims == 3 else keras.layers.Conv2D
    return keras.Sequential([keras.Input((None,) * spatial_dims + (channels,)),
                             conv(classes, 3, padding="same", activation="sigmoid", bias_initializer="random_normal")])


def direct(model, volume):
    return np.asarray(model(volume[None].astype(np.float32), training=False))[0]


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------- grid

def monai_count(size, roi, overlap):
    stride = max(int(roi * (1 - overlap)), 1)
    return 1 if size <= roi else math.ceil((size - roi) / stride) + 1


def test_brats_grid_matches_monai_count():
    windows = window_grid((240, 240, 155), 128, 0.5)
    assert len(windows) == count_windows((240, 240, 155), 128, 0.5) == 18
    starts = [sorted({w[axis].start for w in windows}) for axis in range(3)]
    assert starts == [[0, 64, 112], [0, 64, 112], [0, 27]]          # last window flush with the border
    assert all(w[a].stop - w[a].start == 128 for w in windows for a in range(3))


@pytest.mark.parametrize("shape,roi,overlap", [((240, 240, 155), (128, 128, 128), 0.25),
                                               ((17, 23, 11), (8, 10, 6), 0.5),
                                               ((100, 37), (32, 32), 0.6),
                                               ((9, 9, 9), (9, 4, 3), 0.0)])
def test_grid_count_and_coverage(shape, roi, overlap):
    windows = window_grid(shape, roi, overlap)
    assert len(windows) == np.prod([monai_count(s, r, overlap) for s, r in zip(shape, roi)])
    assert count_windows(shape, roi, overlap) == len(windows)
    covered = np.zeros(shape, int)
    for w in windows:
        covered[w] += 1
    assert covered.min() >= 1


def test_grid_of_axis_shorter_than_roi_covers_it_whole():
    windows = window_grid((5, 40), (8, 16), 0.5)
    assert all(w[0] == slice(0, 5) for w in windows)
    assert len(windows) == monai_count(40, 16, 0.5)


def test_grid_bad_arguments():
    with pytest.raises(ConfigError, match="overlap must lie in"):
        window_grid((10, 10), 4, 1.0)
    with pytest.raises(ConfigError, match="roi_size"):
        window_grid((10, 10), (4, 4, 4))
    with pytest.raises(ConfigError, match="integers"):
        window_grid((10, 10), (4.5, 4))


# ---------------------------------------------------------------------------------------------- blending

def test_constant_output_is_kept_by_both_blends():
    const = lambda x: np.full(x.shape[:-1] + (2,), 0.3, np.float32)     # noqa: E731
    volume = rand((19, 14, 11, 1))
    for blend in ("gaussian", "constant"):
        out = sliding_window_inference(volume, const, roi_size=(8, 8, 8), overlap=0.5, blend=blend)
        np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_blend_weights_by_hand():
    # Two windows of 4 on an axis of 6 (starts 0 and 2); the first predicts 1 everywhere, the second 3.
    calls = []

    def fn(x):
        calls.append(len(x))
        return np.stack([np.full(x.shape[1:-1] + (1,), 1.0 + 2 * i, np.float32) for i in range(len(x))])

    volume = np.zeros((6, 1, 1), np.float32)
    out = sliding_window_inference(volume, fn, roi_size=(4, 1), overlap=0.5, blend="constant")
    np.testing.assert_allclose(out[:, 0, 0], [1, 1, 2, 2, 3, 3], atol=1e-6)
    out = sliding_window_inference(volume, fn, roi_size=(4, 1), overlap=0.5, blend="gaussian")
    g = np.exp(-(np.arange(4) - 1.5) ** 2 / (2 * 0.5 ** 2))          # sigma = 0.125 * 4
    mixed = [(g[2] * 1 + g[0] * 3) / (g[2] + g[0]), (g[3] * 1 + g[1] * 3) / (g[3] + g[1])]
    np.testing.assert_allclose(out[:, 0, 0], [1, 1, *mixed, 3, 3], rtol=1e-6)
    assert calls == [2, 2]


# ---------------------------------------------------------------------------------------------- models

@pytest.mark.parametrize("spatial_dims,shape,roi", [(3, (19, 14, 11), (8, 8, 8)),
                                                    (3, (17, 23, 9), (6, 10, 5)),
                                                    (2, (37, 29), (16, 16))])
def test_pointwise_model_equals_full_volume_pass(spatial_dims, shape, roi):
    model = pointwise_model(spatial_dims)
    volume = rand(shape + (2,), seed=2)
    expected = direct(model, volume)
    for blend in ("gaussian", "constant"):
        out = sliding_window_inference(volume, model.predict_on_batch, roi, overlap=0.5, blend=blend,
                                       window_batch_size=3)
        assert out.shape == shape + (3,) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-4)
    out = predict_volume(model, volume, roi_size=roi, overlap=0.25)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_neighbourhood_model_with_roi_equal_to_volume(spatial_dims):
    model = conv3_model(spatial_dims)
    shape = (10, 9, 7)[:spatial_dims]
    volume = rand(shape + (2,), seed=3)
    expected = direct(model, volume)
    np.testing.assert_allclose(predict_volume(model, volume, roi_size=shape), expected, atol=1e-5)
    np.testing.assert_allclose(predict_volume(model, volume), expected, atol=1e-5)     # roi None: one pass


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_volume_smaller_than_roi(spatial_dims):
    shape = (5, 7, 3)[:spatial_dims]
    volume = rand(shape + (2,), seed=4)
    # Zero padding up to the roi then cropping equals the model's own zero "same" padding.
    model = conv3_model(spatial_dims)
    out = sliding_window_inference(volume, model.predict_on_batch, roi_size=8, pad_mode="constant")
    assert out.shape == shape + (2,)
    np.testing.assert_allclose(out, direct(model, volume), atol=1e-5)
    seen = []
    sliding_window_inference(volume, lambda x: seen.append(x.shape) or x, roi_size=8, pad_mode="edge")
    assert seen == [(1,) + (8,) * spatial_dims + (2,)]
    # Edge padding: the window holds the volume, centred, with its border voxels repeated.
    padded = {}
    sliding_window_inference(volume, lambda x: padded.setdefault("x", x.copy()), roi_size=8, pad_mode="edge")
    pads = [((8 - s) // 2, 8 - s - (8 - s) // 2) for s in shape] + [(0, 0)]
    np.testing.assert_array_equal(padded["x"][0], np.pad(volume, pads, mode="edge"))


def test_window_batch_size_does_not_change_result():
    model = conv3_model(3, seed=5)
    volume = rand((14, 12, 10, 2), seed=5)
    results = []
    for batch_size in (1, 3, 100):
        sizes = []

        def fn(x, sizes=sizes):
            sizes.append(len(x))
            return model.predict_on_batch(x)

        results.append(sliding_window_inference(volume, fn, roi_size=(8, 8, 6), overlap=0.5,
                                                window_batch_size=batch_size))
        assert max(sizes) <= batch_size and sum(sizes) == count_windows((14, 12, 10), (8, 8, 6), 0.5)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)
    np.testing.assert_allclose(results[0], results[2], atol=1e-6)
    # Overlapping windows of a neighbourhood model differ from one full pass only near window borders.
    assert np.abs(results[0] - direct(model, volume)).max() < 0.5


def test_integer_volume_and_out_dtype():
    volume = np.random.default_rng(6).integers(-100, 100, size=(12, 11, 1)).astype(np.int16)
    out = sliding_window_inference(volume, lambda x: x / 100.0, roi_size=8, out_dtype=np.float16)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), volume / 100.0, atol=2e-3)


def test_predict_volume_traces_once_and_caches():
    model = pointwise_model(3, channels=1, classes=2, seed=7)
    fn = make_predict_fn(model, (6, 6, 6), 1)
    for shape in [(13, 9, 7), (8, 20, 6)]:           # different sizes, partial last batches
        volume = rand(shape + (1,), seed=8)
        out = predict_volume(model, volume, roi_size=6, window_batch_size=4)
        np.testing.assert_allclose(out, direct(model, volume), atol=1e-4)
    assert make_predict_fn(model, (6, 6, 6), 1) is fn
    assert fn.tf_function.experimental_get_tracing_count() == 1


def test_predict_volume_roi_from_model_and_size_divisor():
    keras.utils.set_random_seed(9)
    fixed = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 1, activation="softmax")])
    volume = rand((20, 13, 1), seed=9)
    np.testing.assert_allclose(predict_volume(fixed, volume), direct(fixed, volume), atol=1e-4)
    # A network that needs sizes divisible by 4; the whole volume is padded to 12x16, then cropped.
    inp = keras.Input((None, None, 1))
    x = keras.layers.MaxPooling2D(4)(inp)
    x = keras.layers.UpSampling2D(4)(x)
    pooled = keras.Model(inp, x)
    volume = rand((10, 13, 1), seed=10)
    out = predict_volume(pooled, volume, size_divisor=4)
    assert out.shape == (10, 13, 1)
    padded = np.pad(volume, [(1, 1), (1, 2), (0, 0)])
    np.testing.assert_allclose(out, direct(pooled, padded)[1:11, 1:14], atol=1e-6)


def test_predict_volume_uses_first_output_and_tta():
    inp = keras.Input((None, None, None, 1))
    seg = keras.layers.Conv3D(2, 1, activation="sigmoid")(inp)
    recon = keras.layers.Conv3D(1, 1)(inp)
    model = keras.Model(inp, [seg, recon])
    volume = rand((9, 8, 7, 1), seed=11)
    expected = direct(keras.Model(inp, seg), volume)
    np.testing.assert_allclose(predict_volume(model, volume, roi_size=6), expected, atol=1e-4)
    # A pointwise model is flip-equivariant: mirror TTA changes nothing.
    np.testing.assert_allclose(predict_volume(model, volume, roi_size=6, tta=True), expected, atol=1e-4)


def test_bad_inputs():
    ok = lambda x: x                                  # noqa: E731
    with pytest.raises(DataError, match="case1.nii.gz: expected a volume"):
        sliding_window_inference(np.zeros((4, 4)), ok, roi_size=2, source="case1.nii.gz")
    with pytest.raises(DataError, match="empty"):
        sliding_window_inference(np.zeros((0, 4, 1)), ok, roi_size=2)
    with pytest.raises(ConfigError, match=r"predict_fn must map a batch"):
        sliding_window_inference(np.zeros((8, 8, 1)), lambda x: x[:, ::2], roi_size=4)
    with pytest.raises(ConfigError, match="window_batch_size"):
        sliding_window_inference(np.zeros((8, 8, 1)), ok, roi_size=4, window_batch_size=0)
    with pytest.raises(ConfigError, match="blend"):
        sliding_window_inference(np.zeros((8, 8, 1)), ok, roi_size=4, blend="mean")
    with pytest.raises(ConfigError, match="pad_mode"):
        sliding_window_inference(np.zeros((8, 8, 1)), ok, roi_size=4, pad_mode="wrap")


def test_crop_to_nonzero_matches_the_full_grid_inside_and_is_zero_outside():
    import keras

    from tfseg.inference.sliding_window import nonzero_box, predict_volume

    inputs = keras.Input((None, None, None, 2))
    model = keras.Model(inputs, keras.layers.Conv3D(3, 1, activation="sigmoid")(inputs))
    volume = np.zeros((20, 24, 18, 2), np.float32)
    volume[4:15, 3:20, 5:16] = np.random.default_rng(0).normal(size=(11, 17, 11, 2))
    assert nonzero_box(volume) == (slice(4, 15), slice(3, 20), slice(5, 16))
    cropped = predict_volume(model, volume, roi_size=(8, 8, 8), crop_to_nonzero=True)
    full = predict_volume(model, volume, roi_size=(8, 8, 8))
    np.testing.assert_allclose(cropped[4:15, 3:20, 5:16], full[4:15, 3:20, 5:16], atol=1e-5)
    assert cropped.shape == full.shape and not cropped[:4].any() and not cropped[:, :, 16:].any()
    assert not predict_volume(model, np.zeros_like(volume), roi_size=8, crop_to_nonzero=True).any()
