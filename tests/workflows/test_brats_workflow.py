"""The BraTS workflow: a tiny end-to-end run, and predictions that land on the input's voxels in world space."""
import dataclasses
import importlib.util
import json
import pathlib
import subprocess
import sys

import keras
import nibabel as nib
import numpy as np
import pytest

from tfseg.datasets.brats import MODALITIES, BratsCase
from tfseg.workflows import brats
from tfseg.workflows.entry import resolve_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = {"data": {"synthetic_cases": 4, "synthetic_shape": [48, 48, 32], "crop_size": [16, 32, 32],
                 "val_fraction": 0.25, "crops_per_case": 1},
        "model": {"init_filters": 8, "vae_latent": 8, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 2, "learning_rate": 0.001, "verbose": 0},
        "inference": {"window_batch_size": 2}}


def load_recipe():
    spec = importlib.util.spec_from_file_location("brats_recipe", ROOT / "recipes" / "brats_segresnet_vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_recipe_end_to_end_with_resume(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    recipe = load_recipe()
    assert recipe.main(["--config", str(config), "--output-dir", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_dice_wt", "val_dice_tc", "val_dice_et", "val_hd95_wt", "train_seconds", "per_case"):
        assert key in metrics
    (case_id,) = metrics["per_case"]
    prediction = nib.load(out / "predictions" / f"{case_id}_seg.nii.gz")
    flair = nib.load(next((out / "synthetic_data").rglob(f"{case_id}_flair.nii.gz")))
    np.testing.assert_allclose(prediction.affine, flair.affine)
    assert prediction.shape == flair.shape
    assert set(np.unique(np.asanyarray(prediction.dataobj))) <= {0, 1, 2, 4}
    assert (out / "overlays" / f"{case_id}.png").stat().st_size > 0

    # The SavedModel: only the segmentation path, any 3D size, merged BraTS labels.
    script = ("import sys, numpy as np, tensorflow as tf\n"
              "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
              "out = serve(image=tf.constant(np.random.rand(1, 20, 30, 36, 4).astype('float32') * 500))\n"
              "assert out['probabilities'].shape == (1, 20, 30, 36, 3), out['probabilities'].shape\n"
              "assert out['labels'].shape == (1, 20, 30, 36)\n"
              "assert set(np.unique(out['labels'].numpy())) <= {0, 1, 2, 4}\n")
    subprocess.run([sys.executable, "-c", script, str(out / "saved_model")], check=True)

    assert recipe.main(["--config", str(config), "--output-dir", str(out), "--quiet", "--resume",
                        "--epochs", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2

    # Validation means what it says: the whole-volume val_dice logged for the best epoch is the
    # figure of the final evaluation (same path, best weights restored); crop figures say so.
    import csv

    with open(out / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert "crop_val_dice_wt" in rows[0] and "val_dice" in rows[0]
    logged = float(rows[metrics["best_epoch"] - 1]["val_dice"])
    assert abs(logged - metrics["val_dice"]) <= 0.01 and abs(metrics["best_val_dice"] - metrics["val_dice"]) <= 0.01
    assert metrics["val_dice"] == pytest.approx(np.mean([metrics[f"val_dice_{r}"] for r in ("wt", "tc", "et")]),
                                                abs=1e-6)


def threshold_model():
    """A pointwise model: every region is 'FLAIR z-score > 1', so the prediction is known voxel by voxel."""
    inputs = keras.Input((None, None, None, 4))
    layer = keras.layers.Conv3D(3, 1, activation="sigmoid")
    outputs = layer(inputs)
    kernel = np.zeros((1, 1, 1, 4, 3), np.float32)
    kernel[..., 3, :] = 60.0
    layer.set_weights([kernel, np.full(3, -60.0, np.float32)])
    return keras.Model(inputs, outputs)


AFFINES = {
    "RAS": np.diag([1.0, 1.0, 1.2, 1.0]),
    "LPS": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "oblique": np.array([[0.9, -0.3, 0.1, 10.0], [0.35, 0.85, -0.2, -5.0], [0.0, 0.25, 1.1, 3.0], [0, 0, 0, 1.0]]),
}


@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_predictions_land_on_the_input_voxels_in_world_space(tmp_path, orientation):
    rng = np.random.default_rng(0)
    affine = AFFINES[orientation]
    shape = (20, 16, 12)  # NIfTI (x, y, z)
    paths = []
    bright = np.zeros(shape, bool)
    bright[3:7, 10:14, 2:5] = True  # an asymmetric block: any axis mix-up moves it
    for modality in MODALITIES:
        data = rng.normal(100, 5, shape).astype(np.float32)
        if modality == "flair":
            data[bright] = 400.0
        path = tmp_path / f"case_{modality}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), path)
        paths.append(str(path))
    label = tmp_path / "case_seg.nii.gz"
    nib.save(nib.Nifti1Image(bright.astype(np.uint8) * 2, affine), label)
    config = brats.BratsConfig(output_dir=str(tmp_path / "out"), model=brats.ModelSection(name="segresnet"),
                               data=brats.DataSection(crop_size=(8, 8, 8)),
                               inference=brats.InferenceSection(overlays=False))
    case = BratsCase("case", tuple(paths), str(label))
    metrics = brats.evaluate(config, threshold_model(), [case])
    assert metrics["val_dice_wt"] == 1.0
    written = nib.load(tmp_path / "out" / "predictions" / "case_seg.nii.gz")
    predicted = np.asanyarray(written.dataobj) > 0
    world_predicted = nib.affines.apply_affine(written.affine, np.argwhere(predicted))
    world_bright = nib.affines.apply_affine(affine, np.argwhere(bright))
    np.testing.assert_allclose(np.sort(world_predicted, axis=0), np.sort(world_bright, axis=0), atol=1e-4)


def test_config_from_json_and_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": {"crop_size": [32, 32, 32]}, "train": {"epochs": 3}}))
    config = resolve_config("brats", ["--config", str(path), "--epochs", "5", "--no-vae", "--crop-size", "16", "24",
                                      "32"])
    assert config.train.epochs == 5 and config.model.name == "segresnet"
    assert config.data.crop_size == (16, 24, 32)
    assert dataclasses.asdict(config)["inference"]["overlap"] == 0.5


@pytest.mark.slow
def test_fine_tuning_keeps_the_encoder_frozen_then_trains_it(tmp_path):
    config = brats.BratsConfig(
        output_dir=str(tmp_path / "run"),
        data=brats.DataSection(synthetic_cases=3, synthetic_shape=(32, 32, 16), crop_size=(16, 16, 16),
                               val_fraction=0.34, cache=False),
        model=brats.ModelSection(name="segresnet", init_filters=8, blocks_down=(1, 1, 1), blocks_up=(1, 1),
                                 dropout=0.0, freeze_epochs=1),
        train=brats.TrainSection(epochs=1, batch_size=1, learning_rate=0.01, verbose=0))
    data = brats.find_data(config)
    train_ds, _ = brats.make_datasets(config, data)
    model = brats.build(config)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}
    brats.train(config, model, train_ds, None)
    encoder = {layer.name for layer in brats.encoder_layers(model)}
    assert encoder and all(layer.trainable for layer in model.layers)  # unfrozen after the warm-up phase
    changed = {name for name, weights in before.items()
               if any(not np.array_equal(a, b) for a, b in zip(weights, model.get_layer(name).get_weights()))}
    assert changed and not changed & encoder  # the decoder learned, the encoder did not move

    pretrained = tmp_path / "pretrained.weights.h5"
    model.save_weights(pretrained)
    tuned = brats.build(dataclasses.replace(config, model=dataclasses.replace(config.model, weights=str(pretrained))))
    for a, b in zip(model.get_weights(), tuned.get_weights()):
        np.testing.assert_array_equal(a, b)
