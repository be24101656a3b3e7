"""The command-line entry shared by every recipe: flags → config → the workflow's `run` → summary.

A workflow module provides `add_arguments(parser, defaults)`, `config_from_args(args, defaults)`,
`run(config)` and `summary_table(metrics)`; a recipe script is its CPU-sized default config plus
`main = lambda argv=None: recipe_main(argv, workflow_module, CPU_DEFAULTS, PAPER_SIZES, __doc__)`.

Example:
    >>> from tfseg.workflows import sunnybrook
    >>> recipe_main(["--help"], sunnybrook, sunnybrook.SunnybrookConfig(), {}, "demo")  # doctest: +SKIP
"""
import argparse
import dataclasses
import logging
import os
import sys

from tfseg.errors import TfsegError
from tfseg.training.config import override


@dataclasses.dataclass
class DataSplit:
    """Training and validation records (split by patient), the problems met finding them, and
    whether they come from the synthetic dataset."""

    train: list
    val: list
    problems: object
    synthetic: bool


def recipe_main(argv, workflow, defaults, paper, description):
    """Parse the recipe's flags, run the workflow and print its summary table.

    Args:
        argv: command-line arguments (None: `sys.argv[1:]`).
        workflow: the workflow module (`tfseg.workflows.sunnybrook`, `tfseg.workflows.brats`, ...).
        defaults: the recipe's config (sized for a CPU).
        paper: dotted-path overrides selected by `--paper` (the published sizes, for a GPU).
        description: the recipe's help text.

    Returns:
        The process exit code: 0, or 2 after printing a tfseg error (bad file, bad config).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    workflow.add_arguments(parser, defaults)
    parser.add_argument("--paper", action="store_true", help="the published model sizes (a GPU job)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = workflow.config_from_args(args, override(defaults, paper) if args.paper else defaults)
        metrics = workflow.run(config)
    except TfsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not metrics:  # a non-chief worker of a distributed run: the chief reports
        return 0
    print(workflow.summary_table(metrics))
    if metrics.get("skipped_records"):
        print(f"{metrics['skipped_records']} record(s) skipped: see the warnings above")
    print(f"outputs in {os.path.abspath(config.output_dir)}")
    return 0
