"""DICOM images in and out, as float32 numpy arrays with the geometry needed downstream.

Reading goes through pydicom and its pixel data plugins, so every transfer syntax pydicom can
decode with the installed plugins (pylibjpeg with libjpeg, openjpeg and rle; python-gdcm if
present) is supported: uncompressed, deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS,
JPEG 2000 and HTJ2K. The values are exactly pydicom's:

- grayscale: `pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)` (a Modality LUT Sequence if
  present, else RescaleSlope/RescaleIntercept when both are present, else the stored values),
  as float32;
- YBR colour: converted to RGB as `ds.pixel_array` does by default; PALETTE COLOR: mapped to RGB
  through `pydicom.pixels.apply_color_lut`; RGB: as stored. Colour arrays end in an axis of 3;
- MONOCHROME1 images are not inverted (that is a display step); `photometric_interpretation`
  says which one a file uses.

Files without the DICOM preamble (raw datasets, as some old scanners write) are read too, as
long as they parse as a DICOM image or object; anything else, and every problem on the way (file
missing, not DICOM, no pixel data, a transfer syntax no installed plugin decodes, truncated or
corrupt pixel data), is a `DataError` naming the file and what to do.

A series of single-frame slices (a folder or a list of files) is read as one volume by
`read_series`, sorted along the slice normal, checked, and placed with a NIfTI RAS+ affine in the
memory layout of `tfseg.io.nifti` (`(D, H, W)` = slice, row, column); `list_series` lists the
series of a folder.

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "IM-0001-0001.dcm"
    >>> stored = np.arange(12, dtype=np.int16).reshape(3, 4)
    >>> _ = write_image(path, stored, pixel_spacing=(1.25, 1.25), rescale_slope=2.0,
    ...                 rescale_intercept=-10.0)
    >>> image = read_image(path)
    >>> image.array[0]
    array([-10.,  -8.,  -6.,  -4.], dtype=float32)
    >>> image.pixel_spacing, image.modality
    ((1.25, 1.25), 'MR')
"""
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from tfseg.errors import ConfigError, DataError, shorten
from tfseg.io.volume import Volume
from tfseg.utils.atomic import atomic_path
from tfseg.utils.problems import ProblemLog

logger = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_STORAGE_BY_MODALITY = {"MR": MRImageStorage, "CT": CTImageStorage}
_ALL_PLUGINS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"
_GDCM = "pip install python-gdcm"


@dataclasses.dataclass
class DicomImage:
    """One DICOM image (or its header only) with the metadata segmentation pipelines need.

    Attributes:
        array: float32 pixel values after the modality LUT/rescale: `(rows, cols)` for a
            single-frame grayscale image, `(frames, rows, cols)` for a multi-frame one, with a
            trailing axis of 3 for colour (RGB). None when only the header was read.
        path: the file read.
        pixel_spacing: `(row_mm, col_mm)`, the spacing between rows and between columns, or None.
        slice_thickness: in mm, or None.
        image_position: ImagePositionPatient `(x, y, z)` of the first pixel (of the first frame
            for multi-frame files), or None.
        image_orientation: ImageOrientationPatient, 6 direction cosines, or None.
        rescale_slope: the slope applied (1.0 when no rescale was applied).
        rescale_intercept: the intercept applied (0.0 when no rescale was applied).
        modality: e.g. "MR", "CT", or None.
        transfer_syntax_uid: the file's transfer syntax UID.
        series_instance_uid: or None.
        sop_instance_uid: or None.
        instance_number: or None.
        photometric_interpretation: as stored in the file (e.g. "MONOCHROME2", "YBR_FULL_422"),
            or None. Colour arrays are RGB whatever this says.
    """

    array: np.ndarray | None
    path: str
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    image_position: tuple[float, float, float] | None = None
    image_orientation: tuple[float, ...] | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    modality: str | None = None
    transfer_syntax_uid: str = ""
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    instance_number: int | None = None
    photometric_interpretation: str | None = None


def read_image(path):
    """Read a DICOM image as float32 values after the modality LUT/rescale, with its metadata.

    Args:
        path: a DICOM file holding pixel data (any transfer syntax pydicom and the installed
            plugins decode).

    Returns:
        A `DicomImage` whose `array` is float32, `(rows, cols)`, `(frames, rows, cols)`, or with a
        trailing RGB axis of 3 for colour images.

    Raises:
        DataError: the file is missing, not DICOM, holds no pixel data, uses a transfer syntax
            no installed plugin can decode, or its pixel data are truncated or corrupt.

    Example:
        >>> from pathlib import Path
        >>> import pydicom
        >>> image = read_image(Path(pydicom.__file__).parent / "data/test_files/CT_small.dcm")
        >>> image.array.shape, image.array.dtype, image.rescale_intercept
        ((128, 128), dtype('float32'), -1024.0)
    """
    ds = read_dataset(path, stop_before_pixels=False)
    header = _header(ds, path)
    header.array = _decode(ds, path, header.transfer_syntax_uid)
    return header


def read_header(path):
    """Read the metadata of a DICOM file without its pixel data (a cheap scan of a folder).

    Args:
        path: a DICOM file (image or not).

    Returns:
        A `DicomImage` with `array=None`.

    Raises:
        DataError: the file is missing or not DICOM.

    Example:
        >>> from pathlib import Path
        >>> import pydicom
        >>> header = read_header(Path(pydicom.__file__).parent / "data/test_files/MR_small.dcm")
        >>> header.array is None, header.modality, header.pixel_spacing
        (True, 'MR', (0.3125, 0.3125))
    """
    ds = read_dataset(path, stop_before_pixels=True)
    return _header(ds, path)


