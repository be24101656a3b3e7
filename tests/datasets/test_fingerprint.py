"""The dataset fingerprint: statistics against hand computation, problems on an MNI152-based BraTS set."""
import json

import nibabel as nib
import numpy as np
import pytest

from tfseg.datasets.fingerprint import (
    find_items,
    fingerprint,
    format_fingerprint,
    label_case_id,
)
from tfseg.datasets.synthetic_mni import write_mni_brats
from tfseg.errors import ConfigError, DataError
from tfseg.io.nifti import write_nifti


def _kinds(fp):
    return sorted({p["kind"] for p in fp.problems})


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Two cases of a folder of NIfTI files, values chosen by hand."""
    root = tmp_path_factory.mktemp("tiny")
    a = np.zeros((4, 5, 6), np.float32)
    a[1, 1:3, 2:5] = [[1, 2, 3], [4, 5, 6]]
    la = np.zeros((4, 5, 6), np.uint8)
    la[1, 1:3, 2:4] = 1          # box (1, 2, 2) in memory order
    la[1, 2, 4] = 2
    b = np.zeros((4, 5, 6), np.float32)
    b[0, 0, 0], b[3, 4, 5] = 10, -2
    lb = np.zeros((4, 5, 6), np.uint8)
    lb[0:3, 0, 0] = 1            # box (3, 1, 1)
    affine = np.diag([0.5, 0.75, 2.0, 1.0])   # spacing (dz, dy, dx) = (2, 0.75, 0.5)
    write_nifti(root / "a.nii.gz", a, affine)
    write_nifti(root / "a_seg.nii.gz", la, affine)
    write_nifti(root / "b.nii", b, affine)
    write_nifti(root / "b_label.nii.gz", lb, affine)
    return root, np.concatenate([a[a != 0], b[b != 0]]), (la, lb)


def test_tiny_statistics_match_hand_computation(tiny_folder):
    root, values, (la, _) = tiny_folder
    fp = fingerprint(root, stride=1, intensity_cases=None)
    assert fp.kind == "nifti" and fp.num_items == 2 and fp.problems == []
    assert fp.shape == {"median": [4, 5, 6], "min": [4, 5, 6], "max": [4, 5, 6]}
    assert fp.spacing["median"] == [2.0, 0.75, 0.5]
    assert fp.orientations == {"RAS": 2}
    stats = fp.intensity["channel0"]
    assert stats["voxels"] == 8 == values.size
    assert stats["mean"] == pytest.approx(values.mean())           # (21 + 8) / 8
    assert stats["std"] == pytest.approx(values.std())
    assert stats["p0_5"] == pytest.approx(np.percentile(values, 0.5))
    assert stats["p99_5"] == pytest.approx(np.percentile(values, 99.5))
    assert (stats["min"], stats["max"]) == (-2.0, 10.0)
    total = la.size * 2
    assert fp.labels[1] == {"fraction": pytest.approx(7 / total), "voxels": 7, "items": 2}
    assert fp.labels[2]["voxels"] == 1 and fp.labels[0]["voxels"] == total - 8
    assert fp.label_bbox["max"] == [3, 2, 3]         # per axis: max of (1, 2, 3) and (3, 1, 1)
    assert fp.label_bbox["median"] == [2, 2, 2]      # ceil of the medians 2, 1.5, 2
    assert fp.label_bbox["max_mm"] == [6.0, 1.5, 1.5]
    # a's non-zero voxels span d 1, h 1..2, w 2..4; b's span the whole grid
    assert fp.nonzero_bbox["max"] == [4, 5, 6]
    json.dumps(fp.to_dict())


def test_label_case_id_rule():
    assert label_case_id("x_mask.nii") == ("x", True)
    assert label_case_id("x_SEG.nii.gz") == ("x", True)
    assert label_case_id("x_segment.nii.gz") == ("x_segment", False)


@pytest.fixture(scope="module")
def mni(tmp_path_factory):
    return write_mni_brats(tmp_path_factory.mktemp("mni"), num_cases=5, seed=3, spacing=8.0)


def test_clean_independent_set_has_no_problem(mni):
    fp = fingerprint(mni.root)
    assert fp.kind == "brats" and fp.num_items == 5 and fp.problems == []
    assert fp.modalities == ("t1", "t1ce", "t2", "flair")
    assert set(fp.labels) == {0, 1, 2, 4}
    # the labels the fingerprint counts are nibabel's, summed over the cases
    truth = sum(int((np.asarray(nib.load(c.label).dataobj) == 4).sum()) for c in mni.cases)
    assert fp.labels[4]["voxels"] == truth
    # all voxels read: the intensity mean is the mean of every non-zero FLAIR voxel
    exact = fingerprint(mni.root, stride=1, intensity_cases=None)
    flair = np.concatenate([np.asarray(nib.load(c.images[3]).dataobj).ravel() for c in mni.cases])
    assert exact.intensity["flair"]["mean"] == pytest.approx(flair[flair != 0].mean())
    assert exact.intensity["flair"]["std"] == pytest.approx(flair[flair != 0].std())
    assert "problems: 0" in format_fingerprint(fp)


def _rewrite(path, transform_data=None, affine=None, values=None):
    image = nib.load(path)
    data = np.asarray(image.dataobj).copy()
    if transform_data is not None:
        data = transform_data(data)
    if values is not None:
        values(data)
    out = nib.Nifti1Image(data, image.affine if affine is None else affine, image.header)
    nib.save(out, path)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Case 1 stored flipped along x (same anatomy, LAS), a label 3 in case 2, case 0 in both splits,
    case 3's label on a shifted grid."""
    ds = write_mni_brats(tmp_path_factory.mktemp("broken"), num_cases=5, seed=4, spacing=8.0)
    for path in ds.cases[1].images + (ds.cases[1].label,):
        image = nib.load(path)
        shape_x = image.shape[0]
        flip = np.diag([-1.0, 1.0, 1.0, 1.0])
        flip[0, 3] = shape_x - 1
        _rewrite(path, lambda d: d[::-1], affine=image.affine @ flip)
    _rewrite(ds.cases[2].label, values=lambda d: d.__setitem__((0, 0, 0), 3))
    shifted = nib.load(ds.cases[3].label).affine.copy()
    shifted[:3, 3] += 4.0
    _rewrite(ds.cases[3].label, affine=shifted)
    with open(ds.datalist) as stream:
        sections = json.load(stream)
    training = sections["training"]
    zero = next(e for e in training if "BraTS2021_00000" in e["label"])
    sections["validation"].append(zero)
    with open(ds.datalist, "w") as stream:
        json.dump(sections, stream)
    return ds


