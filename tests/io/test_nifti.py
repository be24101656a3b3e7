"""Tests for tfseg.io.nifti: nibabel's own test files, round trips, orientation and resampling."""
import gzip
import os
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.io import nifti
from tfseg.io.nifti import (
    Volume,
    orientation,
    read_nifti,
    reorient,
    resample,
    restore_orientation,
    write_nifti,
)

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
NIFTI_FILES = sorted(p for p in NIBABEL_DATA.iterdir() if p.name.endswith((".nii", ".nii.gz")))


def _is_supported(path):
    img = nib.load(path)
    return isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)) and len(img.shape) in (3, 4)


SUPPORTED = [pytest.param(p, id=p.name) for p in NIFTI_FILES if _is_supported(p)]
UNSUPPORTED = [pytest.param(p, id=p.name) for p in NIFTI_FILES if not _is_supported(p)]


def test_the_nibabel_files_are_found():
    assert len(SUPPORTED) >= 6  # anatomical, example4d, example_nifti2, functional, ...
    assert any("nifti2" in p.id for p in SUPPORTED)


@pytest.mark.parametrize("path", SUPPORTED)
def test_read_matches_nibabel(path):
    img = nib.load(path)
    expected = np.asanyarray(img.dataobj)  # scaled by nibabel when scl_slope/inter say so
    volume = read_nifti(path)
    axes = (2, 1, 0) + tuple(range(3, expected.ndim))
    np.testing.assert_array_equal(volume.array, expected.transpose(axes))
    assert volume.array.dtype == expected.dtype.newbyteorder("=")
    assert volume.array.dtype.isnative
    np.testing.assert_array_equal(volume.affine, img.affine)
    assert volume.affine.dtype == np.float64
    assert volume.spacing == pytest.approx(np.linalg.norm(img.affine[:3, :3], axis=0)[::-1])
    assert volume.path == str(path)
    # memory voxel (d, h, w) is nibabel voxel (i, j, k) = (w, h, d)
    index = tuple(s - 1 for s in volume.shape[:3])
    np.testing.assert_array_equal(volume.array[index], expected[index[::-1]])
    unscaled = img.dataobj.slope == 1 and img.dataobj.inter == 0
    if unscaled and img.get_data_dtype().kind in "iu":
        assert volume.array.dtype.kind in "iu"


def test_scaled_file_is_float_and_dtype_argument():
    path = NIBABEL_DATA / "functional.nii"
    img = nib.load(path)
    assert img.dataobj.slope != 1
    volume = read_nifti(path, dtype=np.float32)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, img.get_fdata().transpose(2, 1, 0, 3), rtol=1e-6)
    assert read_nifti(NIBABEL_DATA / "anatomical.nii", dtype=np.int32).array.dtype == np.int32


@pytest.mark.parametrize("path", UNSUPPORTED)
def test_unsupported_nibabel_files_raise(path):
    with pytest.raises(DataError, match="supported") as info:
        read_nifti(path)
    assert info.value.path == str(path)


def test_bad_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_nifti(tmp_path / "missing.nii.gz")
    text = tmp_path / "notes.nii"
    text.write_text("not an image at all")
    with pytest.raises(DataError) as info:
        read_nifti(text)
    assert info.value.path == str(text)
    with pytest.raises(DataError, match="NIfTI"):
        read_nifti(NIBABEL_DATA / "test.mgz")
    # truncated gzip: header fine, voxel data cut short
    whole = (NIBABEL_DATA / "example4d.nii.gz").read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        read_nifti(cut)
    assert info.value.path == str(cut)
    # 2D and 5D files
    flat = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.float32), np.eye(4)), flat)
    with pytest.raises(DataError, match="2 dimensions.*3 or 4"):
        read_nifti(flat)
    five = tmp_path / "five.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 1, 2), np.float32), np.eye(4)), five)
    with pytest.raises(DataError, match="5 dimensions"):
        read_nifti(five)


