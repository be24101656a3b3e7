"""tf.data for 3D multi-modal volumes: BraTS cases to cropped, normalized, augmented batches.

The expensive part of a 3D input pipeline is not decompression but float work and copies on
whole volumes. This pipeline does the cheap work on small dtypes first:

1. **Check headers** (nibabel, headers only) before building the dataset: every file exists and
   is readable, is 3D, and the modalities and the label share one shape. A bad case is reported
   by file under `on_error` (see `tfseg.utils.problems`).
2. **Decode** each case in a `tf.numpy_function` (nibabel; zlib releases the GIL, so
   `num_parallel_reads` threads decode cases in parallel). Each modality stays a separate
   `(D, H, W)` array of its stored small dtype (int16 for BraTS: no float32 whole volume, no
   stacking copy), the label becomes uint8, and the per-channel non-zero mean/std are computed
   here with exact int64 sums over each whole int16 volume (no float copy of it).
3. **Crop first** (training): the random window is cut from each int16 modality and from the
   label, then stacked channels-last — only the crop is ever copied or converted.
4. **Flip** the int16 crop and the label (random mirror per axis).
5. **Normalize and augment in one pass** on the crop: `x * a_c + b_c` on non-zero voxels, 0
   elsewhere, which is exactly `zscore_nonzero` over the *whole* volume, then cropping, then
   `intensity_shift_scale(shift, scale, std=1)` (a channel z-scored over the whole volume has
   std 1), up to float32 rounding.
6. Targets: the three nested BraTS regions WT, TC, ET as float32 channels (`regions=True`) or the
   raw label map as int32.

Validation (`training=False`): no augmentation, no shuffling. With `crop_size=None` whole
volumes are returned unchanged (batch sizes above 1 need every case to have the same shape);
with a `crop_size` each volume is centre-cropped and/or zero-padded to exactly that size (e.g.
`(160, 240, 240)` pads BraTS' 155 slices to a multiple of 16 and keeps the full axial plane).

Errors: header problems (missing or unreadable file, not 3D, shapes that differ between the
modalities and the label, a missing label) are found before the dataset is built and reported
by path: `on_error="raise"` raises `DataError`, `"skip"` logs and leaves the case out. Corrupt
voxel data found later while decoding surfaces as a TensorFlow error whose message contains the
`DataError` text with the file name (`"raise"`), or is logged and the case dropped for that
epoch (`"skip"`, through `tf.data`'s `ignore_errors`).

`cache=True` keeps the decoded int16 volumes (and their statistics) in memory after the first
epoch — half the memory of float32, and crops are sliced from them without copying the volume.

Example:
    >>> import tempfile
    >>> from tfseg.datasets.synthetic import write_brats
    >>> data = write_brats(tempfile.mkdtemp(), num_cases=2, shape=(32, 32, 24))
    >>> ds = brats_dataset(data.cases, crop_size=(16, 16, 16), batch_size=2, seed=1)
    >>> image, target = next(iter(ds))
    >>> tuple(image.shape), tuple(target.shape), target.dtype.name
    ((2, 16, 16, 16, 4), (2, 16, 16, 16, 3), 'float32')
"""
import logging
import os

import nibabel as nib
import numpy as np
import tensorflow as tf

from tfseg.data.transforms.labels import brats_regions
from tfseg.data.transforms.volume import _check_probability, _check_size, _crop_one, crop_start, flip_axes, \
    flip_mask, intensity_parameters
from tfseg.utils.problems import ProblemLog, check_policy
from tfseg.errors import ConfigError, DataError
from tfseg.io.nifti import read_nifti

logger = logging.getLogger(__name__)

__all__ = ["brats_dataset", "check_cases", "decode_case", "nonzero_stats"]