def new_dataset(sop_class_uid, sop_instance_uid):
    """An empty DICOM dataset of one SOP class and instance, with explicit-VR little-endian file meta.

    Example:
        >>> from pydicom.uid import generate_uid
        >>> ds = new_dataset("1.2.840.10008.5.1.4.1.1.481.3", generate_uid())
        >>> ds.file_meta.TransferSyntaxUID, ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID
        ('1.2.840.10008.1.2.1', True)
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def write_image(path, array, pixel_spacing=(1.0, 1.0), rescale_slope=1.0, rescale_intercept=0.0,
                modality="MR", patient_id="ANON", study_instance_uid=None,
                series_instance_uid=None, series_number=1, instance_number=1,
                image_position=(0.0, 0.0, 0.0), image_orientation=(1, 0, 0, 0, 1, 0),
                slice_thickness=None, description=None):
    """Write a single-frame 16-bit grayscale DICOM file, atomically.

    The file is a standard Part 10 file (preamble, file meta, Explicit VR Little Endian),
    MONOCHROME2 with BitsAllocated 16; PixelRepresentation follows the dtype (uint16 -> 0,
    int16 -> 1). The SOP class is MR Image Storage for "MR", CT Image Storage for "CT" and
    Secondary Capture Image Storage otherwise. It is written to a temporary file in the same
    folder and renamed over `path`, so readers never see a half-written file. Reading it back
    with `read_image` gives `array * rescale_slope + rescale_intercept` (computed in float64, as
    float32). Slope, intercept, spacing and positions are stored as DICOM decimal strings of at
    most 16 characters; a value that does not fit exactly is rounded and a warning is logged.

    Pass the same `study_instance_uid` and `series_instance_uid` to every slice of one series
    (new UIDs are generated when they are None). The Frame of Reference UID is derived from the
    series UID, so the slices of a series share it.

    Args:
        path: the output file (missing parent folders are created).
        array: 2D `(rows, cols)` array of dtype uint16 or int16 (stored values).
        pixel_spacing: `(row_mm, col_mm)`.
        rescale_slope, rescale_intercept: the linear map from stored values to output units.
        modality: the Modality code, e.g. "MR" or "CT".
        patient_id: PatientID (also used as PatientName).
        study_instance_uid, series_instance_uid: UIDs, or None to generate new ones.
        series_number, instance_number: integers.
        image_position: ImagePositionPatient `(x, y, z)` in mm.
        image_orientation: ImageOrientationPatient, 6 direction cosines.
        slice_thickness: in mm, or None to leave it empty.
        description: SeriesDescription, or None.

    Returns:
        The SOPInstanceUID of the new image (a str).

    Raises:
        ConfigError: an argument is invalid (the message names it).
        DataError: the file cannot be written.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "slice.dcm"
        >>> uid = write_image(path, np.zeros((4, 4), np.uint16), modality="CT",
        ...                   rescale_intercept=-1024.0)
        >>> float(read_image(path).array.max())
        -1024.0
    """
    array = _check_array(array)
    spacing = _check_floats("pixel_spacing", pixel_spacing, 2, positive=True)
    slope = _check_floats("rescale_slope", [rescale_slope], 1)[0]
    if slope == 0.0:
        raise ConfigError("rescale_slope must not be 0")
    intercept = _check_floats("rescale_intercept", [rescale_intercept], 1)[0]
    position = _check_floats("image_position", image_position, 3)
    orientation = _check_floats("image_orientation", image_orientation, 6)
    thickness = None
    if slice_thickness is not None:
        thickness = _check_floats("slice_thickness", [slice_thickness], 1, positive=True)[0]
    if not isinstance(modality, str) or not modality or len(modality) > 16:
        raise ConfigError(f"modality must be a DICOM Modality code such as 'MR' or 'CT', "
                          f"got {modality!r}")
    modality = modality.upper()
    series_number = _check_int("series_number", series_number)
    instance_number = _check_int("instance_number", instance_number)
    study_uid = _check_uid("study_instance_uid", study_instance_uid) or generate_uid()
    series_uid = _check_uid("series_instance_uid", series_instance_uid) or generate_uid()
    sop_uid = generate_uid()
    sop_class = _STORAGE_BY_MODALITY.get(modality, SecondaryCaptureImageStorage)

    ds = new_dataset(sop_class, sop_uid)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    # Patient and study (type 2 elements are present, possibly empty).
    ds.PatientName = str(patient_id)
    ds.PatientID = str(patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    # Series, frame of reference, equipment.
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    if description is not None:
        ds.SeriesDescription = str(description)
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid, "frame-of-reference"])
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = ""
    # Image and plane.
    ds.InstanceNumber = instance_number
    ds.PixelSpacing = [_ds_value("pixel_spacing", v) for v in spacing]
    ds.ImagePositionPatient = [_ds_value("image_position", v) for v in position]
    ds.ImageOrientationPatient = [_ds_value("image_orientation", v) for v in orientation]
    ds.SliceThickness = "" if thickness is None else _ds_value("slice_thickness", thickness)
    ds.RescaleIntercept = _ds_value("rescale_intercept", intercept)
    ds.RescaleSlope = _ds_value("rescale_slope", slope)
    if modality == "MR":
        ds.ScanningSequence = "RM"  # research mode: the acquisition is not known here
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = ""
        ds.EchoTime = ""
        ds.EchoTrainLength = ""
    elif modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = ""
        ds.AcquisitionNumber = ""
    else:
        ds.ConversionType = "WSD"  # workstation
    ds.set_pixel_data(array, photometric_interpretation="MONOCHROME2", bits_stored=16,
                      generate_instance_uid=False)
    atomic_write_dataset(path, ds)
    return str(sop_uid)


def read_dataset(path, stop_before_pixels):
    """pydicom's dataset for `path`, or a DataError saying why there is none."""
    where = Path(path)
    if not where.exists():
        raise DataError(path, "file not found")
    if where.is_dir():
        raise DataError(path, "is a folder, not a DICOM file")
    try:
        ds = pydicom.dcmread(where, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        ds = None  # no 'DICM' preamble: maybe a raw dataset, tried below
    except PermissionError:
        raise DataError(path, "permission denied") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise DataError(path, f"damaged DICOM file, cannot be parsed ({_describe(exc)})") from None
    if ds is not None:
        if len(ds) == 0:
            raise DataError(path, "no data element could be read: the file is truncated or damaged")
        return ds
    not_dicom = ("not a DICOM file (no 'DICM' marker at byte 128, and the content does not parse "
                 "as a DICOM dataset)")
    try:
        ds = pydicom.dcmread(where, stop_before_pixels=stop_before_pixels, force=True)
    except Exception:
        raise DataError(path, not_dicom) from None
    # A forced read accepts any bytes; keep it only when it holds what a DICOM object must.
    if "SOPClassUID" not in ds and not ("Rows" in ds and "Columns" in ds):
        raise DataError(path, not_dicom)
    logger.debug("%s: no DICOM preamble, read as a raw dataset", path)
    return ds


def _transfer_syntax(ds):
    """The dataset's transfer syntax; for a raw dataset without file meta, the one it was read in."""
    meta = getattr(ds, "file_meta", None)
    try:
        uid = meta.get("TransferSyntaxUID") if meta is not None else None
    except Exception:  # a damaged file meta element
        uid = None
    if uid:
        return UID(uid if isinstance(uid, str) else str(uid))
    implicit, little = ds.original_encoding
    if implicit is None:
        return None
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _decode(ds, path, syntax):
    """The pixel array of `ds` as float32 (modality LUT/rescale or palette applied)."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise DataError(path, _no_pixel_data_reason(ds))
    if not syntax:
        raise DataError(path, "no Transfer Syntax UID in the file meta, the pixel data cannot be "
                              "interpreted")
    syntax = UID(syntax)
    if "PixelData" in ds:
        reason = _missing_decoder_reason(syntax)
        if reason:
            raise DataError(path, reason)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", ()):
        # A raw dataset: tell pydicom the encoding it was read with.
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    try:
        pixels = ds.pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # decoders raise many types on damaged data; Rust ones panic
        raise DataError(path, _pixel_failure_reason(syntax, exc)) from None
    try:
        if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
            values = apply_color_lut(pixels, ds)
        elif ds.get("SamplesPerPixel", 1) == 1:
            values = apply_modality_lut(pixels, ds)
        else:
            values = pixels
    except Exception as exc:
        raise DataError(path, f"cannot apply the modality/palette lookup table ({_describe(exc)})"
                        ) from None
    return np.asarray(values, dtype=np.float32)


def _missing_decoder_reason(syntax):
    """Why pixel data in `syntax` cannot be decoded here (what to install), or "" if they can."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return (f"transfer syntax {_syntax_name(syntax)} has no pixel data decoder in pydicom; "
                f"convert the file to an uncompressed transfer syntax first (e.g. `gdcmconv --raw "
                f"in.dcm out.dcm` or dcmtk's `dcmdjpeg`/`dcmdjp2k`)")
    if decoder.is_available:
        return ""
    missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
    return (f"transfer syntax {_syntax_name(syntax)} needs a decoder plugin that is not installed "
            f"({missing}); install one with `{_install_hint(syntax)}`")


