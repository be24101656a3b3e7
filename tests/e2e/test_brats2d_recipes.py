"""The BraTS 2D recipes (W3 patches, W5 slices) end to end at a tiny size: synthetic volumes → train → report
→ GIFs → SavedModel → resume (the patch store is reused)."""
import json

import h5py
import pytest
from recipe_helpers import assert_logged_best_matches_metrics, history_epochs, load_recipe, serve_in_fresh_process

pytestmark = pytest.mark.slow

TINY_DATA = {"synthetic_cases": 6, "synthetic_shape": [64, 64, 24], "val_fraction": 0.2}


def write_config(path, config):
    path.write_text(json.dumps(config))
    return str(path)


def test_brats_unet2d_recipe_patches_report_gifs_and_resume(tmp_path):
    config = write_config(tmp_path / "tiny.json", {
        "data": {**TINY_DATA, "test_fraction": 0.2},
        "patches": {"patch_size": 32, "stride": 16},
        "model": {"encoder": "resnet18", "options": {"decoder_filters": [16, 16, 8, 8, 8]}},
        "train": {"epochs": 1, "batch_size": 8, "learning_rate": 0.001, "verbose": 0},
        "inference": {"gifs": 1}})
    out = tmp_path / "run"
    recipe = load_recipe("brats_unet2d")
    assert recipe.main(["--config", config, "--output-dir", str(out)]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"background", "necrotic_core", "edema", "enhancing"}
    for row in metrics["per_class"].values():
        assert {"precision", "recall", "accuracy", "iou", "dice"} <= set(row)
    assert metrics["test_cases"] == 1 and metrics["patch_store_reused"] is False
    assert 0.0 <= metrics["test_mean_tumour_dice"] <= 1.0
    with h5py.File(out / "patches.h5", "r") as store:
        assert store["images"].shape[1:] == (32, 32, 3) and set(store["labels"][:].ravel()) <= {0, 1, 2, 4}
    assert list((out / "gifs").glob("*.gif")) and (out / "curves.png").is_file()
    shapes = serve_in_fresh_process(out / "saved_model", (2, 50, 70, 3), scale=500.0)
    assert shapes == {"probabilities": [2, 50, 70, 4], "labels": [2, 50, 70]}

    store_mtime = (out / "patches.h5").stat().st_mtime_ns
    assert recipe.main(["--config", config, "--output-dir", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert history_epochs(out) == [0, 1]
    assert_logged_best_matches_metrics(out)
    assert json.loads((out / "metrics.json").read_text())["patch_store_reused"] is True
    assert (out / "patches.h5").stat().st_mtime_ns == store_mtime


def test_brats_unetpp_slices_recipe_wt_et(tmp_path):
    config = write_config(tmp_path / "tiny.json", {
        "data": {**TINY_DATA, "test_fraction": 0.0},
        "slices": {"image_size": 32},
        "model": {"encoder": "resnet18", "options": {"decoder_filters": [16, 16, 8, 8, 8]}},
        "train": {"epochs": 1, "batch_size": 8, "learning_rate": 0.001, "verbose": 0}})
    out = tmp_path / "run"
    assert load_recipe("brats_unetpp_slices").main(["--config", config, "--output-dir", str(out)]) == 0
    assert_logged_best_matches_metrics(out)

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_dice_wt", "val_dice_et", "val_iou_wt", "val_iou_et"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val_slices"] > 0 and metrics["train_slices"] > metrics["val_slices"]
    assert metrics["val_cases"] == 1
    shapes = serve_in_fresh_process(out / "saved_model", (1, 40, 48, 3), scale=500.0)
    assert shapes == {"probabilities": [1, 40, 48, 2], "labels": [1, 40, 48, 2]}
