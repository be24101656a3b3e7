"""Export a segmentation model for TensorRT: TF-TRT SavedModel or a serialized TensorRT engine.

Two backends, tried in this order:

1. **TF-TRT** (`TrtGraphConverterV2`), when TensorFlow was built with TensorRT (the GPU wheels up
   to TensorFlow 2.17; later wheels still carry the Python module but are not linked against
   TensorRT) and a GPU is visible. The result is a SavedModel folder with the same
   `serving_default` signature, servable by TF Serving.
2. **TensorRT from ONNX**, when the `tensorrt` Python package is importable: the model is
   exported with `export_onnx`, parsed by TensorRT's ONNX parser and built into a serialized
   engine (`.engine`/`.plan`) with one optimization profile (`min_shape`, `opt_shape`,
   `max_shape` of the `image` input). Beside it, `<path>.json` holds the serving metadata and the
   profile. An engine is tied to the GPU model and TensorRT version that built it.

Without either, `export_tensorrt` raises a `ConfigError` saying what to install.

Example:
    >>> check_shape_profile((1, 64, 64, 1), (4, 256, 256, 1), None, rank=4, channels=1)
    ((1, 64, 64, 1), (4, 256, 256, 1), (4, 256, 256, 1))
"""
import importlib
import json
import logging
import os
import tempfile

from tfseg.errors import ConfigError, TfsegError
from tfseg.utils.atomic import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")

__all__ = ["export_tensorrt", "check_shape_profile", "detect_backend", "PRECISIONS"]


def check_shape_profile(min_shape, opt_shape, max_shape, rank, channels):
    """Validate an optimization profile of the `image` input; missing shapes are filled in.

    A missing `min_shape` or `max_shape` takes `opt_shape`; a missing `opt_shape` takes
    `max_shape`, else `min_shape`.

    Args:
        min_shape, opt_shape, max_shape: full input shapes `(B, *spatial, C)` or None.
        rank: the model input's rank (4 for 2D, 5 for 3D).
        channels: the input channels the exported graph takes.

    Returns:
        `(min_shape, opt_shape, max_shape)` as tuples of ints.

    Raises:
        ConfigError: no shape given, a wrong rank or channel count, a size below 1, or a size of
            `min_shape` above `opt_shape` or of `opt_shape` above `max_shape`.

    Example:
        >>> check_shape_profile((1, 64, 64, 1), (1, 32, 32, 1), None, rank=4, channels=1)
        Traceback (most recent call last):
        ...
        tfseg.errors.ConfigError: shape profile must satisfy min_shape <= opt_shape <= max_shape in every dimension, got min (1, 64, 64, 1), opt (1, 32, 32, 1), max (1, 32, 32, 1)
    """
    if min_shape is None and opt_shape is None and max_shape is None:
        raise ConfigError(f"a TensorRT engine needs input shapes: pass opt_shape (and min_shape/max_shape for a "
                          f"range), e.g. opt_shape=(1, 256, 256, {channels}); CLI: --input-shape 1,256,256,{channels}")
    if opt_shape is None:
        opt_shape = max_shape if max_shape is not None else min_shape
    min_shape = opt_shape if min_shape is None else min_shape
    max_shape = opt_shape if max_shape is None else max_shape
    shapes = []
    for name, shape in (("min_shape", min_shape), ("opt_shape", opt_shape), ("max_shape", max_shape)):
        try:
            shape = tuple(int(size) for size in shape)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a sequence of integers, got {shape!r}") from None
        if len(shape) != rank:
            raise ConfigError(f"{name} {shape} must have {rank} dimensions (batch, {rank - 2} spatial, channels)")
        if shape[-1] != channels:
            raise ConfigError(f"{name} {shape} must end in the input's {channels} channels")
        if min(shape) < 1:
            raise ConfigError(f"{name} {shape} has a size below 1")
        shapes.append(shape)
    low, mid, high = shapes
    if any(a > b for a, b in zip(low, mid)) or any(a > b for a, b in zip(mid, high)):
        raise ConfigError(f"shape profile must satisfy min_shape <= opt_shape <= max_shape in every dimension, "
                          f"got min {low}, opt {mid}, max {high}")
    return low, mid, high


def detect_backend():
    """Which TensorRT route this environment offers.

    Returns:
        `("tf-trt", details)`, `("tensorrt", details)` or `(None, reasons)`, where the second item
        is a sentence saying what was found.

    Example:
        >>> backend, details = detect_backend()
        >>> backend in ("tf-trt", "tensorrt", None)
        True
    """
    import tensorflow as tf

    reasons = []
    try:
        trt_convert = importlib.import_module("tensorflow.python.compiler.tensorrt.trt_convert")
        utils = importlib.import_module("tensorflow.compiler.tf2tensorrt._pywrap_py_utils")
        linked = utils.is_tensorrt_enabled()
    except Exception as exc:  # ImportError, or a broken TensorRT build raising at import
        trt_convert, linked = None, False
        reasons.append(f"TF-TRT is not importable ({type(exc).__name__}: {exc})")
    if trt_convert is not None and not linked:
        reasons.append(f"TensorFlow {tf.__version__} is not built with TensorRT")
    if linked:
        if tf.config.list_physical_devices("GPU"):
            return "tf-trt", f"TF-TRT in TensorFlow {tf.__version__}"
        reasons.append("TF-TRT is built in but no GPU is visible")
    try:
        tensorrt = importlib.import_module("tensorrt")
        return "tensorrt", f"TensorRT {getattr(tensorrt, '__version__', '?')} Python package"
    except ImportError as exc:
        reasons.append(f"the tensorrt package is not importable ({exc})")
    return None, "; ".join(reasons)


