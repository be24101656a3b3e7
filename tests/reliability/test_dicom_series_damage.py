"""A damaged slice of a DICOM series is named, follows on_error, and never silently shortens the volume."""
import logging
from pathlib import Path

import numpy as np
import pytest

from tfseg.errors import DataError
from tfseg.io.dicom import read_series, write_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

UID = "1.2.826.0.1.3680043.8.498.77"


def _series(folder, count=5):
    """`count` 8x8 slices 2 mm apart; returns the files in slice order."""
    files = []
    for k in range(count):
        path = Path(folder) / f"IM-{k:04d}.dcm"
        write_image(path, np.full((8, 8), 10 * k, np.int16), series_instance_uid=UID,
                    image_position=(0.0, 0.0, 2.0 * k), instance_number=k + 1)
        files.append(str(path))
    return files


def _break_marker(path):
    """Overwrite the 'DICM' marker and the file meta: the file no longer parses as DICOM."""
    data = bytearray(Path(path).read_bytes())
    data[128:400] = b"\x17" * 272
    Path(path).write_bytes(bytes(data))


def _truncate_pixels(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-40])


@pytest.mark.parametrize("position", [0, -1])
def test_unparseable_end_slice_is_named(tmp_path, position, caplog):
    files = _series(tmp_path)
    bad = files[position]
    _break_marker(bad)
    with pytest.raises(DataError) as info:
        read_series(tmp_path)
    assert info.value.path == bad
    with caplog.at_level(logging.WARNING):
        volume = read_series(tmp_path, on_error="skip")
    assert volume.shape == (4, 8, 8)
    assert [p.split(":")[0] for p in volume.meta["problems"]] == [bad]
    assert "left out as unreadable" in caplog.text and bad in caplog.text


def test_unparseable_middle_slice_is_named_not_its_neighbours(tmp_path):
    files = _series(tmp_path)
    _break_marker(files[2])
    with pytest.raises(DataError) as info:
        read_series(tmp_path)
    assert info.value.path == files[2]
    with pytest.raises(DataError) as info:
        read_series(tmp_path, on_error="skip")
    assert info.value.path == files[2]
    assert "not whole" in info.value.reason and "uneven slice spacing" in info.value.reason


def test_unreadable_pixels_at_an_end_make_a_shorter_volume_that_says_so(tmp_path, caplog):
    files = _series(tmp_path)
    _truncate_pixels(files[-1])
    with pytest.raises(DataError) as info:
        read_series(tmp_path)
    assert info.value.path == files[-1]
    with caplog.at_level(logging.WARNING):
        volume = read_series(tmp_path, on_error="skip")
    assert volume.shape == (4, 8, 8)
    assert volume.meta["left_out"] == [files[-1]]
    assert volume.meta["files"] == files[:-1]
    assert np.array_equal(volume.array[:, 0, 0], [0, 10, 20, 30])
    assert "series shorter than its files: 4 of 5 slices read" in caplog.text


def test_unreadable_pixels_in_the_middle_refuse_the_gap(tmp_path):
    files = _series(tmp_path)
    _truncate_pixels(files[1])
    with pytest.raises(DataError) as info:
        read_series(tmp_path, on_error="skip")
    assert info.value.path == files[1]
    assert f"gap between {files[0]} and {files[2]}" in info.value.reason


def test_files_that_are_not_slices_are_still_passed_over(tmp_path):
    files = _series(tmp_path, count=3)
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "scan.json").write_text("{}")
    volume = read_series(tmp_path)
    assert volume.shape == (3, 8, 8) and volume.meta["files"] == files and volume.meta["left_out"] == []


def test_text_files_without_suffix_are_passed_over_but_binary_junk_is_not(tmp_path):
    files = _series(tmp_path, count=3)
    (tmp_path / "README").write_text("exported by the scanner\n")
    (tmp_path / "1.2.840.10008.5").write_text("a text note named like a UID\n")
    assert read_series(tmp_path).meta["files"] == files
    (tmp_path / "IM0004").write_bytes(b"\x00\x01" * 100)  # a slice file with its content lost
    with pytest.raises(DataError) as info:
        read_series(tmp_path)
    assert info.value.path == str(tmp_path / "IM0004")
