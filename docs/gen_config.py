"""Generate the configuration reference from the config dataclasses of every workflow.

For each workflow of `tfseg.workflows.protocol.WORKFLOWS`, one page lists every
field by its dotted JSON path, with its type, default, allowed values (`choice` fields) and the
description from the `Attributes:` section of its class docstring (or of a base class), plus the
workflow's built-in defaults as a JSON file and its `--paper` overrides. A workflow added to the table
gets its page without an edit here.

Run by mkdocs-gen-files during `mkdocs build` (see mkdocs.yml); `python docs/gen_config.py` prints
the pages instead.
"""
import dataclasses
import inspect
import json
import pathlib
import re
import sys
import typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT_DIR = "reference/config"

_TRAILING_DEFAULT = re.compile(r"\s*\([^()]*\)$")
_ATTRIBUTE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(?:\s*\([^)]*\))?:\s*(.*)$")


def workflow_configs():
    """`[(workflow name, module, config class)]` for every workflow of `tfseg train`, in the table's order."""
    from tfseg.workflows.protocol import WORKFLOWS

    found = []
    for name, entry in WORKFLOWS.items():
        module = entry.load()
        found.append((name, module, module.CONFIG_CLASS))
    return found


def attribute_docs(cls):
    """`{field: description}` from the `Attributes:` sections of `cls`'s docstring and its bases' (nearest wins)."""
    docs = {}
    for klass in reversed(inspect.getmro(cls)):
        docs.update(_parse_attributes(klass.__dict__.get("__doc__") or ""))
    return docs


def _parse_attributes(docstring):
    lines = inspect.cleandoc(docstring).splitlines()
    docs, current, indent, inside = {}, None, None, False
    for line in lines:
        if line.strip() == "Attributes:":
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if not line.strip():
            current = None
            continue
        match = _ATTRIBUTE.match(line)
        depth = len(line) - len(line.lstrip())
        if depth == 0:  # the section ended
            inside = False
            continue
        if match and (indent is None or depth == indent):
            indent = depth
            current = match.group(2)
            docs[current] = match.group(3).strip()
        elif current is not None and depth > indent:
            docs[current] += " " + line.strip()
    return docs


def summary_line(obj):
    """The first paragraph of an object's own docstring, on one line ("" without one)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def type_name(hint):
    """A readable name of a type annotation: `int`, `str | None`, `tuple[int, ...]`."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _json(value):
    return json.dumps(value, default=list)


