import json
import shutil
import subprocess

import keras
import pytest

from tfseg.cli import main
from tfseg.export.savedmodel import read_metadata


def test_console_script_is_installed():
    exe = shutil.which("tfseg")
    assert exe, "the tfseg console script is not on PATH (pip install -e .)"
    shown = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("synth", "train", "export"):
        assert command in shown


def test_synth_writes_the_real_layout(tmp_path, capsys):
    assert main(["synth", "sunnybrook", str(tmp_path / "data"), "--cases", "2", "--image-size", "64"]) == 0
    dicoms = sorted((tmp_path / "data").rglob("*.dcm"))
    contours = sorted((tmp_path / "data").rglob("*-icontour-manual.txt"))
    assert dicoms and contours
    assert "contours:" in capsys.readouterr().out


def test_synth_lgg_writes_the_kaggle_layout(tmp_path, capsys):
    assert main(["synth", "lgg", str(tmp_path / "lgg"), "--cases", "2", "--image-size", "64"]) == 0
    masks = sorted((tmp_path / "lgg").rglob("*_mask.tif"))
    assert masks and len(list((tmp_path / "lgg").rglob("*.tif"))) == 2 * len(masks)
    assert "kaggle_3m" in capsys.readouterr().out


@pytest.mark.parametrize("workflow", ["lgg", "brats2d", "brats-slices"])
def test_train_knows_the_2d_workflows(workflow, tmp_path, capsys):
    assert main(["train", workflow, "--config", str(tmp_path / "missing.json")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_export_a_keras_file(tmp_path, capsys):
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "sm"), "--stride", "1",
                 "--class-names", "bg,lv"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["signature"] == "serving_default"
    assert read_metadata(tmp_path / "sm")["class_names"] == ["bg", "lv"]


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "sunnybrook", "--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "sunnybrook", str(tmp_path), "--bogus"])


def test_convert_a_dicom_series(tmp_path):
    import numpy as np

    from tfseg.io.dicom import write_image
    from tfseg.io.nifti import read_nifti

    for k in range(4):
        write_image(tmp_path / "dcm" / f"slice{k}.dcm", np.full((8, 8), k * 10, np.uint16),
                    pixel_spacing=(1.0, 1.0), image_position=(0.0, 0.0, 2.0 * k), instance_number=k + 1,
                    series_instance_uid="1.2.3.4", slice_thickness=2.0)
    assert main(["convert", str(tmp_path / "dcm"), str(tmp_path / "out.nii.gz")]) == 0
    volume = read_nifti(tmp_path / "out.nii.gz")
    assert volume.shape == (4, 8, 8)
    assert [int(volume.array[k, 0, 0]) for k in range(4)] == [0, 10, 20, 30]


def test_merge_labels(tmp_path):
    import nibabel as nib
    import numpy as np

    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    wt = np.zeros((6, 5, 4), np.uint8)
    wt[1:5, 1:4, 1:3] = 1
    tc = np.zeros_like(wt)
    tc[2:4, 2:3, 1:3] = 1
    et = np.zeros_like(wt)
    et[2, 2, 1] = 1
    for name, mask in (("wt", wt), ("tc", tc), ("et", et)):
        nib.save(nib.Nifti1Image(mask, affine), tmp_path / f"{name}.nii.gz")
    args = ["merge-labels", "--wt", str(tmp_path / "wt.nii.gz"), "--tc", str(tmp_path / "tc.nii.gz"),
            "--et", str(tmp_path / "et.nii.gz"), str(tmp_path / "labels.nii.gz")]
    assert main(args) == 0
    merged = nib.load(tmp_path / "labels.nii.gz")
    np.testing.assert_allclose(merged.affine, affine)
    labels = np.asanyarray(merged.dataobj)
    assert labels[2, 2, 1] == 4 and labels[3, 2, 1] == 1 and labels[1, 1, 1] == 2 and labels[0, 0, 0] == 0
