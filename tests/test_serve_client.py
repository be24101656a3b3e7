"""tools/serve_client.py against a loopback HTTP server that answers like TF Serving's REST API."""
import importlib.util
import json
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg.errors import TfsegError
from tfseg.export import serving_endpoint
from tfseg.export.savedmodel import ServingSpec, export_savedmodel
from tfseg.io.dicom import write_image
from tfseg.io.nifti import read_nifti, write_nifti

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "serve_client.py"
spec_ = importlib.util.spec_from_file_location("serve_client", TOOL)
serve_client = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(serve_client)


def model_2d():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(x))


def model_3d():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, None, 1))
    return keras.Model(inputs, keras.layers.Conv3D(2, 3, padding="same", activation="softmax")(inputs))


class FakeServing:
    """TF Serving's REST `:predict` for one SavedModel, on 127.0.0.1 and an ephemeral port."""

    def __init__(self, saved_model, name="seg"):
        self.signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, body))
                if self.path != f"/v1/models/{name}:predict":
                    return self.answer(404, {"error": f"Servable not found for request: {self.path}"})
                if body.get("signature_name") != "serving_default" or "image" not in body.get("inputs", {}):
                    return self.answer(400, {"error": "bad request"})
                image = tf.constant(np.asarray(body["inputs"]["image"], np.float32))
                out = owner.signature(image=image)
                self.answer(200, {"outputs": {key: value.numpy().tolist() for key, value in out.items()}})

            def answer(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/models/{name}:predict"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def saved_2d(tmp_path_factory):
    model = model_2d()
    path = export_savedmodel(model, tmp_path_factory.mktemp("sm") / "sm2d", ServingSpec(stride=1))
    return model, path


def expected_2d(model, slices):
    """What the SavedModel's preprocessing + model give for (N, H, W) slices."""
    x = slices[..., None].astype(np.float32)
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1e-6)
    return model.predict(x, verbose=0).argmax(-1)


def test_nifti_volume_as_batches_of_slices(saved_2d, tmp_path):
    model, path = saved_2d
    volume = np.random.default_rng(0).normal(200, 50, (5, 12, 10)).astype(np.float32)
    affine = np.array([[-0.8, 0, 0, 10], [0, 0.8, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    write_nifti(tmp_path / "image.nii.gz", volume, affine)
    with FakeServing(path) as server:
        code = serve_client.main([str(tmp_path / "image.nii.gz"), str(tmp_path / "mask.nii.gz"),
                                  "--url", server.url, "--batch-size", "2"])
    assert code == 0
    assert [len(body["inputs"]["image"]) for _, body in server.requests] == [2, 2, 1]
    assert np.asarray(server.requests[0][1]["inputs"]["image"]).shape == (2, 12, 10, 1)
    mask = read_nifti(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(mask.affine, affine)
    assert mask.array.dtype == np.uint8
    np.testing.assert_array_equal(mask.array, expected_2d(model, volume))


def test_dicom_image_to_png_and_nifti(saved_2d, tmp_path):
    model, path = saved_2d
    stored = np.random.default_rng(1).integers(0, 900, (14, 11)).astype(np.int16)
    write_image(tmp_path / "IM-0001-0001.dcm", stored, pixel_spacing=(1.25, 1.25))
    with FakeServing(path) as server:
        assert serve_client.main([str(tmp_path / "IM-0001-0001.dcm"), str(tmp_path / "mask.png"),
                                  "--url", server.url]) == 0
        assert serve_client.main([str(tmp_path / "IM-0001-0001.dcm"), str(tmp_path / "mask.nii"),
                                  "--url", server.url]) == 0
    assert np.asarray(server.requests[0][1]["inputs"]["image"]).shape == (1, 14, 11, 1)
    expected = expected_2d(model, stored[None].astype(np.float32))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "mask.png")), expected)
    nifti = read_nifti(tmp_path / "mask.nii")
    assert nifti.shape == (1, 14, 11)
    np.testing.assert_array_equal(nifti.array[0], expected)
    np.testing.assert_allclose(nifti.spacing[1:], (1.25, 1.25))


def test_whole_volume_for_a_3d_model(tmp_path):
    model = model_3d()
    fn, signature, _ = serving_endpoint(model, include_preprocessing=False)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", fn, input_signature=signature)
    archive.write_out(str(tmp_path / "sm3d"), verbose=False)
    volume = np.random.default_rng(2).normal(size=(4, 6, 8)).astype(np.float32)
    write_nifti(tmp_path / "vol.nii.gz", volume, np.eye(4))
    with FakeServing(tmp_path / "sm3d", name="brats") as server:
        assert serve_client.main([str(tmp_path / "vol.nii.gz"), str(tmp_path / "seg.nii.gz"),
                                  "--url", server.url, "--mode", "3d"]) == 0
    assert len(server.requests) == 1
    assert np.asarray(server.requests[0][1]["inputs"]["image"]).shape == (1, 4, 6, 8, 1)
    expected = model(volume[None, ..., None]).numpy().argmax(-1)[0]
    np.testing.assert_array_equal(read_nifti(tmp_path / "seg.nii.gz").array, expected)


def test_server_errors_and_bad_requests_are_reported(saved_2d, tmp_path, capsys):
    _, path = saved_2d
    write_nifti(tmp_path / "image.nii", np.ones((2, 4, 4), np.float32), np.eye(4))
    with FakeServing(path) as server:
        wrong = server.url.replace("/seg:", "/other:")
        assert serve_client.main([str(tmp_path / "image.nii"), str(tmp_path / "m.nii"), "--url", wrong]) == 1
    assert "HTTP 404: Servable not found" in capsys.readouterr().err
    assert not (tmp_path / "m.nii").exists()
    with pytest.raises(TfsegError, match="cannot reach the model server"):
        serve_client.predict_rest(server.url, np.zeros((1, 4, 4, 1), np.float32), timeout=5)
    assert serve_client.main([str(tmp_path / "missing.nii.gz"), str(tmp_path / "m.nii"), "--url", server.url]) == 1
    assert "missing.nii.gz: file not found" in capsys.readouterr().err
    with pytest.raises(TfsegError, match="single 2D image"):
        serve_client.to_batches(np.zeros((4, 4), np.float32), "dicom", "3d", "x.dcm")


def test_grpc_without_the_client_says_what_to_install(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    write_nifti(tmp_path / "image.nii", np.ones((1, 4, 4), np.float32), np.eye(4))
    code = serve_client.main([str(tmp_path / "image.nii"), str(tmp_path / "m.nii"), "--grpc", "127.0.0.1:1",
                              "--model-name", "seg"])
    assert code == 1
    assert "pip install tensorflow-serving-api" in capsys.readouterr().err
