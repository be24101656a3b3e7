"""Tests for tfseg.io.dicom against the real files shipped with pydicom and pydicom-data.

Every file is compared with what pydicom itself gives. The file lists are globbed from the
installed packages (pydicom.data.get_testdata_files is not used: it may try the network).
"""
import logging
import types
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MPEG2MPML,
    MRImageStorage,
    JPEG2000Lossless,
)

from tfseg.errors import ConfigError, DataError
from tfseg.io import dicom
from tfseg.io.dicom import DicomImage, read_header, read_image, write_image

# Many of the shipped files are deliberately odd; pydicom warns about them while reading.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
try:
    import data_store  # from pydicom-data

    DATA_STORE_FILES = Path(data_store.__file__).parent / "data"
except ImportError:  # pragma: no cover - pydicom-data is a test dependency
    DATA_STORE_FILES = None

# Decoding this 120-frame 640x480 JPEG baseline file takes seconds; the same codec and colour path
# is covered by examples_ybr_color.dcm and the SC_rgb_*jpeg* files.
SLOW = {"color3d_jpeg_baseline.dcm"}
MAX_BYTES = 10 * 2**20


def _all_files():
    roots = [("pydicom", PYDICOM_FILES)]
    if DATA_STORE_FILES is not None:
        roots.append(("pydicom-data", DATA_STORE_FILES))
    params = []
    for label, root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name in SLOW or path.stat().st_size > MAX_BYTES:
                continue
            rel = path.relative_to(root).as_posix()
            params.append(pytest.param(path, id=f"{label}/{rel}"))
    return params


ALL_FILES = _all_files()


