"""A header that claims a huge volume is refused before the reader allocates it."""
import gzip
import pathlib
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.io import limits
from tfseg.io.nifti import read_nifti

NIBABEL_DATA = pathlib.Path(nib.__file__).parent / "tests" / "data"


def _with_dims(source, dims):
    """The bytes of a NIfTI-1 file with the header's dim field set to `dims` (nothing else changed)."""
    raw = bytearray(source)
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])))
    header["dim"][:] = 1
    header["dim"][0] = len(dims)
    header["dim"][1:1 + len(dims)] = dims
    raw[:348] = header.binaryblock
    return bytes(raw)


def _peak_mb(func):
    tracemalloc.start()
    try:
        func()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


def test_small_gzip_claiming_1300_cubed_is_refused_without_allocating(tmp_path):
    plain = gzip.decompress((NIBABEL_DATA / "example4d.nii.gz").read_bytes())
    hostile = tmp_path / "bomb.nii.gz"
    hostile.write_bytes(gzip.compress(_with_dims(plain[:352 + 150_000], (1300, 1300, 1300)), 9))
    assert hostile.stat().st_size < 200_000  # ~74 KB claiming 4.4 GB of int16
    errors = []

    def read():
        try:
            read_nifti(hostile)
        except DataError as error:
            errors.append(error)

    peak = _peak_mb(read)
    assert errors and errors[0].path == str(hostile)
    assert "more than a gzip file of" in errors[0].reason and "4.39 GB" in errors[0].reason
    assert peak < 50, f"peak {peak:.0f} MB"


def test_uncompressed_file_shorter_than_its_header_claims(tmp_path):
    source = (NIBABEL_DATA / "anatomical.nii").read_bytes()
    hostile = tmp_path / "big.nii"
    hostile.write_bytes(_with_dims(source, (900, 900, 900)))
    errors = []
    peak = _peak_mb(lambda: errors.append(pytest.raises(DataError, read_nifti, hostile)))
    assert "truncated or corrupt" in str(errors[0].value) and f"file has {len(source)}" in str(errors[0].value)
    assert peak < 50


def test_gzip_inflating_to_less_than_claimed_is_refused_before_reading(tmp_path, monkeypatch):
    plain = gzip.decompress((NIBABEL_DATA / "example4d.nii.gz").read_bytes())
    # within deflate's ratio but the stream holds only half of what the header claims
    shape = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(plain[:348])).get_data_shape()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(_with_dims(plain, shape[:3] + (4,))))
    with pytest.raises(DataError, match=r"gzip stream inflates to \d+"):
        read_nifti(cut)


def test_valid_files_read_including_multi_member_gzip(tmp_path):
    whole = (NIBABEL_DATA / "example4d.nii.gz").read_bytes()
    plain = gzip.decompress(whole)
    members = tmp_path / "members.nii.gz"  # what `cat a.gz b.gz` or bgzip-style writers produce
    members.write_bytes(gzip.compress(plain[:100_000]) + gzip.compress(plain[100_000:]))
    expected = read_nifti(NIBABEL_DATA / "example4d.nii.gz").array
    np.testing.assert_array_equal(read_nifti(members).array, expected)
    assert expected.shape == (24, 96, 128, 2)


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    path = NIBABEL_DATA / "example4d.nii.gz"  # 128 x 96 x 24 x 2 int16 = 1.18 MB
    monkeypatch.setenv(limits.MAX_VOLUME_BYTES_ENV, "1000000")
    with pytest.raises(DataError, match="more than the 0.001 GB a volume may take .*TFSEG_MAX_VOLUME_BYTES"):
        read_nifti(path)
    with pytest.raises(DataError, match="needs 0.00236 GB, more than the 0.002 GB"):  # float32: twice int16
        monkeypatch.setenv(limits.MAX_VOLUME_BYTES_ENV, "2000000")
        read_nifti(path, dtype=np.float32)
    assert read_nifti(path).shape == (24, 96, 128, 2)
    monkeypatch.setenv(limits.MAX_VOLUME_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match="TFSEG_MAX_VOLUME_BYTES must be a positive number"):
        read_nifti(path)
    monkeypatch.delenv(limits.MAX_VOLUME_BYTES_ENV)
    assert limits.max_volume_bytes() == limits.DEFAULT_MAX_VOLUME_BYTES


def test_tiff_claiming_60000_squared_is_refused_without_allocating(tmp_path):
    import struct

    import tifffile

    from tfseg.io.images import read_image

    path = tmp_path / "slice.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        width, length = tags["ImageWidth"].valueoffset, tags["ImageLength"].valueoffset
    raw[width:width + 4] = struct.pack("<I", 60000)
    raw[length:length + 4] = struct.pack("<I", 60000)
    path.write_bytes(bytes(raw))
    errors = []
    peak = _peak_mb(lambda: errors.append(pytest.raises(DataError, read_image, path)))
    assert "claim 3600000000 bytes of pixels (60000, 60000)" in str(errors[0].value)
    assert peak < 50, f"peak {peak:.0f} MB"


def test_png_claiming_160_megapixels_is_refused_without_decoding(tmp_path):
    import struct
    import warnings
    import zlib

    from PIL import Image

    from tfseg.io.images import read_image

    path = tmp_path / "mask.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", 20000, 8000)  # IHDR width, height (under Pillow's bomb limit)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning, on the code before the check
        peak = _peak_mb(lambda: errors.append(pytest.raises(DataError, read_image, path)))
    assert "claims 20000x8000 pixels, more than a PNG of" in str(errors[0].value)
    assert peak < 50, f"peak {peak:.0f} MB"
