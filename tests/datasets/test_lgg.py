"""Tests of tfseg.datasets.lgg on hand-made Kaggle and flat trees of real TIFF files."""
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from tfseg.datasets.lgg import LggRecord, find_lgg, flat_patient, load_sample
from tfseg.datasets.splits import split_by_patient
from tfseg.errors import ConfigError, DataError
from tfseg.utils.problems import ProblemLog

P1 = "TCGA_CS_4941_19960909"
P2 = "TCGA_DU_5849_19950405"


def _slice(path, size=8, value=100):
    image = np.full((size, size, 3), value, np.uint8)
    image[..., 1] += 20
    tifffile.imwrite(path, image, photometric="rgb")


def _mask(path, size=8):
    mask = np.zeros((size, size), np.uint8)
    mask[2:5, 3:6] = 255
    tifffile.imwrite(path, mask)


def _kaggle(root, slices=(1, 2, 10), patients=(P2, P1)):
    top = root / "kaggle_3m"
    for patient in patients:
        (top / patient).mkdir(parents=True)
        for n in slices:
            _slice(top / patient / f"{patient}_{n}.tif")
            _mask(top / patient / f"{patient}_{n}_mask.tif")
    (top / "data.csv").write_text("Patient,death01\nTCGA_CS_4941,0\n")
    (top / "README.md").write_text("readme")
    (top / patients[0] / ".DS_Store").write_bytes(b"\0")
    return top


def test_kaggle_layout_sorted_numerically(tmp_path):
    top = _kaggle(tmp_path)
    for root in (tmp_path, top):  # the folder holding kaggle_3m/, or kaggle_3m itself
        records = find_lgg(root)
        assert [(r.patient, r.slice_index) for r in records] == \
            [(P1, 1), (P1, 2), (P1, 10), (P2, 1), (P2, 2), (P2, 10)]
        first = records[0]
        assert first.image == os.path.join(top, P1, f"{P1}_1.tif")
        assert first.mask == os.path.join(top, P1, f"{P1}_1_mask.tif")
        assert first.case == P1


def test_flat_layout_both_mask_namings(tmp_path):
    (tmp_path / "train_image").mkdir()
    (tmp_path / "train_mask").mkdir()
    for n in (3, 12):
        _slice(tmp_path / "train_image" / f"{P1}_{n}.tif")
        _mask(tmp_path / "train_mask" / f"{P1}_{n}.tif")
        _slice(tmp_path / "train_image" / f"brain7_{n}.tif")
        _mask(tmp_path / "train_mask" / f"brain7_{n}_mask.tif")
    records = find_lgg(tmp_path)
    assert [(r.patient, r.slice_index) for r in records] == [(P1, 3), (P1, 12), ("brain7", 3), ("brain7", 12)]
    assert records[2].mask.endswith(os.path.join("train_mask", "brain7_3_mask.tif"))
    assert records[0].mask.endswith(os.path.join("train_mask", f"{P1}_3.tif"))


def test_flat_patient_names():
    assert flat_patient(f"{P1}_5") == (P1, 5)
    assert flat_patient("TCGA_HT_A61A_20000127_17") == ("TCGA_HT_A61A_20000127", 17)
    assert flat_patient("case_a_2") == ("case_a", 2)
    assert flat_patient("single") == ("single", 0)


def test_missing_mask_and_orphan_mask_under_skip_and_raise(tmp_path):
    top = _kaggle(tmp_path, slices=(1, 2))
    os.remove(top / P1 / f"{P1}_2_mask.tif")
    _mask(top / P2 / f"{P2}_7_mask.tif")
    log = ProblemLog("skip")
    records = find_lgg(tmp_path, problems=log)
    assert [(r.patient, r.slice_index) for r in records] == [(P1, 1), (P2, 1), (P2, 2)]
    reasons = {os.path.basename(p.path): p.reason for p in log.problems}
    assert reasons[f"{P1}_2.tif"].startswith("no mask for this slice")
    assert reasons[f"{P2}_7_mask.tif"].startswith("no slice image for this mask")
    with pytest.raises(DataError, match=f"{P1}_2.tif: no mask for this slice: expected {P1}_2_mask.tif"):
        find_lgg(tmp_path, on_error="raise")


