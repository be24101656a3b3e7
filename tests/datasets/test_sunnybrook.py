"""The Sunnybrook finder and sample loader, on small generated trees in the real layout."""
import os
import shutil

import numpy as np
import pydicom
import pytest

from tfseg.utils.problems import ProblemLog
from tfseg.datasets.sunnybrook import (SAX_SERIES, SunnybrookRecord, canonical_case, find_sunnybrook, load_sample,
                                       series_table)
from tfseg.datasets.synthetic import write_sunnybrook
from tfseg.errors import ConfigError, DataError
from tfseg.io.contours import polygon_to_mask, read_contour

CASES = ["SC-HF-I-1", "SC-HF-I-2", "SC-HF-I-4", "SC-HF-I-40"]
IMAGES, CONTOURED = 6, 4


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_sunnybrook(tmp_path_factory.mktemp("sunnybrook"), num_cases=4, images_per_case=IMAGES,
                            contoured_per_case=CONTOURED, image_size=64, seed=1)


@pytest.fixture()
def tree(pristine, tmp_path):
    """A private copy of the generated tree, free to damage: (image_dir, contour_dir)."""
    root = tmp_path / "copy"
    shutil.copytree(pristine.root, root)
    return str(root / "images"), str(root / "contours")


def _expert(contour_dir, folder):
    return os.path.join(contour_dir, folder, "contours-manual", "IRCCI-expert")


def _first(records, case):
    return next(r for r in records if r.case == case)


def test_canonical_case():
    assert canonical_case("SC-HF-I-01") == "SC-HF-I-1"
    assert canonical_case("SC-HF-NI-004") == "SC-HF-NI-4"
    assert canonical_case(" sc-hyp-40 ") == "SC-HYP-40"
    assert canonical_case("SC-N-10") == "SC-N-10"
    assert canonical_case("odd-name") == "ODD-NAME"


def test_series_table_merge_and_replace():
    assert series_table() == SAX_SERIES
    merged = series_table({"SC-N-02": 7, "SC-NEW-1": "12"})
    assert merged["SC-N-2"] == "0007" and merged["SC-NEW-1"] == "0012" and merged["SC-HF-I-1"] == "0004"
    assert series_table({"SC-NEW-1": 12}, replace=True) == {"SC-NEW-1": "0012"}
    for bad in ({"SC-N-2": "x12"}, {"SC-N-2": -1}, {"SC-N-2": 10000}, {"SC-N-2": 1.5}, ["SC-N-2"]):
        with pytest.raises(ConfigError):
            series_table(bad)


def test_finds_every_contoured_image(tree):
    image_dir, contour_dir = tree
    # the generator zero-pads every other contour folder, as the real data does
    assert sorted(os.listdir(contour_dir)) == ["SC-HF-I-01", "SC-HF-I-04", "SC-HF-I-2", "SC-HF-I-40"]
    log = ProblemLog("skip")
    records = find_sunnybrook(image_dir, contour_dir, problems=log)
    assert len(log) == 0
    assert len(records) == len(CASES) * CONTOURED
    assert records == sorted(records, key=lambda r: (r.case, r.image_number))
    assert {r.case for r in records} == set(CASES)
    for r in records:
        assert isinstance(r, SunnybrookRecord) and r.contour_kind == "icontour"
        series = SAX_SERIES[r.case]
        assert os.path.basename(r.image_path) == f"IM-{series}-{r.image_number:04d}.dcm"
        assert os.path.basename(r.contour_path) == f"IM-0001-{r.image_number:04d}-icontour-manual.txt"
        assert os.path.isfile(r.image_path) and os.path.isfile(r.contour_path)
    assert "SC-HF-I-01" in _first(records, "SC-HF-I-1").contour_path


def test_ocontour_selection(tree):
    records = find_sunnybrook(*tree, contour="ocontour")
    assert len(records) == len(CASES) * CONTOURED
    assert all(r.contour_kind == "ocontour" and r.contour_path.endswith("-ocontour-manual.txt") for r in records)
    # no papillary contours in this tree: a kind with no files gives no samples but no error
    assert find_sunnybrook(*tree, contour="p1contour") == []