def _install_hint(syntax):
    """The pip command that brings a decoder for `syntax`."""
    name = syntax.name.upper()
    if "2000" in name or "HTJ2K" in name or "HIGH-THROUGHPUT" in name:
        return f"pip install pylibjpeg pylibjpeg-openjpeg` or `{_GDCM}"
    if "JPEG" in name:
        return f"pip install pylibjpeg pylibjpeg-libjpeg` or `{_GDCM}"
    if "RLE" in name:
        return "pip install pylibjpeg pylibjpeg-rle"
    return f"{_ALL_PLUGINS}` or `{_GDCM}"


def _pixel_failure_reason(syntax, exc):
    """A user-facing reason for a failure of `ds.pixel_array`."""
    text = _describe(exc)
    if "less than expected" in text or "truncat" in text.lower():
        return f"pixel data are truncated or the image size elements are wrong ({text})"
    if syntax.is_compressed:
        return (f"the {_syntax_name(syntax)} pixel data could not be decoded: the data may be "
                f"corrupt or need another decoder (try `{_GDCM}`) ({text})")
    return f"pixel data could not be read ({text})"


def _header(ds, path):
    """The metadata fields of a DicomImage from a dataset (array left None)."""
    syntax = _transfer_syntax(ds)
    slope, intercept = 1.0, 0.0
    grayscale = (_number(ds, "SamplesPerPixel", path, int) in (None, 1)
                 and _text(ds, "PhotometricInterpretation") != "PALETTE COLOR")
    # The values read_image applies: rescale only for grayscale without a Modality LUT Sequence.
    if (grayscale and "RescaleSlope" in ds and "RescaleIntercept" in ds
            and not _first_item(ds, "ModalityLUTSequence")):
        slope = _required_number(ds, "RescaleSlope", path, nonzero=True)
        intercept = _required_number(ds, "RescaleIntercept", path)
        if slope is None or intercept is None:
            slope, intercept = 1.0, 0.0
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    first_frame = _first_item(ds, "PerFrameFunctionalGroupsSequence")
    measures = _first_item(shared, "PixelMeasuresSequence")
    plane = _first_item(shared, "PlaneOrientationSequence")
    position = _first_item(first_frame, "PlanePositionSequence")
    _check_spacing_value(ds, path, measures)
    pixel_spacing = _floats(ds, "PixelSpacing", 2, path, fallback=measures)
    return DicomImage(
        array=None,
        path=str(path),
        pixel_spacing=pixel_spacing,
        slice_thickness=_number(ds, "SliceThickness", path, float, fallback=measures),
        image_position=_floats(ds, "ImagePositionPatient", 3, path, fallback=position),
        image_orientation=_floats(ds, "ImageOrientationPatient", 6, path, fallback=plane),
        rescale_slope=slope,
        rescale_intercept=intercept,
        modality=_text(ds, "Modality"),
        transfer_syntax_uid=str(syntax) if syntax else "",
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        instance_number=_number(ds, "InstanceNumber", path, int),
        photometric_interpretation=_text(ds, "PhotometricInterpretation"),
    )