def export_tensorrt(model, path, spec=None, precision="fp32", min_shape=None, opt_shape=None, max_shape=None,
                    include_preprocessing=True, workspace_mib=None):
    """Build a TensorRT artefact for `model`: a TF-TRT SavedModel folder or a serialized engine file.

    Args:
        model: a Keras model mapping channels-last images to per-class probabilities.
        path: a folder for TF-TRT (a SavedModel), a file (`.engine`/`.plan`) for TensorRT.
        spec: a `ServingSpec`; None: `tfseg.export.endpoint.default_spec(model)`.
        precision: "fp32" or "fp16".
        min_shape, opt_shape, max_shape: the optimization profile of the `image` input (see
            `check_shape_profile`). Default: `(1, *spec.image_size, spec.in_channels)` for all
            three when the spec resizes to a training size.
        include_preprocessing: as in `export_onnx`.
        workspace_mib: TensorRT builder workspace limit in MiB (None: TensorRT's default).

    Returns:
        `path`.

    Raises:
        ConfigError: a bad precision or shape profile, or no TensorRT backend (the message says
            what to install and which TensorFlow was found).
        TfsegError: TensorRT could not parse the ONNX graph or build the engine.
    """
    import tensorflow as tf

    from tfseg.export.endpoint import default_spec

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    spec = spec if spec is not None else default_spec(model)
    rank = len(model.input_shape)
    channels = spec.in_channels if include_preprocessing else model.input_shape[-1]
    if min_shape is opt_shape is max_shape is None and include_preprocessing and spec.image_size is not None:
        opt_shape = (1, *spec.image_size, channels)
    profile = check_shape_profile(min_shape, opt_shape, max_shape, rank=rank, channels=channels)
    backend, details = detect_backend()
    if backend is None:
        raise ConfigError(
            f"no TensorRT backend is available ({details}). Either use TF-TRT, which needs a GPU build of "
            f"TensorFlow <= 2.17 (pip install 'tensorflow[and-cuda]==2.17.*') and a GPU, or install TensorRT's "
            f"Python package (pip install tensorrt, NVIDIA's CUDA 12/13 wheels; needs an NVIDIA GPU and driver) "
            f"together with 'tfseg[onnx]' to build an engine from ONNX. Found TensorFlow {tf.__version__}.")
    logger.info("TensorRT export with %s, precision %s, profile %s", details, precision, profile)
    if backend == "tf-trt":
        return _export_tftrt(model, path, spec, precision, profile, include_preprocessing)
    return _export_engine(model, path, spec, precision, profile, include_preprocessing, workspace_mib)


def _export_tftrt(model, path, spec, precision, profile, include_preprocessing):
    """SavedModel → TrtGraphConverterV2 → SavedModel with TensorRT engines for the profile shapes."""
    import keras
    import numpy as np
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    from tfseg.export.endpoint import serving_endpoint
    from tfseg.export.savedmodel import METADATA_FILE

    fn, signature, spec = serving_endpoint(model, spec, include_preprocessing)
    with tempfile.TemporaryDirectory(prefix="tfseg-tftrt-") as staging:
        source = os.path.join(staging, "saved_model")
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name="serving_default", fn=fn, input_signature=signature)
        archive.write_out(source, verbose=False)
        mode = trt.TrtPrecisionMode.FP16 if precision == "fp16" else trt.TrtPrecisionMode.FP32
        converter = trt.TrtGraphConverterV2(input_saved_model_dir=source, precision_mode=mode,
                                            use_dynamic_shape=True, dynamic_shape_profile_strategy="Range")
        try:
            converter.convert()
            converter.build(input_fn=lambda: ((np.zeros(shape, np.float32),) for shape in profile))
        except Exception as exc:
            raise TfsegError(f"{path}: TF-TRT conversion failed: {exc}") from None
        with atomic_path(path) as tmp:
            converter.save(tmp)
            metadata = os.path.join(tmp, METADATA_FILE)
            os.makedirs(os.path.dirname(metadata), exist_ok=True)
            with open(metadata, "w") as stream:
                json.dump(_metadata(spec, "tf-trt", precision, profile, include_preprocessing), stream,
                          indent=2, default=list)
    return path


def _export_engine(model, path, spec, precision, profile, include_preprocessing, workspace_mib):
    """ONNX → TensorRT network (explicit batch) → serialized engine, written atomically with its metadata."""
    import tensorrt as trt

    from tfseg.export.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="tfseg-trt-") as staging:
        onnx_path = export_onnx(model, os.path.join(staging, "model.onnx"), spec,
                                include_preprocessing=include_preprocessing)
        with open(onnx_path, "rb") as stream:
            onnx_bytes = stream.read()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # implied in TensorRT 10
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TfsegError(f"{path}: TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    if workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if precision == "fp16":
        if getattr(builder, "platform_has_fast_fp16", True):
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            logger.warning("this GPU has no fast fp16; building the engine in fp32")
    optimization = builder.create_optimization_profile()
    optimization.set_shape("image", *profile)
    config.add_optimization_profile(optimization)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TfsegError(f"{path}: TensorRT failed to build the engine (see the TensorRT log above)")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            stream.write(bytes(serialized))
    atomic_write_json(os.fspath(path) + ".json", _metadata(spec, "tensorrt", precision, profile,
                                                           include_preprocessing,
                                                           tensorrt=getattr(trt, "__version__", None)))
    logger.info("wrote TensorRT engine %s", path)
    return path


def _metadata(spec, backend, precision, profile, include_preprocessing, **extra):
    low, mid, high = profile
    return {**spec.to_json(), "format": backend, "precision": precision,
            "include_preprocessing": bool(include_preprocessing),
            "profile": {"min": list(low), "opt": list(mid), "max": list(high)}, **extra}
