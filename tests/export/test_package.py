"""tfseg.export only re-exports; importing it is light."""
import ast
import os
import subprocess
import sys

import tfseg.export
from tfseg.export import dispatch, endpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_init_defines_no_logic():
    tree = ast.parse(open(tfseg.export.__file__, encoding="utf-8").read())
    assert not [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert tfseg.export.export_model is dispatch.export_model
    assert tfseg.export.serving_endpoint is endpoint.serving_endpoint
    assert tfseg.export.default_spec is endpoint.default_spec
    assert sorted(tfseg.export.__all__) == sorted(["FORMATS", "export_model", "default_spec", "serving_endpoint"])


def test_no_submodule_imports_the_package_back():
    folder = os.path.dirname(tfseg.export.__file__)
    for name in os.listdir(folder):
        if name.endswith(".py") and name != "__init__.py":
            tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
            back = [node.lineno for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module == "tfseg.export"]
            assert back == [], f"{name} imports tfseg.export back at lines {back}"


def test_import_is_light():
    code = "import sys, tfseg.export; print(tfseg.export.FORMATS, 'tensorflow' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('savedmodel', 'onnx', 'tflite', 'tensorrt') False"
