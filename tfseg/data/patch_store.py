"""An HDF5 store of 2D tumour patches cut from BraTS volumes, and a tf.data pipeline reading it.

`write_patch_store` reads each case (the chosen modalities and the label, through
`tfseg.io.nifti`), takes every axial slice (`volume[k]`, D being NIfTI's k axis, inferior to
superior for BraTS; see `tfseg.data.slices`), cuts it into an overlapping patch grid
(`tfseg.data.patches`) and keeps the patches with tumour. The file holds::

    images       (N, p, p, C) float32   raw intensities (normalize in the map_fn)
    labels       (N, p, p)    uint8     the original label values (BraTS: 0, 1, 2, 4)
    case_index   (N,)         int32     index into case_ids
    slice_index  (N,)         int32     the axial slice index k
    origin       (N, 2)       int32     (row, column) of the patch in the slice
    case_ids     (K,)         str       the cases read, in order (some may have no patch)

and attributes `format` ("tfseg-patch-store"), `format_version`, `patch_size`, `stride`,
`channels` (JSON), `min_foreground`, `fingerprint` and `skipped` (JSON list of the cases left
out under on_error="skip", re-reported when the store is reused). Patches of a case are
contiguous and cases are in the order given.

Chunks hold `CHUNK_PATCHES` (32) whole patches, so a block of 32 patches is one HDF5 read. The
default is no compression (`compression=None`). Measured on synthetic BraTS-like slices, 128 x 128
patches, 32-patch block reads from the page cache (one CPU core):

    =============  ==============  ================
    compression    size vs. raw    read per patch
    =============  ==============  ================
    None           1.0             ~20 us
    "lzf"          0.30            ~560 us
    "gzip"         0.17            ~410 us   (byte shuffle + gzip level 1)
    =============  ==============  ================

Compression saves 3-6x disk but makes each read 20-25x slower, and the reading generator of
`patch_dataset` is a single thread: at ~2,000 patches/s a decompressing reader would starve a
GPU. Pass `compression="gzip"` (smaller and faster to read than LZF) when disk space matters more.

The file is written atomically (`tfseg.utils.atomic.atomic_path`): to a temporary file beside
`path`, flushed and fsynced, then renamed onto `path`. An exception removes the temporary file;
a killed writer leaves one behind, which the next write to the same path deletes. Patches go to
the file case by case in growing datasets, so memory holds one case at a time.

Example:
    >>> import os, tempfile
    >>> from tfseg.datasets.synthetic import write_brats
    >>> data = write_brats(tempfile.mkdtemp(), num_cases=2, shape=(32, 32, 24))
    >>> path = os.path.join(tempfile.mkdtemp(), "patches.h5")
    >>> store = ensure_patch_store(path, data.cases, patch_size=16, stride=8)
    >>> store.count > 0, store.case_ids, store.reused
    (True, ('BraTS2021_00000', 'BraTS2021_00001'), False)
    >>> ensure_patch_store(path, data.cases, patch_size=16, stride=8).reused
    True
    >>> dataset = patch_dataset(path, batch_size=4, training=True, seed=1)
    >>> [tuple(t.shape) for t in next(iter(dataset))]
    [(4, 16, 16, 3), (4, 16, 16)]
"""
import dataclasses
import hashlib
import json
import logging
import os
import re

import h5py
import numpy as np
import tensorflow as tf

from tfseg.data.patches import extract_patches, pair
from tfseg.data.slices import channel_paths, check_channels, read_case
from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import TEMP_PREFIX, atomic_path
from tfseg.utils.hdf5 import open_hdf5
from tfseg.utils.problems import ProblemLog, check_policy
from tfseg.utils.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = ["PatchStore", "write_patch_store", "ensure_patch_store", "read_patch_store_info",
           "patch_dataset", "case_subset", "FORMAT", "FORMAT_VERSION"]

