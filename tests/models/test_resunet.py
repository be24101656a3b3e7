"""ResUNet: shapes, parameter count by hand, serialization, weights files, encoder freezing, errors."""
import keras
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.models import build_model, list_models, resunet, set_encoder_trainable

TINY = {"filters": (4, 8), "bridge_filters": 16}


def randomize(model, seed=0):
    """Random values in every weight (positive ones in the batch-norm variances)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.uniform(0.5, 1.5, w.shape) if "moving_variance" in w.path else rng.normal(0, 0.2, w.shape)
        w.assign(value.astype("float32"))
    return model


def images(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("input_shape, num_classes, filters", [
    ((64, 64, 3), 1, (4, 8, 16, 32)), ((32, 64, 1), 3, (4, 8)), ((16, 16, 2), 2, (4,))])
def test_output_shape(input_shape, num_classes, filters):
    model = resunet(input_shape, num_classes=num_classes, filters=filters, bridge_filters=8)
    assert model.output_shape == (None, *input_shape[:2], num_classes)
    assert model.layers[-1].name == "probabilities" and model.layers[-1].dtype_policy.compute_dtype == "float32"
    p = model.predict(images((2, *input_shape)), verbose=0)
    assert p.shape == (2, *input_shape[:2], num_classes) and 0 <= p.min() and p.max() <= 1


def test_encoder_downsamples_and_bridge_is_coarsest():
    model = resunet((64, 64, 1), filters=(4, 8, 16), bridge_filters=32)
    assert model.get_layer("encoder_block0_add").output.shape == (None, 64, 64, 4)
    assert model.get_layer("encoder_block1_add").output.shape == (None, 32, 32, 8)
    assert model.get_layer("encoder_block2_add").output.shape == (None, 16, 16, 16)
    assert model.get_layer("bridge_add").output.shape == (None, 8, 8, 32)
    assert model.get_layer("decoder_block0_block_add").output.shape == (None, 64, 64, 4)
    # the first block reads the image directly (no pre-activation); the others start with norm-ReLU
    names = {layer.name for layer in model.layers}
    assert "encoder_block0_norm1" not in names and "encoder_block1_norm1" in names


def test_trainable_weight_count_by_hand():
    channels, k = 1, 2
    f0, f1, bridge = TINY["filters"][0], TINY["filters"][1], TINY["bridge_filters"]

    def block(cin, cout, preactivate=True):
        """(convolution weights, batch-norm channels) of [norm] conv3 norm conv3 + 1x1 shortcut + norm."""
        convs = 9 * cin * cout + 9 * cout * cout + cin * cout  # all bias-free: a norm or the residual sum follows
        return convs, (cin if preactivate else 0) + cout + cout

    blocks = [block(channels, f0, preactivate=False), block(f0, f1), block(f1, bridge),
              block(bridge + f1, f1), block(f1 + f0, f0)]  # decoder: upsampled + skip channels
    convs = sum(c for c, _ in blocks) + f0 * k + k  # + the 1x1 head with bias
    bn_channels = sum(n for _, n in blocks)
    model = resunet((32, 32, channels), num_classes=k, **TINY)
    # batch norm: trainable gamma and beta, non-trainable moving mean and variance, per channel
    assert count(model.trainable_weights) == convs + 2 * bn_channels
    assert count(model.non_trainable_weights) == 2 * bn_channels


def test_keras_round_trip_identical_outputs(tmp_path):
    model = randomize(resunet((None, None, 2), num_classes=2, output_activation="softmax", **TINY))
    path = tmp_path / "resunet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images((2, 32, 48, 2))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    np.testing.assert_allclose(loaded.predict(x, verbose=0).sum(-1), 1.0, rtol=1e-5)


def test_weights_file_and_logits(tmp_path):
    source = randomize(resunet((32, 32, 1), output_activation=None, **TINY))
    assert source.layers[-1].name == "logits"
    path = tmp_path / "resunet.weights.h5"
    source.save_weights(path)
    target = resunet((32, 32, 1), output_activation=None, weights=path, **TINY)
    x = images((1, 32, 32, 1))
    np.testing.assert_array_equal(source.predict(x, verbose=0), target.predict(x, verbose=0))
    with pytest.raises(DataError, match=r"resunet\.weights\.h5.*does not match"):
        resunet((32, 32, 1), weights=path, filters=(4, 16), bridge_filters=16)
    with pytest.raises(DataError, match=r"missing\.keras: weights file does not exist"):
        resunet((32, 32, 1), weights=tmp_path / "missing.keras", **TINY)


def test_encoder_freeze_and_set_encoder_trainable(tmp_path):
    model = resunet((32, 32, 1), **TINY)
    total = count(model.trainable_weights)
    frozen = resunet((32, 32, 1), encoder_freeze=True, **TINY)
    encoder = sum(count(layer.trainable_weights) for layer in model.layers if layer.name.startswith("encoder_"))
    assert 0 < encoder < total
    assert count(frozen.trainable_weights) == total - encoder
    path = tmp_path / "frozen.keras"
    frozen.save(path)
    loaded = keras.saving.load_model(path)
    assert count(loaded.trainable_weights) == total - encoder
    assert set_encoder_trainable(loaded, True) == sum(layer.name.startswith("encoder_") for layer in model.layers)
    assert count(loaded.trainable_weights) == total


def test_imagenet_is_a_config_error_pointing_to_unet():
    with pytest.raises(ConfigError, match=r"no ResUNet.*unet\(encoder='resnet50', weights='imagenet'\)"):
        resunet((32, 32, 3), weights="imagenet", **TINY)


@pytest.mark.parametrize("input_shape, filters, match", [
    ((36, 64, 3), (4, 8, 16), r"input size 36 .*not divisible by 8"),
    ((64, 24, 3), (4, 8, 16, 32), r"input size 24 .*multiple of 16"),
    ((64, 64), (4,), "channels last"),
])
def test_bad_input_sizes_name_the_rule(input_shape, filters, match):
    with pytest.raises(ConfigError, match=match):
        resunet(input_shape, filters=filters, bridge_filters=8)


@pytest.mark.parametrize("kwargs, match", [
    ({"filters": ()}, "filters must be a non-empty list"),
    ({"filters": (4, 0)}, "filters must be a non-empty list of positive integers"),
    ({"bridge_filters": 0}, "bridge_filters must be a positive integer"),
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 1, "output_activation": "softmax"}, "softmax over num_classes=1"),
    ({"output_activation": "tanh"}, "output_activation"),
    ({"norm": "weird"}, "norm must be one of"),
    ({"weights": 5}, "weights must be None, 'imagenet' or a path"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        resunet((32, 32, 1), **{**TINY, **kwargs})


def test_registered():
    assert "resunet" in list_models()
    model = build_model({"name": "resunet", "input_shape": (32, 32, 3), **TINY}, num_classes=2)
    assert model.output_shape == (None, 32, 32, 2) and model.name == "resunet"


def test_strided_pointwise_conv_equals_a_strided_1x1_convolution():
    from tfseg.models.blocks import strided_pointwise_conv

    x = np.random.default_rng(0).normal(size=(2, 9, 11, 3)).astype("float32")
    inputs = keras.Input((9, 11, 3))
    model = keras.Model(inputs, strided_pointwise_conv(inputs, 4, 2, name="shortcut"))
    reference = keras.layers.Conv2D(4, 1, strides=2, padding="same")
    reference.build((None, 9, 11, 3))
    reference.set_weights(model.get_layer("shortcut").get_weights())
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(reference(x)), atol=1e-6)


def test_training_a_narrow_resunet_at_64_pixels_does_not_crash():
    # A strided 1x1 convolution with 8 input channels at 64x64 corrupts the heap in TensorFlow's oneDNN
    # gradient kernel (the process dies); run in a child process so a regression fails this test only.
    import subprocess
    import sys

    script = ("import numpy as np, keras\n"
              "from tfseg.models import resunet\n"
              "m = resunet((64, 64, 3), 1, filters=(8, 16), bridge_filters=16)\n"
              "m.compile(keras.optimizers.Adam(1e-3), 'binary_crossentropy')\n"
              "x = np.random.rand(16, 64, 64, 3).astype('float32')\n"
              "y = (np.random.rand(16, 64, 64, 1) > 0.7).astype('float32')\n"
              "m.fit(x, y, batch_size=8, epochs=2, verbose=0)\n"
              "print('trained')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "trained" in result.stdout, result.stderr[-2000:]
