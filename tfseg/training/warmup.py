"""Learning-rate warm-up for data-parallel training: a Keras callback and a schedule wrapper.

With Horovod each process reads its own batch, so the global batch is `world_size` times
larger and the learning rate is scaled by `world_size` (Goyal et al. 2017). `LearningRateWarmup`
ramps the rate linearly from `lr / world_size` up to `lr` over the first epoch(s);
`WarmupSchedule` does the same for a `LearningRateSchedule`. Both are defined (and the schedule
registered as a Keras serializable) when this module is imported.

Example:
    >>> [warmup_factor(step, 4, 2) for step in (0, 2, 4, 8)]
    [0.5, 0.75, 1.0, 1.0]
    >>> schedule = WarmupSchedule(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), 4, 2)
    >>> round(float(schedule(0)), 6), type(keras.saving.deserialize_keras_object(
    ...     keras.saving.serialize_keras_object(schedule))).__name__
    (0.05, 'WarmupSchedule')
"""
import keras

from tfseg.errors import ConfigError

__all__ = ["LearningRateWarmup", "WarmupSchedule", "warmup_factor"]


def warmup_factor(step, warmup_steps, world_size):
    """The warm-up multiplier at `step`: from `1 / world_size` up to 1 after `warmup_steps` steps."""
    start = 1.0 / world_size
    if warmup_steps <= 0:
        return 1.0
    return start + (1.0 - start) * min(1.0, float(step) / float(warmup_steps))


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
        return warmup_factor(step, self.warmup_steps, self.world_size)

    def on_train_begin(self, logs=None):
        optimizer = self._optimizer()
        self._ramping = False
        rate = optimizer._learning_rate  # a variable, or a schedule (not settable as a float)
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            if not isinstance(rate, WarmupSchedule):
                self._wrapped = rate
                optimizer.learning_rate = WarmupSchedule(rate, self.warmup_steps, self.world_size)
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
