"""The config sections every workflow shares: which model, how it trains, how 2D images are prepared.

A workflow's config is a dataclass of sections (`data`, `model`, `train`, ...) plus the run-level
fields `output_dir`, `resume` and `distribute`. The sections below carry the same field names in
every workflow, so a JSON config or a flag means the same thing everywhere; a workflow subclasses
them only to change defaults (FCN-8s instead of U-Net, focal loss instead of Dice, ...).

Example:
    >>> TrainSection(loss="focal").optimizer, ModelSection(name="unet", encoder="resnet34").freeze_epochs
    ('adam', 0)
"""
import dataclasses

from tfseg.training.config import choice
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
    freeze_epochs: int = 0
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
        verbose: 1 for a progress bar (one line per epoch when the output is not a terminal), 0 for none.
        validate_every: score the whole validation images/volumes through the inference path
            every this many epochs (the figure that picks `best.keras`); 0 chooses the interval so
            that validation takes at most 20% of the training time. The last epoch is always scored.
    """

    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-4
    optimizer: str = choice("adam", tuple(OPTIMIZERS))
    weight_decay: float = 0.0
    lr_schedule: str = choice("constant", tuple(SCHEDULES))
    lr_decay: float = 0.95
    plateau_patience: int = 0
    plateau_factor: float = 0.5
    loss: str = choice("dice", tuple(LOSSES))
    mixed_precision: bool = False
    seed: int = 0
    verbose: int = 1
    validate_every: int = 0


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
