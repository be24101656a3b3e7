"""Tests of tfseg.data.patch_store (HDF5 patch store of BraTS tumour patches and its tf.data reader)."""
import dataclasses
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.patch_store import (FORMAT, case_subset, ensure_patch_store, patch_dataset, read_patch_store_info,
                                    write_patch_store)
from tfseg.data.patches import extract_patches
from tfseg.data.slices import read_case
from tfseg.datasets.synthetic import write_brats
from tfseg.errors import ConfigError, DataError
from tfseg.utils.problems import ProblemLog

ARGS = dict(patch_size=16, stride=8, channels=("flair", "t1ce", "t2"))


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    return write_brats(str(tmp_path_factory.mktemp("brats_store")), num_cases=2, shape=(32, 32, 24), seed=2)


@pytest.fixture(scope="module")
def store(brats, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("store") / "patches.h5")
    return write_patch_store(path, brats.cases, **ARGS)


@pytest.fixture
def broken_case(brats, tmp_path):
    """A case whose T2 file is truncated."""
    case = brats.cases[1]
    t2 = next(p for p in case.images if p.endswith("_t2.nii.gz"))
    bad = str(tmp_path / "Broken_t2.nii.gz")
    with open(t2, "rb") as src, open(bad, "wb") as dst:
        dst.write(src.read()[:200])
    return dataclasses.replace(case, case_id="Broken", images=tuple(bad if p == t2 else p for p in case.images))


def _direct(cases, patch_size=16, stride=8, channels=("flair", "t1ce", "t2"), min_foreground=1):
    """What the store should hold, by direct extraction."""
    images, labels, rows = [], [], []
    for n, case in enumerate(cases):
        volume, label = read_case(case, channels)
        for k in range(label.shape[0]):
            p, lab, origins = extract_patches(volume[k], label[k], patch_size, stride, min_foreground)
            images.append(p)
            labels.append(lab)
            rows += [(n, k, r, c) for r, c in origins]
    return np.concatenate(images), np.concatenate(labels), np.array(rows)


