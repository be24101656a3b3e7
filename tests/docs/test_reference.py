"""The generated reference pages (docs/gen_*.py) cover every workflow, subcommand and module, and the
site's navigation lists every page, so nothing new can be left out of the documentation.

These run without mkdocs: the generators render Markdown from the code; `mkdocs build --strict`
(CI, the `docs` extra) renders the site itself.
"""
import dataclasses
import importlib.util
import json
import pathlib
import re

import pytest

from tfseg import cli
from tfseg.training.config import to_dict
from tfseg.workflows.protocol import WORKFLOWS

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen_cli():
    return _load("gen_cli")


@pytest.fixture(scope="module")
def gen_config():
    return _load("gen_config")


@pytest.fixture(scope="module")
def gen_api():
    return _load("gen_api")


@pytest.fixture(scope="module")
def cli_page(gen_cli):
    return gen_cli.render_cli()


def test_cli_reference_has_every_subcommand(cli_page, gen_cli):
    subcommands = gen_cli._subcommands(cli.build_parser())
    assert {"synth", "train", "convert", "export", "merge-labels"} <= set(subcommands)
    for name, parser in subcommands.items():
        assert f"## `tfseg {name}`" in cli_page
        assert parser.format_usage().split()[1:3] == ["tfseg", name]


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_cli_reference_has_every_workflows_flags(cli_page, workflow):
    section = cli_page.split(f"## `tfseg train {workflow}`\n", 1)[1].split("\n## ", 1)[0]
    assert f"usage: tfseg train {workflow}" in section
    for flag in ("--config", "--epochs", "--output-dir", "--resume", "--distribute"):  # the common flags
        assert flag in section


def test_cli_help_is_wrapped_at_a_fixed_width(cli_page, monkeypatch, gen_cli):
    monkeypatch.setenv("COLUMNS", "40")
    assert gen_cli.render_cli() == cli_page


@pytest.fixture(scope="module")
def config_pages(gen_config):
    return gen_config.config_pages()


def _leaf_paths(config, prefix=""):
    paths = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            paths += _leaf_paths(value, f"{prefix}{field.name}.")
        else:
            paths.append(f"{prefix}{field.name}")
    return paths


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_config_reference_has_every_field_of_every_workflow(config_pages, workflow):
    entry = WORKFLOWS[workflow]
    config_class, defaults = entry.load().CONFIG_CLASS, entry.cpu_defaults()
    page = config_pages[f"{workflow}.md"].split("## `--paper`")[0]
    rows = re.findall(r"^\| `([a-z_.0-9]+)` \|", page, flags=re.MULTILINE)
    assert sorted(rows) == sorted(_leaf_paths(config_class()))
    assert isinstance(defaults, config_class)
    block = page.split("## Defaults\n\n```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == to_dict(defaults)  # the built-in defaults, a valid config file
    assert f"[{workflow}]({workflow}.md)" in config_pages["index.md"]


def test_config_rows_carry_types_defaults_choices_and_docs(config_pages):
    page = config_pages["sunnybrook.md"]
    defaults, paper = WORKFLOWS["sunnybrook"].cpu_defaults(), WORKFLOWS["sunnybrook"].paper_overrides()
    # fields of tfseg.workflows.sunnybrook.SunnybrookConfig, documented in DataSection's Attributes
    assert ("| `data.contour` | `str` | `\"icontour\"` | which contour is the target: \"icontour\" (endocardium) "
            "or \"ocontour\" (epicardium). (one of `\"icontour\"`, `\"ocontour\"`) |") in page
    assert "| `data.image_dir` | `str \\| None` | `null` | root of the DICOM case folders;" in page
    # inherited from ImagePreparation, documented there
    assert "| `data.workers` | `int \\| None` | `null` | decode threads (default: cores). |" in page
    # the shared TrainSection's Attributes; a field without one is described by the flag that sets it
    assert f"| `train.epochs` | `int` | `{defaults.train.epochs}` | training epochs. |" in page
    assert (f"| `output_dir` | `str` | `\"{defaults.output_dir}\"` | where checkpoints, logs, predictions and exports "
            "go. |") in page  # the shared RunConfig's Attributes
    # the --paper overrides
    assert f'| `train.batch_size` | `{paper["train.batch_size"]}` |' in page.split("## `--paper`")[1]


def test_attribute_docs_read_continuation_lines_and_bases(gen_config):
    @dataclasses.dataclass
    class Base:
        """Base.

        Attributes:
            a: first line
                and its continuation.
            b (int): typed.
        """

        a: int = 1
        b: int = 2

    @dataclasses.dataclass
    class Child(Base):
        """Child.

        Attributes:
            b: overridden here.

        Example:
            c: not an attribute.
        """

        c: int = 3

    assert gen_config.attribute_docs(Child) == {"a": "first line and its continuation.", "b": "overridden here."}


def test_api_reference_covers_every_module(gen_api):
    documented = [module for _, modules in gen_api.api_pages().values() for module in modules]
    assert len(documented) == len(set(documented)), "a module is on two pages"
    expected = set()
    for path in (ROOT / "tfseg").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif any(part.startswith("_") for part in parts):
            continue
        expected.add(".".join(parts))
    assert set(documented) == expected


def test_api_package_blocks_list_only_what_the_package_defines(gen_api):
    # tfseg.export and tfseg.models only re-export (their submodules define)
    assert not gen_api.own_members("tfseg.export")
    assert gen_api.render_block("tfseg.models") == "::: tfseg.models\n    options:\n      members: false\n"
    assert gen_api.own_members("tfseg.losses") is None  # a module: everything public
    assert gen_api.render_block("tfseg.losses") == "::: tfseg.losses\n"


def test_every_page_is_in_the_site_navigation():
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n", 1)[1]
    targets = {t for t in re.findall(r":\s*([\w./-]+\.(?:md|ipynb))\s*$", nav, flags=re.MULTILINE)
               if not t.startswith("reference/")}  # generated at build time
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*") if p.suffix in (".md", ".ipynb")
             and not p.relative_to(DOCS).as_posix().startswith("reference/")}
    assert pages <= targets, f"add these pages to the nav of mkdocs.yml: {sorted(pages - targets)}"
    assert targets <= pages, f"the nav of mkdocs.yml names missing pages: {sorted(targets - pages)}"
    for script in ("gen_api.py", "gen_cli.py", "gen_config.py"):
        assert f"docs/{script}" in config
