"""Tests of tfseg.datasets.synthetic_lgg: layout, reuse/rewrite, determinism and the drawn content."""
import json
import os

import numpy as np
import pytest

from tfseg.datasets.lgg import find_lgg, load_sample
from tfseg.datasets.synthetic import MARKER_NAME
from tfseg.datasets.synthetic_lgg import ensure_lgg, patient_ids, write_lgg
from tfseg.errors import ConfigError, DataError
from tfseg.io.images import read_image

SMALL = dict(num_patients=3, slices_per_patient=6, image_size=64, seed=1)


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = handle.read()
    return out


def test_kaggle_layout_and_records(tmp_path):
    ds = write_lgg(tmp_path, **SMALL)
    assert ds.root == str(tmp_path) and len(ds.patients) == 3
    assert sorted(os.listdir(ds.kaggle_dir)) == sorted(ds.patients + ("README.md", "data.csv"))
    for patient in ds.patients:
        assert patient.startswith("TCGA_") and len(patient.split("_")) == 4 and len(patient.split("_")[3]) == 8
        assert len(os.listdir(os.path.join(ds.kaggle_dir, patient))) == 12
    records = ds.find()
    assert records == find_lgg(ds.kaggle_dir)
    assert [r.slice_index for r in records[:6]] == [1, 2, 3, 4, 5, 6]
    image = read_image(records[0].image)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    raw_mask = read_image(records[0].mask)
    assert raw_mask.dtype == np.uint8 and raw_mask.ndim == 2 and set(np.unique(raw_mask)) <= {0, 255}


def test_lesion_in_about_60_percent_of_slices_and_bright_in_flair(tmp_path):
    ds = write_lgg(tmp_path, num_patients=4, slices_per_patient=10, image_size=96, seed=0)
    with_lesion = 0
    for patient in ds.patients:
        flags = []
        for record in [r for r in ds.find() if r.patient == patient]:
            image, mask = load_sample(record)
            flags.append(bool(mask.any()))
            if mask.any():
                inside = image[mask == 1].mean(axis=0)
                ring = (np.abs(np.arange(96)[:, None] - np.argwhere(mask)[:, 0].mean()) < 30) & (mask == 0)
                around = image[ring & (image[..., 1] > 60)].mean(axis=0)  # brain tissue near the lesion
                assert inside[1] > around[1] + 30, record.image  # FLAIR-hyperintense
                assert abs(inside[0] - around[0]) < abs(inside[1] - around[1])  # subtle in the other channels
        # one contiguous run of slices per patient, 52-68% of them
        runs = np.flatnonzero(np.diff(np.r_[0, np.array(flags, int), 0]))
        assert len(runs) == 2, (patient, flags)
        assert 5 <= sum(flags) <= 7
        with_lesion += sum(flags)
    assert 0.5 <= with_lesion / 40 <= 0.7


def test_deterministic_for_a_seed(tmp_path):
    a = write_lgg(tmp_path / "a", **SMALL)
    b = write_lgg(tmp_path / "b", **SMALL)
    files_a, files_b = _files(a.root), _files(b.root)
    files_a.pop(MARKER_NAME), files_b.pop(MARKER_NAME)
    assert files_a == files_b
    c = write_lgg(tmp_path / "c", **{**SMALL, "seed": 2})
    assert c.patients != a.patients
    assert patient_ids(50, seed=0) == patient_ids(50, seed=0) and len(set(patient_ids(50, seed=0))) == 50


def test_ensure_reuses_then_rewrites(tmp_path):
    ds = ensure_lgg(tmp_path, **SMALL)
    first = ds.find()[0].image
    stamp = os.stat(first).st_mtime_ns
    os.utime(first, ns=(stamp - 10**9, stamp - 10**9))
    assert ensure_lgg(tmp_path, **SMALL) == ds
    assert os.stat(first).st_mtime_ns == stamp - 10**9  # not rewritten
    os.remove(ds.find()[-1].mask)  # incomplete: rewritten
    assert ensure_lgg(tmp_path, **SMALL) == ds
    assert len(ds.find()) == 18
    other = ensure_lgg(tmp_path, **{**SMALL, "slices_per_patient": 2})  # other arguments: rewritten
    assert len(other.find()) == 6
    marker = json.loads((tmp_path / MARKER_NAME).read_text())
    assert marker["complete"] and marker["kwargs"]["slices_per_patient"] == 2


def test_refuses_foreign_folders_and_bad_arguments(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(DataError, match="not written by write_lgg"):
        write_lgg(tmp_path, **SMALL)
    assert (tmp_path / "mine.txt").read_text() == "keep"
    ds_root = tmp_path / "ds"
    write_lgg(ds_root, **SMALL)
    (ds_root / "extra").mkdir()
    with pytest.raises(DataError, match="holds extra beside a synthetic LGG dataset"):
        ensure_lgg(ds_root, **{**SMALL, "seed": 5})
    with pytest.raises(ConfigError, match="image_size"):
        write_lgg(tmp_path / "x", image_size=8)
    with pytest.raises(ConfigError, match="num_patients"):
        ensure_lgg(tmp_path / "x", num_patients=0)
