"""No module imports another module's private (`_name`) names."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def private_imports(root, folders):
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfseg"):
                    found += [f"{path.relative_to(root).as_posix()}:{node.lineno}: {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_") and not alias.name.endswith("__")]
    return found


def test_no_private_names_imported_across_modules():
    assert private_imports(ROOT, ["tfseg", "tests", "recipes", "tools", "benchmarks"]) == []


def test_the_check_finds_one(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("from tfseg.x import _hidden, shown\nfrom os import _exit\n")
    assert private_imports(tmp_path, ["pkg"]) == ["pkg/a.py:1: tfseg.x._hidden"]
