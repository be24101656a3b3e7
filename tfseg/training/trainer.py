"""A training loop that owns its train step, so one script scales from a CPU to many GPUs.

Keras 3 `model.fit` breaks under `MultiWorkerMirroredStrategy`, and `horovod.keras` silently
skips gradient averaging with Keras 3. `Trainer` therefore runs its own `tf.function` step
through a `tf.distribute` strategy (the no-op default strategy unless one is given):

    forward + loss under a GradientTape (per replica)  ->  reduce_gradients() hook
    ->  optimizer.apply_gradients (tf.distribute sums the gradients across replicas)
    ->  metrics updated in the step  ->  logs {"loss", metric names...}

It drives ordinary Keras callbacks (History, the progress bar, CSVLogger, TensorBoard,
EarlyStopping, ReduceLROnPlateau...) itself, validates at the end of each epoch (`val_` logs),
stops with `NonFiniteLossError` naming the epoch and step when the loss is NaN or infinite (the
bad batch is never applied), and checkpoints every epoch so that `fit(..., resume=True)` after a
crash ends with the same weights as an uninterrupted run.

**Distributed training**: create the model and the optimizer under `strategy.scope()` and pass
the same `strategy`; the trainer creates its metrics under that scope (metric objects you pass
are re-created there from their config). Batch datasets by the *global* batch size; use
`drop_remainder=True` when a batch could be smaller than the number of replicas. Only the chief
(`trainer.is_chief`) should write files: pass `is_chief=trainer.is_chief` to `default_callbacks`.
Horovod plugs in by overriding `reduce_gradients` (average with `hvd.allreduce`),
`sync_initial_state` (broadcast from rank 0), `sync_metrics` (sum the metric states over the
processes at the end of each epoch) and `is_chief` (rank 0).

Example:
    >>> import numpy as np, tensorflow as tf, keras
    >>> inputs = keras.Input((8, 8, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs))
    >>> x = np.random.rand(4, 8, 8, 1).astype("float32")
    >>> data = tf.data.Dataset.from_tensor_slices((x, (x > 0.5).astype("float32"))).batch(2)
    >>> trainer = Trainer(model, keras.losses.BinaryCrossentropy(), keras.optimizers.Adam(1e-2),
    ...                   metrics=[keras.metrics.BinaryAccuracy(name="acc")])
    >>> history = trainer.fit(data, epochs=2, verbose=0)
    >>> sorted(history)
    ['acc', 'learning_rate', 'loss']
    >>> sorted(trainer.evaluate(data))
    ['acc', 'loss']
"""
import inspect
import logging

import keras
import numpy as np
import tensorflow as tf

from tfseg.errors import ConfigError, TfsegError
from tfseg.training.callbacks import EpochCheckpoint, current_learning_rate, output_folders, \
    restore_callbacks_state, rewrite_csv_history
from tfseg.training.checkpoint import CheckpointManager, ensure_built
from tfseg.training.progress import EpochLine, fit_verbosity
from tfseg.utils.progress import is_terminal
from tfseg.utils.atomic import clean_stale_temporaries
from tfseg.utils.problems import recover_data_error

logger = logging.getLogger(__name__)

ON_NAN_POLICIES = ("raise", "stop", "skip_batch")  # "stop" is another name for "raise"
#: The key of the config fingerprint in a checkpoint's state.
FINGERPRINT_KEY = "config_fingerprint"
# Keras losses with these reductions divide their value by the number of replicas themselves.
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
_SUM = tf.distribute.ReduceOp.SUM