def _first_item(ds, keyword):
    """The first item of a sequence element, or None."""
    if ds is None:
        return None
    try:
        items = ds.get(keyword)
        return items[0] if items else None
    except Exception:  # a malformed sequence is only metadata we do without
        return None


def _value(ds, keyword, fallback):
    """The value of `keyword` in `ds`, else in `fallback`, else None (empty counts as missing)."""
    for source in (ds, fallback):
        if source is not None and keyword in source:
            value = source[keyword].value
            if value not in (None, "", b""):
                return value
    return None


def _number(ds, keyword, path, kind, fallback=None):
    """One number (int or float) or None; a malformed value is logged and read as None."""
    try:
        value = _value(ds, keyword, fallback)
        if value is None:
            return None
        number = kind(value)
        if kind is float and not math.isfinite(number):
            raise ValueError(f"{number} is not finite")
        return number
    except Exception as exc:
        logger.warning("%s: ignoring malformed %s (%s)", path, keyword, _describe(exc))
        return None


def _required_number(ds, keyword, path, nonzero=False):
    """A number that must be finite (and non-zero) when it is present: None when absent or empty.

    Raises:
        DataError: naming the file and the element, for NaN, infinity, or zero when `nonzero`.
    """
    try:
        value = _value(ds, keyword, None)
    except Exception:
        value = None
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        logger.warning("%s: ignoring malformed %s (%s)", path, keyword, shorten(repr(value)))
        return None
    if not math.isfinite(number) or (nonzero and number == 0.0):
        consequence = "NaN or infinite" if not math.isfinite(number) else "all the same"
        raise DataError(path, f"{keyword} is {shorten(repr(value))}, the pixel values would be {consequence}; "
                              f"it must be a finite{' non-zero' if nonzero else ''} number")
    return number


def _check_spacing_value(ds, path, fallback):
    """Raise a DataError when PixelSpacing is present but NaN, infinite or negative.

    Zero is kept: some projection radiographs store 0 for "not known" (a series refuses it).
    """
    try:
        value = _value(ds, "PixelSpacing", fallback)
        items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") else list(value)
        numbers = [float(v) for v in items]
    except Exception:
        return  # absent or unparseable: logged by _floats, read as unknown
    if not all(math.isfinite(v) and v >= 0 for v in numbers):
        raise DataError(path, f"PixelSpacing {shorten(numbers)} must be positive finite numbers (mm)")


def _floats(ds, keyword, count, path, fallback=None):
    """A tuple of `count` floats, or None; a malformed value is logged and read as None."""
    try:
        value = _value(ds, keyword, fallback)
        if value is None:
            return None
        single = isinstance(value, (str, bytes)) or not hasattr(value, "__len__")
        items = [value] if single else value
        numbers = tuple(float(v) for v in items)
        if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"expected {count} finite numbers, got {list(numbers)}")
        return numbers
    except Exception as exc:
        logger.warning("%s: ignoring malformed %s (%s)", path, keyword, _describe(exc))
        return None


def _text(ds, keyword):
    """A text element as str, or None when absent or empty."""
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value in (None, ""):
        return None
    return str(value).strip() or None


def _no_pixel_data_reason(ds):
    """Why a dataset without pixel data is not an image, in words: its SOP class and modality."""
    meta = getattr(ds, "file_meta", None) or {}
    try:
        sop_class = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
        name = UID(str(sop_class)).name if sop_class else "unknown SOP class"
    except Exception:  # a damaged element: an unknown VR, a value that is not a UID
        name = "unknown SOP class"
    modality = _text(ds, "Modality")
    if "Image" in name:
        return (f"no pixel data: this {name} file has no Pixel Data element (a header-only file, "
                f"or one truncated before its pixel data)")
    kind = f"{modality} object" if modality else "DICOM object"
    return f"no pixel data: this is a {kind} ({name}), not an image"


def _syntax_name(syntax):
    """'Name (uid)' for a transfer syntax, or just the UID when pydicom does not know it."""
    return f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else str(syntax)


