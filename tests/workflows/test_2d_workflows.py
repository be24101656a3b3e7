"""The 2D workflows' data steps: seeded pipelines are reproducible, labels stay labels, configs validate."""
import dataclasses

import numpy as np
import pytest

from tfseg.errors import ConfigError
from tfseg.workflows import brats2d, brats_slices, lgg
from tfseg.workflows.brats_cases import CaseSource, excluded_ids, find_cases


def first_batch(dataset):
    x, y = next(iter(dataset))
    return np.asarray(x), np.asarray(y)


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory):
    return tmp_path_factory.mktemp("brats")


def small_brats2d(root, seed=0):
    return brats2d.Brats2DConfig(
        data=CaseSource(synthetic_dir=str(root / "data"), synthetic_cases=5, synthetic_shape=(48, 48, 16),
                        val_fraction=0.2, test_fraction=0.2),
        patches=brats2d.PatchSection(patch_size=32, stride=16, store=str(root / "patches.h5")),
        train=brats2d.TrainSection(batch_size=4, seed=seed), output_dir=str(root / "run"))


def test_brats2d_pipeline_is_seeded_and_remaps_labels(brats_root):
    batches = []
    for seed in (0, 0, 1):
        config = small_brats2d(brats_root, seed=0)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        cases = brats2d.find_data(config)
        store = brats2d.make_patch_store(config, cases)
        train_ds, val_ds = brats2d.make_datasets(config, store, cases)
        batches.append(first_batch(train_ds))
    (x0, y0), (x1, y1), (x2, y2) = batches
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)
    assert not np.array_equal(x0, x2)
    assert x0.shape == (4, 32, 32, 3) and y0.dtype == np.int32
    assert set(np.unique(y0)) <= {0, 1, 2, 3} and (y0 > 0).any()
    x_val, y_val = first_batch(val_ds)
    assert x_val.min() >= -1.0 and x_val.max() <= 1.0  # percentile stretch, no augmentation


def test_brats_cases_are_split_by_patient_and_exclusions_apply(brats_root, tmp_path):
    source = CaseSource(synthetic_dir=str(brats_root / "data"), synthetic_cases=5, synthetic_shape=(48, 48, 16),
                        val_fraction=0.2, test_fraction=0.2)
    split = find_cases(source, str(tmp_path))
    ids = [c.case_id for part in (split.train, split.val, split.test) for c in part]
    assert len(ids) == len(set(ids)) == 5 and split.synthetic
    listing = tmp_path / "exclude.txt"
    listing.write_text(f"# stage-2 patients\n{ids[0]}\n{ids[1]}  # leaked\n")
    assert excluded_ids(str(listing)) == {ids[0], ids[1]}
    fewer = find_cases(dataclasses.replace(source, exclude_cases=str(listing), test_fraction=0.0), str(tmp_path))
    kept = {c.case_id for part in (fewer.train, fewer.val) for c in part}
    assert kept == set(ids) - {ids[0], ids[1]}
    with pytest.raises(ConfigError, match="too few groups"):
        find_cases(dataclasses.replace(source, exclude_cases=ids[:4]), str(tmp_path))


def test_slices_targets_are_wt_and_et(brats_root):
    config = brats_slices.SlicesConfig(
        data=CaseSource(synthetic_dir=str(brats_root / "data"), synthetic_cases=5, synthetic_shape=(48, 48, 16),
                        val_fraction=0.2, test_fraction=0.0),
        slices=brats_slices.SliceSection(image_size=32), train=brats_slices.TrainSection(batch_size=4),
        output_dir=str(brats_root / "slices"))
    cases = brats_slices.find_data(config)
    train, val = brats_slices.extract(config, cases)
    assert {s.plane for s in train} == {"axial", "coronal", "sagittal"}
    train_ds, _ = brats_slices.make_datasets(config, train, val)
    x, y = first_batch(train_ds)
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 32, 32, 2)
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert np.all(y[..., 1] <= y[..., 0])  # ET lies inside WT


def test_lgg_pipeline_is_seeded(tmp_path):
    config = lgg.LggConfig(data=lgg.DataSection(synthetic_dir=str(tmp_path / "data"), synthetic_patients=3,
                                                image_size=32, test_fraction=0.34),
                           train=lgg.TrainSection(batch_size=4), output_dir=str(tmp_path / "run"))
    first = [first_batch(lgg.make_datasets(config, lgg.find_data(config))[0]) for _ in range(2)]
    np.testing.assert_array_equal(first[0][0], first[1][0])
    np.testing.assert_array_equal(first[0][1], first[1][1])
    assert first[0][0].shape == (4, 32, 32, 3) and set(np.unique(first[0][1])) <= {0, 1}


def test_lgg_slice_dice_convention():
    empty = np.zeros((4, 4), np.uint8)
    one = empty.copy()
    one[0, 0] = 1
    assert lgg.slice_dice(empty, empty) == 1.0
    assert lgg.slice_dice(one, empty) == 0.0
    assert lgg.slice_dice(one, one) == 1.0


def test_mixed_precision_trains_with_loss_scaling(tmp_path):
    import keras

    from tfseg.losses import FocalLoss
    from tfseg.models import build_model
    from tfseg.training import Trainer
    from tfseg.training.phases import mixed_precision
    from tfseg.training.registries import loss_scaled

    try:
        mixed_precision(True)
        model = build_model({"name": "unet", "input_shape": (32, 32, 3), "num_classes": 4, "encoder": "resnet18",
                             "decoder_filters": (8, 8, 8, 8, 8), "output_activation": "softmax"})
        assert model.layers[1].compute_dtype == "float16" and model.output.dtype == "float32"
        optimizer = loss_scaled(keras.optimizers.AdamW(1e-3), True)
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
        y = rng.integers(0, 4, (4, 32, 32)).astype("int32")
        import tensorflow as tf

        history = Trainer(model, FocalLoss(), optimizer).fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(2),
                                                             epochs=2, verbose=0)
        assert np.all(np.isfinite(history["loss"]))
    finally:
        mixed_precision(False)
    assert keras.mixed_precision.global_policy().name == "float32"
