"""Phased training (an optional frozen-encoder warm-up, then everything) and the compute precision.

`fit_phases` is what every workflow calls to train: one optimizer across the phases (so a
checkpoint taken in either phase resumes exactly), the default callbacks (checkpoints every
epoch, `history.csv`, TensorBoard scalars, `best.keras`), and the distribution's trainer.

Example:
    >>> import contextlib
    >>> isinstance(scope(None), contextlib.nullcontext)
    True
"""
import contextlib
import logging
import os
import time

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)


def fit_phases(dist, model, loss, optimizer, metrics, train_ds, val_ds, epochs, output_dir, monitor, mode="max",
               freeze_epochs=0, set_encoder_trainable=None, resume=False, verbose=1, reduce_lr=None,
               extra_callbacks=(), validation_prefix="val_"):
    """Train, optionally first with the encoder frozen, with checkpoints every epoch and resume.

    With `freeze_epochs > 0`, epochs `[0, freeze_epochs)` train with `set_encoder_trainable(model,
    False)` and the rest with it True (a warm-up of the decoder on a pretrained encoder). One
    optimizer, built on every variable first, serves both phases, so a checkpoint taken in either
    phase resumes exactly.

    Args:
        dist: the `workflow_distribution` of the run (builds the trainer; chief-only files).
        model, loss, optimizer, metrics: as for `tfseg.training.Trainer`.
        train_ds, val_ds: batched datasets (`val_ds` may be None).
        epochs: total epochs.
        output_dir: the run folder (history.csv, logs/, checkpoints/, best.keras).
        monitor, mode: the log key (and direction) that picks `best.keras`.
        freeze_epochs: epochs with the encoder frozen.
        set_encoder_trainable: `fn(model, trainable)`; needed when `freeze_epochs > 0`.
        resume: continue from the last checkpoint in `<output_dir>/checkpoints`.
        verbose: 1 for progress output.
        reduce_lr: keyword arguments of `keras.callbacks.ReduceLROnPlateau`, or None.
        extra_callbacks: callbacks run before the default ones (e.g. `PeriodicValidation`, which
            adds the whole-image figures to the logs before they are written and monitored).
        validation_prefix: the log prefix of `val_ds`'s figures ("crop_val_" when it holds crops).

    Returns:
        `(history, seconds)`: the trainer's history dict and the wall time of training.
    """
    from tfseg.training.callbacks import default_callbacks
    from tfseg.training.checkpoint import ensure_built

    ensure_built(optimizer, model)
    freeze = min(int(freeze_epochs), int(epochs))
    if freeze and set_encoder_trainable is None:
        raise ConfigError("freeze_epochs > 0 needs set_encoder_trainable")
    phases = ([(freeze, False)] if freeze else []) + [(int(epochs), True)]
    history, start = {}, time.perf_counter()
    for index, (end_epoch, trainable) in enumerate(phases):
        if set_encoder_trainable is not None:
            set_encoder_trainable(model, trainable)
        trainer = dist.trainer(model, loss, optimizer, metrics=metrics)
        callbacks = [*dist.callbacks(), *extra_callbacks,
                     *default_callbacks(output_dir, monitor=monitor, mode=mode, is_chief=trainer.is_chief,
                                        reduce_lr=reduce_lr)]
        history = trainer.fit(train_ds, epochs=end_epoch, validation_data=val_ds, callbacks=callbacks,
                              checkpoint_dir=os.path.join(output_dir, "checkpoints"), resume=resume or index > 0,
                              verbose=verbose if trainer.is_chief else 0, validation_prefix=validation_prefix)
    return history, time.perf_counter() - start


def scope(dist):
    """`dist.scope()`, or a null context without a distribution."""
    return dist.scope() if dist is not None else contextlib.nullcontext()


def mixed_precision(enabled):
    """Set Keras' global dtype policy: "mixed_float16" when `enabled` (GPU), else "float32".

    Models keep their outputs in float32 (see the builders); wrap the optimizer with
    `tfseg.training.registries.loss_scaled` so the trainer scales the loss (it calls `scale_loss`).
    """
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
    if enabled:
        logger.info("mixed precision: compute float16, variables float32, dynamic loss scaling")