def _describe(exc):
    """An exception's type and message on one line (pydicom lists each plugin's failure on its
    own line; those are kept), for error reasons."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = "; ".join(lines)
    if len(text) > 400:
        text = text[:397] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_array(array):
    """The pixel array for write_image: 2D uint16 or int16, else ConfigError."""
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ConfigError(f"array must be a non-empty 2D (rows, cols) image, "
                          f"got shape {array.shape}")
    if array.dtype.kind not in "ui" or array.dtype.itemsize != 2:
        raise ConfigError(f"array must have dtype uint16 or int16 (stored values), got "
                          f"{array.dtype}; convert it first, e.g. np.round(x).astype(np.int16)")
    if max(array.shape) > 65535:
        raise ConfigError(f"array of shape {array.shape} is too large for DICOM (65535 at most)")
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))


def _check_floats(name, values, count, positive=False):
    """`values` as a list of `count` finite floats (positive if asked), else ConfigError."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {count} number(s), got {values!r}") from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{name} must be {count} finite number(s), got {values!r}")
    if positive and not all(v > 0 for v in numbers):
        raise ConfigError(f"{name} must be positive, got {values!r}")
    return numbers


def _check_int(name, value):
    """An int for an IS element, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not -2**31 <= int(value) < 2**31:
        raise ConfigError(f"{name} must fit in 32 bits, got {value!r}")
    return int(value)


def _check_uid(name, value):
    """A valid UID string, None, or ConfigError."""
    if value is None:
        return None
    uid = UID(str(value))
    if not uid.is_valid:
        raise ConfigError(f"{name} is not a valid DICOM UID (digits and dots, at most 64 "
                          f"characters): {value!r}")
    return uid


def _ds_value(name, value):
    """`value` as a DICOM decimal string (16 characters at most), warning when it is rounded."""
    text = format_number_as_ds(float(value))
    if float(text) != float(value):
        logger.warning("%s %r does not fit a 16-character DICOM decimal string; stored as %s",
                       name, value, text)
    return text


def atomic_write_dataset(path, ds):
    """Write `ds` as a DICOM file to `path` atomically (temporary file beside it, fsync, rename)."""
    try:
        with atomic_path(path) as tmp:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    except OSError as exc:
        raise DataError(path, f"cannot write: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# Series: many single-frame slices -> one volume in the NIfTI convention of tfseg.io.nifti.
# ---------------------------------------------------------------------------------------------

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_COSINE_TOLERANCE = 1e-3
_SPACING_TOLERANCE = 1e-3


@dataclasses.dataclass
class SeriesInfo:
    """One series found in a folder: its UID, description, number and files (unsorted)."""

    series_instance_uid: str
    description: str | None
    series_number: int | None
    modality: str | None
    files: list

    def __str__(self):
        number = "" if self.series_number is None else f"#{self.series_number} "
        description = self.description or "no description"
        return (f"{number}{self.series_instance_uid} ({self.modality or '?'}, {description!r}, "
                f"{len(self.files)} file(s))")


@dataclasses.dataclass
class _Slice:
    """What the series reader needs from one file's header."""

    header: DicomImage
    rows: int
    cols: int
    frames: int
    samples: int
    bits: int | None
    signed: bool
    modality_lut: bool
    description: str | None
    series_number: int | None


def list_series(source, on_error="raise"):
    """Group the DICOM images of a folder (or list of files) by SeriesInstanceUID.

    Only headers are read. In a folder, hidden files, DICOMDIR, files that are not DICOM and
    DICOM objects that are not images (RTSTRUCT, reports) are passed over with a log line;
    a damaged DICOM file, a multi-frame file, or an image without SeriesInstanceUID or plane
    geometry follows `on_error`. Explicitly listed files all follow `on_error`.

    Args:
        source: a folder (searched recursively) or a list of files.
        on_error: "raise" or "skip" (log a warning and leave the file out).

    Returns:
        A list of `SeriesInfo`, in order of series number then UID.

    Raises:
        DataError: `source` is missing or holds no DICOM image, or a bad file under "raise".

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for k in range(3):
        ...     _ = write_image(folder / f"{k}.dcm", np.zeros((4, 4), np.int16), series_number=1,
        ...                     series_instance_uid="1.2.3", image_position=(0, 0, k),
        ...                     description="t1")
        >>> [(s.series_instance_uid, s.description, len(s.files)) for s in list_series(folder)]
        [('1.2.3', 't1', 3)]
    """
    return list(_scan(source, ProblemLog(on_error)).values())


