"""Model export: SavedModel (TF Serving), ONNX, TFLite and TensorRT, behind one dispatcher.

Every format exposes the same contract as the SavedModel's `serving_default` signature: one
float32 input named `image` and two outputs, `probabilities` (float32, per class) and `labels`
(int32: the arg-max class for softmax models, 0/1 per channel for sigmoid ones). With
`include_preprocessing=True` (the default) the input is the raw image and the export contains
the training preprocessing of a `ServingSpec` (normalization, gray→RGB, resize or pad); with
False it is the bare model on already-preprocessed input (any number of spatial dimensions, so
3D models too).

This package only re-exports: `export_model` and `FORMATS` (dispatch.py), `default_spec` and
`serving_endpoint` (endpoint.py); the formats live in savedmodel.py, onnx.py, tflite.py and
tensorrt.py. Importing it is light: the endpoint names (and TensorFlow) load on first use.

Example:
    >>> import tfseg.export
    >>> tfseg.export.FORMATS
    ('savedmodel', 'onnx', 'tflite', 'tensorrt')
"""
from tfseg.export.dispatch import FORMATS, export_model
from tfseg.utils.lazy import lazy_attributes

__all__ = ["FORMATS", "export_model", "default_spec", "serving_endpoint"]

__getattr__, __dir__ = lazy_attributes(globals(), {"default_spec": "tfseg.export.endpoint",
                                                  "serving_endpoint": "tfseg.export.endpoint"})