def test_problems_are_found(broken):
    fp = fingerprint(broken.datalist)
    assert fp.kind == "datalist"
    assert _kinds(fp) == ["geometry", "labels", "orientation", "split"]
    by_kind = {p["kind"]: p for p in fp.problems}
    assert by_kind["orientation"]["case"] == "BraTS2021_00001" and "LAS" in by_kind["orientation"]["message"]
    assert by_kind["labels"]["case"] == "BraTS2021_00002" and "[3]" in by_kind["labels"]["message"]
    assert by_kind["split"]["case"] == "BraTS2021_00000"
    assert by_kind["geometry"]["case"] == "BraTS2021_00003"
    assert by_kind["geometry"]["path"].endswith("BraTS2021_00003_seg.nii.gz")
    # the folder itself: everything but the split
    assert _kinds(fingerprint(broken.root)) == ["geometry", "labels", "orientation"]


def test_2d_layouts(tmp_path):
    from tfseg.datasets.synthetic import write_sunnybrook
    from tfseg.datasets.synthetic_lgg import write_lgg

    lgg = write_lgg(tmp_path / "lgg", num_patients=2, slices_per_patient=2, image_size=32)
    fp = fingerprint(lgg.root)
    assert (fp.kind, fp.spatial_dims, fp.num_items, fp.num_patients) == ("lgg", 2, 4, 2)
    assert fp.modalities == ("channel0", "channel1", "channel2")
    assert set(fp.labels) <= {0, 255} and fp.problems == []
    sb = write_sunnybrook(tmp_path / "sb", num_cases=1, images_per_case=3, contoured_per_case=2, image_size=32)
    fp = fingerprint(sb.image_dir, contour_dir=sb.contour_dir)
    assert (fp.kind, fp.num_items, fp.shape["median"]) == ("sunnybrook", 2, [32, 32])
    assert set(fp.labels) == {0, 1} and fp.problems == []


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="not found"):
        fingerprint(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no"):
        find_items(tmp_path)
    with pytest.raises(ConfigError, match="stride"):
        fingerprint(tmp_path, stride=0)


def test_decathlon_folders_with_4d_images(tmp_path):
    image = np.zeros((5, 6, 4, 2), np.float32)          # NIfTI (x, y, z, channels)
    image[1:3, 1:4, 1, 0] = 7.0
    image[2, 2, 2, 1] = 3.0
    label = np.zeros((5, 6, 4), np.uint8)
    label[1:3, 1:3, 1] = 1
    for folder, data in (("imagesTr", image), ("labelsTr", label)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / folder / "BRATS_001.nii.gz"))
    fp = fingerprint(tmp_path, stride=1)
    assert (fp.kind, fp.num_items, fp.modalities, fp.problems) == ("nifti", 1, ("channel0", "channel1"), [])
    assert fp.intensity["channel0"]["mean"] == 7.0 and fp.intensity["channel1"]["voxels"] == 1
    assert fp.labels[1]["voxels"] == 4 and fp.label_bbox["max"] == [1, 2, 2]
