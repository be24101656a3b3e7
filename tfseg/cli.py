"""The `tfseg` command: write synthetic data, train a workflow, convert DICOM, export a model.

    tfseg synth sunnybrook|brats|lgg DATA_DIR [--cases 15] [--seed 0]
    tfseg train WORKFLOW [--paper] [--config cfg.json] [recipe flags ...]   (tfseg train --help: the list)
    tfseg merge-labels --wt wt.nii.gz --tc tc.nii.gz --et et.nii.gz labels.nii.gz
    tfseg convert DICOM_DIR OUT.nii.gz [--spacing 1 1 1] [--label] [--rtstruct RS.dcm [--roi Heart]
                  [--label-map]]
    tfseg export MODEL.keras OUT [--format savedmodel|onnx|tflite|tensorrt] [--image-size 128]
                 [--normalization zscore] [--input-shape 1,256,256,1] [--precision fp16] ...

Example:
    >>> main(["synth", "--help"])  # doctest: +SKIP
"""
import argparse
import json
import logging
import sys

from tfseg.errors import TfsegError


def _synth(args):
    if args.dataset == "sunnybrook":
        from tfseg.datasets.synthetic import write_sunnybrook

        written = write_sunnybrook(args.out, num_cases=args.cases, seed=args.seed, image_size=args.image_size)
        print(f"images:   {written.image_dir}\ncontours: {written.contour_dir}")
    elif args.dataset == "lgg":
        from tfseg.datasets.synthetic_lgg import write_lgg

        written = write_lgg(args.out, num_patients=args.cases, seed=args.seed, image_size=args.image_size)
        print(f"slices:   {written.kaggle_dir}")
    else:
        from tfseg.datasets.synthetic import write_brats

        written = write_brats(args.out, num_cases=args.cases, seed=args.seed)
        print(f"cases:    {written.root}\ndatalist: {written.datalist}")
    return 0


def _train(args, rest):
    from tfseg.workflows.entry import workflow_main

    return workflow_main(args.workflow, rest, prog=f"tfseg train {args.workflow}")


def _train_help():
    """The help of `tfseg train`: the workflows, one line each."""
    from tfseg.workflows.protocol import WORKFLOWS

    lines = ["usage: tfseg train WORKFLOW [flags]  (tfseg train WORKFLOW --help: its flags)", "", "workflows:"]
    width = max(len(name) for name in WORKFLOWS)
    lines += [f"  {name:<{width}}  {entry.summary}  (recipes/{entry.recipe})" for name, entry in sorted(WORKFLOWS.items())]
    return "\n".join(lines)


def _merge_labels(args):
    from tfseg.data.transforms.labels import merge_region_masks
    from tfseg.errors import DataError
    from tfseg.io.nifti import read_nifti, write_nifti

    volumes = {name: read_nifti(path) for name, path in (("WT", args.wt), ("TC", args.tc), ("ET", args.et))}
    shapes = {v.array.shape for v in volumes.values()}
    if len(shapes) != 1:
        raise DataError(args.wt, f"the WT, TC and ET masks differ in shape: {sorted(shapes)}")
    labels = merge_region_masks(volumes["WT"].array, volumes["TC"].array, volumes["ET"].array, source=args.wt)
    reference = volumes["WT"]
    print(write_nifti(args.out, labels, reference.affine, header=reference.header, dtype="uint8"))
    return 0


