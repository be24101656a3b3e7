"""Mutated real files through every public reader: only tfseg errors may escape.

The seeds are files no one here wrote (nibabel's and pydicom's test data), plus a small Sunnybrook-
style contour text and PNG/TIFF images. Each example applies a few mutations: byte flips (mostly in
the header), truncation, overwriting with extreme integers, inserted junk, and for NIfTI and DICOM
header fields set to extreme values through nibabel/pydicom. A reader may accept the file or raise a
`TfsegError`; anything else (a nibabel, numpy, pydicom or decoder exception, a Rust panic) fails.
The budget is fixed (`max_examples`, no deadline, derandomized) so the file runs in about a minute
on 2 cores; `TFSEG_FUZZ_SCALE=10` searches ten times longer with fresh random examples.
"""
import gzip
import io
import logging
import os
import pathlib
import tempfile
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tfseg.errors import TfsegError
from tfseg.io import contours, dicom, images, nifti
from tfseg.io.convert import convert_dicom_series

NIBABEL_DATA = pathlib.Path(nib.__file__).parent / "tests" / "data"
PYDICOM_DATA = pathlib.Path(pydicom.__file__).parent / "data" / "test_files"
# TFSEG_FUZZ_SCALE=10 runs ten times the examples, freshly randomized (a longer search than CI's).
_SCALE = float(os.environ.get("TFSEG_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=round(300 * _SCALE), deadline=None, derandomize=_SCALE == 1, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _examples(count):
    return round(count * _SCALE)

NIFTI_SEEDS = ["anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz"]
DICOM_SEEDS = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
               "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_rle.dcm", "rtstruct.dcm",
               "no_meta.dcm", "emri_small.dcm", "examples_palette.dcm"]
EXTREMES = [b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff", b"\x00\x00", b"\x7f\xff", b"\x00\x00\xc0\x7f"]


@pytest.fixture(autouse=True)
def quiet():
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.disable(logging.NOTSET)


@st.composite
def mutated(draw, data, header=512):
    """`data` with 1-6 mutations, positions biased towards the first `header` bytes."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        size = len(data)
        if size == 0:
            break
        where = draw(st.one_of(st.integers(0, min(size, header) - 1), st.integers(0, size - 1)))
        kind = draw(st.sampled_from(["flip", "truncate", "extreme", "insert"]))
        if kind == "flip":
            data[where] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[where:]
        elif kind == "extreme":
            value = draw(st.sampled_from(EXTREMES))
            data[where:where + len(value)] = value
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _escapes(reader, *args, **kwargs):
    """Run a reader; return the exception if one that is not a TfsegError escaped, else None."""
    try:
        reader(*args, **kwargs)
    except TfsegError:
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: B036 - a Rust panic is a BaseException
        return error
    return None


def _check(reader, path, *args, **kwargs):
    error = _escapes(reader, path, *args, **kwargs)
    assert error is None, f"{reader.__module__}.{reader.__name__}({path.name}) let {type(error).__name__} escape: {error}"


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as folder:
        yield pathlib.Path(folder)


# NIfTI -----------------------------------------------------------------------------------------

_NIFTI_FIELDS = ["dim", "datatype", "bitpix", "vox_offset", "pixdim", "scl_slope", "scl_inter", "qform_code",
                 "sform_code", "quatern_b", "srow_x", "sizeof_hdr", "magic", "intent_code"]
_NIFTI_VALUES = [0, -1, 1, 2, 7, 128, 2304, 32767, -32768, 2**31 - 1, float("nan"), float("inf"), 1e30]


def _nifti_plain(name):
    raw = (NIBABEL_DATA / name).read_bytes()
    return gzip.decompress(raw) if name.endswith(".gz") else raw


@st.composite
def nifti_cases(draw):
    name = draw(st.sampled_from(NIFTI_SEEDS))
    plain = _nifti_plain(name)
    if draw(st.booleans()):  # a header field set to an extreme value
        nifti2 = name == "example_nifti2.nii.gz"
        size = 540 if nifti2 else 348
        klass = nib.Nifti2Header if nifti2 else nib.Nifti1Header
        header = klass.from_fileobj(io.BytesIO(plain[:size]), check=False)
        field = draw(st.sampled_from(_NIFTI_FIELDS))
        value = draw(st.sampled_from(_NIFTI_VALUES))
        try:
            header[field][...] = value if field != "dim" else header[field]
            if field == "dim":
                header[field][draw(st.integers(0, 7))] = value
            elif field == "magic":
                header[field] = draw(st.sampled_from([b"n+1", b"ni1", b"n+2", b"xyz"]))
        except (ValueError, OverflowError, TypeError):
            pass
        plain = header.binaryblock + plain[size:]
    plain = draw(mutated(plain, header=600))
    if name.endswith(".gz"):
        raw = gzip.compress(plain, 1)
        if draw(st.booleans()):
            raw = draw(mutated(raw, header=64))
        return name, raw
    return name, plain


@FUZZ
@given(nifti_cases(), st.sampled_from([None, np.float32, np.int16]))
def test_read_nifti(workdir, case, dtype):
    name, raw = case
    path = workdir / name
    path.write_bytes(raw)
    _check(nifti.read_nifti, path, dtype=dtype)


@settings(FUZZ, max_examples=_examples(150))
@given(st.sampled_from(["scaled+tlrc.HEAD", "phantom_EPI_asc_CLEAR_2_1.PAR", "analyze.hdr", "test.mgz",
                        "tiny.mnc", "minc1_1_scale.mnc", "row_major.dconn.nii"]), st.data())
def test_read_nifti_other_formats(workdir, name, data):
    source = NIBABEL_DATA / name
    if not source.exists():
        return
    path = workdir / name
    path.write_bytes(data.draw(mutated(source.read_bytes())))
    _check(nifti.read_nifti, path)
    if not name.endswith(".nii"):  # the same bytes under a NIfTI name
        path = workdir / "renamed.nii"
        path.write_bytes(source.read_bytes())
        _check(nifti.read_nifti, path)


# DICOM -----------------------------------------------------------------------------------------

_DICOM_FIELDS = {
    "Rows": [0, 1, 65535], "Columns": [0, 3, 65535], "BitsAllocated": [0, 1, 7, 12, 64],
    "BitsStored": [0, 17, 64], "SamplesPerPixel": [0, 2, 3, 4], "NumberOfFrames": ["0", "-1", "99999", "x"],
    "PixelRepresentation": [2, 255], "PhotometricInterpretation": ["", "PALETTE COLOR", "YBR_FULL", "RGB", "X"],
    "RescaleSlope": ["NaN", "inf", "0", "1e308"], "RescaleIntercept": ["-inf", "NaN", "1e308"],
    "PixelSpacing": [["nan", "1"], ["0", "0"], ["-1", "1"], ["1"]], "ImagePositionPatient": [["inf", "0", "0"], ["1"]],
    "ImageOrientationPatient": [["0"] * 6, ["nan"] * 6, ["1", "0", "0", "1", "0", "0"]],
    "PlanarConfiguration": [1, 7], "SOPClassUID": ["1.2.3", "x" * 70], "SeriesInstanceUID": ["", "1." * 40],
}


@st.composite
def dicom_cases(draw):
    name = draw(st.sampled_from(DICOM_SEEDS))
    source = PYDICOM_DATA / name
    if not source.exists():
        return name, b""
    raw = source.read_bytes()
    if draw(st.booleans()):
        ds = pydicom.dcmread(source, force=True)
        keyword = draw(st.sampled_from(sorted(_DICOM_FIELDS)))
        value = draw(st.sampled_from(_DICOM_FIELDS[keyword]))
        buffer = io.BytesIO()
        try:
            setattr(ds, keyword, value)
            ds.save_as(buffer)
            raw = buffer.getvalue()
        except Exception:  # pydicom refused to write the value: keep the original bytes
            pass
        if draw(st.booleans()):
            return name, raw
    return name, draw(mutated(raw, header=1024))


@FUZZ
@given(dicom_cases(), st.booleans())
def test_read_dicom_image_and_header(workdir, case, header_only):
    name, raw = case
    path = workdir / name
    path.write_bytes(raw)
    _check(dicom.read_header if header_only else dicom.read_image, path)


@pytest.fixture(scope="module")
def series_seed(workdir):
    files = []
    for k in range(3):
        path = workdir / "seed" / f"IM-{k:04d}.dcm"
        dicom.write_image(path, np.full((6, 5), 100 * k, np.int16), series_instance_uid="1.2.826.0.1.3680043.8.498.5",
                          image_position=(0.0, 0.0, 2.5 * k), rescale_slope=1.5, rescale_intercept=-3.0)
        files.append(path.read_bytes())
    return files


@settings(FUZZ, max_examples=_examples(120))
@given(st.integers(0, 2), st.data(), st.sampled_from(["raise", "skip"]))
def test_read_series(workdir, series_seed, which, data, on_error):
    folder = workdir / "series"
    folder.mkdir(exist_ok=True)
    for k, raw in enumerate(series_seed):
        (folder / f"IM-{k:04d}.dcm").write_bytes(data.draw(mutated(raw, header=900)) if k == which else raw)
    for reader in (dicom.read_series, dicom.list_series):
        error = _escapes(reader, folder, on_error=on_error)
        assert error is None, f"{reader.__name__} let {type(error).__name__} escape: {error}"
    error = _escapes(convert_dicom_series, folder, workdir / "out.nii.gz", spacing=2.0, on_error=on_error)
    assert error is None, f"convert_dicom_series let {type(error).__name__} escape: {error}"


# Contours ---------------------------------------------------------------------------------------

_CONTOUR = "".join(f"{120 + 14 * np.cos(t):.2f} {98 + 11 * np.sin(t):.2f}\n"
                   for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)).encode()
_TOKENS = [b"1e13", b"-2e12", b"1e400", b"nan", b"-inf", b"9" * 400, b"1.2.3", b"\xff", b"\t", b"\r", b"0x10"]


@st.composite
def contour_cases(draw):
    text = draw(mutated(_CONTOUR, header=len(_CONTOUR)))
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(_TOKENS)) + text[cut:]
    return text


@settings(FUZZ, max_examples=_examples(400))
@given(contour_cases(), st.sampled_from([(256, 256), (4, 4), (1, 300)]))
def test_read_contour_and_rasterize(workdir, text, shape):
    path = workdir / "IM-0001-0048-icontour-manual.txt"
    path.write_bytes(text)
    try:
        points = contours.read_contour(path)
    except TfsegError as error:
        assert len(error.reason) < 300
        return
    assert points.shape[1] == 2 and np.isfinite(points).all()
    contours.polygon_to_mask(points, shape)  # what the reader returns is always rasterizable


# 2D images --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_seeds(workdir):
    gray = (np.arange(40 * 36) % 251).astype(np.uint8).reshape(40, 36)
    seeds = {}
    for name, write in (("gray.png", lambda p: Image.fromarray(gray).save(p)),
                        ("rgb.png", lambda p: Image.fromarray(np.stack([gray, 255 - gray, gray // 2], -1)).save(p)),
                        ("mask.png", lambda p: Image.fromarray((gray > 120).astype(np.uint8) * 255).save(p)),
                        ("gray16.tif", lambda p: tifffile.imwrite(p, gray.astype(np.uint16) * 200)),
                        ("rgb.tif", lambda p: tifffile.imwrite(p, np.stack([gray] * 3, -1), photometric="rgb")),
                        ("lzw.tif", lambda p: tifffile.imwrite(p, gray, compression="zlib"))):
        path = workdir / "img_seeds" / name
        path.parent.mkdir(exist_ok=True)
        write(path)
        seeds[name] = path.read_bytes()
    return seeds


@settings(FUZZ, max_examples=_examples(300))
@given(st.sampled_from(["gray.png", "rgb.png", "mask.png", "gray16.tif", "rgb.tif", "lzw.tif"]), st.data(),
       st.sampled_from(["image", "mask", "labels"]))
def test_read_image_and_mask(workdir, image_seeds, name, data, how):
    path = workdir / f"fuzzed{pathlib.Path(name).suffix}"
    path.write_bytes(data.draw(mutated(image_seeds[name], header=200)))
    if how == "image":
        _check(images.read_image, path)
    else:
        _check(images.read_mask, path, binary=how == "mask")


# The escapes the fuzzing found, kept as plain regression cases --------------------------------

def _rgb24_nifti(path):
    rgb = np.zeros((4, 3, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)


def _with_header(source, path, **fields):
    plain = _nifti_plain(source)
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(plain[:348]), check=False)
    for name, value in fields.items():
        header[name] = value
    path.write_bytes(header.binaryblock + plain[348:])


@pytest.mark.parametrize("case", ["rgb24_as_float", "negative_dim", "zero_dim", "datatype_0", "vox_offset_low",
                                  "par", "afni", "mgh"])
def test_found_escapes_are_data_errors(workdir, case):
    from tfseg.errors import DataError

    dtype = None
    if case == "rgb24_as_float":  # numpy DTypePromotionError before
        path = workdir / "rgb.nii"
        _rgb24_nifti(path)
        dtype = np.float32
    elif case in ("negative_dim", "zero_dim"):  # numpy ValueError before
        path = workdir / f"{case}.nii"
        _with_header("anatomical.nii", path, dim=[3, 33, -4 if case == "negative_dim" else 0, 22, 1, 1, 1, 1])
    elif case == "datatype_0":  # nibabel HeaderDataError before
        path = workdir / "datatype.nii"
        _with_header("anatomical.nii", path, datatype=0)
    elif case == "vox_offset_low":
        path = workdir / "offset.nii"
        _with_header("anatomical.nii", path, vox_offset=4)
    else:  # nibabel PARRECError / AFNIHeaderError / MGHError from damaged files of other formats before
        name = {"par": "phantom_EPI_asc_CLEAR_2_1.PAR", "afni": "scaled+tlrc.HEAD", "mgh": "test.mgz"}[case]
        path = workdir / name
        path.write_bytes((NIBABEL_DATA / name).read_bytes()[:200])
    with pytest.raises(DataError) as info:
        nifti.read_nifti(path, dtype=dtype)
    assert info.value.path == str(path)
    if case == "rgb24_as_float":
        np.testing.assert_array_equal(nifti.read_nifti(path).array["R"], np.zeros((2, 3, 4)))
