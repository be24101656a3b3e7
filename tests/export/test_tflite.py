"""TFLite export: the interpreter must reproduce the Keras model and the serving signature."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError, TfsegError
from tfseg.export import export_model
from tfseg.export.savedmodel import ServingSpec, serving_function
from tfseg.export.tflite import export_tflite, resolve_input_shape
from tfseg.models import fcn8s

if getattr(getattr(tf, "lite", None), "TFLiteConverter", None) is None:
    pytest.skip(f"TensorFlow {tf.__version__} has no tf.lite converter", allow_module_level=True)


def interpreter(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter warns that it moves to ai_edge_litert
        return tf.lite.Interpreter(model_path=str(path)).get_signature_runner("serving_default")


def conv_model(channels=1, classes=2):
    inputs = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2DTranspose(classes, 2, strides=2)(x)
    return keras.Model(inputs, keras.layers.Softmax()(x))


def test_fcn8s_with_preprocessing_matches_the_serving_function(tmp_path):
    keras.utils.set_random_seed(0)
    model = fcn8s((None, None, 1), 2, width=0.125, fc_units=16)
    spec = ServingSpec(image_size=None, stride=32, in_channels=1)
    path = export_tflite(model, tmp_path / "fcn.tflite", spec, input_shape=(1, 40, 50, 1))
    image = np.random.default_rng(0).normal(300, 80, (1, 40, 50, 1)).astype(np.float32)
    out = interpreter(path)(image=image)
    expected = serving_function(model, spec)(tf.constant(image))
    assert out["probabilities"].shape == (1, 40, 50, 2)
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"].numpy(), atol=1e-4)
    np.testing.assert_array_equal(out["labels"], expected["labels"].numpy())


def test_bare_model_and_shape_from_the_model(tmp_path):
    inputs = keras.Input((24, 20, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs))
    path = export_model(model, tmp_path / "bare.tflite", "tflite", include_preprocessing=False)
    image = np.random.default_rng(1).normal(size=(1, 24, 20, 1)).astype(np.float32)
    out = interpreter(path)(image=image)
    np.testing.assert_allclose(out["probabilities"], model(image).numpy(), atol=1e-4)


def test_3d_bare_model(tmp_path):
    inputs = keras.Input((None, None, None, 2))
    model = keras.Model(inputs, keras.layers.Conv3D(3, 3, padding="same", activation="softmax")(inputs))
    path = export_tflite(model, tmp_path / "vol.tflite", include_preprocessing=False, input_shape=(1, 6, 8, 10, 2))
    image = np.random.default_rng(2).normal(size=(1, 6, 8, 10, 2)).astype(np.float32)
    out = interpreter(path)(image=image)
    np.testing.assert_allclose(out["probabilities"], model(image).numpy(), atol=1e-4)
    np.testing.assert_array_equal(out["labels"], out["probabilities"].argmax(-1))


def test_resize_spec_is_refused_with_a_way_out_and_the_bare_model_works(tmp_path):
    model = conv_model()
    spec = ServingSpec(image_size=(16, 16), stride=2, normalization="minmax")
    with pytest.raises(TfsegError, match="ScaleAndTranslate.*include_preprocessing=False"):
        export_tflite(model, tmp_path / "resize.tflite", spec)
    assert not list(tmp_path.iterdir())
    path = export_tflite(model, tmp_path / "bare.tflite", spec, include_preprocessing=False,
                         input_shape=(1, 16, 16, 1))
    image = np.random.default_rng(3).random((1, 16, 16, 1)).astype(np.float32)
    out = interpreter(path)(image=image)
    np.testing.assert_allclose(out["probabilities"], model(image).numpy(), atol=1e-4)


def test_float16_quantization_is_smaller_and_close(tmp_path):
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)  # 37k weights: size dominated by them
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(x))
    spec = ServingSpec(stride=2)
    full = export_tflite(model, tmp_path / "full.tflite", spec, input_shape=(1, 16, 16, 1))
    half = export_tflite(model, tmp_path / "half.tflite", spec, input_shape=(1, 16, 16, 1), quantize="float16")
    assert half.stat().st_size < 0.75 * full.stat().st_size
    image = np.random.default_rng(4).normal(size=(1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(interpreter(half)(image=image)["probabilities"],
                               interpreter(full)(image=image)["probabilities"], atol=1e-2)


def test_shape_errors():
    model = conv_model()
    with pytest.raises(ConfigError, match="fixed input shape.*--input-shape"):
        resolve_input_shape(model, ServingSpec(), True)
    with pytest.raises(ConfigError, match="quantize"):
        export_tflite(model, "x.tflite", quantize="int4")
    with pytest.raises(ConfigError, match="does not fit the model"):
        export_tflite(model, "x.tflite", input_shape=(1, 16, 16, 3))
    with pytest.raises(ConfigError, match="at least 1"):
        resolve_input_shape(model, ServingSpec(), True, input_shape=(1, 0, 16, 1))


def test_cli_export_tflite_and_tensorrt_errors(tmp_path, capsys):
    from tfseg.cli import main
    from tfseg.export.tensorrt import detect_backend

    model = conv_model()
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "m.tflite"), "--format", "tflite",
                 "--stride", "2", "--input-shape", "1,12,8,1"]) == 0
    out = interpreter(tmp_path / "m.tflite")(image=np.ones((1, 12, 8, 1), np.float32))
    assert out["labels"].shape == (1, 12, 8)
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "x.tflite"), "--format", "tflite"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    if detect_backend()[0] is None:
        assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "m.engine"), "--format", "tensorrt",
                     "--input-shape", "1,64,64,1", "--precision", "fp16"]) == 2
        assert "no TensorRT backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "m.keras"), str(tmp_path / "y"), "--input-shape", "1,x,2,1"])
