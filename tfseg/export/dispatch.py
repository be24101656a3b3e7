"""`export_model`: one entry to every export format, checking each format's options.

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
import inspect
import logging

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "onnx", "tflite", "tensorrt")

__all__ = ["FORMATS", "export_model"]


def export_model(model, path, format="savedmodel", spec=None, **options):
    """Export `model` to `path` in one of `FORMATS`.

    Args:
        model: a Keras model mapping channels-last images to per-class probabilities.
        path: the file (ONNX, TFLite, TensorRT engine) or folder (SavedModel, TF-TRT) to write.
        format: "savedmodel", "onnx", "tflite" or "tensorrt".
        spec: a `tfseg.export.savedmodel.ServingSpec`; None: `tfseg.export.endpoint.default_spec(model)`.
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
        from tfseg.export.endpoint import default_spec
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
    accepted = set(inspect.signature(exporter).parameters) - {"model", "path", "spec"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"the {format} format does not take {unknown}; it takes {sorted(accepted)}")
    logger.info("exporting %s as %s to %s", getattr(model, "name", "model"), format, path)
    return exporter(model, path, spec=spec, **options)
