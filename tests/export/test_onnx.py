"""ONNX export: onnxruntime must reproduce the Keras model and the SavedModel signature."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tf2onnx", reason="ONNX export needs tfseg[onnx]")
ort = pytest.importorskip("onnxruntime", reason="running ONNX needs onnxruntime")
onnx = pytest.importorskip("onnx")

from tfseg.errors import ConfigError, DataError, TfsegError  # noqa: E402
from tfseg.export import export_model  # noqa: E402
from tfseg.export.onnx import export_onnx, read_onnx_metadata  # noqa: E402
from tfseg.export.savedmodel import ServingSpec, serving_function  # noqa: E402
from tfseg.models import fcn8s  # noqa: E402


def conv_model(channels=1, classes=3, activation="softmax"):
    inputs = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(classes, 1)(x)
    x = keras.layers.UpSampling2D(2)(x)
    return keras.Model(inputs, keras.layers.Activation(activation)(x))


def run(path, image):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": image})))


def images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(300, 80, shape).astype(np.float32) for shape in shapes]


@pytest.fixture(scope="module")
def fcn():
    keras.utils.set_random_seed(0)
    return fcn8s((None, None, 1), 2, width=0.125, fc_units=16)


def test_fcn8s_with_preprocessing_matches_the_serving_function(fcn, tmp_path):
    spec = ServingSpec(image_size=None, stride=32, in_channels=1, class_names=("background", "lv"))
    path = export_onnx(fcn, tmp_path / "fcn.onnx", spec)
    reference = serving_function(fcn, spec)
    for image in images([(1, 32, 32, 1), (3, 40, 50, 1), (2, 64, 33, 1)]):
        out = run(path, image)
        expected = reference(tf.constant(image))
        assert out["probabilities"].shape == image.shape[:3] + (2,)
        np.testing.assert_allclose(out["probabilities"], expected["probabilities"].numpy(), atol=1e-4)
        assert out["labels"].dtype == np.int32
        np.testing.assert_array_equal(out["labels"], out["probabilities"].argmax(-1))
    metadata = read_onnx_metadata(path)
    assert metadata["class_names"] == ["background", "lv"] and metadata["include_preprocessing"] is True
    assert metadata["normalization"] == "zscore" and metadata["stride"] == 32


def test_bare_model_matches_keras_and_axes_are_dynamic(fcn, tmp_path):
    path = export_model(fcn, tmp_path / "bare.onnx", "onnx", include_preprocessing=False, opset=17)
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 1]
    assert sorted(o.name for o in model.graph.output) == ["labels", "probabilities"]
    for image in images([(1, 32, 32, 1), (2, 64, 96, 1)], seed=1):
        image = image / 100.0
        out = run(path, image)
        np.testing.assert_allclose(out["probabilities"], fcn(image, training=False).numpy(), atol=1e-4)
    assert read_onnx_metadata(path)["include_preprocessing"] is False


def test_sigmoid_conv_model_with_gray_to_rgb(tmp_path):
    model = conv_model(channels=3, classes=2, activation="sigmoid")
    spec = ServingSpec(image_size=None, stride=2, in_channels=1, normalization="minmax", activation="sigmoid")
    path = export_onnx(model, tmp_path / "conv.onnx", spec)
    reference = serving_function(model, spec)
    for image in images([(2, 9, 14, 1), (1, 16, 16, 1)], seed=2):
        out = run(path, image)
        expected = reference(tf.constant(image))
        np.testing.assert_allclose(out["probabilities"], expected["probabilities"].numpy(), atol=1e-4)
        np.testing.assert_array_equal(out["labels"], expected["labels"].numpy())
        assert out["labels"].shape == image.shape[:3] + (2,)


def test_3d_conv_model_without_preprocessing(tmp_path):
    inputs = keras.Input((None, None, None, 2))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling3D(2)(x)
    x = keras.layers.UpSampling3D(2)(x)
    model = keras.Model(inputs, keras.layers.Conv3D(3, 1, activation="softmax")(x))
    path = export_onnx(model, tmp_path / "vol.onnx", include_preprocessing=False)
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "depth", "height", "width", 2]
    for shape in [(1, 8, 12, 16, 2), (2, 4, 6, 10, 2)]:
        image = np.random.default_rng(3).normal(size=shape).astype(np.float32)
        out = run(path, image)
        np.testing.assert_allclose(out["probabilities"], model(image).numpy(), atol=1e-4)
        np.testing.assert_array_equal(out["labels"], out["probabilities"].argmax(-1))
    # with the serving preprocessing (z-score over non-zero voxels, pad to the stride) it matches too
    from tfseg.export.savedmodel import ServingSpec, serving_function

    spec = ServingSpec(stride=2, in_channels=2, normalization="zscore_nonzero", activation="softmax")
    path = export_onnx(model, tmp_path / "vol_pre.onnx", spec=spec)
    image = np.random.default_rng(4).normal(100, 20, (1, 7, 9, 10, 2)).astype(np.float32)
    expected = serving_function(model, spec)(tf.constant(image))
    out = run(path, image)
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"].numpy(), atol=1e-4)


def test_antialiased_resize_is_refused_with_a_way_out(tmp_path):
    spec = ServingSpec(image_size=(16, 16), stride=2)
    with pytest.raises(TfsegError, match="ScaleAndTranslate.*include_preprocessing=False"):
        export_onnx(conv_model(), tmp_path / "resize.onnx", spec)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_bad_arguments_and_metadata_errors(tmp_path):
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(conv_model(), tmp_path / "a.onnx", opset=11)
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(conv_model(), tmp_path / "a", "caffe")
    with pytest.raises(ConfigError, match="does not take"):
        export_model(conv_model(), tmp_path / "a.onnx", "onnx", quantize="float16")
    with pytest.raises(DataError, match="file not found"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx at all" * 3)
    with pytest.raises(DataError, match="junk.onnx"):
        read_onnx_metadata(tmp_path / "junk.onnx")


def test_missing_tf2onnx_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(ConfigError, match=r'pip install "tfseg\[onnx\]"'):
        export_onnx(conv_model(), tmp_path / "a.onnx")


def test_metadata_is_json_in_metadata_props(tmp_path):
    path = export_onnx(conv_model(), tmp_path / "m.onnx", ServingSpec(stride=2, extra={"spacing": [1.5, 1.5]}))
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["tfseg"])["extra"] == {"spacing": [1.5, 1.5]}


def test_cli_export_onnx(tmp_path, capsys):
    from tfseg.cli import main

    model = conv_model()
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "m.onnx"), "--format", "onnx",
                 "--stride", "2", "--class-names", "a,b,c"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["format"] == "onnx"
    assert read_onnx_metadata(tmp_path / "m.onnx")["class_names"] == ["a", "b", "c"]
    image = images([(2, 10, 6, 1)])[0]
    expected = serving_function(model, ServingSpec(stride=2))(tf.constant(image))["labels"].numpy()
    np.testing.assert_array_equal(run(tmp_path / "m.onnx", image)["labels"], expected)
