"""The `tfseg` command: write synthetic data, train a workflow, export a model.

    tfseg synth sunnybrook DATA_DIR [--cases 15] [--seed 0]
    tfseg train sunnybrook [--config cfg.json] [recipe flags ...]
    tfseg export MODEL.keras OUT_DIR [--image-size 128] [--normalization zscore]

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
    return 0


def _train(args, rest):
    from tfseg.workflows import sunnybrook as sb

    parser = sb.add_arguments(argparse.ArgumentParser(prog="tfseg train sunnybrook"), sb.SunnybrookConfig())
    options = parser.parse_args(rest)
    config = sb.config_from_args(options, sb.SunnybrookConfig())
    metrics = sb.run(config)
    print(sb.summary_table(metrics))
    return 0


def _export(args):
    import keras

    import tfseg.losses  # noqa: F401  (registers custom objects)
    import tfseg.metrics  # noqa: F401
    import tfseg.models  # noqa: F401
    from tfseg.export.savedmodel import ServingSpec, export_savedmodel

    model = keras.saving.load_model(args.model, compile=False)
    size = (args.image_size, args.image_size) if args.image_size else None
    names = tuple(args.class_names.split(",")) if args.class_names else ()
    spec = ServingSpec(image_size=size, stride=args.stride, in_channels=args.in_channels,
                       normalization=args.normalization, activation=args.activation, class_names=names)
    path = export_savedmodel(model, args.out, spec)
    print(json.dumps({"saved_model": path, "signature": "serving_default"}))
    return 0


def build_parser():
    """The argument parser of the `tfseg` command."""
    parser = argparse.ArgumentParser(prog="tfseg", description="Medical image segmentation with TensorFlow/Keras.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic dataset in a real on-disk layout")
    synth.add_argument("dataset", choices=("sunnybrook",))
    synth.add_argument("out", help="folder to write")
    synth.add_argument("--cases", type=int, default=15)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=256)

    train = commands.add_parser("train", help="train a workflow (flags as in its recipe; --config JSON)",
                                add_help=False)
    train.add_argument("workflow", choices=("sunnybrook",))

    export = commands.add_parser("export", help="export a .keras model as a SavedModel for TF Serving")
    export.add_argument("model", help="a .keras file")
    export.add_argument("out", help="SavedModel directory to write")
    export.add_argument("--image-size", type=int, help="training size: inputs are resized to it and back")
    export.add_argument("--stride", type=int, default=32, help="pad inputs to a multiple of this (no --image-size)")
    export.add_argument("--in-channels", type=int, default=1)
    export.add_argument("--normalization", default="zscore", choices=("zscore", "minmax", "none"))
    export.add_argument("--activation", default="softmax", choices=("softmax", "sigmoid"))
    export.add_argument("--class-names", help="comma-separated output channel names")
    return parser


def main(argv=None):
    """Run the `tfseg` command; returns the exit code (2 for a tfseg error, with its message)."""
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
            return _train(args, rest)
        return _export(args)
    except TfsegError as error:
        print(f"tfseg: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
