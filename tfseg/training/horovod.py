"""`HorovodTrainer`: tfseg's `Trainer` with Horovod's allreduce, one replica per process.

Importing this module imports TensorFlow but not Horovod: Horovod (an optional extra, see
`tfseg.training.distributed.HOROVOD_INSTALL`) is imported when a `HorovodTrainer` is made
(`init_horovod`). `tfseg.training.distributed` imports this module only when a Horovod run is asked
for, so the distribution choices stay cheap to import.

Example:
    >>> issubclass(HorovodTrainer, Trainer)
    True
"""
import numpy as np
import tensorflow as tf

from tfseg.errors import ConfigError, TfsegError
from tfseg.training.distributed import init_horovod
from tfseg.training.trainer import Trainer, batch_size_of

__all__ = ["HorovodTrainer"]


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
        hvd = self._hvd
        if hvd.size() == 1:
            return super()._replica_grads(x, y, sample_weight)
        n_local = batch_size_of(x)
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
