"""Label-map transforms: BraTS labels <-> nested regions, label remapping, merging region masks.

Every public function accepts either a numpy array or a TensorFlow tensor and answers in kind: a
`tf.Tensor` (eager or inside `tf.data` / `tf.function`) gets TensorFlow ops, anything else gets
numpy. Channels last: region channels are the last axis.

BraTS labels: 0 background, 1 necrotic / non-enhancing tumor core, 2 peritumoral edema,
4 enhancing tumor. The evaluated targets are three nested regions (`REGION_NAMES`, in this order):

- WT, whole tumor = {1, 2, 4}
- TC, tumor core = {1, 4}
- ET, enhancing tumor = {4}

Going back from regions to labels (`regions_to_brats_labels`, `merge_region_masks`) follows the
hierarchy WT ⊇ TC ⊇ ET with the **inner region winning**: label = 2 where WT, overwritten by 1
where TC, overwritten by 4 where ET. A prediction that breaks the nesting is read as if each
region also contained the regions inside it: ET without WT becomes 4 (tumor), TC without WT
becomes 1. So labels -> regions -> labels is the identity, and regions -> labels -> regions gives
the nested closure (WT ∪ TC ∪ ET, TC ∪ ET, ET) of the input.

Example:
    >>> import numpy as np
    >>> label = np.array([0, 1, 2, 4])
    >>> brats_regions(label).astype(int).tolist()
    [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]]
    >>> regions_to_brats_labels(brats_regions(label)).tolist()
    [0, 1, 2, 4]
"""
import numpy as np
import tensorflow as tf

from tfseg.errors import ConfigError, DataError

REGION_NAMES = ("WT", "TC", "ET")
BRATS_LABELS = (0, 1, 2, 4)
# Labels making up each region, in REGION_NAMES order.
REGION_LABELS = ((1, 2, 4), (1, 4), (4,))


def _is_tensor(x):
    return isinstance(x, (tf.Tensor, tf.Variable))


def _whole_labels(label, source):
    """A numpy label array with integer values (bool and whole-valued floats accepted)."""
    arr = np.asarray(label)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError(source, "labels must be whole numbers, got non-integer values")
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(source, f"labels must be integers, got dtype {arr.dtype}")
    return arr


def brats_regions(label, dtype="float32", source="labels"):
    """The three nested BraTS regions (WT, TC, ET) of a label map, as channels.

    Args:
        label: integer label map of any shape `(...)` with values in {0, 1, 2, 4} (a trailing
            channel axis of size 1 is not removed: pass `label[..., 0]`).
        dtype: dtype of the result (e.g. "float32" for a training target, "bool" or "uint8").
        source: the case named in errors (numpy input).

    Returns:
        `(..., 3)` region masks in `REGION_NAMES` order, of the input's kind (numpy or tensor).
        Numpy input with other label values raises `DataError`; in the TensorFlow version a value
        outside {0, 1, 2, 4} belongs to no region (no run-time check inside `tf.data`).

    Example:
        >>> brats_regions(np.array([[4, 2]]), dtype="uint8").tolist()
        [[[1, 1, 1], [1, 0, 0]]]
    """
    if _is_tensor(label):
        label = tf.convert_to_tensor(label)
        if label.dtype.is_floating or label.dtype == tf.bool:
            label = tf.cast(tf.round(tf.cast(label, tf.float32)), tf.int32)
        channels = [tf.reduce_any(tf.stack([tf.equal(label, tf.cast(v, label.dtype)) for v in values], -1), -1)
                    for values in REGION_LABELS]
        return tf.cast(tf.stack(channels, axis=-1), dtype)
    arr = _whole_labels(label, source)
    if arr.size:
        bad = np.setdiff1d(np.unique(arr), BRATS_LABELS)
        if bad.size:
            raise DataError(source, f"labels {bad[:5].tolist()} are not BraTS labels {list(BRATS_LABELS)}")
    out = np.empty(arr.shape + (3,), dtype=dtype)
    out[..., 0] = arr != 0
    out[..., 1] = (arr == 1) | (arr == 4)
    out[..., 2] = arr == 4
    return out


def regions_to_brats_labels(regions, threshold=0.5):
    """A BraTS label map {0, 1, 2, 4} from WT/TC/ET channels (probabilities or binary masks).

    A channel is "on" where its value > `threshold`. The inner region wins (see the module
    docstring): 4 where ET, else 1 where TC, else 2 where WT, else 0.

    Args:
        regions: `(..., 3)` array or tensor, channels in `REGION_NAMES` order.
        threshold: decision threshold on each channel.

    Returns:
        uint8 label map of shape `(...)`, of the input's kind (numpy or tensor).

    Example:
        >>> regions_to_brats_labels(np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7], [0.1, 0.2, 0.3]])).tolist()
        [1, 4, 0]
    """
    if _is_tensor(regions):
        regions = tf.convert_to_tensor(regions)
        if regions.shape.rank is not None and regions.shape[-1] not in (None, 3):
            raise ConfigError(f"regions must have 3 channels (WT, TC, ET) last, got shape {regions.shape}")
        on = tf.cast(regions, tf.float32) > threshold
        zero = tf.zeros(tf.shape(on)[:-1], tf.uint8)
        label = tf.where(on[..., 0], tf.constant(2, tf.uint8), zero)
        label = tf.where(on[..., 1], tf.constant(1, tf.uint8), label)
        return tf.where(on[..., 2], tf.constant(4, tf.uint8), label)
    regions = np.asarray(regions)
    if regions.ndim < 1 or regions.shape[-1] != 3:
        raise ConfigError(f"regions must have 3 channels (WT, TC, ET) last, got shape {regions.shape}")
    on = regions > threshold
    return _merge(on[..., 0], on[..., 1], on[..., 2])


