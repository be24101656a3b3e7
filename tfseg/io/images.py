"""2D image files in and out (TIFF, PNG, JPEG, BMP): pixel arrays and label masks, pure numpy.

Arrays are channels last: a grayscale file gives ``(H, W)``, a colour one ``(H, W, C)`` with
C = 2 (gray + alpha), 3 (RGB) or 4 (RGBA), in the dtype stored in the file (uint8, uint16,
int32 or float32). TIFF is read with `tifffile` (first image of the file; planar RGB is moved to
channels last), everything else with Pillow (palette images are expanded to RGB/RGBA).

Masks (`read_mask`) become uint8 label maps ``(H, W)``: a binary mask stored as 0/255, 0/1 or
0/65535 (or any 0/v) becomes {0, 1}; a colour mask whose channels are all equal is reduced to one.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> mask = np.zeros((4, 6), np.uint8)
    >>> mask[1:3, 2:5] = 255
    >>> write_png(os.path.join(folder, "mask.png"), mask)
    >>> int(read_image(os.path.join(folder, "mask.png")).max())
    255
    >>> int(read_mask(os.path.join(folder, "mask.png")).sum())
    6
"""
import logging
import math
import os

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from tfseg.errors import ConfigError, DataError
from tfseg.io.limits import DEFLATE_MAX_RATIO, check_volume_bytes
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_MAX_RATIO = 5000  # above deflate's 1032 and LZW's ~2700: a generous bound on compression
#: File name endings `read_image` accepts (case-insensitive).
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
_SUPPORTED = f"supported: {', '.join(IMAGE_SUFFIXES)} holding one 2D grayscale or colour image"

# Pillow modes -> the mode to convert to before reading pixels (None: read as is).
_PIL_MODES = {"1": "L", "L": None, "LA": None, "RGB": None, "RGBA": None, "I": None, "F": None,
              "I;16": None, "I;16B": "I", "I;16L": None, "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
              "HSV": "RGB"}


def _check_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(path, "file not found")
    if not os.path.isfile(path):
        raise DataError(path, "not a file (a folder?)")
    if os.path.getsize(path) == 0:
        raise DataError(path, "file is empty (0 bytes)")
    return path


def _read_tiff(path):
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise DataError(path, "TIFF file holds no image")
        series = tif.series[0]
        _check_tiff_size(path, series)
        array = series.asarray()
        axes = series.axes
    if len(tif.series) > 1:
        logger.debug("%s holds %d image series; reading the first", path, len(tif.series))
    if array.ndim == 3 and axes.endswith("YX") and axes[0] == "S":  # planar (separate) colour planes
        array = np.moveaxis(array, 0, -1)
    elif array.ndim == 3 and not axes.endswith("S"):
        raise DataError(path, f"TIFF holds {array.shape[0]} pages or planes (axes {axes!r}, shape {array.shape}); "
                              "expected one 2D image")
    return array


def _check_tiff_size(path, series):
    """Refuse, before allocating, a TIFF whose tags claim more pixels than the limit or its strips hold.

    Uncompressed strips must hold the pixels; compressed ones may inflate `_TIFF_MAX_RATIO` times at
    most. Strip byte counts are only counted as far as the file reaches.
    """
    n_bytes = math.prod(int(d) for d in series.shape) * np.dtype(series.dtype).itemsize
    check_volume_bytes(path, n_bytes)
    size = os.path.getsize(path)
    stored, compressed = 0, False
    for page in series.pages:
        if page is None:
            continue
        keyframe = getattr(page, "keyframe", None) or page
        compressed = compressed or int(keyframe.compression) != 1
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            stored += max(0, min(int(count), size - int(offset)))
    if stored and n_bytes > stored * (_TIFF_MAX_RATIO if compressed else 1) + 1024:
        raise DataError(path, f"cannot decode image data, truncated or corrupt file: its TIFF tags claim "
                              f"{n_bytes} bytes of pixels {tuple(series.shape)}, its "
                              f"{'compressed ' if compressed else ''}strips hold {stored} bytes")