def _shape(text):
    """An argparse type: "1,256,256,1" -> (1, 256, 256, 1)."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,256,256,1, got {text!r}")
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes such as 1,256,256,1, got {text!r}")
    return shape


def _export(args):
    import keras

    import tfseg.losses  # noqa: F401  (registers custom objects)
    import tfseg.metrics  # noqa: F401
    import tfseg.models  # noqa: F401
    from tfseg.errors import ConfigError
    from tfseg.export import export_model
    from tfseg.export.savedmodel import ServingSpec

    model = keras.saving.load_model(args.model, compile=False)
    size = (args.image_size, args.image_size) if args.image_size else None
    names = tuple(args.class_names.split(",")) if args.class_names else ()
    spec = ServingSpec(image_size=size, stride=args.stride, in_channels=args.in_channels,
                       normalization=args.normalization, activation=args.activation, class_names=names)
    options = {}
    preprocessing = not args.no_preprocessing
    if args.format == "savedmodel":
        if args.no_preprocessing:
            raise ConfigError("--no-preprocessing applies to onnx, tflite and tensorrt; a SavedModel always "
                              "carries the preprocessing signature")
    elif args.format == "onnx":
        options = {"opset": args.opset, "include_preprocessing": preprocessing}
    elif args.format == "tflite":
        options = {"input_shape": args.input_shape, "quantize": args.quantize,
                   "include_preprocessing": preprocessing}
    else:
        options = {"precision": args.precision, "min_shape": args.min_shape, "opt_shape": args.input_shape,
                   "max_shape": args.max_shape, "include_preprocessing": preprocessing}
    path = export_model(model, args.out, args.format, spec, **options)
    if args.format == "savedmodel":
        print(json.dumps({"saved_model": path, "signature": "serving_default", "format": "savedmodel"}))
    else:
        print(json.dumps({"format": args.format, "path": str(path), "inputs": ["image"],
                          "outputs": ["probabilities", "labels"]}))
    return 0


def build_parser():
    """The argument parser of the `tfseg` command."""
    from tfseg import __version__

    parser = argparse.ArgumentParser(prog="tfseg", description="Medical image segmentation with TensorFlow/Keras.")
    parser.add_argument("--version", action="version", version=f"tfseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic dataset in a real on-disk layout")
    synth.add_argument("dataset", choices=("sunnybrook", "brats", "lgg"))
    synth.add_argument("out", help="folder to write")
    synth.add_argument("--cases", type=int, default=15, help="cases (lgg: patients)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=256, help="sunnybrook, lgg: image side")

    from tfseg.workflows.protocol import WORKFLOWS

    train = commands.add_parser("train", help="train a workflow (flags as in its recipe; --config JSON, --paper)",
                                add_help=False)
    train.add_argument("workflow", nargs="?", choices=sorted(WORKFLOWS))

    merge = commands.add_parser("merge-labels", help="merge WT/TC/ET region masks into one BraTS label map (1/2/4)")
    merge.add_argument("--wt", required=True, help="whole-tumour mask (NIfTI)")
    merge.add_argument("--tc", required=True, help="tumour-core mask (NIfTI)")
    merge.add_argument("--et", required=True, help="enhancing-tumour mask (NIfTI)")
    merge.add_argument("out", help="label map to write (NIfTI)")

    from tfseg.io.convert import add_convert_arguments

    add_convert_arguments(commands.add_parser("convert", help="convert a DICOM series to NIfTI (optionally resampled)"))

    export = commands.add_parser("export", help="export a .keras model: SavedModel (TF Serving), ONNX, TFLite, "
                                                "TensorRT")
    export.add_argument("model", help="a .keras file")
    export.add_argument("out", help="SavedModel directory, .onnx, .tflite or TensorRT engine file to write")
    export.add_argument("--format", default="savedmodel", choices=("savedmodel", "onnx", "tflite", "tensorrt"),
                        help="savedmodel (default), onnx (needs tfseg[onnx]), tflite, tensorrt (TF-TRT or tensorrt)")
    export.add_argument("--image-size", type=int, help="training size: inputs are resized to it and back")
    export.add_argument("--stride", type=int, default=32, help="pad inputs to a multiple of this (no --image-size)")
    export.add_argument("--in-channels", type=int, default=1)
    export.add_argument("--normalization", default="zscore",
                        help="per-image normalization inside the signature: zscore, zscore_nonzero, percentile, "
                             "minmax or none (checked against tfseg.data.transforms.intensity.NORMALIZATIONS)")
    export.add_argument("--activation", default="softmax", choices=("softmax", "sigmoid"))
    export.add_argument("--class-names", help="comma-separated output channel names")
    export.add_argument("--no-preprocessing", action="store_true",
                        help="onnx/tflite/tensorrt: export the bare model (preprocessed input; 2D or 3D)")
    export.add_argument("--input-shape", type=_shape, metavar="B,H,W,C",
                        help="tflite: the fixed input shape; tensorrt: the optimal shape of the engine profile")
    export.add_argument("--min-shape", type=_shape, metavar="B,H,W,C", help="tensorrt: smallest input shape")
    export.add_argument("--max-shape", type=_shape, metavar="B,H,W,C", help="tensorrt: largest input shape")
    export.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="tensorrt precision")
    export.add_argument("--quantize", choices=("float16", "dynamic"), help="tflite post-training quantization")
    export.add_argument("--opset", type=int, default=17, help="onnx opset")
    return parser


def main(argv=None):
    """Run the `tfseg` command; returns the exit code (2 for a tfseg error, with its message)."""
    from tfseg.utils.quiet import quiet_tensorflow

    quiet_tensorflow()
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "train":
            if args.workflow is None:
                print(_train_help())
                return 0 if {"-h", "--help"} & set(rest) else 2
            return _train(args, rest)
        if args.command == "merge-labels":
            return _merge_labels(args)
        if args.command == "convert":
            from tfseg.io.convert import run_convert

            print(run_convert(args))
            return 0
        return _export(args)
    except TfsegError as error:
        print(f"tfseg: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