class NonFiniteLossError(TfsegError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


def set_seed(seed, deterministic=False):
    """Seed Python, NumPy, TensorFlow and Keras at once.

    Args:
        seed: an integer.
        deterministic: also make TensorFlow ops deterministic
            (`tf.config.experimental.enable_op_determinism`): identical results run to run,
            at some speed cost on GPU. It cannot be turned off again in the same process.

    Example:
        >>> set_seed(7)
        >>> a = keras.random.uniform((2,)); set_seed(7)
        >>> bool(np.all(keras.random.uniform((2,)).numpy() == a.numpy()))
        True
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def is_chief(strategy=None):
    """Whether this process should write files: the chief of a multi-worker cluster, else True.

    Example:
        >>> is_chief(tf.distribute.get_strategy())
        True
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type or task_type == "chief":
        return True
    if task_type == "worker" and resolver.task_id == 0:
        return "chief" not in resolver.cluster_spec().as_dict()
    return False


def _unpack(data):
    """Split a batch into `(x, y, sample_weight)`."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return data[0], data[1], (data[2] if len(data) == 3 else None)
    raise ConfigError("a training or validation dataset must yield (x, y) or (x, y, sample_weight) batches, "
                      f"got one element of type {type(data).__name__}")


def next_batch(iterator):
    """The next batch; a file that failed to decode inside tf.data is raised as its one-line `DataError`."""
    try:
        return next(iterator)
    except tf.errors.OpError as error:
        data_error = recover_data_error(error)
        if data_error is not None:
            raise data_error from None
        raise


def _count_epochs(dataset, started):
    """Add `started` to the training passes begun over `dataset` in this process; return the total."""
    total = getattr(dataset, "_tfseg_passes", 0) + started
    try:
        dataset._tfseg_passes = total
    except AttributeError:  # a dataset class that takes no new attribute: no fast-forward
        pass
    return total


def batch_size_of(x):
    """The number of examples in a batch `x` (the first dimension of its first tensor), float32."""
    return tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)


def _accepts_sample_weight(fn):
    if isinstance(fn, keras.losses.Loss):
        return True
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "sample_weight" or p.kind == p.VAR_KEYWORD for p in parameters)


def _name_of(fn):
    return getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__


class Trainer:
    """Trains a Keras model with a custom, distribution-ready step.

    Args:
        model: a built `keras.Model` (need not be compiled); created under `strategy.scope()`.
        loss: `loss(y_true, y_pred)` returning a scalar (or per-sample values, averaged), e.g.
            a `keras.losses.Loss`; for a multi-output model, a list (one per output, None for no
            loss) or a dict keyed by output name.
        optimizer: a Keras 3 optimizer created under `strategy.scope()`; attached to the model as
            `model.optimizer` so Keras callbacks find its learning rate.
        metrics: Keras metrics (instances or names) applied to the model's output (the first
            output of a multi-output model), or a dict `{output_name: [metrics]}` logged as
            `<output_name>_<metric>`.
        strategy: a `tf.distribute.Strategy`; default the current one (no-op on one device).
        loss_weights: a float for one loss, or a list/dict matching `loss`.
        jit_compile: compile the forward and backward pass with XLA (slower on CPU; try it on GPU).
        on_nan: "raise" or its synonym "stop" (stop with `NonFiniteLossError`), or "skip_batch"
            (log, leave the weights and the non-trainable state of that batch untouched, go on).
        nan_policy: the same as `on_nan` (the name of the workflows' setting); wins when given.
        describe_rows: optional `fn(batch, rows) -> str` naming the cases of the given rows of a
            batch (e.g. from case ids the dataset carries); used in the non-finite loss message.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        >>> trainer = Trainer(model, keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.1))
        >>> trainer.is_chief, trainer.num_replicas
        (True, 1)
    """

    def __init__(self, model, loss, optimizer, metrics=(), strategy=None, loss_weights=None, jit_compile=False,
                 on_nan="raise", nan_policy=None, describe_rows=None):
        if nan_policy is not None:
            on_nan = nan_policy
        if on_nan not in ON_NAN_POLICIES:
            raise ConfigError(f"on_nan must be one of {ON_NAN_POLICIES}, got {on_nan!r}")
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.jit_compile = bool(jit_compile)
        self.on_nan = on_nan
        self.describe_rows = describe_rows
        self.history = {}
        self.skipped_batches = 0
        self._output_names = list(getattr(model, "output_names", None) or [])
        self._losses, self._loss_weights = self._parse_losses(loss, loss_weights)
        with self.strategy.scope():
            self._distributed = tf.distribute.has_strategy()
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self._output_trackers = {name: keras.metrics.Mean(name=f"{name}_loss")
                                     for name in self._losses if name is not None and len(self._losses) > 1}
            self._metrics = self._parse_metrics(metrics)
        try:
            model.optimizer = optimizer
        except AttributeError:  # a model class that forbids the attribute
            logger.debug("could not attach the optimizer to %s", model.name)
        self._train_fn = self._test_fn = self._predict_fn = self._forward_backward_fn = None

    # ----------------------------------------------------------------- configuration
    def _parse_losses(self, loss, loss_weights):
        if isinstance(loss, dict):
            unknown = sorted(set(loss) - set(self._output_names))
            if unknown:
                raise ConfigError(f"loss names unknown output(s) {unknown}; the model's outputs are "
                                  f"{self._output_names}")
            losses = {k: v for k, v in loss.items() if v is not None}
        elif isinstance(loss, (list, tuple)):
            if len(loss) != len(self._output_names):
                raise ConfigError(f"got {len(loss)} losses for a model with {len(self._output_names)} output(s) "
                                  f"{self._output_names}")
            losses = {k: v for k, v in zip(self._output_names, loss) if v is not None}
        elif callable(loss):
            losses = {None: loss}
        else:
            raise ConfigError(f"loss must be a callable, a list or a dict of callables, got {type(loss).__name__}")
        if not losses:
            raise ConfigError("no loss given for any output")
        for name, fn in losses.items():
            if not callable(fn):
                raise ConfigError(f"loss for output {name!r} is not callable: {fn!r}")
        if loss_weights is None:
            weights = {name: 1.0 for name in losses}
        elif isinstance(loss_weights, dict):
            weights = {name: float(loss_weights.get(name, 1.0)) for name in losses}
        elif isinstance(loss_weights, (list, tuple)):
            if None in losses or len(loss_weights) != len(self._output_names):
                raise ConfigError(f"loss_weights {loss_weights} must have one value per output {self._output_names}")
            by_name = dict(zip(self._output_names, loss_weights))
            weights = {name: float(by_name[name]) for name in losses}
        else:
            weights = {name: float(loss_weights) for name in losses}
        return losses, weights

    def _make_metric(self, metric):
        if isinstance(metric, str):
            return keras.metrics.get(metric)
        if not isinstance(metric, keras.metrics.Metric):
            raise ConfigError(f"metrics must be keras.metrics.Metric instances or names, got {metric!r}")
        if self._distributed:  # its variables must be created under the strategy's scope
            return type(metric).from_config(metric.get_config())
        return metric

    def _parse_metrics(self, metrics):
        entries = []
        if isinstance(metrics, dict):
            for output, items in metrics.items():
                if output not in self._output_names:
                    raise ConfigError(f"metrics name unknown output {output!r}; outputs are {self._output_names}")
                for metric in ([items] if not isinstance(items, (list, tuple)) else items):
                    metric = self._make_metric(metric)
                    entries.append((output, metric, f"{output}_{metric.name}"))
        else:
            output = self._output_names[0] if len(self._output_names) > 1 else None
            for metric in metrics or ():
                metric = self._make_metric(metric)
                entries.append((output, metric, metric.name))
        names = ["loss", *(t.name for t in self._output_trackers.values()), *(e[2] for e in entries)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"two logged values would share the name(s) {duplicates}; give metrics distinct names")
        return entries

    @property
    def num_replicas(self):
        """Replicas training in sync (devices x workers)."""
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self):
        """Whether this process writes files (checkpoints, logs). Override for Horovod (rank 0)."""
        return is_chief(self.strategy)

    @property
    def metrics(self):
        """Every metric the trainer updates: the loss tracker(s) first."""
        return [self.loss_tracker, *self._output_trackers.values(), *(m for _, m, _ in self._metrics)]

    def reset_metrics(self):
        """Reset the loss tracker(s) and all metrics."""
        for metric in self.metrics:
            metric.reset_state()

    # ----------------------------------------------------------------- hooks
    def reduce_gradients(self, grads):
        """Combine gradients across workers before they are applied (runs in replica context).

        Identity here: tf.distribute strategies sum gradients across replicas inside
        `optimizer.apply_gradients`. A Horovod trainer overrides this to average them, e.g.
        `return [hvd.allreduce(g) if g is not None else None for g in grads]`.
        """
        return grads

    def sync_initial_state(self):
        """Make every worker start from the same variables (called once per `fit`, after a resume).

        A no-op for tf.distribute (mirrored variables start equal). A Horovod trainer overrides
        it to broadcast the model and optimizer variables from rank 0.
        """

    def sync_metrics(self):
        """Combine the training metrics across workers before the epoch's logs are read.

        A no-op for tf.distribute (its metric variables are already aggregated). A Horovod
        trainer overrides it to sum the metrics' states over the processes.
        """

    # ----------------------------------------------------------------- loss and metrics
    def _by_name(self, values, what):
        if isinstance(values, dict):
            missing = [n for n in self._losses if n not in values]
            if missing:
                raise ConfigError(f"{what} have no entry for output(s) {missing}; got keys {sorted(values)}")
            return values
        if isinstance(values, (list, tuple)) and len(values) == len(self._output_names):
            return dict(zip(self._output_names, values))
        raise ConfigError(f"{what} must be a dict or a sequence of {len(self._output_names)} values for the "
                          f"outputs {self._output_names}")

    def _select(self, output, y, y_pred, sample_weight):
        if output is None:
            return y, y_pred, sample_weight
        sw = sample_weight.get(output) if isinstance(sample_weight, dict) else sample_weight
        return self._by_name(y, "targets")[output], self._by_name(y_pred, "model outputs")[output], sw

    def _call_loss(self, fn, y, y_pred, sample_weight):
        if sample_weight is None:
            value = fn(y, y_pred)
        elif _accepts_sample_weight(fn):
            value = fn(y, y_pred, sample_weight=sample_weight)
        else:
            raise ConfigError(f"the data yields sample weights but loss {_name_of(fn)!r} takes no "
                              "sample_weight argument")
        value = tf.cast(tf.convert_to_tensor(value), tf.float32)
        if value.shape.rank != 0:
            value = tf.reduce_mean(value)
        if self.num_replicas > 1 and self._divided_by_replicas(fn, y, y_pred):
            value = value * float(self.num_replicas)
        return value

    @staticmethod
    def _divided_by_replicas(fn, y, y_pred):
        """Whether a Keras loss already divided its value by the number of replicas.

        Keras does so for the mean reductions when `call` returns more than a scalar. The probe
        below is only traced for its static shape; its ops are pruned from the graph.
        """
        if not isinstance(fn, keras.losses.Loss) or fn.reduction not in _MEAN_REDUCTIONS:
            return False
        probe = fn.call(tf.nest.map_structure(lambda t: tf.cast(t, fn.dtype), y),
                        tf.nest.map_structure(lambda t: tf.cast(t, fn.dtype), y_pred))
        shape = tuple(probe.shape)
        return shape not in ((), (0,))

    def _compute_loss(self, y, y_pred, sample_weight):
        """The weighted data loss (mean over this replica's batch) and the per-output losses."""
        total = tf.constant(0.0)
        parts = {}
        for name, fn in self._losses.items():
            y_true, pred, sw = self._select(name, y, y_pred, sample_weight)
            value = self._call_loss(fn, y_true, pred, sw)
            if name is not None and len(self._losses) > 1:
                parts[name] = value
            total = total + self._loss_weights[name] * value
        return total, parts

    def _regularization(self):
        losses = self.model.losses
        if not losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(loss, tf.float32) for loss in losses])

    def _update_metrics(self, total, parts, n_local, y, y_pred, sample_weight):
        self.loss_tracker.update_state(total, sample_weight=n_local)
        for name, tracker in self._output_trackers.items():
            tracker.update_state(parts[name], sample_weight=n_local)
        for output, metric, _ in self._metrics:
            y_true, pred, sw = self._select(output, y, y_pred, sample_weight)
            if sw is None:
                metric.update_state(y_true, pred)
            else:
                metric.update_state(y_true, pred, sample_weight=sw)

    def _results(self):
        logs = {"loss": self.loss_tracker.result()}
        for tracker in self._output_trackers.values():
            logs[tracker.name] = tracker.result()
        for _, metric, log_name in self._metrics:
            result = metric.result()
            if isinstance(result, dict):
                logs.update({f"{log_name}_{k}": v for k, v in result.items()})
            else:
                logs[log_name] = result
        return logs

    # ----------------------------------------------------------------- steps
    def _forward_backward(self, x, y, sample_weight, weight):
        """Per replica: forward, loss and gradients of this replica's share of the global loss."""
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            data_loss, parts = self._compute_loss(y, y_pred, sample_weight)
            regularization = self._regularization()
            total = data_loss + regularization
            # Gradients are summed over replicas: weight each replica's mean by its share of the
            # global batch, and count the regularization once in all.
            objective = data_loss * weight + regularization / float(self.num_replicas)
            scaled = self.optimizer.scale_loss(objective) if hasattr(self.optimizer, "scale_loss") else objective
        grads = tape.gradient(scaled, self.model.trainable_variables)
        return grads, total, parts, y_pred

    def _replica_grads(self, x, y, sample_weight):
        n_local = batch_size_of(x)
        if self.num_replicas > 1:
            n_global = tf.distribute.get_replica_context().all_reduce(_SUM, n_local)
        else:
            n_global = n_local
        weight = tf.math.divide_no_nan(n_local, n_global)
        grads, total, parts, y_pred = self._forward_backward_fn(x, y, sample_weight, weight)
        grads = self.reduce_gradients(list(grads))
        not_finite = tf.cast(tf.logical_not(tf.math.is_finite(total)), tf.float32)
        return grads, total, parts, y_pred, n_local, not_finite, total * weight

    def _replica_apply(self, grads, total, parts, n_local, y, y_pred, sample_weight):
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        self._update_metrics(total, parts, n_local, y, y_pred, sample_weight)

    def _train_step(self, data):
        x, y, sample_weight = _unpack(data)
        keep = list(self.model.non_trainable_variables) if self.on_nan == "skip_batch" else []
        snapshot = [tf.identity(v.value) for v in keep]
        grads, total, parts, y_pred, n_local, not_finite, share = self.strategy.run(
            self._replica_grads, args=(x, y, sample_weight))
        n_bad = self.strategy.reduce(_SUM, not_finite, axis=None)
        loss = self.strategy.reduce(_SUM, share, axis=None)

        def apply():
            self.strategy.run(self._replica_apply, args=(grads, total, parts, n_local, y, y_pred, sample_weight))
            return tf.constant(True)

        def skip():  # undo what the forward pass changed (BatchNorm statistics)
            for variable, value in zip(keep, snapshot):
                variable.assign(value)
            return tf.constant(False)

        applied = tf.cond(tf.equal(n_bad, 0.0), apply, skip)
        return loss, applied, self._results()

    def _replica_test(self, x, y, sample_weight):
        y_pred = self.model(x, training=False)
        data_loss, parts = self._compute_loss(y, y_pred, sample_weight)
        total = data_loss + self._regularization()
        self._update_metrics(total, parts, batch_size_of(x), y, y_pred, sample_weight)

    def _test_step(self, data):
        x, y, sample_weight = _unpack(data)
        self.strategy.run(self._replica_test, args=(x, y, sample_weight))
        return self._results()

    def _predict_step(self, x):
        outputs = self.strategy.run(lambda inputs: self.model(inputs, training=False), args=(x,))
        return tf.nest.map_structure(lambda v: self.strategy.gather(v, axis=0), outputs)

    def _build_functions(self):
        """(Re)trace the step functions; called at every `fit` so trainable changes are picked up."""
        forward_backward = self._forward_backward
        if self.jit_compile:
            forward_backward = tf.function(forward_backward, jit_compile=True, reduce_retracing=True)
        self._forward_backward_fn = forward_backward
        self._train_fn = tf.function(self._train_step, reduce_retracing=True)
        self._test_fn = tf.function(self._test_step, reduce_retracing=True)
        self._predict_fn = tf.function(self._predict_step, reduce_retracing=True)

    def _prepare(self, dataset):
        if not self.model.built:
            x = _unpack(next_batch(iter(dataset)))[0]
            with self.strategy.scope():
                self.model(x)
        with self.strategy.scope():
            ensure_built(self.optimizer, self.model)
        if self._train_fn is None:
            self._build_functions()

    # ----------------------------------------------------------------- data
    def _check_dataset(self, data, what):
        if not isinstance(data, tf.data.Dataset):
            raise ConfigError(f"{what} must be a tf.data.Dataset of batches, got {type(data).__name__}")
        spec = data.element_spec
        if not (isinstance(spec, (tuple, list)) and len(spec) in (2, 3)):
            raise ConfigError(f"{what} must yield (x, y) or (x, y, sample_weight) batches, got elements {spec}")
        if len(spec) == 3:
            for fn in self._losses.values():
                if not _accepts_sample_weight(fn):
                    raise ConfigError(f"{what} yields sample weights but loss {_name_of(fn)!r} takes no "
                                      "sample_weight argument")

    @staticmethod
    def _steps(data, steps, what):
        if steps is not None:
            if not isinstance(steps, (int, np.integer)) or steps < 1:
                raise ConfigError(f"{what} must be a positive integer or None, got {steps!r}")
            return int(steps)
        cardinality = int(data.cardinality())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            raise ConfigError(f"the dataset repeats forever: pass {what}")
        if cardinality == 0:
            raise ConfigError(f"the dataset for {what} is empty")
        return None if cardinality == tf.data.UNKNOWN_CARDINALITY else cardinality

    @staticmethod
    def _floats(logs):
        """Logs as Python floats (a metric with several values, e.g. per class, becomes a list)."""
        plain = {}
        for key, value in logs.items():
            value = np.asarray(value)
            plain[key] = float(value.reshape(())) if value.size == 1 else value.tolist()
        return plain

    # ----------------------------------------------------------------- public API
    def fit(self, train_data, epochs, validation_data=None, callbacks=(), initial_epoch=0, steps_per_epoch=None,
            validation_steps=None, verbose=1, checkpoint_dir=None, resume=False, validation_prefix="val_",
            fingerprint=None):
        """Train for `epochs` epochs (counting from epoch 0, so resumed runs give the same total).

        Args:
            train_data: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)` batches,
                batched by the global batch size.
            epochs: the epoch to stop after (total, not additional).
            validation_data: an optional dataset like `train_data`, evaluated after each epoch
                and logged with a `val_` prefix.
            callbacks: Keras callbacks (see `tfseg.training.callbacks.default_callbacks`).
            initial_epoch: the epoch to start at (overridden by a resumed checkpoint).
            steps_per_epoch: batches per epoch; needed for a repeating dataset, which is then
                read on across epochs. Default: one pass over the dataset.
            validation_steps: batches per validation; default one pass.
            verbose: 0 silent, 1 progress bar (one line per epoch when stdout is not a terminal),
                2 one line per epoch.
            checkpoint_dir: save a resumable checkpoint there after every epoch (chief only),
                unless an `EpochCheckpoint` in `callbacks` already writes to that folder.
            resume: restore the newest complete checkpoint (of `checkpoint_dir`, or of the
                `EpochCheckpoint` in `callbacks`) and continue after its epoch; with no
                checkpoint yet, start from scratch (with a warning). A `Keras CSVLogger` in
                `callbacks` has its file rewritten from the restored history (no repeated
                epochs after a crash); without a restored checkpoint it starts empty.
            fingerprint: a string identifying the run's settings (e.g.
                `tfseg.training.config.config_fingerprint(config)`): stored in every checkpoint,
                and a resume from a checkpoint with another fingerprint is refused.
            validation_prefix: the prefix of the `validation_data` logs ("val_"; a workflow
                whose validation set holds crops says so with "crop_val_", keeping "val_" for
                the whole-image figures a callback adds).

        Returns:
            The history, `{log name: [one value per epoch]}`, including epochs restored from the
            checkpoint on resume. Logs are `loss`, the metrics, `learning_rate` and their `val_`
            versions.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (with `on_nan="raise"`).
            ConfigError: bad arguments, a dataset of the wrong shape, or a resume from the
                checkpoint of a run with another `fingerprint`.
            DataError: a file failed to decode inside the input pipeline (`on_error="raise"`).
        """
        self._check_dataset(train_data, "train_data")
        if validation_data is not None:
            self._check_dataset(validation_data, "validation_data")
        if not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        steps = self._steps(train_data, steps_per_epoch, "steps_per_epoch")
        val_steps = self._steps(validation_data, validation_steps, "validation_steps") if validation_data else None
        callbacks = list(callbacks or ())
        checkpoints, manager = self._checkpoint_callbacks(callbacks, checkpoint_dir, resume, fingerprint)
        if self.is_chief:
            for folder in output_folders(callbacks):
                clean_stale_temporaries(folder)

        self._build_functions()
        self._prepare(train_data)
        state = None
        if resume:
            path = manager.latest()
            if path is None:
                logger.warning("resume: no checkpoint in %s, training from scratch", manager.directory)
            else:
                self._check_fingerprint(manager, path, fingerprint)
                state = manager.restore(self.model, self.optimizer, path)
                initial_epoch = state["epoch"]
                for callback in checkpoints:
                    callback.restore(state)
                logger.info("resuming from %s after epoch %d", path, initial_epoch)
        self.sync_initial_state()
        history = {k: list(v) for k, v in ((state or {}).get("history") or {}).items()}
        self.history = history
        if self.is_chief:
            for callback in callbacks:
                if isinstance(callback, keras.callbacks.CSVLogger) and callback.append:
                    rewrite_csv_history(callback.filename, history, separator=callback.sep)
        if initial_epoch >= epochs:
            logger.info("nothing to do: %d of %d epochs already done", initial_epoch, epochs)
            return history

        verbose = fit_verbosity(verbose)  # off a terminal: one line per epoch, not bar redraws
        lines = [EpochLine(epochs)] if verbose == 2 else []
        callback_list = keras.callbacks.CallbackList(
            callbacks + lines, add_history=True, add_progbar=verbose == 1, model=self.model, epochs=epochs,
            steps=steps, verbose=verbose)
        self.model.stop_training = False
        train_dist = self.strategy.experimental_distribute_dataset(train_data)
        val_dist = None if validation_data is None else self.strategy.experimental_distribute_dataset(validation_data)
        logger.info("training epochs %d-%d on %d replica(s)", initial_epoch + 1, epochs, self.num_replicas)

        callback_list.on_train_begin()
        if state is not None:
            restore_callbacks_state(callbacks, state.get("callbacks"))
        iterator = None
        epoch_logs = {}
        if steps_per_epoch is None:
            self._fast_forward(train_data, train_dist, initial_epoch)
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            if steps_per_epoch is None or iterator is None:
                iterator = iter(train_dist)
                _count_epochs(train_data, 1)
            iterator = self._train_epoch(epoch, iterator, steps, steps_per_epoch is not None, callback_list)
            self.sync_metrics()
            epoch_logs = self._floats(self._results())
            if val_dist is not None:
                val_logs = self._run_test(val_dist, val_steps, callback_list)
                epoch_logs.update({f"{validation_prefix}{k}": v for k, v in val_logs.items()})
            epoch_logs["learning_rate"] = current_learning_rate(self.optimizer)
            callback_list.on_epoch_end(epoch, epoch_logs)
            for callback in callbacks:  # figures a callback added (Keras may hand callbacks a copy of the logs)
                epoch_logs.update(getattr(callback, "added_logs", None) or {})
            for key, value in epoch_logs.items():
                history.setdefault(key, []).append(value)
            if self.model.stop_training:
                logger.info("training stopped by a callback after epoch %d", epoch + 1)
                break
        callback_list.on_train_end(epoch_logs)
        return history

    @staticmethod
    def _check_fingerprint(manager, path, fingerprint):
        """Refuse to resume from the checkpoint of a run with other settings."""
        if fingerprint is None:
            return
        saved = manager.read_state(path).get(FINGERPRINT_KEY)
        if saved is None:
            logger.warning("resume: %s records no config fingerprint; cannot check that it is this run's", path)
        elif saved != fingerprint:
            raise ConfigError(f"resume: the checkpoint {path} was written by a run with another config "
                              f"(fingerprint {saved[:12]}, this run {str(fingerprint)[:12]}); use another output "
                              "folder, or start without resume")

    @staticmethod
    def _fast_forward(train_data, train_dist, initial_epoch):
        """Start the dataset's random draws (shuffle order, crops) where epoch `initial_epoch` begins.

        tfseg's pipelines draw new random numbers for each pass (`reshuffle_each_iteration`,
        `rerandomize_each_iteration`): a pass's draws depend on how many passes were started
        before. A resumed process starts the passes that the interrupted run had already
        started (creating an iterator draws its seeds; no element is read), so it trains on
        exactly the batches an uninterrupted run would have.
        """
        missing = initial_epoch - _count_epochs(train_data, 0)
        if missing > 0:
            logger.info("advancing the training data's random state by %d epoch(s)", missing)
            for _ in range(missing):
                iter(train_dist)
            _count_epochs(train_data, missing)

    def _checkpoint_callbacks(self, callbacks, checkpoint_dir, resume, fingerprint=None):
        """The EpochCheckpoints in use (adding one for `checkpoint_dir`) and the manager to resume from."""
        checkpoints = [c for c in callbacks if isinstance(c, EpochCheckpoint)]
        manager = None
        if checkpoint_dir is not None:
            wanted = CheckpointManager(checkpoint_dir)
            same = [c for c in checkpoints if c.manager.directory == wanted.directory]
            if same:
                manager = same[0].manager
            else:
                callback = EpochCheckpoint(wanted, optimizer=self.optimizer, is_chief=self.is_chief)
                callbacks.append(callback)
                checkpoints.append(callback)
                manager = wanted
        elif checkpoints:
            manager = checkpoints[0].manager
        elif resume:
            raise ConfigError("resume=True needs checkpoint_dir or an EpochCheckpoint callback")
        for callback in checkpoints:
            callback.track(callbacks)
            if fingerprint is not None:
                callback.extra_state[FINGERPRINT_KEY] = str(fingerprint)
        return checkpoints, manager

    def _train_epoch(self, epoch, iterator, steps, persistent, callback_list):
        """One epoch of training steps; returns the iterator to continue from (None when exhausted)."""
        step = 0
        while steps is None or step < steps:
            try:
                batch = next_batch(iterator)
            except StopIteration:
                if persistent:
                    logger.warning("epoch %d: the dataset ran out after %d of %d steps; it restarts next epoch",
                                   epoch + 1, step, steps)
                iterator = None
                break
            callback_list.on_train_batch_begin(step)
            loss, applied, logs = self._train_fn(batch)
            if not bool(applied):
                self._non_finite(epoch, step, float(loss), batch)
            callback_list.on_train_batch_end(step, logs)
            step += 1
            if self.model.stop_training:
                break
        if step == 0:
            raise ConfigError(f"epoch {epoch + 1}: the training dataset yielded no batch")
        return iterator

    def _local(self, value):
        """A (possibly per-replica) batch tensor as one numpy array of this process's rows."""
        parts = [np.asarray(v) for v in self.strategy.experimental_local_results(value)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _bad_rows(self, batch):
        """What is known about the rows of a batch whose loss was not finite, as text ('' if nothing)."""
        try:
            x, y, _ = _unpack(batch)
            found = []
            for what, value in (("inputs", x), ("targets", y)):
                rows = set()
                for tensor in tf.nest.flatten(value):
                    array = self._local(tensor)
                    if array.dtype.kind == "f":
                        rows.update(np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1)).tolist())
                if rows:
                    found.append((what, sorted(rows)))
            text = "; ".join(f"the {what} of batch row(s) {rows} hold NaN/inf" for what, rows in found)
            if self.describe_rows is not None:
                rows = sorted({r for _, rs in found for r in rs}) or None
                named = self.describe_rows(batch, rows)
                if named:
                    text = f"{text}; cases: {named}" if text else f"cases: {named}"
            return text
        except Exception as error:  # never hide the loss error behind a reporting error
            logger.debug("could not inspect the bad batch: %s", error)
            return ""

    def _non_finite(self, epoch, step, loss, batch=None):
        where = f"epoch {epoch + 1}, step {step + 1}"
        details = self._bad_rows(batch) if batch is not None else ""
        if details:
            where = f"{where} ({details})"
        if self.on_nan in ("raise", "stop"):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss}) at {where}; that batch was not applied, the model keeps "
                "the weights of the previous step. Check the inputs and labels for NaN/inf, lower the "
                "learning rate, or skip such batches (nan_policy='skip_batch').")
        self.skipped_batches += 1
        logger.warning("non-finite training loss (%s) at %s: batch skipped (%d so far)", loss, where,
                       self.skipped_batches)

    def _run_test(self, dist_data, steps, callback_list):
        self.reset_metrics()
        callback_list.on_test_begin()
        iterator = iter(dist_data)
        step = 0
        while steps is None or step < steps:
            try:
                batch = next_batch(iterator)
            except StopIteration:
                break
            callback_list.on_test_batch_begin(step)
            logs = self._test_fn(batch)
            callback_list.on_test_batch_end(step, logs)
            step += 1
        if step == 0:
            raise ConfigError("the evaluation dataset yielded no batch")
        logs = self._floats(self._results())
        callback_list.on_test_end(logs)
        return logs

    def evaluate(self, data, verbose=0, steps=None, callbacks=()):
        """Loss and metrics over `data` (metrics are reset first).

        Args:
            data: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)` batches.
            verbose: 1 shows a progress bar (on a terminal only).
            steps: batches to evaluate; default one pass.
            callbacks: Keras callbacks receiving the `on_test_*` calls.

        Returns:
            `{"loss": ..., metric names: ...}` as floats.
        """
        self._check_dataset(data, "data")
        steps = self._steps(data, steps, "steps")
        self._prepare(data)
        callback_list = keras.callbacks.CallbackList(list(callbacks or ()), add_progbar=verbose > 0 and is_terminal(),
                                                     model=self.model, epochs=1, steps=steps, verbose=verbose)
        return self._run_test(self.strategy.experimental_distribute_dataset(data), steps, callback_list)

    def predict_on_batch(self, x):
        """The model's output for one batch (inference mode) as numpy."""
        return tf.nest.map_structure(np.asarray, self.model(x, training=False))

    def predict(self, data, steps=None, batch_size=32):
        """The model's outputs over a dataset (or an array), concatenated, as numpy.

        Args:
            data: a `tf.data.Dataset` of `x` batches (or of `(x, y[, w])`, whose `x` is used),
                or an array / structure of arrays, batched by `batch_size`.
            steps: batches to predict; default all.
            batch_size: only for array input.

        Returns:
            An array (or the structure of the model's outputs) with one row per input.
        """
        if not isinstance(data, tf.data.Dataset):
            data = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
        spec = data.element_spec
        if isinstance(spec, tuple) and len(spec) in (2, 3):
            data = data.map(lambda *element: element[0])
        if self._predict_fn is None:
            self._build_functions()
        outputs = []
        for step, batch in enumerate(self.strategy.experimental_distribute_dataset(data)):
            if steps is not None and step >= steps:
                break
            outputs.append(tf.nest.map_structure(np.asarray, self._predict_fn(batch)))
        if not outputs:
            raise ConfigError("predict: the dataset yielded no batch")
        return tf.nest.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)
