"""Generate the command-line reference from the argparse parsers of `tfseg`.

Renders `tfseg --help`, the help of every subcommand `tfseg.cli.build_parser` registers, and, for
`tfseg train`, the flags of every workflow in `tfseg.cli.WORKFLOWS` (the parser `tfseg train NAME`
builds from the workflow's `add_arguments`). New subcommands and workflows appear without an edit
here.

Run by mkdocs-gen-files during `mkdocs build` (see mkdocs.yml); `python docs/gen_cli.py` prints
the page instead.
"""
import argparse
import contextlib
import importlib
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT_PATH = "reference/cli.md"
HELP_WIDTH = "88"  # fits a code block of the theme without scrolling


def workflow_parser(name):
    """The parser of `tfseg train NAME`: the workflow's recipe flags with its config defaults."""
    from tfseg import cli

    module, config_name = cli.WORKFLOWS[name][:2]
    workflow = importlib.import_module(f"tfseg.workflows.{module}")
    parser = argparse.ArgumentParser(prog=f"tfseg train {name}")
    return workflow.add_arguments(parser, getattr(workflow, config_name)())


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_parsers():
    """`[(command, parser)]`: `tfseg`, each subcommand, and `tfseg train NAME` for every workflow."""
    from tfseg import cli

    parser = cli.build_parser()
    found = [("tfseg", parser)]
    for name, sub in _subcommands(parser).items():
        found.append((f"tfseg {name}", sub))
        if name == "train":
            found += [(f"tfseg train {workflow}", workflow_parser(workflow)) for workflow in cli.WORKFLOWS]
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
             "`tfseg train NAME` takes the flags of the workflow's recipe (`recipes/*.py`, which add "
             "`--paper`); every flag overrides a field of the JSON config given with `--config` "
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
