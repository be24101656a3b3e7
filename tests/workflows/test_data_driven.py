"""Sizes that follow a user's data: BraTS crops, batch and depth planned from the dataset's fingerprint."""
import numpy as np
import pytest

from tfseg.datasets.synthetic_mni import write_mni_brats
from tfseg.workflows import brats
from tfseg.workflows.entry import resolve_config


@pytest.fixture(scope="module")
def mni_root(tmp_path_factory):
    return write_mni_brats(tmp_path_factory.mktemp("mni"), num_cases=3, spacing=6.0).root


def test_brats_crop_follows_the_data_and_explicit_flags_win(mni_root, caplog):
    defaults = brats.CPU_DEFAULTS
    with caplog.at_level("INFO"):
        planned = resolve_config("brats", ["--data-dir", str(mni_root)])
    assert "sizes planned from the dataset" in caplog.text
    shape = np.array(brats.read_case_image(brats.find_data(planned).train[0])[0].shape[:3])
    crop = np.array(planned.data.crop_size)
    assert tuple(crop) != tuple(defaults.data.crop_size)
    stride = 2 ** len(planned.model.blocks_down)  # the VAE branch halves the encoder's end once more
    assert np.all(crop % stride == 0) and np.all(crop <= -(-shape // stride) * stride)
    # the synthetic default is left alone; an explicit crop is kept
    assert resolve_config("brats", []).data.crop_size == defaults.data.crop_size
    kept = resolve_config("brats", ["--data-dir", str(mni_root), "--crop-size", "16", "16", "16"])
    assert kept.data.crop_size == (16, 16, 16) and kept.train.batch_size == defaults.train.batch_size


def test_inference_window_is_not_the_training_crop():
    import dataclasses

    config = brats.CPU_DEFAULTS
    window = brats.inference_window((150, 180, 150), config)
    assert np.prod(window) > 20 * np.prod(config.data.crop_size)
    roomy = dataclasses.replace(config, inference=dataclasses.replace(config.inference, memory_mb=8192))
    assert brats.inference_window((150, 180, 150), roomy) == (152, 184, 152)  # the whole brain box at once