def read_series(source, series_instance_uid=None, on_error="raise", slice_tolerance=0.05):
    """Read a DICOM series as one volume `(D, H, W)` with its NIfTI (RAS+) affine.

    Slices are ordered by the projection of ImagePositionPatient on the slice normal (the cross
    product of the ImageOrientationPatient row and column cosines), never by file name or
    InstanceNumber. Memory axes: D = slice index along the normal, H = image rows, W = image
    columns, so the NIfTI voxel `(i, j, k)` is `(column, row, slice)`, as in `tfseg.io.nifti`.
    The affine maps voxel `(i, j, k)` to RAS+ mm: its columns are the DICOM row cosine times the
    column spacing, the column cosine times the row spacing, and the step between consecutive
    slice positions (which also covers a gantry tilt), with ImagePositionPatient of the first
    slice as origin; the first two rows are negated, DICOM being LPS.

    Each slice's rescale (or modality LUT) is applied as `read_image` does. When every slice has
    an identity rescale, the volume keeps the stored integer type (uint8/int8/uint16/int16);
    otherwise it is float32.

    Args:
        source: a folder (all files in it, recursively) or a list of files.
        series_instance_uid: the series to read when `source` holds several; None when it holds
            exactly one.
        on_error: what to do with a bad single file: "raise", or "skip" (warn and leave it out;
            a slice missing from the middle of the series is then reported as a gap).
        slice_tolerance: how far (as a fraction of the slice gap) a slice position may be off
            the evenly spaced line through the first and last slices.

    Returns:
        A `Volume` (header None) whose `meta` holds "series_instance_uid", "description",
        "modality", "files" (in slice order) and "problems" (the files skipped).

    Raises:
        DataError: no series, several series and no UID (the message lists them), a UID not
            found, slices that disagree (orientation, size, pixel spacing), duplicate slice
            positions, uneven slice gaps (a missing slice), a colour series, or a bad file under
            "raise"; the message names the file at fault.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for k, z in enumerate([10.0, 12.5, 15.0]):
        ...     _ = write_image(folder / f"IM{k}.dcm", np.full((2, 3), k, np.int16),
        ...                     series_instance_uid="1.2.3", image_position=(-5, -6, z),
        ...                     pixel_spacing=(0.5, 0.75))
        >>> volume = read_series(folder)
        >>> volume.shape, volume.array.dtype, volume.spacing
        ((3, 2, 3), dtype('int16'), (2.5, 0.5, 0.75))
        >>> volume.world((2, 0, 0)).tolist()   # RAS: x and y of the DICOM position negated
        [5.0, 6.0, 15.0]
    """
    problems = ProblemLog(on_error)
    if not (isinstance(slice_tolerance, (int, float)) and 0 < slice_tolerance < 1):
        raise ConfigError(f"slice_tolerance must be a fraction between 0 and 1, "
                          f"got {slice_tolerance!r}")
    chosen = choose_series(source, series_instance_uid, problems)
    where = source if isinstance(source, (str, Path)) else "DICOM files"
    slices = [chosen.slices[path] for path in chosen.files]
    try:
        slices, affine = arrange_slices(slices, slice_tolerance)
    except DataError as exc:
        _blame_skipped(exc, problems)
    arrays, kept, left_out = [], [], {}
    for index, item in enumerate(slices):
        try:
            image = read_image(item.header.path)
            if image.array.shape != (item.rows, item.cols):
                raise DataError(item.header.path, f"pixel array of shape {image.array.shape}, "
                                                  f"expected ({item.rows}, {item.cols})")
        except DataError as exc:
            problems.report_error(exc)
            left_out[index] = exc.reason
            continue
        arrays.append(image.array)
        kept.append(item)
    if not kept:
        raise DataError(where, "no slice of the series could be read")
    if left_out:
        kept, affine = _without_ends(slices, kept, left_out, slice_tolerance)
    volume = np.stack(arrays, axis=0)
    volume = _stored_type(volume, kept)
    files = [item.header.path for item in kept]
    logger.info("read series %s: %d slices of %dx%d, %s", chosen.series_instance_uid,
                len(kept), kept[0].rows, kept[0].cols, volume.dtype)
    if len(problems):
        logger.warning("series %s: read as %d slices, %d file(s) left out as unreadable (meta['problems']); "
                       "any that were slices at the ends of the series are missing from the volume",
                       chosen.series_instance_uid, len(kept), len(problems))
    meta = {"series_instance_uid": chosen.series_instance_uid, "description": chosen.description,
            "modality": chosen.modality, "files": files,
            "problems": [str(p) for p in problems.problems],
            "left_out": [slices[index].header.path for index in sorted(left_out)]}
    path = str(source) if isinstance(source, (str, Path)) else str(Path(files[0]).parent)
    return Volume(volume, affine, header=None, path=path, meta=meta)


def series_geometry(source, series_instance_uid=None, slice_tolerance=0.05):
    """The grid of a DICOM series from its headers alone: what `read_series` would place, unread.

    Same selection, sorting and checks as `read_series` (which see), without decoding pixels.

    Args:
        source: a folder (recursive) or a list of files.
        series_instance_uid: the series when `source` holds several.
        slice_tolerance: as in `read_series`.

    Returns:
        `(affine, shape, files)`: the NIfTI RAS+ affine `read_series` gives the volume, its memory
        shape `(D, H, W)`, and the files in slice order.

    Raises:
        DataError: as `read_series` for the headers (no series, several series and no UID,
            inconsistent slices).

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for k in range(3):
        ...     _ = write_image(folder / f"IM{k}.dcm", np.zeros((2, 3), np.int16),
        ...                     series_instance_uid="1.2.3", image_position=(0, 0, 2.0 * k))
        >>> affine, shape, files = series_geometry(folder)
        >>> shape, bool(np.allclose(affine, read_series(folder).affine))
        ((3, 2, 3), True)
    """
    chosen = choose_series(source, series_instance_uid, ProblemLog("raise"))
    slices, affine = arrange_slices([chosen.slices[path] for path in chosen.files], slice_tolerance)
    shape = (len(slices), slices[0].rows, slices[0].cols)
    return affine, shape, [item.header.path for item in slices]


