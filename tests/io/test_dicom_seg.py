"""DICOM SEG and RTSTRUCT written for label maps on a real CT series (pydicom CT5N), read back."""
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from tfseg.errors import ConfigError, DataError
from tfseg.io.dicom import read_series
from tfseg.io.dicom_seg import read_dicom_seg, write_dicom_seg
from tfseg.io.dicom_series import as_dicom_series
from tfseg.io.rtstruct import list_rois, rasterize_roi, write_rtstruct

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Five 16x16 axial CT slices, 2.5 mm apart, shipped with pydicom (real headers).
CT5N = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892001" / "CT5N"


@pytest.fixture(scope="module")
def ct():
    """The series volume and a "predicted" label map: 1 = soft tissue, 2 = denser than 20 HU."""
    volume = read_series(CT5N)
    hu = volume.array
    labels = np.zeros(volume.shape, np.uint8)
    labels[(hu > -100) & (hu <= 20)] = 1
    labels[hu > 20] = 2
    labels[0] = 0  # an empty slice: no frame, no contour
    assert 0 < (labels == 2).sum() < (labels > 0).sum() < labels.size
    return volume, labels


def test_seg_round_trips_exactly(ct, tmp_path):
    volume, labels = ct
    path = write_dicom_seg(labels, volume, tmp_path / "seg.dcm", ["Soft tissue", "Dense"])
    seg = hd.seg.segread(path)
    source = pydicom.dcmread(volume.meta["files"][0])
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert [seg.get_segment_description(n).SegmentLabel for n in seg.segment_numbers] == [
        "Soft tissue", "Dense"]
    series = as_dicom_series(volume)
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(series.sop_instance_uids)
    present = [(k, v) for k in range(5) for v in (1, 2) if (labels[k] == v).any()]
    assert seg.NumberOfFrames == len(present)  # empty frames omitted
    # highdicom's own reading, slice by slice, equals the label map.
    pixels = seg.get_pixels_by_source_instance(series.sop_instance_uids[1:],
                                               combine_segments=True)
    assert np.array_equal(pixels, labels[1:])
    back, names = read_dicom_seg(path, CT5N)
    assert np.array_equal(back, labels) and names == {1: "Soft tissue", 2: "Dense"}


def test_seg_with_gaps_in_the_label_values(ct, tmp_path):
    volume, labels = ct
    brats = np.where(labels == 2, 4, labels).astype(np.uint8)
    names = {1: "necrosis", 4: "enhancing"}
    path = write_dicom_seg(brats, volume, tmp_path / "seg.dcm", names)
    seg = hd.seg.segread(path)
    assert list(seg.segment_numbers) == [1, 2]  # DICOM numbers segments 1..N
    back, found = read_dicom_seg(path, volume, label_names=names)
    assert np.array_equal(back, brats) and found == names
    with pytest.raises(DataError, match="not in label_names"):
        read_dicom_seg(path, volume, label_names={1: "necrosis"})


def test_rtstruct_on_the_real_series_round_trips(ct, tmp_path):
    volume, labels = ct
    path = write_rtstruct(labels, volume, tmp_path / "rtss.dcm", {1: "Soft tissue", 2: "Dense"})
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT"
    assert (ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
            == pydicom.dcmread(volume.meta["files"][0]).FrameOfReferenceUID)
    assert [r.name for r in list_rois(path)] == ["Soft tissue", "Dense"]
    for value, name in ((1, "Soft tissue"), (2, "Dense")):
        truth = labels == value
        back = rasterize_roi(path, name, CT5N)
        dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
        boundary = binary_dilation(truth) & ~binary_erosion(truth)
        assert dice >= 0.9
        assert not ((back ^ truth) & ~boundary).any()  # differences on the boundary only
        assert np.array_equal(back, truth)  # measured: no difference at all


def test_writers_check_their_input(ct, tmp_path):
    volume, labels = ct
    with pytest.raises(ConfigError, match="does not match the series"):
        write_dicom_seg(labels[1:], volume, tmp_path / "seg.dcm", ["a", "b"])
    with pytest.raises(ConfigError, match=r"label value\(s\) \[2\] in the label map have no name"):
        write_dicom_seg(labels, volume, tmp_path / "seg.dcm", ["a"])
    with pytest.raises(ConfigError, match="distinct"):
        write_dicom_seg(labels, volume, tmp_path / "seg.dcm", ["a", "A"])
    with pytest.raises(DataError, match="not a readable DICOM SEG"):
        read_dicom_seg(volume.meta["files"][0], volume)
    assert not (tmp_path / "seg.dcm").exists()


def test_seg_and_rtstruct_on_an_oblique_series(tmp_path):
    from tfseg.io.dicom import write_image

    a = np.deg2rad(25.0)
    row, col = (np.cos(a), np.sin(a), 0.0), (0.0, 0.0, -1.0)  # a tilted coronal-like plane
    normal = np.cross(row, col)
    for k in range(3):
        write_image(tmp_path / "mr" / f"{k}.dcm", np.zeros((12, 14), np.int16),
                    study_instance_uid="1.2.826.0.1.3680043.8.498.5",
                    series_instance_uid="1.2.826.0.1.3680043.8.498.6",
                    image_position=tuple(np.round(np.array([5.0, -3.0, 20.0]) + 3.0 * k * normal,
                                                  6)),
                    image_orientation=tuple(np.round(row, 8)) + col, pixel_spacing=(0.9, 0.7),
                    slice_thickness=3.0)
    volume = read_series(tmp_path / "mr")
    labels = np.zeros(volume.shape, np.uint8)
    labels[1, 3:9, 2:11] = 1
    labels[1, 5:7, 5:8] = 0
    labels[2, 0:4, 0:3] = 2
    seg = write_dicom_seg(labels, volume, tmp_path / "seg.dcm", ["Lesion", "Edge"])
    assert np.array_equal(read_dicom_seg(seg, volume)[0], labels)
    rtss = write_rtstruct(labels, volume, tmp_path / "rtss.dcm", ["Lesion", "Edge"])
    assert np.array_equal(rasterize_roi(rtss, "lesion", volume), labels == 1)
    assert np.array_equal(rasterize_roi(rtss, "edge", volume), labels == 2)
