"""Progress output off a terminal: one line per epoch from Trainer.fit, one log line from the bars."""
import io
import logging
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.inference.sliding_window import sliding_window_inference
from tfseg.training import Trainer
from tfseg.training.progress import EpochLine, fit_verbosity
from tfseg.utils.progress import is_terminal, progress_bar


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self):
        return True


def _fit(monkeypatch, stdout, verbose, epochs=3):
    monkeypatch.setattr("sys.stdout", stdout)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, keras.losses.BinaryCrossentropy(), keras.optimizers.SGD(0.1))
    return trainer.fit(data, epochs=epochs, validation_data=data, verbose=verbose)


def test_fit_writes_one_line_per_epoch_when_stdout_is_not_a_terminal(monkeypatch):
    captured = io.StringIO()
    history = _fit(monkeypatch, captured, verbose=1)
    text = captured.getvalue()
    assert "\r" not in text and "\b" not in text
    lines = text.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert re.match(rf"epoch {epoch + 1}/3 - 4/4 - \d+\.\d s - loss \S+ - ", line), line
        assert f"val_loss {history['val_loss'][epoch]:.4g}" in line


def test_fit_draws_the_bar_on_a_terminal(monkeypatch):
    terminal = Terminal()
    _fit(monkeypatch, terminal, verbose=1, epochs=1)
    assert "\r" in terminal.getvalue()                        # Keras' bar, redrawn in place
    assert "epoch 1/1 -" not in terminal.getvalue()


def test_verbosity_rules():
    assert fit_verbosity(1, io.StringIO()) == 2
    assert fit_verbosity(1, Terminal()) == 1
    assert fit_verbosity(0, io.StringIO()) == 0 and fit_verbosity(2, Terminal()) == 2
    assert is_terminal(Terminal()) and not is_terminal(io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)


def test_epoch_line_format():
    stream = io.StringIO()
    line = EpochLine(10, stream=stream)
    line.on_epoch_begin(4)
    for batch in range(3):
        line.on_train_batch_end(batch)
    line.on_epoch_end(4, {"learning_rate": 0.01, "val_loss": 2.0, "dice": np.float32(0.5), "loss": 0.123456,
                          "note": "x"})
    assert re.fullmatch(r"epoch 5/10 - 3/3 - \d+\.\d s - loss 0\.1235 - dice 0\.5 - note x - val_loss 2 - "
                        r"learning_rate 0\.01\n", stream.getvalue())


def test_bars_log_one_line_off_a_terminal(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="tfseg.utils.progress"):
        assert list(progress_bar(iter("abc"), "decode", "img", stream=io.StringIO())) == ["a", "b", "c"]
        volume = np.ones((12, 12, 1), np.float32)
        out = sliding_window_inference(volume, lambda x: x * 2.0, roi_size=4, overlap=0.0, progress=True)
    assert np.all(out == 2.0)
    messages = [r.getMessage() for r in caplog.records if r.name == "tfseg.utils.progress"]
    assert len(messages) == 2 and messages[0].startswith("decode: 3 img in ")
    assert re.match(r"windows: \d+ batch in ", messages[1])
    assert capsys.readouterr().err == ""                       # pytest's captured stderr is no terminal


def test_bar_on_a_terminal_is_tqdm():
    from tqdm.auto import tqdm

    terminal = Terminal()
    bar = progress_bar(range(3), "windows", "batch", stream=terminal)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    assert "windows" in terminal.getvalue()


@pytest.mark.parametrize("verbose", [0, 2])
def test_other_verbosities_unchanged_off_a_terminal(monkeypatch, verbose):
    captured = io.StringIO()
    _fit(monkeypatch, captured, verbose=verbose, epochs=2)
    assert len(captured.getvalue().splitlines()) == (0 if verbose == 0 else 2)
