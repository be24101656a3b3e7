"""Lower-grade glioma FLAIR abnormality on the Kaggle lgg-mri-segmentation data (workflow W4), step by step.

The rmldnn recipe: ResUNet, Adam 1e-4 with exponential decay 0.95 per epoch, soft Dice on a sigmoid
output, 256x256 (masks resized without interpolation), a 90/10 split by patient, everything driven by
one JSON config, predictions saved as HDF5 (and PNG overlays), loss and Dice curves plotted.

    config = LggConfig()                          # or load_config("lgg.json", LggConfig)
    dist = workflow_distribution(config.distribute)
    split = find_data(config)                     # records by patient, train/test split
    train_ds, test_ds, test = make_datasets(config, split, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, test_ds, dist)
    metrics = evaluate(config, model, test, split, seconds)   # also writes predictions.h5, overlays/
    export(config, model, metrics, dist)

`run(config)` chains them. With no `data.root`, a synthetic dataset in the Kaggle layout (RGB TIFF
slices and 0/255 TIFF masks in patient folders) is written first and used.

Example:
    >>> LggConfig().model.name, LggConfig().train.lr_decay
    ('resunet', 0.95)
"""
import dataclasses
import logging
import os

import numpy as np

from tfseg.datasets.splits import DataSplit
from tfseg.training.config import choice
from tfseg.training.distributed import DISTRIBUTE_CHOICES
from tfseg.workflows import sections
from tfseg.workflows.outputs import use_best_epoch

logger = logging.getLogger(__name__)

CLASS_NAMES = ("abnormality",)


@dataclasses.dataclass
class DataSection(sections.ImagePreparation):
    """Where the slices are and how they are prepared.

    Attributes:
        root: the Kaggle folder (holding `kaggle_3m/` or the patient folders) or a folder with
            `train_image/` and `train_mask/`; None uses the synthetic dataset.
        synthetic_dir: where the synthetic dataset goes (default `<output_dir>/synthetic_data`).
        synthetic_patients: patients in the synthetic dataset.
        image_size: side of the square slices are resized to (masks with nearest neighbour).
        test_fraction: fraction of patients held out (and used for validation during training).
        layout_split: when `root` also holds `test_image/` and `test_mask/` (rmldnn's layout),
            use them as the held-out split instead of drawing patients.
        (and the `ImagePreparation` fields: normalization, on_error, augment, max_degrees, workers)
    """

    root: str | None = None
    synthetic_dir: str | None = None
    synthetic_patients: int = 20
    image_size: int = 256
    test_fraction: float = 0.1
    layout_split: bool = True


@dataclasses.dataclass
class ModelSection(sections.ModelSection):
    """Which model (ResUNet by default); see `tfseg.workflows.sections.ModelSection`."""

    name: str = "resunet"


@dataclasses.dataclass
class TrainSection(sections.TrainSection):
    """rmldnn's optimization: Adam 1e-4 times 0.95 per epoch, soft Dice on the sigmoid output, batch 32."""

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-4
    lr_schedule: str = choice("exponential", tuple(sections.SCHEDULES))
    lr_decay: float = 0.95
    loss: str = choice("dice", tuple(sections.LOSSES))


@dataclasses.dataclass
class OutputSection:
    """What is written besides the model: PNG overlays (at most `overlays`) and the HDF5 predictions."""

    overlays: int = 24
    predictions_hdf5: bool = True