def _merge(wt, tc, et):
    label = np.zeros(wt.shape, np.uint8)
    label[wt] = 2
    label[tc] = 1
    label[et] = 4
    return label


def merge_region_masks(wt, tc, et, source="masks"):
    """One BraTS label map from three binary region masks (nonzero = inside), e.g. three NIfTI masks.

    Same rule as `regions_to_brats_labels`: 2 where WT, overwritten by 1 where TC, by 4 where ET.

    Args:
        wt, tc, et: numpy masks of one shape (any dtype; nonzero voxels are inside).
        source: the case named in errors.

    Returns:
        uint8 label map with values in {0, 1, 2, 4}.

    Raises:
        DataError: the masks differ in shape.

    Example:
        >>> merge_region_masks(np.array([1, 1, 1, 0]), np.array([0, 1, 1, 0]), np.array([0, 0, 1, 0])).tolist()
        [2, 1, 4, 0]
    """
    masks = [np.asarray(m) for m in (wt, tc, et)]
    shapes = [m.shape for m in masks]
    if len(set(shapes)) != 1:
        raise DataError(source, f"region masks differ in shape: WT {shapes[0]}, TC {shapes[1]}, ET {shapes[2]}")
    return _merge(*(m != 0 for m in masks))


def _check_mapping(mapping):
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"mapping must be a non-empty dict of label -> new label, got {mapping!r}")
    for key, value in mapping.items():
        for what, v in (("key", key), ("value", value)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"mapping {what} {v!r} is not an integer (mapping {mapping!r})")
        if key < 0:
            raise ConfigError(f"mapping key {key} is negative; labels to remap must be >= 0")
    return {int(k): int(v) for k, v in mapping.items()}


def _lookup_table(mapping, fill):
    table = np.full(max(mapping) + 2, fill, dtype=np.int64)   # last slot: values outside the keys' range
    for key, value in mapping.items():
        table[key] = value
    return table


def remap_labels(label, mapping, default=None, dtype=None, source="labels"):
    """Replace label values through a lookup table, e.g. BraTS {0: 0, 1: 1, 2: 2, 4: 3}.

    Args:
        label: integer label map (numpy or tensor; numpy also accepts whole-valued floats).
        mapping: dict of old label -> new label (non-negative integer keys).
        default: new value for labels not in `mapping`; None: such labels are an error — numpy
            raises `DataError`; TensorFlow raises `tf.errors.InvalidArgumentError` when the op runs
            (a `tf.debugging` assertion, which also fires inside `tf.data`).
        dtype: dtype of the result; None keeps the input's dtype.
        source: the case named in errors (numpy input).

    Returns:
        The remapped label map, same shape, of the input's kind.

    Example:
        >>> remap_labels(np.array([0, 4, 2, 1]), {0: 0, 1: 1, 2: 2, 4: 3}).tolist()
        [0, 3, 2, 1]
    """
    mapping = _check_mapping(mapping)
    missing = -1 if default is None else int(default)
    table = _lookup_table(mapping, missing)
    if default is None and missing in mapping.values():   # keep the "not mapped" marker unambiguous
        missing = min(mapping.values()) - 1
        table = _lookup_table(mapping, missing)
    top = len(table) - 1
    if _is_tensor(label):
        label = tf.convert_to_tensor(label)
        out_dtype = label.dtype if dtype is None else tf.as_dtype(dtype)
        index = tf.cast(label, tf.int64)
        index = tf.where((index < 0) | (index > top), tf.constant(top, tf.int64), index)
        out = tf.gather(tf.constant(table), index)
        if default is None:
            with tf.control_dependencies([tf.debugging.assert_none_equal(
                    out, tf.constant(missing, tf.int64),
                    message=f"label values outside the mapping {mapping}")]):
                out = tf.identity(out)
        return tf.cast(out, out_dtype)
    arr = _whole_labels(label, source)
    out_dtype = arr.dtype if dtype is None else np.dtype(dtype)
    index = arr.astype(np.int64)
    index = np.where((index < 0) | (index > top), top, index)
    out = table[index]
    if default is None and arr.size:
        bad = out == missing
        if bad.any():
            values = np.unique(arr[bad])[:5].tolist()
            raise DataError(source, f"labels {values} are not in the mapping {mapping}")
    if np.issubdtype(out_dtype, np.integer) and out.size:
        info = np.iinfo(out_dtype)
        if out.min() < info.min or out.max() > info.max:
            raise ConfigError(f"remapped labels do not fit dtype {out_dtype}; pass dtype=")
    return out.astype(out_dtype)
