import os

import h5py
import numpy as np
import pytest
from PIL import Image

from tfseg.errors import ConfigError, DataError
from tfseg.viz.overlays import BOTH_COLOUR, PREDICTION_COLOUR, TRUTH_COLOUR, write_overlay_png, write_overlay_pngs
from tfseg.inference.writers import (read_predictions_hdf5, safe_file_name,
                                     write_predictions_hdf5)

IDS = ["BraTS20_Training_001", "SC-HF-I-1/IM-0001-0048", "тест ü"]


def cases(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(4, 6), (5, 3), (2, 2)]                     # cases may differ in shape
    predictions = [rng.integers(0, 3, s).astype(np.uint8) for s in shapes]
    images = [rng.normal(size=s + (2,)).astype(np.float32) for s in shapes]
    probabilities = [rng.random(s + (3,)).astype(np.float32) for s in shapes]
    return predictions, images, probabilities


def test_hdf5_round_trip_with_string_ids_and_attrs(tmp_path):
    predictions, images, probabilities = cases()
    path = write_predictions_hdf5(tmp_path / "out" / "predictions.h5", IDS, predictions, images=images,
                                  truths=(p for p in predictions), probabilities=probabilities,
                                  attrs={"model": "unet", "classes": ["bg", "a", "b"], "epoch": 12})
    loaded, attrs = read_predictions_hdf5(path, with_attrs=True)
    assert list(loaded) == IDS
    for i, case_id in enumerate(IDS):
        case = loaded[case_id]
        assert sorted(case) == ["image", "prediction", "probabilities", "truth"]
        np.testing.assert_array_equal(case["prediction"], predictions[i])
        assert case["prediction"].dtype == np.uint8
        np.testing.assert_array_equal(case["image"], images[i])
        np.testing.assert_array_equal(case["probabilities"], probabilities[i])
    assert attrs["model"] == "unet" and attrs["epoch"] == 12 and list(attrs["classes"]) == ["bg", "a", "b"]
    assert attrs["num_cases"] == 3
    with h5py.File(path, "r") as handle:                  # ids are real UTF-8 strings, data compressed
        assert h5py.check_string_dtype(handle["ids"].dtype).encoding == "utf-8"
        assert handle["cases/0/prediction"].compression == "gzip"
        assert handle["cases/1"].attrs["id"] == IDS[1]


def test_hdf5_stacked_input_integer_ids_no_compression(tmp_path):
    stacked = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = write_predictions_hdf5(tmp_path / "p.h5", [3, 4], stacked, compression=None)
    loaded = read_predictions_hdf5(path)
    assert list(loaded) == ["3", "4"]
    np.testing.assert_array_equal(loaded["4"]["prediction"], stacked[1])


def test_hdf5_failure_mid_write_leaves_no_file_and_keeps_old_one(tmp_path):
    path = tmp_path / "p.h5"

    def bad_predictions():
        yield np.zeros((2, 2), np.uint8)
        yield np.array(["not", "numbers"])

    with pytest.raises(DataError, match="prediction of case 'b' is not a numeric array"):
        write_predictions_hdf5(path, ["a", "b"], bad_predictions())
    assert os.listdir(tmp_path) == []

    write_predictions_hdf5(path, ["old"], [np.ones((2, 2), np.uint8)])
    with pytest.raises(ConfigError, match="only 1 prediction"):
        write_predictions_hdf5(path, ["a", "b"], (p for p in [np.zeros((2, 2))]))
    assert os.listdir(tmp_path) == ["p.h5"] and list(read_predictions_hdf5(path)) == ["old"]


def test_hdf5_argument_and_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="unique"):
        write_predictions_hdf5(tmp_path / "p.h5", ["a", "a"], [np.zeros(2)] * 2)
    with pytest.raises(ConfigError, match="2 ids but 1 truth"):
        write_predictions_hdf5(tmp_path / "p.h5", ["a", "b"], [np.zeros(2)] * 2, truths=[np.zeros(2)])
    with pytest.raises(ConfigError, match="compression"):
        write_predictions_hdf5(tmp_path / "p.h5", ["a"], [np.zeros(2)], compression="zip")
    with pytest.raises(DataError, match="not found"):
        read_predictions_hdf5(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5"):
        read_predictions_hdf5(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not a tfseg predictions file"):
        read_predictions_hdf5(tmp_path / "other.h5")
    assert sorted(os.listdir(tmp_path)) == ["other.h5", "text.h5"]


def test_overlay_png_outlines(tmp_path):
    image = np.linspace(0, 1, 20 * 24).reshape(20, 24)
    truth = np.zeros((20, 24), np.uint8)
    truth[2:8, 2:8] = 1
    prediction = np.zeros((20, 24), bool)
    prediction[2:8, 2:8] = True                          # same square: yellow outline
    prediction[12:18, 14:20] = True                      # a false positive: red outline
    path = write_overlay_png(tmp_path / "png" / "case.png", np.stack([image, -image], -1), truth, prediction)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb.shape == (20, 24, 3)
    assert tuple(rgb[2, 4]) == BOTH_COLOUR and tuple(rgb[7, 2]) == BOTH_COLOUR
    assert tuple(rgb[12, 16]) == PREDICTION_COLOUR and tuple(rgb[17, 19]) == PREDICTION_COLOUR
    inside = rgb[4:6, 4:6].reshape(-1, 3)               # inside the outline: gray
    assert np.all(inside[:, 0] == inside[:, 1]) and np.all(inside[:, 1] == inside[:, 2])
    assert not np.any(np.all(rgb == TRUTH_COLOUR, axis=-1))

    only_truth = write_overlay_png(tmp_path / "t.png", image, truth=truth, zoom=2)
    rgb = np.asarray(Image.open(only_truth).convert("RGB"))
    assert rgb.shape == (40, 48, 3) and tuple(rgb[4, 8]) == TRUTH_COLOUR


def test_overlay_pngs_and_errors(tmp_path):
    images = np.random.default_rng(0).random((2, 8, 8))
    masks = np.zeros((2, 8, 8), int)
    masks[:, 2:5, 2:5] = 1
    paths = write_overlay_pngs(tmp_path, ["case/1", "case 2"], images, truths=masks, predictions=masks)
    assert [os.path.basename(p) for p in paths] == ["case_1.png", "case_2.png"]
    assert all(Image.open(p).size == (8, 8) for p in paths)
    with pytest.raises(ConfigError, match="same file names"):
        write_overlay_pngs(tmp_path, ["a/b", "a b"], images)
    with pytest.raises(DataError, match=r"truth shape \(8, 7\) differs"):
        write_overlay_png(tmp_path / "bad.png", images[0], truth=masks[0][:, :7])
    with pytest.raises(DataError, match="whole numbers"):
        write_overlay_png(tmp_path / "bad.png", images[0], prediction=images[0])
    with pytest.raises(DataError, match="NaN"):
        write_overlay_png(tmp_path / "bad.png", np.full((4, 4), np.nan))
    assert not (tmp_path / "bad.png").exists()
    assert safe_file_name("a/b c") == "a_b_c"
    with pytest.raises(DataError, match="leaves the output folder"):
        safe_file_name("../x")
