"""The config sections every workflow shares: which model, how it trains, how 2D images are prepared.

A workflow's config is a dataclass of sections (`data`, `model`, `train`, ...) plus the run-level
fields `output_dir`, `resume` and `distribute`. The sections below carry the same field names in
every workflow, so a JSON config or a flag means the same thing everywhere; a workflow subclasses
them only to change defaults (FCN-8s instead of U-Net, focal loss instead of Dice, ...).

Example:
    >>> TrainSection(loss="focal").optimizer, ModelSection(name="unet", encoder="resnet34").freeze_epochs
    ('adam', 0)
    >>> LggTrain = with_defaults(TrainSection, "TrainSection", "LGG training.", epochs=20, loss="dice")
    >>> LggTrain().epochs, LggTrain(epochs=3).epochs, issubclass(LggTrain, TrainSection)
    (20, 3, True)
"""
import copy
import dataclasses
import sys

from tfseg.training.config import at_least, choice, in_range, output_folder, positive
from tfseg.training.distributed import DISTRIBUTE_CHOICES
from tfseg.training.registries import LOSSES, OPTIMIZERS, SCHEDULES


@dataclasses.dataclass
class ModelSection:
    """Which model: a registered builder and how it starts.

    Attributes:
        name: a builder of `tfseg.models.registry` ("fcn8s", "unet", "segresnet_vae", ...).
        encoder: the encoder of builders that take one ("resnet34", "densenet121", ...); None for
            builders without one.
        weights: "imagenet", or a `.keras` / `.weights.h5` / `.npz` file to start from; None for
            random initial weights.
        freeze_epochs: epochs trained with the encoder frozen before everything is trained (the
            2D workflows skip it without `weights`: a random encoder has nothing to keep).
        options: further builder arguments (filters, width, dropout, ...).
    """

    name: str = "unet"
    encoder: str | None = None
    weights: str | None = None
    freeze_epochs: int = at_least(0, default=0)
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainSection:
    """How the model is optimized: the fields every workflow has, with registry names for the choices.

    Attributes:
        epochs: training epochs.
        batch_size: samples per batch (per process under Horovod, global under tf.distribute).
        learning_rate: the initial learning rate.
        optimizer: "adam", "adamw" or "sgd" (`tfseg.training.registries.OPTIMIZERS`).
        weight_decay: weight decay of the optimizer (0: none).
        lr_schedule: "constant", "cosine", "poly" (power 0.9 to 0 over the run), "exponential"
            (times `lr_decay` once per epoch) (`SCHEDULES`).
        lr_decay: the factor per epoch of the exponential schedule.
        plateau_patience: epochs without improvement of the monitored value before the learning
            rate is reduced by `plateau_factor` (0: no ReduceLROnPlateau).
        plateau_factor: the reduction factor of ReduceLROnPlateau.
        loss: a loss of `tfseg.training.registries.LOSSES` ("dice", "dice_ce", "ce", "focal", ...).
        mixed_precision: float16 compute with float32 variables and loss scaling (GPU).
        seed: seeds the split, the shuffling, the augmentation and the initial weights.
        deterministic: TensorFlow's op determinism on, so same-seed CPU runs are bit-identical
            (`tfseg.training.determinism.seed_run`); `--no-deterministic` trades that for speed
            (mostly on GPUs).
        verbose: 1 for a progress bar (one line per epoch when the output is not a terminal), 0 for none.
        validate_every: score the whole validation images/volumes through the inference path
            every this many epochs (the figure that picks `best.keras`); 0 chooses the interval so
            that validation takes at most 20% of the training time. The last epoch is always scored.
        memory_mb: the memory one training step may take, for sizes planned from a user's dataset
            (`tfseg.datasets.settings.suggest_settings`).
    """

    epochs: int = at_least(1, default=20)
    batch_size: int = at_least(1, default=8)
    learning_rate: float = positive(1e-4)
    optimizer: str = choice("adam", tuple(OPTIMIZERS))
    weight_decay: float = at_least(0.0, default=0.0)
    lr_schedule: str = choice("constant", tuple(SCHEDULES))
    lr_decay: float = in_range(0.0, 1.0, default=0.95)
    plateau_patience: int = at_least(0, default=0)
    plateau_factor: float = in_range(0.0, 1.0, default=0.5)
    loss: str = choice("dice", tuple(LOSSES))
    mixed_precision: bool = False
    seed: int = at_least(0, default=0)
    deterministic: bool = True
    verbose: int = in_range(0, 2, default=1)
    validate_every: int = at_least(0, default=0)
    memory_mb: int = at_least(64, default=4096)


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
    max_degrees: float = at_least(0.0, default=10.0)
    workers: int | None = None


