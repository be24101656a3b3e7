#!/usr/bin/env python
"""Segment a NIfTI or DICOM image with a model served by TF Serving, and write the label mask.

Usage:
    python tools/serve_client.py IMAGE OUT --url http://localhost:8501/v1/models/NAME:predict
        [--mode 2d|3d] [--batch-size 16] [--signature serving_default]
    python tools/serve_client.py IMAGE OUT --grpc localhost:8500 --model-name NAME [--mode 2d|3d]

The request is TF Serving's columnar predict call,
`{"signature_name": "serving_default", "inputs": {"image": [...]}}`, with float32 raw intensities
channels last; the `labels` output is written back.

- `--mode 2d` (default), for a 2D model: a DICOM image is sent as one image `(1, H, W, 1)` (a
  multi-frame file as a batch of its frames); a NIfTI volume `(D, H, W)` as batches of its D
  slices `(B, H, W, 1)` (a 4D NIfTI: `(B, H, W, C)`), `--batch-size` slices per request.
- `--mode 3d`, for a 3D model: the whole volume in one request, `(1, D, H, W, C)`.

Output: for NIfTI input, a NIfTI mask `(D, H, W)` with the input's affine and header; for DICOM
input, a PNG (one single-frame image; pixel value = class index) or a NIfTI (OUT ending in
`.nii`/`.nii.gz`, placed with the DICOM geometry when the file has it).

REST needs only the standard library. gRPC needs `pip install tensorflow-serving-api grpcio`
(its TensorFlow pin must match the installed TensorFlow).

Examples:
    python tools/serve_client.py case01.nii.gz case01_mask.nii.gz \\
        --url http://localhost:8501/v1/models/sunnybrook:predict --mode 2d
    python tools/serve_client.py IM-0001-0048.dcm mask.png --url http://localhost:8501/v1/models/sunnybrook:predict
"""
import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request

import numpy as np

from tfseg.errors import ConfigError, DataError, TfsegError

logger = logging.getLogger("serve_client")

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def read_input(path):
    """Read IMAGE: `(array, affine, header, kind)`; the array is `(D, H, W[, C])` (NIfTI) or DICOM's."""
    name = os.fspath(path)
    if name.endswith(NIFTI_SUFFIXES):
        from tfseg.io.nifti import read_nifti

        volume = read_nifti(name, dtype=np.float32)
        return volume.array, volume.affine, volume.header, "nifti"
    from tfseg.io.dicom import read_image

    image = read_image(name)
    return image.array, None, None, "dicom"


def to_batches(array, kind, mode, path):
    """The model input for `array`, channels last float32, and whether it is one 2D image.

    Returns:
        `(inputs, single)`: `(N, H, W, C)` in 2d mode (`N` slices or frames), `(1, D, H, W, C)` in
        3d mode; `single` is True for a single-frame DICOM image.
    """
    array = np.asarray(array, dtype=np.float32)
    if kind == "dicom":
        colour = array.ndim >= 3 and array.shape[-1] == 3
        frames = array if array.ndim == 3 + colour else array[None]  # (F, H, W[, 3])
    else:
        frames = array  # (D, H, W[, C])
        colour = False
    if frames.ndim == 3:
        frames = frames[..., None]
    single = kind == "dicom" and array.ndim == 2 + colour
    if mode == "3d":
        if single:
            raise DataError(path, "is a single 2D image; --mode 3d needs a volume (NIfTI or multi-frame DICOM)")
        return frames[None], False
    return frames, single


def predict_rest(url, batch, signature="serving_default", timeout=60.0):
    """POST one batch to a TF Serving REST `:predict` URL; returns the `labels` as a numpy array.

    Raises:
        TfsegError: the server cannot be reached, answers with an error, or without `labels`.
    """
    body = json.dumps({"signature_name": signature, "inputs": {"image": batch.tolist()}}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise TfsegError(f"{url}: the server answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TfsegError(f"{url}: cannot reach the model server ({getattr(exc, 'reason', exc)})") from None
    except ValueError as exc:
        raise TfsegError(f"{url}: the answer is not JSON ({exc})") from None
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, dict) or "labels" not in outputs:
        raise TfsegError(f"{url}: the answer has no outputs.labels (got keys {sorted(answer)[:5]}); is "
                         f"'{signature}' the tfseg serving signature?")
    return np.asarray(outputs["labels"])


def predict_grpc(target, model_name, batch, signature="serving_default", timeout=60.0):
    """Send one batch through TF Serving's gRPC `Predict`; returns the `labels` as a numpy array."""
    try:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as exc:
        raise ConfigError(f"--grpc needs the TF Serving client ({exc}): pip install tensorflow-serving-api grpcio "
                          f"(or use the REST --url, which needs nothing)") from None
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
    request.output_filter.append("labels")
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 1 << 30),
                                                ("grpc.max_send_message_length", 1 << 30)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            result = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise TfsegError(f"{target}: gRPC Predict failed: {exc.code().name}: {exc.details()}") from None
    return tf.make_ndarray(result.outputs["labels"])