def _blame_skipped(error, problems):
    """Re-raise a geometry error of a series with the files skipped as unreadable named first.

    A slice whose header could not be read leaves a gap that shows as uneven spacing between its
    neighbours; the file at fault is the unreadable one.
    """
    if not len(problems) or not ("uneven slice spacing" in error.reason or "off the line" in error.reason):
        raise error
    skipped = [p.path for p in problems.problems]
    reason = "; ".join(str(p.reason) for p in problems.problems[:3])
    raise DataError(skipped[0], f"unreadable ({shorten(reason, 200)}), left out of the series, which is then not "
                                f"whole: {error}" + (f" (also left out: {', '.join(skipped[1:5])})"
                                                    if len(skipped) > 1 else "")) from None


def _without_ends(slices, kept, left_out, tolerance):
    """The arranged series without the slices that failed to read, which may only be end slices.

    A slice missing from the middle would leave a gap: refused with a DataError naming it. Slices
    missing at the ends make a shorter volume, which is logged as a warning naming them.

    Args:
        slices: the arranged slices.
        kept: those that were read.
        left_out: `{index in slices: reason}` of those that were not.
        tolerance: as `read_series`'s slice_tolerance.
    """
    remaining = [index for index in range(len(slices)) if index not in left_out]
    first, last = remaining[0], remaining[-1]
    inner = [index for index in left_out if first < index < last]
    if inner:
        index = inner[0]
        before = max(i for i in remaining if i < index)
        after = min(i for i in remaining if i > index)
        raise DataError(slices[index].header.path,
                        f"this slice cannot be read ({left_out[index]}); "
                        f"without it the series has a gap between {slices[before].header.path} and "
                        f"{slices[after].header.path}")
    logger.warning("series shorter than its files: %d of %d slices read, left out at the ends: %s",
                   len(kept), len(slices), ", ".join(slices[index].header.path for index in left_out))
    return arrange_slices(kept, tolerance)


def choose_series(source, series_instance_uid, problems):
    """The `_Series` of `source` to read: the one with `series_instance_uid`, else the only one."""
    series = _scan(source, problems)
    where = source if isinstance(source, (str, Path)) else "DICOM files"
    if series_instance_uid is not None:
        chosen = series.get(str(series_instance_uid).strip())
        if chosen is None:
            raise DataError(where, f"no series with SeriesInstanceUID {series_instance_uid}; "
                                   f"found: {_series_list(series)}")
        return chosen
    if len(series) > 1:
        raise DataError(where, f"holds {len(series)} series; pass the SeriesInstanceUID of the "
                               f"one to read: {_series_list(series)}")
    return next(iter(series.values()))


@dataclasses.dataclass
class _Series(SeriesInfo):
    slices: dict = dataclasses.field(default_factory=dict)


def _scan(source, problems):
    """{series uid: _Series} for the images of `source` (headers only), bad files reported."""
    from_folder = isinstance(source, (str, Path))
    if from_folder:
        folder = Path(source)
        if not folder.exists():
            raise DataError(source, "folder not found")
        if not folder.is_dir():
            raise DataError(source, "is not a folder; pass a folder or a list of DICOM files")
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts))
    else:
        try:
            paths = [Path(p) for p in source]
        except TypeError:
            raise ConfigError(f"source must be a folder or a list of files, got {source!r}"
                              ) from None
    series = {}
    for path in paths:
        if from_folder and path.name.upper() == "DICOMDIR":
            continue
        item = _scan_file(path, problems, from_folder)
        if item is None:
            continue
        uid = item.header.series_instance_uid
        entry = series.get(uid)
        if entry is None:
            entry = series[uid] = _Series(uid, item.description, item.series_number,
                                          item.header.modality, [])
        entry.files.append(item.header.path)
        entry.slices[item.header.path] = item
    if not series:
        where = source if from_folder else "DICOM files"
        raise DataError(where, "no DICOM image series found" + (
            f" ({len(problems)} file(s) skipped)" if len(problems) else ""))
    return dict(sorted(series.items(), key=lambda kv: (kv[1].series_number is None,
                                                       kv[1].series_number or 0, kv[0])))


def _scan_file(path, problems, from_folder):
    """The `_Slice` of one file, or None (not an image in a folder scan, or reported bad)."""
    try:
        ds = read_dataset(path, stop_before_pixels=True)
    except DataError as exc:
        if from_folder and not pydicom.misc.is_dicom(path) and not _named_like_dicom(path):
            logger.info("%s: not DICOM, passed over", path)
            return None
        problems.report_error(exc)
        return None
    if "Rows" not in ds or "Columns" not in ds:
        if from_folder and not _image_class(ds):
            logger.info("%s: not an image (%s), passed over", path, _text(ds, "Modality") or "?")
            return None
        problems.report(path, "not an image: no Rows/Columns")
        return None
    try:
        header = _header(ds, path)
    except DataError as exc:
        problems.report_error(exc)
        return None
    missing = [name for name, value in (("SeriesInstanceUID", header.series_instance_uid),
                                        ("ImagePositionPatient", header.image_position),
                                        ("ImageOrientationPatient", header.image_orientation),
                                        ("PixelSpacing", header.pixel_spacing)) if value is None]
    if missing:
        problems.report(path, f"missing or malformed {', '.join(missing)}: the slice cannot be "
                              f"placed in a series")
        return None
    if not all(v > 0 for v in header.pixel_spacing):
        problems.report(path, f"PixelSpacing {list(header.pixel_spacing)} must be positive to place the slice "
                              f"in a volume")
        return None
    frames = _number(ds, "NumberOfFrames", path, int) or 1
    if frames > 1:
        problems.report(path, f"multi-frame file ({frames} frames); a series is read from "
                              f"single-frame slices, read this file with read_image")
        return None
    rows, cols = _number(ds, "Rows", path, int), _number(ds, "Columns", path, int)
    if not rows or not cols:
        problems.report(path, "missing or zero Rows/Columns")
        return None
    return _Slice(header=header, rows=rows, cols=cols, frames=frames,
                  samples=_number(ds, "SamplesPerPixel", path, int) or 1,
                  bits=_number(ds, "BitsAllocated", path, int),
                  signed=_number(ds, "PixelRepresentation", path, int) == 1,
                  modality_lut=_first_item(ds, "ModalityLUTSequence") is not None,
                  description=_text(ds, "SeriesDescription"),
                  series_number=_number(ds, "SeriesNumber", path, int))


