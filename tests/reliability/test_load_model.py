"""A recipe's `model.keras` loads in a fresh Python with plain Keras once `tfseg` is imported."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the run_folder helper
from run_folder import write_run_folder  # noqa: E402


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    write_run_folder(folder)
    return folder


def _fresh_python(code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_plain_keras_load_after_import_tfseg_in_a_fresh_process(run_dir):
    path = str(run_dir / "model.keras")
    code = (
        "import sys\n"
        "import tfseg\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'import tfseg must stay light'\n"
        "import keras\n"
        f"model = keras.saving.load_model({path!r})\n"
        "print(model.output_names)\n"
        # imported the other way round, and through tfseg.load_model
        f"print(tfseg.load_model({path!r}).count_params() == model.count_params())\n"
    )
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["['probabilities',", "'reconstruction']", "True"]
    keras_first = _fresh_python(f"import keras\nimport tfseg\nprint(keras.saving.load_model({path!r}).name)")
    assert keras_first.returncode == 0, keras_first.stderr[-3000:]
    assert keras_first.stdout.strip() == "segresnet_vae"


def test_load_model_errors_name_the_file(tmp_path):
    from tfseg import load_model
    from tfseg.errors import DataError

    with pytest.raises(DataError, match=r"missing\.keras: file not found$"):
        load_model(tmp_path / "missing.keras")
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(DataError, match=r"notes\.keras: not a Keras model"):
        load_model(text)
    with pytest.raises(DataError, match="is a folder"):
        load_model(tmp_path)
