"""Tests of tfseg.data.slices (2D slices of 3D volumes, area ratio filter, de-duplication)."""
import dataclasses
import os

import nibabel as nib
import numpy as np
import pytest

from tfseg.data.transforms.intensity import brain_mask_array as brain_mask
from tfseg.data.slices import (extract_slices, read_case, slice_difference, slices_from_cases,
                               tumour_brain_ratio)
from tfseg.datasets.synthetic import write_brats
from tfseg.errors import ConfigError, DataError
from tfseg.utils.problems import ProblemLog


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    return write_brats(str(tmp_path_factory.mktemp("brats_slices")), num_cases=2, shape=(32, 28, 24), seed=5)


def test_brain_mask_and_ratio():
    image = np.zeros((2, 3, 2))
    image[0, 0, 1] = 1.0
    image[1, 2, 0] = -2.0
    assert brain_mask(image).tolist() == [[True, False, False], [False, False, True]]
    assert tumour_brain_ratio(np.array([[0, 4], [0, 0]]), np.ones((2, 2), bool)) == 0.25
    assert tumour_brain_ratio(np.ones((2, 2)), np.zeros((2, 2))) == 0.0
    with pytest.raises(ConfigError):
        tumour_brain_ratio(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ConfigError):
        brain_mask(np.ones((2, 2)))


def test_slice_difference_measure():
    a = np.array([[1.0, 2.0]])
    assert slice_difference(a, a) == 0.0
    assert slice_difference(a, 3 * a) == pytest.approx(4 / 8)
    assert slice_difference(a, np.zeros_like(a)) == 1.0
    assert slice_difference(np.zeros(3), np.zeros(3)) == 0.0


def test_planes_follow_the_memory_axes():
    d, h, w = 5, 6, 7
    volume = np.arange(d * h * w * 2, dtype=np.float32).reshape(d, h, w, 2) + 1
    label = np.ones((d, h, w), np.uint8)
    slices = extract_slices(volume, label, dedupe=0.0, min_ratio=0.0)
    assert [(s.plane, s.index) for s in slices] == (
        [("axial", k) for k in range(d)] + [("coronal", k) for k in range(h)] + [("sagittal", k) for k in range(w)])
    by = {(s.plane, s.index): s for s in slices}
    np.testing.assert_array_equal(by["axial", 2].image, volume[2])
    np.testing.assert_array_equal(by["coronal", 3].image, volume[:, 3])
    np.testing.assert_array_equal(by["sagittal", 4].image, volume[:, :, 4])
    assert by["axial", 0].image.shape == (h, w, 2) and by["axial", 0].label.shape == (h, w)
    assert by["coronal", 0].image.shape == (d, w, 2) and by["sagittal", 0].label.shape == (d, h)
    # Planes come in the order asked for.
    assert [s.plane for s in extract_slices(volume, label, planes=("sagittal", "axial"), dedupe=0.0)][0] == "sagittal"


def test_ratio_filter_is_strict_and_uses_the_brain():
    volume = np.zeros((3, 10, 10, 1), np.float32)
    volume[:, :, :5] = 1.0                       # brain: 50 pixels per axial slice
    label = np.zeros((3, 10, 10), np.uint8)
    label[0, 0, :1] = 1                          # 1/50 = 0.02
    label[1, 0, :2] = 2                          # 2/50 = 0.04
    label[2, 0, :1] = 4
    volume[2] = 0                                # no brain: ratio 0
    kept = extract_slices(volume, label, planes="axial", min_ratio=0.02, dedupe=0.0)
    assert [s.index for s in kept] == [1]
    assert [s.index for s in extract_slices(volume, label, planes="axial", min_ratio=0.019, dedupe=0.0)] == [0, 1]