#: File name endings of DICOM slices; a file named so that does not parse is a damaged slice.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")


def _named_like_dicom(path):
    """True for a file that should have been a DICOM slice: a DICOM suffix, or no suffix or a numeric
    one (names made of UIDs or counters) on a file that is not plain text (README, LICENSE)."""
    suffix = Path(path).suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix and not suffix[1:].isdigit():
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return "\x00" in text


def _image_class(ds):
    """True when the dataset's SOP class is an image storage class (so it must have Rows/Columns)."""
    try:
        sop_class = ds.get("SOPClassUID")
        return bool(sop_class) and "Image Storage" in UID(str(sop_class)).name
    except Exception:
        return False


def _series_list(series):
    return "; ".join(str(s) for s in series.values())


def arrange_slices(slices, tolerance):
    """Slices sorted along their normal, checked, and the RAS affine of the stack."""
    first = slices[0]
    orientation = np.array(first.header.image_orientation, dtype=np.float64)
    spacing = np.array(first.header.pixel_spacing, dtype=np.float64)
    for item in slices[1:]:
        path = item.header.path
        if not np.allclose(item.header.image_orientation, orientation, atol=_COSINE_TOLERANCE):
            raise DataError(path, f"ImageOrientationPatient {list(item.header.image_orientation)} "
                                  f"differs from {list(orientation)} in {first.header.path}")
        if (item.rows, item.cols) != (first.rows, first.cols):
            raise DataError(path, f"image size {item.rows}x{item.cols} differs from "
                                  f"{first.rows}x{first.cols} in {first.header.path}")
        if not np.allclose(item.header.pixel_spacing, spacing, rtol=_SPACING_TOLERANCE):
            raise DataError(path, f"PixelSpacing {list(item.header.pixel_spacing)} differs from "
                                  f"{list(spacing)} in {first.header.path}")
        if item.samples != 1:
            raise DataError(path, "colour image: a series volume is read from grayscale slices")
    if first.samples != 1:
        raise DataError(first.header.path, "colour image: a series volume is read from "
                                           "grayscale slices")
    row_cosine, col_cosine = orientation[:3], orientation[3:]
    if not (abs(np.linalg.norm(row_cosine) - 1) < 1e-2 and abs(np.linalg.norm(col_cosine) - 1)
            < 1e-2 and abs(row_cosine @ col_cosine) < 1e-2):
        raise DataError(first.header.path, f"ImageOrientationPatient {list(orientation)} is not "
                                           f"two orthogonal unit vectors")
    normal = np.cross(row_cosine, col_cosine)
    positions = np.array([item.header.image_position for item in slices], dtype=np.float64)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    if len(slices) == 1:
        thickness = first.header.slice_thickness or 1.0
        step = normal * thickness
        logger.info("%s: single-slice series, slice spacing taken as %g mm", first.header.path,
                    thickness)
    else:
        gaps = np.diff(along)
        for k, gap in enumerate(gaps):
            if gap < 1e-3:
                raise DataError(slices[k + 1].header.path,
                                f"same slice position ({along[k]:.4f} mm along the normal) as "
                                f"{slices[k].header.path}: duplicate slice (several acquisitions, "
                                f"echoes or time points in one series?)")
        usual = float(np.median(gaps))
        for k, gap in enumerate(gaps):
            if abs(gap - usual) > tolerance * usual:
                raise DataError(slices[k + 1].header.path,
                                f"uneven slice spacing: {gap:.4g} mm from the previous slice "
                                f"{slices[k].header.path}, while the series' usual gap is "
                                f"{usual:.4g} mm (a missing or extra slice?)")
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
        expected = positions[0] + np.arange(len(slices))[:, None] * step
        off = np.linalg.norm(positions - expected, axis=1)
        worst = int(np.argmax(off))
        if off[worst] > tolerance * np.linalg.norm(step):
            raise DataError(slices[worst].header.path,
                            f"ImagePositionPatient is {off[worst]:.4g} mm off the line through "
                            f"the first and last slices of the series")
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * spacing[1]  # i: along a row, one column per step
    lps[:3, 1] = col_cosine * spacing[0]  # j: down a column, one row per step
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return slices, _LPS_TO_RAS @ lps


def _stored_type(volume, slices):
    """The float32 stack as its stored integer type when no slice was rescaled, else as is."""
    if any(item.header.rescale_slope != 1.0 or item.header.rescale_intercept != 0.0
           or item.modality_lut for item in slices):
        return volume
    kinds = {(item.bits, item.signed) for item in slices}
    if len(kinds) != 1:
        return volume
    bits, signed = kinds.pop()
    if bits not in (8, 16):
        return volume  # float32 already holds 8/16-bit values exactly, not 32-bit ones
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    converted = volume.astype(dtype)
    return converted if np.array_equal(converted, volume) else volume
