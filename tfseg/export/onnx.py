"""Export a segmentation model as ONNX (tf2onnx), with the serving contract of the SavedModel.

The ONNX graph has one input `image` (float32, dynamic batch and spatial axes named `batch`,
`height`, `width`, and `depth` for 3D) and the outputs `probabilities` and `labels`. With
`include_preprocessing=True` it is the SavedModel's `serving_default` function (raw images in,
normalization and stride padding or resizing inside); with False, the bare model. The
`ServingSpec` is stored as JSON in the model's `metadata_props` under the key `tfseg`
(`read_onnx_metadata`). ONNX Runtime runs the file on CPU or GPU; TensorRT builds engines from it.

Needs `pip install "tfseg[onnx]"` (tf2onnx ≥ 1.17, which works with TensorFlow 2.21, numpy 2 and
protobuf 7; onnxruntime to run the result).

Example:
    >>> import keras, os, tempfile
    >>> inputs = keras.Input((None, None, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", activation="softmax")(inputs))
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "model.onnx"))
    >>> read_onnx_metadata(path)["activation"]
    'softmax'
"""
import json
import logging
import os

from tfseg.errors import ConfigError, DataError, TfsegError
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

METADATA_KEY = "tfseg"
INSTALL_HINT = 'pip install "tfseg[onnx]"  (tf2onnx>=1.17 and onnxruntime)'

__all__ = ["export_onnx", "read_onnx_metadata", "METADATA_KEY"]


def _require(module):
    """Import tf2onnx or onnx, or raise a ConfigError saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs {module}, which cannot be imported ({exc}): {INSTALL_HINT}") from None


def export_onnx(model, path, spec=None, opset=17, include_preprocessing=True):
    """Convert `model` (with or without its serving preprocessing) to an ONNX file, atomically.

    Args:
        model: a Keras model mapping channels-last images to per-class probabilities.
        path: the `.onnx` file to write (replaced if it exists).
        spec: a `ServingSpec`; None: `tfseg.export.endpoint.default_spec(model)`.
        opset: the ONNX opset (13 or newer; 17 is supported by ONNX Runtime and TensorRT 8.6+).
        include_preprocessing: True: raw 2D images in, the spec's preprocessing inside; False:
            the bare model (2D or 3D) on preprocessed input.

    Returns:
        `path`.

    Raises:
        ConfigError: tf2onnx is not installed, a bad opset, or a model/spec the export cannot take.
        TfsegError: the graph holds operations tf2onnx cannot convert (they are listed).

    Example:
        >>> export_onnx(None, "model.onnx", opset=9)
        Traceback (most recent call last):
        ...
        tfseg.errors.ConfigError: opset must be an integer of at least 13, got 9
    """
    if not isinstance(opset, int) or opset < 13:
        raise ConfigError(f"opset must be an integer of at least 13, got {opset!r}")
    tf2onnx = _require("tf2onnx")
    onnx = _require("onnx")
    import tensorflow as tf

    from tfseg.export.endpoint import serving_endpoint

    fn, signature, spec = serving_endpoint(model, spec, include_preprocessing)
    function = tf.function(fn, input_signature=signature, autograph=False)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    _check_ops(proto, onnx, path)
    _name_dynamic_axes(proto, len(model.input_shape) - 2)
    metadata = {**spec.to_json(), "format": "onnx", "opset": opset,
                "include_preprocessing": bool(include_preprocessing)}
    if not include_preprocessing:
        metadata["inputs"] = {"image": f"float32 {_shape_text(signature[0].shape)}, preprocessed"}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, default=list)
    proto.producer_name = "tfseg"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            stream.write(proto.SerializeToString())
    logger.info("wrote ONNX model %s (opset %d, preprocessing %s)", path, opset, include_preprocessing)
    return path


def read_onnx_metadata(path):
    """The JSON metadata (a dict) stored in an ONNX file written by `export_onnx`.

    Raises:
        DataError: the file is missing, not ONNX, or has no tfseg metadata.
    """
    onnx = _require("onnx")
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf DecodeError and others
        raise DataError(path, f"not an ONNX model ({type(exc).__name__}: {exc})") from None
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise DataError(path, f"no '{METADATA_KEY}' entry in metadata_props; it was not written by tfseg")


def _check_ops(proto, onnx, path):
    """Raise if tf2onnx left TensorFlow operations it could not convert in the graph."""
    unknown = set()

    def visit(graph):
        for node in graph.node:
            if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
                unknown.add(node.op_type)
            for attribute in node.attribute:  # Loop/If bodies
                if attribute.g.node:
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(proto.graph)
    if not unknown:
        return
    if "ScaleAndTranslate" in unknown:
        raise TfsegError(f"{path}: the serving preprocessing resizes to the spec's image_size with antialiasing "
                         f"(TensorFlow op ScaleAndTranslate), which tf2onnx cannot convert; export with "
                         f"include_preprocessing=False and resize in the client, or use a spec without "
                         f"image_size (inputs padded to the stride)")
    raise TfsegError(f"{path}: tf2onnx could not convert the TensorFlow operations {sorted(unknown)}; "
                     f"the model uses layers ONNX has no equivalent for")


def _name_dynamic_axes(proto, spatial_dims):
    """Give the dynamic axes of the input and outputs readable names (batch, depth, height, width)."""
    names = ["batch"] + ["depth", "height", "width"][3 - spatial_dims:]
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if axis < len(names) and not dim.HasField("dim_value"):
                dim.dim_param = names[axis]
            elif axis == len(names) and value.name == "probabilities" and not dim.HasField("dim_value"):
                dim.dim_param = "classes"


def _shape_text(shape):
    return "(" + ", ".join("?" if size is None else str(size) for size in shape.as_list()) + ")"
