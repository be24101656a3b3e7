import os

import numpy as np
import pytest
from PIL import Image

from tfseg.errors import ConfigError, DataError
from tfseg.viz.curves import plot_training_curves, read_history

CSV = """epoch,dice,learning_rate,loss,val_dice,val_loss
0,0.21,0.001,0.93,0.18,0.97
1,0.55,0.001,0.61,0.49,0.70
2,0.68,0.0005,0.45,0.60,0.58
"""


def write(tmp_path, text, name="history.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_read_history_values_and_resume_duplicates(tmp_path):
    path = write(tmp_path, CSV + "2,0.70,0.0005,0.44,0.62,0.57\n3,0.72,NA,0.40,NA,NA\n")
    history = read_history(path)
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["loss"].tolist() == [0.93, 0.61, 0.44, 0.40]          # last row of epoch 2 wins
    assert np.isnan(history["val_loss"][3]) and np.isnan(history["learning_rate"][3])


def test_plot_from_keras_csv_logger(tmp_path):
    import keras

    path = str(tmp_path / "history.csv")
    logger = keras.callbacks.CSVLogger(path)
    logger.on_train_begin()
    for epoch, (loss, dice) in enumerate([(0.9, 0.2), (0.6, 0.5), (0.5, 0.6)]):
        logger.on_epoch_end(epoch, {"loss": loss, "dice": dice, "val_loss": loss + 0.1, "val_dice": dice - 0.1,
                                    "learning_rate": 1e-3 / (epoch + 1), "per_class": np.array([0.1, 0.2])})
    logger.on_train_end()
    history = read_history(path)
    assert "per_class" not in history and history["val_dice"].tolist() == pytest.approx([0.1, 0.4, 0.5])

    out = plot_training_curves(path, tmp_path / "plots" / "curves.png")
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 2.5 * height                       # three panels in one row: loss, dice, learning rate
    assert [p for p in os.listdir(tmp_path / "plots")] == ["curves.png"]


def test_plot_dict_selected_metrics_and_lines_drawn(tmp_path):
    history = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.2, 0.8, 0.7], "iou": [0.1, 0.3, 0.5]}
    out = plot_training_curves(history, tmp_path / "loss.png", metrics=["loss"])
    with Image.open(out) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    # matplotlib's tab:blue (31,119,180) and tab:orange (255,127,14) lines are both drawn
    assert np.any(np.all(np.abs(rgb - (31, 119, 180)) < 10, axis=-1))
    assert np.any(np.all(np.abs(rgb - (255, 127, 14)) < 10, axis=-1))
    single = np.asarray(Image.open(out)).shape
    both = np.asarray(Image.open(plot_training_curves(history, tmp_path / "both.png"))).shape
    assert both[1] > single[1]


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("epoch,loss\n", "no epochs"),
    ("loss,val_loss\n0.5,0.6\n", "no 'epoch' column"),
    ("epoch,loss\n0,0.5\n1,0.4,0.3\n", "expected 2 fields"),
    ("epoch,loss\n0,0.5\n1,abc\n", "not a number"),
])
def test_bad_csv_raises_data_error(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        plot_training_curves(path, tmp_path / "out.png")
    assert info.value.path == path
    assert not (tmp_path / "out.png").exists()


def test_bad_line_number_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"history.csv:3: column 'loss'"):
        read_history(write(tmp_path, "epoch,loss\n0,0.5\n1,abc\n"))
    with pytest.raises(DataError, match="not found"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "out.png")


def test_unknown_metric_and_bad_dict(tmp_path):
    with pytest.raises(ConfigError, match=r"\['hd95'\] are not in the history"):
        plot_training_curves({"loss": [1.0]}, tmp_path / "a.png", metrics=["hd95"])
    with pytest.raises(ConfigError, match="differ in length"):
        plot_training_curves({"loss": [1.0, 0.5], "val_loss": [1.0]}, tmp_path / "a.png")
