"""Training progress for logs: one line per epoch where a progress bar would redraw.

Keras' progress bar redraws many times per epoch; when standard output is not a terminal
(redirected to a file, a batch job, CI) each redraw stays in the log. `Trainer.fit` then uses
`EpochLine` instead, which writes one line at the end of each epoch.

Example:
    >>> import io
    >>> stream = io.StringIO()
    >>> line = EpochLine(epochs=3, stream=stream)
    >>> line.on_epoch_begin(0)
    >>> line.on_epoch_end(0, {"loss": 0.51234, "val_dice": 0.8})
    >>> print(stream.getvalue(), end="")
    epoch 1/3 - ... s - loss 0.5123 - val_dice 0.8
    >>> fit_verbosity(1, io.StringIO())
    2
"""
import sys
import time

import keras

from tfseg.utils.progress import is_terminal

__all__ = ["EpochLine", "fit_verbosity"]


def fit_verbosity(verbose, stream=None):
    """The verbosity `Trainer.fit` uses: 1 (a bar) becomes 2 (one line per epoch) off a terminal.

    Args:
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        stream: where the output goes; default `sys.stdout`.

    Returns:
        0, 1 or 2.
    """
    if verbose == 1 and not is_terminal(stream):
        return 2
    return verbose


class EpochLine(keras.callbacks.Callback):
    """Write `epoch E/N - steps/total - S s - name value - ...` at the end of every epoch.

    The logs are written loss first, then the other training figures, the `val_` figures and the
    learning rate, each group in the order Keras gives them.

    Args:
        epochs: the total number of epochs, shown as N.
        stream: where to write; default `sys.stdout` at the time of writing.
    """

    def __init__(self, epochs, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream
        self._started = None
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._started or time.perf_counter())
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        if self._steps:  # steps done / steps per epoch (learned in the first pass when unknown)
            parts.append(f"{self._steps}/{(self.params or {}).get('steps') or self._steps}")
        parts.append(f"{seconds:.1f} s")
        logs = logs or {}
        parts += [f"{name} {_number(logs[name])}" for name in sorted(logs, key=_log_order)]
        stream = sys.stdout if self.stream is None else self.stream
        stream.write(" - ".join(parts) + "\n")
        stream.flush()


def _log_order(name):
    """Loss first, then the metrics, the validation figures, and the learning rate last."""
    base = name[4:] if name.startswith("val_") else name
    return (name == "learning_rate", name.startswith("val_"), base != "loss")


def _number(value):
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
