"""The RSNA two-stage recipe end to end at a tiny size: synthetic BraTS NIfTI → UNet++ (stage 1) →
synthetic task-2 DICOM series → [image, WT, ET] chunks → CNN + BiLSTM (stage 2) → AUC, submission, SavedModels."""
import csv
import json

import pytest
from recipe_helpers import load_recipe

pytestmark = pytest.mark.slow

TINY = {"stage1": {"data": {"synthetic_cases": 3, "synthetic_shape": [32, 32, 16],
                            "modalities": ["t1", "t1ce", "t2", "flair"], "val_fraction": 0.34, "test_fraction": 0.0},
                   "slices": {"planes": ["axial"], "image_size": 32, "augment": False},
                   "model": {"encoder": "resnet18", "options": {"decoder_filters": [8, 8, 8, 8, 8]}},
                   "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.001}},
        "data": {"synthetic_train": 8, "synthetic_test": 2, "synthetic_shape": [32, 32, 16], "synthetic_overlap": 1,
                 "mri_types": ["FLAIR"], "val_fraction": 0.5},
        "sequence": {"image_size": 32, "chunk_length": 4, "chunk_stride": 4},
        "model": {"encoder": "small_cnn", "options": {"lstm_units": 4, "backbone_filters": [4, 8]}},
        "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8, "learning_rate": 0.001}}


def test_rsna_recipe_writes_aucs_submission_and_a_savedmodel_per_stage(tmp_path):
    config = tmp_path / "rsna.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    assert load_recipe("rsna_two_stage").main(["--config", str(config), "--output-dir", str(out), "--quiet"]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("patient_auc", "chunk_auc", "patient_auc_FLAIR", "chunk_auc_FLAIR"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # 8 labelled patients, the one also in the stage-1 BraTS data left out, half of the rest held out
    assert metrics["train_patients"] + metrics["val_patients"] == 7 and metrics["val_patients"] >= 2
    with open(out / "submission.csv") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["BraTS21ID", "MGMT_value"] and [r[0] for r in rows[1:]] == ["00010", "00011"]
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows[1:])
    for stage in ("stage1", "stage2/FLAIR"):
        assert (out / stage / "saved_model" / "saved_model.pb").is_file(), stage
        assert (out / stage / "model.keras").is_file(), stage
