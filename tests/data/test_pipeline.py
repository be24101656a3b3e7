import numpy as np
import pytest

from tfseg.data.loading import load_samples
from tfseg.data.pipeline import Augmentation2D, segmentation_dataset
from tfseg.errors import ConfigError, DataError


def samples(n=6, size=40, seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        yy, xx = np.mgrid[:size, :size]
        mask = (np.hypot(yy - size / 2, xx - size / 2 - i) < 6).astype(np.uint8)
        images.append((100 + 50 * mask + rng.normal(0, 5, (size, size))).astype(np.float32))
        masks.append(mask)
    return images, masks


def collect(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def test_validation_pipeline_shapes_order_and_values():
    images, masks = samples()
    ds = segmentation_dataset(images, masks, image_size=(32, 32), batch_size=4, training=False, channels=3)
    x, y = collect(ds)
    assert x.shape == (6, 32, 32, 3) and y.shape == (6, 32, 32)
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[..., 0], x[..., 2])
    assert abs(x[0].mean()) < 0.02 and abs(x[0].std() - 1) < 0.1  # z-scored per image, then resized
    # order is kept: the disc moves right with the index
    centroids = [np.nonzero(m)[1].mean() for m in y]
    assert centroids == sorted(centroids)


def test_training_pipeline_is_seeded_and_changes_each_epoch():
    images, masks = samples()
    aug = Augmentation2D(max_degrees=15)
    first = collect(segmentation_dataset(images, masks, (32, 32), 3, training=True, seed=5, augmentation=aug))
    again = collect(segmentation_dataset(images, masks, (32, 32), 3, training=True, seed=5, augmentation=aug))
    np.testing.assert_array_equal(first[0], again[0])
    ds = segmentation_dataset(images, masks, (32, 32), 3, training=True, seed=5, augmentation=aug)
    epoch1, epoch2 = collect(ds), collect(ds)
    assert not np.array_equal(epoch1[0], epoch2[0])
    # augmentation never invents labels
    assert set(np.unique(epoch1[1])) <= {0, 1}


def test_mixed_sizes_and_bad_arguments():
    images, masks = samples(2, 40)
    more_images, more_masks = samples(2, 56)
    x, y = collect(segmentation_dataset(images + more_images, masks + more_masks, (32, 32), 2, training=False))
    assert x.shape == (4, 32, 32, 1)
    with pytest.raises(ConfigError, match="2 images but 1 masks"):
        segmentation_dataset(images, masks[:1], (32, 32), 2, training=False)
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        segmentation_dataset(images, masks, (32, 32), 2, training=False, channels=2)


def fake_load(record):
    if record.startswith("bad"):
        raise DataError(f"/data/{record}.dcm", "truncated pixel data")
    value = float(record[-1])
    return np.full((4, 4), value, np.float32), np.zeros((4, 4), np.uint8)


def test_load_samples_keeps_order_and_skips_bad_records():
    records = ["r1", "bad1", "r2", "r3", "bad2"]
    loaded = load_samples(records, fake_load, on_error="skip", workers=3)
    assert loaded.records == ["r1", "r2", "r3"]
    assert [im[0, 0] for im in loaded.images] == [1.0, 2.0, 3.0]
    assert [p.path for p in loaded.problems.problems] == ["/data/bad1.dcm", "/data/bad2.dcm"]


def test_load_samples_raise_names_the_file():
    with pytest.raises(DataError, match="/data/bad1.dcm: truncated pixel data"):
        load_samples(["r1", "bad1", "r2"], fake_load, on_error="raise")
    with pytest.raises(DataError, match="none of the 2 records"):
        load_samples(["bad1", "bad2"], fake_load, on_error="skip")
