"""`tfseg predict` on a real DICOM series writes a DICOM SEG and an RTSTRUCT that read back to the prediction."""
import json
from pathlib import Path

import keras
import numpy as np
import pydicom

from tfseg.cli import main
from tfseg.export.savedmodel import ServingSpec, export_savedmodel
from tfseg.io.dicom import read_series
from tfseg.io.dicom_seg import read_dicom_seg
from tfseg.io.nifti import read_nifti
from tfseg.io.rtstruct import list_rois, rasterize_roi

CT5N = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892001" / "CT5N"


def test_predict_on_a_dicom_series_writes_seg_and_rtstruct(tmp_path, capsys):
    # a pointwise model: "bright" = above the series mean (a known mask on the real CT)
    inputs = keras.Input((None, None, None, 1))
    layer = keras.layers.Conv3D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.full((1, 1, 1, 1, 1), 8.0, np.float32), np.array([0.0], np.float32)])
    run = tmp_path / "run"
    export_savedmodel(model, str(run / "saved_model"),
                      ServingSpec(stride=1, in_channels=1, normalization="zscore", activation="sigmoid",
                                  class_names=("bright",), extra={"workflow": "ct_test"}))
    (run / "config.json").write_text(json.dumps({"output_dir": str(run)}))
    out = tmp_path / "out"
    assert main(["predict", str(run), str(CT5N), str(out), "--dicom-seg", "--rtstruct", "--no-progress"]) == 0
    report = json.loads((out / "predict_report.json").read_text())
    (case,) = report["cases"]
    seg = next(p for p in case["outputs"] if p.endswith("_seg.dcm"))
    rtss = next(p for p in case["outputs"] if p.endswith("_rtstruct.dcm"))
    nifti = next(p for p in case["outputs"] if p.endswith(".nii.gz"))
    predicted = read_nifti(nifti).array
    volume = read_series(CT5N)
    assert predicted.shape == volume.array.shape and predicted.any() and not predicted.all()
    back, names = read_dicom_seg(seg, CT5N, label_names={1: "bright"})
    np.testing.assert_array_equal(back, predicted)
    assert [roi.name for roi in list_rois(rtss)] == ["bright"]
    traced = rasterize_roi(rtss, "bright", CT5N)
    dice = 2 * np.logical_and(traced, predicted > 0).sum() / (traced.sum() + (predicted > 0).sum())
    assert dice > 0.9
