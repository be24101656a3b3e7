"""Epoch checkpoints that a crashed run resumes from exactly: weights, optimizer state, history.

A checkpoint is a folder `<directory>/ckpt-<epoch:04d>/` holding

- `model.weights.h5`: the model's weights (`model.save_weights`);
- `optimizer.npz`: every optimizer variable in order (`iterations`, the learning rate when it is
  a variable, the slots), so learning-rate schedules and Adam's moments continue exactly;
- `model_state.npz`: the model's variables that are not weights, chiefly the random-number
  states of dropout and other random layers, so a resumed run draws the same masks;
- `state.json`: `epoch` (epochs completed) plus the caller's state (history, best metric, seed).

The folder is written under a temporary name and renamed when complete, `state.json` last, so a
folder without `state.json` is never a checkpoint. A `latest` file (JSON) names the newest one.

Example:
    >>> import tempfile, keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> manager = CheckpointManager(tempfile.mkdtemp(), max_to_keep=2)
    >>> path = manager.save(1, model, keras.optimizers.Adam(), state={"seed": 7})
    >>> manager.restore(model, keras.optimizers.Adam())["seed"]
    7
"""
import contextlib
import json
import logging
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import atomic_path, atomic_write_json, model_without_optimizer

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
STATE_VARIABLES_FILE = "model_state.npz"
STATE_FILE = "state.json"
LATEST_FILE = "latest"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)$")
# What an interrupted save leaves behind (see tfseg.utils.atomic.atomic_path), with the writer's pid.
_LEFTOVER = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-(old-)?(ckpt-\d+|latest)$")


def strategy_scope(model):
    """The distribution scope the model was built under, unless a scope is already active."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or tf.distribute.has_strategy():
        return contextlib.nullcontext()
    return strategy.scope()


def _optimizer_strategy(optimizer):
    """The `tf.distribute` strategy a Keras optimizer was created under (None if it does not say)."""
    return getattr(optimizer, "_distribution_strategy", None)


def adopt_optimizer(optimizer, strategy):
    """Move an optimizer that is not built yet under `strategy`, in place.

    A Keras optimizer remembers the strategy that was current when it was created and creates
    its slot variables there; one created outside `strategy.scope()` and used under a
    `MirroredStrategy` fails with "Mixing different tf.distribute.Strategy objects". Before it
    is built, an optimizer holds only its step counter and learning rate: they are re-created
    under `strategy` with their current values, so the optimizer behaves as if it had been created
    under that scope. A `LossScaleOptimizer` and its inner optimizer are both moved.

    Args:
        optimizer: a Keras optimizer.
        strategy: the `tf.distribute.Strategy` the model was built under.

    Returns:
        `optimizer` itself.

    Raises:
        ConfigError: the optimizer is already built under another strategy (its slots live there).

    Example:
        >>> import keras
        >>> optimizer = adopt_optimizer(keras.optimizers.SGD(0.1), tf.distribute.get_strategy())
        >>> round(float(optimizer.learning_rate), 6)
        0.1
    """
    import keras

    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        current = None if opt is None else _optimizer_strategy(opt)
        if current is None or current is strategy:
            continue
        if opt.built:
            raise ConfigError(f"optimizer {opt.name!r} was built outside the model's distribution strategy "
                              f"({type(strategy).__name__}); create it under strategy.scope()")
        replaced = {}
        with strategy.scope(), keras.name_scope(opt.name, caller=opt):
            for old in list(opt._variables):
                replaced[id(old)] = keras.Variable(old.numpy(), name=old.name, dtype=old.dtype,
                                                   trainable=old.trainable, aggregation="only_first_replica")
        # Swap the variables in as `__init__` set them: with Keras' attribute tracker out of the
        # way (it would add them a second time) and a new list (TensorFlow's tracking refuses a
        # list changed in place when the model is later exported).
        tracker = opt.__dict__.pop("_tracker")
        try:
            opt._variables = [replaced.get(id(v), v) for v in opt._variables]
            for attribute, value in list(vars(opt).items()):
                if id(value) in replaced:
                    setattr(opt, attribute, replaced[id(value)])
        finally:
            opt.__dict__["_tracker"] = tracker
        tracker.config["variables"] = (tracker.config["variables"][0], opt._variables)
        tracker.stored_ids["variables"] = {id(v) for v in opt._variables}
        opt._distribution_strategy = strategy
        logger.debug("optimizer %s moved under %s", opt.name, type(strategy).__name__)
    return optimizer


def ensure_built(optimizer, model):
    """Build `optimizer` for the model's trainable variables if it is not built yet.

    An optimizer created outside the strategy the model was built under is first moved under it
    (`adopt_optimizer`), so the optimizer may be created before or inside `strategy.scope()`.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and _optimizer_strategy(optimizer) is not None:
        adopt_optimizer(optimizer, strategy)
    if not optimizer.built:
        with strategy_scope(model):
            optimizer.build(model.trainable_variables)


