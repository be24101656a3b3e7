"""2D slices from 3D BraTS volumes in three planes, kept by tumour/brain area and de-duplicated.

**Planes.** tfseg holds a volume in memory as `(D, H, W, C)` with D = NIfTI axis k, H = j and
W = i (see `tfseg.io.nifti`). For BraTS files (and any axial scan close to RAS/LPS) k runs
inferior-superior, j anterior-posterior and i left-right, so::

    axial    = volume[k]        -> (H, W, C)   one k (z) value
    coronal  = volume[:, k]     -> (D, W, C)   one j (y) value
    sagittal = volume[:, :, k]  -> (D, H, C)   one i (x) value

Slices are returned as stored, without flips or resizing (the image rows of a coronal or
sagittal slice run along D, inferior to superior for a RAS/LPS file).

**Area ratio.** The brain is every pixel where some channel is non-zero (BraTS volumes are
skull-stripped, exactly 0 outside the brain); the tumour is every pixel with a label > 0. A
slice is kept when tumour area / brain area (`brain_mask_array`) is above `min_ratio` (0 when there is no brain).

**Near-duplicates.** Two slices `a`, `b` differ by the normalized mean absolute difference
`sum|a - b| / (sum|a| + sum|b|)` over all pixels and channels: 0 for identical slices, 1 for
slices with no overlap of non-zero pixels, unchanged when both are scaled alike. Going through
a plane in index order, a slice whose difference to the last *kept* slice of that plane is
below `dedupe` is dropped, so a run of almost identical slices keeps its first one.

Example:
    >>> import numpy as np
    >>> volume = np.ones((4, 6, 8, 2), np.float32)
    >>> label = np.zeros((4, 6, 8), np.uint8)
    >>> label[1:3, 2:4, 2:4] = 1
    >>> [(s.plane, s.index, s.image.shape) for s in extract_slices(volume, label, planes=("axial",))]
    [('axial', 1, (6, 8, 2))]
"""
import dataclasses
import logging
import os
from typing import Optional

import numpy as np

from tfseg.data.transforms.intensity import brain_mask_array
from tfseg.datasets.brats import MODALITIES, parse_name
from tfseg.errors import ConfigError, DataError
from tfseg.io.nifti import read_nifti
from tfseg.utils.checks import distinct_choices
from tfseg.utils.problems import ProblemLog, check_policy

logger = logging.getLogger(__name__)

__all__ = ["PLANES", "Slice", "tumour_brain_ratio", "slice_difference", "plane_slice",
           "extract_slices", "read_case", "check_channels", "slices_from_cases", "single_series_slices"]

#: Plane name -> the memory axis of `(D, H, W[, C])` that a slice of that plane fixes.
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}


@dataclasses.dataclass(frozen=True, eq=False)
class Slice:
    """One 2D slice of a volume.

    Attributes:
        plane: "axial", "coronal" or "sagittal".
        index: the slice's index along the plane's memory axis (see `PLANES`).
        image: `(h, w, C)` array.
        label: `(h, w)` array.
        case_id: the case the slice comes from, where known (set by `slices_from_cases`).
    """

    plane: str
    index: int
    image: np.ndarray
    label: np.ndarray
    case_id: Optional[str] = None


def tumour_brain_ratio(mask2d, brain2d):
    """Tumour area over brain area of a slice: `count(mask2d > 0) / count(brain2d)`, 0 without brain.

    Args:
        mask2d: `(H, W)` tumour mask or label map (non-zero = tumour).
        brain2d: `(H, W)` brain mask (non-zero = brain).

    Returns:
        A float.

    Example:
        >>> tumour_brain_ratio(np.array([[1, 0, 0, 0]]), np.array([[1, 1, 0, 0]]))
        0.5
    """
    mask2d, brain2d = np.asarray(mask2d), np.asarray(brain2d)
    if mask2d.shape != brain2d.shape or mask2d.ndim != 2:
        raise ConfigError(f"mask2d and brain2d must be 2D of one shape, got {mask2d.shape} and {brain2d.shape}")
    brain = int(np.count_nonzero(brain2d))
    return float(np.count_nonzero(mask2d)) / brain if brain else 0.0


