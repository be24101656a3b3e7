"""`tfseg export RUN_DIR OUT`: the inference model, with the run's own preprocessing, no retyping;
a missing or non-model file is one line naming it."""
import sys
from pathlib import Path

import numpy as np
import pytest

from tfseg.cli import main
from tfseg.export.savedmodel import read_metadata

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the run_folder helper
from run_folder import write_run_folder  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    spec = write_run_folder(folder)
    return folder, spec


def _serve(path, image):
    import tensorflow as tf

    return tf.saved_model.load(str(path)).signatures["serving_default"](image=tf.constant(image))


@pytest.mark.parametrize("source", ["folder", "model.keras"])
def test_export_of_the_vae_training_model_takes_the_run_spec(run_dir, tmp_path, source, capsys):
    folder, spec = run_dir
    out = tmp_path / "exported"
    assert main(["export", str(folder if source == "folder" else folder / "model.keras"), str(out)]) == 0
    metadata = read_metadata(str(out))
    assert (metadata["in_channels"], metadata["normalization"], metadata["activation"], metadata["stride"],
            metadata["label_map"], metadata["class_names"]) == (4, "zscore_nonzero", "sigmoid", 2, "brats",
                                                                ["WT", "TC", "ET"])
    image = np.random.default_rng(0).normal(size=(1, 12, 16, 14, 4)).astype("float32")
    exported, original = _serve(out, image), _serve(folder / "saved_model", image)
    assert exported["probabilities"].shape == (1, 12, 16, 14, 3)  # the segmentation output only
    np.testing.assert_allclose(exported["probabilities"].numpy(), original["probabilities"].numpy(), atol=1e-6)
    assert '"saved_model"' in capsys.readouterr().out


def test_flags_still_override_the_run_spec(run_dir, tmp_path):
    folder, _ = run_dir
    out = tmp_path / "exported"
    assert main(["export", str(folder), str(out), "--stride", "4", "--class-names", "a,b,c"]) == 0
    metadata = read_metadata(str(out))
    assert metadata["stride"] == 4 and metadata["class_names"] == ["a", "b", "c"]
    assert metadata["normalization"] == "zscore_nonzero"


@pytest.mark.parametrize("make, reason", [
    (lambda tmp: tmp / "missing.keras", "file not found"),
    (lambda tmp: (tmp / "notes.txt").write_text("hello") and tmp / "notes.txt", "not a Keras model"),
    (lambda tmp: tmp, "no model.keras or best.keras in this folder"),
])
def test_bad_sources_are_one_line_naming_the_file(tmp_path, capsys, make, reason):
    source = make(tmp_path)
    assert main(["export", str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err == f"tfseg: error: {source}: {reason}" or err.startswith(f"tfseg: error: {source}: {reason}")