_SMALL_INTS = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def nonzero_stats(array):
    """Mean and population std of the non-zero voxels of one channel, in float64.

    One pass for the count and two reductions (sum, sum of squares) over the whole volume; zeros
    add nothing to the sums, so no mask is built. Integer volumes are summed exactly in int64
    (int16 squares summed over 2**33 voxels still fit), floating ones in float64.

    Args:
        array: numpy volume of any shape and real dtype.

    Returns:
        `(mean, std)` as Python floats; `(0.0, 1.0)` for an all-zero volume, std 1 when all
        non-zero voxels are equal (as `tfseg.data.transforms.volume.nonzero_moments`).

    Example:
        >>> nonzero_stats(np.array([0, 2, 4], np.int16))
        (3.0, 1.0)
    """
    flat = np.ravel(array)
    count = int(np.count_nonzero(flat))
    if not count:
        return 0.0, 1.0
    exact = flat.dtype.kind in "iub" and flat.dtype.itemsize <= 2
    accumulator = np.int64 if exact else np.float64
    total = float(flat.sum(dtype=accumulator))
    square = float(np.einsum("i,i->", flat, flat, dtype=accumulator, casting="unsafe"))
    mean = total / count
    std = float(np.sqrt(max(square / count - mean * mean, 0.0)))
    return mean, (std if std > 0.0 else 1.0)


