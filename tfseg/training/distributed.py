"""Pick a distribution strategy for `Trainer`: one device, many GPUs, many workers, or Horovod.

`make_strategy(kind)` returns a `tf.distribute.Strategy` to create the model and optimizer under
and to pass to `tfseg.training.Trainer` (which runs its own step through `strategy.run`, because
Keras 3 `model.fit` fails under `MultiWorkerMirroredStrategy`):

- "none": the default (no-op) strategy, one device;
- "mirrored": `MirroredStrategy`, every GPU of this machine;
- "multiworker": `MultiWorkerMirroredStrategy`, the cluster described by the `TF_CONFIG`
  environment variable, e.g. `{"cluster": {"worker": ["host1:2222", "host2:2222"]},
  "task": {"type": "worker", "index": 0}}` (start the same script once per worker);
- "horovod": Horovod (an optional extra): returns `HOROVOD`, a marker meaning "train with
  `HorovodTrainer`" (the default strategy plus Horovod's allreduce);
- "auto": horovod when started by `horovodrun`/`mpirun`, multiworker when `TF_CONFIG` is set,
  mirrored when more than one GPU is visible, else none.

Workflows call `workflow_distribution(kind)` instead: a `Distribution` that also covers Horovod
(its trainer, per-rank data sharding with equal step counts, learning-rate scaling and warm-up,
chief-only writes); see docs/distributed.md.

This module imports TensorFlow only when a strategy is made, so `DISTRIBUTE_CHOICES` is cheap
to import (configs use it).

Example:
    >>> strategy = make_strategy("none")
    >>> strategy.num_replicas_in_sync
    1
    >>> "multiworker" in DISTRIBUTE_CHOICES
    True
"""
import contextlib
import json
import logging
import os

from tfseg.errors import ConfigError, TfsegError

logger = logging.getLogger(__name__)

DISTRIBUTE_CHOICES = ("auto", "none", "mirrored", "multiworker", "horovod")

#: Environment variables set by `horovodrun` (Gloo), Open MPI and MPICH/Intel MPI launchers.
LAUNCHER_ENV_VARS = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")

HOROVOD_INSTALL = ("MAKEFLAGS=-j2 HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 "
                   "HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 "
                   "pip install --no-cache-dir --no-build-isolation horovod==0.28.1")


class HorovodBackend:
    """The marker `make_strategy("horovod")` returns: train with `HorovodTrainer`.

    Horovod is not a `tf.distribute` strategy: each process trains one replica under the
    default strategy and `HorovodTrainer` averages the gradients with `hvd.allreduce`.
    """

    name = "horovod"

    @property
    def trainer_class(self):
        """The `Trainer` subclass to use (`HorovodTrainer`)."""
        return _horovod_trainer_class()

    def __repr__(self):
        return "HorovodBackend()"


HOROVOD = HorovodBackend()


def import_horovod():
    """Import `horovod.tensorflow`, or raise a `TfsegError` that says how to install it.

    Returns:
        The `horovod.tensorflow` module.

    Raises:
        TfsegError: Horovod is not installed (or was built without TensorFlow support).
    """
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise TfsegError(
            f"distribute='horovod' needs Horovod, an optional extra that is not installed ({error}). "
            f"Install it with TensorFlow <= 2.18 (Horovod 0.28.1 does not build against newer TF): "
            f"{HOROVOD_INSTALL}; or use distribute='multiworker' (tf.distribute, no extra install)."
        ) from error
    return hvd


