"""Output file names derived from data (case ids) never leave the output folder."""
import json
import os

import keras
import nibabel as nib
import numpy as np
import pytest

from tfseg.datasets.brats import MODALITIES, BratsCase
from tfseg.datasets.datalist import read_datalist
from tfseg.errors import DataError
from tfseg.viz.overlays import write_overlay_pngs
from tfseg.utils.paths import check_inside, output_path, safe_name

HOSTILE = ["../../x", "/tmp/abs", "a/../../x", "..\\..\\x", "C:\\x", "..", ""]


def _files(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


@pytest.mark.parametrize("case_id", HOSTILE)
def test_hostile_ids_are_refused(tmp_path, case_id):
    with pytest.raises(DataError, match="not usable as an output file name"):
        output_path(tmp_path / "out", case_id, "_seg.nii.gz")


@pytest.mark.parametrize("case_id, name", [("BraTS2021_00000", "BraTS2021_00000"), ("SC-HF-I-1/IM 48", "SC-HF-I-1_IM_48"),
                                           (".hidden", "hidden"), ("a..b", "a..b"), (7, "7")])
def test_plain_ids_are_kept_or_sanitized(tmp_path, case_id, name):
    assert safe_name(case_id) == name
    assert output_path(tmp_path, case_id, ".png") == os.path.join(tmp_path, name + ".png")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere" / "case.png", tmp_path / "out" / "case.png")
    with pytest.raises(DataError, match="outside the output folder"):
        output_path(tmp_path / "out", "case", ".png")
    check_inside(tmp_path / "out", tmp_path / "out" / "sub" / "a.png")


def test_overlay_writer_writes_nothing_outside(tmp_path):
    out = tmp_path / "run" / "overlays"
    images = np.random.default_rng(0).random((3, 8, 8))
    for hostile in ("../../x", "/tmp/abs"):
        with pytest.raises(DataError, match="not usable as an output file name"):
            write_overlay_pngs(out, ["good", hostile, "other"], images)
    assert _files(tmp_path) == []  # refused before anything was written
    assert not os.path.exists("/tmp/abs.png")


def test_datalist_with_hostile_ids_is_refused_at_the_door(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    for hostile in ("../../x", "/tmp/abs"):
        path = tmp_path / "datalist.json"
        path.write_text(json.dumps({"training": [{"id": hostile, "image": "a.nii.gz"}]}))
        with pytest.raises(DataError) as info:
            read_datalist(path, check_files=False)
        assert info.value.path == str(path)
        assert "training[0].id" in info.value.reason and hostile in info.value.reason


def _threshold_model():
    inputs = keras.Input((None, None, None, 4))
    layer = keras.layers.Conv3D(3, 1, activation="sigmoid")
    outputs = layer(inputs)
    kernel = np.zeros((1, 1, 1, 4, 3), np.float32)
    kernel[..., 3, :] = 60.0
    layer.set_weights([kernel, np.full(3, -60.0, np.float32)])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("case_id", ["../../x", "/tmp/abs"])
def test_brats_evaluate_writes_nothing_outside(tmp_path, case_id):
    from tfseg.workflows import brats

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for modality in MODALITIES:
        path = data / f"case_{modality}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(100, 5, (12, 12, 8)).astype(np.float32), np.eye(4)), path)
        paths.append(str(path))
    label = data / "case_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((12, 12, 8), np.uint8), np.eye(4)), label)
    out = tmp_path / "a" / "b" / "out"
    config = brats.BratsConfig(output_dir=str(out), model=brats.ModelSection(name="segresnet"),
                               data=brats.DataSection(crop_size=(8, 8, 8)))
    before = _files(tmp_path)
    with pytest.raises(DataError, match="not usable as an output file name"):
        brats.evaluate(config, _threshold_model(), [BratsCase(case_id, tuple(paths), str(label))])
    assert _files(tmp_path) == before
    assert not os.path.exists("/tmp/abs_seg.nii.gz") and not os.path.exists("/tmp/abs.png")
