"""Tests for tfseg.io.dicom.read_series / list_series on small series written by write_image."""
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.io.dicom import list_series, read_series, write_image
from tfseg.io.nifti import orientation

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

SERIES_UID = "1.2.826.0.1.3680043.8.498.1"
OTHER_UID = "1.2.826.0.1.3680043.8.498.2"


def _oblique_orientation():
    """Row and column cosines of a plane tilted about two axes (orthonormal)."""
    a, b = np.deg2rad(20.0), np.deg2rad(-15.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    return np.round(row, 6), np.round(col, 6)


ROW, COL = _oblique_orientation()
NORMAL = np.cross(ROW, COL)
ORIGIN = np.array([-40.0, 25.0, 13.5])
GAP = 2.5
PIXEL_SPACING = (0.8, 0.6)  # between rows, between columns


def _slice_content(k, shape=(16, 16)):
    """Slice k: a ramp plus 100*k, so each slice and each pixel is identifiable."""
    rows, cols = np.indices(shape)
    return (rows * 16 + cols + 100 * k).astype(np.int16)


def _write_series(folder, count=6, uid=SERIES_UID, description="t1 oblique", positions=None,
                  slope=1.0, intercept=0.0, start=0, **kwargs):
    """Write `count` slices whose file names and instance numbers contradict the true order."""
    folder = Path(folder)
    if positions is None:
        positions = [ORIGIN + (start + k) * GAP * NORMAL for k in range(count)]
    shuffled = np.random.default_rng(3).permutation(count)
    for k, position in enumerate(positions):
        write_image(folder / f"IM-{shuffled[k]:04d}.dcm", _slice_content(start + k),
                    series_instance_uid=uid, description=description,
                    instance_number=int(count - k), image_position=tuple(position),
                    image_orientation=tuple(ROW) + tuple(COL), pixel_spacing=PIXEL_SPACING,
                    rescale_slope=slope, rescale_intercept=intercept, **kwargs)
    return folder


def test_series_reassembled_along_the_normal(tmp_path):
    folder = _write_series(tmp_path / "series")
    volume = read_series(folder)
    assert volume.shape == (6, 16, 16)
    assert volume.array.dtype == np.int16
    for k in range(6):
        np.testing.assert_array_equal(volume.array[k], _slice_content(k))
    # voxel (d=k, h=0, w=0) is at ImagePositionPatient of slice k, with x, y negated (RAS)
    for k in range(6):
        lps = ORIGIN + k * GAP * NORMAL
        expected = np.array([-lps[0], -lps[1], lps[2]])
        np.testing.assert_allclose(volume.world((k, 0, 0)), expected, atol=1e-4)
        np.testing.assert_allclose(volume.affine @ [0, 0, k, 1], [*expected, 1], atol=1e-4)
    # one column to the right = along the row cosine by the column spacing; one row down = along
    # the column cosine by the row spacing
    lps_col = ORIGIN + PIXEL_SPACING[1] * ROW
    np.testing.assert_allclose(volume.world((0, 0, 1)), lps_col * [-1, -1, 1], atol=1e-4)
    lps_row = ORIGIN + PIXEL_SPACING[0] * COL
    np.testing.assert_allclose(volume.world((0, 1, 0)), lps_row * [-1, -1, 1], atol=1e-4)
    assert volume.spacing == pytest.approx((GAP, 0.8, 0.6), abs=1e-5)
    assert volume.meta["series_instance_uid"] == SERIES_UID
    assert volume.meta["description"] == "t1 oblique"
    files = volume.meta["files"]
    positions = [pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient for f in files]
    along = [np.dot(np.array(p, float), NORMAL) for p in positions]
    assert along == sorted(along)
    assert sorted(files) != files  # the file names do not give the order
    # a list of files gives the same volume
    listed = read_series([Path(f) for f in reversed(files)])
    np.testing.assert_array_equal(listed.array, volume.array)
    np.testing.assert_allclose(listed.affine, volume.affine)


def test_axial_series_is_ras_like_a_nifti(tmp_path):
    folder = tmp_path / "axial"
    for k in range(3):
        write_image(folder / f"{k}.dcm", _slice_content(k, (4, 5)), series_instance_uid=SERIES_UID,
                    image_position=(-100.0, -120.0, 30.0 + 3 * k), pixel_spacing=(1.5, 1.0))
    volume = read_series(folder)
    # DICOM rows go to posterior, columns to the patient's left: in RAS that is "LPS" axes
    assert orientation(volume.affine) == "LPS"
    np.testing.assert_allclose(volume.affine, [[-1.0, 0, 0, 100.0], [0, -1.5, 0, 120.0],
                                               [0, 0, 3.0, 30.0], [0, 0, 0, 1]], atol=1e-9)


def test_rescaled_series_is_float32_per_slice(tmp_path):
    folder = tmp_path / "ct"
    for k, slope in enumerate([1.0, 2.0, 0.5]):
        write_image(folder / f"{k}.dcm", _slice_content(k, (4, 4)), modality="CT",
                    series_instance_uid=SERIES_UID, image_position=(0, 0, k),
                    rescale_slope=slope, rescale_intercept=-1024.0)
    volume = read_series(folder)
    assert volume.array.dtype == np.float32
    for k, slope in enumerate([1.0, 2.0, 0.5]):
        np.testing.assert_array_equal(volume.array[k], _slice_content(k, (4, 4)) * slope - 1024)


def test_unsigned_series_keeps_uint16(tmp_path):
    folder = tmp_path / "u16"
    for k in range(2):
        write_image(folder / f"{k}.dcm", np.full((3, 3), 60000 + k, np.uint16),
                    series_instance_uid=SERIES_UID, image_position=(0, 0, k))
    volume = read_series(folder)
    assert volume.array.dtype == np.uint16 and volume.array[1, 0, 0] == 60001


def test_two_series_need_a_uid(tmp_path):
    folder = _write_series(tmp_path / "mixed")
    _write_series(folder / "sub", count=3, uid=OTHER_UID, description="flair", series_number=7)
    with pytest.raises(DataError, match="2 series") as info:
        read_series(folder)
    message = str(info.value)
    assert SERIES_UID in message and OTHER_UID in message
    assert "'t1 oblique', 6 file(s)" in message and "'flair', 3 file(s)" in message
    assert info.value.path == str(folder)
    assert read_series(folder, series_instance_uid=OTHER_UID).shape == (3, 16, 16)
    assert read_series(folder, series_instance_uid=SERIES_UID).shape == (6, 16, 16)
    with pytest.raises(DataError, match="no series with SeriesInstanceUID 1.2.3"):
        read_series(folder, series_instance_uid="1.2.3")
    found = {s.series_instance_uid: len(s.files) for s in list_series(folder)}
    assert found == {SERIES_UID: 6, OTHER_UID: 3}


def test_duplicate_position_names_the_file(tmp_path):
    positions = [ORIGIN + k * GAP * NORMAL for k in range(4)] + [ORIGIN + 2 * GAP * NORMAL]
    folder = _write_series(tmp_path / "dup", positions=positions)
    with pytest.raises(DataError, match="duplicate slice") as info:
        read_series(folder)
    assert info.value.path.endswith(".dcm")


def test_missing_slice_is_an_uneven_gap(tmp_path):
    positions = [ORIGIN + k * GAP * NORMAL for k in (0, 1, 2, 4, 5)]
    folder = _write_series(tmp_path / "gap", positions=positions)
    with pytest.raises(DataError, match="uneven slice spacing") as info:
        read_series(folder)
    assert info.value.path.endswith(".dcm")
    # within the tolerance: a 1% jitter is accepted
    jitter = [ORIGIN + (k + (0.01 if k == 2 else 0)) * GAP * NORMAL for k in range(5)]
    assert read_series(_write_series(tmp_path / "jitter", positions=jitter)).shape[0] == 5
    # off the line through first and last slices (in-plane shift of one slice)
    shifted = [ORIGIN + k * GAP * NORMAL + (3.0 * ROW if k == 2 else 0) for k in range(5)]
    with pytest.raises(DataError, match="off the line"):
        read_series(_write_series(tmp_path / "shifted", positions=shifted))


def test_gantry_tilt_positions_on_a_slanted_line(tmp_path):
    step = GAP * NORMAL + 0.5 * COL  # slices shifted in-plane by a constant amount per slice
    positions = [ORIGIN + k * step for k in range(4)]
    volume = read_series(_write_series(tmp_path / "tilt", positions=positions))
    for k in range(4):
        np.testing.assert_allclose(volume.world((k, 0, 0)), positions[k] * [-1, -1, 1], atol=1e-4)
        np.testing.assert_array_equal(volume.array[k], _slice_content(k))


def test_inconsistent_slices(tmp_path):
    folder = _write_series(tmp_path / "size", count=3)
    write_image(folder / "odd.dcm", np.zeros((8, 16), np.int16), series_instance_uid=SERIES_UID,
                image_position=tuple(ORIGIN + 3 * GAP * NORMAL),
                image_orientation=tuple(ROW) + tuple(COL), pixel_spacing=PIXEL_SPACING)
    with pytest.raises(DataError, match="image size 8x16") as info:
        read_series(folder)
    assert info.value.path.endswith("odd.dcm")
    folder = _write_series(tmp_path / "orient", count=3)
    write_image(folder / "odd.dcm", _slice_content(3), series_instance_uid=SERIES_UID,
                image_position=tuple(ORIGIN + 3 * GAP * NORMAL), pixel_spacing=PIXEL_SPACING)
    with pytest.raises(DataError, match="ImageOrientationPatient"):
        read_series(folder)
    folder = _write_series(tmp_path / "spacing", count=3)
    write_image(folder / "odd.dcm", _slice_content(3), series_instance_uid=SERIES_UID,
                image_position=tuple(ORIGIN + 3 * GAP * NORMAL),
                image_orientation=tuple(ROW) + tuple(COL), pixel_spacing=(1.0, 1.0))
    with pytest.raises(DataError, match="PixelSpacing"):
        read_series(folder)


def test_bad_files_follow_on_error(tmp_path, caplog):
    folder = _write_series(tmp_path / "bad", count=4)
    (folder / "notes.txt").write_text("scanner notes, not DICOM")  # passed over in a folder
    (folder / ".hidden.dcm").write_bytes(b"junk")
    assert read_series(folder).shape == (4, 16, 16)
    # a damaged DICOM file: raises, or is skipped with a warning
    good = sorted(folder.glob("IM-*.dcm"))[0].read_bytes()
    (folder / "damaged.dcm").write_bytes(good[:300])
    with pytest.raises(DataError) as info:
        read_series(folder)
    assert info.value.path.endswith("damaged.dcm")
    with caplog.at_level(logging.WARNING):
        volume = read_series(folder, on_error="skip")
    assert volume.shape == (4, 16, 16)
    assert any("damaged.dcm" in p for p in volume.meta["problems"])
    assert "damaged.dcm" in caplog.text
    with pytest.raises(ConfigError, match="on_error"):
        read_series(folder, on_error="ignore")
    # an explicitly listed non-DICOM file follows on_error too
    with pytest.raises(DataError, match="not a DICOM file"):
        read_series([folder / "notes.txt", *sorted(folder.glob("IM-*.dcm"))])


def test_truncated_slice_skipped_leaves_a_gap(tmp_path):
    folder = _write_series(tmp_path / "trunc", count=5)
    middle = read_series(folder).meta["files"][2]
    data = Path(middle).read_bytes()
    Path(middle).write_bytes(data[:-100])  # pixel data cut short
    with pytest.raises(DataError, match="truncated") as info:
        read_series(folder)
    assert info.value.path == middle
    with pytest.raises(DataError, match="gap between") as info:
        read_series(folder, on_error="skip")
    assert info.value.path == middle


def test_empty_and_missing_sources(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        read_series(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM image series"):
        read_series(tmp_path / "empty")


def test_single_slice_uses_slice_thickness(tmp_path):
    write_image(tmp_path / "one.dcm", _slice_content(0, (4, 4)), series_instance_uid=SERIES_UID,
                slice_thickness=5.0)
    volume = read_series(tmp_path)
    assert volume.shape == (1, 4, 4) and volume.spacing[0] == pytest.approx(5.0)