def _header(path):
    """The nibabel image of `path` (header only), or a DataError saying why not."""
    if not os.path.isfile(os.fspath(path)):
        raise DataError(path, "file not found")
    try:
        image = nib.load(os.fspath(path))
    except Exception as exc:  # nibabel raises many types for bad files
        raise DataError(path, f"cannot read the NIfTI header ({type(exc).__name__}: {exc})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(path, f"is a {type(image).__name__}, not a NIfTI volume")
    return image


def _is_small_int(image):
    """True when the voxels are stored as int8/uint8/int16 with no intensity scaling."""
    slope, inter = image.dataobj.slope, image.dataobj.inter
    unscaled = (slope is None or np.isnan(slope) or slope == 1) and (inter is None or np.isnan(inter) or inter == 0)
    return unscaled and image.get_data_dtype().newbyteorder("=") in _SMALL_INTS


def check_cases(cases, on_error="raise", problems=None):
    """Check the NIfTI headers of BraTS-like cases before decoding anything.

    Every image and the label must exist, be readable NIfTI, be 3D, and share one shape; every
    case must have a label and the same number of images as the first.

    Args:
        cases: sequence of records with `.case_id`, `.images` (paths) and `.label` (path or None),
            e.g. `tfseg.datasets.brats.BratsCase`.
        on_error: "raise" (DataError naming the file at the first problem) or "skip" (log it,
            leave the case out, keep it in `problems`).
        problems: optional `ProblemLog` to add skipped cases to.

    Returns:
        `(good_cases, shapes, small_int)`: the cases that passed (in order), their spatial shapes
        in memory order `(D, H, W)`, and whether every image is stored as int8/uint8/int16
        without scaling (then volumes are decoded as int16, else float32).
    """
    log = ProblemLog(on_error)
    good, shapes, small_int = [], [], True
    channels = None
    for case in cases:
        images = tuple(case.images)
        try:
            if channels is None:
                channels = len(images)
            if not images or len(images) != channels:
                raise DataError(images[0] if images else case.case_id,
                                f"case {case.case_id} has {len(images)} images, expected {channels}")
            if case.label is None:
                raise DataError(images[0], f"case {case.case_id} has no label file")
            headers = [_header(path) for path in images + (case.label,)]
            for path, header in zip(images + (case.label,), headers):
                if len(header.shape) != 3:
                    raise DataError(path, f"has shape {tuple(header.shape)}; a 3D volume is needed")
            reference = tuple(headers[0].shape)
            for path, header in zip(images[1:] + (case.label,), headers[1:]):
                if tuple(header.shape) != reference:
                    raise DataError(path, f"has shape {tuple(header.shape)} but {images[0]} has {reference} "
                                          f"(case {case.case_id})")
        except DataError as error:
            log.report_error(error)
            continue
        good.append(case)
        shapes.append(reference[::-1])
        small_int = small_int and all(_is_small_int(h) for h in headers[:-1])
    if problems is not None:
        problems.extend(log)
    return good, shapes, small_int


def decode_case(case, dtype=np.int16):
    """Read one case: its modalities as separate `(D, H, W)` arrays, the label, and the statistics.

    Args:
        case: a record with `.images` and `.label` paths.
        dtype: numpy dtype of the images (int16 when `check_cases` says they are small ints,
            else float32).

    Returns:
        `(images, label, mean, std)`: a list of `(D, H, W)` arrays of `dtype` (no copy when the
        file already stores that type), the label as uint8, and float32 `(C,)` non-zero means and
        stds of each whole image.

    Raises:
        DataError: a file cannot be read, or label values do not fit uint8.
    """
    images, mean, std = [], [], []
    for path in case.images:
        array = read_nifti(path).array
        array = array.astype(dtype, copy=False)
        m, s = nonzero_stats(array)
        images.append(array)
        mean.append(m)
        std.append(s)
    label = read_nifti(case.label).array
    if label.dtype != np.uint8:
        low, high = label.min(), label.max()
        if low < 0 or high > 255 or (label.dtype.kind == "f" and np.any(label != np.round(label))):
            raise DataError(case.label, f"label values from {low} to {high} are not whole numbers in 0..255")
        label = label.astype(np.uint8)
    return images, label, np.asarray(mean, np.float32), np.asarray(std, np.float32)


def _normalize_crop(image, mean, std, shift, scale):
    """`zscore` with whole-volume stats, then `x * scale + shift` (std 1), on non-zero voxels; float32."""
    x = tf.cast(image, tf.float32)
    a = scale / std
    b = shift - mean * a
    return tf.where(tf.not_equal(x, 0.0), x * a + b, tf.zeros_like(x))


def brats_dataset(cases, crop_size=(128, 128, 128), batch_size=1, training=True, seed=0,
                  foreground_probability=0.0, cache=False, num_parallel_reads=None, augment=True,
                  regions=True, deterministic=True, on_error="raise", problems=None, foreground_classes=None):
    """Build a tf.data pipeline of `(image, target)` batches from BraTS-like cases.

    Args:
        cases: records with `.case_id`, `.images` (the modality paths, e.g. t1, t1ce, t2, flair)
            and `.label` — `tfseg.datasets.brats.BratsCase` from `find_brats`.
        crop_size: `(D, H, W)` in memory order. Training: the random crop (volumes smaller on
            an axis are zero-padded, centred). Validation: a centre crop/pad to exactly this
            size, or None for whole volumes.
        batch_size: cases per batch.
        training: shuffle, crop at random and augment when True; fixed order otherwise.
        seed: seeds the shuffle, crops and augmentation (different every epoch, reproducible).
        foreground_probability: probability that a training crop is placed around a random
            tumour voxel (label > 0), else uniform.
        cache: keep the decoded int16 volumes in memory after the first epoch.
        num_parallel_reads: cases decoded at once (threads); None lets tf.data tune it.
        augment: when training, random flips per axis (p = 0.5) and per-channel intensity
            shift ±0.1 std and scale 0.9-1.1 on non-zero voxels (Myronenko 2018).
        regions: targets as float32 WT/TC/ET channels; False gives the label map as int32.
        deterministic: keep the element order of parallel maps (reproducible runs).
        on_error: "raise" or "skip" for bad cases (see the module docstring).
        problems: optional `ProblemLog` collecting the cases skipped at the header check.
        foreground_classes: label values that foreground crops are centred on in turn (BraTS
            `(1, 2, 4)`: each tumour class as often as the others), or None for any tumour voxel.

    Returns:
        A `tf.data.Dataset` of `(image float32 (B, D, H, W, C), target)` with target float32
        `(B, D, H, W, 3)` or int32 `(B, D, H, W)`.

    Raises:
        DataError: a bad case under on_error="raise", or no usable case at all.
        ConfigError: a bad argument.
    """
    check_policy(on_error)
    cases = list(cases)
    if not cases:
        raise ConfigError("cannot build a dataset from zero cases")
    if crop_size is None:
        if training:
            raise ConfigError("training needs a crop_size (D, H, W)")
    else:
        crop_size = _check_size(crop_size, "crop_size")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    foreground_probability = _check_probability(foreground_probability, "foreground_probability")
    if num_parallel_reads is not None and int(num_parallel_reads) < 1:
        raise ConfigError(f"num_parallel_reads must be >= 1 or None, got {num_parallel_reads!r}")
    parallel = tf.data.AUTOTUNE if num_parallel_reads is None else int(num_parallel_reads)

    good, shapes, small_int = check_cases(cases, on_error, problems)
    if not good:
        raise DataError(cases[0].images[0] if cases[0].images else cases[0].case_id,
                        f"none of the {len(cases)} cases is usable")
    if crop_size is None and batch_size > 1 and len(set(shapes)) > 1:
        raise ConfigError(f"whole volumes of different shapes {sorted(set(shapes))[:3]} cannot be batched; "
                          "use batch_size=1 or a crop_size")
    channels = len(good[0].images)
    raw_dtype = np.int16 if small_int else np.float32
    tf_raw = tf.as_dtype(raw_dtype)
    logger.info("3D dataset: %d cases (%d skipped), %d channels decoded as %s", len(good), len(cases) - len(good),
                channels, np.dtype(raw_dtype).name)

    def decode_py(index):
        images, label, mean, std = decode_case(good[int(index)], raw_dtype)
        return (*images, label, mean, std)

    def decode(index):
        out = tf.numpy_function(decode_py, [index], [tf_raw] * channels + [tf.uint8, tf.float32, tf.float32],
                                stateful=False, name="decode_case")
        for volume in out[:channels + 1]:
            volume.set_shape([None, None, None])
        for stat in out[channels + 1:]:
            stat.set_shape([channels])
        return tuple(out)

    def finish(image, label, mean, std, shift, scale):
        image = _normalize_crop(image, mean, std, shift, scale)
        target = brats_regions(label) if regions else tf.cast(label, tf.int32)
        return image, target

    zeros, ones = tf.zeros([channels]), tf.ones([channels])

    def train_map(decoded, seed_pair):
        volumes, label, mean, std = decoded[:channels], decoded[channels], decoded[channels + 1], decoded[-1]
        seeds = tf.random.experimental.stateless_split(tf.cast(seed_pair, tf.int64), 3)
        start = crop_start(tf.shape(label), crop_size, seeds[0], label, foreground_probability, foreground_classes)
        image = tf.stack([_crop_one(v, start, crop_size) for v in volumes], axis=-1)
        label = _crop_one(label, start, crop_size)
        shift, scale = zeros, ones
        if augment:
            image, label = flip_axes(image, label, flip_mask(seeds[1]))
            shift, scale = intensity_parameters(seeds[2], channels)
        return finish(image, label, mean, std, shift, scale)

    def eval_map(*decoded):
        volumes, label, mean, std = decoded[:channels], decoded[channels], decoded[channels + 1], decoded[-1]
        if crop_size is None:
            image = tf.stack(volumes, axis=-1)
        else:
            shape = tf.shape(label)
            size = tf.constant(crop_size, tf.int32)
            start = tf.where(shape >= size, (shape - size) // 2, -((size - shape) // 2))
            image = tf.stack([_crop_one(v, start, crop_size) for v in volumes], axis=-1)
            label = _crop_one(label, start, crop_size)
        return finish(image, label, mean, std, zeros, ones)

    options = dict(num_parallel_calls=parallel, deterministic=deterministic)
    dataset = tf.data.Dataset.range(len(good))
    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        if cache:
            dataset = dataset.map(decode, **options).cache()
            dataset = _skip_errors(dataset, on_error)
            dataset = dataset.shuffle(len(good), seed=seed, reshuffle_each_iteration=True)
            dataset = tf.data.Dataset.zip((dataset, seeds)).map(train_map, **options)
        else:
            # Shuffle indices (cheap), then decode + crop in one map: whole volumes live only
            # inside one call, never in a buffer.
            dataset = dataset.shuffle(len(good), seed=seed, reshuffle_each_iteration=True)
            dataset = tf.data.Dataset.zip((dataset, seeds))
            dataset = dataset.map(lambda index, pair: train_map(decode(index), pair), **options)
            dataset = _skip_errors(dataset, on_error)
    else:
        dataset = dataset.map(decode, **options)
        if cache:
            dataset = dataset.cache()
        dataset = _skip_errors(dataset, on_error)
        dataset = dataset.map(eval_map, **options)
    dataset = dataset.batch(batch_size)
    return dataset.prefetch(2)


def _skip_errors(dataset, on_error):
    """Under "skip", drop (and log) elements whose decoding failed; under "raise", let errors through."""
    if on_error == "skip":
        return dataset.ignore_errors(log_warning=True)
    return dataset
