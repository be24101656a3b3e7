"""FCN-8s and FCN-AlexNet: shapes, serialization, parameter counts and pretrained-weight loading."""
import logging

import keras
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.models import fcn8s, fcn_alexnet
from tfseg.models import weights as weights_lib
from tfseg.models.layers import bilinear_kernel_1d

TINY = {"width": 0.125, "fc_units": 16}
# Encoder filter counts at width 0.125, worked out by hand from VGG16 (64 128 256 512 512) and
# AlexNet (96 256 384 384 256).
VGG_TINY = (8, 16, 32, 64, 64)
VGG_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
ALEX_TINY = (12, 32, 48, 48, 32)


def randomize(model, seed=0):
    """Give every weight random values (the score layers start at zero, which would hide differences)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.1, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def images(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
@pytest.mark.parametrize("input_shape", [(32, 32, 3), (64, 96, 1), (96, 32, 2)])
def test_output_has_input_size(builder, input_shape):
    model = builder(input_shape, num_classes=3, **TINY)
    assert model.output_shape == (None, *input_shape[:2], 3)
    assert model.predict(images((1, *input_shape)), verbose=0).shape == (1, *input_shape[:2], 3)


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
def test_any_size_at_run_time(builder):
    model = builder((None, None, 1), num_classes=2, **TINY)
    assert model.output_shape == (None, None, None, 2)
    for height, width in ((32, 64), (96, 32)):
        out = model(images((2, height, width, 1)), training=False)
        assert tuple(out.shape) == (2, height, width, 2)


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
@pytest.mark.parametrize("bad", [(100, 64, 1), (64, 48, 3), (None, 33, 1)])
def test_size_not_divisible_by_32_is_rejected(builder, bad):
    size = next(s for s in bad[:2] if s is not None and s % 32)
    with pytest.raises(ValueError, match=rf"input size {size} .*not divisible by 32"):
        builder(bad, **TINY)


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
def test_output_activations(builder):
    x = images((2, 64, 64, 1))
    soft = randomize(builder((64, 64, 1), num_classes=4, **TINY))
    assert soft.layers[-1].name == "probabilities"
    p = soft.predict(x, verbose=0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-5)
    assert p.std() > 1e-3  # not the uniform output of zero score layers

    sig = randomize(builder((64, 64, 1), num_classes=1, output_activation="sigmoid", **TINY))
    p = sig.predict(x, verbose=0)
    assert p.shape == (2, 64, 64, 1) and p.min() > 0 and p.max() < 1

    logits = randomize(builder((64, 64, 1), num_classes=3, output_activation=None, **TINY))
    assert logits.layers[-1].name == "logits"
    z = logits.predict(x, verbose=0)
    assert z.min() < 0 < z.max()

    # Same weights, with and without softmax: softmax(logits) == probabilities
    probs = builder((64, 64, 1), num_classes=3, **TINY)
    probs.set_weights(logits.get_weights())
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(probs.predict(x, verbose=0), e / e.sum(axis=-1, keepdims=True), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
def test_untrained_model_predicts_uniform_and_upsamplers_start_bilinear(builder):
    model = builder((64, 64, 1), num_classes=3, **TINY)
    np.testing.assert_allclose(model.predict(images((1, 64, 64, 1)), verbose=0), 1 / 3, rtol=1e-6)
    final = model.get_layer("upscore8" if builder is fcn8s else "upscore")
    kernel = keras.ops.convert_to_numpy(final.kernel)
    filt = bilinear_kernel_1d(kernel.shape[0])
    np.testing.assert_allclose(kernel[:, :, 1, 1], np.outer(filt, filt), rtol=1e-6)
    assert not final.use_bias


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 1}, "softmax over num_classes=1"),
    ({"fc_units": 0}, "fc_units"),
    ({"width": 0}, "width"),
    ({"dropout": 1.0}, "dropout"),
    ({"output_activation": "relu"}, "output_activation"),
    ({"weights": 3}, "weights must be None, 'imagenet' or a path"),
])
@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
def test_bad_arguments(builder, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        builder((32, 32, 1), **{**TINY, **kwargs})


def conv_params(kernel, cin, cout, groups=1):
    return kernel * kernel * (cin // groups) * cout + cout


def test_fcn8s_trainable_weight_count():
    channels, fc, k = 1, TINY["fc_units"], 3
    expected, cin = 0, channels
    for filters, convs in zip(VGG_TINY, VGG_CONVS_PER_BLOCK):
        for _ in range(convs):
            expected += conv_params(3, cin, filters)
            cin = filters
    expected += conv_params(7, cin, fc) + conv_params(1, fc, fc) + conv_params(1, fc, k)  # fc6, fc7, score_fr
    expected += conv_params(1, VGG_TINY[3], k) + conv_params(1, VGG_TINY[2], k)  # score_pool4, score_pool3
    expected += 4 * 4 * k * k * 2 + 16 * 16 * k * k  # upscore2, upscore_pool4, upscore8 (no bias)
    for scale_skips in (False, True):  # the skip scaling is fixed, not learned
        model = fcn8s((64, 64, channels), num_classes=k, scale_skips=scale_skips, **TINY)
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_fcn_alexnet_trainable_weight_count():
    channels, fc, k = 3, TINY["fc_units"], 2
    c1, c2, c3, c4, c5 = ALEX_TINY
    expected = (conv_params(11, channels, c1) + conv_params(5, c1, c2, groups=2) + conv_params(3, c2, c3)
                + conv_params(3, c3, c4, groups=2) + conv_params(3, c4, c5, groups=2)
                + conv_params(6, c5, fc) + conv_params(1, fc, fc) + conv_params(1, fc, k)
                + 64 * 64 * k * k)  # upscore, no bias; LRN and pooling have no weights
    model = fcn_alexnet((64, 64, channels), num_classes=k, **TINY)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_fcn8s_scale_skips_scales_pool_features():
    plain = randomize(fcn8s((64, 64, 1), num_classes=2, **TINY))
    scaled = fcn8s((64, 64, 1), num_classes=2, scale_skips=True, **TINY)
    scaled.set_weights(plain.get_weights())
    assert scaled.get_layer("scale_pool4").factor == 0.01
    assert scaled.get_layer("scale_pool3").factor == 0.0001
    x = images((1, 64, 64, 1))
    assert not np.allclose(plain.predict(x, verbose=0), scaled.predict(x, verbose=0))


@pytest.mark.parametrize("builder, kwargs", [(fcn8s, {"scale_skips": True}), (fcn_alexnet, {})])
def test_keras_file_round_trip_gives_identical_outputs(tmp_path, builder, kwargs):
    model = randomize(builder((None, None, 1), num_classes=3, **TINY, **kwargs))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images((2, 64, 32, 1))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
def test_weights_h5_file_from_same_builder(tmp_path, builder):
    source = randomize(builder((64, 64, 1), num_classes=2, **TINY))
    path = tmp_path / "source.weights.h5"
    source.save_weights(path)
    target = builder((64, 64, 1), num_classes=2, weights=str(path), **TINY)
    x = images((1, 64, 64, 1))
    np.testing.assert_array_equal(source.predict(x, verbose=0), target.predict(x, verbose=0))
    with pytest.raises(DataError, match=r"source\.weights\.h5.*does not match"):
        builder((64, 64, 1), num_classes=2, weights=path, width=0.25, fc_units=16)


def test_keras_file_transfers_by_name_when_classes_change(tmp_path, caplog):
    source = randomize(fcn8s((64, 64, 1), num_classes=5, **TINY))
    path = tmp_path / "five_classes.keras"
    source.save(path)
    with caplog.at_level(logging.INFO, logger="tfseg.models.weights"):
        target = fcn8s((64, 64, 1), num_classes=2, weights=path, **TINY)
    for name in ("block1_conv1", "block5_conv3", "fc6", "fc7"):
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.any(keras.ops.convert_to_numpy(target.get_layer("score_fr").kernel))  # still zero-initialized
    log = caplog.text
    assert "score_fr" in log and "five_classes.keras" in log and "kept initial weights" in log


@pytest.mark.parametrize("builder", [fcn8s, fcn_alexnet])
def test_missing_or_unknown_weights_file(tmp_path, builder):
    missing = tmp_path / "pretrained" / "fcn.keras"
    with pytest.raises(DataError, match=r"pretrained.fcn\.keras: weights file does not exist"):
        builder((64, 64, 1), weights=str(missing), **TINY)
    odd = tmp_path / "weights.caffemodel"
    odd.write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match=r"weights\.caffemodel: unknown weights format"):
        builder((64, 64, 1), weights=odd, **TINY)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"broken\.keras: cannot load"):
        builder((64, 64, 1), weights=broken, **TINY)


# ImageNet VGG16 without network: a random VGG16 saved in the legacy .h5 layout of the
# keras.applications file stands in for the download.

@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(7)
    vgg.set_weights([rng.normal(size=w.shape).astype("float32") for w in vgg.get_weights()])
    path = tmp_path_factory.mktemp("keras_models") / weights_lib.VGG16_NOTOP_FILE
    vgg.save(path)  # legacy HDF5, like the file keras.applications downloads
    return str(path), {layer.name: layer.get_weights() for layer in vgg.layers if layer.weights}


@pytest.fixture
def fake_download(monkeypatch, vgg16_file):
    calls = []

    def get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return vgg16_file[0]

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return calls


VGG_CONV_NAMES = [f"block{b}_conv{i}" for b, n in enumerate(VGG_CONVS_PER_BLOCK, start=1) for i in range(1, n + 1)]


def test_fcn8s_imagenet_loads_vgg16_encoder(fake_download, vgg16_file):
    model = fcn8s((32, 32, 3), num_classes=2, weights="imagenet", fc_units=8)
    (fname, origin, kwargs), = fake_download
    assert fname == weights_lib.VGG16_NOTOP_FILE and origin.endswith(fname)
    assert kwargs["file_hash"] == weights_lib.VGG16_NOTOP_HASH
    reference = vgg16_file[1]
    assert sorted(reference) == sorted(VGG_CONV_NAMES)
    for name in VGG_CONV_NAMES:
        for a, b in zip(reference[name], model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_fcn8s_imagenet_grayscale_sums_first_kernel(fake_download, vgg16_file):
    model = fcn8s((32, 32, 1), num_classes=2, weights="imagenet", fc_units=8)
    kernel, bias = model.get_layer("block1_conv1").get_weights()
    rgb_kernel, rgb_bias = vgg16_file[1]["block1_conv1"]
    assert kernel.shape == (3, 3, 1, 64)
    np.testing.assert_allclose(kernel[:, :, 0, :], rgb_kernel.sum(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(bias, rgb_bias)
    # A gray image gives the same first-layer response as that image copied to three channels.
    gray = images((1, 32, 32, 1))
    gray_model = keras.Model(model.inputs, model.get_layer("block1_conv1").output)
    rgb = keras.applications.VGG16(include_top=False, weights=vgg16_file[0], input_shape=(32, 32, 3))
    rgb_model = keras.Model(rgb.inputs, rgb.get_layer("block1_conv1").output)
    np.testing.assert_allclose(gray_model.predict(gray, verbose=0), rgb_model.predict(np.repeat(gray, 3, -1), verbose=0),
                               rtol=1e-4, atol=1e-4)
    # the second layer is copied unchanged
    np.testing.assert_array_equal(model.get_layer("block1_conv2").get_weights()[0], vgg16_file[1]["block1_conv2"][0])


def test_fcn8s_legacy_h5_path_is_copied_by_name(vgg16_file):
    model = fcn8s((32, 32, 1), num_classes=2, weights=vgg16_file[0], fc_units=8)
    np.testing.assert_array_equal(model.get_layer("block4_conv2").get_weights()[0], vgg16_file[1]["block4_conv2"][0])


def test_fcn8s_imagenet_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"weights='imagenet' needs width=1\.0"):
        fcn8s((32, 32, 3), weights="imagenet", width=0.5)

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError, match="could not fetch the ImageNet VGG16 weights.*~/.keras/models"):
        fcn8s((32, 32, 3), weights="imagenet", fc_units=8)


# Caffe-converted AlexNet weights (.npz of plain arrays), with shapes scaled to a tiny network.

def alexnet_caffe_dict(in_channels=3, fc=TINY["fc_units"], seed=5):
    """Arrays in the layout of bvlc_alexnet.npy: conv W (kh, kw, in/groups, out), fc W (inputs, out)."""
    rng = np.random.default_rng(seed)
    c1, c2, c3, c4, c5 = ALEX_TINY
    shapes = {"conv1": (11, 11, in_channels, c1), "conv2": (5, 5, c1 // 2, c2), "conv3": (3, 3, c2, c3),
              "conv4": (3, 3, c3 // 2, c4), "conv5": (3, 3, c4 // 2, c5), "fc6": (6 * 6 * c5, fc),
              "fc7": (fc, fc), "fc8": (fc, 1000)}
    return {name: [rng.normal(size=shape).astype("float32"), rng.normal(size=shape[-1]).astype("float32")]
            for name, shape in shapes.items()}


def save_npz(path, params):
    return str(weights_lib.save_caffe_npz(str(path), params))


@pytest.mark.parametrize("channels", [3, 1])
def test_fcn_alexnet_loads_caffe_npy(tmp_path, channels):
    params = alexnet_caffe_dict()
    path = save_npz(tmp_path / "bvlc_alexnet.npz", params)
    model = fcn_alexnet((64, 64, channels), num_classes=2, weights=path, **TINY)
    for name in ("conv2", "conv3", "conv4", "conv5", "fc7"):
        kernel, bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel.reshape(params[name][0].shape), params[name][0])
        np.testing.assert_array_equal(bias, params[name][1])
    fc6 = model.get_layer("fc6").get_weights()[0]
    assert fc6.shape == (6, 6, ALEX_TINY[4], TINY["fc_units"])
    # row (h * 6 + w) * C + c of the flattened (h, w, c) pool5 feeds kernel[h, w, c]
    h, w, c = 4, 1, 7
    np.testing.assert_array_equal(fc6[h, w, c], params["fc6"][0][(h * 6 + w) * ALEX_TINY[4] + c])
    conv1 = model.get_layer("conv1").get_weights()[0]
    expected = params["conv1"][0] if channels == 3 else params["conv1"][0].sum(axis=2, keepdims=True)
    np.testing.assert_allclose(conv1, expected, rtol=1e-6)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("score_fr").kernel))  # fc8 is not used


def test_fcn_alexnet_npy_as_dict_of_weights_and_biases(tmp_path):
    params = alexnet_caffe_dict()
    path = save_npz(tmp_path / "caffe_tf.npz", {k: {"weights": w, "biases": b} for k, (w, b) in params.items()})
    model = fcn_alexnet((64, 64, 3), weights=path, **TINY)
    np.testing.assert_array_equal(model.get_layer("conv3").get_weights()[0], params["conv3"][0])


def test_fcn_alexnet_npy_mismatch_names_file_layer_and_shapes(tmp_path):
    params = alexnet_caffe_dict()
    params["conv3"][0] = params["conv3"][0][:, :, :, :40]
    path = save_npz(tmp_path / "bvlc_alexnet.npz", params)
    c2, c3 = ALEX_TINY[1], ALEX_TINY[2]
    with pytest.raises(DataError, match=rf"bvlc_alexnet\.npz: layer 'conv3'.*file shape \(3, 3, {c2}, 40\), "
                                        rf"model shape \(3, 3, {c2}, {c3}\)"):
        fcn_alexnet((64, 64, 3), weights=path, **TINY)
    # a file for wider fully connected layers does not fit
    path = save_npz(tmp_path / "wide_fc.npz", alexnet_caffe_dict(fc=32))
    with pytest.raises(DataError, match=rf"wide_fc\.npz: layer 'fc6'.*file shape \({6 * 6 * ALEX_TINY[4]}, 32\)"):
        fcn_alexnet((64, 64, 3), weights=path, **TINY)


def test_fcn_alexnet_npy_missing_layer_or_not_a_dict(tmp_path):
    params = alexnet_caffe_dict()
    del params["conv4"]
    path = save_npz(tmp_path / "partial.npz", params)
    with pytest.raises(DataError, match=r"partial\.npz: has no weights for layer 'conv4'"):
        fcn_alexnet((64, 64, 3), weights=path, **TINY)
    np.save(tmp_path / "array.npy", np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"array\.npy: holds one float64 array of shape \(3, 3\), not a dict"):
        fcn_alexnet((64, 64, 3), weights=tmp_path / "array.npy", **TINY)
    np.savez(tmp_path / "odd.npz", conv1=np.zeros(3))
    with pytest.raises(DataError, match=r"odd\.npz: key 'conv1' is not '<layer>/0'"):
        fcn_alexnet((64, 64, 3), weights=tmp_path / "odd.npz", **TINY)
    with pytest.raises(DataError, match=r"does not load Caffe weights"):
        fcn8s((64, 64, 3), weights=save_npz(tmp_path / "alex.npz", alexnet_caffe_dict()), **TINY)


def test_fcn_alexnet_imagenet_is_a_config_error():
    with pytest.raises(ConfigError, match="no AlexNet.*bvlc_alexnet.npz"):
        fcn_alexnet((64, 64, 3), weights="imagenet", **TINY)


def test_pathlike_weights_are_accepted(tmp_path):
    save_npz(tmp_path / "bvlc_alexnet.npz", alexnet_caffe_dict())
    model = fcn_alexnet((64, 64, 3), weights=tmp_path / "bvlc_alexnet.npz", **TINY)
    assert model.get_layer("conv1").get_weights()[0].shape == (11, 11, 3, ALEX_TINY[0])


def test_canonical_alexnet_layers_have_the_bvlc_alexnet_shapes():
    # width=1 convolutions (fc_units kept small to stay light) laid out as in bvlc_alexnet.npy
    model = fcn_alexnet((64, 64, 3), fc_units=8)
    bvlc = {"conv1": (11, 11, 3, 96), "conv2": (5, 5, 48, 256), "conv3": (3, 3, 256, 384),
            "conv4": (3, 3, 192, 384), "conv5": (3, 3, 192, 256)}
    for name, shape in bvlc.items():
        assert tuple(model.get_layer(name).kernel.shape) == shape
    assert int(np.prod(model.get_layer("fc6").kernel.shape[:3])) == 9216  # fc6 W is (9216, 4096) in the file