def test_zero_padded_image_folder(tree):
    image_dir, contour_dir = tree
    os.rename(os.path.join(image_dir, "SC-HF-I-2"), os.path.join(image_dir, "SC-HF-I-02"))
    records = find_sunnybrook(image_dir, contour_dir, on_error="raise")
    padded = [r for r in records if r.case == "SC-HF-I-2"]
    assert len(padded) == CONTOURED
    assert all(os.sep + "SC-HF-I-02" + os.sep in r.image_path for r in padded)


def test_missing_image_skip_and_raise(tree):
    image_dir, contour_dir = tree
    victim = _first(find_sunnybrook(image_dir, contour_dir), "SC-HF-I-4")
    os.remove(victim.image_path)
    log = ProblemLog("skip")
    records = find_sunnybrook(image_dir, contour_dir, problems=log)
    assert len(records) == len(CASES) * CONTOURED - 1
    assert victim.contour_path not in {r.contour_path for r in records}
    assert [p.path for p in log.problems] == [victim.contour_path]
    assert victim.image_path in log.problems[0].reason
    with pytest.raises(DataError) as error:
        find_sunnybrook(image_dir, contour_dir, on_error="raise")
    assert error.value.path == victim.contour_path and "no image" in str(error.value)


def test_malformed_contour(tree, caplog):
    image_dir, contour_dir = tree
    victim = _first(find_sunnybrook(image_dir, contour_dir), "SC-HF-I-40")
    with open(victim.contour_path, "w") as f:
        f.write("10.0 12.0\n11.5 abc\n13.0 12.0\n")
    records = find_sunnybrook(image_dir, contour_dir, on_error="skip")
    assert len(records) == len(CASES) * CONTOURED - 1
    assert victim.contour_path in caplog.text  # the warning names the file
    with pytest.raises(DataError) as error:
        find_sunnybrook(image_dir, contour_dir, on_error="raise")
    assert error.value.path == victim.contour_path and error.value.line == 2


def test_too_few_points(tree):
    image_dir, contour_dir = tree
    victim = _first(find_sunnybrook(image_dir, contour_dir), "SC-HF-I-1")
    with open(victim.contour_path, "w") as f:
        f.write("10.0 12.0\n11.5 13.0\n")
    with pytest.raises(DataError, match="at least 3 points") as error:
        find_sunnybrook(image_dir, contour_dir, on_error="raise")
    assert error.value.path == victim.contour_path


def test_contour_name_not_matching_pattern(tree):
    image_dir, contour_dir = tree
    bad = os.path.join(_expert(contour_dir, "SC-HF-I-2"), "IM-0001-00x8-icontour-manual.txt")
    shutil.copy(find_sunnybrook(*tree)[0].contour_path, bad)
    open(os.path.join(_expert(contour_dir, "SC-HF-I-2"), "notes.doc"), "w").close()  # not a .txt: ignored
    log = ProblemLog("skip")
    assert len(find_sunnybrook(image_dir, contour_dir, problems=log)) == len(CASES) * CONTOURED
    assert [p.path for p in log.problems] == [bad]
    assert "IM-0001-<NNNN>-<kind>-manual.txt" in log.problems[0].reason
    with pytest.raises(DataError):
        find_sunnybrook(image_dir, contour_dir, on_error="raise")


def test_unknown_case_then_added_through_series(tree):
    image_dir, contour_dir = tree
    src = _first(find_sunnybrook(*tree), "SC-HF-I-1")
    extra = _expert(contour_dir, "SC-X-07")
    os.makedirs(extra)
    shutil.copy(src.contour_path, os.path.join(extra, os.path.basename(src.contour_path)))
    log = ProblemLog("skip")
    assert len(find_sunnybrook(image_dir, contour_dir, problems=log)) == len(CASES) * CONTOURED
    assert [p.path for p in log.problems] == [os.path.join(contour_dir, "SC-X-07")]
    assert "not in the series table" in log.problems[0].reason
    # known case but no image folder for it
    log = ProblemLog("skip")
    find_sunnybrook(image_dir, contour_dir, series={"SC-X-7": 33}, problems=log)
    assert [p.path for p in log.problems] == [os.path.join(image_dir, "SC-X-7")]
    # with its images in place, the user's table makes it a case like the others
    os.makedirs(os.path.join(image_dir, "SC-X-7"))
    shutil.copy(src.image_path, os.path.join(image_dir, "SC-X-7", f"IM-0033-{src.image_number:04d}.dcm"))
    records = find_sunnybrook(image_dir, contour_dir, series={"SC-X-7": 33}, on_error="raise")
    added = [r for r in records if r.case == "SC-X-7"]
    assert len(added) == 1 and added[0].image_path.endswith(f"IM-0033-{src.image_number:04d}.dcm")


