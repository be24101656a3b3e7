"""Steps every 2D workflow shares: flags, phased training, the serving callable, writing the outputs.

The workflow modules (`lgg`, `brats2d`, `brats_slices`, ...) keep only what is particular to them
(data, model, loss, evaluation); these helpers do the rest the same way for all of them.

Example:
    >>> import argparse
    >>> parser = add_common_arguments(argparse.ArgumentParser(), epochs=20, batch_size=8, learning_rate=1e-4,
    ...                               output_dir="runs/x", seed=0, on_error="skip", distribute="none")
    >>> args = parser.parse_args(["--epochs", "3", "--quiet"])
    >>> common_updates(args)["train.epochs"], common_updates(args)["train.verbose"]
    (3, 0)
"""
import contextlib
import dataclasses
import logging
import os
import time

from tfseg.training.config import choice, to_dict
from tfseg.training.distributed import DISTRIBUTE_CHOICES

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ImagePreparation:
    """How decoded 2D images are prepared (the fields the 2D workflows' data sections share).

    Attributes:
        normalization: per-image "zscore", "minmax" or "none".
        on_error: "skip" or "raise" for a bad file.
        augment: random flips and small rotations during training.
        max_degrees: rotation range of the augmentation.
        workers: decode threads (default: cores).
    """

    normalization: str = choice("zscore", ("zscore", "minmax", "none"))
    on_error: str = choice("skip", ("skip", "raise"))
    augment: bool = True
    max_degrees: float = 10.0
    workers: int | None = None


@dataclasses.dataclass
class ModelSection:
    """Which model: a registered builder name, its weights and extra builder arguments."""

    name: str = "unet"
    weights: str | None = None
    options: dict = dataclasses.field(default_factory=dict)


def add_common_arguments(parser, epochs, batch_size, learning_rate, output_dir, seed, on_error, distribute,
                         config_help="JSON config file; flags override it"):
    """The flags every recipe has, with the recipe's defaults shown in the help text."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--epochs", type=int, help=f"training epochs ({epochs})")
    parser.add_argument("--batch-size", type=int, help=f"samples per batch per worker ({batch_size})")
    parser.add_argument("--learning-rate", type=float, help=f"initial learning rate ({learning_rate})")
    parser.add_argument("--output-dir", help=f"where checkpoints, logs, predictions and exports go ({output_dir})")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    parser.add_argument("--seed", type=int, help=f"seed for the split, shuffling and augmentation ({seed})")
    parser.add_argument("--on-error", choices=("skip", "raise"), help=f"a bad file: skip it or stop ({on_error})")
    parser.add_argument("--distribute", choices=DISTRIBUTE_CHOICES,
                        help=f"distribution: horovod under horovodrun, multiworker reads TF_CONFIG ({distribute})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def common_updates(args):
    """Dotted-path config overrides for the flags of `add_common_arguments` (None: not given)."""
    return {"train.epochs": args.epochs, "train.batch_size": args.batch_size,
            "train.learning_rate": args.learning_rate, "train.seed": args.seed, "output_dir": args.output_dir,
            "resume": args.resume, "data.on_error": args.on_error, "distribute": args.distribute,
            "train.verbose": 0 if args.quiet else None}


def load_with_overrides(args, defaults, config_class, updates):
    """`defaults` (or the `--config` file) with the common flags and `updates` applied."""
    from tfseg.training.config import load_config, override

    config = load_config(args.config, config_class) if args.config else defaults
    return override(config, {**common_updates(args), **updates})


def fit_phases(dist, model, loss, optimizer, metrics, train_ds, val_ds, epochs, output_dir, monitor, mode="max",
               freeze_epochs=0, set_encoder_trainable=None, resume=False, verbose=1, reduce_lr=None, fingerprint=None):
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
        verbose: 1 for progress bars.
        reduce_lr: keyword arguments of `keras.callbacks.ReduceLROnPlateau`, or None.
        fingerprint: `tfseg.training.config.config_fingerprint(config)`: stored in the checkpoints;
            a resume from another config's checkpoint is refused.

    Returns:
        `(history, seconds)`: the trainer's history dict and the wall time of training.
    """
    from tfseg.training import default_callbacks
    from tfseg.training.checkpoint import ensure_built

    ensure_built(optimizer, model)
    freeze = min(int(freeze_epochs), int(epochs))
    if freeze and set_encoder_trainable is None:
        from tfseg.errors import ConfigError

        raise ConfigError("freeze_epochs > 0 needs set_encoder_trainable")
    phases = ([(freeze, False)] if freeze else []) + [(int(epochs), True)]
    history, start = {}, time.perf_counter()
    for index, (end_epoch, trainable) in enumerate(phases):
        if set_encoder_trainable is not None:
            set_encoder_trainable(model, trainable)
        trainer = dist.trainer(model, loss, optimizer, metrics=metrics)
        callbacks = [*dist.callbacks(), *default_callbacks(output_dir, monitor=monitor, mode=mode,
                                                           is_chief=trainer.is_chief, reduce_lr=reduce_lr)]
        history = trainer.fit(train_ds, epochs=end_epoch, validation_data=val_ds, callbacks=callbacks,
                              checkpoint_dir=os.path.join(output_dir, "checkpoints"), resume=resume or index > 0,
                              verbose=verbose if trainer.is_chief else 0, fingerprint=fingerprint)
    return history, time.perf_counter() - start


