"""The example notebooks in docs/notebooks: stored without outputs, and run top to bottom at tiny sizes.

Each notebook is executed in a fresh Jupyter kernel (nbclient) with `TFSEG_NOTEBOOK_TINY=1` and
this checkout first on the kernel's path; a cell that raises fails the test with its traceback.
"""
import os
import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "docs" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: Text each notebook must print at its tiny size (figures worked out from the sizes in its first cell).
EXPECTED_TEXT = {
    # 3 cases x 8 contoured images; the split holds out 1 of the 3 patients
    "quickstart.ipynb": ["24 contoured images; 16 for training, 8 for validation", "batch: (4, 64, 64, 1)"],
    # 3 patients x 6 slices, 1 patient held out
    "family_2d.ipynb": ["12 training slices, 6 test slices of (64, 64, 3)"],
    # a (32, 32, 24) NIfTI volume is (24, 32, 32) in memory; 16-voxel windows at 50% overlap: 2 x 3 x 3
    "family_3d.ipynb": ["crop: (1, 16, 16, 16, 4) targets: (1, 16, 16, 16, 3)",
                        "volume (24, 32, 32, 4): 18 windows on the full grid"],
}


def test_the_expected_notebooks_exist():
    assert {path.name for path in NOTEBOOKS} >= {"quickstart.ipynb", "family_2d.ipynb", "family_3d.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    assert all(not cell.outputs and cell.execution_count is None for cell in code), \
        f"{path.name} is stored with outputs: clear them before committing"
    assert "TFSEG_NOTEBOOK_TINY" in code[0].source, f"{path.name}: the first code cell must read TFSEG_NOTEBOOK_TINY"


def _text(outputs):
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_at_tiny_size(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TFSEG_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks write their data under tempfile.mkdtemp()
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = _text(outputs)
    for expected in EXPECTED_TEXT.get(path.name, []):
        assert expected in printed, f"{path.name} did not print {expected!r}; it printed:\n{printed}"
    figures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert figures, f"{path.name} showed no figure"