def _check_pil_size(path, image):
    """Refuse, before decoding, an image larger than the limit, or a PNG its file cannot hold.

    A PNG's pixels are deflated: the file holds at least `1 / 1032` of them (at 1 bit per pixel,
    the least any PNG stores). Other formats rely on the limit and Pillow's own bomb check.
    """
    width, height = image.size
    check_volume_bytes(path, width * height * 4 * len(image.getbands()))
    if image.format == "PNG":
        least = height * (1 + (width + 7) // 8)
        size = os.path.getsize(path)
        if least > size * DEFLATE_MAX_RATIO + 1024:
            raise DataError(path, f"cannot decode image data, truncated or corrupt file: its header claims "
                                  f"{width}x{height} pixels, more than a PNG of {size} bytes can hold")


def _read_pil(path):
    with Image.open(path) as image:
        if getattr(image, "n_frames", 1) > 1:
            raise DataError(path, f"file holds {image.n_frames} frames; expected one 2D image")
        _check_pil_size(path, image)
        image.load()  # decode now, so that a truncated file fails here
        mode = image.mode
        if mode == "P":
            target = "RGBA" if "transparency" in image.info else "RGB"
        elif mode in _PIL_MODES:
            target = _PIL_MODES[mode]
        else:
            raise DataError(path, f"unsupported image mode {mode!r}")
        if target is not None:
            image = image.convert(target)
        array = np.asarray(image)
    if mode == "1":
        array = (array > 0).astype(np.uint8) * 255
    return array


def read_image(path):
    """Read a 2D image file into a numpy array in its stored dtype, channels last.

    Args:
        path: a ``.tif``/``.tiff`` (read by tifffile), ``.png``, ``.jpg``/``.jpeg`` or ``.bmp``
            file (read by Pillow), holding one grayscale or colour image.

    Returns:
        ``(H, W)`` for grayscale (a single trailing channel is dropped), ``(H, W, C)`` with
        C in 2..4 for gray+alpha, RGB or RGBA. 1-bit images give uint8 0/255.

    Raises:
        DataError: the file is missing, empty, truncated or unreadable, of an unsupported type,
            or holds several pages/frames or an array that is not one 2D image.

    Example:
        >>> import os, tempfile
        >>> import numpy as np, tifffile
        >>> path = os.path.join(tempfile.mkdtemp(), "slice_1.tif")
        >>> tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
        >>> image = read_image(path)
        >>> image.shape, image.dtype.name
        ((8, 8, 3), 'uint8')
    """
    path = _check_file(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(path, f"unsupported file type {suffix or '(no suffix)'!r}; {_SUPPORTED}")
    try:
        array = _read_tiff(path) if suffix in TIFF_SUFFIXES else _read_pil(path)
    except DataError:
        raise
    except (UnidentifiedImageError, tifffile.TiffFileError) as error:
        raise DataError(path, f"not a readable {suffix[1:].upper()} image ({error})") from None
    except Exception as error:  # truncated or corrupt data surfaces as OSError, ValueError, struct.error ...
        raise DataError(path, f"cannot decode image data, truncated or corrupt file? "
                              f"({type(error).__name__}: {error})") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] > 4):
        raise DataError(path, f"expected one 2D image (H, W) or (H, W, C<=4), got an array of shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(path, f"image has no pixels (shape {array.shape})")
    if array.dtype.kind not in "uif" and array.dtype != bool:
        raise DataError(path, f"unsupported pixel type {array.dtype}")
    return np.ascontiguousarray(array)


def _mask_channels(path, array):
    """Reduce a colour mask to one channel: alpha dropped when opaque, equal channels merged."""
    if array.ndim == 2:
        return array
    channels = array.shape[-1]
    if channels in (2, 4):  # drop an alpha channel that is the same everywhere
        alpha = array[..., -1]
        if alpha.min() != alpha.max():
            raise DataError(path, "mask has a transparency (alpha) channel that varies; expected a label image")
        array = array[..., :-1]
    if array.shape[-1] > 1 and not (array == array[..., :1]).all():
        raise DataError(path, f"mask has {array.shape[-1]} colour channels that differ; expected a grayscale "
                              "label image (or equal channels)")
    return array[..., 0]


def _describe(values, limit=6):
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return shown + (f" ... ({len(values)} values)" if len(values) > limit else "")


def read_mask(path, binary=True, threshold=None):
    """Read a segmentation mask file as a uint8 label map ``(H, W)``.

    Args:
        path: an image file `read_image` reads. Colour masks must have equal channels (an opaque
            alpha channel is ignored).
        binary: True (default): the mask must be binary, i.e. hold 0 and at most one other value
            (255, 1, 65535 ...), which becomes 1. False: integer labels 0..255 are kept as they are.
        threshold: only with ``binary=True``: pixels above this value become 1, the rest 0, whatever
            the values (for masks saved with lossy compression or interpolation).

    Returns:
        A uint8 ``(H, W)`` array: {0, 1} when binary, else the stored labels.

    Raises:
        DataError: the file is unreadable (see `read_image`), has differing colour channels, or
            holds values that do not fit (more than two values when binary without threshold,
            negative, fractional or above 255 labels otherwise).
        ConfigError: `threshold` given with ``binary=False``.

    Example:
        >>> import os, tempfile
        >>> import numpy as np, tifffile
        >>> path = os.path.join(tempfile.mkdtemp(), "slice_1_mask.tif")
        >>> tifffile.imwrite(path, np.array([[0, 255], [255, 0]], np.uint8))
        >>> read_mask(path).tolist()
        [[0, 1], [1, 0]]
    """
    if threshold is not None:
        if not binary:
            raise ConfigError("threshold applies to binary masks only; pass binary=True or drop threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
            raise ConfigError(f"threshold must be a number, got {threshold!r}")
    array = _mask_channels(os.fspath(path), read_image(path))
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(path, "mask holds NaN or infinite values")
    if binary:
        if threshold is not None:
            return (array > threshold).astype(np.uint8)
        values = np.unique(array)
        nonzero = values[values != 0]
        if len(nonzero) > 1:
            raise DataError(path, f"expected a binary mask (0 and one other value such as 255), found values "
                                  f"{_describe(values)}; pass threshold=... to binarize, or binary=False for labels")
        return (array != 0).astype(np.uint8)
    values = np.unique(array)
    if values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values)):
        raise DataError(path, f"expected integer labels in 0..255, found values {_describe(values)}")
    return array.astype(np.uint8)


