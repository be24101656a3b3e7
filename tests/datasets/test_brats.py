"""The BraTS finder: every release layout, spelling variants, missing files, unlabeled releases."""
import os

import pytest

from tfseg.datasets.brats import (LABELS, MODALITIES, REGIONS, BratsCase, find_brats, parse_name)
from tfseg.utils.problems import ProblemLog
from tfseg.datasets.splits import split_by_patient
from tfseg.datasets.synthetic import write_brats
from tfseg.errors import ConfigError, DataError

SHAPE = (16, 16, 16)


@pytest.fixture(scope="module", params=["2021", "2020", "2018"])
def dataset(request, tmp_path_factory):
    return write_brats(tmp_path_factory.mktemp(f"brats{request.param}"), num_cases=5, shape=SHAPE,
                       layout=request.param)


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def _case(root, case_id, suffixes=("t1", "t1ce", "t2", "flair", "seg"), ext=".nii.gz", sub="", sep="_",
          folder=None):
    folder = os.path.join(root, sub, case_id if folder is None else folder)
    for suffix in suffixes:
        _touch(os.path.join(folder, f"{case_id}{sep}{suffix}{ext}"))
    return folder


def test_every_layout_is_found_with_files_in_modality_order(dataset):
    cases = find_brats(dataset.root, on_error="raise")
    assert cases == list(dataset.cases)
    assert [c.case_id for c in cases] == sorted(c.case_id for c in cases)
    for case in cases:
        assert len(case.images) == 4 and case.label is not None
        for modality, path in zip(MODALITIES, case.images):
            assert os.path.isfile(path)
            assert parse_name(os.path.basename(path)) == (case.case_id, modality)
        assert parse_name(os.path.basename(case.label)) == (case.case_id, "seg")


def test_layout_specifics(dataset):
    cases = find_brats(dataset.root, on_error="raise")
    if dataset.layout == "2021":
        assert cases[0].case_id == "BraTS2021_00000" and cases[0].images[0].endswith("_t1.nii.gz")
        assert {c.grade for c in cases} == {None}
    elif dataset.layout == "2020":
        assert cases[0].case_id == "BraTS20_Training_001" and cases[0].images[0].endswith("_t1.nii")
        assert [c.grade for c in cases] == ["HGG", "HGG", "HGG", "LGG", "HGG"]  # from name_mapping.csv
    else:
        assert {os.path.basename(os.path.dirname(os.path.dirname(c.label))) for c in cases} == {"HGG", "LGG"}
        assert [c.grade for c in cases if "TCIA09" in c.case_id] == ["LGG"]


def test_modalities_subset_in_the_asked_order(dataset):
    cases = find_brats(dataset.root, modalities=("flair", "t1ce", "t2"), on_error="raise")
    full = {c.case_id: c for c in dataset.cases}
    for case in cases:
        assert case.images == (full[case.case_id].images[3], full[case.case_id].images[1],
                               full[case.case_id].images[2])


def test_case_alias_lets_split_by_patient_work():
    cases = [BratsCase(f"BraTS2021_{k:05d}", ("a", "b", "c", "d"), "s") for k in range(10)]
    split = split_by_patient(cases, val_fraction=0.2)
    assert len(split.val) == 2 and cases[0].case == "BraTS2021_00000"


def test_spelling_variants_flat_folder_and_nonstandard_label(tmp_path):
    _case(tmp_path, "TCIA_A", ("T1", "T1Gd", "T2", "FLAIR", "seg"))
    _case(tmp_path, "BraTS-GLI-00000-000", ("t1n", "t1c", "t2w", "t2f", "seg"), sep="-")
    _case(tmp_path, "flat_1", folder="flat")
    _case(tmp_path, "flat_2", folder="flat")
    case_dir = _case(tmp_path, "BraTS20_Training_355", ("t1", "t1ce", "t2", "flair"), ext=".nii")
    _touch(os.path.join(case_dir, "W39_1998.09.19_Segm.nii"))
    _touch(os.path.join(tmp_path, "TCIA_A", "._TCIA_A_flair.nii.gz"))  # macOS resource fork: ignored
    cases = {c.case_id: c for c in find_brats(tmp_path, on_error="raise")}
    assert sorted(cases) == ["BraTS-GLI-00000-000", "BraTS20_Training_355", "TCIA_A", "flat_1", "flat_2"]
    assert cases["flat_2"].images[0] == os.path.join(tmp_path, "flat", "flat_2_t1.nii.gz")
    assert cases["TCIA_A"].images[1].endswith("TCIA_A_T1Gd.nii.gz")
    assert cases["BraTS-GLI-00000-000"].images[3].endswith("-t2f.nii.gz")
    assert cases["BraTS20_Training_355"].label.endswith("W39_1998.09.19_Segm.nii")