def _temps(folder):
    return [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_round_trip_equals_direct_extraction(brats, store):
    images, labels, rows = _direct(brats.cases)
    assert store.count == len(images) > 0 and store.case_ids == brats.case_ids
    with h5py.File(store.path, "r") as f:
        np.testing.assert_array_equal(f["images"][()], images)
        np.testing.assert_array_equal(f["labels"][()], labels)
        np.testing.assert_array_equal(f["case_index"][()], rows[:, 0])
        np.testing.assert_array_equal(f["slice_index"][()], rows[:, 1])
        np.testing.assert_array_equal(f["origin"][()], rows[:, 2:])
        assert f["images"].dtype == np.float32 and f["labels"].dtype == np.uint8
        assert f["images"].chunks == (32, 16, 16, 3)
        assert f.attrs["format"] == FORMAT and tuple(f.attrs["patch_size"]) == (16, 16)
    assert set(np.unique(labels)) <= {0, 1, 2, 4} and (labels > 0).reshape(len(labels), -1).any(axis=1).all()
    info = read_patch_store_info(store.path)
    assert (info.count, info.case_ids, info.channels, info.stride) == (store.count, store.case_ids,
                                                                       ARGS["channels"], (8, 8))
    assert info.fingerprint == store.fingerprint and not info.reused


def test_compressed_store_holds_the_same_patches(brats, store, tmp_path):
    path = str(tmp_path / "gz.h5")
    write_patch_store(path, brats.cases[:1], compression="gzip", **ARGS)
    n = len(case_subset(store.path, [brats.case_ids[0]]))
    with h5py.File(path, "r") as f, h5py.File(store.path, "r") as g:
        assert f["images"].compression == "gzip"
        np.testing.assert_array_equal(f["images"][()], g["images"][:n])
    with pytest.raises(ConfigError, match="compression"):
        write_patch_store(path, brats.cases, compression="zstd", **ARGS)


def test_failed_write_leaves_no_file_and_no_temp(brats, broken_case, tmp_path):
    path = str(tmp_path / "out" / "patches.h5")
    with pytest.raises(DataError, match="Broken_t2"):
        write_patch_store(path, [brats.cases[0], broken_case], **ARGS)
    assert os.listdir(os.path.dirname(path)) == []
    # An existing store survives a failed rewrite untouched.
    first = write_patch_store(path, brats.cases[:1], **ARGS)
    before = os.stat(path).st_mtime_ns
    with pytest.raises(DataError):
        write_patch_store(path, [brats.cases[0], broken_case], **ARGS)
    assert os.stat(path).st_mtime_ns == before and read_patch_store_info(path).count == first.count
    assert _temps(os.path.dirname(path)) == []


def test_skip_policy_records_and_re_reports_the_bad_case(brats, broken_case, tmp_path):
    path = str(tmp_path / "patches.h5")
    problems = ProblemLog("skip")
    store = ensure_patch_store(path, [broken_case, brats.cases[0]], on_error="skip", problems=problems, **ARGS)
    assert store.case_ids == (brats.case_ids[0],) and len(problems) == 1
    assert "Broken_t2" in store.skipped[0][0]
    again = ProblemLog("skip")
    assert ensure_patch_store(path, [broken_case, brats.cases[0]], on_error="skip", problems=again, **ARGS).reused
    assert [p.path for p in again.problems] == [store.skipped[0][0]]
    with pytest.raises(DataError, match="Broken_t2"):
        ensure_patch_store(path, [broken_case, brats.cases[0]], on_error="raise", **ARGS)


def test_stale_temp_of_a_killed_writer_is_removed(brats, tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    stale = tmp_path / f".tmp-{dead}-0123abcd-patches.h5"
    stale.write_bytes(b"half an HDF5 file")
    alive = tmp_path / f".tmp-{os.getppid()}-0123abcd-patches.h5"   # a writer still running
    alive.write_bytes(b"in progress")
    other = tmp_path / f".tmp-{dead}-0123abcd-other.h5"              # another destination's
    other.write_bytes(b"x")
    ensure_patch_store(str(tmp_path / "patches.h5"), brats.cases[:1], **ARGS)
    assert sorted(_temps(tmp_path)) == sorted([alive.name, other.name])


def test_ensure_reuses_then_rewrites_on_change(brats, tmp_path):
    path = str(tmp_path / "patches.h5")
    first = ensure_patch_store(path, brats.cases, **ARGS)
    mtime = os.stat(path).st_mtime_ns
    second = ensure_patch_store(path, brats.cases, **ARGS)
    assert not first.reused and second.reused and second.count == first.count
    assert os.stat(path).st_mtime_ns == mtime
    # Other arguments -> rewrite.
    third = ensure_patch_store(path, brats.cases, **{**ARGS, "stride": 16})
    assert not third.reused and third.fingerprint != first.fingerprint and third.count < first.count
    # Other cases -> rewrite.
    fourth = ensure_patch_store(path, brats.cases[:1], **{**ARGS, "stride": 16})
    assert not fourth.reused and fourth.case_ids == brats.case_ids[:1]
    # A touched input file -> rewrite.
    label = brats.cases[0].label
    stat = os.stat(label)
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert not ensure_patch_store(path, brats.cases[:1], **{**ARGS, "stride": 16}).reused
    finally:
        os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_corrupt_and_foreign_files(brats, tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(DataError, match="not a readable HDF5"):
        read_patch_store_info(str(junk))
    foreign = str(tmp_path / "foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["images"] = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(DataError, match="not a tfseg patch store"):
        read_patch_store_info(foreign)
    with pytest.raises(DataError, match="file not found"):
        read_patch_store_info(str(tmp_path / "nope.h5"))
    path = str(tmp_path / "p.h5")
    write_patch_store(path, brats.cases[:1], **ARGS)
    with h5py.File(path, "a") as f:
        del f["origin"]
    with pytest.raises(DataError, match="origin"):
        read_patch_store_info(path)
    with pytest.raises(DataError, match="origin"):
        patch_dataset(path, 4, training=False)
    # ensure_patch_store replaces a damaged or foreign file.
    assert ensure_patch_store(path, brats.cases[:1], **ARGS).count > 0
    assert not ensure_patch_store(str(junk), brats.cases[:1], **ARGS).reused
    assert read_patch_store_info(str(junk)).count > 0


def _labels_of(dataset):
    """Each batch's patches identified by their label bytes' hash (patches are distinct)."""
    return [[hash(lab.tobytes()) for lab in y.numpy()] for _, y in dataset]


def test_dataset_in_order_matches_the_store(store):
    ds = patch_dataset(store.path, batch_size=8, training=False)
    assert int(ds.cardinality()) == -(-store.count // 8)
    images = np.concatenate([x.numpy() for x, _ in ds])
    with h5py.File(store.path, "r") as f:
        np.testing.assert_array_equal(images, f["images"][()])
    x, y = next(iter(ds))
    assert x.shape == (8, 16, 16, 3) and x.dtype == tf.float32 and y.shape == (8, 16, 16) and y.dtype == tf.uint8
    dropped = patch_dataset(store.path, batch_size=8, training=False, drop_remainder=True)
    assert int(dropped.cardinality()) == store.count // 8
    assert dropped.element_spec[0].shape.as_list() == [8, 16, 16, 3]


def test_training_order_is_seeded_and_changes_every_epoch(store):
    ds = patch_dataset(store.path, batch_size=16, training=True, seed=3, block_size=8, shuffle_blocks=2)
    epoch1, epoch2 = _labels_of(ds), _labels_of(ds)
    again = _labels_of(patch_dataset(store.path, batch_size=16, training=True, seed=3, block_size=8,
                                     shuffle_blocks=2))
    other = _labels_of(patch_dataset(store.path, batch_size=16, training=True, seed=4, block_size=8,
                                     shuffle_blocks=2))
    flat = lambda batches: [h for b in batches for h in b]  # noqa: E731
    assert epoch1 == again
    assert flat(epoch1) != flat(epoch2) and flat(epoch1) != flat(other)
    in_order = flat(_labels_of(patch_dataset(store.path, batch_size=16, training=False)))
    assert sorted(flat(epoch1)) == sorted(flat(epoch2)) == sorted(in_order) and flat(epoch1) != in_order


def test_subset_indices_and_map_fn_seeds(brats, store):
    first = case_subset(store.path, [brats.case_ids[0]])
    second = case_subset(store.path, brats.case_ids[1])
    assert len(first) + len(second) == store.count and first.max() < second.min()
    with h5py.File(store.path, "r") as f:
        assert set(f["case_index"][second.tolist()]) == {1}
        wanted = f["labels"][second.tolist()]
    with pytest.raises(ConfigError, match="not in the patch store"):
        case_subset(store.path, ["BraTS2021_99999"])

    def map_fn(image, label, seed):
        return tf.reduce_mean(image), tf.cast(label, tf.int32), seed

    ds = patch_dataset(store.path, batch_size=5, training=True, seed=1, map_fn=map_fn, indices=second)
    assert int(ds.cardinality()) == -(-len(second) // 5)
    batches = list(ds)
    labels = np.concatenate([b[1].numpy() for b in batches])
    seeds = np.concatenate([b[2].numpy() for b in batches])
    assert sorted(map(bytes, labels.astype(np.uint8))) == sorted(map(bytes, wanted))
    assert seeds.shape == (len(second), 2) and len({tuple(s) for s in seeds}) == len(second)
    seeds2 = np.concatenate([b[2].numpy() for b in ds])
    assert not np.array_equal(seeds, seeds2)  # new augmentation seeds every epoch
    fixed = patch_dataset(store.path, batch_size=5, training=False, seed=1, map_fn=map_fn, indices=second)
    np.testing.assert_array_equal(np.concatenate([b[2].numpy() for b in fixed]),
                                  np.concatenate([b[2].numpy() for b in fixed]))
    # A non-contiguous subset reads the right patches.
    picked = np.array([0, 3, 4, store.count - 1])
    got = np.concatenate([y.numpy() for _, y in patch_dataset(store.path, 2, training=False, indices=picked[::-1])])
    with h5py.File(store.path, "r") as f:
        np.testing.assert_array_equal(got, f["labels"][picked.tolist()])


@pytest.mark.parametrize("kwargs,match", [(dict(batch_size=0), "batch_size"), (dict(indices=[0, 0]), "repeat"),
                                          (dict(indices=[10**6]), "indices"), (dict(indices=[]), "no patch"),
                                          (dict(block_size=0), "block_size")])
def test_dataset_bad_arguments(store, kwargs, match):
    kwargs = {"batch_size": 4, **kwargs}
    with pytest.raises(ConfigError, match=match):
        patch_dataset(store.path, training=True, **kwargs)


def test_store_bad_arguments(brats, tmp_path):
    path = str(tmp_path / "p.h5")
    with pytest.raises(ConfigError, match="stride"):
        write_patch_store(path, brats.cases, patch_size=8, stride=16)
    with pytest.raises(ConfigError, match="channels"):
        write_patch_store(path, brats.cases, channels=("flair", "pd"))
    with pytest.raises(ConfigError, match="on_error"):
        ensure_patch_store(path, brats.cases, on_error="ignore")
    assert not os.path.exists(path)
