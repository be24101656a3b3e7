"""NaN, infinite, zero or negative scaling and pixel spacing are refused, naming the file and field."""
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tfseg.errors import DataError
from tfseg.io.dicom import read_header, read_image, read_series, write_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

UID = "1.2.826.0.1.3680043.8.498.78"


def _edited(folder, name="a.dcm", k=0, **elements):
    """A slice written by write_image, then given raw element values (as a damaged file has them)."""
    path = Path(folder) / name
    write_image(path, np.arange(16, dtype=np.int16).reshape(4, 4), rescale_slope=2.0, rescale_intercept=1.0,
                series_instance_uid=UID, image_position=(0.0, 0.0, 2.0 * k))
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return path


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "0"])
def test_bad_rescale_slope(tmp_path, value):
    path = _edited(tmp_path, RescaleSlope=value)
    for reader in (read_image, read_header):
        with pytest.raises(DataError, match=rf"RescaleSlope is '{value}'") as info:
            reader(path)
        assert info.value.path == str(path)


@pytest.mark.parametrize("value", ["NaN", "-inf"])
def test_bad_rescale_intercept(tmp_path, value):
    path = _edited(tmp_path, RescaleIntercept=value)
    with pytest.raises(DataError, match=rf"RescaleIntercept is '{value}'"):
        read_image(path)


@pytest.mark.parametrize("value", [["nan", "1"], ["-0.5", "1"], ["1", "inf"]])
def test_bad_pixel_spacing(tmp_path, value):
    path = _edited(tmp_path, PixelSpacing=value)
    with pytest.raises(DataError, match="PixelSpacing .* must be positive finite numbers") as info:
        read_image(path)
    assert info.value.path == str(path)


def test_zero_pixel_spacing_reads_as_stored_but_cannot_place_a_series_slice(tmp_path):
    # Projection radiographs store 0\0 for "not known" (pydicom-data's RG1_UNCR.dcm): kept for one image,
    path = _edited(tmp_path, PixelSpacing=["0", "0"])
    assert read_image(path).pixel_spacing == (0.0, 0.0)
    np.testing.assert_array_equal(read_image(path).array[0], [1, 3, 5, 7])
    # but a volume cannot be built on it.
    for k in (1, 2):
        _edited(tmp_path, f"b{k}.dcm", k=k)
    with pytest.raises(DataError, match=r"PixelSpacing \[0.0, 0.0\] must be positive") as info:
        read_series(tmp_path)
    assert info.value.path == str(path)


def test_a_series_slice_with_a_nan_slope_is_named(tmp_path):
    for k in (0, 2):
        _edited(tmp_path, f"s{k}.dcm", k=k)
    bad = _edited(tmp_path, "s1.dcm", k=1, RescaleSlope="NaN")
    with pytest.raises(DataError, match="RescaleSlope is 'NaN'") as info:
        read_series(tmp_path)
    assert info.value.path == str(bad)
    volume = np.asarray(read_series([tmp_path / "s0.dcm", tmp_path / "s2.dcm"]).array)
    assert np.isfinite(volume).all()
