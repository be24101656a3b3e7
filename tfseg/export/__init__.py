"""Model export: SavedModel (TF Serving), ONNX, TFLite and TensorRT, behind one dispatcher.

Every format exposes the same contract as the SavedModel's `serving_default` signature: one
float32 input named `image` and two outputs, `probabilities` (float32, per class) and `labels`
(int32: the arg-max class for softmax models, 0/1 per channel for sigmoid ones). With
`include_preprocessing=True` (the default) the input is the raw image and the export contains
the training preprocessing of a `ServingSpec` (normalization, gray→RGB, resize or pad); with
False it is the bare model on already-preprocessed input (any number of spatial dimensions, so
3D models too).

Importing this package is light: TensorFlow and the converters are imported by the functions.

Example:
    >>> FORMATS
    ('savedmodel', 'onnx', 'tflite', 'tensorrt')
    >>> import keras, os, tempfile
    >>> inputs = keras.Input((None, None, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    >>> out = os.path.join(tempfile.mkdtemp(), "saved_model")
    >>> export_model(model, out, "savedmodel") == os.path.abspath(out)
    True
"""
import logging

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "onnx", "tflite", "tensorrt")

__all__ = ["FORMATS", "export_model", "default_spec", "serving_endpoint"]


def export_model(model, path, format="savedmodel", spec=None, **options):
    """Export `model` to `path` in one of `FORMATS`.

    Args:
        model: a Keras model mapping channels-last images to per-class probabilities.
        path: the file (ONNX, TFLite, TensorRT engine) or folder (SavedModel, TF-TRT) to write.
        format: "savedmodel", "onnx", "tflite" or "tensorrt".
        spec: a `tfseg.export.savedmodel.ServingSpec`; None: `default_spec(model)`.
        **options: passed on to the format's exporter (`export_onnx`'s `opset`, `export_tflite`'s
            `input_shape` and `quantize`, `export_tensorrt`'s `precision` and shape profile, ...).

    Returns:
        The path written (as the exporter returns it).

    Raises:
        ConfigError: unknown format, an option the format does not take, or a missing converter
            (the message says what to install).

    Example:
        >>> export_model(None, "x", "caffe")
        Traceback (most recent call last):
        ...
        tfseg.errors.ConfigError: unknown export format 'caffe'; choose one of savedmodel, onnx, tflite, tensorrt
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "savedmodel":
        from tfseg.export.savedmodel import export_savedmodel

        if options:
            raise ConfigError(f"the savedmodel format takes no options, got {sorted(options)}")
        return export_savedmodel(model, path, spec if spec is not None else default_spec(model))
    if format == "onnx":
        from tfseg.export.onnx import export_onnx as exporter
    elif format == "tflite":
        from tfseg.export.tflite import export_tflite as exporter
    else:
        from tfseg.export.tensorrt import export_tensorrt as exporter
    import inspect

    accepted = set(inspect.signature(exporter).parameters) - {"model", "path", "spec"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"the {format} format does not take {unknown}; it takes {sorted(accepted)}")
    logger.info("exporting %s as %s to %s", getattr(model, "name", "model"), format, path)
    return exporter(model, path, spec=spec, **options)


def default_spec(model):
    """The `ServingSpec` used when none is given: model channels in, z-score, pad to stride 32."""
    from tfseg.export.savedmodel import ServingSpec

    return ServingSpec(image_size=None, stride=32, in_channels=int(model.input_shape[-1] or 1))


def serving_endpoint(model, spec=None, include_preprocessing=True, input_shape=None):
    """The function every format exports, with its input signature.

    Args:
        model: a Keras model with input `(B, *spatial, C)`.
        spec: a `ServingSpec`, or None for `default_spec(model)`.
        include_preprocessing: True: raw images through the spec's preprocessing (the
            SavedModel's serving function); False: the bare model.
        input_shape: a full input shape `(B, *spatial, C)` to fix (None entries stay dynamic);
            None: batch and spatial sizes dynamic.

    Returns:
        `(fn, input_signature, spec)`: `fn(image) -> {"probabilities", "labels"}` (not yet a
        `tf.function`), a one-element list holding the `tf.TensorSpec` named "image", and the spec.

    Raises:
        ConfigError: `input_shape` does not fit the model (rank or channels).

    Example:
        >>> import keras
        >>> inputs = keras.Input((None, None, None, 2))
        >>> model = keras.Model(inputs, keras.layers.Conv3D(3, 1, activation="softmax")(inputs))
        >>> fn, signature, spec = serving_endpoint(model, include_preprocessing=False)
        >>> signature[0].shape.as_list(), spec.activation
        ([None, None, None, None, 2], 'softmax')
    """
    import tensorflow as tf

    from tfseg.export.savedmodel import output_labels, serving_function

    spec = spec if spec is not None else default_spec(model)
    if spec.activation not in ("softmax", "sigmoid"):
        raise ConfigError(f"activation must be 'softmax' or 'sigmoid', got {spec.activation!r}")
    rank = len(model.input_shape)
    if include_preprocessing:
        channels = spec.in_channels
        fn = serving_function(model, spec)
    else:
        channels = model.input_shape[-1]

        def fn(image):
            probabilities = tf.cast(model(image, training=False), tf.float32)
            return {"probabilities": probabilities, "labels": output_labels(probabilities, spec)}

    if input_shape is None:
        shape = (None,) * (rank - 1) + (channels,)
    else:
        shape = tuple(None if size is None else int(size) for size in input_shape)
        if len(shape) != rank or shape[-1] != channels:
            raise ConfigError(f"input_shape {tuple(input_shape)} does not fit the model: expected {rank} "
                              f"dimensions (batch, {rank - 2} spatial, channels) ending in {channels} channels")
        if any(size is not None and size < 1 for size in shape):
            raise ConfigError(f"input_shape {tuple(input_shape)} has a size below 1")
    return fn, [tf.TensorSpec(shape, tf.float32, name="image")], spec
