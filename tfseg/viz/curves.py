"""Training curves: loss, metrics and learning rate per epoch, train and validation together, as PNG.

The history is a Keras `CSVLogger` file (`history.csv`, written by the trainer's default callbacks:
columns `epoch`, `loss`, `val_loss`, `dice`, `val_dice`, ..., `learning_rate`) or a dict of
per-epoch lists (e.g. `keras.callbacks.History.history`).

Reading rules for the CSV:

- A run resumed after a crash appends to the same file and may repeat epochs: the last row of each
  epoch wins, and rows are sorted by epoch.
- Cells Keras writes for missing values (`NA`, empty) become NaN, so the line has a gap there.
- Columns holding lists (per-class values, written as `"[0.1, 0.2]"`) are left out of the plot.
- Anything else that is not a number is a `DataError` naming the file and line.

Example:
    >>> import os, tempfile
    >>> history = {"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6],
    ...            "dice": [0.2, 0.6, 0.7], "val_dice": [0.1, 0.5, 0.6], "learning_rate": [1e-3, 1e-3, 1e-4]}
    >>> path = plot_training_curves(history, os.path.join(tempfile.mkdtemp(), "curves.png"))
    >>> os.path.getsize(path) > 0
    True
"""
import csv
import logging
import math
import os

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

#: Column names of the learning rate (Keras 3 trainers log `learning_rate`, older ones `lr`).
LEARNING_RATE_KEYS = ("learning_rate", "lr")
_MISSING = ("", "na", "nan", "none")


def _parse_cell(text, path, line, column):
    """A float from one CSV cell; None for a list cell; raises DataError for anything else."""
    value = text.strip()
    if value.lower() in _MISSING:
        return math.nan
    if value.startswith("[") or value.startswith('"['):
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(path, f"column {column!r} holds {value!r}, not a number", line=line) from None


