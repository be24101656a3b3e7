"""Generate the command-line reference from the argparse parsers of `tfseg`.

Renders `tfseg --help`, the help of every subcommand `tfseg.cli.build_parser` registers, and, for
`tfseg train`, the flags of every workflow of `tfseg.workflows.protocol.WORKFLOWS` (the parser of
`tfseg.workflows.entry.build_parser`, shared with the recipes). New subcommands and workflows appear without an edit
here.

Run by mkdocs-gen-files during `mkdocs build` (see mkdocs.yml); `python docs/gen_cli.py` prints
the page instead.
"""
import argparse
import contextlib
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT_PATH = "reference/cli.md"
HELP_WIDTH = "88"  # fits a code block of the theme without scrolling


def workflow_parser(name):
    """The parser of `tfseg train NAME` (the same flags as its recipe), described by the workflow's summary."""
    from tfseg.workflows.entry import build_parser
    from tfseg.workflows.protocol import get_workflow

    return build_parser(name, description=get_workflow(name).summary, prog=f"tfseg train {name}")


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_parsers():
    """`[(command, parser)]`: `tfseg`, each subcommand, and `tfseg train NAME` for every workflow."""
    from tfseg import cli
    from tfseg.workflows.protocol import WORKFLOWS

    parser = cli.build_parser()
    found = [("tfseg", parser)]
    for name, sub in _subcommands(parser).items():
        found.append((f"tfseg {name}", sub))
        if name == "train":
            found += [(f"tfseg train {workflow}", workflow_parser(workflow)) for workflow in WORKFLOWS]
    return found


@contextlib.contextmanager
def _fixed_width():
    """argparse wraps help to the terminal's width: fix it so the page does not depend on the machine."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def render_cli():
    """The Markdown of the command-line reference page."""
    lines = ["# Command-line reference", "",
             "Generated from the argument parsers of `tfseg.cli` and of each workflow. "
             "`tfseg train NAME` takes the same flags as the workflow's recipe in `recipes/`; "
             "every flag overrides a field of the JSON config given with `--config` "
             "(see [Configuration](config/index.md)).", ""]
    with _fixed_width():
        for command, parser in cli_parsers():
            lines += [f"## `{command}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def write_page():
    """Write the page through mkdocs-gen-files."""
    import mkdocs_gen_files

    with mkdocs_gen_files.open(OUT_PATH, "w") as stream:
        stream.write(render_cli())


if str(ROOT) not in sys.path:  # import this checkout's tfseg
    sys.path.insert(0, str(ROOT))
if __name__ == "<run_path>":  # mkdocs-gen-files runs the script with runpy.run_path
    write_page()
elif __name__ == "__main__":
    print(render_cli())