def write_png(path, array):
    """Write a uint8 or uint16 array to a PNG file, atomically (temporary file, then rename).

    Args:
        path: the destination, ending in ``.png``; its folder is created if needed.
        array: uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA), or
            uint16 ``(H, W)``/``(H, W, 1)`` (16-bit grayscale).

    Raises:
        ConfigError: a path not ending in ``.png``, or an array of another dtype or shape.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "depth.png")
        >>> write_png(path, np.full((2, 3), 40000, np.uint16))
        >>> read_image(path).dtype.name, int(read_image(path)[0, 0])
        ('uint16', 40000)
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ConfigError(f"write_png needs a path ending in '.png', got {path!r}")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        mode = "L"
        if array.ndim != 2 and not (array.ndim == 3 and array.shape[-1] in (3, 4)):
            raise ConfigError(f"write_png needs a uint8 array (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    elif array.dtype == np.uint16:
        if array.ndim != 2:
            raise ConfigError(f"write_png writes uint16 as grayscale (H, W) only, got shape {array.shape}")
        mode = "I;16"
    else:
        raise ConfigError(f"write_png needs uint8 or uint16 pixels, got {array.dtype}; convert (e.g. scale and "
                          "astype(np.uint8)) first")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ConfigError(f"write_png got an empty image of shape {array.shape}")
    if mode == "I;16":
        image = Image.frombytes("I;16", (array.shape[1], array.shape[0]), array.astype("<u2").tobytes())
    else:
        image = Image.fromarray(np.ascontiguousarray(array))  # uint8 2D/3/4 channels: L/RGB/RGBA
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    logger.debug("wrote %s (%s %s)", path, array.dtype, array.shape)
