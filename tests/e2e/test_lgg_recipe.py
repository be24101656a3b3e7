"""The LGG recipe end to end at a tiny size, driven by one JSON config (rmldnn style): synthetic Kaggle-layout
TIFFs → ResUNet → HDF5 predictions, PNG overlays, curves → SavedModel → resume."""
import json

import pytest
from recipe_helpers import assert_logged_best_matches_metrics, history_epochs, load_recipe, serve_in_fresh_process

from tfseg.inference.writers import read_predictions_hdf5

pytestmark = pytest.mark.slow

TINY = {"data": {"image_size": 32, "synthetic_patients": 4, "test_fraction": 0.25},
        "model": {"name": "resunet", "options": {"filters": [8, 16], "bridge_filters": 16}},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.001, "verbose": 0},
        "outputs": {"overlays": 3}}


def test_lgg_recipe_from_json_config_writes_predictions_and_resumes(tmp_path):
    config = tmp_path / "lgg.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    recipe = load_recipe("lgg_resunet")
    assert recipe.main(["--config", str(config), "--output-dir", str(out)]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_dice", "test_iou", "test_mean_slice_dice", "test_precision", "test_recall"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_patients"] == 1 and metrics["epochs"] == 2 and metrics["synthetic_data"]
    assert json.loads((out / "config.json").read_text())["data"]["image_size"] == 32

    predictions = read_predictions_hdf5(out / "predictions.h5")
    assert len(predictions) == metrics["test_slices"]
    first = next(iter(predictions.values()))
    assert first["prediction"].shape == first["truth"].shape == (256, 256)  # the original size, not 32
    assert set(first["prediction"].ravel()) <= {0, 1}
    assert len(list((out / "overlays").glob("*.png"))) == 3 and (out / "curves.png").is_file()

    shapes = serve_in_fresh_process(out / "saved_model", (2, 60, 50, 3), scale=255.0)
    assert shapes == {"probabilities": [2, 60, 50, 1], "labels": [2, 60, 50, 1]}

    assert recipe.main(["--config", str(config), "--output-dir", str(out), "--resume", "--epochs", "3",
                        "--quiet"]) == 0
    assert history_epochs(out) == [0, 1, 2]
    assert_logged_best_matches_metrics(out)


def test_lgg_recipe_reports_a_bad_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = load_recipe("lgg_resunet").main(["--data-dir", str(tmp_path / "empty"), "--output-dir",
                                            str(tmp_path / "run")])
    assert code == 2
    assert "empty" in capsys.readouterr().err