def pretty_json(value, indent=0):
    """JSON with one key per line and every list or empty object on one line (`[48, 64, 64]`)."""
    if not isinstance(value, dict) or not value:
        return json.dumps(value)
    pad = " " * (indent + 2)
    items = [f"{pad}{json.dumps(key)}: {pretty_json(item, indent + 2)}" for key, item in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


class _FlagNames:
    """Stands in for parsed arguments: every attribute is its own name (see `flag_docs`)."""

    def __getattr__(self, name):
        return name


def flag_docs(name):
    """`{dotted path: (flag, help)}` for the config fields the common flags set (`--epochs` → `train.epochs`, ...).

    Read from `tfseg.workflows.entry.shared_overrides` and the help of the workflow's parser, so a
    field without an `Attributes:` entry is still described.
    """
    from tfseg.workflows.entry import build_parser, shared_overrides

    helps = {action.dest: (action.option_strings[-1], action.help) for action in build_parser(name)._actions
             if action.option_strings and action.help}
    return {path: helps[dest] for path, dest in shared_overrides(_FlagNames()).items()
            if isinstance(dest, str) and dest in helps}


def field_rows(cls, default, prefix="", flags=None):
    """Rows `(dotted path, type, default, description)` for every leaf field of a config dataclass.

    Nested dataclass fields are expanded (their rows carry the dotted path, e.g. `data.image_size`).

    Args:
        cls: the dataclass type.
        default: an instance holding the defaults (`cls()`).
        prefix: the dotted path of `cls` inside the whole config.
        flags: `{dotted path: (flag, help)}` describing fields their docstrings leave out.

    Returns:
        `[(section path, section class, [(path, type, default, description), ...]), ...]`, the
        top-level fields first, then one entry per nested section.
    """
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    rows, sections = [], []
    for field in dataclasses.fields(cls):
        value = getattr(default, field.name)
        path = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            sections += field_rows(type(value), value, f"{path}.", flags)
            continue
        description = docs.get(field.name, "")
        if not description and path in (flags or {}):
            flag, text = flags[path]
            text = _TRAILING_DEFAULT.sub("", text)  # the default has its own column
            description = f"{text} (flag `{flag}`)"
        choices = field.metadata.get("choices")
        if choices:
            allowed = "one of " + ", ".join(f"`{_json(c)}`" for c in choices)
            description = f"{description} ({allowed})" if description else allowed.capitalize()
        rows.append((path, type_name(hints[field.name]), _json(value), description))
    return [(prefix.rstrip("."), cls, rows)] + sections


def _cell(text):
    return text.replace("|", "\\|")


def render_workflow(name, module, config_class):
    """The Markdown page of one workflow's configuration."""
    from tfseg.training.config import to_dict
    from tfseg.workflows.protocol import get_workflow

    entry = get_workflow(name)
    defaults = entry.cpu_defaults()
    guide = module.__name__.rsplit(".", 1)[-1]
    see = f" The workflow is described in [its guide](../../{guide}.md)." if (ROOT / "docs" / f"{guide}.md").exists() else ""
    lines = [f"# {name}: `{config_class.__name__}`", "",
             f"`{module.__name__}.{config_class.__name__}`: {summary_line(config_class)}", "",
             f"`tfseg train {name}` and `python recipes/{entry.recipe}` resolve the config in one order: the "
             "workflow's built-in CPU-sized defaults (below), then `--paper`, then the fields of the JSON file given "
             "with `--config` (any subset; `{}` changes nothing), then the flags (see the "
             "[command-line reference](../cli.md)). Unknown keys, wrong types and values outside a field's choices "
             f"are rejected with the field's dotted path; `--print-config` prints the resolved config.{see}", "",
             "## Defaults", "", "```json", pretty_json(to_dict(defaults)), "```", ""]
    for path, section_class, rows in field_rows(config_class, defaults, flags=flag_docs(name)):
        if not rows:
            continue
        title = f"`{path}`" if path else "Top level"
        lines += [f"## {title}", ""]
        summary = summary_line(section_class)
        if summary and path:
            lines += [f"`{section_class.__name__}`: {summary}", ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        lines += [f"| `{p}` | `{_cell(t)}` | `{_cell(d)}` | {_cell(doc)} |" for p, t, d, doc in rows]
        lines.append("")
    paper = entry.paper_overrides()
    if paper:
        lines += ["## `--paper`", "", "`--paper` applies these overrides (the published settings; a GPU job) "
                  "before `--config` and the other flags:", "",
                  "| field | value |", "|---|---|"]
        lines += [f"| `{path}` | `{_cell(_json(value))}` |" for path, value in paper.items()]
        lines.append("")
    return "\n".join(lines)


def render_index(configs):
    """The overview page: one line per workflow."""
    from tfseg.workflows.protocol import get_workflow

    lines = ["# Configuration reference", "",
             "Each workflow's run is one config dataclass, read from JSON with `--config` and validated field by "
             "field (`tfseg.training.config.load_config`); command-line flags override it. Generated from the "
             "dataclasses of `tfseg.workflows`.", "",
             "| workflow | config | what |", "|---|---|---|"]
    for name, module, config_class in configs:
        summary = get_workflow(name).summary
        lines.append(f"| [{name}]({_page(name)}) | `{module.__name__}.{config_class.__name__}` | {_cell(summary)} |")
    return "\n".join(lines) + "\n"


def _page(name):
    return f"{name}.md"


def config_pages():
    """`{file name: Markdown}` of the configuration reference, the overview first."""
    configs = workflow_configs()
    pages = {"index.md": render_index(configs)}
    for name, module, config_class in configs:
        pages[_page(name)] = render_workflow(name, module, config_class)
    return pages


def write_pages():
    """Write the pages and their navigation (`SUMMARY.md`, read by mkdocs-literate-nav) through mkdocs-gen-files."""
    import mkdocs_gen_files

    pages = config_pages()
    for file_name, text in pages.items():
        with mkdocs_gen_files.open(f"{OUT_DIR}/{file_name}", "w") as stream:
            stream.write(text)
    summary = ["* [Overview](index.md)"] + [f"* [{f[:-3]}]({f})" for f in pages if f != "index.md"]
    with mkdocs_gen_files.open(f"{OUT_DIR}/SUMMARY.md", "w") as stream:
        stream.write("\n".join(summary) + "\n")


if str(ROOT) not in sys.path:  # import this checkout's tfseg
    sys.path.insert(0, str(ROOT))
if __name__ == "<run_path>":  # mkdocs-gen-files runs the script with runpy.run_path
    write_pages()
elif __name__ == "__main__":
    for page_name, page_text in config_pages().items():
        print(f"--- {OUT_DIR}/{page_name}\n{page_text}")
