"""Tests for tfseg.io.rtstruct: dicompyler-core structure set, oblique series, holes, writing."""
import copy
import gzip
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage.draw import polygon2mask

from tfseg.errors import ConfigError, DataError
from tfseg.io.contours import polygon_area, polygon_to_mask
from tfseg.io.dicom import write_image
from tfseg.io.dicom_series import read_series_headers
from tfseg.io.rtstruct import (
    list_rois,
    rasterize_roi,
    rasterize_rois,
    read_rtstruct,
    referenced_series_uids,
    roi_contours,
    trace_mask,
    write_rtstruct,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FILES = Path(__file__).resolve().parents[1] / "data" / "files"
HEART_CM3 = 432.84104445  # dicompyler-core's tests/test_dicomparser.py, test_structure_volume
LUNG_CM3 = 1995.1847937  # same file, test_structure_volume_holes ("Lt Lung", with holes)


# --- the real structure set of dicompyler-core 0.5.6 ------------------------------------------

@pytest.fixture(scope="module")
def dicompyler(tmp_path_factory):
    """The structure set, and its CT grid rebuilt from the one CT slice that ships with it: one
    header per slice of the referenced-slice list, at the z its contours lie on."""
    folder = tmp_path_factory.mktemp("dicompyler")
    rtss_path = folder / "rtss.dcm"
    with gzip.open(FILES / "dicompyler_rtss.dcm.gz") as src, open(rtss_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    rtss = read_rtstruct(rtss_path)
    ct = pydicom.dcmread(FILES / "dicompyler_ct.0.header.dcm")
    z_of = {}
    for roi in rtss.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            z = float(contour.ContourData[2])
            for image in contour.ContourImageSequence:
                z_of[image.ReferencedSOPInstanceUID] = z
    referenced = (rtss.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
                  .RTReferencedSeriesSequence[0].ContourImageSequence)
    (folder / "ct").mkdir()
    for item in referenced:
        uid = item.ReferencedSOPInstanceUID
        ds = copy.deepcopy(ct)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.ImagePositionPatient = [ct.ImagePositionPatient[0], ct.ImagePositionPatient[1],
                                   z_of[uid]]
        ds.save_as(folder / "ct" / f"{uid}.dcm")
    return rtss, read_series_headers(folder / "ct")


def test_rois_listed(dicompyler):
    rtss, series = dicompyler
    rois = list_rois(rtss)
    assert [r.name for r in rois][:5] == ["BODY", "Areola", "Borders", "Breast", "Heart"]
    heart = rois[4]
    assert (heart.number, heart.contour_count) == (5, 33)
    assert heart.frame_of_reference_uid == series.frame_of_reference_uid
    assert referenced_series_uids(rtss) == [series.series_instance_uid]
    assert series.shape == (98, 512, 512) and series.slice_gap == pytest.approx(3.0)


def _end_half_volume(mask, voxel_mm3):
    """cm3 with the first and last contoured planes counted as half a slab (dicompyler's rule)."""
    per_slice = mask.sum(axis=(1, 2))
    planes = np.flatnonzero(per_slice)
    return (per_slice.sum() - 0.5 * per_slice[planes[0]] - 0.5 * per_slice[planes[-1]]
            ) * voxel_mm3 / 1000


def test_heart_volume_matches_dicompyler_and_shoelace(dicompyler):
    rtss, series = dicompyler
    mask = rasterize_roi(rtss, "heart", series)
    voxel_mm3 = series.pixel_spacing[0] * series.pixel_spacing[1] * series.slice_gap
    volume = mask.sum() * voxel_mm3 / 1000
    # Independent: shoelace area of each contour (axial, so x/y in mm) times the slice gap.
    shoelace = sum(polygon_area(c.points[:, :2]) for c in roi_contours(rtss, "Heart")) * 3.0 / 1000
    assert volume == pytest.approx(shoelace, rel=1e-3)  # measured: 439.66 vs 439.70 cm3
    # dicompyler counts the first and last planes as half slabs; on the same rule:
    assert _end_half_volume(mask, voxel_mm3) == pytest.approx(HEART_CM3, rel=0.01)  # 434.09


def test_heart_slices_equal_polygon2mask(dicompyler):
    rtss, series = dicompyler
    mask = rasterize_roi(rtss, 5, series)
    contours = roi_contours(rtss, "Heart")
    slices = set()
    for contour in contours:
        k = series.slice_of(contour.referenced_sop_instance_uids[0])
        slices.add(k)
        xy = series.patient_to_pixel(contour.points, k)
        assert np.array_equal(mask[k], polygon2mask(series.shape[1:], xy[:, ::-1]))
    assert len(slices) == len(contours) == 33
    assert not mask[sorted(set(range(98)) - slices)].any()


def test_lung_with_holes_matches_dicompyler(dicompyler):
    rtss, series = dicompyler
    mask = rasterize_roi(rtss, "Lt Lung", series)
    voxel_mm3 = series.pixel_spacing[0] * series.pixel_spacing[1] * series.slice_gap
    assert _end_half_volume(mask, voxel_mm3) == pytest.approx(LUNG_CM3, rel=0.01)  # 2001.18
    # Nested contours on one slice: the even-odd rule cuts the inner ones out.
    by_slice = {}
    for contour in roi_contours(rtss, "Lt Lung"):
        by_slice.setdefault(series.slice_of(contour.referenced_sop_instance_uids[0]), []).append(
            contour)
    k, contours = max(by_slice.items(), key=lambda kv: len(kv[1]))
    assert len(contours) > 1
    expected = np.zeros(series.shape[1:], bool)
    for contour in contours:
        expected ^= polygon2mask(series.shape[1:], series.patient_to_pixel(contour.points,
                                                                           k)[:, ::-1])
    assert np.array_equal(mask[k], expected)


def test_label_map_from_a_class_table(dicompyler):
    rtss, series = dicompyler
    labels = rasterize_rois(rtss, series, {"HEART": 1, "lt lung": 2})
    assert labels.dtype == np.uint8
    assert np.array_equal(labels == 1, rasterize_roi(rtss, "Heart", series)
                          & ~rasterize_roi(rtss, "Lt Lung", series))
    with pytest.raises(DataError, match="no ROI 'Liver'.*'Heart'"):
        rasterize_rois(rtss, series, {"Liver": 1})
    with pytest.raises(ConfigError, match=">= 1"):
        rasterize_rois(rtss, series, {"Heart": 0})


# --- synthetic series written with pydicom -----------------------------------------------------

def _oblique():
    a, b = np.deg2rad(30.0), np.deg2rad(-20.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    return np.round(row, 8), np.round(col, 8)


ROW, COL = _oblique()
NORMAL = np.cross(ROW, COL)
ORIGIN = np.array([-30.0, 12.0, 40.0])
GAP, SPACING = 2.0, (0.8, 0.5)  # slice gap; PixelSpacing (between rows, between columns)
STUDY, SERIES = "1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.78"


def _write_series(folder, count=4, shape=(16, 20), orientation=(ROW, COL)):
    row, col = orientation
    normal = np.cross(row, col)
    for k in range(count):
        write_image(folder / f"IM{count - k}.dcm", np.full(shape, k, np.int16), modality="CT",
                    study_instance_uid=STUDY, series_instance_uid=SERIES,
                    image_position=tuple(ORIGIN + k * GAP * normal), pixel_spacing=SPACING,
                    image_orientation=tuple(row) + tuple(col), slice_thickness=GAP)
    return read_series_headers(folder)


def _to_patient(xy, k, off_plane=0.0, row=ROW, col=COL):
    """Hand conversion of pixel (x, y) on slice k to patient mm (the DICOM definition)."""
    xy = np.asarray(xy, float)
    normal = np.cross(row, col)
    return (ORIGIN + (k * GAP + off_plane) * normal
            + np.outer(xy[:, 0] * SPACING[1], row) + np.outer(xy[:, 1] * SPACING[0], col))


def _rtstruct(series, rois, frame=None):
    """A minimal structure set written with pydicom: {name: [(points, slice index or None)]}."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.Modality = RTStructureSetStorage, "RTSTRUCT"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    frame = frame or series.frame_of_reference_uid
    structure, contours = [], []
    for number, (name, items) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame
        structure.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence()
        for points, k in items:
            contour = Dataset()
            if k is not None:
                image = Dataset()
                image.ReferencedSOPClassUID = series.datasets[k].SOPClassUID
                image.ReferencedSOPInstanceUID = series.sop_instance_uids[k]
                contour.ContourImageSequence = Sequence([image])
            contour.ContourGeometricType = "CLOSED_PLANAR" if len(points) > 1 else "POINT"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [round(float(v), 6) for v in np.ravel(points)]
            item.ContourSequence.append(contour)
        contours.append(item)
    ds.StructureSetROISequence = Sequence(structure)
    ds.ROIContourSequence = Sequence(contours)
    return ds


def test_oblique_square_lands_on_its_pixels(tmp_path):
    series = _write_series(tmp_path / "ct")
    square = [[2.5, 3.5], [9.5, 3.5], [9.5, 7.5], [2.5, 7.5]]  # columns 3..9, rows 4..7
    rtss = _rtstruct(series, {"Square": [(_to_patient(square, 2, off_plane=0.1), 2)],
                              "ByPosition": [(_to_patient(square, 1), None)],
                              "Marker": [(_to_patient([[5, 5]], 3), 3)]})
    mask = rasterize_roi(rtss, "square", series)
    expected = np.zeros(series.shape, bool)
    expected[2, 4:8, 3:10] = True
    assert mask.sum() == 28 and np.array_equal(mask, expected)
    # A contour without an image reference goes to the slice whose plane holds it.
    assert np.array_equal(rasterize_roi(rtss, "ByPosition", series)[1], expected[2])
    assert not rasterize_roi(rtss, "Marker", series).any()  # a POINT has no area
    # The mask is on the grid of read_series: world positions of its voxels are on the square.
    from tfseg.io.dicom import read_series

    volume = read_series(tmp_path / "ct")
    centre_lps = volume.world((2, 5.5, 6.0)) * np.array([-1, -1, 1])
    assert np.allclose(centre_lps, _to_patient([[6.0, 5.5]], 2)[0], atol=1e-4)


def test_holes_and_several_contours_by_the_even_odd_rule(tmp_path):
    axial = (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    series = _write_series(tmp_path / "ct", orientation=axial)
    outer = [[1.5, 1.5], [10.5, 1.5], [10.5, 10.5], [1.5, 10.5]]  # 9 x 9 = 81
    hole = [[3.5, 3.5], [6.5, 3.5], [6.5, 6.5], [3.5, 6.5]]  # 3 x 3 = 9 cut out
    island = [[4.5, 4.5], [5.5, 4.5], [5.5, 5.5], [4.5, 5.5]]  # 1 back in
    other = [[13.5, 12.5], [15.5, 12.5], [15.5, 14.5], [13.5, 14.5]]  # 2 x 2 = 4 elsewhere
    rtss = _rtstruct(series, {"Ring": [(_to_patient(p, 1, row=axial[0], col=axial[1]), 1)
                                       for p in (outer, hole, island, other)]})
    mask = rasterize_roi(rtss, "Ring", series)
    assert mask[1].sum() == 81 - 9 + 1 + 4 and mask.sum() == 77
    assert mask[1, 5, 5] and not mask[1, 4, 4] and mask[1, 2, 2] and mask[1, 13, 14]
    expected = np.zeros(series.shape[1:], bool)
    for polygon in (outer, hole, island, other):
        expected ^= polygon_to_mask(np.array(polygon), series.shape[1:])
    assert np.array_equal(mask[1], expected)


def test_wrong_frame_of_reference_and_off_plane_contours(tmp_path):
    series = _write_series(tmp_path / "ct")
    square = [[2.5, 3.5], [9.5, 3.5], [9.5, 7.5], [2.5, 7.5]]
    other_frame = _rtstruct(series, {"S": [(_to_patient(square, 2), 2)]}, frame="1.2.3.4.5")
    with pytest.raises(DataError, match="frame of reference 1.2.3.4.5"):
        rasterize_roi(other_frame, "S", series)
    off = _to_patient(square, 2) + 0.9 * GAP * NORMAL  # references slice 2, lies near slice 3
    with pytest.raises(DataError, match="contour 0 lies 1.8 mm off the plane of its referenced"):
        rasterize_roi(_rtstruct(series, {"S": [(off, 2)]}), "S", series)
    with pytest.raises(DataError, match="not an RT Structure Set"):
        read_rtstruct(series.files[0])


# --- writing -----------------------------------------------------------------------------------

def _labels(shape):
    """Two labels: a ring with a hole and an island (label 1), a blob touching the border (2)."""
    labels = np.zeros(shape, np.uint8)
    labels[1, 2:12, 3:15] = 1
    labels[1, 5:9, 6:11] = 0
    labels[1, 6:8, 8] = 1
    labels[2, 3:10, 4:12] = 1
    labels[2:4, 10:, 12:] = 2  # touches the bottom and right borders
    labels[3, 1, 1] = 2  # a single pixel
    labels[3, 4, 4] = labels[3, 5, 5] = 2  # diagonal neighbours
    return labels


def test_written_rtstruct_round_trips(tmp_path):
    series = _write_series(tmp_path / "ct")
    labels = _labels(series.shape)
    path = write_rtstruct(labels, series, tmp_path / "rtss.dcm", {1: "Heart", 2: "Lung", 3: "Cord"})
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT" and ds.StudyInstanceUID == STUDY
    assert referenced_series_uids(ds) == [SERIES]
    referenced = {c.ContourImageSequence[0].ReferencedSOPInstanceUID
                  for roi in ds.ROIContourSequence for c in roi.ContourSequence}
    assert referenced <= set(series.sop_instance_uids)
    assert [(r.name, r.contour_count) for r in list_rois(path)] == [
        ("Heart", 4), ("Lung", 5), ("Cord", 0)]
    for value, name in ((1, "Heart"), (2, "Lung")):
        back = rasterize_roi(path, name, series)
        truth = labels == value
        dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
        assert dice >= 0.9
        # Differences only on boundary pixels (measured: none at all).
        from scipy.ndimage import binary_dilation, binary_erosion

        boundary = binary_dilation(truth) & ~binary_erosion(truth)
        assert not ((back ^ truth) & ~boundary).any()
        assert np.array_equal(back, truth)


def test_trace_mask_refills_to_the_mask():
    rng = np.random.default_rng(0)
    mask = rng.random((24, 24)) > 0.55
    filled = np.zeros_like(mask)
    for contour in trace_mask(mask):
        filled ^= polygon_to_mask(contour, mask.shape)
    assert np.array_equal(filled, mask)


def test_write_rejects_bad_label_maps(tmp_path):
    series = _write_series(tmp_path / "ct")
    with pytest.raises(ConfigError, match="does not match the series"):
        write_rtstruct(np.zeros((2, 3, 4), np.uint8), series, tmp_path / "x.dcm", ["A"])
    labels = np.zeros(series.shape, np.uint8)
    labels[0, 0, 0] = 2
    with pytest.raises(ConfigError, match=r"label value\(s\) \[2\]"):
        write_rtstruct(labels, series, tmp_path / "x.dcm", ["A"])
    assert not (tmp_path / "x.dcm").exists()


# --- tfseg convert --rtstruct ------------------------------------------------------------------

def test_convert_writes_roi_masks_beside_the_image(tmp_path, capsys):
    import json

    from tfseg.cli import main
    from tfseg.io.nifti import read_nifti

    series = _write_series(tmp_path / "ct")
    labels = _labels(series.shape)
    rtss = write_rtstruct(labels, series, tmp_path / "rtss.dcm", {1: "Heart", 2: "Lt Lung"})
    out = tmp_path / "out" / "image.nii.gz"
    assert main(["convert", str(tmp_path / "ct"), str(out), "--rtstruct", str(rtss),
                 "--roi", "HEART", "--roi", "2"]) == 0
    printed = capsys.readouterr().out.split()
    heart, lung = tmp_path / "out" / "image_Heart.nii.gz", tmp_path / "out" / "image_Lt_Lung.nii.gz"
    assert printed == [str(out), str(heart), str(lung)]
    image = read_nifti(out)
    for path, value in ((heart, 1), (lung, 2)):
        mask = read_nifti(path)
        assert np.array_equal(mask.affine, image.affine) and mask.array.dtype == np.uint8
        assert np.array_equal(mask.array, (labels == value).astype(np.uint8))
    # One label map, resampled with the image (nearest neighbour keeps the labels).
    assert main(["convert", str(tmp_path / "ct"), str(out), "--rtstruct", str(rtss),
                 "--label-map", "--spacing", "0.5", "0.5", "1.0"]) == 0
    label_map = read_nifti(tmp_path / "out" / "image_labels.nii.gz")
    assert np.array_equal(label_map.affine, read_nifti(out).affine)
    assert label_map.shape == read_nifti(out).shape == (8, 26, 20)  # 4x2 mm, 16x0.8, 20x0.5
    assert set(np.unique(label_map.array)) == {0, 1, 2}
    names = json.loads((tmp_path / "out" / "image_labels.json").read_text())
    assert names == {"1": "Heart", "2": "Lt Lung"}
    assert main(["convert", str(tmp_path / "ct"), str(out), "--roi", "Heart"]) == 2
