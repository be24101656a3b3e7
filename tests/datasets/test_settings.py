"""Data-driven settings: the memory model's arithmetic and each rule of suggest_settings."""
import numpy as np
import pytest

from tfseg.datasets.settings import (
    INFERENCE_BYTES_PER_VOXEL_FILTER,
    TRAIN_BYTES_PER_VOXEL_FILTER,
    inference_bytes,
    suggest_settings,
    training_bytes,
)
from tfseg.errors import ConfigError

GiB = 2**30
BRATS = {"spatial_dims": 3, "num_items": 100, "splits": {"training": 80, "validation": 20},
         "shape": {"median": [155, 240, 240], "max": [155, 240, 240]},
         "label_bbox": {"median": [50, 70, 60]}, "nonzero_bbox": {"median": [140, 170, 140]}}


def test_memory_model_arithmetic():
    assert training_bytes((8, 8, 8), 2, 16, channels=4) == 2 * 512 * (TRAIN_BYTES_PER_VOXEL_FILTER * 16 + 32)
    assert inference_bytes((8, 8), 16) == 64 * (INFERENCE_BYTES_PER_VOXEL_FILTER * 16 + 8)


def test_large_budget_takes_the_nonzero_box_and_the_whole_volume():
    s = suggest_settings(BRATS, 64 * GiB, channels=4, init_filters=16)
    assert s.crop == (144, 176, 144)          # the box rounded up to the stride 8
    assert s.batch_size == 2 and s.levels == 4 and s.stride == 8
    assert s.inference_window == (160, 240, 240) and s.whole_volume
    assert s.train_bytes <= 64 * GiB and s.inference_bytes <= 64 * GiB
    assert s.steps_per_epoch == 40            # 80 items x 1 crop / batch 2
    assert "fits" in s.why["crop"] and "covers the median label box" in s.why["crop"]


def test_small_budget_shrinks_but_keeps_the_label_box_then_slides():
    s = suggest_settings(BRATS, 4 * GiB, channels=4, init_filters=16)
    assert all(c % 8 == 0 for c in s.crop)
    assert all(c >= b for c, b in zip(s.crop, BRATS["label_bbox"]["median"]))
    assert s.train_bytes <= 4 * GiB and s.batch_size == 2
    assert not s.whole_volume and s.inference_bytes <= 4 * GiB
    assert all(w >= c for w, c in zip(s.inference_window, s.crop))
    assert s.steps_per_epoch > 40             # more crops to cover the box
    assert "shrunk to fit" in s.why["crop"] and "over the budget" in s.why["inference_window"]


def test_tiny_budget_goes_below_the_label_box_with_batch_one_and_fewer_levels():
    s = suggest_settings(BRATS, 100 * 2**20, channels=4, init_filters=16)
    assert s.batch_size == 1
    assert "smaller than the median label box" in s.why["crop"]
    assert s.levels == max(1, min(4, 1 + int(np.floor(np.log2(min(s.crop) / 4)))))
    with pytest.raises(ConfigError, match="budget"):
        suggest_settings(BRATS, 2**20, init_filters=16)


def test_2d_batch_grows_to_fill_the_budget():
    fp = {"spatial_dims": 2, "num_items": 400, "shape": {"median": [256, 256], "max": [256, 256]},
          "label_bbox": {"median": [30, 30]}, "nonzero_bbox": {"median": None}, "splits": {}}
    s = suggest_settings(fp, 2 * GiB, channels=3, init_filters=16, max_levels=5)
    assert s.crop == (256, 256) and s.levels == 5
    assert s.batch_size == min(16, int(2 * GiB // training_bytes((256, 256), 1, 16, 3)))
    assert s.batch_size == 5 and s.steps_per_epoch == 80     # 2 GiB / 367 MiB per slice; 400 / 5
    assert "crop:" in s.describe()