AFFINE = np.array([[-0.9, 0.0, 0.0, 90.0], [0.0, 1.1, 0.0, -120.0], [0.0, 0.0, 2.5, -70.0],
                   [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_label_float_and_4d(tmp_path, suffix):
    rng = np.random.default_rng(0)
    cases = {
        "label": rng.integers(0, 5, (3, 4, 5)).astype(np.int16),
        "image": rng.normal(size=(3, 4, 5)).astype(np.float32),
        "multi": rng.normal(size=(3, 4, 5, 2)).astype(np.float32),
    }
    for name, array in cases.items():
        path = tmp_path / f"{name}{suffix}"
        assert write_nifti(path, array, AFFINE) == path
        back = read_nifti(path)
        assert back.array.dtype == array.dtype
        np.testing.assert_array_equal(back.array, array)
        np.testing.assert_allclose(back.affine, AFFINE, atol=1e-6)
        img = nib.load(path)
        assert img.shape == array.shape[:3][::-1] + array.shape[3:]
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        is_gz = path.read_bytes()[:2] == b"\x1f\x8b"
        assert is_gz == (suffix == ".nii.gz")


def test_header_codes_and_fields_kept_dtype_follows_the_array(tmp_path):
    source = nib.load(NIBABEL_DATA / "anatomical.nii")
    header = source.header.copy()
    header.set_qform(source.affine, code=3)
    header.set_sform(source.affine, code=4)
    header["descrip"] = b"tfseg test"
    prediction = np.zeros((2, 3, 4), np.float32)
    path = write_nifti(tmp_path / "pred.nii.gz", prediction, AFFINE, header=header)
    written = nib.load(path)
    assert int(written.header["qform_code"]) == 3
    assert int(written.header["sform_code"]) == 4
    assert written.header["descrip"].tobytes().rstrip(b"\0") == b"tfseg test"
    # float32 (in the source header's byte order), not the int16 of the source header
    assert written.get_data_dtype().newbyteorder("=") == np.float32
    assert read_nifti(path).array.dtype == np.float32
    np.testing.assert_allclose(written.affine, AFFINE, atol=1e-6)
    # a NIfTI-2 header gives a NIfTI-2 file
    nifti2 = nib.load(NIBABEL_DATA / "example_nifti2.nii.gz").header
    path2 = write_nifti(tmp_path / "two.nii", prediction, AFFINE, header=nifti2)
    assert isinstance(nib.load(path2), nib.Nifti2Image)


def test_dtype_adjustments(tmp_path):
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 1, 1] = True
    assert read_nifti(write_nifti(tmp_path / "m.nii", mask, np.eye(4))).array.dtype == np.uint8
    argmax = np.full((2, 3, 4), 3, np.int64)
    back = read_nifti(write_nifti(tmp_path / "a.nii", argmax, np.eye(4))).array
    assert back.dtype == np.int32 and back.max() == 3
    back = read_nifti(write_nifti(tmp_path / "u.nii", argmax, np.eye(4), dtype=np.uint8)).array
    assert back.dtype == np.uint8
    with pytest.raises(ConfigError, match="int32 range"):
        write_nifti(tmp_path / "big.nii", np.full((2, 2, 2), 2**40), np.eye(4))
    with pytest.raises(ConfigError, match=".nii or .nii.gz"):
        write_nifti(tmp_path / "x.img", mask, np.eye(4))
    with pytest.raises(ConfigError, match="shape"):
        write_nifti(tmp_path / "x.nii", np.zeros((3, 4)), np.eye(4))
    with pytest.raises(ConfigError, match="singular"):
        write_nifti(tmp_path / "x.nii", mask, np.zeros((4, 4)))


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "image.nii.gz"
    write_nifti(path, np.ones((2, 3, 4), np.float32), np.eye(4))
    before = path.read_bytes()

    def half_write(img, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nifti.nib, "save", half_write)
    with pytest.raises(DataError, match="No space left"):
        write_nifti(path, np.zeros((2, 3, 4), np.float32), np.eye(4))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["image.nii.gz"]


def _rotation(degrees):
    a = np.deg2rad(degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    b = np.deg2rad(degrees / 2)
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _affine(codes):
    affine = np.eye(4)
    zooms = np.diag([0.8, 1.2, 2.0])
    if codes == "RAS":
        affine[:3, :3] = zooms
    elif codes == "LPS":
        affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ zooms
    elif codes == "oblique":
        affine[:3, :3] = _rotation(25) @ np.diag([-1.0, 1.0, -1.0]) @ zooms
    elif codes == "PSL":  # permuted: i -> P, j -> S, k -> L
        affine[:3, :3] = np.array([[0, 0, -2.0], [-0.8, 0, 0], [0, 1.2, 0]])
    affine[:3, 3] = [12.0, -30.0, 7.0]
    return affine


@pytest.mark.parametrize("codes", ["RAS", "LPS", "oblique", "PSL"])
def test_reorient_and_restore(tmp_path, codes):
    rng = np.random.default_rng(1)
    original = Volume(rng.integers(0, 1000, (5, 6, 7)).astype(np.int16), _affine(codes))
    ras, undo = reorient(original, "RAS")
    assert orientation(ras.affine) == "RAS"
    assert undo.target == "RAS"
    # every voxel keeps its world position: compare a marked voxel's world coordinates
    marked = (1, 4, 2)
    value = original.array[marked]
    found = np.argwhere(ras.array == value)
    assert any(np.allclose(ras.world(i), original.world(marked)) for i in found)
    np.testing.assert_array_equal(restore_orientation(ras.array, undo), original.array)
    # multi-channel arrays (a prediction) map back too
    stacked = np.stack([ras.array, ras.array * 2], axis=-1)
    restored = restore_orientation(stacked, undo)
    np.testing.assert_array_equal(restored[..., 1], original.array * 2)
    # a "prediction" made in RAS space (mark one voxel), mapped back and saved with the original
    # affine, covers the same world points: resample both with nibabel onto one grid and compare
    prediction = np.zeros(ras.shape, np.float32)
    prediction[2, 3, 4] = 1.0
    back = restore_orientation(prediction, undo)
    path = write_nifti(tmp_path / "pred.nii.gz", back, original.affine)
    saved = nib.load(path)
    canonical = nib.Nifti1Image(nifti.to_nifti(prediction), ras.affine)
    target = (saved.shape, saved.affine)
    a = nibabel.processing.resample_from_to(saved, target, order=0).get_fdata()
    b = nibabel.processing.resample_from_to(canonical, target, order=0).get_fdata()
    np.testing.assert_array_equal(a, b)
    assert a.sum() == 1
    hit = read_nifti(path)
    (index,) = np.argwhere(hit.array == 1)
    np.testing.assert_allclose(hit.world(index), ras.world((2, 3, 4)), atol=1e-9)


def test_orientation_codes_and_bad_target():
    assert orientation(_affine("RAS")) == "RAS"
    assert orientation(_affine("LPS")) == "LPS"
    assert orientation(_affine("PSL")) == "PSL"
    lps, _ = reorient(Volume(np.zeros((2, 3, 4)), _affine("RAS")), "LPS")
    assert orientation(lps.affine) == "LPS"
    with pytest.raises(ConfigError, match="axis codes"):
        reorient(Volume(np.zeros((2, 3, 4)), np.eye(4)), "RAX")
    _, undo = reorient(Volume(np.zeros((2, 3, 4)), _affine("PSL")))
    with pytest.raises(ConfigError, match="does not match"):
        restore_orientation(np.zeros((2, 3, 4)), undo)


def _smooth(shape):
    d, h, w = np.meshgrid(*[np.linspace(0, np.pi, n) for n in shape], indexing="ij")
    return (np.sin(d) * np.cos(h) + np.sin(w)).astype(np.float32)


def test_resample_spacing_and_field_of_view_centre():
    affine = _affine("oblique")
    volume = Volume(_smooth((10, 12, 16)), affine)
    assert volume.spacing == pytest.approx((2.0, 1.2, 0.8))
    out = resample(volume, (1.0, 2.4, 1.6))
    assert out.shape == (20, 6, 8)
    assert out.spacing == pytest.approx((1.0, 2.4, 1.6))
    assert out.array.dtype == np.float32
    centre_old = volume.world((np.array(volume.shape) - 1) / 2)
    centre_new = out.world((np.array(out.shape) - 1) / 2)
    np.testing.assert_allclose(centre_new, centre_old, atol=1e-9)
    # directions are unchanged
    old_dirs = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    new_dirs = out.affine[:3, :3] / np.linalg.norm(out.affine[:3, :3], axis=0)
    np.testing.assert_allclose(new_dirs, old_dirs, atol=1e-12)
    iso = resample(volume, 2.0)
    assert iso.spacing == pytest.approx((2.0, 2.0, 2.0)) and iso.shape == (10, 7, 6)


def test_resample_linear_agrees_with_nibabel():
    volume = Volume(_smooth((10, 12, 16)), _affine("LPS"))
    out = resample(volume, (1.0, 1.0, 1.0))
    img = nib.Nifti1Image(nifti.to_nifti(volume.array), volume.affine)
    reference = nibabel.processing.resample_from_to(
        img, (out.shape[::-1], out.affine), order=1, mode="nearest").get_fdata()
    np.testing.assert_allclose(out.array, nifti.to_memory(reference), atol=1e-5)


def test_resample_labels_keep_values_and_dtype():
    rng = np.random.default_rng(2)
    labels = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(6, 7, 8))
    volume = Volume(labels, _affine("RAS"))
    for spacing in [(0.7, 0.5, 0.3), 3.0, (2.0, 1.2, 0.8)]:
        out = resample(volume, spacing, order=0)
        assert out.array.dtype == np.uint8
        assert set(np.unique(out.array)) <= {0, 1, 2, 4}
    same = resample(volume, volume.spacing, order=0)
    np.testing.assert_array_equal(same.array, labels)
    np.testing.assert_allclose(same.affine, volume.affine, atol=1e-12)
    # nearest neighbour: every new voxel carries the value of the old voxel nearest its world point
    out = resample(volume, (0.7, 0.5, 0.3), order=0)
    inverse = np.linalg.inv(volume.affine)
    for index in [(0, 0, 0), (3, 5, 7), (5, 10, 13), (16, 16, 20)]:
        assert out.shape == (17, 17, 21)
        ijk = inverse[:3, :3] @ out.world(index) + inverse[:3, 3]
        nearest = tuple(np.clip(np.round(ijk[::-1]).astype(int), 0, np.array(labels.shape) - 1))
        assert out.array[index] == labels[nearest]


def test_resample_there_and_back_and_channels():
    image = _smooth((24, 24, 24))
    volume = Volume(np.stack([image, -image], axis=-1), np.eye(4))
    coarse = resample(volume, 2.0)
    assert coarse.shape == (12, 12, 12, 2)
    fine = resample(coarse, 1.0)
    assert fine.shape == volume.shape
    np.testing.assert_allclose(fine.affine, volume.affine, atol=1e-12)
    interior = (slice(4, -4),) * 3
    error = np.abs(fine.array[interior] - volume.array[interior])
    assert error.max() < 0.05 and error.mean() < 0.015  # values span about 3.4
    np.testing.assert_array_equal(fine.array[..., 1], -fine.array[..., 0])
    ints = Volume(np.arange(64, dtype=np.int16).reshape(4, 4, 4), np.eye(4))
    assert resample(ints, 2.0).array.dtype == np.float32


def test_resample_bad_arguments():
    volume = Volume(np.zeros((2, 3, 4)), np.eye(4))
    for spacing in [0, -1.0, (1, 2), "x", float("nan")]:
        with pytest.raises(ConfigError, match="spacing"):
            resample(volume, spacing)
    with pytest.raises(ConfigError, match="order"):
        resample(volume, 1.0, order=7)


def test_gzip_is_real_gzip(tmp_path):
    path = write_nifti(tmp_path / "a.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with gzip.open(path) as handle:
        assert len(handle.read()) >= 348