def test_user_series_table_overrides_default(tree):
    image_dir, contour_dir = tree
    folder = os.path.join(image_dir, "SC-HF-I-1")
    for name in os.listdir(folder):
        os.rename(os.path.join(folder, name), os.path.join(folder, name.replace("IM-0004-", "IM-0077-")))
    log = ProblemLog("skip")
    records = find_sunnybrook(image_dir, contour_dir, problems=log)
    assert "SC-HF-I-1" not in {r.case for r in records}
    assert len(log) == CONTOURED and all("IM-0004-" in p.reason for p in log.problems)
    records = find_sunnybrook(image_dir, contour_dir, series={"SC-HF-I-01": 77}, on_error="raise")
    assert len([r for r in records if r.case == "SC-HF-I-1"]) == CONTOURED
    # replacing the table: only its cases are known
    log = ProblemLog("skip")
    records = find_sunnybrook(image_dir, contour_dir, series={"SC-HF-I-1": "0077"}, replace_series=True,
                              problems=log)
    assert {r.case for r in records} == {"SC-HF-I-1"}
    assert len(log) == 3


def test_missing_image_folder(tree):
    image_dir, contour_dir = tree
    shutil.rmtree(os.path.join(image_dir, "SC-HF-I-40"))
    log = ProblemLog("skip")
    records = find_sunnybrook(image_dir, contour_dir, problems=log)
    assert "SC-HF-I-40" not in {r.case for r in records}
    assert [p.path for p in log.problems] == [os.path.join(image_dir, "SC-HF-I-40")]
    with pytest.raises(DataError, match="no image folder"):
        find_sunnybrook(image_dir, contour_dir, on_error="raise")


def test_duplicate_case_folders(tree):
    image_dir, contour_dir = tree
    shutil.copytree(os.path.join(contour_dir, "SC-HF-I-2"), os.path.join(contour_dir, "SC-HF-I-002"))
    log = ProblemLog("skip")
    records = find_sunnybrook(image_dir, contour_dir, problems=log)
    assert len(records) == len(CASES) * CONTOURED
    assert len(log) == CONTOURED and all("a second icontour" in p.reason for p in log.problems)


