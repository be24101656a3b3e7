"""Cardiac left-ventricle segmentation on Sunnybrook (workflow W1), step by step.

Each step is a small function so a recipe (or a notebook) reads top to bottom:

    config = SunnybrookConfig()                   # or load_config("cfg.json", SunnybrookConfig)
    split = find_data(config)                     # records by case, train/val split by patient
    train_ds, val_ds, val = make_datasets(config, split)
    model = build(config)
    history, seconds = train(config, model, train_ds, val_ds)
    metrics = evaluate(config, model, val, split, seconds)
    export(config, model, metrics)

`run(config)` chains them. With no `image_dir`/`contour_dir`, a synthetic Sunnybrook-layout
dataset (real 16-bit DICOM and contour text files) is written first and used.

Example:
    >>> config = SunnybrookConfig()
    >>> config.model.name, config.data.image_size
    ('fcn8s', 128)
"""
import dataclasses
import logging
import os

import numpy as np

from tfseg.datasets.splits import DataSplit
from tfseg.training.config import choice
from tfseg.training.distributed import DISTRIBUTE_CHOICES, as_distribution, workflow_distribution
from tfseg.workflows import sections
from tfseg.workflows.outputs import use_best_epoch

logger = logging.getLogger(__name__)

CLASS_NAMES = ("background", "left_ventricle")

@dataclasses.dataclass
class DataSection(sections.ImagePreparation):
    """Where the data is and how it is prepared.

    Attributes:
        image_dir: root of the DICOM case folders; None uses the synthetic dataset.
        contour_dir: root of the contour case folders; None uses the synthetic dataset.
        contour: which contour is the target: "icontour" (endocardium) or "ocontour" (epicardium).
        series: case → SAX series overrides of the published table, e.g. {"SC-N-2": "0898"}.
        synthetic_dir: where the synthetic dataset is written (default: `<output_dir>/synthetic_data`).
        synthetic_cases: cases in the synthetic dataset (at most 15 named like the real ones).
        image_size: side of the square the images are resized to for training.
        channels: 1 (grayscale) or 3 (gray→RGB, needed by ImageNet weights).
        val_fraction: fraction of cases (patients) held out for validation.
        (and the `ImagePreparation` fields: normalization, on_error, augment, max_degrees, workers)
    """

    image_dir: str | None = None
    contour_dir: str | None = None
    contour: str = choice("icontour", ("icontour", "ocontour"))
    series: dict | None = None
    synthetic_dir: str | None = None
    synthetic_cases: int = 15
    image_size: int = 128
    channels: int = choice(1, (1, 3))
    val_fraction: float = 0.2


@dataclasses.dataclass
class ModelSection(sections.ModelSection):
    """Which model (FCN-8s by default); see `tfseg.workflows.sections.ModelSection`."""

    name: str = "fcn8s"


@dataclasses.dataclass
class TrainSection(sections.TrainSection):
    """Optimization settings: Adam with a cosine decay and soft Dice + cross-entropy by default."""

    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-4
    lr_schedule: str = choice("cosine", tuple(sections.SCHEDULES))
    loss: str = choice("dice_ce", tuple(sections.LOSSES))


