"""A BraTS case whose modality is truncated after an intact header: reported by path, never lost silently."""
import os

import numpy as np
import pytest

from tfseg.datasets.synthetic import write_brats
from tfseg.errors import DataError
from tfseg.utils.problems import ProblemLog


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Three cases; case 1's t1ce keeps its header but loses the second half of its gzip stream."""
    data = write_brats(tmp_path_factory.mktemp("brats"), num_cases=3, shape=(16, 16, 16), seed=1)
    path = data.cases[1].images[1]
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[:len(content) // 2])
    return data.cases, path


def _dataset(cases, on_error, problems=None, **kwargs):
    from tfseg.data.pipeline3d import brats_dataset

    return brats_dataset(cases, crop_size=(16, 16, 16), batch_size=1, seed=0, on_error=on_error, problems=problems,
                         num_parallel_reads=2, **kwargs)


def test_the_damaged_file_passes_the_header_check(damaged):
    from tfseg.data.pipeline3d import check_cases

    cases, _ = damaged
    assert len(check_cases(cases)[0]) == 3  # so only decoding can find it


@pytest.mark.parametrize("cache", [False, True])
def test_skip_reports_the_file_once_and_keeps_the_epoch_length(damaged, cache):
    cases, path = damaged
    log = ProblemLog("skip")
    dataset = _dataset(cases, "skip", log, cache=cache)
    assert int(dataset.cardinality()) == 3  # known length: learning-rate schedules count on it
    for _ in range(2):  # two epochs: the case fails each time, is reported once
        batches = list(dataset)
        assert len(batches) == 3
        assert all(np.isfinite(image.numpy()).all() and image.shape == (1, 16, 16, 16, 4) for image, _ in batches)
    assert len(log) == 1
    record = log.records()[0]
    assert record["path"] == path
    assert "case BraTS2021_00001" in record["reason"] and "truncated" in record["reason"]
    assert [c.case_id for c in log.usable(cases)] == ["BraTS2021_00000", "BraTS2021_00002"]


def test_validation_under_skip_leaves_the_case_out(damaged):
    cases, path = damaged
    log = ProblemLog("skip")
    batches = list(_dataset(cases, "skip", log, training=False))
    assert len(batches) == 2
    assert [p.path for p in log.problems] == [path]


def test_raise_gives_the_data_error_naming_the_file_through_the_trainer(damaged):
    import keras

    from tfseg.training import Trainer

    cases, path = damaged
    inputs = keras.Input((16, 16, 16, 4))
    model = keras.Model(inputs, keras.layers.Conv3D(3, 1, activation="sigmoid")(inputs))
    trainer = Trainer(model, keras.losses.BinaryCrossentropy(), keras.optimizers.SGD(0.1))
    with pytest.raises(DataError) as caught:
        trainer.fit(_dataset(cases[1:2] + cases[:1], "raise"), epochs=1, verbose=0)
    assert caught.value.path == path
    assert "truncated" in caught.value.reason and "tfseg data error" not in caught.value.reason
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_every_case_damaged_is_one_data_error(damaged):
    cases, path = damaged
    with pytest.raises(DataError, match="none of the 1 cases could be decoded"):
        from tfseg.training.trainer import next_batch

        next_batch(iter(_dataset(cases[1:2], "skip", ProblemLog("skip"))))


def test_missing_modality_names_the_missing_file(tmp_path):
    from tfseg.datasets.brats import find_brats

    data = write_brats(tmp_path, num_cases=2, shape=(16, 16, 16))
    missing = data.cases[0].images[0]
    os.remove(missing)
    with pytest.raises(DataError) as caught:
        find_brats(data.root, on_error="raise")
    assert caught.value.path == missing and "missing t1 image" in caught.value.reason


def test_brats_workflow_lists_the_skipped_file_and_counts_what_it_trains_on(damaged, tmp_path):
    import json

    from tfseg.training.config import from_dict
    from tfseg.workflows import brats

    cases, path = damaged
    listing = tmp_path / "datalist.json"
    entry = lambda c: {"image": list(c.images), "label": c.label}  # noqa: E731
    listing.write_text(json.dumps({"training": [entry(c) for c in cases], "validation": [entry(cases[0])]}))
    config = from_dict(brats.BratsConfig, {"data": {"datalist": str(listing), "crop_size": [16, 16, 16],
                                                    "cache": False, "on_error": "skip"},
                                           "train": {"batch_size": 1}, "output_dir": str(tmp_path / "run")})
    data = brats.find_data(config)
    train_ds, _ = brats.make_datasets(config, data)
    assert sum(1 for _ in train_ds) == 3
    assert data.problems.records() == [{"path": path, "reason": data.problems.problems[0].reason}]
    assert [c.case_id for c in data.problems.usable(data.train)] == ["BraTS2021_00000", "BraTS2021_00002"]