def serving_callable(model, spec):
    """`fn(numpy batch) -> {"probabilities", "labels"}` through the exported signature's own function.

    Evaluating through it means the reported figures are those a served model gets.
    """
    import tensorflow as tf

    from tfseg.export.savedmodel import serving_function

    fn = tf.function(serving_function(model, spec))
    return lambda image: {k: v.numpy() for k, v in fn(tf.constant(image, tf.float32)).items()}


def plot_curves(output_dir):
    """Plot `<output_dir>/history.csv` to `<output_dir>/curves.png`; returns the path (None without a history)."""
    from tfseg.viz.curves import plot_training_curves

    history = os.path.join(output_dir, "history.csv")
    if not os.path.exists(history):
        return None
    path = os.path.join(output_dir, "curves.png")
    plot_training_curves(history, path)
    return path


def write_run_outputs(config, model, spec, metrics, dist=None, serving_model=None):
    """Write `model.keras`, `saved_model/`, `metrics.json` and `config.json` (on the chief only).

    Args:
        config: the run's config dataclass (has `output_dir`).
        model: the trained Keras model (saved whole, with its optimizer).
        spec: the `ServingSpec` of the SavedModel.
        metrics: the JSON-serializable figures.
        dist: the run's distribution (None: single process).
        serving_model: the model to export for serving when it differs from `model`.
    """
    from tfseg.export.savedmodel import export_savedmodel
    from tfseg.utils.atomic import atomic_save_model, atomic_write_json

    if dist is not None and not dist.is_chief:
        return
    os.makedirs(config.output_dir, exist_ok=True)
    atomic_save_model(model, os.path.join(config.output_dir, "model.keras"))
    export_savedmodel(serving_model or model, os.path.join(config.output_dir, "saved_model"), spec)
    atomic_write_json(os.path.join(config.output_dir, "metrics.json"), metrics)
    atomic_write_json(os.path.join(config.output_dir, "config.json"), to_dict(config))


def format_rows(rows, footer=None):
    """An aligned two-column text table of `(name, value)` rows, with an optional last line."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if footer:
        lines.append(footer)
    return "\n".join(lines)


def scope(dist):
    """`dist.scope()`, or a null context without a distribution."""
    return dist.scope() if dist is not None else contextlib.nullcontext()


def mixed_precision(enabled):
    """Set Keras' global dtype policy: "mixed_float16" when `enabled` (GPU), else "float32".

    Models keep their outputs in float32 (see the builders); wrap the optimizer with
    `loss_scaled(optimizer, enabled)` so the trainer scales the loss (it calls `scale_loss`).
    """
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
    if enabled:
        logger.info("mixed precision: compute float16, variables float32, dynamic loss scaling")


def loss_scaled(optimizer, enabled):
    """`keras.optimizers.LossScaleOptimizer(optimizer)` under mixed precision, else `optimizer` itself."""
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer) if enabled else optimizer