@dataclasses.dataclass
class LggConfig:
    """The whole LGG run; every field has a default, so `{}` is a valid JSON config."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    outputs: OutputSection = dataclasses.field(default_factory=OutputSection)
    output_dir: str = "runs/lgg"
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


CONFIG_CLASS = LggConfig

#: The built-in CPU defaults: a ResUNet with filters 16-128 at 128x128, batch 16, Adam starting at
#: 1e-3 (the run is a few epochs) times 0.95 per epoch, soft Dice; 25 epochs.
CPU_DEFAULTS = LggConfig(
    data=DataSection(image_size=128),
    model=ModelSection(options={"filters": [16, 32, 64, 128], "bridge_filters": 256}),
    train=TrainSection(epochs=25, batch_size=16, learning_rate=1e-3),
    output_dir="runs/lgg_resunet",
)

#: `--paper`: rmldnn's settings: full-width ResUNet at 256x256, resize only (no augmentation), the
#: layout's own train/test folders, sigmoid + soft Dice, Adam 1e-4 with decay 0.95 per epoch,
#: 20 epochs, batch 32.
PAPER = {"model.options": {"filters": [64, 128, 256, 512], "bridge_filters": 1024}, "data.image_size": 256,
         "data.augment": False, "data.layout_split": True, "train.batch_size": 32, "train.epochs": 20,
         "train.learning_rate": 1e-4, "train.optimizer": "adam", "train.lr_schedule": "exponential",
         "train.lr_decay": 0.95, "train.loss": "dice"}


def find_data(config):
    """Find the image/mask pairs (writing the synthetic dataset if no root is given), split by patient."""
    from tfseg.datasets import lgg, splits
    from tfseg.utils.problems import ProblemLog

    data = config.data
    problems = ProblemLog(data.on_error)
    if data.root is None:
        from tfseg.datasets.synthetic_lgg import ensure_lgg

        root = data.synthetic_dir or os.path.join(config.output_dir, "synthetic_data")
        written = ensure_lgg(root, num_patients=data.synthetic_patients, seed=config.train.seed)
        records = written.find(on_error=data.on_error, problems=problems)
        logger.info("using the synthetic Kaggle-layout LGG dataset in %s", root)
    else:
        records = lgg.find_lgg(data.root, on_error=data.on_error, problems=problems)
        test = lgg.find_lgg_test(data.root, problems=problems) if data.layout_split else None
        if test is not None:
            logger.info("%d slices in train_image/, %d in test_image/: the layout's own split", len(records), len(test))
            return DataSplit(records, test, problems, False)
    split = splits.split_by_patient(records, val_fraction=data.test_fraction, seed=config.train.seed)
    logger.info("%d slices from %d patients: %d train, %d test", len(records),
                len({r.patient for r in records}), len(split.train), len(split.val))
    return DataSplit(split.train, split.val, problems, data.root is None)


def make_datasets(config, split, dist=None):
    """Decode the slices once (thread pool) and build the training and test tf.data pipelines.

    Returns:
        `(train_dataset, test_dataset, test_samples)`; the training dataset is this worker's
        shard under Horovod.
    """
    from tfseg.data.loading import load_samples
    from tfseg.data.pipeline import Augmentation2D, segmentation_dataset
    from tfseg.datasets.lgg import load_sample

    data = config.data
    train = load_samples(split.train, load_sample, on_error=data.on_error, workers=data.workers)
    test = load_samples(split.val, load_sample, on_error=data.on_error, workers=data.workers)
    split.problems.extend(train.problems)
    split.problems.extend(test.problems)
    augmentation = Augmentation2D(max_degrees=data.max_degrees) if data.augment else Augmentation2D(0.0, False, 0.0)
    common = dict(image_size=(data.image_size, data.image_size), batch_size=config.train.batch_size,
                  normalization=data.normalization, channels=3, seed=config.train.seed)
    train_ds = segmentation_dataset(train.images, train.masks, training=True, augmentation=augmentation, **common)
    test_ds = segmentation_dataset(test.images, test.masks, training=False, **common)
    if dist is not None:
        train_ds = dist.shard(train_ds)
    return train_ds, test_ds, test


def build(config, dist=None):
    """The configured model with one sigmoid output channel, built under the distribution's scope."""
    from tfseg.models import build_model
    from tfseg.training.phases import mixed_precision, scope

    mixed_precision(config.train.mixed_precision)
    size = config.data.image_size
    spec = {"name": config.model.name, "input_shape": (size, size, 3), "num_classes": 1,
            "weights": config.model.weights, **config.model.options}
    with scope(dist):
        return build_model(spec)