FORMAT = "tfseg-patch-store"
FORMAT_VERSION = 1
CHUNK_PATCHES = 32
COMPRESSIONS = {None: {}, "lzf": dict(compression="lzf"),
                "gzip": dict(compression="gzip", compression_opts=1, shuffle=True)}
_DATASETS = ("images", "labels", "case_index", "slice_index", "origin", "case_ids")


@dataclasses.dataclass(frozen=True)
class PatchStore:
    """What a patch store holds.

    Attributes:
        path: the HDF5 file.
        count: the number of patches.
        case_ids: the cases read, in order (`case_index` indexes this).
        patch_size: `(rows, columns)` of a patch.
        stride: `(rows, columns)` of the grid step.
        channels: the modality names stacked as channels.
        min_foreground: the least number of tumour pixels of a kept patch.
        fingerprint: hash of the inputs and arguments the store was written from.
        skipped: `(path, reason)` pairs of the cases left out when it was written.
        reused: True when `ensure_patch_store` found it up to date instead of writing it.
    """

    path: str
    count: int
    case_ids: tuple
    patch_size: tuple
    stride: tuple
    channels: tuple
    min_foreground: int
    fingerprint: str
    skipped: tuple = ()
    reused: bool = False


def _arguments(patch_size, stride, channels, min_foreground, compression):
    """The checked store arguments, as the JSON-able dict the fingerprint and attributes use."""
    patch_size, stride = pair("patch_size", patch_size), pair("stride", stride)
    if stride[0] > patch_size[0] or stride[1] > patch_size[1]:
        raise ConfigError(f"stride {stride} is larger than the patch size {patch_size}")
    if isinstance(min_foreground, bool) or not isinstance(min_foreground, (int, np.integer)) \
            or min_foreground < 0:
        raise ConfigError(f"min_foreground must be an integer >= 0, got {min_foreground!r}")
    if not (compression is None or isinstance(compression, str)) or compression not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {tuple(COMPRESSIONS)}, got {compression!r}")
    return dict(patch_size=list(patch_size), stride=list(stride), channels=list(check_channels(channels)),
                min_foreground=int(min_foreground), compression=compression)


def _file_stamp(path):
    try:
        stat = os.stat(path)
    except OSError:
        return [os.path.basename(path), None, None]
    return [os.path.basename(path), stat.st_size, stat.st_mtime_ns]