def _state_variables(model):
    """The model's variables that are not weights (random-number generator states), in a stable order."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


_SHAPE_MISMATCH = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))\. "
                             r"Target variable: <Variable path=([^,]+),")


def _describe_load_error(error):
    """The useful part of a Keras weight-loading error: which variable, which shapes."""
    text = str(error)
    match = _SHAPE_MISMATCH.search(text)
    if match:
        model_shape, saved_shape, path = match.groups()
        return f"variable {path!r} has shape {model_shape} but the checkpoint holds {saved_shape}"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


class CheckpointManager:
    """Saves, lists, prunes and restores epoch checkpoints in one folder.

    Args:
        directory: the folder holding `ckpt-0001/`, `ckpt-0002/`, ... and `latest`.
        max_to_keep: how many complete checkpoints to keep (oldest deleted first); None keeps all.

    Example:
        >>> import tempfile, keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> optimizer = keras.optimizers.SGD(0.1)
        >>> manager = CheckpointManager(tempfile.mkdtemp(), max_to_keep=1)
        >>> _ = manager.save(1, model, optimizer)
        >>> _ = manager.save(2, model, optimizer)
        >>> [epoch for epoch, _ in manager.checkpoints()]
        [2]
    """

    def __init__(self, directory, max_to_keep=3):
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ConfigError(f"max_to_keep must be a positive integer or None, got {max_to_keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_to_keep = max_to_keep

    def path_for(self, epoch):
        """The folder of the checkpoint taken after `epoch` completed epochs."""
        return os.path.join(self.directory, f"ckpt-{epoch:04d}")

    def checkpoints(self):
        """Complete checkpoints as `(epoch, path)` pairs, oldest first (folders without state.json are left out)."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            path = os.path.join(self.directory, name)
            if match and os.path.isfile(os.path.join(path, STATE_FILE)):
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self):
        """The newest complete checkpoint folder, or None when there is none.

        The newest complete folder wins over the `latest` pointer: a save killed after its
        folder was renamed into place but before the pointer was replaced leaves the pointer one
        epoch behind, and that checkpoint is complete.
        """
        found = self.checkpoints()
        if not found:
            return None
        pointer = os.path.join(self.directory, LATEST_FILE)
        try:
            with open(pointer, encoding="utf-8") as handle:
                named = json.load(handle)["checkpoint"]
        except (OSError, ValueError, KeyError, TypeError):
            named = None
        if named is not None and os.path.basename(found[-1][1]) != named:
            logger.warning("the %s pointer names %s but %s is complete and newer: using it", LATEST_FILE, named,
                           os.path.basename(found[-1][1]))
        return found[-1][1]

    def save(self, epoch, model, optimizer, state=None):
        """Write the checkpoint for `epoch` completed epochs, point `latest` at it, prune old ones.

        Checkpoints of later epochs (left by an earlier run that went further) are deleted, so
        the newest checkpoint is always this run's; so are the temporary folders of saves that
        another process started and never finished.

        Args:
            epoch: the number of epochs completed (1 after the first epoch).
            model: the `keras.Model` whose weights to save.
            optimizer: its Keras optimizer (built here if it is not yet).
            state: a JSON-serializable dict stored in `state.json` (history, best metric, seed...).

        Returns:
            The checkpoint folder (str).
        """
        epoch = int(epoch)
        if epoch < 0:
            raise ConfigError(f"checkpoint epoch must be >= 0, got {epoch}")
        state = dict(state or {})
        ensure_built(optimizer, model)
        final = self.path_for(epoch)
        variables = list(optimizer.variables)
        with atomic_path(final) as tmp:
            os.makedirs(tmp)
            with model_without_optimizer(model):
                model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
            arrays = {f"v{i:05d}": np.asarray(variable.numpy()) for i, variable in enumerate(variables)}
            arrays["paths"] = np.array([variable.path for variable in variables], dtype=str)
            np.savez(os.path.join(tmp, OPTIMIZER_FILE), **arrays)
            extra = _state_variables(model)
            np.savez(os.path.join(tmp, STATE_VARIABLES_FILE), paths=np.array([v.path for v in extra], dtype=str),
                     **{f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(extra)})
            record = {**state, "epoch": epoch, "format": FORMAT_VERSION,
                      "optimizer": type(optimizer).__name__, "optimizer_variables": len(variables)}
            atomic_write_json(os.path.join(tmp, STATE_FILE), record)
        atomic_write_json(os.path.join(self.directory, LATEST_FILE),
                          {"checkpoint": os.path.basename(final), "epoch": epoch})
        self._prune(epoch)
        logger.info("saved checkpoint %s", final)
        return final

    def _prune(self, epoch):
        for name in os.listdir(self.directory):
            match = _LEFTOVER.match(name)
            if match and int(match.group(1)) != os.getpid():
                logger.info("deleting %s, left by an interrupted save", name)
                path = os.path.join(self.directory, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
        complete = self.checkpoints()
        stale = [(e, p) for e, p in complete if e > epoch]
        for e, path in stale:
            logger.warning("deleting checkpoint %s: it is newer than epoch %d just saved by this run", path, epoch)
            shutil.rmtree(path, ignore_errors=True)
        kept = [(e, p) for e, p in complete if e <= epoch]
        if self.max_to_keep is not None:
            for _, path in kept[:-self.max_to_keep]:
                logger.debug("deleting old checkpoint %s", path)
                shutil.rmtree(path, ignore_errors=True)

    def read_state(self, path=None):
        """The `state.json` of a checkpoint (the latest one by default) as a dict."""
        path = self._resolve(path)
        state_file = os.path.join(path, STATE_FILE)
        try:
            with open(state_file, encoding="utf-8") as handle:
                state = json.load(handle)
        except FileNotFoundError:
            raise DataError(path, f"not a complete checkpoint: {STATE_FILE} is missing") from None
        except (OSError, ValueError) as error:
            raise DataError(state_file, f"unreadable checkpoint state: {error}") from None
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            raise DataError(state_file, "checkpoint state must be an object with an integer 'epoch'")
        return state

    def _resolve(self, path):
        if path is None:
            path = self.latest()
            if path is None:
                raise DataError(self.directory, "no complete checkpoint to restore")
        return os.path.abspath(os.fspath(path))

    def restore(self, model, optimizer, path=None):
        """Load a checkpoint (the latest by default) into `model` and `optimizer`.

        The optimizer is built first if needed, then every variable is checked for shape and
        assigned, `iterations` included, so training continues exactly where it stopped.

        Args:
            model: a model of the same architecture as the one saved.
            optimizer: an optimizer of the same kind and settings (a float learning rate or a
                schedule, as when saved).
            path: a checkpoint folder; default `latest()`.

        Returns:
            The checkpoint's state dict (`epoch` plus what was passed to `save`).

        Raises:
            DataError: no checkpoint, a missing or unreadable file, or a variable whose shape
                (or count) does not match, naming the checkpoint and the variable.
        """
        path = self._resolve(path)
        state = self.read_state(path)
        weights = os.path.join(path, WEIGHTS_FILE)
        if not os.path.isfile(weights):
            raise DataError(path, f"not a complete checkpoint: {WEIGHTS_FILE} is missing")
        ensure_built(optimizer, model)
        try:
            with model_without_optimizer(model):
                model.load_weights(weights)
        except (ValueError, KeyError, OSError) as error:
            reason = f"weights do not fit model {model.name!r}: {_describe_load_error(error)}"
            raise DataError(weights, reason) from None
        self._restore_optimizer(path, optimizer)
        self._restore_state_variables(path, model)
        logger.info("restored checkpoint %s (epoch %d)", path, state["epoch"])
        return state

    @staticmethod
    def _restore_state_variables(path, model):
        """Give the model back its random-number states (checkpoints without the file keep theirs)."""
        source = os.path.join(path, STATE_VARIABLES_FILE)
        if not os.path.isfile(source):
            return
        try:
            with np.load(source, allow_pickle=False) as data:
                saved = {str(p): data[f"v{i:05d}"] for i, p in enumerate(data["paths"])}
        except (OSError, KeyError, ValueError) as error:
            raise DataError(source, f"unreadable model state: {error}") from None
        for variable in _state_variables(model):
            value = saved.get(variable.path)
            if value is not None and tuple(value.shape) == tuple(variable.shape):
                variable.assign(value.astype(variable.dtype) if value.dtype != variable.dtype else value)

    def _restore_optimizer(self, path, optimizer):
        source = os.path.join(path, OPTIMIZER_FILE)
        try:
            with np.load(source, allow_pickle=False) as data:
                saved_paths = [str(p) for p in data["paths"]]
                values = [data[f"v{i:05d}"] for i in range(len(saved_paths))]
        except (OSError, KeyError, ValueError) as error:
            raise DataError(source, f"unreadable optimizer state: {error}") from None
        variables = list(optimizer.variables)
        if len(values) != len(variables):
            raise DataError(path, f"optimizer {type(optimizer).__name__} has {len(variables)} variables but the "
                                  f"checkpoint has {len(values)} ({', '.join(saved_paths[:4])}...): a different "
                                  "optimizer, learning-rate kind (float vs schedule) or model")
        for variable, value, saved_path in zip(variables, values, saved_paths):
            if tuple(variable.shape) != tuple(value.shape):
                raise DataError(path, f"optimizer variable {variable.path!r} has shape {tuple(variable.shape)} "
                                      f"but the checkpoint's {saved_path!r} has shape {tuple(value.shape)}")
        for variable, value in zip(variables, values):
            variable.assign(value.astype(variable.dtype) if value.dtype != variable.dtype else value)