def parse_tf_config(value=None):
    """Read and check the `TF_CONFIG` cluster description of a multi-worker run.

    Args:
        value: the JSON text; default the `TF_CONFIG` environment variable.

    Returns:
        The parsed dict (`cluster`, `task`).

    Raises:
        ConfigError: `TF_CONFIG` is missing, not JSON, or has no valid cluster/task.

    Example:
        >>> parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')["task"]
        {'type': 'worker', 'index': 1}
    """
    text = os.environ.get("TF_CONFIG") if value is None else value
    example = ('{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text or not text.strip():
        raise ConfigError(f"distribute='multiworker' needs the TF_CONFIG environment variable describing the "
                          f"cluster, e.g. TF_CONFIG='{example}'")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}); expected e.g. {example}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object like {example}, got {type(config).__name__}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(f"TF_CONFIG has no 'cluster' object; expected e.g. {example}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f"TF_CONFIG cluster[{job!r}] must be a non-empty list of 'host:port' strings, "
                              f"got {addresses!r}")
    if "worker" not in cluster and "chief" not in cluster:
        raise ConfigError(f"TF_CONFIG cluster needs a 'worker' (or 'chief') job, got jobs {sorted(cluster)}")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError(f"TF_CONFIG has no 'task' object with a 'type'; expected e.g. {example}")
    job, index = task["type"], task.get("index", 0)
    if job not in cluster:
        raise ConfigError(f"TF_CONFIG task type {job!r} is not a job of the cluster {sorted(cluster)}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[job]):
        raise ConfigError(f"TF_CONFIG task index {index!r} is out of range for the {len(cluster[job])} "
                          f"{job!r} address(es)")
    return config


def detect_kind(environ=None):
    """What "auto" resolves to from the environment and the visible GPUs.

    Args:
        environ: a mapping like `os.environ` (default `os.environ`).

    Returns:
        One of "horovod", "multiworker", "mirrored", "none".

    Example:
        >>> detect_kind({"TF_CONFIG": "{}"})
        'multiworker'
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in LAUNCHER_ENV_VARS):
        return "horovod"
    if environ.get("TF_CONFIG"):
        return "multiworker"
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "none"


def make_strategy(kind="auto"):
    """The distribution strategy named by `kind` (see the module docstring).

    Args:
        kind: one of `DISTRIBUTE_CHOICES`.

    Returns:
        A `tf.distribute.Strategy`, or `HOROVOD` (train with `HorovodTrainer`) for "horovod".

    Raises:
        ConfigError: an unknown kind, or "multiworker" without a valid `TF_CONFIG`.
        TfsegError: "horovod" when Horovod is not installed (the message says how to install it).

    Example:
        >>> make_strategy("none").num_replicas_in_sync
        1
    """
    if kind not in DISTRIBUTE_CHOICES:
        raise ConfigError(f"distribute must be one of {DISTRIBUTE_CHOICES}, got {kind!r}")
    requested = kind
    if kind == "auto":
        kind = detect_kind()
    if kind == "horovod":
        import_horovod()
        logger.info("distribution: horovod (%s)", "requested" if requested == kind else "launched by horovodrun/MPI")
        return HOROVOD
    if kind == "multiworker":
        config = parse_tf_config()
    import tensorflow as tf

    if kind == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = config["task"]
        logger.info("distribution: MultiWorkerMirroredStrategy, %s %d of cluster %s, %d replica(s) in sync",
                    task["type"], task.get("index", 0), config["cluster"], strategy.num_replicas_in_sync)
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        logger.info("distribution: MirroredStrategy over %d replica(s)", strategy.num_replicas_in_sync)
    else:
        strategy = tf.distribute.get_strategy()
        logger.info("distribution: none (default strategy, one device)")
    if requested == "auto":
        logger.info("distribute='auto' chose %r", kind)
    return strategy


def workflow_strategy(kind):
    """The `tf.distribute` strategy for `kind`, refusing Horovod (kept for scripts that want a plain strategy).

    Workflows use `workflow_distribution`, which also handles Horovod (its own trainer, data
    sharding and learning-rate scaling); a bare strategy cannot express a Horovod run.

    Raises:
        TfsegError: for "horovod" (use `workflow_distribution`; not wired into a bare strategy).
    """
    strategy = make_strategy(kind)
    if strategy is HOROVOD:
        raise TfsegError("distribute='horovod' is not wired into the workflows through a bare strategy: use "
                         "tfseg.training.distributed.workflow_distribution (or HorovodTrainer in your own script)")
    return strategy


def shard_for_worker(dataset, num_workers, index):
    """This worker's share of a dataset: every `num_workers`-th element from `index`.

    Shard *before* batching (and before shuffling with a per-worker seed) so workers see
    disjoint examples; with Horovod use `hvd.size()` and `hvd.rank()`.

    Args:
        dataset: a `tf.data.Dataset`.
        num_workers: the number of workers (>= 1).
        index: this worker's index, `0 <= index < num_workers`.

    Returns:
        The sharded dataset.

    Example:
        >>> import tensorflow as tf
        >>> [int(v) for v in shard_for_worker(tf.data.Dataset.range(6), 2, 1)]
        [1, 3, 5]
    """
    for name, value in (("num_workers", num_workers), ("index", index)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"shard_for_worker: {name} must be an integer, got {value!r}")
    if num_workers < 1 or not 0 <= index < num_workers:
        raise ConfigError(f"shard_for_worker: need num_workers >= 1 and 0 <= index < num_workers, "
                          f"got num_workers={num_workers}, index={index}")
    return dataset if num_workers == 1 else dataset.shard(num_workers, index)


def scale_learning_rate(learning_rate, world_size):
    """Linear scaling: `world_size` workers average gradients over a `world_size`-times larger batch.

    With large worlds, ramp the scaled rate up over the first few epochs (e.g. a linear warm-up
    from `learning_rate` over 5 epochs, Goyal et al. 2017) to avoid early divergence.

    Args:
        learning_rate: the single-worker learning rate (> 0).
        world_size: the number of workers (>= 1).

    Returns:
        `learning_rate * world_size`.

    Example:
        >>> scale_learning_rate(1e-3, 4)
        0.004
    """
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
    if not learning_rate > 0:
        raise ConfigError(f"learning_rate must be positive, got {learning_rate!r}")
    return float(learning_rate) * world_size


def init_horovod():
    """Initialise Horovod and pin this process to the GPU of its local rank.

    Call it first thing in a Horovod script (before TensorFlow touches a GPU); `HorovodTrainer`
    calls it too, which is harmless when already done.

    Returns:
        The `horovod.tensorflow` module.
    """
    hvd = import_horovod()
    hvd.init()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        gpu = gpus[hvd.local_rank() % len(gpus)]
        try:
            tf.config.set_visible_devices(gpu, "GPU")
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TensorFlow already initialised its devices
            logger.warning("Horovod rank %d: GPUs were initialised before init_horovod(); call it first to pin "
                           "one GPU per process", hvd.rank())
    logger.info("Horovod rank %d of %d (local rank %d)", hvd.rank(), hvd.size(), hvd.local_rank())
    return hvd


_HOROVOD_TRAINER = None


def _horovod_trainer_class():
    """Define `HorovodTrainer` on first use, so importing this module needs neither Horovod nor TF."""
    global _HOROVOD_TRAINER
    if _HOROVOD_TRAINER is not None:
        return _HOROVOD_TRAINER
    from tfseg.training.trainer import Trainer

    class HorovodTrainer(Trainer):
        """`Trainer` for Horovod: one replica per process, gradients averaged with `hvd.allreduce`.

        Start with `horovodrun -np N python train.py`. Workflows get one from
        `workflow_distribution(...).trainer(...)`, which also shards the data, scales the
        learning rate and adds the warm-up. In your own script: call `init_horovod()` first,
        shard the batched data with `shard_batches(ds, hvd.size(), hvd.rank())`, scale the
        learning rate with `scale_learning_rate`, and write files only when `trainer.is_chief`.
        Arguments are those of `Trainer` (leave `strategy` unset).

        What is synchronised across the ranks:

        - the start: model and optimizer variables are broadcast from rank 0 (after a resume,
          every rank must have restored the same checkpoint: put the output folder on a shared
          filesystem; a mismatch is reported on every rank, not left to hang);
        - each step: gradients are averaged, weighted by each rank's batch size, so the update
          is that of one process on the concatenated batch; a non-finite loss on any rank makes
          every rank skip (or raise on) that step;
        - the epoch logs: the training loss and metrics are global figures: the metrics'
          states (sums and counts, confusion counts) are summed over the ranks before the
          epoch's values are read; the per-step progress bar shows this rank's own figures;
        - validation is *not* sharded: each rank evaluates the whole validation set (identical
          weights, identical figures), so `val_` logs need no reduction.
        """

        def __init__(self, *args, **kwargs):
            if kwargs.get("strategy") is not None:
                raise ConfigError("HorovodTrainer runs under the default strategy; do not pass strategy=")
            self._hvd = init_horovod()
            super().__init__(*args, **kwargs)

        @property
        def world_size(self):
            """The number of Horovod processes."""
            return self._hvd.size()

        @property
        def is_chief(self):
            """Rank 0 writes the checkpoints and logs."""
            return self._hvd.rank() == 0

        def reduce_gradients(self, grads):
            """Average each gradient over the processes (`hvd.allreduce`, op Average)."""
            if self._hvd.size() == 1:
                return grads
            return [None if g is None else self._hvd.allreduce(g, op=self._hvd.Average) for g in grads]

        def _replica_grads(self, x, y, sample_weight):
            """The step's gradients, with Horovod's global batch size and a global non-finite flag."""
            import tensorflow as tf

            from tfseg.training.trainer import _batch_size

            hvd = self._hvd
            if hvd.size() == 1:
                return super()._replica_grads(x, y, sample_weight)
            n_local = _batch_size(x)
            n_global = hvd.allreduce(n_local, op=hvd.Sum)
            # averaged over ranks, weight * gradient of the local mean = the gradient of the global mean
            weight = tf.math.divide_no_nan(n_local * float(hvd.size()), n_global)
            grads, total, parts, y_pred = self._forward_backward_fn(x, y, sample_weight, weight)
            grads = self.reduce_gradients(list(grads))
            local_bad = tf.cast(tf.logical_not(tf.math.is_finite(total)), tf.float32)
            not_finite = hvd.allreduce(local_bad, op=hvd.Sum)
            return grads, total, parts, y_pred, n_local, not_finite, total * weight

        def sync_metrics(self):
            """Sum the training metrics' states over the ranks, so the epoch logs are global figures."""
            hvd = self._hvd
            if hvd.size() == 1:
                return
            variables = [v for metric in self.metrics for v in metric.variables]
            if not variables:
                return
            by_dtype = {}
            for variable in variables:  # a grouped allreduce takes one dtype (confusion counts are float64)
                by_dtype.setdefault(variable.value.dtype.name, []).append(variable)
            for dtype, group in sorted(by_dtype.items()):
                summed = hvd.grouped_allreduce([v.value for v in group], op=hvd.Sum, name=f"tfseg_metrics_{dtype}")
                for variable, value in zip(group, summed):
                    variable.assign(value)

        def sync_initial_state(self):
            """Broadcast the model's and the optimizer's variables from rank 0.

            Keras 3 variables wrap a `tf.Variable` (`.value`), which is what Horovod assigns.

            Raises:
                TfsegError: the ranks start from different optimizer steps (they resumed from
                    different checkpoints: the checkpoint folder is not shared).
            """
            import numpy as np

            hvd = self._hvd
            if hvd.size() == 1:
                return
            steps = np.asarray(hvd.allgather_object(int(self.optimizer.iterations.numpy()), name="tfseg_steps"))
            if np.any(steps != steps[0]):
                raise TfsegError(f"the Horovod ranks start from different optimizer steps {steps.tolist()}: they "
                                 "restored different checkpoints. Put the output folder on a filesystem every rank "
                                 "shares (only rank 0 writes checkpoints), or start without resume.")
            hvd.broadcast_variables([v.value for v in self.model.variables], root_rank=0)
            hvd.broadcast_variables([v.value for v in self.optimizer.variables], root_rank=0)

    _HOROVOD_TRAINER = HorovodTrainer
    return HorovodTrainer


def __getattr__(name):
    if name == "HorovodTrainer":
        return _horovod_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------- what the workflows use
def equal_shard_steps(num_batches, world_size):
    """Batches each of `world_size` ranks trains on per epoch, the same number on every rank.

    Horovod's allreduce waits for every rank, so a rank that runs out of batches before the
    others would hang them. Each rank gets `num_batches // world_size` batches (at most
    `world_size - 1` batches of an epoch go unused; with a shuffled dataset, different ones each
    epoch); with fewer batches than ranks, each rank gets one (some batches are then used twice).

    Args:
        num_batches: batches in one pass over the (batched) training dataset (>= 1).
        world_size: the number of ranks (>= 1).

    Returns:
        The number of steps per epoch on every rank.

    Example:
        >>> equal_shard_steps(10, 4), equal_shard_steps(8, 4), equal_shard_steps(3, 4)
        (2, 2, 1)
    """
    for name, value in (("num_batches", num_batches), ("world_size", world_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"equal_shard_steps: {name} must be a positive integer, got {value!r}")
    return max(1, num_batches // world_size)


def shard_batches(dataset, world_size, rank):
    """This rank's share of a *batched* dataset, with the same number of batches on every rank.

    Rank `r` takes batches `r, r + world_size, r + 2 * world_size, ...`, `equal_shard_steps`
    of them. Every rank must build the same dataset (same files, same shuffle seed) so the
    shares are disjoint. A dataset that repeats forever is sharded as it is (give
    `steps_per_epoch`); one of unknown length is counted once (a full pass, logged).

    Args:
        dataset: a batched `tf.data.Dataset`.
        world_size: the number of ranks (>= 1).
        rank: this rank, `0 <= rank < world_size`.

    Returns:
        The sharded dataset (the input itself for one rank).

    Example:
        >>> import tensorflow as tf
        >>> data = tf.data.Dataset.range(5)
        >>> [[int(v) for v in shard_batches(data, 2, r)] for r in range(2)]
        [[0, 2], [1, 3]]
    """
    import tensorflow as tf

    shard_for_worker(dataset, world_size, rank)  # validates the arguments
    if world_size == 1:
        return dataset
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        return dataset.shard(world_size, rank)
    if cardinality == tf.data.UNKNOWN_CARDINALITY:
        logger.warning("the training dataset has an unknown length: counting its batches with one pass (give it "
                       "a known length, e.g. with tf.data.experimental.assert_cardinality, to skip this)")
        cardinality = int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
    if cardinality == 0:
        raise ConfigError("the training dataset is empty: nothing to shard across the ranks")
    steps = equal_shard_steps(cardinality, world_size)
    if cardinality % world_size:
        logger.info("%d batches over %d ranks: %d steps per epoch on each rank (%d batch(es) unused per epoch)",
                    cardinality, world_size, steps, max(0, cardinality - steps * world_size))
    return dataset.repeat().shard(world_size, rank).take(steps)


def _warmup_factor(step, warmup_steps, world_size):
    """The warm-up multiplier at `step`: from `1 / world_size` up to 1 after `warmup_steps` steps."""
    start = 1.0 / world_size
    if warmup_steps <= 0:
        return 1.0
    return start + (1.0 - start) * min(1.0, float(step) / float(warmup_steps))


def _learning_rate_schedule_class():
    import keras

    @keras.saving.register_keras_serializable(package="tfseg")
    class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """A learning-rate schedule multiplied by a linear warm-up from `1 / world_size` to 1.

        Args:
            schedule: the wrapped `LearningRateSchedule`.
            warmup_steps: optimizer steps the warm-up lasts.
            world_size: the warm-up starts at `schedule(0) / world_size`.
        """

        def __init__(self, schedule, warmup_steps, world_size):
            self.schedule = schedule
            self.warmup_steps = int(warmup_steps)
            self.world_size = int(world_size)

        def __call__(self, step):
            step = keras.ops.cast(step, "float32")
            start = 1.0 / self.world_size
            progress = keras.ops.minimum(1.0, step / float(max(1, self.warmup_steps)))
            return self.schedule(step) * (start + (1.0 - start) * progress)

        def get_config(self):
            return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                    "warmup_steps": self.warmup_steps, "world_size": self.world_size}

        @classmethod
        def from_config(cls, config):
            config = dict(config)
            config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
            return cls(**config)

    return WarmupSchedule


_WARMUP_CLASSES = {}


def _warmup_classes():
    """Define the Keras warm-up callback and schedule on first use (this module stays TF-free to import)."""
    if _WARMUP_CLASSES:
        return _WARMUP_CLASSES["callback"], _WARMUP_CLASSES["schedule"]
    import keras

    schedule_class = _learning_rate_schedule_class()

    class LearningRateWarmup(keras.callbacks.Callback):
        """Ramp the learning rate linearly from `lr / world_size` to `lr` over the first epoch(s).

        The ramp follows `optimizer.iterations` (restored with a checkpoint), so a resumed run
        continues it where it stopped. With a float learning rate the target `lr` is the rate
        when training first starts; it is saved with the checkpoint (`get_resume_state`). With a
        `LearningRateSchedule`, the schedule is wrapped in a `WarmupSchedule` for the run
        (multiplying it by the ramp) and unwrapped at the end.

        Args:
            world_size: the ramp starts at `1 / world_size` of the rate.
            warmup_epochs: epochs the ramp lasts (0: no warm-up).
            steps_per_epoch: optimizer steps per epoch; default the `steps` Keras passes to the
                callbacks (a dataset of known length).
        """

        def __init__(self, world_size, warmup_epochs=1, steps_per_epoch=None):
            super().__init__()
            if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
                raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
            if not isinstance(warmup_epochs, (int, float)) or isinstance(warmup_epochs, bool) or warmup_epochs < 0:
                raise ConfigError(f"warmup_epochs must be a number >= 0, got {warmup_epochs!r}")
            self.world_size = world_size
            self.warmup_epochs = warmup_epochs
            self.steps_per_epoch = steps_per_epoch
            self.target = None
            self._wrapped = None
            self._ramping = False

        def _optimizer(self):
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is None:
                raise ConfigError("LearningRateWarmup needs the model's optimizer (tfseg's Trainer attaches it)")
            return getattr(optimizer, "inner_optimizer", optimizer)

        @property
        def warmup_steps(self):
            """Optimizer steps the ramp lasts."""
            steps = self.steps_per_epoch or (self.params or {}).get("steps")
            if not steps:
                raise ConfigError("LearningRateWarmup: the number of steps per epoch is unknown; pass "
                                  "steps_per_epoch")
            return int(round(self.warmup_epochs * steps))

        def factor(self, step):
            """The multiplier of the learning rate at optimizer step `step`."""
            return _warmup_factor(step, self.warmup_steps, self.world_size)

        def on_train_begin(self, logs=None):
            optimizer = self._optimizer()
            self._ramping = False
            rate = optimizer._learning_rate  # a variable, or a schedule (not settable as a float)
            if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
                if not isinstance(rate, schedule_class):
                    self._wrapped = rate
                    optimizer.learning_rate = schedule_class(rate, self.warmup_steps, self.world_size)
                return
            if self.target is None:
                self.target = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            self._set(optimizer)

        def set_resume_state(self, state):
            """Take the target learning rate saved with the checkpoint."""
            if state.get("target") is not None:
                self.target = float(state["target"])
                if self.model is not None and self._wrapped is None:
                    self._set(self._optimizer())

        def get_resume_state(self):
            """The target learning rate (float learning rates only)."""
            return {"target": self.target}

        def _set(self, optimizer):
            if self.target is None:
                return
            step = int(keras.ops.convert_to_numpy(optimizer.iterations))
            if step < self.warmup_steps:
                optimizer.learning_rate = self.target * self.factor(step)
                self._ramping = True
            elif self._ramping:  # the ramp just ended: the full rate, then leave it to other callbacks
                optimizer.learning_rate = self.target
                self._ramping = False

        def on_train_batch_begin(self, batch, logs=None):
            if self._wrapped is None:
                self._set(self._optimizer())

        def on_train_batch_end(self, batch, logs=None):  # so a checkpoint holds the next step's rate
            if self._wrapped is None:
                self._set(self._optimizer())

        def on_train_end(self, logs=None):
            if self._wrapped is not None:
                self._optimizer().learning_rate = self._wrapped
                self._wrapped = None

    _WARMUP_CLASSES.update(callback=LearningRateWarmup, schedule=schedule_class)
    return LearningRateWarmup, schedule_class


class Distribution:
    """How a workflow trains: the strategy, this process's rank, its data shard and its trainer.

    Made by `workflow_distribution(kind)`. For "none", "mirrored" and "multiworker", batches
    are *global* (split over the replicas by tf.distribute) and the learning rate is unchanged;
    for "horovod", each process reads `batch_size` examples per step (the global batch is
    `world_size * batch_size`), so the learning rate is scaled by `world_size` and warmed up.

    Attributes:
        kind: the resolved kind ("none", "mirrored", "multiworker" or "horovod").
        strategy: the `tf.distribute.Strategy` (the default one for "none" and "horovod").
        world_size: Horovod processes, else replicas in sync.
        rank: this process's rank (Horovod), worker index (multiworker), else 0.
        is_chief: whether this process writes checkpoints, logs, exports and metrics files.

    Example:
        >>> dist = workflow_distribution("none")
        >>> dist.kind, dist.world_size, dist.rank, dist.is_chief, dist.learning_rate(1e-3), dist.callbacks()
        ('none', 1, 0, True, 0.001, [])
    """

    def __init__(self, kind, strategy, hvd=None):
        self.kind = kind
        self.strategy = strategy
        self._hvd = hvd

    def __repr__(self):
        return f"Distribution(kind={self.kind!r}, world_size={self.world_size}, rank={self.rank})"

    @property
    def world_size(self):
        """Horovod processes, or replicas in sync."""
        return self._hvd.size() if self._hvd is not None else self.strategy.num_replicas_in_sync

    @property
    def rank(self):
        """This process's rank (0 on one machine without Horovod)."""
        if self._hvd is not None:
            return self._hvd.rank()
        resolver = getattr(self.strategy, "cluster_resolver", None)
        return int(getattr(resolver, "task_id", None) or 0)

    @property
    def is_chief(self):
        """Rank 0 (Horovod), the chief worker (multiworker), else True."""
        if self._hvd is not None:
            return self._hvd.rank() == 0
        from tfseg.training.trainer import is_chief

        return is_chief(self.strategy)

    def scope(self):
        """The context to build the model and the optimizer under."""
        return self.strategy.scope()

    def shard(self, dataset):
        """This rank's batches of a *batched* training dataset (Horovod: `shard_batches`; else unchanged).

        tf.distribute splits the global batches itself; Horovod ranks each take their own
        batches, the same number on every rank. Do not shard validation data: every rank
        validates on all of it (identical results).
        """
        if self._hvd is None:
            return dataset
        return shard_batches(dataset, self.world_size, self.rank)

    def learning_rate(self, learning_rate):
        """The learning rate for this run: Horovod `learning_rate * world_size`, else unchanged."""
        if self._hvd is None:
            return learning_rate
        return scale_learning_rate(learning_rate, self.world_size)

    def callbacks(self, warmup_epochs=1, steps_per_epoch=None):
        """Callbacks the distribution needs: Horovod (several ranks) the learning-rate warm-up, else [].

        Args:
            warmup_epochs: epochs of the linear ramp from `lr / world_size` to `lr`.
            steps_per_epoch: steps per epoch, when the dataset's length is unknown.

        Returns:
            A list of Keras callbacks (put them first, before the loggers and checkpoints).
        """
        if self._hvd is None or self.world_size == 1 or not warmup_epochs:
            return []
        callback_class, _ = _warmup_classes()
        return [callback_class(self.world_size, warmup_epochs, steps_per_epoch)]

    def trainer(self, model, loss, optimizer, **kwargs):
        """A `Trainer` on this strategy, or a `HorovodTrainer`; keyword arguments go to it."""
        if "strategy" in kwargs:
            raise ConfigError("Distribution.trainer sets the strategy itself; do not pass strategy=")
        if self._hvd is not None:
            return _horovod_trainer_class()(model, loss, optimizer, **kwargs)
        from tfseg.training.trainer import Trainer

        return Trainer(model, loss, optimizer, strategy=self.strategy, **kwargs)

    def barrier(self):
        """Wait until every Horovod rank gets here (a no-op without Horovod)."""
        if self._hvd is not None and self.world_size > 1:
            self._hvd.broadcast_object(0, root_rank=0, name="tfseg_barrier")

    @contextlib.contextmanager
    def chief_first(self):
        """Run the block on the chief first, then on the other Horovod ranks (e.g. writing a shared dataset).

        Example:
            >>> with workflow_distribution("none").chief_first():
            ...     pass
        """
        if not self.is_chief:
            self.barrier()
        yield
        if self.is_chief:
            self.barrier()


def workflow_distribution(kind="auto"):
    """The `Distribution` a workflow trains with; call it first in `run()` (collectives need a fresh runtime).

    Args:
        kind: one of `DISTRIBUTE_CHOICES`; "auto" detects a `horovodrun`/MPI launch, `TF_CONFIG`
            or several GPUs. "none" (the configs' default) in a process started by `horovodrun`
            or `mpirun` with several processes means "horovod" (a warning says so): otherwise
            every process would train its own copy and write the same files.

    Returns:
        A `Distribution`.

    Raises:
        ConfigError: an unknown kind, or "multiworker" without a valid `TF_CONFIG`.
        TfsegError: "horovod" when Horovod is not installed (the message says how to install it).

    Example:
        >>> workflow_distribution("none").kind
        'none'
    """
    launched = launcher_world_size()
    if kind == "none" and launched > 1:
        logger.warning("started by horovodrun/mpirun with %d processes: training with distribute='horovod' "
                       "(distribute='none' would train %d independent copies writing the same files)",
                       launched, launched)
        kind = "horovod"
    strategy = make_strategy(kind)
    if strategy is HOROVOD:
        import tensorflow as tf

        return Distribution("horovod", tf.distribute.get_strategy(), init_horovod())
    return strategy_distribution(strategy)


def launcher_world_size(environ=None):
    """The number of processes `horovodrun`/`mpirun` started (from their environment), else 1.

    Example:
        >>> launcher_world_size({"HOROVOD_SIZE": "8"}), launcher_world_size({})
        (8, 1)
    """
    environ = os.environ if environ is None else environ
    for name in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        try:
            return max(1, int(environ.get(name, "")))
        except ValueError:
            continue
    return 1


def as_distribution(dist=None):
    """`dist` if it is a `Distribution`, else a `Distribution` around it (a strategy, or None: the current one).

    Example:
        >>> as_distribution(None).kind
        'none'
    """
    return dist if isinstance(dist, Distribution) else strategy_distribution(dist)


def strategy_distribution(strategy=None):
    """A `Distribution` around a `tf.distribute` strategy already made (default: the current one).

    Example:
        >>> strategy_distribution().kind
        'none'
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        kind = "multiworker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        kind = "mirrored"
    else:
        kind = "none"
    return Distribution(kind, strategy)