def fingerprint(cases, arguments):
    """A hash of the case ids, their files' names, sizes and modification times, and the arguments."""
    entries = []
    for case in cases:
        try:
            paths = channel_paths(case, arguments["channels"])
        except DataError:
            paths = list(case.images)
        files = [_file_stamp(p) for p in paths + ([case.label] if case.label else [])]
        entries.append([case.case_id, files])
    text = json.dumps({"format_version": FORMAT_VERSION, "arguments": arguments, "cases": entries},
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _remove_stale_temps(path):
    """Delete temporary files a killed writer left beside `path` (those of processes no longer running)."""
    parent, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(r"^%s(\d+)-[0-9a-f]+-%s$" % (re.escape(TEMP_PREFIX), re.escape(name)))
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for entry in names:
        match = pattern.match(entry)
        if match is None or _process_alive(int(match.group(1))):
            continue
        logger.info("removing %s, left by an interrupted write", os.path.join(parent, entry))
        try:
            os.remove(os.path.join(parent, entry))
        except OSError:
            pass


def _process_alive(pid):
    if pid == os.getpid():
        return True  # another writer of this process, still at work
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours, or the platform cannot tell
        return True
    return True


class _Appender:
    """Appends rows to the growing datasets of an open store, buffering a few chunks at a time."""

    def __init__(self, handle, patch_size, channels, compression, buffer_patches=8 * CHUNK_PATCHES):
        ph, pw = patch_size
        self.handle = handle
        self.buffer_patches = buffer_patches
        specs = dict(images=((ph, pw, channels), np.float32), labels=((ph, pw), np.uint8),
                     case_index=((), np.int32), slice_index=((), np.int32), origin=((2,), np.int32))
        for key, (shape, dtype) in specs.items():
            handle.create_dataset(key, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                                  chunks=(CHUNK_PATCHES,) + shape, **COMPRESSIONS[compression])
        self.pending = {key: [] for key in specs}
        self.pending_count = 0
        self.count = 0

    def add(self, **rows):
        for key, value in rows.items():
            self.pending[key].append(value)
        self.pending_count += len(rows["images"])
        if self.pending_count >= self.buffer_patches:
            self.flush()

    def flush(self):
        if not self.pending_count:
            return
        end = self.count + self.pending_count
        for key, parts in self.pending.items():
            dataset = self.handle[key]
            dataset.resize(end, axis=0)
            dataset[self.count:end] = np.concatenate(parts)
            parts.clear()
        self.count, self.pending_count = end, 0


def write_patch_store(path, cases, patch_size=128, stride=64, channels=("flair", "t1ce", "t2"),
                      min_foreground=1, compression=None, on_error="raise", problems=None, progress=False):
    """Cut tumour patches from every axial slice of BraTS cases and write them to an HDF5 store.

    Args:
        path: the HDF5 file to write (replaced atomically when it exists).
        cases: iterable of `tfseg.datasets.brats.BratsCase` (images matched to `channels` by
            file name, and a label).
        patch_size: patch size, an int or `(rows, columns)`.
        stride: grid step, an int or `(rows, columns)`, at most the patch size.
        channels: modality names stacked as channels, in order (W3 uses FLAIR, T1ce, T2).
        min_foreground: keep a patch with at least this many pixels of label > 0.
        compression: None (default, fastest reads), "gzip" (byte shuffle + gzip level 1,
            about 1/6 of the size) or "lzf"; see the module docstring.
        on_error: "raise" (DataError at the first bad case, nothing written) or "skip" (log it,
            leave it out, list it in the store's `skipped`).
        problems: optional `ProblemLog` that skipped cases are added to.
        progress: show a progress bar over the cases (one log line when not on a terminal).

    Returns:
        A `PatchStore` describing the file written.

    Raises:
        DataError: a bad case under on_error="raise", or the file cannot be written.
        ConfigError: a bad argument.

    Example:
        >>> import os, tempfile
        >>> from tfseg.datasets.synthetic import write_brats
        >>> data = write_brats(tempfile.mkdtemp(), num_cases=1, shape=(32, 32, 24))
        >>> store = write_patch_store(os.path.join(tempfile.mkdtemp(), "p.h5"), data.cases, 16, 8)
        >>> store.patch_size, store.channels
        ((16, 16), ('flair', 't1ce', 't2'))
    """
    check_policy(on_error)
    arguments = _arguments(patch_size, stride, channels, min_foreground, compression)
    cases = list(cases)
    return _write(path, cases, arguments, fingerprint(cases, arguments), on_error, problems, progress)


def _write(path, cases, arguments, store_fingerprint, on_error, problems, progress):
    path = os.fspath(path)
    _remove_stale_temps(path)
    log = ProblemLog(on_error)
    patch_size = tuple(arguments["patch_size"])
    channels = tuple(arguments["channels"])
    iterator = cases
    if progress:
        iterator = progress_bar(cases, "patch store", "case")
    case_ids = []
    try:
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as handle:
                appender = _Appender(handle, patch_size, len(channels), arguments["compression"])
                for case in iterator:
                    try:
                        volume, label = read_case(case, channels)
                    except DataError as error:
                        log.report_error(error)
                        continue
                    case_number = len(case_ids)
                    case_ids.append(case.case_id)
                    before = appender.count + appender.pending_count
                    for k in range(label.shape[0]):
                        if not label[k].any() and arguments["min_foreground"] > 0:
                            continue
                        patches, labels, origins = extract_patches(
                            volume[k], label[k], patch_size, arguments["stride"], arguments["min_foreground"])
                        if len(patches):
                            n = len(patches)
                            appender.add(images=patches, labels=labels,
                                         case_index=np.full(n, case_number, np.int32),
                                         slice_index=np.full(n, k, np.int32), origin=origins.astype(np.int32))
                    logger.debug("%s: %d patches", case.case_id,
                                 appender.count + appender.pending_count - before)
                appender.flush()
                handle.create_dataset("case_ids", data=np.array(case_ids, dtype=object),
                                      dtype=h5py.string_dtype())
                skipped = [[p.path, p.reason] for p in log.problems]
                handle.attrs.update(
                    format=FORMAT, format_version=FORMAT_VERSION, patch_size=patch_size,
                    stride=tuple(arguments["stride"]), channels=json.dumps(channels),
                    min_foreground=arguments["min_foreground"], fingerprint=store_fingerprint,
                    skipped=json.dumps(skipped))
                handle.flush()
                count = appender.count
    except OSError as exc:
        raise DataError(path, f"cannot write the patch store: {exc}") from None
    finally:
        if problems is not None:
            problems.extend(log)
    logger.info("wrote %s: %d patches from %d cases (%d skipped)", path, count, len(case_ids), len(log))
    return PatchStore(path=path, count=count, case_ids=tuple(case_ids), patch_size=patch_size,
                      stride=tuple(arguments["stride"]), channels=channels,
                      min_foreground=arguments["min_foreground"], fingerprint=store_fingerprint,
                      skipped=tuple(tuple(s) for s in skipped))


def read_patch_store_info(path):
    """Open a patch store and describe it, checking that it is one.

    Args:
        path: an HDF5 file written by `write_patch_store`.

    Returns:
        A `PatchStore` (with `reused=False`).

    Raises:
        DataError: the file is missing, not HDF5, not a tfseg patch store (or of a newer
            format), or its datasets are missing or inconsistent.

    Example:
        >>> import tempfile
        >>> read_patch_store_info(tempfile.mkdtemp() + "/missing.h5")
        Traceback (most recent call last):
        ...
        tfseg.errors.DataError: .../missing.h5: file not found
    """
    path = os.fspath(path)
    with open_hdf5(path) as handle:
        attrs = handle.attrs
        if attrs.get("format") != FORMAT:
            raise DataError(path, f"is an HDF5 file but not a tfseg patch store (no format={FORMAT!r} attribute)")
        version = int(attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise DataError(path, f"patch store format version {version}; this tfseg reads version "
                                  f"{FORMAT_VERSION}, rewrite the store")
        missing = [key for key in _DATASETS if key not in handle]
        if missing:
            raise DataError(path, f"patch store lacks the dataset(s) {missing}")
        try:
            patch_size = tuple(int(v) for v in attrs["patch_size"])
            stride = tuple(int(v) for v in attrs["stride"])
            channels = tuple(json.loads(attrs["channels"]))
            skipped = tuple(tuple(s) for s in json.loads(attrs["skipped"]))
            min_foreground = int(attrs["min_foreground"])
            store_fingerprint = str(attrs["fingerprint"])
            case_ids = tuple(s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in handle["case_ids"][()])
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise DataError(path, f"patch store attributes are damaged ({type(exc).__name__}: {exc})") from None
        count = handle["images"].shape[0]
        expected = dict(images=(count,) + patch_size + (len(channels),), labels=(count,) + patch_size,
                        case_index=(count,), slice_index=(count,), origin=(count, 2))
        for key, shape in expected.items():
            if handle[key].shape != shape:
                raise DataError(path, f"dataset {key!r} has shape {handle[key].shape}, expected {shape}")
    return PatchStore(path=path, count=int(count), case_ids=case_ids, patch_size=patch_size, stride=stride,
                      channels=channels, min_foreground=min_foreground, fingerprint=store_fingerprint, skipped=skipped)


def ensure_patch_store(path, cases, patch_size=128, stride=64, channels=("flair", "t1ce", "t2"),
                       min_foreground=1, compression=None, on_error="raise", problems=None, progress=False):
    """Reuse the patch store at `path` when it was written from the same inputs, else (re)write it.

    The store is up to date when its fingerprint, a hash of the case ids, the names, sizes and
    modification times of their files, and the arguments, matches. Cases skipped when it was
    written are reported again under `on_error` (so "raise" still stops on them).

    Args:
        path, cases, patch_size, stride, channels, min_foreground, compression, on_error, problems, progress:
            as for `write_patch_store`.

    Returns:
        A `PatchStore`, with `reused` True when the existing file was kept.

    Example:
        >>> import os, tempfile
        >>> from tfseg.datasets.synthetic import write_brats
        >>> data = write_brats(tempfile.mkdtemp(), num_cases=1, shape=(32, 32, 24))
        >>> path = os.path.join(tempfile.mkdtemp(), "p.h5")
        >>> [ensure_patch_store(path, data.cases, 16, 16).reused for _ in range(2)]
        [False, True]
    """
    check_policy(on_error)
    arguments = _arguments(patch_size, stride, channels, min_foreground, compression)
    cases = list(cases)
    store_fingerprint = fingerprint(cases, arguments)
    if os.path.exists(path):
        try:
            info = read_patch_store_info(path)
        except DataError as error:
            logger.warning("rewriting the patch store: %s", error)
        else:
            if info.fingerprint == store_fingerprint:
                log = ProblemLog(on_error)
                try:
                    for skipped_path, reason in info.skipped:
                        log.report(skipped_path, reason)
                finally:
                    if problems is not None:
                        problems.extend(log)
                logger.info("reusing the patch store %s (%d patches from %d cases, inputs unchanged)",
                            path, info.count, len(info.case_ids))
                _remove_stale_temps(path)
                return dataclasses.replace(info, reused=True)
            logger.info("rewriting the patch store %s: its inputs or arguments changed", path)
    return _write(path, cases, arguments, store_fingerprint, on_error, problems, progress)


def case_subset(store_path, case_ids):
    """The indices of the patches of some cases in a store (e.g. the training split), sorted.

    Args:
        store_path: the patch store.
        case_ids: the case ids wanted; each must be one of the store's cases.

    Returns:
        An int64 array of patch indices, increasing.

    Raises:
        ConfigError: a case id is not in the store.
        DataError: the file is not a patch store.

    Example:
        >>> import os, tempfile
        >>> from tfseg.datasets.synthetic import write_brats
        >>> data = write_brats(tempfile.mkdtemp(), num_cases=2, shape=(32, 32, 24))
        >>> path = os.path.join(tempfile.mkdtemp(), "p.h5")
        >>> store = write_patch_store(path, data.cases, 16, 8)
        >>> n0, n1 = (len(case_subset(path, [c])) for c in store.case_ids)
        >>> n0 + n1 == store.count
        True
    """
    info = read_patch_store_info(store_path)
    if isinstance(case_ids, str):
        case_ids = [case_ids]
    wanted = set(case_ids)
    unknown = sorted(wanted - set(info.case_ids))
    if unknown:
        raise ConfigError(f"case id(s) {unknown[:5]} are not in the patch store {store_path} "
                          f"(it holds {len(info.case_ids)} cases)")
    numbers = [n for n, case_id in enumerate(info.case_ids) if case_id in wanted]
    with h5py.File(store_path, "r") as handle:
        case_index = handle["case_index"][()]
    return np.flatnonzero(np.isin(case_index, numbers)).astype(np.int64)


def _check_indices(indices, count, path):
    if indices is None:
        return np.arange(count, dtype=np.int64)
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ConfigError(f"indices must be a 1D sequence of integers, got shape {array.shape} {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= count):
        raise ConfigError(f"indices must lie in [0, {count}) for {path}, got {array.min()}..{array.max()}")
    if len(np.unique(array)) != len(array):
        raise ConfigError("indices must not repeat")
    if not array.size:
        raise ConfigError(f"indices select no patch of {path}")
    return np.sort(array)


def _read_block(handle, block):
    """Images and labels at the sorted indices `block`, read as one slice when they are contiguous."""
    first, last = int(block[0]), int(block[-1])
    if last - first + 1 == len(block):
        return handle["images"][first:last + 1], handle["labels"][first:last + 1]
    return handle["images"][block], handle["labels"][block]


def patch_dataset(path, batch_size, training, seed=0, map_fn=None, indices=None, drop_remainder=False,
                  block_size=CHUNK_PATCHES, shuffle_blocks=8):
    """A tf.data pipeline of `(image, label)` batches streamed from a patch store.

    Patches are read in blocks of `block_size` consecutive (selected) patches, one HDF5 chunk
    each. When training, every epoch visits the blocks in a new random order and shuffles the
    patches within groups of `shuffle_blocks` blocks; the orders come from `seed` and the epoch
    (from `tf.data.Dataset.random`), so two pipelines built with one seed give the same batches.
    Otherwise patches come in store order.

    Args:
        path: the patch store.
        batch_size: patches per batch.
        training: shuffle as above when True.
        seed: seeds the shuffle and the per-sample seeds of `map_fn`.
        map_fn: optional `map_fn(image, label, seed)` applied to each patch, `image` float32
            `(p, p, C)`, `label` uint8 `(p, p)`, `seed` an int64 `(2,)` stateless seed (new every
            epoch when training, the same every epoch otherwise); returns what the model takes,
            e.g. a normalized image and a remapped label.
        indices: optional patch indices to use (e.g. `case_subset(path, train_ids)`), no repeats.
        drop_remainder: drop the last, smaller batch.
        block_size: patches read per HDF5 access.
        shuffle_blocks: blocks mixed together by the training shuffle.

    Returns:
        A `tf.data.Dataset` of `(images (B, p, p, C) float32, labels (B, p, p) uint8)` (or what
        `map_fn` returns, batched), with a known cardinality.

    Raises:
        DataError: the file is not a patch store.
        ConfigError: a bad argument.
    """
    info = read_patch_store_info(path)
    path = info.path
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    for name, value in (("block_size", block_size), ("shuffle_blocks", shuffle_blocks)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if info.count == 0:
        raise DataError(path, "the patch store holds no patch")
    selected = _check_indices(indices, info.count, path)
    blocks = [selected[i:i + block_size] for i in range(0, len(selected), block_size)]
    ph, pw = info.patch_size
    channels = len(info.channels)

    def generate(epoch_seed):
        rng = np.random.default_rng(int(epoch_seed))
        order = rng.permutation(len(blocks)) if training else np.arange(len(blocks))
        group = shuffle_blocks if training else 1
        with h5py.File(path, "r") as handle:
            for start in range(0, len(order), group):
                parts = [_read_block(handle, blocks[b]) for b in order[start:start + group]]
                images = np.concatenate([p[0] for p in parts])
                labels = np.concatenate([p[1] for p in parts])
                if training:
                    mix = rng.permutation(len(images))
                    images, labels = images[mix], labels[mix]
                yield images, labels

    signature = (tf.TensorSpec((None, ph, pw, channels), tf.float32), tf.TensorSpec((None, ph, pw), tf.uint8))
    epoch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=training).take(1)
    dataset = epoch_seeds.flat_map(
        lambda epoch_seed: tf.data.Dataset.from_generator(generate, output_signature=signature, args=(epoch_seed,)))
    dataset = dataset.unbatch().apply(tf.data.experimental.assert_cardinality(len(selected)))
    if map_fn is not None:
        # The same random stream as the epoch seed, past its first value: no seed is used twice.
        sample_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=training).skip(1).batch(2)
        dataset = tf.data.Dataset.zip((dataset, sample_seeds))
        dataset = dataset.map(lambda pair_, s: map_fn(pair_[0], pair_[1], s),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
