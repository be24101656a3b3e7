"""The Sunnybrook recipes end to end, at a tiny size: synthetic data → train → evaluate → export → resume."""
import json
import subprocess
import sys

import pytest
from recipe_helpers import assert_logged_best_matches_metrics, history_epochs, load_recipe

TINY = {"data": {"image_size": 64, "synthetic_cases": 4, "val_fraction": 0.25},
        "model": {"name": "fcn8s", "options": {"width": 0.125, "fc_units": 16, "dropout": 0.0}},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.001, "verbose": 0}}

pytestmark = pytest.mark.slow


def test_fcn8s_recipe_trains_exports_and_resumes(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    recipe = load_recipe("sunnybrook_fcn8s")
    assert recipe.main(["--config", str(config), "--output-dir", str(out), "--quiet"]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_dice", "val_iou", "val_pixel_accuracy", "epochs", "train_seconds",
                "all_background_pixel_accuracy", "all_background_dice"):
        assert key in metrics
    assert metrics["epochs"] == 2 and metrics["val_cases"] == 1 and metrics["synthetic_data"]
    assert 0.0 <= metrics["val_dice"] <= 1.0
    assert metrics["all_background_dice"] == 0.0 and metrics["all_background_pixel_accuracy"] > 0.97
    assert (out / "model.keras").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    assert history_epochs(out) == [0, 1]

    # The SavedModel works without tfseg, on any batch size, at the original 256x256 size.
    script = ("import sys, numpy as np, tensorflow as tf\n"
              "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
              "out = serve(image=tf.constant(np.random.rand(3, 256, 256, 1).astype('float32') * 800))\n"
              "assert out['probabilities'].shape == (3, 256, 256, 2), out['probabilities'].shape\n"
              "assert out['labels'].shape == (3, 256, 256)\n"
              "assert 'tfseg' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", script, str(out / "saved_model")], check=True)

    # --resume continues from the last checkpoint: epochs 3-4 only, history continued.
    assert recipe.main(["--config", str(config), "--output-dir", str(out), "--quiet", "--resume",
                        "--epochs", "4"]) == 0
    assert history_epochs(out) == [0, 1, 2, 3]
    assert_logged_best_matches_metrics(out)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4


def test_alexnet_recipe_and_bad_data_dir(tmp_path, capsys):
    tiny = json.loads(json.dumps(TINY))
    tiny["model"] = {"name": "fcn_alexnet", "options": {"width": 0.125, "fc_units": 16, "dropout": 0.0}}
    tiny["train"]["epochs"] = 1
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny))
    recipe = load_recipe("sunnybrook_fcn_alexnet")
    assert recipe.main(["--config", str(config), "--output-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"] == "fcn_alexnet"

    missing = tmp_path / "nowhere"
    code = recipe.main(["--config", str(config), "--image-dir", str(missing), "--contour-dir", str(missing),
                        "--output-dir", str(tmp_path / "bad")])
    assert code == 2
    assert str(missing) in capsys.readouterr().err


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"train": {"epochz": 3}}))
    recipe = load_recipe("sunnybrook_fcn8s")
    assert recipe.main(["--config", str(config), "--output-dir", str(tmp_path / "x")]) == 2
    assert "unknown field 'epochz'" in capsys.readouterr().err
