"""Tests of the RSNA-MICCAI task-2 layout: labels, patients, series order, patient-grouped splits."""
import os

import numpy as np
import pydicom
import pytest

from tfseg.datasets.rsna import (MRI_TYPES, RsnaPatient, check_disjoint, find_rsna, read_labels,
                                 read_patient_series, split_patients)
from tfseg.datasets.synthetic_rsna import ensure_rsna, patient_volumes, write_rsna
from tfseg.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_rsna(tmp_path_factory.mktemp("rsna"), num_train=3, num_test=1, shape=(20, 24, 16), seed=3,
                      first_id=7)


def test_layout_labels_and_patients(dataset):
    assert sorted(os.listdir(dataset.train_dir)) == ["00007", "00008", "00009"]
    assert sorted(os.listdir(os.path.join(dataset.train_dir, "00007"))) == sorted(MRI_TYPES)
    with open(dataset.labels_csv) as stream:
        assert stream.readline().strip() == "BraTS21ID,MGMT_value"
        assert stream.readline().split(",")[0] == "00007"
    labels = read_labels(dataset.labels_csv)
    assert labels == dataset.labels and set(labels.values()) == {0, 1}
    patients = find_rsna(dataset.train_dir, dataset.labels_csv)
    assert [(p.patient, p.label) for p in patients] == sorted(dataset.labels.items())
    unlabelled = find_rsna(dataset.test_dir)
    assert [p.patient for p in unlabelled] == ["00010"] and unlabelled[0].label is None


def test_series_are_sorted_by_position_not_file_name(dataset):
    patient = find_rsna(dataset.train_dir, dataset.labels_csv)[1]
    folder = patient.series["T1wCE"]
    names = sorted(os.listdir(folder), key=lambda n: int(n[6:-4]))
    positions = [float(pydicom.dcmread(os.path.join(folder, n)).ImagePositionPatient[2]) for n in names]
    assert positions != sorted(positions)      # file number order is not slice order
    expected, _ = patient_volumes((20, 24, 16), 3, 8, dataset.labels["00008"], 1.6)
    volume = read_patient_series(patient, "T1wCE")
    assert volume.shape == (16, 24, 20)
    np.testing.assert_array_equal(volume, expected["T1wCE"])


def test_methylated_tumour_core_is_brighter():
    plain, label = patient_volumes((24, 24, 16), 0, 0, 0, 1.6)
    methylated, _ = patient_volumes((24, 24, 16), 0, 0, 1, 1.6)
    core = (label == 1) | (label == 4)
    assert core.any()
    ratio = methylated["FLAIR"][core].astype(float).sum() / plain["FLAIR"][core].astype(float).sum()
    assert ratio == pytest.approx(1.6, rel=0.01)
    np.testing.assert_array_equal(methylated["T2w"][~core], plain["T2w"][~core])


def test_ensure_reuses(dataset):
    again = ensure_rsna(dataset.root, num_train=3, num_test=1, shape=(20, 24, 16), seed=3, first_id=7)
    assert again == dataset


def test_bad_labels(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("BraTS21ID,MGMT_value\n12,1\n00012,0\n")
    with pytest.raises(DataError, match="00012 is listed twice"):
        read_labels(path)
    path.write_text("BraTS21ID,MGMT_value\n12,2\n")
    with pytest.raises(DataError, match=r"labels.csv:2: MGMT_value"):
        read_labels(path)
    path.write_text("id,label\n")
    with pytest.raises(DataError, match="header"):
        read_labels(path)


def test_missing_series_and_label(dataset, tmp_path):
    os.makedirs(tmp_path / "00001" / "FLAIR")
    with pytest.raises(DataError, match="00001 has no FLAIR series"):
        find_rsna(tmp_path)
    with pytest.raises(DataError, match="no MGMT_value"):
        find_rsna(dataset.test_dir, labels={"00001": 1})


def test_leakage_check_catches_an_overlapping_patient():
    train = [RsnaPatient("00001", {}), RsnaPatient("00002", {})]
    val = [RsnaPatient("00003", {}), RsnaPatient("00002", {})]
    with pytest.raises(ConfigError, match="patient 00002 is in both 'train' and 'val'"):
        check_disjoint(train=train, val=val)
    check_disjoint(train=train, val=val[:1])


def test_split_by_patient_and_stage1_exclusion():
    patients = [RsnaPatient(f"{k:05d}", {}, k % 2) for k in range(20)]
    train, val = split_patients(patients, val_fraction=0.2, seed=1)
    assert len(val) == 4 and len(train) == 16
    assert not {p.patient for p in train} & {p.patient for p in val}
    train, val = split_patients(patients, val_fraction=0.2, seed=1,
                                exclude=["BraTS2021_00000", "BraTS2021_00005", "3"])
    kept = {p.patient for p in train + val}
    assert len(kept) == 17 and not kept & {"00000", "00005", "00003"}
    assert sorted(p.label for p in val) == [0, 0, 1, 1]       # stratified by label
    with pytest.raises(ConfigError, match="00004 appears in more than one record"):
        split_patients(patients + [RsnaPatient("00004", {}, 0)])