def decoded_datasets(data, split, load_sample, image_size, channels, batch_size, seed, dist=None):
    """Decode a 2D split once (thread pool) and build its training and validation tf.data pipelines.

    What the 2D image workflows (Sunnybrook, LGG) share: the bad files of both sides go into
    `split.problems`; training batches are augmented (flips, small rotations) and this worker's
    shard under Horovod.

    Args:
        data: an `ImagePreparation` (normalization, on_error, augment, max_degrees, workers).
        split: a `tfseg.datasets.splits.DataSplit` of records.
        load_sample: `fn(record) -> (image, mask)` of the dataset.
        image_size: the square side images are resized to.
        channels: channels of the model's input.
        batch_size, seed: of the pipelines.
        dist: the run's `Distribution`, or None.

    Returns:
        `(train_dataset, val_dataset, val_samples)`; `val_samples` holds the decoded validation
        images and masks at their original size, for the evaluation.
    """
    from tfseg.data.loading import load_samples
    from tfseg.data.pipeline import Augmentation2D, segmentation_dataset

    train = load_samples(split.train, load_sample, on_error=data.on_error, workers=data.workers)
    val = load_samples(split.val, load_sample, on_error=data.on_error, workers=data.workers)
    split.problems.extend(train.problems)
    split.problems.extend(val.problems)
    augmentation = Augmentation2D(max_degrees=data.max_degrees) if data.augment else Augmentation2D(0.0, False, 0.0)
    common = dict(image_size=(image_size, image_size), batch_size=batch_size, normalization=data.normalization,
                  channels=channels, seed=seed)
    train_ds = segmentation_dataset(train.images, train.masks, training=True, augmentation=augmentation, **common)
    val_ds = segmentation_dataset(val.images, val.masks, training=False, **common)
    if dist is not None:
        train_ds = dist.shard(train_ds)
    return train_ds, val_ds, val


@dataclasses.dataclass
class RunConfig:
    """The run-level fields of every workflow's config; the workflow adds its sections.

    Attributes:
        output_dir: where checkpoints, logs, predictions and exports go.
        resume: continue from the last checkpoint in `<output_dir>/checkpoints`.
        distribute: "auto", "none", "mirrored", "multiworker" (TF_CONFIG) or "horovod".
    """

    output_dir: str = output_folder("runs/tfseg")
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


def with_defaults(base, class_name, doc, /, **defaults):
    """A subclass of dataclass `base` whose fields start at `defaults` (validation metadata kept).

    This is how a workflow says "the shared `TrainSection`, with these defaults" without
    re-declaring the fields.

    Args:
        base: a dataclass whose fields all have defaults.
        class_name: the new class's name (e.g. "TrainSection").
        doc: its docstring.
        **defaults: field name -> new default (lists and dicts are copied for every instance).

    Returns:
        The new dataclass, defined in the caller's module.
    """
    known = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(set(defaults) - set(known))
    if unknown:
        raise TypeError(f"{base.__name__} has no field {unknown[0]!r}")
    fields = []
    for field_name, value in defaults.items():
        field = known[field_name]
        if isinstance(value, (list, dict, set)):
            spec = dataclasses.field(default_factory=lambda value=value: copy.deepcopy(value), metadata=field.metadata)
        else:
            spec = dataclasses.field(default=value, metadata=field.metadata)
        fields.append((field_name, field.type, spec))
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    return dataclasses.make_dataclass(class_name, fields, bases=(base,),
                                      namespace={"__doc__": doc, "__module__": module})


def workflow_config(class_name, doc, /, **sections):
    """A workflow's config class: `RunConfig`'s run-level fields plus one field per section.

    Args:
        class_name: the class's name (e.g. "LggConfig").
        doc: its docstring.
        **sections: section name -> section dataclass (its instance with defaults is the default).

    Returns:
        The new dataclass, defined in the caller's module; `{}` is a valid JSON config of it.

    Example:
        >>> Config = workflow_config("Config", "A run.", model=ModelSection, train=TrainSection)
        >>> Config().model.name, Config(output_dir="runs/x").output_dir
        ('unet', 'runs/x')
    """
    fields = [(name, section, dataclasses.field(default_factory=section)) for name, section in sections.items()]
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    return dataclasses.make_dataclass(class_name, fields, bases=(RunConfig,),
                                      namespace={"__doc__": doc, "__module__": module})
