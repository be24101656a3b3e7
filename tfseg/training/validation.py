"""Validation that means what it says: whole images through the inference path, every few epochs.

A workflow hands `PeriodicValidation` a function that scores the current model on its whole
validation images or volumes exactly as its final evaluation does (sliding window, resize back to
the original size, ...). The callback runs it at the end of chosen epochs and puts the figures in
the epoch's logs under their `val_` names before the loggers and the checkpoint see them, so the
number printed per epoch, written to `history.csv`, used for `best.keras`, early stopping and the
learning-rate plateau is the number a user of the model gets. On the other epochs the keys hold
NaN ("not measured"), which never counts as an improvement.

By default the interval adapts to a time budget: after the first validation the callback knows
what one costs against an epoch of training, and validates every N epochs so that validation
takes at most `budget` (20%) of the training time. The first epoch (which fixes the columns of
`history.csv`) and the last are always validated.

`ZeroScoreWarning` logs a warning when a class or region's Dice stays at 0 for several
validations in a row (a small structure that is not being learned), during the run.

Example:
    >>> import math
    >>> v = PeriodicValidation(lambda model: {"val_dice": 0.5}, every=2)
    >>> v.set_params({"epochs": 4}); v.on_train_begin()
    >>> logs = {}; v.on_epoch_end(0, logs); logs["val_dice"]       # the first epoch sets the logs' keys
    0.5
    >>> logs = {}; v.on_epoch_end(1, logs); math.isnan(logs["val_dice"])
    True
    >>> logs = {}; v.on_epoch_end(2, logs); logs["val_dice"]
    0.5
"""
import logging
import math
import os
import time

import keras

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)


class PeriodicValidation(keras.callbacks.Callback):
    """Score the model on whole validation images every few epochs and add the figures to the logs.

    The figures of the last epoch are also kept in `added_logs`, which `tfseg.training.Trainer`
    adds to its history.

    Args:
        score_fn: `fn(model) -> {log key: float}`, e.g. `{"val_dice": 0.83, "val_dice_wt": 0.91}`.
        every: validate every this many epochs; 0 chooses it from `budget` after the first one.
        budget: with `every=0`, the largest fraction of the training time spent validating.
        first_epoch: with `every=0`, the first validated epoch (1-based; later ones follow the
            chosen interval). Default 1: the first epoch gives the timing and the logs' keys.
    """

    def __init__(self, score_fn, every=0, budget=0.2, first_epoch=1):
        super().__init__()
        if int(every) < 0:
            raise ConfigError(f"validation interval must be >= 0 (0: automatic), got {every!r}")
        if not 0 < float(budget) <= 1:
            raise ConfigError(f"validation budget must be in (0, 1], got {budget!r}")
        self.score_fn = score_fn
        self.every = int(every)
        self.budget = float(budget)
        self.first_epoch = max(1, int(first_epoch))
        self.keys = None
        self.interval = self.every or None
        self.last_validated = 0
        self._epoch_start = None
        self._epoch_seconds = []
        self.seconds = []
        self.added_logs = {}

    def on_train_begin(self, logs=None):
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def due(self, epoch):
        """Whether epoch `epoch` (0-based) is validated."""
        number = epoch + 1
        if number == self.params.get("epochs") or self.keys is None:  # the last epoch; the first sets the keys
            return True
        if self.interval is None:  # automatic, not yet timed
            return number >= self.first_epoch
        return number - self.last_validated >= self.interval

    def _choose_interval(self, validation_seconds):
        if self.every or not self._epoch_seconds:
            return
        epoch_seconds = sum(self._epoch_seconds) / len(self._epoch_seconds)
        self.interval = max(1, math.ceil(validation_seconds / max(1e-9, self.budget * epoch_seconds)))
        logger.info("whole-image validation takes %.1f s against %.1f s per epoch: every %d epoch(s)",
                    validation_seconds, epoch_seconds, self.interval)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self._epoch_start is not None:
            self._epoch_seconds.append(time.perf_counter() - self._epoch_start)
        if not self.due(epoch):
            self.added_logs = {key: float("nan") for key in self.keys or ()}
            logs.update(self.added_logs)
            return
        start = time.perf_counter()
        scores = {key: float(value) for key, value in self.score_fn(self.model).items()}
        self.seconds.append(time.perf_counter() - start)
        if self.interval is None:
            self._choose_interval(self.seconds[-1])
        self.keys = sorted(set(self.keys or ()) | set(scores))
        self.last_validated = epoch + 1
        self.added_logs = {key: scores.get(key, float("nan")) for key in self.keys}
        logs.update(self.added_logs)


class ZeroScoreWarning(keras.callbacks.Callback):
    """Warn while the run goes on when a class's score stays at 0 for `patience` validations in a row.

    Args:
        keys: the log keys to watch, e.g. `("val_dice_tc", "val_dice_et")`.
        patience: consecutive measured zeros before the warning (NaN epochs are not counted).

    Example:
        >>> w = ZeroScoreWarning(["val_dice_et"], patience=2)
        >>> for epoch in range(3): w.on_epoch_end(epoch, {"val_dice_et": 0.0})
        >>> w.warned
        ['val_dice_et']
    """

    def __init__(self, keys, patience=3):
        super().__init__()
        self.keys = tuple(keys)
        self.patience = max(1, int(patience))
        self.zeros = {key: 0 for key in self.keys}
        self.warned = []

    def on_epoch_end(self, epoch, logs=None):
        for key in self.keys:
            value = (logs or {}).get(key)
            if value is None or math.isnan(value):
                continue
            self.zeros[key] = self.zeros[key] + 1 if value == 0 else 0
            if self.zeros[key] == self.patience and key not in self.warned:
                self.warned.append(key)
                logger.warning("%s has been 0 for %d validations in a row (epoch %d): this class is not being "
                               "learned; check its size in the crops (foreground sampling), the loss and the "
                               "learning rate", key, self.patience, epoch + 1)


def restore_best(model, output_dir):
    """Load the weights of `<output_dir>/best.keras` into `model`; returns the path, or None without one.

    Run after training so that the evaluation, `model.keras` and the SavedModel are the best
    validated model, the one whose figures `history.csv` shows.

    Example:
        >>> restore_best(None, "/nonexistent-run") is None
        True
    """
    path = os.path.join(output_dir, "best.keras")
    if not os.path.exists(path):
        return None
    best = keras.saving.load_model(path, compile=False)
    model.set_weights(best.get_weights())
    logger.info("restored the best validated weights from %s", path)
    return path


def whole_image_validation(score_fn, every=0, watch=(), patience=3):
    """The callbacks of a validation that means what it says: `PeriodicValidation` + `ZeroScoreWarning`.

    Args:
        score_fn: `fn(model) -> {"val_dice": ..., "val_dice_<class>": ...}` through the inference path.
        every: validation interval in epochs (0: within a 20% time budget).
        watch: the per-class keys whose staying at 0 is warned about.
        patience: validations at 0 before the warning.

    Returns:
        A list of callbacks for `fit_phases(extra_callbacks=...)`.

    Example:
        >>> [type(c).__name__ for c in whole_image_validation(lambda m: {}, watch=["val_dice_et"])]
        ['PeriodicValidation', 'ZeroScoreWarning']
    """
    callbacks = [PeriodicValidation(score_fn, every=every)]
    if watch:
        callbacks.append(ZeroScoreWarning(watch, patience=patience))
    return callbacks
