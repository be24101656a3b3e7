"""U-Net and UNet++ on ResNet18/34/50 and DenseNet121 encoders: shapes, parameter counts, serialization,
encoder freezing and ImageNet loading without network (a random keras.applications model stands in
for the downloaded file)."""
import keras
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.models import build_model, list_models, set_encoder_trainable, unet, unet_plus_plus
from tfseg.models.unet import APPLICATION_ENCODERS, resnet_basic_encoder

SMALL = (16, 16, 8, 8, 4)  # decoder filters, from stride 16 to full resolution


def images(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def encoder_count(model):
    return sum(count(layer.trainable_weights) for layer in model.layers if layer.name.startswith("encoder_"))


def randomize(model, seed=0):
    """Random values in every weight (positive ones in the batch-norm variances)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.uniform(0.5, 1.5, w.shape) if "moving_variance" in w.path else rng.normal(0, 0.1, w.shape)
        w.assign(value.astype("float32"))
    return model


@pytest.mark.parametrize("encoder, channels", [("resnet18", 1), ("resnet34", 3)])
def test_resnet_basic_encoder_strides_and_torchvision_parameter_count(encoder, channels):
    inputs = keras.Input((64, 64, channels))
    features = resnet_basic_encoder(inputs, encoder)
    assert [tuple(f.shape[1:]) for f in features] == [(32, 32, 64), (16, 16, 64), (8, 8, 128), (4, 4, 256),
                                                      (2, 2, 512)]
    # torchvision resnet18 / resnet34 have 11,689,512 / 21,797,672 parameters, of which the
    # 1000-class fc layer holds 512 * 1000 + 1000; the first conv has 7 * 7 * 64 per input channel.
    torchvision = {"resnet18": 11_689_512, "resnet34": 21_797_672}[encoder] - 513_000
    expected = torchvision - 7 * 7 * 64 * (3 - channels)
    assert count(keras.Model(inputs, features[-1]).trainable_weights) == expected


def test_unet_resnet18_shapes_any_size_and_decoder_layout():
    model = unet((None, None, 1), num_classes=3, encoder="resnet18", decoder_filters=SMALL)
    assert model.name == "unet_resnet18" and model.output_shape == (None, None, None, 3)
    out = model(images((2, 64, 96, 1)), training=False)
    assert tuple(out.shape) == (2, 64, 96, 3)
    assert model.get_layer("probabilities").dtype_policy.compute_dtype == "float32"
    # four blocks with a skip (strides 16, 8, 4, 2), a last one without
    for block in range(4):
        assert len(model.get_layer(f"decoder_block{block}_concat").input) == 2
    assert model.get_layer("decoder_block4_unit2_relu").output.shape[-1] == SMALL[-1]
    names = {layer.name for layer in model.layers}
    assert "decoder_block4_concat" not in names


@pytest.mark.parametrize("encoder, expected_skips", [
    ("resnet50", ((32, 32, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024), (2, 2, 2048))),
    ("densenet121", ((32, 32, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024), (2, 2, 1024))),
])
def test_application_encoders_skips_and_output(encoder, expected_skips):
    builder = unet if encoder == "resnet50" else unet_plus_plus
    model = builder((64, 64, 1), num_classes=2, encoder=encoder, decoder_filters=SMALL)
    skips = [model.get_layer("encoder_" + name).output.shape[1:] for name in APPLICATION_ENCODERS[encoder].skips]
    assert [tuple(s) for s in skips] == list(expected_skips)
    assert model.output_shape == (None, 64, 64, 2)
    # the encoder's layers are part of the model (renamed), not a nested model
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert all(layer.name.startswith(("encoder_", "decoder_", "head", "probabilities", "image"))
               for layer in model.layers)


def test_unet_plus_plus_nested_skips():
    model = unet_plus_plus((64, 64, 3), num_classes=2, encoder="resnet18", decoder_filters=SMALL)
    assert model.name == "unet_plus_plus_resnet18" and model.output_shape == (None, 64, 64, 2)
    nodes = {(i, j) for i in range(4) for j in range(1, 5) if i + j <= 4}
    assert len(nodes) == 10
    for i, j in nodes:
        # X(i, j): upsampled X(i + 1, j - 1) and the j nodes X(i, 0..j-1), at stride 2**(i + 1)
        assert len(model.get_layer(f"decoder_x{i}_{j}_concat").input) == j + 1
        out = model.get_layer(f"decoder_x{i}_{j}_unit2_relu").output
        assert tuple(out.shape[1:]) == (32 // 2**i, 32 // 2**i, SMALL[3 - i])
    assert model.get_layer("decoder_final_unit2_relu").output.shape[1:] == (64, 64, SMALL[-1])


@pytest.mark.parametrize("builder", [unet, unet_plus_plus])
def test_keras_round_trip_identical_outputs_and_frozen_encoder(tmp_path, builder):
    model = builder((None, None, 2), num_classes=2, encoder="resnet18", decoder_filters=SMALL, encoder_freeze=True)
    randomize(model)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images((2, 64, 32, 2))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert count(loaded.trainable_weights) == count(model.trainable_weights)
    assert set_encoder_trainable(loaded, True) > 0
    assert count(loaded.trainable_weights) == count(model.trainable_weights) + encoder_count(loaded)


def test_keras_round_trip_densenet121_unet_plus_plus(tmp_path):
    # the W5 model: keras.applications layers cloned under encoder_ names must serialize too
    model = unet_plus_plus((64, 64, 3), encoder="densenet121", decoder_filters=SMALL, encoder_freeze=True)
    path = tmp_path / "unetpp.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images((1, 64, 64, 3))
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert encoder_count(loaded) == 0 and count(loaded.trainable_weights) == count(model.trainable_weights)


def test_encoder_freeze_and_set_encoder_trainable_counts():
    model = unet((64, 64, 3), encoder="resnet18", decoder_filters=SMALL)
    total, encoder = count(model.trainable_weights), encoder_count(model)
    assert encoder == 11_176_512  # torchvision resnet18 without fc
    frozen = unet((64, 64, 3), encoder="resnet18", decoder_filters=SMALL, encoder_freeze=True)
    assert count(frozen.trainable_weights) == total - encoder
    set_encoder_trainable(frozen, True)
    assert count(frozen.trainable_weights) == total
    set_encoder_trainable(frozen, False)
    assert count(frozen.trainable_weights) == total - encoder
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ConfigError, match="no encoder layers"):
        set_encoder_trainable(plain, False)


def test_keras_file_transfers_encoder_when_classes_change(tmp_path):
    source = randomize(unet((64, 64, 1), num_classes=3, encoder="resnet18", decoder_filters=SMALL))
    path = tmp_path / "three_classes.keras"
    source.save(path)
    target = unet((64, 64, 1), num_classes=1, encoder="resnet18", decoder_filters=SMALL, weights=path)
    for name in ("encoder_conv1", "encoder_layer4_1_bn2", "decoder_block0_unit1_conv"):
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert target.get_layer("head").kernel.shape == (1, 1, SMALL[-1], 1)


# ImageNet weights without network: a randomly initialized keras.applications model, saved as a
# legacy .h5 file like the one keras.applications downloads, is returned by a fake get_file.

@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_models")
    files = {}
    for seed, (encoder, spec) in enumerate(APPLICATION_ENCODERS.items()):
        source = getattr(keras.applications, spec.builder)(include_top=False, weights=None, input_shape=(32, 32, 3))
        rng = np.random.default_rng(seed)
        for w in source.weights:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        path = folder / spec.file
        source.save(path)
        files[encoder] = str(path), {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    return files


@pytest.fixture
def fake_download(monkeypatch, imagenet_files):
    calls = []
    by_file = {APPLICATION_ENCODERS[e].file: path for e, (path, _) in imagenet_files.items()}

    def get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return by_file[fname]

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return calls


def assert_encoder_loaded(model, reference, channels):
    for name, arrays in reference.items():
        loaded = model.get_layer("encoder_" + name).get_weights()
        if name == "conv1_conv" and channels == 1:
            np.testing.assert_allclose(loaded[0], arrays[0].sum(axis=2, keepdims=True), rtol=1e-6)
            loaded, arrays = loaded[1:], arrays[1:]
        for a, b in zip(arrays, loaded):
            np.testing.assert_array_equal(a, b)


def test_unet_resnet50_imagenet_gray_input(fake_download, imagenet_files):
    model = unet((64, 64, 1), encoder="resnet50", weights="imagenet", decoder_filters=SMALL)
    (fname, origin, kwargs), = fake_download
    spec = APPLICATION_ENCODERS["resnet50"]
    assert fname == spec.file and origin == spec.url and kwargs["file_hash"] == spec.hash
    reference = imagenet_files["resnet50"][1]
    assert model.get_layer("encoder_conv1_conv").kernel.shape == (7, 7, 1, 64)
    assert_encoder_loaded(model, reference, channels=1)


def test_unet_plus_plus_densenet121_imagenet_frozen(fake_download, imagenet_files):
    model = unet_plus_plus((64, 64, 3), encoder="densenet121", weights="imagenet", decoder_filters=SMALL,
                           encoder_freeze=True)
    assert fake_download[0][0] == APPLICATION_ENCODERS["densenet121"].file
    assert_encoder_loaded(model, imagenet_files["densenet121"][1], channels=3)
    assert not any(layer.trainable for layer in model.layers if layer.name.startswith("encoder_"))
    assert count(model.trainable_weights) > 0 and encoder_count(model) == 0


def test_imagenet_offline_is_a_data_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError, match=r"could not fetch the ImageNet DenseNet121 weights.*~/.keras/models"):
        unet_plus_plus((64, 64, 3), weights="imagenet", decoder_filters=SMALL)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34"])
@pytest.mark.parametrize("builder", [unet, unet_plus_plus])
def test_imagenet_for_resnet18_34_is_a_config_error(builder, encoder):
    with pytest.raises(ConfigError, match=rf"no ImageNet weights for {encoder}.*encoder='resnet50'"):
        builder((64, 64, 3), encoder=encoder, weights="imagenet", decoder_filters=SMALL)


@pytest.mark.parametrize("builder", [unet, unet_plus_plus])
@pytest.mark.parametrize("input_shape, size", [((100, 64, 3), 100), ((64, 48, 1), 48), ((None, 80, 3), 80)])
def test_bad_input_sizes_name_the_rule(builder, input_shape, size):
    with pytest.raises(ConfigError, match=rf"input size {size} .*not divisible by 32"):
        builder(input_shape, encoder="resnet18", decoder_filters=SMALL)


@pytest.mark.parametrize("kwargs, match", [
    ({"encoder": "vgg16"}, "encoder must be one of resnet18, resnet34, resnet50, densenet121"),
    ({"decoder_filters": (16, 8, 8, 4)}, "decoder_filters needs 5 entries"),
    ({"decoder_filters": (16, 8, 8, 4, 0)}, "decoder_filters must be a non-empty list of positive integers"),
    ({"num_classes": 1, "output_activation": "softmax"}, "softmax over num_classes=1"),
    ({"output_activation": "relu"}, "output_activation"),
    ({"weights": 1}, "weights must be None, 'imagenet' or a path"),
    ({"norm": "odd"}, "norm must be one of"),
])
@pytest.mark.parametrize("builder", [unet, unet_plus_plus])
def test_bad_arguments(builder, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        builder((64, 64, 3), **{"encoder": "resnet18", "decoder_filters": SMALL, **kwargs})


def test_registered_and_softmax_logits():
    assert {"unet", "unet_plus_plus", "resunet"} <= set(list_models())
    model = build_model({"name": "unet", "input_shape": (32, 32, 3), "encoder": "resnet18",
                         "decoder_filters": SMALL, "output_activation": "softmax"}, num_classes=3)
    np.testing.assert_allclose(model.predict(images((1, 32, 32, 3)), verbose=0).sum(-1), 1.0, rtol=1e-5)
    logits = build_model("unet_plus_plus", input_shape=(32, 32, 3), encoder="resnet18", decoder_filters=SMALL,
                         output_activation=None)
    assert logits.layers[-1].name == "logits"
