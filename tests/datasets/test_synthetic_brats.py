"""The synthetic BraTS writer: layouts, NIfTI validity, determinism, anatomy, label nesting, reuse."""
import json
import os

import nibabel as nib
import numpy as np
import pytest

from tfseg.datasets.brats import MODALITIES, find_brats
from tfseg.datasets.datalist import DatalistRecord, read_datalist
from tfseg.datasets.synthetic import (MARKER_NAME, brats_affine, ensure_brats, write_brats, write_sunnybrook)
from tfseg.errors import ConfigError, DataError

SHAPE = (24, 24, 16)
SMALL = dict(num_cases=4, shape=SHAPE)  # case 2 has a small tumour, case 3 is LGG-like


def _load(case):
    images = [np.asarray(nib.load(p).dataobj) for p in case.images]
    return images, np.asarray(nib.load(case.label).dataobj)


def _neighbours(mask):
    """Voxels 6-adjacent to `mask` (padding outside the grid)."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(mask)
    for axis in range(3):
        for shift in (-1, 1):
            out |= np.roll(padded, shift, axis)[1:-1, 1:-1, 1:-1]
    return out


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return write_brats(tmp_path_factory.mktemp("a"), seed=0, **SMALL)


@pytest.fixture(scope="module")
def cases(first):
    return [(case, *_load(case)) for case in first.cases]


def test_files_are_plain_nifti_with_shape_affine_and_types(first):
    expected = brats_affine(SHAPE)
    assert np.allclose(expected[:3, :3], np.diag([-1.0, -1.0, 1.0]))
    for case in first.cases:
        for path in case.images + (case.label,):
            image = nib.load(path)
            assert image.shape == SHAPE
            assert np.allclose(image.affine, expected)
            assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
            assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
            assert image.header.get_xyzt_units()[0] == "mm"
            assert image.header.get_zooms() == (1.0, 1.0, 1.0)
            assert image.get_data_dtype() == (np.uint8 if path == case.label else np.int16)


def test_layout_2021_and_datalist(first):
    assert first.case_ids == tuple(f"BraTS2021_{k:05d}" for k in range(4))
    assert find_brats(first.root, on_error="raise") == list(first.cases)
    assert first.case_dirs == tuple(os.path.dirname(c.label) for c in first.cases)
    data = read_datalist(first.datalist)
    assert (len(data["training"]), len(data["validation"])) == (3, 1)
    records = {DatalistRecord(c.case_id, c.images, c.label) for c in first.cases}
    assert set(data["training"]) | set(data["validation"]) == records
    raw = json.load(open(first.datalist))
    assert not os.path.isabs(raw["training"][0]["image"][0])


@pytest.mark.parametrize("layout, first_id, ext", [("2020", "BraTS20_Training_001", ".nii"),
                                                   ("2018", "Brats18_TCIA01_001_1", ".nii.gz")])
def test_other_layouts(tmp_path, layout, first_id, ext):
    ds = write_brats(tmp_path, num_cases=4, shape=(16, 16, 16), layout=layout)
    found = find_brats(tmp_path, on_error="raise")
    assert found == list(ds.cases) and found[0].case_id == first_id
    assert all(p.endswith(ext) for c in found for p in c.images + (c.label,))
    assert [c.grade for c in found] == ["HGG", "HGG", "HGG", "LGG"]
    if layout == "2018":
        assert sorted(os.listdir(tmp_path)) == sorted(["HGG", "LGG", MARKER_NAME, "datalist.json"])
        assert os.path.dirname(found[3].label).endswith(os.path.join("LGG", "Brats18_TCIA09_004_1"))
    else:
        assert os.path.isfile(tmp_path / "name_mapping.csv")
    assert len(read_datalist(ds.datalist)["validation"]) == 1


def test_determinism_and_seeds(first, cases, tmp_path):
    again = write_brats(tmp_path / "again", seed=0, **SMALL)
    other = write_brats(tmp_path / "other", seed=1, **SMALL)
    for (case, images, label), twin, different in zip(cases, again.cases, other.cases):
        twin_images, twin_label = _load(twin)
        assert all(np.array_equal(a, b) for a, b in zip(images, twin_images))
        assert np.array_equal(label, twin_label)
        other_images, _ = _load(different)
        assert not np.array_equal(images[0], other_images[0])
    # case k does not depend on how many cases are written
    one = write_brats(tmp_path / "one", seed=0, num_cases=1, shape=SHAPE)
    assert np.array_equal(_load(one.cases[0])[1], cases[0][2])


def _check_nesting(cases):
    for case, images, label in cases:
        assert label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 2, 4}
        wt, tc, et = label > 0, (label == 1) | (label == 4), label == 4
        assert tc.any() and (wt & ~tc).any()
        assert not (_neighbours(tc) & ~wt).any()  # the core lies strictly inside the oedema
        if case.case_id.endswith("3"):  # LGG-like: non-enhancing core
            assert not et.any()
        else:
            assert et.any()
            assert not (_neighbours(label == 1) & ~tc).any()  # necrosis inside the enhancing rim


def test_labels_values_and_nesting(cases):
    _check_nesting(cases)


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    ds = write_brats(tmp_path_factory.mktemp("realistic"), num_cases=4, shape=(48, 48, 40), seed=5)
    return [(case, *_load(case)) for case in ds.cases]


def test_tumours_at_a_realistic_size(realistic):
    _check_nesting(realistic)
    sizes = [(label > 0).sum() for _, _, label in realistic]
    assert sizes[2] < 0.5 * min(sizes[0], sizes[1])  # case 2 has a small tumour
    for case, images, label in realistic:
        assert 0.002 < (label > 0).sum() / (images[0] > 0).sum() < 0.25
        assert (label == 1).any()  # necrosis (HGG) or the non-enhancing core (LGG)


def test_skull_stripped_background_is_exactly_zero(cases):
    for case, images, label in cases:
        brain = images[0] > 0
        assert 0.1 < brain.mean() < 0.6
        for image in images:
            assert np.array_equal(image > 0, brain)  # same mask in every modality, no negative values
        assert not label[~brain].any()


def test_contrasts_follow_the_sequences(cases):
    t1, t1ce, t2, flair = (MODALITIES.index(m) for m in ("t1", "t1ce", "t2", "flair"))
    for case, images, label in cases:
        brain = images[0] > 0
        normal = brain & (label == 0)
        means = [lambda mask, im=im.astype(np.float64): im[mask].mean() for im in images]
        assert means[flair](label == 2) > 1.3 * means[flair](normal)
        assert means[t2](label == 2) > means[t2](normal)
        if (label == 4).any():
            assert means[t1ce](label == 4) > means[t1ce](label == 2)
            assert means[t1ce](label == 4) > means[t1](label == 4) * 1.2 * (
                means[t1ce](normal) / means[t1](normal))  # enhancement beyond the gain difference


def test_tissue_contrast_at_a_realistic_size(realistic):
    for case, images, label in realistic:
        t1, t2, flair = (images[MODALITIES.index(m)].astype(np.float64) for m in ("t1", "t2", "flair"))
        brain = t1 > 0
        centre = np.zeros_like(brain)
        centre[14:34, 12:36, 10:30] = True
        deep, outer = brain & centre & (label == 0), brain & ~centre & (label == 0)
        assert t1[deep].mean() > t1[outer].mean()  # white matter (deep) brighter than grey and CSF on T1
        # CSF (the ventricles, the brightest deep voxels on T2) is dark on FLAIR and on T1
        csf = deep & (t2 > np.percentile(t2[deep], 95))
        assert flair[csf].mean() < flair[deep].mean() and t1[csf].mean() < t1[deep].mean()


def test_ensure_reuses_and_rewrites(tmp_path):
    root = tmp_path / "ds"
    a = ensure_brats(root, num_cases=2, shape=(16, 16, 16))
    stamp = os.path.getmtime(a.cases[0].label)
    assert ensure_brats(root, num_cases=2, shape=(16, 16, 16)) == a
    assert os.path.getmtime(a.cases[0].label) == stamp
    b = ensure_brats(root, num_cases=3, shape=(16, 16, 16))
    assert len(find_brats(root, on_error="raise")) == 3 and len(b.cases) == 3
    os.remove(b.cases[1].images[2])
    c = ensure_brats(root, num_cases=3, shape=(16, 16, 16))
    assert os.path.isfile(c.cases[1].images[2])
    d = ensure_brats(root, num_cases=1, shape=(16, 16, 16), layout="2018")
    assert sorted(os.listdir(root)) == sorted(["HGG", MARKER_NAME, "datalist.json"])
    assert d.cases[0].grade == "HGG"


def test_refuses_foreign_folders_and_bad_arguments(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not written by write_brats"):
        write_brats(tmp_path / "mine", num_cases=1, shape=(16, 16, 16))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    write_sunnybrook(tmp_path / "sb", num_cases=1, images_per_case=1, contoured_per_case=1, image_size=32)
    with pytest.raises(DataError, match="not written by write_brats"):
        ensure_brats(tmp_path / "sb", num_cases=1, shape=(16, 16, 16))
    for kwargs, message in [(dict(num_cases=0), "num_cases"), (dict(shape=(16, 16)), "shape"),
                            (dict(shape=(8, 16, 16)), "each size of shape"), (dict(layout="2019"), "layout"),
                            (dict(seed=-1), "seed")]:
        with pytest.raises(ConfigError, match=message):
            write_brats(tmp_path / "x", **{"num_cases": 1, "shape": (16, 16, 16), **kwargs})