def test_flat_missing_mask_and_duplicates(tmp_path):
    (tmp_path / "train_image").mkdir()
    (tmp_path / "train_mask").mkdir()
    _slice(tmp_path / "train_image" / "a_1.tif")
    _slice(tmp_path / "train_image" / "a_2.tif")
    _mask(tmp_path / "train_mask" / "a_1.tif")
    _slice(tmp_path / "train_image" / "a_01.tif")  # the same slice number again
    _mask(tmp_path / "train_mask" / "a_01.tif")
    log = ProblemLog("skip")
    records = find_lgg(tmp_path, problems=log)
    assert [(r.patient, r.slice_index) for r in records] == [("a", 1)]
    assert sorted(os.path.basename(p.path) for p in log.problems) == ["a_1.tif", "a_2.tif"]
    assert any("a second slice 1 of patient a" in p.reason for p in log.problems)


def test_bad_roots(tmp_path):
    with pytest.raises(DataError, match="LGG folder not found"):
        find_lgg(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no LGG dataset here: expected 'kaggle_3m/<patient>"):
        find_lgg(tmp_path)
    (tmp_path / "kaggle_3m" / P1).mkdir(parents=True)
    _slice(tmp_path / "kaggle_3m" / P1 / f"{P1}_1.tif")
    with pytest.raises(DataError, match=r"no slice with its mask found .*1 problem"):
        find_lgg(tmp_path)
    with pytest.raises(ConfigError, match="on_error"):
        find_lgg(tmp_path, on_error="ignore")
    with pytest.raises(ConfigError, match="ProblemLog"):
        find_lgg(tmp_path, problems=[])


def test_load_sample_shapes_and_dtypes(tmp_path):
    _kaggle(tmp_path, slices=(1,), patients=(P1,))
    record = find_lgg(tmp_path)[0]
    image, mask = load_sample(record)
    assert image.dtype == np.float32 and image.shape == (8, 8, 3)
    assert image[0, 0].tolist() == [100.0, 120.0, 100.0]
    assert mask.dtype == np.uint8 and mask.shape == (8, 8)
    assert set(np.unique(mask).tolist()) == {0, 1} and int(mask.sum()) == 9


def test_load_sample_grayscale_is_repeated(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(gray).save(tmp_path / "g_1.png")
    _mask(tmp_path / "g_1_mask.tif")
    image, _ = load_sample(LggRecord(str(tmp_path / "g_1.png"), str(tmp_path / "g_1_mask.tif"), "g", 1))
    assert image.shape == (8, 8, 3)
    np.testing.assert_array_equal(image[..., 2], gray.astype(np.float32))


def test_load_sample_errors_name_the_file(tmp_path):
    _slice(tmp_path / "a_1.tif", size=8)
    _mask(tmp_path / "a_1_mask.tif", size=10)
    record = LggRecord(str(tmp_path / "a_1.tif"), str(tmp_path / "a_1_mask.tif"), "a", 1)
    with pytest.raises(DataError, match=r"a_1_mask.tif: mask is 10x10 but its slice .*a_1.tif is 8x8"):
        load_sample(record)
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((8, 8, 2), np.uint8), planarconfig="contig",
                     photometric="minisblack", extrasamples=["unspecified"])
    with pytest.raises(DataError, match="two.tif: expected a 3-channel slice"):
        load_sample(LggRecord(str(tmp_path / "two.tif"), record.mask, "a", 1))
    data = (tmp_path / "a_1.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="cut.tif"):
        load_sample(LggRecord(str(tmp_path / "cut.tif"), record.mask, "a", 1))


def test_split_by_patient_keeps_patients_apart(tmp_path):
    patients = [f"TCGA_CS_{1000 + i}_19960909" for i in range(6)]
    _kaggle(tmp_path, slices=(1, 2, 3), patients=patients)
    records = find_lgg(tmp_path)
    split = split_by_patient(records, val_fraction=0.2, test_fraction=0.2, seed=3)
    parts = [{r.patient for r in part} for part in split]
    assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, split)) == len(records) == 18
