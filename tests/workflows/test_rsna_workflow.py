"""Steps of the RSNA two-stage workflow that need no training: stage-2 patients and a series' chunks."""
import dataclasses

import numpy as np
import pytest

from tfseg.workflows import rsna


@pytest.fixture
def config(tmp_path):
    base = rsna.RsnaConfig()
    return dataclasses.replace(
        base, output_dir=str(tmp_path),
        stage1=dataclasses.replace(base.stage1, data=dataclasses.replace(base.stage1.data, synthetic_cases=4)),
        data=rsna.Stage2Data(synthetic_train=6, synthetic_test=1, synthetic_shape=(16, 16, 16), synthetic_overlap=2,
                             val_fraction=0.34),
        sequence=rsna.SequenceSection(image_size=8, chunk_length=3, chunk_stride=2))


def test_stage2_patients_leave_out_stage1_cases_and_shuffle_is_a_permutation(config):
    cases = [f"BraTS2021_{k:05d}" for k in range(4)]            # the synthetic ids start at 4 - overlap = 2
    patients = rsna.find_data(config, cases)
    ids = [p.patient for p in patients.train + patients.val]
    assert sorted(ids) == ["00004", "00005", "00006", "00007"] and [p.patient for p in patients.test] == ["00008"]
    assert {p.label for p in patients.val} == {0, 1}
    kept = rsna.find_data(dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                                  drop_stage1_patients=False)), cases)
    assert len(kept.train + kept.val) == 6
    shuffled = rsna.find_data(dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                                      shuffle_labels=True)), [])
    labels = {p.patient: p.label for p in kept.train + kept.val}
    assert sorted(p.label for p in shuffled.train + shuffled.val) == sorted(labels.values())


def test_series_chunks_keep_tumour_slices_as_image_wt_et(config):
    volume = np.ones((10, 16, 16), np.float32)
    volume[:, :, :2] = 0                                            # outside the brain

    def serve(images):                                             # a stand-in segmenter: tumour on slices 2..6
        assert images.shape[1:] == (16, 16, 3) and np.all(images[..., 0] == images[..., 2])
        wt = np.zeros(images.shape[:3], np.float32)
        wt[2:7, 4:8, 4:8] = 0.9
        return {"probabilities": np.stack([wt, wt * 0.5], axis=-1)}

    chunks, kept = rsna.series_chunks(config, volume, serve)
    assert kept == 5                                                # 16 / 224 brain pixels > 0.025
    assert chunks.shape == (2, 3, 8, 8, 3)                          # slices 0-2 and 2-4 of the kept five
    wt, et = chunks[..., 1], chunks[..., 2]
    assert 0.5 < wt.max() <= 0.9 and et.max() == pytest.approx(wt.max() / 2)   # antialiased 16 -> 8 resize
    assert chunks[..., 0].max() <= 1.0 and chunks[..., 0].min() >= 0.0

    def empty(images):
        return {"probabilities": np.zeros(images.shape[:3] + (2,), np.float32)}

    chunks, kept = rsna.series_chunks(config, volume, empty)       # nothing passes: the first slices instead
    assert kept == 0 and chunks.shape == (1, 3, 8, 8, 3)
