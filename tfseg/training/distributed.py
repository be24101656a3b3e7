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

This module imports TensorFlow only when a strategy is made, so `DISTRIBUTE_CHOICES` is cheap
to import (configs use it).

Example:
    >>> strategy = make_strategy("none")
    >>> strategy.num_replicas_in_sync
    1
    >>> "multiworker" in DISTRIBUTE_CHOICES
    True
"""
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
    """The strategy a workflow's `run` trains with: `make_strategy`, refusing Horovod for now.

    The workflows build a plain `Trainer`; a Horovod run needs `HorovodTrainer` and per-rank data
    sharding, which they do not set up yet.

    Raises:
        TfsegError: for "horovod" (not installed, or not wired into the workflows yet).
    """
    strategy = make_strategy(kind)
    if strategy is HOROVOD:
        raise TfsegError("distribute='horovod' is not wired into the workflows yet: use "
                         "tfseg.training.distributed.HorovodTrainer in your own script, or "
                         "distribute='multiworker'")
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

        Start with `horovodrun -np N python train.py`; in the script call `init_horovod()`
        first, shard the data with `shard_for_worker(ds, hvd.size(), hvd.rank())`, batch it by
        the per-worker batch size, scale the learning rate with `scale_learning_rate`, and write
        files only when `trainer.is_chief`. Arguments are those of `Trainer` (leave `strategy`
        unset).

        Only its import and its missing-Horovod error are tested in this project's suite
        (Horovod needs a source build); the training path is not exercised there.
        """

        def __init__(self, *args, **kwargs):
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

        def sync_initial_state(self):
            """Broadcast the model's and the optimizer's variables from rank 0.

            Keras 3 variables wrap a `tf.Variable` (`.value`), which is what Horovod assigns.
            """
            if self._hvd.size() == 1:
                return
            self._hvd.broadcast_variables([v.value for v in self.model.variables], root_rank=0)
            self._hvd.broadcast_variables([v.value for v in self.optimizer.variables], root_rank=0)

    _HOROVOD_TRAINER = HorovodTrainer
    return HorovodTrainer


def __getattr__(name):
    if name == "HorovodTrainer":
        return _horovod_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
