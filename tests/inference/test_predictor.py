"""The predict core: inputs of every kind, predictions on the input's grid, conventions, the loop, the CLI."""
import json
import os
import pathlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tfseg.errors import ConfigError, DataError
from tfseg.inference.predictor import (
    discover_inputs,
    load_item,
    mask_to_contour,
    predict_all,
    write_prediction,
)
from tfseg.io.contours import polygon_to_mask, read_contour
from tfseg.io.dicom import read_series, write_image
from tfseg.io.images import read_image, write_png


def _threshold(image, item):
    """The predict_fn of these tests: voxels of the first channel above half its maximum."""
    return (image[..., 0] > 0.5 * image[..., 0].max()).astype(np.uint8)


def _rotation(degrees):
    a = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(a / 2), -np.sin(a / 2), 0], [np.sin(a / 2), np.cos(a / 2), 0], [0, 0, 1]])
    return rz @ rx


AFFINES = {
    "RAS": np.array([[0.9, 0, 0, -10], [0, 1.1, 0, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]]),
    "LPS": np.array([[-0.9, 0, 0, 10], [0, -1.1, 0, 20], [0, 0, 2.5, -5], [0, 0, 0, 1]]),
    "oblique": np.vstack([np.column_stack([_rotation(25) @ np.diag([0.9, 1.1, 2.5]), [3.0, -7.0, 12.0]]),
                          [0, 0, 0, 1]]),
}


def _world_centroid(path):
    image = nib.load(str(path))
    ijk = np.argwhere(np.asarray(image.dataobj) > 0).mean(axis=0)
    return image.affine[:3, :3] @ ijk + image.affine[:3, 3]


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_nifti_prediction_keeps_the_input_geometry(tmp_path, name):
    affine = AFFINES[name]
    shape = (12, 10, 7)                                   # NIfTI (i, j, k)
    data = np.zeros(shape, np.float32)
    data[7:10, 2:5, 4:6] = 100.0                         # a blob off the centre, known voxels
    source = nib.Nifti1Image(data, affine)
    source.header.set_qform(affine, code=2)
    source.header.set_sform(affine, code=4)
    source.header["descrip"] = b"scanner export"
    nib.save(source, str(tmp_path / "scan.nii.gz"))
    [item] = discover_inputs(str(tmp_path / "scan.nii.gz"))
    assert item.shape == (7, 10, 12) and np.allclose(item.affine, affine)
    report = predict_all([item], _threshold, tmp_path / "out", progress=False)
    out = nib.load(report["cases"][0]["outputs"][0])
    assert np.allclose(out.affine, affine, atol=1e-6)
    assert np.array_equal(np.asarray(out.dataobj), (data > 0).astype(np.uint8))     # voxel for voxel
    assert int(out.header["sform_code"]) == 4 and int(out.header["qform_code"]) == 2
    assert out.get_data_dtype() == np.uint8
    expected = affine[:3, :3] @ np.array([8.0, 3.0, 4.5]) + affine[:3, 3]
    assert np.allclose(_world_centroid(out.get_filename()), expected)


def _write_series(folder, blob_slice=3):
    """An oblique 6-slice series with a 2x3 blob at rows 4-5, columns 2-4 of one slice."""
    row_cos = np.round([np.cos(0.3), np.sin(0.3), 0.0], 8)
    col_cos = np.round([-np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), -np.sin(0.2)], 8)
    normal = np.cross(row_cos, col_cos)
    origin = np.array([-40.0, 12.0, 30.0])
    spacing, gap = (0.7, 0.9), 3.0                        # (row, col) mm; slices 3 mm apart
    for k in reversed(range(6)):                          # files in reverse order on purpose
        pixels = np.full((10, 8), 5, np.int16)
        if k == blob_slice:
            pixels[4:6, 2:5] = 900
        write_image(folder / f"IM{k:02d}.dcm", pixels, pixel_spacing=spacing, series_instance_uid="1.2.826.0.1.99",
                    image_position=tuple(np.round(origin + k * gap * normal, 6)),
                    image_orientation=tuple(row_cos) + tuple(col_cos),
                    instance_number=k + 1)
    # the blob's centre in DICOM LPS: row 4.5, column 3, slice 3
    lps = origin + blob_slice * gap * normal + 4.5 * spacing[0] * col_cos + 3.0 * spacing[1] * row_cos
    return lps * np.array([-1.0, -1.0, 1.0])


def test_dicom_series_prediction_has_the_series_geometry(tmp_path):
    from tfseg.io.convert import convert_dicom_series

    centre_ras = _write_series(tmp_path / "series")
    [item] = discover_inputs(str(tmp_path / "series"))
    assert item.kind == "dicom_series" and item.shape == (6, 10, 8)
    image = load_item(item)
    assert image.shape == (6, 10, 8, 1)
    report = predict_all([item], _threshold, tmp_path / "out", progress=False)
    written = report["cases"][0]["outputs"][0]
    converted = convert_dicom_series(tmp_path / "series", tmp_path / "converted.nii.gz")
    assert np.allclose(nib.load(written).affine, nib.load(str(converted)).affine, atol=1e-6)
    assert np.allclose(_world_centroid(written), centre_ras, atol=1e-4)
    assert np.array_equal(np.asarray(nib.load(written).dataobj) > 0,
                          np.asarray(nib.load(str(converted)).dataobj) > 450)


