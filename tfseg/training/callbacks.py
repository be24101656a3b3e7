"""Callbacks for `tfseg.training.Trainer`: epoch checkpoints, the best model, TensorBoard scalars.

The trainer drives ordinary `keras.callbacks.Callback`s, so Keras' CSVLogger, EarlyStopping and
ReduceLROnPlateau work with it unchanged (the trainer attaches its optimizer as
`model.optimizer`, where they look for the learning rate). This module adds:

- `EpochCheckpoint`: a resumable checkpoint every epoch (`CheckpointManager`) and, if asked, the
  best model by a monitored metric as a `.keras` file;
- `TensorBoardLogger`: epoch (and every-N-step) scalars in TensorBoard's format, written with
  TensorFlow alone (Keras' TensorBoard callback needs the separate `tensorboard` package even
  to write scalars);
- `default_callbacks(output_dir)`: history.csv, TensorBoard logs, checkpoints, and optionally
  ReduceLROnPlateau / EarlyStopping, in an order that makes resumed runs exact;
- `current_learning_rate(optimizer)` and the state helpers used to resume callbacks.

Example:
    >>> import tempfile
    >>> [type(c).__name__ for c in default_callbacks(tempfile.mkdtemp())]
    ['CSVLogger', 'TensorBoardLogger', 'EpochCheckpoint']
"""
import collections
import csv
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfseg.errors import ConfigError
from tfseg.training.checkpoint import CheckpointManager
from tfseg.utils.atomic import atomic_path, atomic_save_model

logger = logging.getLogger(__name__)

# Attributes that make up the progress of Keras callbacks whose `on_train_begin` resets them.
_KERAS_STATE = {
    keras.callbacks.ReduceLROnPlateau: ("best", "wait", "cooldown_counter"),
    keras.callbacks.EarlyStopping: ("best", "wait", "best_epoch", "stopped_epoch"),
}


def current_learning_rate(optimizer):
    """The learning rate the optimizer will use for its next step, as a float.

    Works for a float learning rate (a variable) and for a `LearningRateSchedule`, which is
    evaluated at `optimizer.iterations`.

    Example:
        >>> import keras
        >>> schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
        >>> optimizer = keras.optimizers.SGD(schedule)
        >>> _ = optimizer.iterations.assign(2)
        >>> round(current_learning_rate(optimizer), 6)
        0.025
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _plain(value):
    """A JSON-friendly copy of a callback attribute (numpy scalars to floats)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy()).tolist()
    return value


def _callback_keys(callbacks):
    """Stable names for callbacks: class name plus its rank among callbacks of that class."""
    counts = {}
    keys = []
    for callback in callbacks:
        name = type(callback).__name__
        keys.append(f"{name}_{counts.get(name, 0)}")
        counts[name] = counts.get(name, 0) + 1
    return keys


def callbacks_state(callbacks):
    """The resumable progress of callbacks (ReduceLROnPlateau/EarlyStopping counters, and any
    callback with `get_resume_state()`), as a JSON-friendly dict."""
    state = {}
    for key, callback in zip(_callback_keys(callbacks), callbacks):
        if hasattr(callback, "get_resume_state"):
            state[key] = callback.get_resume_state()
            continue
        for cls, attrs in _KERAS_STATE.items():
            if isinstance(callback, cls):
                state[key] = {a: _plain(getattr(callback, a, None)) for a in attrs}
    return state


def restore_callbacks_state(callbacks, state):
    """Give callbacks back the progress saved by `callbacks_state` (call after `on_train_begin`)."""
    state = state or {}
    for key, callback in zip(_callback_keys(callbacks), callbacks):
        saved = state.get(key)
        if saved is None:
            continue
        if hasattr(callback, "set_resume_state"):
            callback.set_resume_state(saved)
            continue
        for name, value in saved.items():
            if value is not None:
                setattr(callback, name, value)


def _csv_value(value):
    """A log value as Keras' CSVLogger writes it (lists as a quoted "[a, b]")."""
    if isinstance(value, str) or np.ndim(value) == 0:
        return value
    return f'"[{", ".join(map(str, value))}]"'


def rewrite_csv_history(path, history, separator=","):
    """Rewrite a `history.csv` to hold exactly the epochs of `history`, as Keras' CSVLogger writes them.

    A run killed after its CSVLogger wrote an epoch's row but before that epoch's checkpoint
    resumes from the previous checkpoint and runs the epoch again: without this, the file would
    hold that epoch twice. The trainer calls it before training with the restored history (an
    empty history removes the file, so a run started afresh does not append to an old one).

    Args:
        path: the CSV file.
        history: `{log name: [one value per epoch]}` (the checkpoint's history).
        separator: the CSVLogger's `sep`.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
        >>> rewrite_csv_history(path, {"loss": [0.5, 0.25], "val_loss": [0.6, 0.3]})
        >>> open(path).read().splitlines()
        ['epoch,loss,val_loss', '0,0.5,0.6', '1,0.25,0.3']
    """
    path = os.fspath(path)
    epochs = max((len(v) for v in history.values()), default=0)
    if not epochs:
        if os.path.exists(path):
            logger.info("%s: starting a new history", path)
            os.remove(path)
        return
    keys = sorted(history)
    if not any(k.startswith("val_") for k in keys):  # as CSVLogger, which adds the val_ columns
        keys.extend(f"val_{k}" for k in list(keys))

    class Dialect(csv.excel):
        delimiter = separator

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["epoch", *keys], dialect=Dialect)
            writer.writeheader()
            for epoch in range(epochs):
                row = collections.OrderedDict(epoch=epoch)
                for key in keys:
                    values = history.get(key, [])
                    row[key] = _csv_value(values[epoch]) if epoch < len(values) else "NA"
                writer.writerow(row)