def segment(array, kind, mode, send, path, batch_size=16):
    """Run `send(batch) -> labels` over the batches of `array`; the mask in the input's layout.

    For NIfTI input and for multi-frame DICOM the mask is `(D, H, W)` (plus a channel axis for
    sigmoid models); for a single DICOM image `(H, W)`.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    inputs, single = to_batches(array, kind, mode, path)
    if mode == "3d":
        labels = np.asarray(send(inputs))
        expected = inputs.shape[1:4]
        if labels.shape[:1] != (1,) or labels.shape[1:4] != expected:
            raise TfsegError(f"the server returned labels of shape {labels.shape} for an input of {inputs.shape}")
        return labels[0]
    parts = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        labels = np.asarray(send(chunk))
        if labels.shape[:3] != chunk.shape[:3]:
            raise TfsegError(f"the server returned labels of shape {labels.shape} for an input of {chunk.shape}")
        parts.append(labels)
        logger.info("slices %d-%d of %d done", start, start + len(chunk) - 1, len(inputs))
    labels = np.concatenate(parts)
    return labels[0] if single else labels


def write_mask(out, labels, affine, header, kind, source):
    """Write the mask: NIfTI (with the input's affine) or, for a single 2D image, PNG."""
    labels = np.asarray(labels)
    if labels.size and labels.max() > 255:
        raise TfsegError(f"label values up to {labels.max()} do not fit a uint8 mask")
    mask = labels.astype(np.uint8)
    name = os.fspath(out)
    if name.lower().endswith(".png"):
        if mask.ndim != 2:
            raise ConfigError(f"{name}: a PNG holds one 2D mask, but the mask has shape {mask.shape}; "
                              f"write a .nii.gz instead")
        from PIL import Image

        from tfseg.utils.atomic import atomic_path

        with atomic_path(name) as tmp:
            Image.fromarray(mask, mode="L").save(tmp, format="PNG")
        return name
    if not name.endswith(NIFTI_SUFFIXES):
        raise ConfigError(f"OUT must end in .nii, .nii.gz or .png, got {name!r}")
    from tfseg.io.nifti import write_nifti

    if mask.ndim == 2:
        mask = mask[None]
    if affine is None:
        affine = _dicom_affine(source, mask.shape)
    return write_nifti(name, mask, affine, header=header)


def _dicom_affine(path, shape):
    """The NIfTI affine of a DICOM file's geometry (identity spacing when it has none)."""
    from tfseg.io.dicom import read_series

    try:
        volume = read_series([path])
        if volume.spatial_shape == tuple(shape[:3]):
            return volume.affine
    except TfsegError as exc:
        logger.warning("%s: no usable DICOM geometry (%s); writing the mask with an identity affine", path, exc)
    return np.eye(4)


def build_parser():
    parser = argparse.ArgumentParser(prog="serve_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a NIfTI (.nii/.nii.gz) or DICOM file")
    parser.add_argument("out", help="the mask to write: .nii/.nii.gz, or .png for a single DICOM image")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="REST predict URL, e.g. http://localhost:8501/v1/models/NAME:predict")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC address, e.g. localhost:8500 (needs --model-name)")
    parser.add_argument("--model-name", help="the served model's name (gRPC)")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--mode", choices=("2d", "3d"), default="2d",
                        help="2d: slices as a batch of 2D images; 3d: the whole volume (3D models)")
    parser.add_argument("--batch-size", type=int, default=16, help="2d mode: slices per request")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    return parser


def main(argv=None):
    """Parse `argv`, segment IMAGE through the server, write OUT; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.grpc and not args.model_name:
        parser.error("--grpc needs --model-name")
    if args.url:
        def send(batch):
            return predict_rest(args.url, batch, args.signature, args.timeout)
    else:
        def send(batch):
            return predict_grpc(args.grpc, args.model_name, batch, args.signature, args.timeout)
    try:
        array, affine, header, kind = read_input(args.image)
        labels = segment(array, kind, args.mode, send, args.image, args.batch_size)
        path = write_mask(args.out, labels, affine, header, kind, args.image)
    except TfsegError as exc:
        print(f"serve_client: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