@dataclasses.dataclass
class SunnybrookConfig:
    """The whole Sunnybrook run; every field has a default, so `{}` is a valid JSON config."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    output_dir: str = "runs/sunnybrook"
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


CONFIG_CLASS = SunnybrookConfig

#: The built-in CPU defaults of FCN-8s: a VGG16 encoder at a quarter of its width, 256-wide
#: fc6/fc7, 256x256, 20 epochs of Adam 1e-3 (cosine decay) on soft Dice + cross-entropy.
CPU_DEFAULTS = SunnybrookConfig(
    data=DataSection(image_size=256),
    model=ModelSection(name="fcn8s", options={"width": 0.25, "fc_units": 256, "dropout": 0.1}),
    train=TrainSection(epochs=20, batch_size=8, learning_rate=1e-3, loss="dice_ce"),
    output_dir="runs/sunnybrook_fcn8s",
)

#: The built-in CPU defaults of FCN-AlexNet: half-width AlexNet, 512-wide fc6/fc7.
ALEXNET_CPU_DEFAULTS = dataclasses.replace(
    CPU_DEFAULTS, model=ModelSection(name="fcn_alexnet", options={"width": 0.5, "fc_units": 512, "dropout": 0.1}),
    output_dir="runs/sunnybrook_fcn_alexnet")

#: `--paper`: the DIGITS lab's settings: the published FCN-8s (full VGG16, 4096-wide fc6/fc7),
#: 256x256, batch 1, 20 epochs, Adam 1e-4 with a fixed learning rate, softmax cross-entropy
#: (Dice is reported, not optimized), no augmentation.
PAPER = {"model.options": {"width": 1.0, "fc_units": 4096, "dropout": 0.5}, "data.image_size": 256,
         "data.augment": False,
         "train.batch_size": 1, "train.epochs": 20, "train.learning_rate": 1e-4, "train.optimizer": "adam",
         "train.lr_schedule": "constant", "train.loss": "ce"}

#: `--paper` for FCN-AlexNet: the same settings on the published AlexNet sizes.
ALEXNET_PAPER = dict(PAPER)


def find_data(config):
    """Locate image/contour pairs (writing the synthetic dataset if no folders are given) and split by case."""
    from tfseg.datasets import splits, sunnybrook, synthetic
    from tfseg.utils.problems import ProblemLog

    data = config.data
    use_synthetic = data.image_dir is None and data.contour_dir is None
    if use_synthetic:
        root = data.synthetic_dir or os.path.join(config.output_dir, "synthetic_data")
        written = synthetic.ensure_sunnybrook(root, num_cases=data.synthetic_cases, seed=config.train.seed)
        image_dir, contour_dir, known_series = written.image_dir, written.contour_dir, written.series
        logger.info("using the synthetic Sunnybrook-layout dataset in %s", root)
    else:
        if data.image_dir is None or data.contour_dir is None:
            from tfseg.errors import ConfigError

            raise ConfigError("give both image_dir and contour_dir, or neither for the synthetic dataset")
        image_dir, contour_dir, known_series = data.image_dir, data.contour_dir, sunnybrook.SAX_SERIES
    problems = ProblemLog(data.on_error)
    series = {**known_series, **(data.series or {})}
    records = sunnybrook.find_sunnybrook(image_dir, contour_dir, contour=data.contour, series=series,
                                         on_error=data.on_error, problems=problems)
    split = splits.split_by_patient(records, val_fraction=data.val_fraction, seed=config.train.seed)
    logger.info("%d images from %d cases: %d train, %d val", len(records),
                len({r.case for r in records}), len(split.train), len(split.val))
    return DataSplit(split.train, split.val, problems, use_synthetic)


def make_datasets(config, split, dist=None):
    """Decode the records once and build the training and validation tf.data pipelines.

    Returns:
        `(train_dataset, val_dataset, val_samples)`, where `val_samples` holds the decoded
        validation images and masks at their original size for the final evaluation.
    """
    from tfseg.data.loading import load_samples
    from tfseg.data.pipeline import Augmentation2D, segmentation_dataset
    from tfseg.datasets.sunnybrook import load_sample

    data = config.data
    size = (data.image_size, data.image_size)
    train = load_samples(split.train, load_sample, on_error=data.on_error, workers=data.workers)
    val = load_samples(split.val, load_sample, on_error=data.on_error, workers=data.workers)
    split.problems.extend(train.problems)
    split.problems.extend(val.problems)
    augmentation = Augmentation2D(max_degrees=data.max_degrees) if data.augment else Augmentation2D(0.0, False, 0.0)
    common = dict(image_size=size, batch_size=config.train.batch_size, normalization=data.normalization,
                  channels=data.channels, seed=config.train.seed)
    train_ds = segmentation_dataset(train.images, train.masks, training=True, augmentation=augmentation, **common)
    val_ds = segmentation_dataset(val.images, val.masks, training=False, **common)
    if dist is not None:
        train_ds = dist.shard(train_ds)
    return train_ds, val_ds, val


def build(config, dist=None):
    """Build the configured model (under the scope of `dist`, a `Distribution` or a `tf.distribute.Strategy`)."""
    from tfseg.models import build_model
    from tfseg.training.phases import scope

    data = config.data
    spec = {"name": config.model.name, "input_shape": (data.image_size, data.image_size, data.channels),
            "num_classes": len(CLASS_NAMES), "weights": config.model.weights, **config.model.options}
    with scope(dist):
        return build_model(spec)


def train(config, model, train_ds, val_ds, dist=None, val_samples=None):
    """Train with the tfseg trainer: checkpoints every epoch, CSV/TensorBoard logs, resume.

    Args:
        dist: a `Distribution` from `workflow_distribution` (its trainer, learning-rate scaling
            and warm-up; `train_ds` is then this rank's share), or the `tf.distribute.Strategy`
            the model was built under, or None.
        val_samples: the decoded validation images: scored at their original size through the
            serving path every few epochs (`val_dice`, which picks `best.keras`); `val_ds`
            (resized to the training size) is logged as `resized_val_*`.

    Returns:
        `(history, train_seconds)`.
    """
    from tfseg.training import set_seed
    from tfseg.training.phases import fit_phases
    from tfseg.training.registries import make_loss, make_metrics, make_optimizer
    from tfseg.training.validation import whole_image_validation

    set_seed(config.train.seed)
    dist = as_distribution(dist)
    optimizer = make_optimizer(config.train, int(train_ds.cardinality()), dist.learning_rate(config.train.learning_rate))
    # Dice and IoU of the LV with pixel accuracy: together they show the class imbalance.
    metrics = make_metrics(("dice", "iou", "pixel_accuracy"), CLASS_NAMES, mode="softmax")
    validation = [] if val_samples is None else whole_image_validation(
        lambda m: held_out_predictions(config, m, val_samples)[2], every=config.train.validate_every)
    return fit_phases(dist, model, make_loss(config.train.loss, mode="softmax"), optimizer, metrics,
                      train_ds, val_ds, epochs=config.train.epochs, output_dir=config.output_dir,
                      monitor="val_dice" if val_samples is not None else "resized_val_dice", resume=config.resume,
                      verbose=config.train.verbose, extra_callbacks=validation, validation_prefix="resized_val_")


def held_out_predictions(config, model, val_samples):
    """Predict the validation images at their original size through the serving function, and score them.

    Returns:
        `(predicted labels, true labels, scores)`, the labels flattened over all images; the scores
        are `val_dice`, `val_iou`, `val_precision`, `val_recall` of the LV over all validation
        pixels (also with the `_left_ventricle` suffix) and `val_pixel_accuracy`: the figures
        validation logs and `metrics.json` holds.
    """
    from tfseg.export.savedmodel import serving_callable
    from tfseg.metrics import segmentation_scores

    serve = serving_callable(model, serving_spec(config))
    truth, predicted = [], []
    for image, mask in zip(val_samples.images, val_samples.masks):
        labels = serve(np.asarray(image, np.float32)[None, ..., None])["labels"][0]
        truth.append(np.asarray(mask).ravel())
        predicted.append(np.asarray(labels).ravel())
    truth = np.concatenate(truth)
    predicted = np.concatenate(predicted)
    counts = segmentation_scores(predicted, truth, num_classes=2)
    scores = {"val_pixel_accuracy": float(np.mean(predicted == truth))}
    for score in ("dice", "iou", "precision", "recall"):
        scores[f"val_{score}"] = scores[f"val_{score}_left_ventricle"] = float(counts[score][1])
    return predicted, truth, scores


def evaluate(config, model, val_samples, split=None, train_seconds=None):
    """Validation metrics at the original image size, next to those of an all-background model.

    The images go through the same function as the exported serving signature (normalize,
    resize to the training size, predict, resize back), so these are the figures a served model
    gets. The all-background figures are the class-imbalance lesson of the DIGITS lab: a model
    that predicts nothing scores a high pixel accuracy and a Dice of zero.

    Returns:
        The dict written to `metrics.json`.
    """
    from tfseg.metrics import segmentation_scores

    predicted, truth, scores = held_out_predictions(config, model, val_samples)
    lazy = segmentation_scores(np.zeros_like(truth), truth, num_classes=2)
    metrics = {
        **scores,
        "val_images": len(val_samples),
        "val_cases": len({r.case for r in val_samples.records}),
        "foreground_fraction": float(np.mean(truth == 1)),
        "all_background_pixel_accuracy": float(np.mean(truth == 0)),
        "all_background_dice": float(lazy["dice"][1]),
        "epochs": config.train.epochs,
        "model": config.model.name,
        "params": int(model.count_params()),
    }
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    if split is not None:
        metrics.update(train_images=len(split.train), skipped_records=len(split.problems),
                       synthetic_data=split.synthetic)
    return metrics


def serving_spec(config, metrics=None):
    """The `ServingSpec` that reproduces this run's preprocessing around the model."""
    from tfseg.export.savedmodel import ServingSpec

    data = config.data
    return ServingSpec(image_size=(data.image_size, data.image_size), stride=32, in_channels=1,
                       normalization=data.normalization, activation="softmax", class_names=CLASS_NAMES,
                       extra={"workflow": "sunnybrook", "contour": data.contour, "model": config.model.name,
                              "metrics": metrics or {}})


def export(config, model, metrics):
    """Write `model.keras`, the SavedModel (`saved_model/`), `metrics.json` and `config.json` into the output directory."""
    from tfseg.workflows.outputs import write_run_outputs

    write_run_outputs(config, model, serving_spec(config, metrics), metrics)


def run(config):
    """All steps, in order; returns the metrics dict written to `metrics.json` (None on non-chief Horovod ranks)."""
    dist = workflow_distribution(config.distribute)  # first: collectives need a fresh TF runtime
    with dist.chief_first():  # the chief writes the synthetic dataset, the other ranks then read it
        split = find_data(config)
    train_ds, val_ds, val_samples = make_datasets(config, split, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist=dist, val_samples=val_samples)
    if not dist.is_chief:  # the chief evaluates and writes the outputs
        return None
    best = use_best_epoch(model, history, config.output_dir, monitor="val_dice")
    metrics = {**evaluate(config, model, val_samples, split, seconds), **best}
    export(config, model, metrics)
    return metrics


def summary_table(metrics):
    """A short text table of the headline figures, with the class-imbalance comparison."""
    from tfseg.reports import format_rows

    return format_rows([
        ("model", metrics.get("model", "")),
        ("validation images / cases", f"{metrics['val_images']} / {metrics['val_cases']}"),
        ("LV fraction of pixels", f"{100 * metrics['foreground_fraction']:.2f}%"),
        ("Dice (LV)", f"{metrics['val_dice']:.4f}"),
        ("IoU (LV)", f"{metrics['val_iou']:.4f}"),
        ("pixel accuracy", f"{100 * metrics['val_pixel_accuracy']:.2f}%"),
        ("all-background model: pixel accuracy", f"{100 * metrics['all_background_pixel_accuracy']:.2f}%"),
        ("all-background model: Dice (LV)", f"{metrics['all_background_dice']:.4f}"),
        ("epochs / train time", f"{metrics['epochs']} / {metrics['train_seconds']:.0f} s"),
    ], footer="Pixel accuracy stays high even for a model that predicts no LV at all; Dice does not.")


def add_arguments(parser, defaults):
    """The workflow's own flags (the shared ones come from `tfseg.workflows.entry`)."""
    data = defaults.data
    parser.add_argument("--image-dir", help="root of the DICOM case folders (default: synthetic data)")
    parser.add_argument("--contour-dir", help="root of the contour case folders (default: synthetic data)")
    parser.add_argument("--contour", choices=("icontour", "ocontour"), help=f"target contour ({data.contour})")
    parser.add_argument("--image-size", type=int, help=f"training image side, a multiple of 32 ({data.image_size})")
    parser.add_argument("--weights", help="'imagenet' or a weights file to start from (default: none)")
    parser.add_argument("--synthetic-cases", type=int, help=f"cases in the synthetic dataset ({data.synthetic_cases})")
    return parser


def flag_overrides(args):
    """Dotted-path config updates of the workflow's own flags."""
    return {"data.image_dir": args.image_dir, "data.contour_dir": args.contour_dir, "data.contour": args.contour,
            "data.image_size": args.image_size, "data.synthetic_cases": args.synthetic_cases,
            "model.weights": args.weights}


def adjust_config(config, explicit=()):
    """ImageNet weights need 3-channel input: grayscale images are fed as RGB."""
    from tfseg.training.config import override

    if config.model.weights == "imagenet" and config.data.channels == 1:
        return override(config, {"data.channels": 3})
    return config