def test_single_dicom_file_from_pydicom(tmp_path):
    path = get_testdata_file("CT_small.dcm")
    [item] = discover_inputs(path)
    assert item.kind == "dicom_file" and item.shape == (128, 128)
    image = load_item(item)
    assert image.shape == (128, 128, 1)
    [written] = predict_all([item], _threshold, tmp_path, progress=False)["cases"][0]["outputs"]
    out = nib.load(written)
    assert out.shape == (128, 128, 1)
    assert np.allclose(out.affine, read_series([path]).affine)
    ds = pydicom.dcmread(path)
    corner = np.asarray(ds.ImagePositionPatient, float) * [-1, -1, 1]          # voxel (0, 0, 0), RAS
    assert np.allclose(out.affine[:3, 3], corner)


def test_brats_release_case_folder_and_datalist(tmp_path):
    from tfseg.datasets.synthetic_mni import write_mni_brats

    ds = write_mni_brats(tmp_path / "data", num_cases=3, seed=5, spacing=8.0)
    items = discover_inputs(ds.root)
    assert [i.case_id for i in items] == [c.case_id for c in ds.cases]
    assert all(len(i.paths) == 4 and i.paths[3].endswith("_flair.nii.gz") for i in items)
    [one] = discover_inputs(ds.case_dirs[1])
    assert one.case_id == "BraTS2021_00001" and load_item(one).shape == one.shape + (4,)
    sections = json.loads(pathlib.Path(ds.datalist).read_text())
    validation = discover_inputs(ds.datalist)
    assert len(validation) == len(sections["validation"]) == 1
    assert validation[0].paths[0].endswith(sections["validation"][0]["image"][0])


def test_brats_convention(tmp_path):
    affine = AFFINES["LPS"]
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), affine), str(tmp_path / "x.nii.gz"))
    [item] = discover_inputs(str(tmp_path / "x.nii.gz"))
    regions = np.zeros(item.shape + (3,), np.float32)
    regions[1, 1, 1] = (0.9, 0.8, 0.7)                    # WT, TC, ET: enhancing -> 4
    regions[2, 2, 2] = (0.9, 0.1, 0.1)                    # oedema -> 2
    [path] = write_prediction(item, regions, tmp_path / "out", convention="brats")
    labels = np.asarray(nib.load(path).dataobj)           # NIfTI order: (w, h, d)
    assert labels[1, 1, 1] == 4 and labels[2, 2, 2] == 2 and labels.sum() == 6
    bad = np.zeros(item.shape, np.uint8)
    bad[0, 0, 0] = 3
    with pytest.raises(ConfigError, match=r"also \[3\]"):
        write_prediction(item, bad, tmp_path / "out", convention="brats")
    with pytest.raises(ConfigError, match="input's grid"):
        write_prediction(item, np.zeros((4, 4, 4), np.uint8), tmp_path / "out")
    probabilities = np.random.default_rng(0).random(item.shape + (3,), dtype=np.float32)
    paths = write_prediction(item, regions, tmp_path / "p", convention="brats", probabilities=probabilities)
    stored = nib.load(paths[1])
    assert stored.shape == (4, 5, 6, 3) and np.allclose(stored.affine, affine)   # NIfTI order
    assert np.allclose(np.transpose(stored.get_fdata(), (2, 1, 0, 3)), probabilities)


def _disc(shape, centre, radius):
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + ((cols - centre[1]) / 1.4) ** 2 <= radius ** 2


def test_2d_images_lgg_and_sunnybrook_conventions(tmp_path):
    import tifffile

    image = np.zeros((24, 20, 3), np.uint8)
    image[_disc((24, 20), (10, 8), 5)] = 200
    write_png(str(tmp_path / "in" / "TCGA_CS_4941_19960909_7.png"), image)
    tifffile.imwrite(tmp_path / "in" / "slice_2.tif", image[..., 0])
    write_png(str(tmp_path / "in" / "slice_2_mask.png"), image[..., 0])          # a label: passed over
    items = discover_inputs(str(tmp_path / "in"))
    assert [(i.case_id, i.shape, i.suffix) for i in items] == [("TCGA_CS_4941_19960909_7", (24, 20), ".png"),
                                                               ("slice_2", (24, 20), ".tif")]
    report = predict_all(items, _threshold, tmp_path / "lgg", convention="lgg", progress=False)
    png_mask, tif_mask = (case["outputs"][0] for case in report["cases"])
    assert png_mask.endswith("TCGA_CS_4941_19960909_7_mask.png") and tif_mask.endswith("slice_2_mask.tif")
    for path in (png_mask, tif_mask):
        assert set(np.unique(read_image(path)).tolist()) == {0, 255}
        assert np.array_equal(read_image(path) == 255, image[..., 0] > 0)
    report = predict_all(items[:1], _threshold, tmp_path / "sb", convention="sunnybrook", progress=False)
    mask_path, contour_path = report["cases"][0]["outputs"]
    assert contour_path.endswith("TCGA_CS_4941_19960909_7-icontour-auto.txt")
    mask = read_image(mask_path) > 0
    assert np.array_equal(polygon_to_mask(read_contour(contour_path), mask.shape), mask)     # round trip