def _pydicom_reference(path, stop_before_pixels=False):
    """What pydicom gives for `path`: (dataset, float32 array), or None where pydicom fails.

    Files without the DICOM preamble are read with force=True, as tfseg does (when they hold a
    DICOM object), and their pixel data decoded with the transfer syntax they were read with.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            except Exception:
                return None
            if "SOPClassUID" not in ds and "Rows" not in ds:
                return None
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit
                else ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        except Exception:
            return None
        if len(ds) == 0:
            return None
        if stop_before_pixels:
            return ds, None
        try:
            pixels = ds.pixel_array
            if ds.PhotometricInterpretation == "PALETTE COLOR":
                values = apply_color_lut(pixels, ds)
            elif ds.get("SamplesPerPixel", 1) == 1:
                values = apply_modality_lut(pixels, ds)
            else:
                values = pixels
        except Exception:
            return ds, None
    return ds, np.asarray(values, dtype=np.float32)


def test_file_lists_are_found():
    names = {p.values[0].name for p in ALL_FILES}
    assert {"CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"} <= names
    if DATA_STORE_FILES is not None:
        assert {"US1_J2KR.dcm", "JPEG-LL.dcm", "SC_rgb_jpeg_dcmtk.dcm"} <= names | {
            p.values[0].name for p in ALL_FILES}
    assert len(ALL_FILES) > 100


@pytest.mark.parametrize("path", ALL_FILES)
def test_read_image_matches_pydicom(path):
    reference = _pydicom_reference(path)
    if reference is None or reference[1] is None:
        with pytest.raises(DataError) as info:
            read_image(path)
        assert str(path) in str(info.value)
        return
    ds, expected = reference
    image = read_image(path)
    assert isinstance(image, DicomImage)
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, expected)
    assert image.path == str(path)
    assert image.transfer_syntax_uid == str(ds.file_meta.TransferSyntaxUID)
    assert image.modality == (str(ds.Modality) if ds.get("Modality") else None)
    assert image.photometric_interpretation == ds.PhotometricInterpretation
    colour = ds.get("SamplesPerPixel", 1) == 3 or ds.PhotometricInterpretation == "PALETTE COLOR"
    frames = int(ds.get("NumberOfFrames") or 1)
    shape = (ds.Rows, ds.Columns) + ((3,) if colour else ())
    assert image.array.shape == ((frames,) if frames > 1 else ()) + shape


@pytest.mark.parametrize("path", ALL_FILES)
def test_read_header_matches_pydicom(path):
    reference = _pydicom_reference(path, stop_before_pixels=True)
    if reference is None:
        with pytest.raises(DataError) as info:
            read_header(path)
        assert str(path) in str(info.value)
        return
    ds = reference[0]
    header = read_header(path)
    assert header.array is None
    assert header.sop_instance_uid == (str(ds.SOPInstanceUID) if ds.get("SOPInstanceUID") else None)
    if ds.get("PixelSpacing") and len(ds.PixelSpacing) == 2:
        assert header.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)
    if ds.get("ImagePositionPatient"):
        assert header.image_position == tuple(float(v) for v in ds.ImagePositionPatient)
    grayscale = ds.get("SamplesPerPixel", 1) == 1 and ds.get("PhotometricInterpretation") != (
        "PALETTE COLOR")
    if grayscale and "RescaleSlope" in ds and "RescaleIntercept" in ds and not ds.get(
            "ModalityLUTSequence"):
        assert header.rescale_slope == float(ds.RescaleSlope)
        assert header.rescale_intercept == float(ds.RescaleIntercept)


# Lossless encodings of one image must decode to the same values as the uncompressed original:
# a check of the decoder plugins that does not lean on pydicom's own pixel_array.
@pytest.mark.parametrize("original, encoded", [
    ("MR_small.dcm", "MR_small_RLE.dcm"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
    ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("MR_small.dcm", "MR_small_implicit.dcm"),
    ("emri_small.dcm", "emri_small_RLE.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),
    ("693_UNCR.dcm", "693_J2KR.dcm"),
    ("MR2_UNCR.dcm", "MR2_J2KR.dcm"),
    ("US1_UNCR.dcm", "US1_J2KR.dcm"),            # colour, YBR_RCT -> RGB
    ("SC_rgb.dcm", "SC_rgb_rle.dcm"),
    ("SC_rgb_16bit_2frame.dcm", "SC_rgb_rle_16bit_2frame.dcm"),
    ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),          # palette colour
])
def test_lossless_encodings_agree(original, encoded):
    paths = {}
    for name in (original, encoded):
        found = [p.values[0] for p in ALL_FILES if p.values[0].name == name]
        if not found:
            pytest.skip(f"{name} not installed")
        paths[name] = found[0]
    np.testing.assert_array_equal(read_image(paths[original]).array,
                                  read_image(paths[encoded]).array)


def test_ct_small_known_values():
    image = read_image(PYDICOM_FILES / "CT_small.dcm")
    stored = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm").pixel_array
    assert (image.rescale_slope, image.rescale_intercept) == (1.0, -1024.0)
    np.testing.assert_array_equal(image.array, stored.astype(np.float32) - 1024.0)
    assert image.pixel_spacing == (0.661468, 0.661468)
    assert image.image_position == (-158.135803, -179.035797, -75.699997)
    assert image.instance_number == 1
    assert image.modality == "CT"


def test_raw_dataset_without_preamble_is_read():
    # OT-PAL-8-face.dcm is a palette image stored as a bare dataset (no preamble, no file meta).
    found = [p.values[0] for p in ALL_FILES if p.values[0].name == "OT-PAL-8-face.dcm"]
    if not found:
        pytest.skip("pydicom-data not installed")
    image = read_image(found[0])
    assert image.array.shape == (480, 640, 3)
    assert image.transfer_syntax_uid == ImplicitVRLittleEndian


# --- errors -----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as info:
        read_image(tmp_path / "IM-0001-0001.dcm")
    assert "IM-0001-0001.dcm" in str(info.value)
    with pytest.raises(DataError, match="file not found"):
        read_header(tmp_path / "IM-0001-0001.dcm")


def test_folder(tmp_path):
    with pytest.raises(DataError, match="folder"):
        read_image(tmp_path)


def test_text_file_renamed_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("patient notes, not an image\n" * 20)
    for reader in (read_image, read_header):
        with pytest.raises(DataError, match="not a DICOM file") as info:
            reader(path)
        assert str(path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_copy_of_a_real_file(tmp_path, keep):
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_truncated_pixel_data_says_so(tmp_path):
    data = (PYDICOM_FILES / "MR_small_implicit.dcm").read_bytes()  # Pixel Data is the last element
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_image(path)


def test_truncated_header(tmp_path):
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    path = tmp_path / "head.dcm"
    path.write_bytes(data[:300])
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_no_pixel_data_names_the_object():
    with pytest.raises(DataError, match="no pixel data.*RTSTRUCT"):
        read_image(PYDICOM_FILES / "rtstruct.dcm")
    header = read_header(PYDICOM_FILES / "rtstruct.dcm")  # the header alone is fine
    assert header.modality == "RTSTRUCT"


def test_transfer_syntax_without_decoder(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(PYDICOM_FILES / "MR_small_RLE.dcm")
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    path = tmp_path / "video.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError, match="MPEG2 Main Profile.*no pixel data decoder") as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert read_header(path).transfer_syntax_uid == MPEG2MPML


def test_decoder_plugin_missing_names_what_to_install(monkeypatch):
    # Simulate an environment without the JPEG 2000 plugins.
    fake = types.SimpleNamespace(is_available=False,
                                 missing_dependencies=["pylibjpeg - requires pylibjpeg-openjpeg"])
    monkeypatch.setattr(dicom, "get_decoder", lambda uid: fake)
    path = PYDICOM_FILES / "MR_small_jp2klossless.dcm"
    with pytest.raises(DataError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    assert "JPEG 2000" in message and JPEG2000Lossless in message
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in message
    assert "python-gdcm" in message


@pytest.mark.parametrize("name, marker", [
    ("MR_small_jpeg_ls_lossless.dcm", b"\xff\xd8"),          # JPEG start of image
    ("MR_small_jp2klossless.dcm", b"\xff\x4f\xff\x51"),      # J2K start of codestream + SIZ
])
def test_corrupt_compressed_data(tmp_path, name, marker):
    data = bytearray((PYDICOM_FILES / name).read_bytes())
    start = data.find(marker)
    assert start > 0
    data[start + 2:start + 40] = bytes(38)  # wipe the frame header
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="could not be decoded.*pylibjpeg") as info:
        read_image(path)
    assert str(path) in str(info.value)


# --- write_image ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, representation", [(np.uint16, 0), (np.int16, 1)])
def test_write_read_round_trip(tmp_path, dtype, representation):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    stored = rng.integers(info.min, info.max, size=(37, 53), endpoint=True).astype(dtype)
    path = tmp_path / "IM-0001-0001.dcm"
    sop_uid = write_image(path, stored, pixel_spacing=(0.7, 1.25), rescale_slope=2.5,
                          rescale_intercept=-1024.0, image_position=(-10.5, 20.25, 3.0),
                          slice_thickness=8.0, instance_number=7, description="test series")
    image = read_image(path)
    expected = (stored.astype(np.float64) * 2.5 - 1024.0).astype(np.float32)
    np.testing.assert_array_equal(image.array, expected)
    assert image.pixel_spacing == (0.7, 1.25)
    assert (image.rescale_slope, image.rescale_intercept) == (2.5, -1024.0)
    assert image.image_position == (-10.5, 20.25, 3.0)
    assert image.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert image.slice_thickness == 8.0
    assert image.instance_number == 7
    assert image.sop_instance_uid == sop_uid
    assert image.modality == "MR"
    assert image.photometric_interpretation == "MONOCHROME2"
    # A standard Part 10 file: pydicom reads it without force and sees the promised encoding.
    ds = pydicom.dcmread(path)
    assert ds.preamble == b"\x00" * 128
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == sop_uid
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, representation)
    assert ds.SeriesDescription == "test series"
    np.testing.assert_array_equal(ds.pixel_array, stored)


def test_write_series_shares_uids(tmp_path):
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for k in range(2):
        write_image(tmp_path / f"{k}.dcm", np.zeros((4, 4), np.int16), study_instance_uid=study,
                    series_instance_uid=series, instance_number=k + 1, modality="CT")
    a, b = (pydicom.dcmread(tmp_path / f"{k}.dcm") for k in range(2))
    assert a.StudyInstanceUID == b.StudyInstanceUID == study
    assert a.SeriesInstanceUID == b.SeriesInstanceUID == series
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.SOPClassUID == pydicom.uid.CTImageStorage


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "slice.dcm"
    path.write_bytes(b"old")
    write_image(path, np.ones((3, 3), np.uint16))
    assert read_image(path).array.sum() == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slice.dcm"]


@pytest.mark.parametrize("array, words", [
    (np.zeros((4, 4), np.float32), "uint16 or int16"),
    (np.zeros((4, 4), np.uint8), "uint16 or int16"),
    (np.zeros((4, 4), np.int32), "uint16 or int16"),
    (np.zeros((2, 4, 4), np.int16), "2D"),
    (np.zeros((0, 4), np.int16), "2D"),
])
def test_write_rejects_bad_arrays(tmp_path, array, words):
    with pytest.raises(ConfigError, match=words):
        write_image(tmp_path / "x.dcm", array)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, words", [
    ({"pixel_spacing": (1.0,)}, "pixel_spacing"),
    ({"pixel_spacing": (0.0, 1.0)}, "pixel_spacing must be positive"),
    ({"rescale_slope": float("nan")}, "rescale_slope"),
    ({"rescale_slope": 0}, "rescale_slope must not be 0"),
    ({"image_position": (0, 0)}, "image_position"),
    ({"image_orientation": (1, 0, 0)}, "image_orientation"),
    ({"slice_thickness": -1}, "slice_thickness"),
    ({"modality": ""}, "modality"),
    ({"instance_number": 1.5}, "instance_number"),
    ({"series_instance_uid": "not a uid"}, "series_instance_uid"),
])
def test_write_rejects_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        write_image(tmp_path / "x.dcm", np.zeros((4, 4), np.int16), **kwargs)


def test_write_creates_folders_and_reports_failures(tmp_path):
    write_image(tmp_path / "case" / "x.dcm", np.zeros((4, 4), np.int16))
    assert read_image(tmp_path / "case" / "x.dcm").array.shape == (4, 4)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match="cannot write") as info:
        write_image(tmp_path / "a_file" / "x.dcm", np.zeros((4, 4), np.int16))
    assert "a_file" in str(info.value)


def test_write_warns_when_a_value_is_rounded(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tfseg.io.dicom"):
        write_image(tmp_path / "x.dcm", np.zeros((4, 4), np.int16), rescale_slope=1 / 3)
    assert "rescale_slope" in caplog.text
    assert read_header(tmp_path / "x.dcm").rescale_slope == pytest.approx(1 / 3, rel=1e-12)
