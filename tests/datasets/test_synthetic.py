"""The synthetic Sunnybrook writer: layout, DICOM validity, determinism, anatomy, reuse."""
import json
import os

import numpy as np
import pydicom
import pytest

from tfseg.datasets.sunnybrook import SAX_SERIES, find_sunnybrook
from tfseg.datasets.synthetic import (MARKER_NAME, ensure_sunnybrook, synthetic_cases, write_sunnybrook)
from tfseg.errors import ConfigError, DataError
from tfseg.io.contours import polygon_to_mask, read_contour
from tfseg.io.dicom import read_image

SMALL = dict(num_cases=3, images_per_case=6, contoured_per_case=4, image_size=64)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return write_sunnybrook(tmp_path_factory.mktemp("a"), seed=0, **SMALL)


@pytest.fixture(scope="module")
def again(tmp_path_factory):
    return write_sunnybrook(tmp_path_factory.mktemp("b"), seed=0, **SMALL)


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return write_sunnybrook(tmp_path_factory.mktemp("c"), seed=1, **SMALL)


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name != MARKER_NAME:
                path = os.path.join(folder, name)
                out[os.path.relpath(path, root)] = path
    return out


def test_layout(first):
    assert first.cases == ("SC-HF-I-1", "SC-HF-I-2", "SC-HF-I-4")
    assert first.series == {c: SAX_SERIES[c] for c in first.cases}
    assert first.image_dir == os.path.join(first.root, "images")
    assert first.contour_dir == os.path.join(first.root, "contours")
    assert sorted(os.listdir(first.image_dir)) == sorted(first.cases)
    assert sorted(os.listdir(first.contour_dir)) == ["SC-HF-I-01", "SC-HF-I-04", "SC-HF-I-2"]
    for case in first.cases:
        series = SAX_SERIES[case]
        assert sorted(os.listdir(os.path.join(first.image_dir, case))) == [
            f"IM-{series}-{n:04d}.dcm" for n in range(1, 7)]
    expert = os.path.join(first.contour_dir, "SC-HF-I-01", "contours-manual", "IRCCI-expert")
    names = sorted(os.listdir(expert))
    numbers = sorted({int(n.split("-")[2]) for n in names})
    assert len(numbers) == 4 and set(numbers) <= set(range(1, 7))
    assert names == sorted(f"IM-0001-{n:04d}-{kind}-manual.txt" for n in numbers for kind in ("icontour", "ocontour"))
    with open(expert + os.sep + names[0]) as f:
        lines = f.read().splitlines()
    assert all(len(line.split()) == 2 and all(len(v.split(".")[1]) == 2 for v in line.split()) for line in lines)
    marker = json.load(open(os.path.join(first.root, MARKER_NAME)))
    assert marker["complete"] and marker["kwargs"] == dict(SMALL, seed=0)


def test_dicom_headers_with_plain_pydicom(first):
    spacings, slopes = set(), set()
    for case in first.cases:
        folder = os.path.join(first.image_dir, case)
        for name in sorted(os.listdir(folder)):
            ds = pydicom.dcmread(os.path.join(folder, name))
            number = int(name[-8:-4])
            assert ds.Modality == "MR"
            assert (ds.Rows, ds.Columns) == (64, 64)
            assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
            assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.shape == (64, 64)
            assert int(ds.InstanceNumber) == number
            assert int(ds.SeriesNumber) == int(first.series[case])
            assert ds.PatientID == case
            assert float(ds.PixelSpacing[0]) == float(ds.PixelSpacing[1])
            assert 1.2 <= float(ds.PixelSpacing[0]) <= 1.5
            spacings.add(float(ds.PixelSpacing[0]))
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            slopes.add((slope, intercept))
            # tfseg's reader applies the rescale; plain pydicom gives the stored values
            expected = ds.pixel_array.astype(np.float64) * slope + intercept
            np.testing.assert_allclose(read_image(os.path.join(folder, name)).array, expected, rtol=1e-6, atol=1e-3)
    assert len(spacings) == 3  # varies per case
    assert (1.0, 0.0) in slopes and any(s != (1.0, 0.0) for s in slopes)  # some cases need the rescale


def test_same_seed_same_data(first, again):
    a, b = _files(first.root), _files(again.root)
    assert sorted(a) == sorted(b)
    for rel, path in a.items():
        if rel.endswith(".dcm"):
            np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, pydicom.dcmread(b[rel]).pixel_array)
        else:
            assert open(path).read() == open(b[rel]).read(), rel


def test_other_seed_other_data(first, other):
    a, c = _files(first.root), _files(other.root)
    images = [rel for rel in a if rel.endswith(".dcm")]
    assert all(rel in c for rel in images)  # same cases and images, different content
    assert not any(np.array_equal(pydicom.dcmread(a[rel]).pixel_array, pydicom.dcmread(c[rel]).pixel_array)
                   for rel in images)
    shared = [rel for rel in a if rel.endswith(".txt") and rel in c]
    assert all(open(a[rel]).read() != open(c[rel]).read() for rel in shared)


