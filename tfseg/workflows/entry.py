"""The one entry of every workflow: flags -> resolved config -> `run` -> summary table.

`python recipes/<recipe>.py ...` and `tfseg train <workflow> ...` both call `workflow_main`, with
the same flags and the same defaults. The config is resolved in a fixed order, each step
overriding the one before:

1. the workflow's built-in CPU defaults (sized for a 2-core CPU);
2. `--paper`: the published settings of the workflow (a GPU job);
3. `--config FILE`: the fields of a JSON config (the others keep their values);
4. flags (`--epochs 5`, `--data-dir ...`).

`--print-config` prints the resolved config as JSON and stops; running again with
`--config printed.json` reproduces the run.

Example:
    >>> config = resolve_config("lgg", ["--epochs", "3", "--paper"])
    >>> config.train.epochs, config.data.image_size                       # flag, then paper
    (3, 256)
"""
import argparse
import json
import logging
import os
import sys

from tfseg.errors import TfsegError
from tfseg.training.config import apply_config_file, override, to_dict
from tfseg.training.distributed import DISTRIBUTE_CHOICES
from tfseg.workflows.protocol import get_workflow

logger = logging.getLogger(__name__)


def add_shared_arguments(parser, defaults):
    """The flags every workflow has, with the workflow's defaults shown in the help text."""
    train = defaults.train
    parser.add_argument("--config", help="JSON config file: its fields override the defaults (and --paper); "
                                         "flags override it")
    parser.add_argument("--paper", action="store_true", help="the published settings of the workflow (a GPU job)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and stop")
    parser.add_argument("--epochs", type=int, help=f"training epochs ({train.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"samples per batch per worker ({train.batch_size})")
    parser.add_argument("--learning-rate", type=float, help=f"initial learning rate ({train.learning_rate})")
    parser.add_argument("--output-dir", help=f"where checkpoints, logs, predictions and exports go "
                                             f"({defaults.output_dir})")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    parser.add_argument("--seed", type=int, help=f"seed for the split, shuffling and augmentation ({train.seed})")
    parser.add_argument("--on-error", choices=("skip", "raise"),
                        help=f"a bad file: skip it (reported) or stop ({defaults.data.on_error})")
    parser.add_argument("--distribute", choices=DISTRIBUTE_CHOICES,
                        help=f"distribution: horovod under horovodrun, multiworker reads TF_CONFIG "
                             f"({defaults.distribute})")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def shared_overrides(args):
    """Dotted-path updates of the shared flags (None: not given)."""
    return {"train.epochs": args.epochs, "train.batch_size": args.batch_size,
            "train.learning_rate": args.learning_rate, "train.seed": args.seed, "output_dir": args.output_dir,
            "resume": args.resume, "data.on_error": args.on_error, "distribute": args.distribute,
            "train.verbose": 0 if args.quiet else None}


def build_parser(name, description=None, prog=None):
    """The argument parser of workflow `name` (shared flags + the workflow's own)."""
    entry = get_workflow(name)
    module, defaults = entry.load(), entry.cpu_defaults()
    parser = argparse.ArgumentParser(prog=prog, description=description or module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, defaults)
    module.add_arguments(parser, defaults)
    return parser


def _dotted_keys(updates, prefix=""):
    """The dotted paths a (nested) update dict sets: `{"train": {"epochs": 3}}` -> `{"train.epochs"}`."""
    keys = set()
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and "." not in key:
            keys |= _dotted_keys(value, f"{path}.") | {path}
        elif value is not None:
            keys.add(path)
    return keys


def config_from_args(name, args):
    """The config of workflow `name` resolved from parsed `args`: defaults -> --paper -> --config -> flags.

    A workflow module may define `adjust_config(config, explicit)`, called last with the set of
    dotted paths the user chose (by `--paper`, the file or a flag): it derives the rest from the
    data (e.g. crop sizes from a dataset fingerprint) without overriding those.
    """
    from tfseg.training.config import read_json_config

    entry = get_workflow(name)
    module = entry.load()
    config = entry.cpu_defaults()
    explicit = set()
    if args.paper:
        config = override(config, entry.paper_overrides(), where="paper")
        explicit |= _dotted_keys(entry.paper_overrides())
    if args.config:
        config = apply_config_file(config, args.config)
        explicit |= _dotted_keys(read_json_config(args.config))
    flags = {**shared_overrides(args), **module.flag_overrides(args)}
    config = override(config, flags)
    explicit |= _dotted_keys(flags)
    adjust = getattr(module, "adjust_config", None)
    return adjust(config, explicit) if adjust is not None else config


def resolve_config(name, argv=None):
    """Parse `argv` with the parser of workflow `name` and return the resolved config."""
    return config_from_args(name, build_parser(name).parse_args(argv))


def workflow_main(name, argv=None, description=None, prog=None):
    """Run workflow `name` from command-line arguments; the entry of the recipes and `tfseg train`.

    Args:
        name: a key of `tfseg.workflows.protocol.WORKFLOWS`.
        argv: the arguments (None: `sys.argv[1:]`).
        description: the help text (a recipe passes its docstring).
        prog: the program name shown in the help.

    Returns:
        The process exit code: 0, or 2 after printing a tfseg error (bad file, bad config).
    """
    from tfseg.utils.quiet import quiet_tensorflow

    quiet_tensorflow()
    parser = build_parser(name, description, prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(name, args)
        if args.print_config:
            print(json.dumps(to_dict(config), indent=2))
            return 0
        metrics = get_workflow(name).load().run(config)
    except TfsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not metrics:  # a non-chief worker of a distributed run: the chief reports
        return 0
    print(get_workflow(name).load().summary_table(metrics))
    if metrics.get("skipped_records"):
        print(f"{metrics['skipped_records']} record(s) skipped: see the warnings above")
    print(f"outputs in {os.path.abspath(config.output_dir)}")
    return 0