def output_folders(callbacks):
    """The folders the callbacks write into (checkpoints, the best model, history, logs' parent)."""
    folders = []
    for callback in callbacks:
        if isinstance(callback, EpochCheckpoint):
            folders.append(callback.manager.directory)
            if callback.best_path:
                folders.append(os.path.dirname(os.path.abspath(callback.best_path)))
        elif isinstance(callback, keras.callbacks.CSVLogger):
            folders.append(os.path.dirname(os.path.abspath(callback.filename)))
    return list(dict.fromkeys(folders))


class EpochCheckpoint(keras.callbacks.Callback):
    """Save a resumable checkpoint after every epoch and, optionally, the best model.

    Use it with `Trainer.fit(..., resume=True)`: the checkpoint holds the weights, the optimizer
    (iterations included), the epoch, the history, the best monitored value and the progress of
    the other callbacks given to `track` (the trainer does this for you), so a resumed run ends
    with the same weights as an uninterrupted one.

    Args:
        manager: a `CheckpointManager`, or a folder for one.
        optimizer: the optimizer to save; default `model.optimizer` (the trainer attaches it).
        best_path: if set, a `.keras` file overwritten (atomically) each time `monitor` improves.
        monitor: the log key to watch for the best model, e.g. "val_dice" or "val_loss".
        mode: "max" or "min".
        every: save a checkpoint every `every` epochs (the last epoch of a run is always saved).
        state: extra JSON values stored in every checkpoint (a seed, the config).
        is_chief: only the chief writes files; other workers keep the same bookkeeping silently.

    Example:
        >>> import tempfile
        >>> callback = EpochCheckpoint(tempfile.mkdtemp(), monitor="val_loss", mode="min")
        >>> callback.best
        inf
    """

    def __init__(self, manager, optimizer=None, best_path=None, monitor="val_dice", mode="max", every=1,
                 state=None, is_chief=True):
        super().__init__()
        if mode not in ("max", "min"):
            raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be a positive integer, got {every!r}")
        if best_path is not None and not os.fspath(best_path).endswith(".keras"):
            raise ConfigError(f"best_path must end in '.keras', got {best_path!r}")
        self.manager = manager if isinstance(manager, CheckpointManager) else CheckpointManager(manager)
        self.optimizer = optimizer
        self.best_path = None if best_path is None else os.fspath(best_path)
        self.monitor = monitor
        self.mode = mode
        self.every = every
        self.extra_state = dict(state or {})
        self.is_chief = is_chief
        self.best = -math.inf if mode == "max" else math.inf
        self.history = {}
        self.peers = []
        self._warned_missing = False

    def track(self, callbacks):
        """Also save (and on resume restore) the progress of these callbacks."""
        self.peers = [c for c in callbacks if c is not self]

    def restore(self, state):
        """Take the history and best value from a checkpoint's state (called on resume)."""
        self.history = {k: list(v) for k, v in (state.get("history") or {}).items()}
        best = state.get("best")
        if best is not None and state.get("monitor", self.monitor) == self.monitor:
            self.best = best

    def _improved(self, value):
        if value is None or not math.isfinite(value):
            return False
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(_plain(value))
        if self.best_path is not None:
            value = logs.get(self.monitor)
            if value is None and not self._warned_missing:
                logger.warning("best model not saved: %r is not in the logs (%s)", self.monitor, ", ".join(logs))
                self._warned_missing = True
            elif self._improved(float(value) if value is not None else None):
                logger.info("epoch %d: %s improved from %.5g to %.5g, saving %s",
                            epoch + 1, self.monitor, self.best, value, self.best_path)
                self.best = float(value)
                if self.is_chief:
                    atomic_save_model(self.model, self.best_path, include_optimizer=False)
        completed = epoch + 1
        last = completed == self.params.get("epochs") if self.params else False
        if not self.is_chief or (completed % self.every and not last and not self.model.stop_training):
            return
        optimizer = self.optimizer or getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ConfigError("EpochCheckpoint needs an optimizer: pass optimizer= or attach it as model.optimizer")
        state = {**self.extra_state, "history": self.history, "best": self.best, "monitor": self.monitor,
                 "callbacks": callbacks_state(self.peers)}
        self.manager.save(completed, self.model, optimizer, state)