def read_history(path):
    """Read a Keras `CSVLogger` history file into per-epoch arrays.

    Args:
        path: the `history.csv` file.

    Returns:
        A dict mapping each numeric column to a float64 array, one value per epoch, sorted by
        `epoch` (which is included; 0-based as Keras writes it). Repeated epochs keep their last row.

    Raises:
        DataError: the file is missing, empty, has no epoch rows, a row has the wrong number of
            fields, or a cell is not a number.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
        >>> _ = open(path, "w").write("epoch,loss,val_loss\\n0,0.9,1.0\\n1,0.5,0.7\\n1,0.45,0.65\\n")
        >>> read_history(path)["loss"].tolist()                 # epoch 1 was logged twice (resume)
        [0.9, 0.45]
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "history file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(path, f"cannot read the history file: {error}") from None
    rows = [(number, row) for number, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(path, "the history file is empty (no header, no epochs)")
    _, header = rows[0]
    header = [name.strip() for name in header]
    if "epoch" not in header:
        raise DataError(path, f"no 'epoch' column in the header {header} (not a Keras CSVLogger file?)", line=1)
    if len(set(header)) != len(header):
        raise DataError(path, f"repeated column names in the header {header}", line=1)
    if len(rows) == 1:
        raise DataError(path, "the history file has a header but no epochs")
    by_epoch = {}
    skipped = set()
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} fields as in the header, got {len(row)}", line=number)
        values = {}
        for name, cell in zip(header, row):
            value = _parse_cell(cell, path, number, name)
            if value is None:
                skipped.add(name)
            else:
                values[name] = value
        epoch = values["epoch"]
        if not math.isfinite(epoch) or epoch != int(epoch):
            raise DataError(path, f"epoch {row[header.index('epoch')]!r} is not a whole number", line=number)
        by_epoch[int(epoch)] = values       # a resumed run repeats epochs: the last row wins
    if skipped:
        logger.debug("%s: columns %s hold lists and are not plotted", path, sorted(skipped))
    epochs = sorted(by_epoch)
    names = [name for name in header if name not in skipped]
    return {name: np.array([by_epoch[e].get(name, math.nan) for e in epochs], np.float64) for name in names}


def _history_arrays(history):
    """Per-epoch float arrays (with an `epoch` entry) from a path, a dict of lists or a History."""
    if isinstance(history, (str, os.PathLike)):
        return read_history(history)
    history = getattr(history, "history", history)      # keras.callbacks.History
    if not isinstance(history, dict):
        raise ConfigError(f"history must be a CSV path or a dict of per-epoch lists, got {type(history).__name__}")
    arrays = {}
    for name, values in history.items():
        try:
            array = np.asarray(values, np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"history[{name!r}] is not a list of numbers") from None
        if array.ndim != 1:
            logger.debug("history[%r] is not one number per epoch; not plotted", name)
            continue
        arrays[str(name)] = array
    lengths = {len(a) for a in arrays.values()}
    if not arrays or lengths == {0}:
        raise ConfigError("history holds no epochs")
    if len(lengths) != 1:
        raise ConfigError(f"history lists differ in length: { {n: len(a) for n, a in arrays.items()} }")
    if "epoch" not in arrays:
        arrays["epoch"] = np.arange(lengths.pop(), dtype=np.float64)
    return arrays


def _quantities(arrays, metrics):
    """The panels to draw: (name, train key or None, val key or None, log scale)."""
    lr_key = next((key for key in LEARNING_RATE_KEYS if key in arrays), None)
    base = [key for key in arrays if key != "epoch" and key != lr_key and not key.startswith("val_")]
    base += [key[4:] for key in arrays if key.startswith("val_") and key[4:] not in arrays and key[4:] != lr_key]
    if metrics is None:
        chosen = (["loss"] if "loss" in base else []) + [key for key in base if key != "loss"]
    else:
        if isinstance(metrics, str):
            metrics = [metrics]
        unknown = [m for m in metrics if m not in base and m not in LEARNING_RATE_KEYS]
        if unknown:
            raise ConfigError(f"metrics {unknown} are not in the history; it has {sorted(base)}")
        chosen = [m for m in metrics if m not in LEARNING_RATE_KEYS]
    panels = [(name, name if name in arrays else None, f"val_{name}" if f"val_{name}" in arrays else None, False)
              for name in chosen]
    if lr_key is not None and (metrics is None or any(m in LEARNING_RATE_KEYS for m in metrics)):
        values = arrays[lr_key][np.isfinite(arrays[lr_key])]
        panels.append(("learning rate", lr_key, None, bool(values.size) and bool(np.all(values > 0))))
    if not panels:
        raise ConfigError(f"nothing to plot: the history has only {sorted(arrays)}")
    return panels


def plot_training_curves(history, path, metrics=None, title=None, columns=None, dpi=100):
    """Plot one panel per quantity (loss, each metric, learning rate), train and validation together.

    Args:
        history: path to a Keras `CSVLogger` file (`history.csv`), a dict of per-epoch lists, or a
            `keras.callbacks.History`.
        path: PNG file to write (atomically; its folder is created).
        metrics: names to plot (e.g. `["loss", "dice"]`, without the `val_` prefix; add
            `"learning_rate"` to include it). Default: loss, every other logged quantity, and the
            learning rate when logged.
        title: figure title; default: the CSV's file name when `history` is a path.
        columns: panels per row; default: all in one row up to 3, then 3 per row.
        dpi: resolution of the PNG.

    Returns:
        `path`.

    Raises:
        DataError: the CSV is missing, empty or malformed (see `read_history`).
        ConfigError: a requested metric is not in the history, or the dict is malformed.

    Example:
        >>> import os, tempfile
        >>> out = os.path.join(tempfile.mkdtemp(), "loss.png")
        >>> plot_training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.8]}, out) == out
        True
    """
    arrays = _history_arrays(history)
    panels = _quantities(arrays, metrics)
    if title is None and isinstance(history, (str, os.PathLike)):
        title = os.path.basename(os.fspath(history))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = columns or min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.5 * rows), squeeze=False)
    epochs = arrays["epoch"]
    for axis, (name, train_key, val_key, log_scale) in zip(axes.flat, panels):
        markers = "o" if len(epochs) < 20 else None
        if train_key is not None:
            axis.plot(epochs, arrays[train_key], marker=markers, markersize=3, color="tab:blue",
                      label="train" if val_key else name)
        if val_key is not None:
            axis.plot(epochs, arrays[val_key], marker=markers, markersize=3, color="tab:orange", label="validation")
        if log_scale:
            axis.set_yscale("log")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(True, alpha=0.3)
        if val_key is not None:
            axis.legend()
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    logger.info("wrote training curves (%s) to %s", ", ".join(p[0] for p in panels), path)
    return os.fspath(path)


def plot_run_curves(output_dir):
    """Plot `<output_dir>/history.csv` to `<output_dir>/curves.png`; returns the path (None without a history).

    Example:
        >>> plot_run_curves("/nonexistent-run") is None
        True
    """
    history = os.path.join(output_dir, "history.csv")
    if not os.path.exists(history):
        return None
    path = os.path.join(output_dir, "curves.png")
    plot_training_curves(history, path)
    return path
