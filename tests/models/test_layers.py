"""Custom layers, initializers and layer factories of tfseg.models."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError
from tfseg.models import blocks
from tfseg.models.layers import (BilinearUpsamplingInitializer, LinearUpsampling, LocalResponseNormalization, Scale,
                                 bilinear_kernel_1d)


def lrn_reference(x, size, bias, alpha, beta):
    """Caffe's across-channel LRN written out with loops: alpha is divided by the window size."""
    out = np.empty_like(x, dtype="float64")
    channels = x.shape[-1]
    half = size // 2
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels, c + half + 1)
        total = np.sum(x[..., lo:hi].astype("float64") ** 2, axis=-1)
        out[..., c] = x[..., c] / (bias + alpha / size * total) ** beta
    return out


@pytest.mark.parametrize("depth_radius, bias, alpha, beta", [(2, 1.0, 1e-4, 0.75), (1, 2.0, 0.3, 0.5), (0, 1.0, 1.0, 1.0)])
def test_lrn_matches_caffe_formula(depth_radius, bias, alpha, beta):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=20.0, size=(2, 3, 4, 7)).astype("float32")
    layer = LocalResponseNormalization(depth_radius=depth_radius, bias=bias, alpha=alpha, beta=beta)
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, lrn_reference(x, 2 * depth_radius + 1, bias, alpha, beta), rtol=1e-5, atol=1e-6)


def test_lrn_equals_tensorflow_lrn_with_undivided_alpha():
    x = np.random.default_rng(1).normal(scale=30.0, size=(1, 5, 5, 16)).astype("float32")
    ours = keras.ops.convert_to_numpy(LocalResponseNormalization(2, 1.0, 1e-4, 0.75)(x))
    theirs = tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_lrn_keeps_float16_and_does_not_overflow():
    x = np.full((1, 2, 2, 5), 200.0, "float16")  # 5 * 200**2 = 2e5 overflows float16
    y = LocalResponseNormalization(alpha=1.0, beta=0.75, dtype="mixed_float16")(x)
    assert y.dtype == "float16"
    expected = lrn_reference(x.astype("float32"), 5, 1.0, 1.0, 0.75)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y).astype("float32"), expected, rtol=2e-3)


def test_lrn_rejects_bad_radius():
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=1.5)


def test_scale_multiplies_and_has_no_weights():
    layer = Scale(0.01)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(np.full((2, 3), 5.0, "float32"))), 0.05, rtol=1e-6)
    assert layer.weights == []
    assert Scale.from_config(layer.get_config()).factor == 0.01


def test_bilinear_kernel_1d_is_the_fcn_filter():
    np.testing.assert_allclose(bilinear_kernel_1d(4), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_kernel_1d(3), [0.5, 1.0, 0.5])
    k16 = bilinear_kernel_1d(16)  # factor 8: weights (2i + 1) / 16 rising, then falling
    np.testing.assert_allclose(k16[:8], (2 * np.arange(8) + 1) / 16)
    np.testing.assert_allclose(k16, k16[::-1])


def test_bilinear_initializer_is_diagonal_and_separable():
    kernel = keras.ops.convert_to_numpy(BilinearUpsamplingInitializer()((4, 4, 3, 3)))
    filt = bilinear_kernel_1d(4)
    for out_c in range(3):
        for in_c in range(3):
            expected = np.outer(filt, filt) if out_c == in_c else np.zeros((4, 4))
            np.testing.assert_allclose(kernel[:, :, out_c, in_c], expected)
    assert keras.initializers.get(keras.initializers.serialize(BilinearUpsamplingInitializer())).__class__ \
        is BilinearUpsamplingInitializer


def _half_pixel_ramp(n, factor, slope, offset):
    q = np.arange(n * factor)
    return slope * ((q + 0.5) / factor - 0.5) + offset


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_transposed_conv_with_bilinear_init_upsamples_ramps_exactly_inside(factor):
    n = 6 if factor < 32 else 4
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = np.stack([np.full((n, n), 3.0), 2.0 * rows - 0.5 * cols + 1.0], axis=-1)[None].astype("float32")
    up = keras.layers.Conv2DTranspose(2, 2 * factor, strides=factor, padding="same", use_bias=False,
                                      kernel_initializer=BilinearUpsamplingInitializer())
    y = keras.ops.convert_to_numpy(up(x))[0]
    assert y.shape == (n * factor, n * factor, 2)
    inner = slice(factor, (n - 1) * factor)  # away from the zero-padded border
    np.testing.assert_allclose(y[inner, inner, 0], 3.0, rtol=1e-5)
    r = _half_pixel_ramp(n, factor, 2.0, 0.0)[:, None]
    c = _half_pixel_ramp(n, factor, -0.5, 1.0)[None, :]
    np.testing.assert_allclose(y[inner, inner, 1], (r + c)[inner, inner], rtol=1e-5, atol=1e-5)
    # ... which is tf.image.resize's bilinear interpolation there
    resized = tf.image.resize(x, (n * factor, n * factor), method="bilinear").numpy()[0]
    np.testing.assert_allclose(y[inner, inner], resized[inner, inner], rtol=1e-5, atol=1e-5)


def test_transposed_conv_3d_with_bilinear_init_is_trilinear_inside():
    n, factor = 4, 2
    d, h, w = np.meshgrid(*[np.arange(n)] * 3, indexing="ij")
    x = (1.0 * d + 2.0 * h - 3.0 * w)[None, ..., None].astype("float32")
    up = blocks.conv_transpose(3, 1, 4, 2)
    y = keras.ops.convert_to_numpy(up(x))[0, ..., 0]
    ramp = _half_pixel_ramp(n, factor, 1.0, 0.0)
    expected = ramp[:, None, None] + 2 * ramp[None, :, None] - 3 * ramp[None, None, :]
    inner = slice(factor, (n - 1) * factor)
    np.testing.assert_allclose(y[inner, inner, inner], expected[inner, inner, inner], atol=1e-5)


