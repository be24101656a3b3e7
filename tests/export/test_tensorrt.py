"""TensorRT export: shape profiles, the no-backend message, and a real engine where TensorRT exists."""
import importlib.util
import json

import keras
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError
from tfseg.export import export_model
from tfseg.export.savedmodel import ServingSpec
from tfseg.export.tensorrt import check_shape_profile, detect_backend, export_tensorrt


def conv_model(channels=1):
    inputs = keras.Input((None, None, channels))
    return keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", activation="softmax")(inputs))


def test_profile_fills_missing_shapes():
    assert check_shape_profile(None, (2, 64, 64, 1), None, rank=4, channels=1) == ((2, 64, 64, 1),) * 3
    assert check_shape_profile((1, 32, 32, 1), None, (4, 128, 128, 1), rank=4, channels=1) == (
        (1, 32, 32, 1), (4, 128, 128, 1), (4, 128, 128, 1))
    assert check_shape_profile([1, 8, 16, 16, 4], [1, 32, 64, 64, 4], [2, 64, 128, 128, 4], rank=5, channels=4)[2] \
        == (2, 64, 128, 128, 4)


@pytest.mark.parametrize("shapes, message", [
    ((None, None, None), "needs input shapes"),
    (((1, 64, 64),) * 3, "must have 4 dimensions"),
    (((1, 64, 64, 3),) * 3, "must end in the input's 1 channels"),
    (((1, 0, 64, 1),) * 3, "below 1"),
    (((1, 64, 64, 1), (1, 32, 32, 1), None), "min_shape <= opt_shape <= max_shape"),
    ((None, (1, 64, 64, 1), (1, 64, 32, 1)), "min_shape <= opt_shape <= max_shape"),
    ((None, "abc", None), "sequence of integers"),
])
def test_profile_errors(shapes, message):
    with pytest.raises(ConfigError, match=message):
        check_shape_profile(*shapes, rank=4, channels=1)


def test_bad_precision_and_missing_shapes_are_found_before_any_work(tmp_path):
    model = conv_model()
    with pytest.raises(ConfigError, match="precision must be one of"):
        export_tensorrt(model, tmp_path / "m.engine", precision="int8")
    with pytest.raises(ConfigError, match="--input-shape 1,256,256,1"):
        export_tensorrt(model, tmp_path / "m.engine")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(detect_backend()[0] is not None, reason="a TensorRT backend is installed here")
def test_without_a_backend_the_error_says_what_to_install(tmp_path):
    spec = ServingSpec(image_size=(32, 32), stride=2)  # the profile comes from the spec
    with pytest.raises(ConfigError) as caught:
        export_model(conv_model(), tmp_path / "m.engine", "tensorrt", spec, precision="fp16")
    message = str(caught.value)
    assert f"Found TensorFlow {tf.__version__}" in message
    assert "TensorFlow <= 2.17" in message and "pip install tensorrt" in message and "tfseg[onnx]" in message
    assert not list(tmp_path.iterdir())


def test_detect_backend_reports_why():
    backend, details = detect_backend()
    assert backend in ("tf-trt", "tensorrt", None) and details
    if backend is None:
        assert "tensorrt package is not importable" in details


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or detect_backend()[0] != "tensorrt"
                    or importlib.util.find_spec("tf2onnx") is None,
                    reason="needs the tensorrt Python package, tf2onnx and a GPU")
def test_real_engine_runs_and_matches_keras(tmp_path):
    import tensorrt as trt

    model = conv_model()
    path = export_tensorrt(model, tmp_path / "m.engine", include_preprocessing=False, precision="fp32",
                           min_shape=(1, 16, 16, 1), opt_shape=(2, 32, 32, 1), max_shape=(4, 64, 64, 1))
    metadata = json.loads((tmp_path / "m.engine.json").read_text())
    assert metadata["profile"]["opt"] == [2, 32, 32, 1] and metadata["precision"] == "fp32"
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    assert names == {"image", "probabilities", "labels"}
    low, opt, high = (tuple(shape) for shape in engine.get_tensor_profile_shape("image", 0))
    assert (low, opt, high) == ((1, 16, 16, 1), (2, 32, 32, 1), (4, 64, 64, 1))
