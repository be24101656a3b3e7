"""The SavedModel must work with TensorFlow alone (no tfseg import) and match the Keras model."""
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.export.savedmodel import ServingSpec, export_savedmodel, read_metadata

LOAD_AND_RUN = r"""
import json, sys
import numpy as np
import tensorflow as tf
assert "tfseg" not in sys.modules
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
results = {}
for i, shape in enumerate(json.loads(sys.argv[2])):
    image = np.random.default_rng(i).normal(100, 30, shape).astype("float32")
    out = serve(image=tf.constant(image))
    np.save(f"{sys.argv[3]}/image{i}.npy", image)
    np.save(f"{sys.argv[3]}/prob{i}.npy", out["probabilities"].numpy())
    np.save(f"{sys.argv[3]}/labels{i}.npy", out["labels"].numpy())
assert "tfseg" not in sys.modules
"""


def tiny_model(channels=1, classes=2):
    inputs = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(classes, 1)(x)
    x = keras.layers.Conv2DTranspose(classes, 4, strides=4)(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x))


def zscore(image):
    return (image - image.mean()) / max(image.std(), 1e-6)


def run_fresh(path, shapes, out_dir):
    subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(path), json.dumps(shapes), str(out_dir)], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_padding_signature_matches_keras_in_a_fresh_process(tmp_path):
    model = tiny_model()
    spec = ServingSpec(image_size=None, stride=4, in_channels=1, class_names=("background", "lv"))
    path = export_savedmodel(model, tmp_path / "saved_model", spec)
    shapes = [[1, 16, 16, 1], [3, 21, 30, 1], [2, 8, 13, 1]]
    run_fresh(path, shapes, tmp_path)
    for i, shape in enumerate(shapes):
        image = np.load(tmp_path / f"image{i}.npy")
        probabilities = np.load(tmp_path / f"prob{i}.npy")
        labels = np.load(tmp_path / f"labels{i}.npy")
        h, w = shape[1:3]
        ph, pw = -(-h // 4) * 4, -(-w // 4) * 4
        normalized = np.stack([zscore(im) for im in image])
        padded = np.pad(normalized, [(0, 0), (0, ph - h), (0, pw - w), (0, 0)])
        expected = model.predict(padded, verbose=0)[:, :h, :w]
        assert probabilities.shape == tuple(shape[:3]) + (2,)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        np.testing.assert_array_equal(labels, probabilities.argmax(-1))
    assert read_metadata(path)["class_names"] == ["background", "lv"]


def test_resize_signature_and_gray_to_rgb(tmp_path):
    model = tiny_model(channels=3)
    spec = ServingSpec(image_size=(16, 16), stride=4, in_channels=1, normalization="minmax")
    path = export_savedmodel(model, tmp_path / "sm", spec)
    loaded = tf.saved_model.load(str(path))
    image = np.random.default_rng(0).random((2, 40, 24, 1)).astype(np.float32) * 500
    out = loaded.signatures["serving_default"](image=tf.constant(image))
    x = (image - image.min(axis=(1, 2, 3), keepdims=True)) / np.ptp(image, axis=(1, 2, 3), keepdims=True)
    x = tf.image.resize(np.repeat(x, 3, -1), (16, 16), antialias=True)
    expected = tf.image.resize(model(x), (40, 24)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert out["labels"].shape == (2, 40, 24)


def test_saved_model_cli_lists_named_inputs_and_outputs(tmp_path):
    path = export_savedmodel(tiny_model(), tmp_path / "sm", ServingSpec(stride=4))
    cli = shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli is not on PATH")
    shown = subprocess.run([cli, "show", "--dir", str(path), "--tag_set", "serve", "--signature_def",
                            "serving_default"], capture_output=True, text=True, check=True).stdout
    for name in ("image", "probabilities", "labels"):
        assert f"['{name}']" in shown


def test_export_replaces_atomically(tmp_path):
    target = tmp_path / "sm"
    export_savedmodel(tiny_model(), target, ServingSpec(stride=4))
    (target / "stale.txt").write_text("old export")
    export_savedmodel(tiny_model(), target, ServingSpec(stride=4, class_names=("a", "b")))
    assert not (target / "stale.txt").exists()
    assert read_metadata(target)["class_names"] == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["sm"]  # no temporary directories left behind


def test_3d_model_padded_to_stride_with_nonzero_zscore(tmp_path):
    inputs = keras.Input((None, None, None, 2))
    x = keras.layers.Conv3D(3, 1)(inputs)
    x = keras.layers.MaxPooling3D(2)(x)
    x = keras.layers.Conv3DTranspose(3, 2, strides=2)(x)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="probabilities")(x))
    spec = ServingSpec(stride=2, in_channels=2, normalization="zscore_nonzero", activation="sigmoid")
    loaded = tf.saved_model.load(str(export_savedmodel(model, tmp_path / "sm3d", spec)))
    rng = np.random.default_rng(0)
    volume = rng.normal(300, 50, (1, 5, 6, 7, 2)).astype(np.float32)
    volume[:, :2] = 0.0  # background outside the "brain" stays zero after normalization
    out = loaded.signatures["serving_default"](image=tf.constant(volume))
    normalized = np.zeros_like(volume)
    for c in range(2):
        channel = volume[0, ..., c]
        inside = channel != 0
        normalized[0, ..., c][inside] = (channel[inside] - channel[inside].mean()) / channel[inside].std()
    padded = np.pad(normalized, [(0, 0), (0, 1), (0, 0), (0, 1), (0, 0)])
    expected = model.predict(padded, verbose=0)[:, :5, :6, :7]
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert out["labels"].shape == (1, 5, 6, 7, 3)


def test_percentile_signature_stretches_each_channel_inside_the_brain(tmp_path):
    model = tiny_model(channels=3, classes=4)
    spec = ServingSpec(image_size=None, stride=4, in_channels=3, normalization="percentile")
    loaded = tf.saved_model.load(str(export_savedmodel(model, tmp_path / "sm", spec)))
    rng = np.random.default_rng(1)
    image = rng.gamma(2.0, 200.0, (2, 18, 22, 3)).astype(np.float32)
    image[:, :3] = 0.0  # outside the brain
    out = loaded.signatures["serving_default"](image=tf.constant(image))
    normalized = np.empty_like(image)
    for b in range(2):
        brain = image[b].any(axis=-1)
        for c in range(3):
            low, high = np.percentile(image[b, ..., c][brain], [0.5, 99.5])
            stretched = np.clip((image[b, ..., c] - low) / (high - low), 0, 1) * 2 - 1
            normalized[b, ..., c] = np.where(brain, stretched, -1.0)
    padded = np.pad(normalized, [(0, 0), (0, 2), (0, 2), (0, 0)], constant_values=-1.0)  # background value
    expected = model.predict(padded, verbose=0)[:, :18, :22]
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