def test_missing_and_empty_dirs(tree, tmp_path):
    image_dir, contour_dir = tree
    with pytest.raises(DataError, match="IM-<series>-<NNNN>.dcm") as error:
        find_sunnybrook(str(tmp_path / "nope"), contour_dir)
    assert error.value.path == str(tmp_path / "nope")
    with pytest.raises(DataError, match="contour folder not found"):
        find_sunnybrook(image_dir, str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no contour files found") as error:
        find_sunnybrook(image_dir, str(empty))
    assert error.value.path == str(empty)
    assert "contours-manual" in str(error.value)
    # contours given where images are expected: no IRCCI-expert folders under image_dir
    with pytest.raises(DataError, match="no contour files found"):
        find_sunnybrook(contour_dir, image_dir)


def test_bad_options(tree):
    with pytest.raises(ConfigError, match="icontour"):
        find_sunnybrook(*tree, contour="xcontour")
    with pytest.raises(ConfigError, match="on_error"):
        find_sunnybrook(*tree, on_error="ignore")
    with pytest.raises(ConfigError, match="ProblemLog"):
        find_sunnybrook(*tree, problems=[])


def test_problem_log_is_shared(tree):
    image_dir, contour_dir = tree
    victim = find_sunnybrook(image_dir, contour_dir)[0]
    os.remove(victim.image_path)
    log = ProblemLog("skip")
    log.report("earlier.dcm", "found before")
    find_sunnybrook(image_dir, contour_dir, on_error="raise", problems=log)  # the log's policy wins
    assert [p.path for p in log.problems] == ["earlier.dcm", victim.contour_path]


# --- load_sample -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def all_contoured(tmp_path_factory):
    """Every image contoured, at two sizes, so anatomy checks cover every generated image."""
    small = write_sunnybrook(tmp_path_factory.mktemp("small"), num_cases=4, images_per_case=8,
                             contoured_per_case=8, image_size=64, seed=2)
    full = write_sunnybrook(tmp_path_factory.mktemp("full"), num_cases=2, images_per_case=8,
                            contoured_per_case=8, image_size=256, seed=3)
    return small, full


def test_load_sample_matches_contour_and_anatomy(all_contoured):
    for ds in all_contoured:
        inner = ds.find("icontour")
        outer = {r.image_path: r for r in ds.find("ocontour")}
        assert len(inner) == len(ds.cases) * 8
        for record in inner:
            image, mask = load_sample(record)
            assert image.dtype == np.float32 and mask.dtype == np.uint8
            assert image.shape == mask.shape and image.shape[0] == image.shape[1]
            expected = polygon_to_mask(read_contour(record.contour_path), image.shape)
            np.testing.assert_array_equal(mask, expected.astype(np.uint8))
            assert 0 < mask.mean() < 0.025, record
            _, epi = load_sample(outer[record.image_path])
            ring = (epi == 1) & (mask == 0)
            assert ring.sum() > 0
            # blood pool brighter than the myocardial ring around it
            assert image[mask == 1].mean() > 1.3 * image[ring].mean(), record


def test_load_sample_applies_rescale(all_contoured):
    small, _ = all_contoured
    record = small.find()[0]
    for r in small.find():
        if pydicom.dcmread(r.image_path, stop_before_pixels=True).RescaleSlope != 1:
            record = r
            break
    ds = pydicom.dcmread(record.image_path)
    assert float(ds.RescaleSlope) != 1.0  # the generator stores some cases through a rescale
    image, _ = load_sample(record)
    np.testing.assert_allclose(image, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
                               rtol=1e-6, atol=1e-3)


def _copy_record(record, tmp_path, **changes):
    image_path = str(tmp_path / os.path.basename(record.image_path))
    contour_path = str(tmp_path / os.path.basename(record.contour_path))
    shutil.copy(record.image_path, image_path)
    shutil.copy(record.contour_path, contour_path)
    values = dict(case=record.case, image_path=image_path, contour_path=contour_path,
                  image_number=record.image_number, contour_kind=record.contour_kind)
    values.update(changes)
    return SunnybrookRecord(**values)


def test_load_sample_rejects_far_contour(all_contoured, tmp_path):
    record = _copy_record(all_contoured[0].find()[0], tmp_path)
    points = read_contour(record.contour_path)
    points[5] += 500.0  # a point beyond one image size: wrong pairing or convention
    np.savetxt(record.contour_path, points, fmt="%.2f")
    with pytest.raises(DataError, match="far outside") as error:
        load_sample(record)
    assert error.value.path == record.contour_path
    np.savetxt(record.contour_path, [[-10, -10], [-5, -12], [-8, -3]], fmt="%.2f")
    with pytest.raises(DataError, match="entirely outside"):
        load_sample(record)


@pytest.mark.parametrize("kind", ["multiframe", "colour"])
def test_load_sample_rejects_non_2d_images(all_contoured, tmp_path, kind):
    record = _copy_record(all_contoured[0].find()[0], tmp_path)
    ds = pydicom.dcmread(record.image_path)
    if kind == "multiframe":
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData * 2
    else:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.PixelData = ds.PixelData * 3
    ds.save_as(record.image_path)
    with pytest.raises(DataError) as error:
        load_sample(record)
    assert error.value.path == record.image_path


def test_load_sample_missing_image(all_contoured, tmp_path):
    record = _copy_record(all_contoured[0].find()[0], tmp_path)
    os.remove(record.image_path)
    with pytest.raises(DataError) as error:
        load_sample(record)
    assert error.value.path == record.image_path
