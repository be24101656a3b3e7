"""`tfseg predict RUN_DIR INPUT OUTPUT` end to end on a tiny model exported with tfseg's SavedModel export."""
import json

import keras
import nibabel as nib
import numpy as np
import pytest

from tfseg.cli import main
from tfseg.data.transforms.intensity import normalize_intensity
from tfseg.data.transforms.labels import regions_to_brats_labels
from tfseg.datasets.synthetic_mni import write_mni_brats
from tfseg.export.savedmodel import ServingSpec, export_savedmodel
from tfseg.io.nifti import read_nifti


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder holding a pointwise WT/TC/ET model: flair -> WT, t1ce -> TC and ET (higher bar)."""
    folder = tmp_path_factory.mktemp("run")
    inputs = keras.Input((None, None, None, 4))
    layer = keras.layers.Conv3D(3, 1, activation="sigmoid", name="head")
    model = keras.Model(inputs, layer(inputs))
    kernel = np.zeros((1, 1, 1, 4, 3), np.float32)
    kernel[0, 0, 0, 3, 0] = 4.0       # flair -> WT
    kernel[0, 0, 0, 1, 1] = 4.0       # t1ce -> TC
    kernel[0, 0, 0, 1, 2] = 4.0       # t1ce -> ET
    layer.set_weights([kernel, np.array([-4.0, -4.0, -6.0], np.float32)])
    spec = ServingSpec(stride=1, in_channels=4, normalization="zscore_nonzero", activation="sigmoid",
                       class_names=("WT", "TC", "ET"), label_map="brats", extra={"workflow": "brats"})
    export_savedmodel(model, str(folder / "saved_model"), spec)
    (folder / "config.json").write_text(json.dumps({"output_dir": str(folder)}))
    return folder, model


def test_predict_brats_release(run_dir, tmp_path, capsys):
    folder, model = run_dir
    data = write_mni_brats(tmp_path / "data", num_cases=2, seed=7, spacing=8.0)
    out = tmp_path / "out"
    assert main(["predict", str(folder), data.root, str(out), "--probabilities", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 2 and summary["failed"] == 0
    report = json.loads((out / "predict_report.json").read_text())
    assert report["convention"] == "brats"
    for case in data.cases:
        written = nib.load(str(out / f"{case.case_id}.nii.gz"))
        source = nib.load(case.images[0])
        assert np.allclose(written.affine, source.affine) and written.shape == source.shape
        image = np.stack([read_nifti(p, dtype=np.float32).array for p in case.images], axis=-1)
        expected = regions_to_brats_labels(model(normalize_intensity(image[None], "zscore_nonzero")).numpy()[0])
        labels = read_nifti(str(out / f"{case.case_id}.nii.gz")).array
        assert np.array_equal(labels, expected)
        assert set(np.unique(labels).tolist()) >= {0, 2}
        probabilities = read_nifti(str(out / f"{case.case_id}_probabilities.nii.gz")).array
        assert probabilities.shape == image.shape[:3] + (3,)
        assert np.array_equal(regions_to_brats_labels(probabilities), labels)


def test_tta_of_a_pointwise_model_changes_nothing_and_bad_inputs_fail(run_dir, tmp_path, capsys):
    folder, _ = run_dir
    data = write_mni_brats(tmp_path / "data", num_cases=1, seed=8, spacing=8.0)
    assert main(["predict", str(folder), data.case_dirs[0], str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["predict", str(folder), data.case_dirs[0], str(tmp_path / "b"), "--tta", "--no-progress"]) == 0
    name = f"{data.cases[0].case_id}.nii.gz"
    assert np.array_equal(read_nifti(str(tmp_path / "a" / name)).array, read_nifti(str(tmp_path / "b" / name)).array)
    single = data.cases[0].images[0]                      # one channel: the model takes four
    assert main(["predict", str(folder), single, str(tmp_path / "c"), "--no-progress"]) == 1
    report = json.loads((tmp_path / "c" / "predict_report.json").read_text())
    assert "1 channel(s) but the model takes 4" in report["cases"][0]["error"]
    capsys.readouterr()
    assert main(["predict", str(tmp_path), single, str(tmp_path / "d")]) == 2
    assert "no saved_model/" in capsys.readouterr().err


def test_evaluate_scores_what_predict_wrote(run_dir, tmp_path, capsys):
    from tfseg.data.transforms.labels import brats_regions

    folder, _ = run_dir
    data = write_mni_brats(tmp_path / "data", num_cases=2, seed=9, spacing=8.0)
    out = tmp_path / "out"
    assert main(["predict", str(folder), data.root, str(out), "--probabilities", "--no-progress"]) == 0
    assert main(["evaluate", str(out), data.root, "--regions", "brats", "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["cases"] == 2 and summary["unpaired"] == {"prediction": [], "truth": []}
    dice = []
    for case in data.cases:
        pred = brats_regions(read_nifti(str(out / f"{case.case_id}.nii.gz")).array, dtype=bool)[..., 0]
        truth = brats_regions(read_nifti(case.label).array, dtype=bool)[..., 0]
        dice.append(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
    assert summary["metrics"]["dice_WT"]["mean"] == pytest.approx(np.mean(dice))


def test_predict_lgg_png_folder_through_a_resizing_2d_export(tmp_path, capsys):
    from tfseg.io.images import read_image, write_png

    inputs = keras.Input((None, None, 3))
    layer = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.full((1, 1, 3, 1), 3.0, np.float32), np.array([-1.0], np.float32)])
    spec = ServingSpec(image_size=(32, 32), stride=16, in_channels=3, normalization="zscore",
                       activation="sigmoid", class_names=("tumour",), extra={"workflow": "lgg"})
    export_savedmodel(model, str(tmp_path / "run" / "saved_model"), spec)
    image = np.zeros((40, 48, 3), np.uint8)
    image[10:25, 12:30] = 220                             # a bright square on black
    write_png(str(tmp_path / "in" / "TCGA_CS_4941_19960909_5.png"), image)
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "in"), str(tmp_path / "out"), "--no-progress"]) == 0
    mask = read_image(str(tmp_path / "out" / "TCGA_CS_4941_19960909_5_mask.png"))
    assert mask.shape == (40, 48) and set(np.unique(mask).tolist()) == {0, 255}
    bright = image[..., 0] > 0
    assert (mask[bright] == 255).mean() > 0.9 and (mask[~bright] == 0).mean() > 0.9