def test_dedupe_drops_near_copies_of_the_last_kept_slice():
    base = np.ones((8, 8, 1), np.float32)
    volume = np.stack([base, base * 1.01, base * 1.02, base * 1.03, base * 2.0])
    label = np.ones((5, 8, 8), np.uint8)
    kept = extract_slices(volume, label, planes="axial", min_ratio=0.0, dedupe=0.012)
    # Differences to slice 0: 1.01 -> 0.0050, 1.02 -> 0.0099, 1.03 -> 0.0148; 2.0 is far from 1.03.
    assert [s.index for s in kept] == [0, 3, 4]
    every = extract_slices(volume, label, planes="axial", min_ratio=0.0, dedupe=0.0)
    assert [s.index for s in every] == [0, 1, 2, 3, 4]


def test_bad_arguments():
    volume, label = np.ones((2, 3, 4, 1)), np.ones((2, 3, 4))
    with pytest.raises(ConfigError, match="planes"):
        extract_slices(volume, label, planes=("axial", "oblique"))
    with pytest.raises(ConfigError, match="min_ratio"):
        extract_slices(volume, label, min_ratio=1.5)
    with pytest.raises(ConfigError, match="dedupe"):
        extract_slices(volume, label, dedupe="x")
    with pytest.raises(ConfigError, match="same size"):
        extract_slices(volume, label[:, :2])
    with pytest.raises(ConfigError, match="on_error"):
        slices_from_cases([], on_error="ignore")


def test_read_case_matches_nibabel(brats):
    case = brats.cases[0]
    volume, label = read_case(case, ("t2", "flair"))
    files = {os.path.basename(p).split("_")[-1].split(".")[0]: p for p in case.images}
    np.testing.assert_array_equal(volume[..., 0], np.asanyarray(nib.load(files["t2"]).dataobj).T)
    np.testing.assert_array_equal(volume[..., 1], np.asanyarray(nib.load(files["flair"]).dataobj).T)
    np.testing.assert_array_equal(label, np.asanyarray(nib.load(case.label).dataobj).T)
    assert volume.shape == (24, 28, 32, 2) and volume.dtype == np.float32 and label.dtype == np.uint8
    with pytest.raises(ConfigError, match="channels"):
        read_case(case, ("t1", "dwi"))


def test_slices_from_cases_and_bad_case_policy(brats, tmp_path):
    slices = slices_from_cases(brats.cases, planes=("axial", "coronal"), min_ratio=0.01, dedupe=0.02)
    case_ids = [s.case_id for s in slices]
    assert sorted(set(case_ids)) == list(brats.case_ids) and case_ids == sorted(case_ids)
    volume, label = read_case(brats.cases[0])
    expected = extract_slices(volume, label, planes=("axial", "coronal"), min_ratio=0.01, dedupe=0.02)
    got = [s for s in slices if s.case_id == brats.case_ids[0]]
    assert [(s.plane, s.index) for s in got] == [(s.plane, s.index) for s in expected]
    for s, e in zip(got, expected):
        np.testing.assert_array_equal(s.image, e.image)
        np.testing.assert_array_equal(s.label, e.label)
        assert s.image.base is None and s.image.shape[-1] == 3  # copied, not a view of the whole volume
        assert tumour_brain_ratio(s.label, brain_mask(s.image)) > 0.01
    assert {s.plane for s in slices} == {"axial", "coronal"}
    broken = str(tmp_path / "broken_flair.nii.gz")
    with open(broken, "wb") as handle:
        handle.write(b"not a nifti file at all")
    bad = dataclasses.replace(brats.cases[0], case_id="broken",
                              images=tuple(broken if p.endswith("_flair.nii.gz") else p for p in brats.cases[0].images))
    with pytest.raises(DataError, match="broken_flair"):
        slices_from_cases([bad] + list(brats.cases))
    problems = ProblemLog("skip")
    kept = slices_from_cases([bad, brats.cases[1]], planes="axial", on_error="skip", problems=problems)
    assert {s.case_id for s in kept} == {brats.case_ids[1]} and [p.path for p in problems.problems] == [broken]
    nolabel = dataclasses.replace(brats.cases[0], label=None)
    with pytest.raises(DataError, match="no label"):
        read_case(nolabel)