def train(config, model, train_ds, test_ds, dist=None, test_samples=None):
    """Train (checkpoint every epoch, resume, history.csv, TensorBoard); returns `(history, seconds)`.

    The Dice of the loss and of the metrics is taken over the whole batch (as
    segmentation_models_pytorch's DiceLoss): about 40% of LGG slices have no abnormality, and a
    per-slice Dice of an empty slice is unstable. `test_ds` (held-out slices resized to the
    training size) is logged as `resized_val_*`; with `test_samples`, the held-out slices go
    through the serving path at their original size every few epochs (`val_dice`, which picks
    `best.keras`).
    """
    from tfseg.training import set_seed
    from tfseg.training.phases import fit_phases
    from tfseg.training.registries import make_loss, make_metrics, make_optimizer
    from tfseg.training.validation import whole_image_validation

    train_section = config.train
    set_seed(train_section.seed)
    rate = dist.learning_rate(train_section.learning_rate) if dist is not None else None
    optimizer = make_optimizer(train_section, int(train_ds.cardinality()), rate)
    validation = [] if test_samples is None else whole_image_validation(
        lambda m: held_out_predictions(config, m, test_samples)[2], every=train_section.validate_every)
    return fit_phases(dist, model, make_loss(train_section.loss, mode="sigmoid", batch_dice=True), optimizer,
                      make_metrics(("dice", "iou"), CLASS_NAMES, mode="sigmoid"), train_ds, test_ds,
                      epochs=train_section.epochs, output_dir=config.output_dir,
                      monitor="val_dice" if test_samples is not None else "resized_val_dice",
                      resume=config.resume, verbose=train_section.verbose, extra_callbacks=validation,
                      validation_prefix="resized_val_")


def serving_spec(config, metrics=None):
    """The SavedModel's preprocessing: per-image normalization, resize to the training size, sigmoid."""
    from tfseg.export.savedmodel import ServingSpec

    data = config.data
    return ServingSpec(image_size=(data.image_size, data.image_size), stride=16, in_channels=3,
                       normalization=data.normalization, activation="sigmoid", class_names=CLASS_NAMES,
                       extra={"workflow": "lgg", "model": config.model.name, "metrics": metrics or {}})


def predict_samples(serve, images, batch_size=8):
    """Masks `(H, W)` uint8 for each image, through the serving function, batching equal-sized images."""
    masks = [None] * len(images)
    order = sorted(range(len(images)), key=lambda i: np.shape(images[i]))
    for start in range(0, len(order), batch_size):
        group = order[start:start + batch_size]
        shapes = {np.shape(images[i]) for i in group}
        for same in ([group] if len(shapes) == 1 else [[i] for i in group]):
            labels = serve(np.stack([np.asarray(images[i], np.float32) for i in same]))["labels"]
            for i, label in zip(same, labels):
                masks[i] = np.asarray(label[..., 0], np.uint8)
    return masks