@pytest.mark.parametrize("seed", range(4))
def test_contour_round_trip_on_random_blobs(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((40, 36)), 3) > 0.5, iterations=1)
    labels, count = ndimage.label(mask)
    if count == 0:
        pytest.skip("no blob")
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    largest = ndimage.binary_fill_holes(largest)
    assert np.array_equal(polygon_to_mask(mask_to_contour(largest), largest.shape), largest)
    assert mask_to_contour(np.zeros((5, 5))) is None


def test_bad_case_is_skipped_or_raised(tmp_path):
    data = np.zeros((6, 6, 4), np.float32)
    data[2:4, 2:4, 1:3] = 1
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "in" / f"{name}.nii.gz"))
    items = discover_inputs(str(tmp_path / "in"))
    (tmp_path / "in" / "a.nii.gz").write_bytes(b"\x1f\x8b truncated")           # broken after discovery
    report = predict_all(items, _threshold, tmp_path / "out", progress=True)
    assert (report["written"], report["failed"]) == (1, 1)
    failed = report["cases"][0]
    assert failed["status"] == "failed" and "a.nii.gz" in failed["error"]
    stored = json.loads(pathlib.Path(tmp_path / "out" / "predict_report.json").read_text())
    assert stored == json.loads(json.dumps(report))
    with pytest.raises(DataError, match="a.nii.gz"):
        predict_all(items, _threshold, tmp_path / "out2", on_error="raise", progress=False)
    assert json.loads(pathlib.Path(tmp_path / "out2" / "predict_report.json").read_text())["failed"] == 1
    with pytest.raises(ConfigError, match="on_error"):
        predict_all(items, _threshold, tmp_path / "out3", on_error="ignore")


def test_tta_is_asked_of_predict_fn(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4)), str(tmp_path / "x.nii"))
    calls = []

    def predict_fn(image, item, tta=False):
        calls.append(tta)
        return np.zeros(image.shape[:-1], np.uint8)

    predict_all(discover_inputs(str(tmp_path / "x.nii")), predict_fn, tmp_path / "out", tta=True, progress=False)
    assert calls == [True]


def test_nothing_to_predict(tmp_path):
    with pytest.raises(DataError, match="not found"):
        discover_inputs(str(tmp_path / "missing.nii.gz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        discover_inputs(str(tmp_path / "empty"))


def test_sunnybrook_cine_folder_gives_one_item_per_image(tmp_path):
    from tfseg.datasets.synthetic import write_sunnybrook

    ds = write_sunnybrook(tmp_path / "sb", num_cases=1, images_per_case=3, contoured_per_case=2, image_size=32)
    case_dir = os.path.join(ds.image_dir, min(os.listdir(ds.image_dir)))
    items = discover_inputs(case_dir)
    names = sorted(f for f in os.listdir(case_dir) if f.endswith(".dcm"))
    if all(item.kind == "dicom_series" for item in items):
        pytest.skip("this synthetic case stacks into one volume")
    assert sorted(item.case_id + ".dcm" for item in items) == names
    report = predict_all(items, _threshold, tmp_path / "out", convention="sunnybrook", progress=False)
    assert report["failed"] == 0
    for case in report["cases"]:
        mask_path = case["outputs"][0]
        mask = read_image(mask_path) > 0
        assert len(case["outputs"]) == 2 and case["outputs"][1].endswith("-icontour-auto.txt")
        assert np.allclose(read_contour(case["outputs"][1]), mask_to_contour(mask), atol=0.005)
        inside = polygon_to_mask(read_contour(case["outputs"][1]), mask.shape)
        assert (inside & mask).sum() > 0.9 * inside.sum()          # the outline of one of the mask's blobs


def test_folder_of_nifti_passes_over_labels(tmp_path):
    for folder, name in (("imagesTs", "BRATS_500.nii.gz"), ("labelsTr", "BRATS_001.nii.gz"),
                         ("imagesTr", "BRATS_001.nii.gz"), ("imagesTr", "BRATS_002_seg.nii.gz")):
        (tmp_path / folder).mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(np.zeros((3, 4, 5, 2), np.float32), np.eye(4)), str(tmp_path / folder / name))
    items = discover_inputs(str(tmp_path))
    assert sorted(i.case_id for i in items) == ["BRATS_001", "BRATS_500"]
    assert load_item(items[0]).shape == (5, 4, 3, 2)