def test_missing_modality_is_skipped_with_a_problem_or_raises(tmp_path):
    _case(tmp_path, "BraTS2021_00000")
    _case(tmp_path, "BraTS2021_00001", ("t1", "t2", "flair", "seg"))
    log = ProblemLog("skip")
    cases = find_brats(tmp_path, problems=log)
    assert [c.case_id for c in cases] == ["BraTS2021_00000"]
    assert len(log) == 1
    assert "BraTS2021_00001" in log.problems[0].path and "missing t1ce image" in log.problems[0].reason
    # named by the missing file, not by the FLAIR that marks the case
    assert log.problems[0].path == str(tmp_path / "BraTS2021_00001" / "BraTS2021_00001_t1ce.nii.gz")
    with pytest.raises(DataError, match=r"BraTS2021_00001_t1ce.nii.gz: case BraTS2021_00001: missing t1ce"):
        find_brats(tmp_path, on_error="raise")
    # asking only for the modalities present, the case is whole
    assert len(find_brats(tmp_path, modalities=("flair", "t2"), on_error="raise")) == 2


def test_missing_label_and_unlabeled_release(tmp_path, caplog):
    _case(tmp_path, "BraTS2021_00000")
    _case(tmp_path, "BraTS2021_00001", ("t1", "t1ce", "t2", "flair"))
    caplog.set_level("WARNING")
    cases = find_brats(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS2021_00000"]
    assert "BraTS2021_00001" in caplog.text and "missing label" in caplog.text
    with pytest.raises(DataError, match="missing label"):
        find_brats(tmp_path, on_error="raise")
    unlabeled = find_brats(tmp_path, require_label=False, on_error="raise")
    assert [(c.case_id, c.label is None) for c in unlabeled] == [("BraTS2021_00000", False),
                                                                 ("BraTS2021_00001", True)]


def test_duplicates_and_ambiguous_files(tmp_path):
    _case(tmp_path, "BraTS2021_00000", sub="copy1")
    _case(tmp_path, "BraTS2021_00000", sub="copy2")
    case_dir = _case(tmp_path, "BraTS2021_00001")
    _touch(os.path.join(case_dir, "BraTS2021_00001_t2.nii"))  # both .nii and .nii.gz
    log = ProblemLog("skip")
    cases = find_brats(tmp_path, problems=log)
    assert [c.case_id for c in cases] == ["BraTS2021_00000"]
    assert os.path.join("copy1", "BraTS2021_00000") in cases[0].images[0]
    reasons = sorted(p.reason for p in log.problems)
    assert len(reasons) == 2
    assert "second copy of case BraTS2021_00000" in reasons[0]
    assert "several files for t2 image" in reasons[1]


def test_bad_root_and_arguments(tmp_path):
    with pytest.raises(DataError, match="BraTS folder not found"):
        find_brats(tmp_path / "absent")
    _touch(os.path.join(tmp_path, "notes.txt"))
    with pytest.raises(DataError, match="no BraTS FLAIR files"):
        find_brats(tmp_path)
    with pytest.raises(ConfigError, match="modalities"):
        find_brats(tmp_path, modalities=("t1", "dwi"))
    with pytest.raises(ConfigError, match="on_error"):
        find_brats(tmp_path, on_error="ignore")


def test_label_constants():
    assert sorted(LABELS) == [0, 1, 2, 4]
    assert set(REGIONS["ET"]) <= set(REGIONS["TC"]) <= set(REGIONS["WT"]) == {1, 2, 4}
    assert MODALITIES == ("t1", "t1ce", "t2", "flair")