def slice_difference(a, b):
    """Normalized mean absolute difference `sum|a - b| / (sum|a| + sum|b|)`, in [0, 1]; 0 for two empty slices.

    Example:
        >>> slice_difference(np.array([1.0, 1.0]), np.array([1.0, 0.0]))
        0.3333333333333333
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    total = np.abs(a).sum() + np.abs(b).sum()
    return float(np.abs(a - b).sum() / total) if total > 0 else 0.0


def plane_slice(array, plane, index):
    """Slice `index` of `plane` from a `(D, H, W[, C])` array (see the module docstring).

    Example:
        >>> plane_slice(np.zeros((4, 5, 6)), "coronal", 2).shape
        (4, 6)
    """
    if plane not in PLANES:
        raise ConfigError(f"plane must be one of {tuple(PLANES)}, got {plane!r}")
    return np.take(array, index, axis=PLANES[plane])


def _check_planes(planes):
    return distinct_choices(planes, tuple(PLANES), "planes")


def _check_fraction(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return value


def extract_slices(volume, label, planes=("axial", "coronal", "sagittal"), min_ratio=0.01, dedupe=0.02):
    """The slices of a volume showing enough tumour, near-duplicates dropped.

    Args:
        volume: `(D, H, W, C)` array in tfseg's memory layout.
        label: `(D, H, W)` label map (tumour = label > 0).
        planes: which planes, in the order wanted: "axial" (`volume[k]`), "coronal"
            (`volume[:, k]`), "sagittal" (`volume[:, :, k]`).
        min_ratio: keep a slice when its tumour/brain area ratio is above this.
        dedupe: drop a slice whose normalized mean absolute difference (`slice_difference`) to
            the last kept slice of its plane is below this; 0 keeps every slice.

    Returns:
        A list of `Slice`, plane by plane in the order of `planes`, by increasing index inside
        a plane. Images and labels are views into `volume` and `label`.

    Raises:
        ConfigError: bad shapes or arguments.

    Example:
        >>> volume = np.ones((3, 4, 4, 1), np.float32)
        >>> label = np.ones((3, 4, 4), np.uint8)
        >>> [s.index for s in extract_slices(volume, label, planes="axial")]  # identical slices
        [0]
    """
    volume, label = np.asarray(volume), np.asarray(label)
    if volume.ndim != 4 or label.shape != volume.shape[:3]:
        raise ConfigError(f"volume must be (D, H, W, C) and label (D, H, W) of the same size, got "
                          f"{volume.shape} and {label.shape}")
    planes = _check_planes(planes)
    min_ratio = _check_fraction("min_ratio", min_ratio)
    dedupe = _check_fraction("dedupe", dedupe)
    brain = brain_mask_array(volume)
    tumour = label > 0
    kept = []
    for plane in planes:
        axis = PLANES[plane]
        other = tuple(a for a in range(3) if a != axis)
        tumour_area = np.count_nonzero(tumour, axis=other)
        brain_area = np.count_nonzero(brain, axis=other)
        ratios = np.divide(tumour_area, brain_area, out=np.zeros(len(brain_area)), where=brain_area > 0)
        last = None
        for index in np.flatnonzero(ratios > min_ratio):
            image = plane_slice(volume, plane, index)
            if last is not None and dedupe > 0 and slice_difference(image, last) < dedupe:
                continue
            kept.append(Slice(plane, int(index), image, plane_slice(label, plane, index)))
            last = image
    return kept


def check_channels(channels):
    """`channels` as a tuple of distinct modality names among `MODALITIES`, or ConfigError."""
    return distinct_choices(channels, MODALITIES, "channels")


def channel_paths(case, channels):
    """The image files of `case` for each of `channels`, matched by file name.

    Files are matched by their BraTS suffix (`tfseg.datasets.brats.parse_name`); a case whose
    file names carry no suffix but has one file per modality is taken in `MODALITIES` order.

    Raises:
        DataError: a modality has no file in the case.
    """
    by_key = {}
    for path in case.images:
        parsed = parse_name(os.path.basename(path))
        if parsed is not None:
            by_key.setdefault(parsed[1], path)
    if not by_key and len(case.images) == len(MODALITIES):
        by_key = dict(zip(MODALITIES, case.images))
    missing = [c for c in channels if c not in by_key]
    if missing:
        where = os.path.dirname(case.images[0]) if case.images else case.case_id
        raise DataError(where, f"case {case.case_id} has no {'/'.join(missing)} image among "
                               f"{[os.path.basename(p) for p in case.images]}")
    return [by_key[c] for c in channels]


def read_case(case, channels=("flair", "t1ce", "t2")):
    """Read one BraTS case: the chosen modalities stacked channels last, and the label map.

    Args:
        case: a `tfseg.datasets.brats.BratsCase` (`.case_id`, `.images`, `.label`).
        channels: modality names, in the channel order wanted.

    Returns:
        `(volume, label)`: float32 `(D, H, W, C)` and uint8 `(D, H, W)` in memory order.

    Raises:
        DataError: a file is missing or unreadable, not 3D, of another shape than the others,
            or the label is absent or holds values that are not whole numbers in 0..255.

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic import write_brats
        >>> case = write_brats(tempfile.mkdtemp(), num_cases=1, shape=(24, 24, 16)).cases[0]
        >>> volume, label = read_case(case)
        >>> volume.shape, label.shape, label.dtype
        ((16, 24, 24, 3), (16, 24, 24), dtype('uint8'))
    """
    channels = check_channels(channels)
    paths = channel_paths(case, channels)
    if case.label is None:
        raise DataError(paths[0], f"case {case.case_id} has no label file")
    arrays = []
    for path in paths:
        array = read_nifti(path).array
        if array.ndim != 3:
            raise DataError(path, f"has shape {array.shape}; a 3D volume is needed")
        if arrays and array.shape != arrays[0].shape:
            raise DataError(path, f"has shape {array.shape} but {paths[0]} has {arrays[0].shape} "
                                  f"(case {case.case_id})")
        arrays.append(array)
    label = read_nifti(case.label).array
    if label.shape != arrays[0].shape:
        raise DataError(case.label, f"has shape {label.shape} but {paths[0]} has {arrays[0].shape} "
                                    f"(case {case.case_id})")
    if label.dtype != np.uint8:
        if label.size and label.dtype.kind not in "biuf":
            raise DataError(case.label, f"label data type {label.dtype} is not numeric")
        low, high = (label.min(), label.max()) if label.size else (0, 0)
        if low < 0 or high > 255 or (label.dtype.kind == "f" and np.any(label != np.round(label))):
            raise DataError(case.label, f"label values from {low} to {high} are not whole numbers in 0..255")
        label = label.astype(np.uint8)
    volume = np.empty(arrays[0].shape + (len(arrays),), np.float32)
    for c, array in enumerate(arrays):
        volume[..., c] = array
    if not np.all(np.isfinite(volume)):
        raise DataError(paths[int(np.flatnonzero(~np.isfinite(volume).all(axis=(0, 1, 2)))[0])],
                        "holds NaN or infinite voxel values")
    return volume, label


def slices_from_cases(cases, channels=("flair", "t1ce", "t2"), planes=("axial", "coronal", "sagittal"),
                      min_ratio=0.01, dedupe=0.02, on_error="raise", problems=None):
    """Read BraTS cases one at a time and gather the slices `extract_slices` keeps from each.

    Each kept slice is copied out of its volume, so only one whole case is in memory at a time
    beside the slices gathered.

    Args:
        cases: iterable of `tfseg.datasets.brats.BratsCase`.
        channels: modality names stacked as channels, in order.
        planes, min_ratio, dedupe: as for `extract_slices`.
        on_error: "raise" (DataError at the first bad case) or "skip" (log it, leave it out).
        problems: optional `ProblemLog` that skipped cases are added to.

    Returns:
        A list of `Slice` with `case_id` set, case by case in the order of `cases`, then as
        `extract_slices` orders them.

    Raises:
        ConfigError: a bad argument.
        DataError: a bad case under on_error="raise".

    Example:
        >>> import tempfile
        >>> from tfseg.datasets.synthetic import write_brats
        >>> data = write_brats(tempfile.mkdtemp(), num_cases=1, shape=(32, 32, 24))
        >>> slices = slices_from_cases(data.cases, planes="axial")
        >>> len(slices) > 0, slices[0].case_id, slices[0].image.shape
        (True, 'BraTS2021_00000', (32, 32, 3))
    """
    check_policy(on_error)
    channels = check_channels(channels)
    planes = _check_planes(planes)
    _check_fraction("min_ratio", min_ratio)
    _check_fraction("dedupe", dedupe)
    log = ProblemLog(on_error)
    gathered = []
    try:
        for case in cases:
            try:
                volume, label = read_case(case, channels)
            except DataError as error:
                log.report_error(error)
                continue
            kept = extract_slices(volume, label, planes, min_ratio, dedupe)
            gathered += [dataclasses.replace(s, image=s.image.copy(), label=s.label.copy(), case_id=case.case_id)
                         for s in kept]
            logger.debug("%s: %d slices kept", case.case_id, len(kept))
    finally:
        if problems is not None:
            problems.extend(log)
    logger.info("%d slices kept from %d cases (%d skipped)", len(gathered),
                len({s.case_id for s in gathered}), len(log))
    return gathered


def single_series_slices(slices, rgb=True):
    """Split stacked-modality slices into one slice per modality (W5's stage 1 pools the MRI types).

    Each `(h, w, C)` slice becomes C slices of one series each, with the same label, plane, index
    and case; with `rgb` the single channel is repeated 3 times (a grayscale image fed to an RGB
    encoder, as the workflow feeds any one series to its segmenter).

    Args:
        slices: a list of `Slice` (e.g. from `slices_from_cases` with several channels).
        rgb: repeat each series' channel to 3 identical channels.

    Returns:
        A list of `Slice`, `C` per input slice, modality-major within each input slice.

    Example:
        >>> s = Slice("axial", 3, np.stack([np.zeros((2, 2)), np.ones((2, 2))], -1), np.zeros((2, 2), np.uint8))
        >>> pooled = single_series_slices([s])
        >>> len(pooled), pooled[1].image.shape, float(pooled[1].image.min())
        (2, (2, 2, 3), 1.0)
    """
    pooled = []
    for item in slices:
        for c in range(item.image.shape[-1]):
            channel = item.image[..., c:c + 1]
            image = np.repeat(channel, 3, axis=-1) if rgb else channel.copy()
            pooled.append(dataclasses.replace(item, image=image))
    return pooled
