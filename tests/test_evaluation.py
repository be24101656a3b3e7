"""`tfseg evaluate`: scores against medpy on files nibabel wrote, pairing, regions, outputs, errors."""
import csv
import json
import math
import pathlib

import nibabel as nib
import numpy as np
import pytest
from medpy.metric import binary as medpy

from tfseg.cli import main
from tfseg.errors import DataError
from tfseg.evaluation import case_id, evaluate, label_files

SPACING = (0.8, 1.2, 2.5)   # NIfTI (x, y, z) zooms


def _save(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag(SPACING + (1.0,)) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data, np.uint8), affine), str(path))


def _blob(shape, centre, radius):
    grid = np.indices(shape).astype(float)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) <= 1


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    shape = (20, 18, 12)
    cases = {}
    for k, (shift, extra) in enumerate([((0, 0, 0), False), ((2, 1, 0), True), ((1, 0, 1), False)]):
        truth = np.zeros(shape, np.uint8)
        truth[_blob(shape, (9, 9, 6), (5, 4, 3))] = 1
        truth[_blob(shape, (9, 9, 6), (2, 2, 1.5))] = 2
        pred = np.zeros(shape, np.uint8)
        pred[_blob(shape, np.add((9, 9, 6), shift), (5, 5, 3))] = 1
        pred[_blob(shape, np.add((9, 9, 6), shift), (2, 1, 1.5))] = 2
        if extra:
            pred[0:2, 0:2, 0] = 1          # a far false positive: HD95 grows
        cases[f"case{k}"] = (pred, truth)
        _save(root / "truth" / f"case{k}_seg.nii.gz", truth)
        _save(root / "pred" / (f"case{k}.nii.gz" if k != 1 else f"case{k}_pred.nii"), pred)
    _save(root / "pred" / "case9.nii.gz", np.zeros(shape))     # no truth: unpaired
    return root, cases


def test_scores_match_medpy_and_outputs_are_written(pairs):
    root, cases = pairs
    result = evaluate(root / "pred", root / "truth", output_dir=root / "out")
    assert [row["case_id"] for row in result.cases] == ["case0", "case1", "case2"]
    assert result.unpaired["prediction"][0].endswith("case9.nii.gz") and result.unpaired["truth"] == []
    for row in result.cases:
        pred, truth = cases[row["case_id"]]
        for value in (1, 2):
            p, t = pred == value, truth == value
            assert row[f"dice_{value}"] == pytest.approx(medpy.dc(p, t))
            assert row[f"iou_{value}"] == pytest.approx(medpy.jc(p, t))
            assert row[f"precision_{value}"] == pytest.approx(medpy.precision(p, t))
            assert row[f"recall_{value}"] == pytest.approx(medpy.recall(p, t))
            assert row[f"hd95_{value}"] == pytest.approx(medpy.hd95(p, t, voxelspacing=SPACING))
    rows = list(csv.DictReader(pathlib.Path(result.csv_path).read_text().splitlines()))
    assert [r["case_id"] for r in rows] == ["case0", "case1", "case2"]
    assert float(rows[1]["dice_1"]) == pytest.approx(result.cases[1]["dice_1"])
    summary = json.loads(pathlib.Path(result.json_path).read_text())
    dice = [row["dice_1"] for row in result.cases]
    assert summary["metrics"]["dice_1"]["mean"] == pytest.approx(np.mean(dice))
    assert summary["metrics"]["dice_1"]["median"] == pytest.approx(np.median(dice))
    assert summary["metrics"]["dice_1"]["std"] == pytest.approx(np.std(dice))
    assert summary["cases"] == 3 and len(summary["unpaired"]["prediction"]) == 1


def test_brats_regions_by_hand(tmp_path):
    truth = np.zeros((4, 4, 4), np.uint8)
    truth[0, 0, :4] = [1, 2, 4, 4]
    pred = np.zeros((4, 4, 4), np.uint8)
    pred[0, 0, :4] = [2, 2, 4, 0]
    _save(tmp_path / "t" / "BraTS2021_00007" / "BraTS2021_00007_seg.nii.gz", truth)
    _save(tmp_path / "t" / "BraTS2021_00007" / "BraTS2021_00007_flair.nii.gz", truth * 10)  # passed over
    _save(tmp_path / "p" / "BraTS2021_00007.nii.gz", pred)
    row = evaluate(tmp_path / "p", tmp_path / "t", regions="brats").cases[0]
    assert row["dice_WT"] == pytest.approx(2 * 3 / (3 + 4))      # WT: pred 3 voxels, truth 4, all 3 shared
    assert row["dice_TC"] == pytest.approx(2 * 1 / (1 + 3))      # TC: pred {4}, truth {1, 4, 4}
    assert row["dice_ET"] == pytest.approx(2 * 1 / (1 + 2))
    assert row["precision_TC"] == 1.0 and row["recall_TC"] == pytest.approx(1 / 3)
    assert row["dice_1"] == 0.0 and math.isnan(row["hd95_1"])     # class 1 missed: HD95 undefined


def test_png_masks_and_pairing_rule(tmp_path):
    from tfseg.io.images import write_png

    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 2:6] = 255
    pred = np.zeros((8, 8), np.uint8)
    pred[2:6, 3:7] = 255
    write_png(str(tmp_path / "t" / "TCGA_CS_4941_19960909_3_mask.png"), truth)
    write_png(str(tmp_path / "p" / "TCGA_CS_4941_19960909_3-prediction.png"), pred)
    result = evaluate(tmp_path / "p", tmp_path / "t")
    assert result.cases[0]["dice_1"] == pytest.approx(2 * 12 / 32)
    assert case_id("a_GT.nii.gz") == "a" and case_id("a_seg_pred.nii.gz") == "a_seg"


def test_geometry_mismatch_names_both_files(tmp_path):
    _save(tmp_path / "t" / "a_seg.nii.gz", np.zeros((4, 4, 4)))
    _save(tmp_path / "p" / "a.nii.gz", np.zeros((4, 4, 5)))
    with pytest.raises(DataError, match=r"p/a\.nii\.gz.*shape.*t/a_seg\.nii\.gz"):
        evaluate(tmp_path / "p", tmp_path / "t")
    shifted = np.diag(SPACING + (1.0,))
    shifted[0, 3] = 3.0
    _save(tmp_path / "p" / "a.nii.gz", np.zeros((4, 4, 4)), affine=shifted)
    with pytest.raises(DataError, match=r"affine differs from the truth .*a_seg\.nii\.gz"):
        evaluate(tmp_path / "p", tmp_path / "t")
    _save(tmp_path / "p" / "sub" / "a_pred.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(DataError, match="a second file for case 'a'"):
        label_files(tmp_path / "p")


def test_cli(pairs, tmp_path, capsys):
    root, _ = pairs
    assert main(["evaluate", str(root / "pred"), str(root / "truth"), "--out", str(tmp_path), "--labels", "1",
                 "--hd95-empty", "373.13"]) == 0
    out = capsys.readouterr().out
    assert "dice_1" in out and "dice_2" not in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["labels"] == [1] and summary["settings"]["hd95_empty"] == 373.13
