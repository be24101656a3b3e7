"""Export a finished run: its inference model, with the preprocessing the run recorded.

`tfseg export RUN_DIR OUT` (or `tfseg export RUN_DIR/model.keras OUT`) needs no retyping of sizes,
channels, normalization or class names: they are read from the run's own SavedModel metadata
(`saved_model/assets.extra/tfseg.json`, written with the run's `ServingSpec`); explicit flags
still override them. A training model with extra outputs (SegResNet's VAE branch) is exported
through its segmentation path only (`tfseg.models.segresnet.inference_model`).

Example:
    >>> import os, tempfile
    >>> find_run_model(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfseg.errors.DataError: ...: no model.keras or best.keras in this folder; expected a run folder or a .keras file
"""
import dataclasses
import json
import logging
import os

from tfseg.errors import DataError

logger = logging.getLogger(__name__)

#: Model files looked for in a run folder, in order.
RUN_MODEL_FILES = ("model.keras", "best.keras")
#: Where a run keeps the preprocessing of its SavedModel, relative to the run folder.
RUN_SPEC_FILE = os.path.join("saved_model", "assets.extra", "tfseg.json")


def find_run_model(source):
    """`(model file, run folder)` for a run folder or a `.keras` file inside one.

    Raises:
        DataError: `source` does not exist, or a folder holds no model file.
    """
    source = os.path.abspath(os.fspath(source))
    if os.path.isdir(source):
        for name in RUN_MODEL_FILES:
            if os.path.isfile(os.path.join(source, name)):
                return os.path.join(source, name), source
        raise DataError(source, f"no {' or '.join(RUN_MODEL_FILES)} in this folder; expected a run folder or a "
                                ".keras file")
    if not os.path.exists(source):
        raise DataError(source, "file not found")
    return source, os.path.dirname(source)


def run_spec(run_dir):
    """The `ServingSpec` a run exported with (from its SavedModel metadata), or None if it has none.

    Raises:
        DataError: the metadata file exists but cannot be read.
    """
    from tfseg.export.savedmodel import ServingSpec

    path = os.path.join(run_dir, RUN_SPEC_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(path, f"unreadable export metadata: {error}") from None
    if not isinstance(data, dict):
        raise DataError(path, "export metadata must be a JSON object")
    fields = {f.name for f in dataclasses.fields(ServingSpec)}
    values = {k: v for k, v in data.items() if k in fields}
    for key in ("image_size", "class_names"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return ServingSpec(**values)


def inference_network(model):
    """The model to serve: the `probabilities` path of a multi-output training model, else `model`."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) > 1 or isinstance(model.output, dict):
        if "probabilities" not in names:
            raise DataError(model.name, f"a model with outputs {names} has no 'probabilities' output to export")
        from tfseg.models.segresnet import inference_model

        spatial = len(model.input_shape) - 2
        return inference_model(model, input_shape=(None,) * spatial + (model.input_shape[-1],))
    return model


def export_run(source, out, format="savedmodel", spec_overrides=None, **options):
    """Export the model of a run folder (or a `.keras` file) with the run's own serving spec.

    Args:
        source: a run folder (holding `model.keras` or `best.keras`) or a `.keras` file.
        out: what to write (a SavedModel folder, `.onnx`, `.tflite` or engine file).
        format: one of `tfseg.export.FORMATS`.
        spec_overrides: `ServingSpec` fields to change, e.g. `{"stride": 16}` (None values ignored).
        **options: the format's options (see `tfseg.export.export_model`).

    Returns:
        What `export_model` returns (the path written).

    Raises:
        DataError: a missing or unreadable model file, or metadata that cannot be read.
    """
    from tfseg.export.dispatch import export_model
    from tfseg.export.endpoint import default_spec
    from tfseg.saving import load_model

    model_path, run_dir = find_run_model(source)
    model = load_model(model_path)
    network = inference_network(model)
    spec = run_spec(run_dir)
    if spec is None:
        spec = default_spec(network)
        logger.warning("%s has no %s: exporting with the default preprocessing (%s); give the flags to change it",
                       run_dir, RUN_SPEC_FILE, spec)
    changes = {k: v for k, v in (spec_overrides or {}).items() if v is not None}
    if changes:
        spec = dataclasses.replace(spec, **changes)
    logger.info("exporting %s (%s) with %s", model_path, network.name, spec)
    return export_model(network, out, format, spec, **options)


def run_export(args):
    """The `tfseg export` command: `args` from its parser (flags left unset take the run's values)."""
    from tfseg.errors import ConfigError

    overrides = {"image_size": (args.image_size, args.image_size) if args.image_size else None,
                 "stride": args.stride, "in_channels": args.in_channels, "normalization": args.normalization,
                 "activation": args.activation,
                 "class_names": tuple(args.class_names.split(",")) if args.class_names else None}
    preprocessing = not args.no_preprocessing
    if args.format == "savedmodel":
        if args.no_preprocessing:
            raise ConfigError("--no-preprocessing applies to onnx, tflite and tensorrt; a SavedModel always "
                              "carries the preprocessing signature")
        options = {}
    elif args.format == "onnx":
        options = {"opset": args.opset, "include_preprocessing": preprocessing}
    elif args.format == "tflite":
        options = {"input_shape": args.input_shape, "quantize": args.quantize, "include_preprocessing": preprocessing}
    else:
        options = {"precision": args.precision, "min_shape": args.min_shape, "opt_shape": args.input_shape,
                   "max_shape": args.max_shape, "include_preprocessing": preprocessing}
    path = export_run(args.model, args.out, args.format, overrides, **options)
    if args.format == "savedmodel":
        print(json.dumps({"saved_model": path, "signature": "serving_default", "format": "savedmodel"}))
    else:
        print(json.dumps({"format": args.format, "path": str(path), "inputs": ["image"],
                          "outputs": ["probabilities", "labels"]}))
    return 0
