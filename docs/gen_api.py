"""Generate the API reference: one page per stage of tfseg, one `::: module` block per module.

The pages are found by walking the `tfseg/` folder, so a new module appears on its stage's page
and a new subpackage gets a page of its own without any edit here. `PAGES` only groups the
top-level modules and orders the pages; mkdocstrings renders each block from the docstrings.

Run by mkdocs-gen-files during `mkdocs build` (see mkdocs.yml); `python docs/gen_api.py` prints
the pages instead.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfseg"
OUT_DIR = "reference/api"

#: page name -> (title, the top-level entries it holds: subpackages or modules of tfseg), in site order.
PAGES = {
    "io": ("tfseg.io: files in and out", ["io"]),
    "datasets": ("tfseg.datasets: on-disk layouts and synthetic data", ["datasets"]),
    "data": ("tfseg.data: tf.data pipelines and transforms", ["data"]),
    "models": ("tfseg.models: builders and the registry", ["models"]),
    "losses_metrics": ("tfseg.losses and tfseg.metrics", ["losses", "metrics"]),
    "training": ("tfseg.training: trainer, checkpoints, configs, distribution", ["training"]),
    "inference": ("tfseg.inference: sliding windows, TTA, writers", ["inference"]),
    "export": ("tfseg.export: SavedModel, ONNX, TFLite, TensorRT", ["export"]),
    "viz": ("tfseg.viz: overlays, GIFs, curves", ["viz"]),
    "workflows": ("tfseg.workflows: the steps of each workflow", ["workflows"]),
    "utils": ("tfseg, tfseg.errors, tfseg.reports, tfseg.utils", ["__init__", "errors", "reports", "utils"]),
    "cli": ("tfseg.cli: the tfseg command", ["cli"]),
}


def _dotted(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(entry):
    """The dotted names of a top-level entry of tfseg: a module, or a package and every module below it."""
    target = PACKAGE / entry
    if target.is_dir():
        files = sorted(target.rglob("*.py"), key=lambda p: (p.parent.relative_to(target).parts, p.name != "__init__.py",
                                                             p.name))
        return [_dotted(p) for p in files if not any(part.startswith(("_", ".")) and part != "__init__.py"
                                                     for part in p.relative_to(target).parts)]
    return [_dotted(target.with_suffix(".py"))]


def top_level_entries():
    """The subpackages and modules directly in `tfseg/` (private `_x.py` files excluded)."""
    entries = [p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    entries += [p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_") or p.stem == "__init__"]
    return sorted(entries)


def api_pages():
    """`{page name: (title, [dotted module names])}` for every module of tfseg, in site order.

    Entries of `PAGES` come first; a subpackage or module that no page lists gets a page of its own.
    """
    pages = {}
    listed = set()
    for name, (title, entries) in PAGES.items():
        present = [e for e in entries if (PACKAGE / e).is_dir() or (PACKAGE / f"{e}.py").exists()]
        if present:
            pages[name] = (title, [m for e in present for m in modules_under(e)])
            listed.update(present)
    for entry in top_level_entries():
        if entry not in listed:
            pages[entry] = (f"tfseg.{entry}", modules_under(entry))
    return pages


def own_members(module):
    """The public functions and classes a package's `__init__.py` defines itself, or None for a plain module.

    A package re-exports names of its modules (`from tfseg.models.fcn import fcn8s`); those are
    documented with their module, so the package's block lists only what it defines.
    """
    init = PACKAGE.parent.joinpath(*module.split(".")) / "__init__.py"
    if not init.exists():
        return None
    tree = ast.parse(init.read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and not node.name.startswith("_")]


def render_block(module):
    """One mkdocstrings block: the module's docstring and members (a package: its own members only)."""
    members = own_members(module)
    if members is None:
        return f"::: {module}\n"
    listed = "\n".join(f"        - {name}" for name in members)
    return f"::: {module}\n    options:\n      members:\n{listed}\n" if members else \
        f"::: {module}\n    options:\n      members: false\n"


def render_page(title, modules):
    """The Markdown of one reference page: a title and one mkdocstrings block per module."""
    return "\n".join([f"# {title}", ""] + [render_block(module) for module in modules])


def write_pages():
    """Write the pages and their navigation (`SUMMARY.md`, read by mkdocs-literate-nav) through mkdocs-gen-files."""
    import mkdocs_gen_files

    summary = []
    for name, (title, modules) in api_pages().items():
        with mkdocs_gen_files.open(f"{OUT_DIR}/{name}.md", "w") as stream:
            stream.write(render_page(title, modules))
        summary.append(f"* [{title.split(':')[0]}]({name}.md)")
    with mkdocs_gen_files.open(f"{OUT_DIR}/SUMMARY.md", "w") as stream:
        stream.write("\n".join(summary) + "\n")


if __name__ == "<run_path>":  # mkdocs-gen-files runs the script with runpy.run_path
    write_pages()
elif __name__ == "__main__":
    for page, (page_title, page_modules) in api_pages().items():
        print(f"--- {OUT_DIR}/{page}.md\n{render_page(page_title, page_modules)}")