def test_linear_upsampling_2d_equals_tf_image_resize_everywhere():
    x = np.random.default_rng(2).normal(size=(2, 5, 7, 3)).astype("float32")
    for size in (2, 3, (2, 4)):
        factors = (size, size) if isinstance(size, int) else size
        got = keras.ops.convert_to_numpy(LinearUpsampling(size)(x))
        expected = tf.image.resize(x, (5 * factors[0], 7 * factors[1]), method="bilinear").numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _np_upsample_axis(x, axis, factor):
    n = x.shape[axis]
    src = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0, n - 1)
    return np.apply_along_axis(lambda v: np.interp(src, np.arange(n), v), axis, x)


def test_linear_upsampling_3d_is_separable_linear_interpolation_and_dynamic():
    x = np.random.default_rng(3).normal(size=(1, 3, 4, 5, 2)).astype("float32")
    expected = x
    for axis in (1, 2, 3):
        expected = _np_upsample_axis(expected, axis, 2)
    inputs = keras.Input((None, None, None, 2))
    model = keras.Model(inputs, LinearUpsampling(2)(inputs))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert model.output_shape == (None, None, None, None, 2)
    assert LinearUpsampling(2).compute_output_shape((None, 3, None, 5, 2)) == (None, 6, None, 10, 2)


def test_custom_layers_round_trip_through_keras_file(tmp_path):
    inputs = keras.Input((8, 8, 4))
    x = LocalResponseNormalization(depth_radius=1, alpha=0.5, name="lrn")(inputs)
    x = Scale(0.5, name="scale")(x)
    x = blocks.conv_transpose(2, 4, 4, 2, name="up")(x)
    x = blocks.upsample(2, 2, mode="linear", name="bilinear")(x)
    model = keras.Model(inputs, x)
    path = tmp_path / "layers.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("lrn").get_config()["alpha"] == 0.5
    data = np.random.default_rng(4).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_array_equal(model.predict(data, verbose=0), loaded.predict(data, verbose=0))

    inputs3 = keras.Input((4, 4, 4, 1))
    model3 = keras.Model(inputs3, LinearUpsampling((1, 2, 2), name="up3")(inputs3))
    model3.save(tmp_path / "up3.keras")
    loaded3 = keras.saving.load_model(tmp_path / "up3.keras")
    assert loaded3.get_layer("up3").size == (1, 2, 2)
    assert loaded3.output_shape == (None, 4, 8, 8, 1)


def test_conv_factory_dims_and_errors():
    x2, x3 = keras.Input((16, 16, 4)), keras.Input((8, 16, 16, 4))
    assert blocks.conv(2, 6, 3, strides=2)(x2).shape == (None, 8, 8, 6)
    assert blocks.conv(3, 6, 3, strides=2, use_bias=False)(x3).shape == (None, 4, 8, 8, 6)
    grouped = blocks.conv(2, 6, 3, groups=2)
    grouped(x2)
    assert grouped.kernel.shape == (3, 3, 2, 6)
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        blocks.conv(1, 4)


def test_norm_factory():
    assert isinstance(blocks.norm("batch"), keras.layers.BatchNormalization)
    assert blocks.norm("group", groups=4).groups == 4
    assert blocks.norm("instance").groups == -1
    assert isinstance(blocks.norm("layer"), keras.layers.LayerNormalization)
    assert isinstance(blocks.norm(None), keras.layers.Identity)
    with pytest.raises(ConfigError, match="batch, group, instance"):
        blocks.norm("weight")


def test_upsample_and_pool_factories():
    x2, x3 = keras.Input((8, 8, 3)), keras.Input((4, 8, 8, 3))
    assert blocks.upsample(2, 2)(x2).shape == (None, 16, 16, 3)
    assert blocks.upsample(3, 2, mode="linear")(x3).shape == (None, 8, 16, 16, 3)
    assert blocks.upsample(3, 2, mode="transpose", filters=5)(x3).shape == (None, 8, 16, 16, 5)
    assert blocks.max_pool(3, 2)(x3).shape == (None, 2, 4, 4, 3)
    with pytest.raises(ConfigError, match="filters"):
        blocks.upsample(2, 2, mode="transpose")
    with pytest.raises(ConfigError, match="nearest, linear, transpose"):
        blocks.upsample(2, 2, mode="cubic")


def test_scaled_filters():
    assert [blocks.scaled_filters(f, 0.125) for f in (64, 128, 256, 512)] == [8, 16, 32, 64]
    assert blocks.scaled_filters(96, 0.1, divisor=2) == 10
    assert blocks.scaled_filters(3, 0.01, divisor=2) == 2


def test_check_input_shape():
    assert blocks.check_input_shape((64, None, np.int64(3)), 2, 32, "m") == (64, None, 3)
    assert blocks.check_input_shape((None, None, None, 4), 3, 16, "m") == (None, None, None, 4)
    with pytest.raises(ConfigError, match=r"input size 100 .* not divisible by 32"):
        blocks.check_input_shape((100, 64, 1), 2, 32, "m")
    with pytest.raises(ConfigError, match="2 spatial sizes plus channels"):
        blocks.check_input_shape((64, 64), 2, 32, "m")
    with pytest.raises(ConfigError, match="channel count"):
        blocks.check_input_shape((64, 64, None), 2, 32, "m")
    with pytest.raises(ConfigError, match="must be a tuple"):
        blocks.check_input_shape(64, 2, 32, "m")
    with pytest.raises(ValueError, match="positive integers or None"):
        blocks.check_input_shape((64.0, 64, 1), 2, 32, "m")