def slice_dice(pred, truth):
    """Dice of one slice; 1.0 when both are empty (the Kaggle convention for per-slice means)."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(pred, truth).sum()) / total


def held_out_predictions(config, model, test):
    """Predict the held-out slices at their original size through the serving function, and score them.

    Returns:
        `(predicted masks, true masks, scores)`; the scores are the dataset-level `val_dice`,
        `val_iou`, `val_precision`, `val_recall` of the abnormality over all held-out pixels (and
        the same with the `_abnormality` suffix): the figures validation logs and `metrics.json` holds.
    """
    from tfseg.export.savedmodel import serving_callable
    from tfseg.metrics import segmentation_scores

    serve = serving_callable(model, serving_spec(config))
    predicted = predict_samples(serve, test.images)
    truth = [np.asarray(m, np.uint8) for m in test.masks]
    counts = segmentation_scores(np.concatenate([p.ravel() for p in predicted]),
                                 np.concatenate([t.ravel() for t in truth]), num_classes=2)
    scores = {}
    for score in ("dice", "iou", "precision", "recall"):
        scores[f"val_{score}"] = scores[f"val_{score}_abnormality"] = float(counts[score][1])
    return predicted, truth, scores


def evaluate(config, model, test, split=None, train_seconds=None):
    """Test-set figures at the original size, HDF5 predictions, PNG overlays and the training curves.

    Returns:
        The dict written to `metrics.json`: dataset-level Dice/IoU/precision/recall of the
        abnormality over all test pixels, the mean per-slice Dice (empty-empty slices count 1),
        and counts.
    """
    from tfseg.viz.curves import plot_run_curves

    predicted, truth, scores = held_out_predictions(config, model, test)
    ids = [f"{r.patient}_{r.slice_index}" for r in test.records]
    metrics = {
        **scores,
        "test_dice": scores["val_dice"], "test_iou": scores["val_iou"],
        "test_precision": scores["val_precision"], "test_recall": scores["val_recall"],
        "test_mean_slice_dice": float(np.mean([slice_dice(p, t) for p, t in zip(predicted, truth)])),
        "test_slices": len(test), "test_patients": len({r.patient for r in test.records}),
        "test_slices_with_abnormality": int(sum(t.any() for t in truth)),
        "epochs": config.train.epochs, "model": config.model.name, "params": int(model.count_params()),
    }
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    if split is not None:
        metrics.update(train_slices=len(split.train), skipped_records=len(split.problems),
                       synthetic_data=split.synthetic)
    write_predictions(config, ids, test.images, truth, predicted)
    plot_run_curves(config.output_dir)
    return metrics


def write_predictions(config, ids, images, truths, predictions):
    """`predictions.h5` (every test slice) and `overlays/*.png` (slices with an abnormality first)."""
    from tfseg.inference.writers import write_overlay_pngs, write_predictions_hdf5

    os.makedirs(config.output_dir, exist_ok=True)
    if config.outputs.predictions_hdf5:
        write_predictions_hdf5(os.path.join(config.output_dir, "predictions.h5"), ids, predictions, truths=truths,
                               attrs={"workflow": "lgg", "classes": list(CLASS_NAMES)})
    order = sorted(range(len(ids)), key=lambda i: (not (truths[i].any() or predictions[i].any()), i))
    chosen = order[:max(0, config.outputs.overlays)]
    if chosen:
        gray = [np.asarray(images[i], np.float32)[..., 1] for i in chosen]  # FLAIR is the middle channel
        write_overlay_pngs(os.path.join(config.output_dir, "overlays"), [ids[i] for i in chosen], gray,
                           [truths[i] for i in chosen], [predictions[i] for i in chosen])


def export(config, model, metrics, dist=None):
    """Write `model.keras`, `saved_model/`, `metrics.json` and `config.json` (chief only)."""
    from tfseg.workflows.outputs import write_run_outputs

    write_run_outputs(config, model, serving_spec(config, metrics), metrics, dist)


def run(config):
    """All steps, in order; returns the metrics written to `metrics.json`."""
    from tfseg.training.distributed import workflow_distribution

    dist = workflow_distribution(config.distribute)  # first: collectives need a fresh TF runtime
    with dist.chief_first():  # the chief writes the synthetic dataset, if any
        split = find_data(config)
    train_ds, test_ds, test = make_datasets(config, split, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, test_ds, dist, test_samples=test)
    metrics = {}
    if dist.is_chief:
        best = use_best_epoch(model, history, config.output_dir, monitor="val_dice")
        metrics = {**evaluate(config, model, test, split, seconds), **best}
    export(config, model, metrics, dist)
    return metrics


def summary_table(metrics):
    """The headline figures of the test set."""
    from tfseg.reports import format_rows

    return format_rows([
        ("model", metrics.get("model", "")),
        ("test slices / patients", f"{metrics['test_slices']} / {metrics['test_patients']}"),
        ("slices with an abnormality", str(metrics["test_slices_with_abnormality"])),
        ("Dice (all test pixels)", f"{metrics['test_dice']:.4f}"),
        ("mean per-slice Dice", f"{metrics['test_mean_slice_dice']:.4f}"),
        ("IoU", f"{metrics['test_iou']:.4f}"),
        ("precision / recall", f"{metrics['test_precision']:.4f} / {metrics['test_recall']:.4f}"),
        ("epochs / train time", f"{metrics['epochs']} / {metrics.get('train_seconds', 0):.0f} s"),
    ], footer="predictions.h5, overlays/ and curves.png are in the output folder")


def add_arguments(parser, defaults):
    """The workflow's own flags (the shared ones come from `tfseg.workflows.entry`)."""
    parser.add_argument("--data-dir", help="the Kaggle lgg-mri-segmentation folder, or one with train_image/ "
                                           "and train_mask/ (default: synthetic data)")
    parser.add_argument("--image-size", type=int, help=f"training size, a multiple of 16 ({defaults.data.image_size})")
    parser.add_argument("--lr-decay", type=float, help=f"learning-rate factor per epoch ({defaults.train.lr_decay})")
    parser.add_argument("--loss", choices=("dice", "dice_bce", "bce"), help=f"training loss ({defaults.train.loss})")
    parser.add_argument("--weights", help="a weights file to start from")
    parser.add_argument("--mixed-precision", action="store_true", default=None, help="float16 compute (GPU)")
    return parser


def flag_overrides(args):
    """Dotted-path config updates of the workflow's own flags."""
    return {"data.root": args.data_dir, "data.image_size": args.image_size, "train.lr_decay": args.lr_decay,
            "train.loss": args.loss, "model.weights": args.weights, "train.mixed_precision": args.mixed_precision}
