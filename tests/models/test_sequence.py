"""Tests of the slice-sequence classifier (CNN per slice + BiLSTM + linear head)."""
import numpy as np
import pytest

from tfseg.errors import ConfigError
from tfseg.models import build_model, set_encoder_trainable
from tfseg.models.sequence import application_names, probability_model, slice_sequence_classifier

TINY = dict(backbone="small_cnn", backbone_filters=(4, 8), lstm_units=3)


def test_shapes_and_head_sees_every_time_step():
    model = slice_sequence_classifier((5, 32, 32, 3), **TINY)
    assert model.output_shape == (None, 1)
    assert model.get_layer("bilstm").output.shape == (None, 5, 6)
    assert model.get_layer("head").kernel.shape == (5 * 6, 1)
    out = model(np.random.default_rng(0).normal(size=(2, 5, 32, 32, 3)).astype("float32"))
    assert out.shape == (2, 1)


def test_backbone_is_shared_across_slices():
    model = slice_sequence_classifier((3, 16, 16, 3), **TINY)
    # one backbone: its weights exist once, whatever the chunk length
    longer = slice_sequence_classifier((9, 16, 16, 3), **TINY)
    cnn = model.get_layer("encoder_slices").layer
    assert cnn.count_params() == longer.get_layer("encoder_slices").layer.count_params()
    x = np.random.default_rng(1).normal(size=(1, 3, 16, 16, 3)).astype("float32")
    per_slice = model.get_layer("encoder_slices")(x).numpy()
    np.testing.assert_allclose(per_slice[0, 1], cnn(x[:, 1]).numpy()[0], rtol=1e-5, atol=1e-6)


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    import keras

    model = slice_sequence_classifier((4, 32, 32, 3), dropout=0.2, **TINY)
    x = np.random.default_rng(2).normal(size=(2, 4, 32, 32, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_freeze_and_unfreeze_backbone(tmp_path):
    model = slice_sequence_classifier((2, 16, 16, 3), encoder_freeze=True, **TINY)
    frozen = len(model.trainable_weights)
    assert set_encoder_trainable(model, True) == 1
    assert len(model.trainable_weights) > frozen
    # only the LSTM and head train while frozen: 2 directions x 3 LSTM weights + head kernel/bias
    assert frozen == 8


def test_registry_and_tfseg_encoder_backbone():
    model = build_model({"name": "slice_sequence_classifier", "input_shape": (2, 32, 32, 3),
                         "backbone": "resnet18", "lstm_units": 2})
    assert model.output_shape == (None, 1)
    assert model.get_layer("encoder_slices").layer.output_shape == (None, 512)


def test_keras_application_backbone_by_any_spelling():
    assert application_names()["resnet50v2"] == "ResNet50V2"
    model = slice_sequence_classifier((2, 32, 32, 3), backbone="MobileNetV3Small", lstm_units=2)
    assert model.output_shape == (None, 1)


def test_probability_model_is_sigmoid_of_logits():
    model = slice_sequence_classifier((2, 16, 16, 3), **TINY)
    x = np.random.default_rng(3).normal(size=(3, 2, 16, 16, 3)).astype("float32")
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(probability_model(model).predict(x, verbose=0), 1 / (1 + np.exp(-logits)),
                               rtol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(input_shape=(None, 16, 16, 3)), dict(backbone="nfnet_l0"),
                                    dict(lstm_units=0), dict(backbone="resnet18", weights="imagenet")])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        slice_sequence_classifier(**{"input_shape": (2, 32, 32, 3), **kwargs})