class TensorBoardLogger(keras.callbacks.Callback):
    """Write training scalars for TensorBoard: every epoch, and every `update_freq` steps if asked.

    Epoch values go to `<log_dir>/train` as `epoch_<name>` (the learning rate included) and the
    `val_` values to `<log_dir>/validation` under the same names, as Keras' TensorBoard callback
    does, so curves of training and validation share one chart. Steps are epochs (absolute, so a
    resumed run continues the curves) and, for batch scalars `batch_<name>`, the optimizer's
    iteration count.

    Args:
        log_dir: the folder TensorBoard is pointed at.
        update_freq: "epoch", or an integer N to also write the running batch logs every N steps.

    Example:
        >>> import tempfile
        >>> TensorBoardLogger(tempfile.mkdtemp(), update_freq=10).update_freq
        10
    """

    _METADATA = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and (not isinstance(update_freq, int) or update_freq < 1):
            raise ConfigError(f"update_freq must be 'epoch' or a positive integer, got {update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._writers = {}
        self._step = 0

    def _writer(self, kind):
        if kind not in self._writers:
            self._writers[kind] = tf.summary.create_file_writer(os.path.join(self.log_dir, kind))
        return self._writers[kind]

    def _write(self, kind, prefix, logs, step):
        with self._writer(kind).as_default():
            for name, value in logs.items():
                if np.size(value) != 1:  # a metric with one value per class: not a scalar chart
                    continue
                tf.summary.write(f"{prefix}_{name}", tf.constant(float(np.reshape(value, ())), tf.float32), step=step,
                                 metadata=self._METADATA)

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        self._step = int(keras.ops.convert_to_numpy(iterations)) if iterations is not None else 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.update_freq != "epoch" and self._step % self.update_freq == 0 and logs:
            self._write("train", "batch", logs, self._step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[len("val_"):]: v for k, v in logs.items() if k.startswith("val_")}
        if train:
            self._write("train", "epoch", train, epoch)
        if val:
            self._write("validation", "epoch", val, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def default_callbacks(output_dir, checkpoint=True, max_to_keep=3, monitor="val_dice", mode="max",
                      save_best=True, tensorboard=True, tensorboard_update_freq="epoch", reduce_lr=None,
                      early_stopping=None, is_chief=True, state=None):
    """The usual callbacks of a training run, writing under `output_dir`.

    Order matters and is chosen for exact resumes: ReduceLROnPlateau and EarlyStopping first (so a
    learning-rate change is inside the checkpoint of the same epoch), then the loggers, then the
    checkpoint.

    Args:
        output_dir: the run folder: `history.csv` (appended to, so a resumed run continues it),
            `logs/` (TensorBoard), `checkpoints/`, `best.keras`.
        checkpoint: add an `EpochCheckpoint` in `<output_dir>/checkpoints`.
        max_to_keep: checkpoints kept.
        monitor: the log key that picks `best.keras`, e.g. "val_dice" or "val_loss".
        mode: "max" or "min" for `monitor`.
        save_best: write `<output_dir>/best.keras` when `monitor` improves.
        tensorboard: add a `TensorBoardLogger(<output_dir>/logs)`.
        tensorboard_update_freq: "epoch", or an integer: also write batch scalars every N steps.
        reduce_lr: None, or keyword arguments for `keras.callbacks.ReduceLROnPlateau`, e.g.
            `{"monitor": "val_loss", "factor": 0.5, "patience": 3}`. Needs a float learning rate
            (a schedule cannot be reduced).
        early_stopping: None, or keyword arguments for `keras.callbacks.EarlyStopping`.
        is_chief: False on the other workers of a multi-worker run: they get only the callbacks
            that change training (ReduceLROnPlateau, EarlyStopping), none that write files.
        state: extra JSON values stored in every checkpoint (a seed, the config).

    Returns:
        A list of callbacks for `Trainer.fit`.

    Example:
        >>> import tempfile
        >>> names = [type(c).__name__ for c in default_callbacks(tempfile.mkdtemp(), reduce_lr={"patience": 2})]
        >>> names[0], names[-1]
        ('ReduceLROnPlateau', 'EpochCheckpoint')
    """
    output_dir = os.fspath(output_dir)
    callbacks = []
    if reduce_lr is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(**dict(reduce_lr)))
    if early_stopping is not None:
        callbacks.append(keras.callbacks.EarlyStopping(**dict(early_stopping)))
    if not is_chief:
        return callbacks
    os.makedirs(output_dir, exist_ok=True)
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True))
    if tensorboard:
        callbacks.append(TensorBoardLogger(os.path.join(output_dir, "logs"), update_freq=tensorboard_update_freq))
    if checkpoint:
        callbacks.append(EpochCheckpoint(
            CheckpointManager(os.path.join(output_dir, "checkpoints"), max_to_keep=max_to_keep),
            best_path=os.path.join(output_dir, "best.keras") if save_best else None,
            monitor=monitor, mode=mode, state=state))
    return callbacks
