"""Export a segmentation model as a TensorFlow Lite flatbuffer, with the serving contract.

TFLite needs a fixed input shape: `input_shape=(1, H, W, C)`, else `(1, *spec.image_size,
spec.in_channels)` when the spec resizes to a training size, else the model's own input shape
when it is fully defined. A spec with `image_size` cannot be exported with its preprocessing:
the antialiased resize (`ScaleAndTranslate`) has no TFLite kernel, builtin or Flex; export the
bare model (`include_preprocessing=False`) and resize in the client. The file has one signature, `serving_default`, with the input `image`
and the outputs `probabilities` and `labels`, as the SavedModel.

The conversion goes through a temporary SavedModel written by `keras.export.ExportArchive`
(`TFLiteConverter.from_saved_model`): converting a Keras 3 model's concrete function directly
(`from_concrete_functions`) loses the variable values in TensorFlow 2.21 and yields NaN outputs.
TensorFlow 2.21 still ships `tf.lite` (it warns that the interpreter moves to the LiteRT package
`ai_edge_litert`); the resulting files run in either interpreter.

Example:
    >>> import keras, os, tempfile
    >>> inputs = keras.Input((16, 16, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", activation="softmax")(inputs))
    >>> path = export_tflite(model, os.path.join(tempfile.mkdtemp(), "model.tflite"),
    ...                      include_preprocessing=False)
    >>> os.path.getsize(path) > 0
    True
"""
import logging
import tempfile

from tfseg.errors import ConfigError, TfsegError
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

QUANTIZATIONS = (None, "float16", "dynamic")

__all__ = ["export_tflite", "resolve_input_shape", "QUANTIZATIONS"]


def resolve_input_shape(model, spec, include_preprocessing, input_shape=None):
    """The fixed input shape a TFLite export uses (see the module docstring for the order).

    Raises:
        ConfigError: no fixed shape can be found, or the one given has unknown sizes.

    Example:
        >>> import keras
        >>> from tfseg.export.savedmodel import ServingSpec
        >>> model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 1)])
        >>> resolve_input_shape(model, ServingSpec(image_size=(64, 48), in_channels=1), True)
        (1, 64, 48, 1)
    """
    if input_shape is not None:
        shape = tuple(input_shape)
    elif include_preprocessing and spec.image_size is not None:
        shape = (1, *spec.image_size, spec.in_channels)
    elif all(size is not None for size in model.input_shape[1:]):
        shape = (1, *model.input_shape[1:])
        if include_preprocessing:
            shape = shape[:-1] + (spec.in_channels,)
    else:
        raise ConfigError(f"TFLite needs a fixed input shape and the model takes {model.input_shape}: pass "
                          f"input_shape=(1, H, W, C) (CLI: --input-shape 1,256,256,1)")
    if any(size is None or int(size) < 1 for size in shape):
        raise ConfigError(f"TFLite needs a fixed input shape with every size at least 1, got {shape}")
    return tuple(int(size) for size in shape)


def export_tflite(model, path, spec=None, include_preprocessing=True, quantize=None, input_shape=None):
    """Convert `model` to a `.tflite` file with a fixed input shape, atomically.

    Args:
        model: a Keras model mapping channels-last images to per-class probabilities.
        path: the `.tflite` file to write (replaced if it exists).
        spec: a `ServingSpec`; None: `tfseg.export.endpoint.default_spec(model)`.
        include_preprocessing: True: raw 2D images in, the spec's preprocessing inside; False:
            the bare model (2D or 3D) on preprocessed input.
        quantize: None (float32), "float16" (weights stored as float16, half the size) or
            "dynamic" (weights int8, activations float: dynamic-range quantization).
        input_shape: the fixed input shape `(1, H, W, C)` (`(1, D, H, W, C)` for a 3D model).

    Returns:
        `path`.

    Raises:
        ConfigError: a bad `quantize` or input shape, or a TensorFlow without `tf.lite`.
        TfsegError: the converter failed (its message is included).
    """
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    import keras
    import tensorflow as tf

    from tfseg.export.endpoint import default_spec, serving_endpoint

    converter_class = getattr(getattr(tf, "lite", None), "TFLiteConverter", None)
    if converter_class is None:
        raise ConfigError(f"TensorFlow {tf.__version__} has no tf.lite.TFLiteConverter; "
                          f"install a TensorFlow that ships it (2.21 does)")
    spec = spec if spec is not None else default_spec(model)
    shape = resolve_input_shape(model, spec, include_preprocessing, input_shape)
    fn, signature, spec = serving_endpoint(model, spec, include_preprocessing, input_shape=shape)
    with tempfile.TemporaryDirectory(prefix="tfseg-tflite-") as staging:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name="serving_default", fn=fn, input_signature=signature)
        archive.write_out(staging, verbose=False)
        try:
            flatbuffer = _convert(converter_class, staging, quantize, select_ops=False)
        except Exception as builtin_error:  # the converter raises ConverterError and plain exceptions
            logger.warning("%s: TFLite builtin operations do not cover the graph (%s); converting again "
                           "with TensorFlow select ops, which need an interpreter with the Flex delegate",
                           path, str(builtin_error).splitlines()[0] if str(builtin_error) else builtin_error)
            try:
                flatbuffer = _convert(converter_class, staging, quantize, select_ops=True)
            except Exception as exc:
                if "ScaleAndTranslate" in str(exc):
                    raise TfsegError(f"{path}: the serving preprocessing resizes to the spec's image_size with "
                                     f"antialiasing (TensorFlow op ScaleAndTranslate), which TFLite cannot run; "
                                     f"export with include_preprocessing=False and resize in the client, or use "
                                     f"a spec without image_size (inputs padded to the stride)") from None
                raise TfsegError(f"{path}: the TFLite converter failed: {exc}") from None
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            stream.write(flatbuffer)
    logger.info("wrote TFLite model %s (input %s, quantize %s)", path, shape, quantize)
    return path


def _convert(converter_class, saved_model, quantize, select_ops):
    """Run the TFLite converter on the `serving_default` signature of a SavedModel."""
    import tensorflow as tf

    converter = converter_class.from_saved_model(saved_model, signature_keys=["serving_default"])
    if select_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
    return converter.convert()