def test_image_consistent_with_contours(first):
    for record in first.find("icontour"):
        image = read_image(record.image_path).array
        points = read_contour(record.contour_path)
        lv = polygon_to_mask(points, image.shape)
        epi = polygon_to_mask(read_contour(record.contour_path.replace("icontour", "ocontour")), image.shape)
        assert (lv & ~epi).sum() == 0  # endocardium inside epicardium
        ring = epi & ~lv
        assert image[lv].mean() > 1.3 * image[ring].mean()
        # the bright pool is the contour's mask: thresholding inside the epicardium gives it back
        threshold = (np.median(image[lv]) + np.median(image[ring])) / 2
        bright = (image > threshold) & epi
        assert 2 * (bright & lv).sum() / (bright.sum() + lv.sum()) > 0.95
        # points about 1 px apart, in the central region of the image
        steps = np.hypot(*np.diff(np.vstack([points, points[:1]]), axis=0).T)
        assert 0.3 < np.median(steps) < 1.8
        assert (points > 8).all() and (points < 56).all()


def test_bright_is_not_only_the_lv(tmp_path):
    ds = write_sunnybrook(tmp_path, num_cases=3, images_per_case=4, contoured_per_case=4, image_size=128, seed=5)
    for record in ds.find():
        image = read_image(record.image_path).array
        lv = polygon_to_mask(read_contour(record.contour_path), image.shape)
        epi = polygon_to_mask(read_contour(record.contour_path.replace("icontour", "ocontour")), image.shape)
        pool = np.median(image[lv])
        bright_elsewhere = (image > 0.8 * pool) & ~epi
        # the RV crescent, aorta and fat make at least as many bright pixels as the LV itself
        assert bright_elsewhere.sum() > lv.sum(), record
        assert lv.mean() < 0.02


def test_more_cases_than_the_table(tmp_path):
    cases = synthetic_cases(20)
    names = [c for c, _ in cases]
    assert names[:15] == list(SAX_SERIES) and len(set(names)) == 20
    assert len({s for _, s in cases}) == 20 and all(len(s) == 4 and s.isdigit() for _, s in cases)
    ds = write_sunnybrook(tmp_path, num_cases=17, images_per_case=1, contoured_per_case=1, image_size=32)
    assert ds.cases[15:] == ("SC-HF-I-41", "SC-HF-NI-41")
    assert {r.case for r in ds.find()} == set(ds.cases)
    # the default table does not know the generated cases: the dataset's own table is needed
    assert len(find_sunnybrook(ds.image_dir, ds.contour_dir, on_error="skip")) == 15


def test_ensure_reuses_and_rewrites(tmp_path):
    kwargs = dict(num_cases=2, images_per_case=3, contoured_per_case=2, image_size=32)
    ds = ensure_sunnybrook(tmp_path, **kwargs)
    probe = os.path.join(ds.image_dir, "SC-HF-I-1", "IM-0004-0001.dcm")
    marker = os.path.join(ds.root, MARKER_NAME)
    stamp = os.stat(probe).st_mtime_ns, os.stat(marker).st_mtime_ns
    assert ensure_sunnybrook(tmp_path, **kwargs) == ds
    assert (os.stat(probe).st_mtime_ns, os.stat(marker).st_mtime_ns) == stamp  # nothing rewritten
    before = pydicom.dcmread(probe).pixel_array
    # other arguments: rewritten, stale cases gone
    ds2 = ensure_sunnybrook(tmp_path, **dict(kwargs, num_cases=1, seed=4))
    assert sorted(os.listdir(ds2.image_dir)) == ["SC-HF-I-1"]
    assert not np.array_equal(pydicom.dcmread(probe).pixel_array, before)
    assert json.load(open(marker))["kwargs"]["seed"] == 4
    # a damaged dataset (a file removed) is written again
    os.remove(probe)
    ensure_sunnybrook(tmp_path, **dict(kwargs, num_cases=1, seed=4))
    assert os.path.isfile(probe)
    # an interrupted write (marker not complete) is written again
    content = json.load(open(marker))
    content["complete"] = False
    json.dump(content, open(marker, "w"))
    ensure_sunnybrook(tmp_path, **dict(kwargs, num_cases=1, seed=4))
    assert json.load(open(marker))["complete"] is True


def test_refuses_foreign_folders(tmp_path):
    (tmp_path / "images" / "mine").mkdir(parents=True)
    with pytest.raises(DataError, match="not written by tfseg") as error:
        write_sunnybrook(tmp_path, num_cases=1, images_per_case=1, contoured_per_case=1, image_size=32)
    assert error.value.path == str(tmp_path)
    assert (tmp_path / "images" / "mine").is_dir()


@pytest.mark.parametrize("kwargs", [
    dict(num_cases=0), dict(num_cases=501), dict(images_per_case=0), dict(contoured_per_case=7, images_per_case=6),
    dict(contoured_per_case=0), dict(image_size=16), dict(seed=-1), dict(image_size=64.0),
])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        write_sunnybrook(tmp_path, **dict(dict(num_cases=1, images_per_case=6, contoured_per_case=2,
                                               image_size=32), **kwargs))
    assert not os.path.exists(tmp_path / MARKER_NAME)
