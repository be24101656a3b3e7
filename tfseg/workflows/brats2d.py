"""Brain-tumour 2D segmentation on BraTS axial slices, patch-wise (workflow W3), step by step.

The TorchIO + segmentation_models_pytorch recipe: FLAIR, T1c and T2 axial slices; overlapping
patches that contain tumour, written once to an HDF5 patch store and streamed from it; a U-Net with
a ResNet encoder; multiclass focal loss; Adam with weight decay; ReduceLROnPlateau on the validation
loss; a checkpoint every epoch and resume; whole slices tiled and stitched at test time; per-class
precision, recall, accuracy, IoU and Dice over the test cases; GIFs of input / truth / prediction.

    config = Brats2DConfig()
    dist = workflow_distribution(config.distribute)
    cases = find_cases(config.data, config.output_dir, config.train.seed)   # train / val / test patients
    store = make_patch_store(config, cases)                                   # patches.h5, reused
    train_ds, val_ds = make_datasets(config, store, cases, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist)
    metrics = evaluate(config, model, cases, seconds)                         # report, GIFs
    export(config, model, metrics, dist)

Classes (after the label remap {0: 0, 1: 1, 2: 2, 4: 3}): background, necrotic / non-enhancing
core, oedema, enhancing tumour. Predictions are mapped back to BraTS values (3 -> 4) for NIfTI.

Example:
    >>> Brats2DConfig().model.encoder, CLASS_NAMES[3]
    ('resnet34', 'enhancing')
"""
import dataclasses
import logging
import os

import numpy as np

from tfseg.training.config import at_least, choice, in_range, output_folder, positive
from tfseg.training.distributed import DISTRIBUTE_CHOICES
from tfseg.workflows.brats_cases import CaseSource

logger = logging.getLogger(__name__)

CLASS_NAMES = ("background", "necrotic_core", "edema", "enhancing")
LABEL_REMAP = {0: 0, 1: 1, 2: 2, 4: 3}
LABEL_VALUES = (0, 1, 2, 4)

#: `--paper`: the published sizes (128x128 patches, stride 64, ResNet34 U-Net, batch 32, 50 epochs).
PAPER_SIZES = {"patches.patch_size": 128, "patches.stride": 64, "model.encoder": "resnet34",
               "model.options": {}, "train.batch_size": 32, "train.epochs": 50, "train.learning_rate": 1e-4}


@dataclasses.dataclass
class PatchSection:
    """The HDF5 patch store: patch size and stride, the tumour filter, where it is written."""

    patch_size: int = positive(128)
    stride: int = positive(64)
    min_foreground: int = 1
    store: str | None = None


@dataclasses.dataclass
class AugmentSection:
    """The W3 augmentation (see `tfseg.data.transforms.compose.Brats2DAugmentation`)."""

    enabled: bool = True
    spatial_probability: float = 0.95
    degrees: float = 20.0
    intensity_probability: float = 0.95
    noise_std: float = 0.1
    bias_coefficients: float = 0.1
    percentiles: tuple[float, ...] = (0.5, 99.5)


@dataclasses.dataclass
class ModelSection:
    """A registered builder (U-Net with a ResNet encoder by default) and its extra arguments."""

    name: str = "unet"
    encoder: str = "resnet34"
    weights: str | None = None
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainSection:
    """AdamW, focal loss (optionally + Dice), ReduceLROnPlateau on val_loss, optional mixed precision."""

    epochs: int = at_least(1, default=50)
    batch_size: int = at_least(1, default=32)
    learning_rate: float = positive(1e-4)
    weight_decay: float = 1e-4
    loss: str = choice("focal", ("focal", "focal_dice"))
    focal_gamma: float = 2.0
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    mixed_precision: bool = False
    seed: int = at_least(0, default=0)
    verbose: int = in_range(0, 2, default=1)


@dataclasses.dataclass
class InferenceSection:
    """Tiling of whole slices at test time, and how many test cases get a GIF."""

    overlap: float = 0.5
    window_batch_size: int = at_least(1, default=8)
    gifs: int = 3


@dataclasses.dataclass
class Brats2DConfig:
    """The whole BraTS-2D run; every field has a default."""

    data: CaseSource = dataclasses.field(default_factory=CaseSource)
    patches: PatchSection = dataclasses.field(default_factory=PatchSection)
    augment: AugmentSection = dataclasses.field(default_factory=AugmentSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    inference: InferenceSection = dataclasses.field(default_factory=InferenceSection)
    output_dir: str = output_folder("runs/brats2d")
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


def find_cases(config):
    """Train / validation / test cases (FLAIR, T1c, T2), split by patient."""
    from tfseg.workflows.brats_cases import find_cases as find

    return find(config.data, config.output_dir, config.train.seed)


def store_path(config):
    """Where the patch store is: `patches.store`, or `<output_dir>/patches.h5`."""
    return config.patches.store or os.path.join(config.output_dir, "patches.h5")


def make_patch_store(config, cases):
    """Write the training and validation patches to the HDF5 store once; later runs reuse it."""
    from tfseg.data.patch_store import ensure_patch_store

    patches = config.patches
    return ensure_patch_store(store_path(config), list(cases.train) + list(cases.val), patch_size=patches.patch_size,
                              stride=patches.stride, channels=tuple(config.data.modalities),
                              min_foreground=patches.min_foreground, on_error=config.data.on_error,
                              problems=cases.problems)


def augmentation(config):
    """The `Brats2DAugmentation` of this run."""
    from tfseg.data.transforms.compose import Brats2DAugmentation

    aug = config.augment
    return Brats2DAugmentation(patch_size=config.patches.patch_size, spatial_probability=aug.spatial_probability,
                               degrees=aug.degrees, intensity_probability=aug.intensity_probability,
                               noise_std=aug.noise_std, bias_coefficients=aug.bias_coefficients,
                               percentiles=tuple(aug.percentiles))


def sample_transform(config, training):
    """`fn(image, label, seed)` for the store's patches: W3 augmentation (training) or the plain
    preprocessing, then the label remap {0,1,2,4} -> {0,1,2,3}."""
    import tensorflow as tf

    from tfseg.data.transforms.compose import augment_brats2d, preprocess_brats2d
    from tfseg.data.transforms.labels import remap_labels

    settings = augmentation(config)
    augment = training and config.augment.enabled

    def transform(image, label, seed):
        label = remap_labels(tf.cast(label, tf.int32), LABEL_REMAP, dtype=tf.int32)
        if augment:
            return augment_brats2d(image, label, seed, settings)
        return preprocess_brats2d(image, label, settings)

    return transform


def make_datasets(config, store, cases, dist=None):
    """Training (augmented, this worker's shard) and validation patch pipelines streamed from the store."""
    from tfseg.data.patch_store import case_subset, patch_dataset

    common = dict(batch_size=config.train.batch_size, seed=config.train.seed)
    train_idx = case_subset(store.path, [c.case_id for c in cases.train])
    val_idx = case_subset(store.path, [c.case_id for c in cases.val])
    train_ds = patch_dataset(store.path, training=True, map_fn=sample_transform(config, True), indices=train_idx,
                             **common)
    val_ds = patch_dataset(store.path, training=False, map_fn=sample_transform(config, False), indices=val_idx,
                           **common) if len(val_idx) else None
    logger.info("%d training and %d validation patches", len(train_idx), len(val_idx))
    if dist is not None:
        train_ds = dist.shard(train_ds)
    return train_ds, val_ds


def build(config, dist=None):
    """U-Net (or another registered 2D builder) with a 4-class softmax head."""
    from tfseg.models import build_model
    from tfseg.workflows.common import mixed_precision, scope

    mixed_precision(config.train.mixed_precision)
    spec = {"name": config.model.name, "input_shape": (None, None, len(config.data.modalities)),
            "num_classes": len(CLASS_NAMES), "weights": config.model.weights, "output_activation": "softmax",
            **({"encoder": config.model.encoder} if config.model.name in ("unet", "unet_plus_plus") else {}),
            **config.model.options}
    with scope(dist):
        return build_model(spec)


def make_loss(train):
    """Multiclass focal loss (W3), or focal + soft Dice."""
    from tfseg.losses import FocalLoss

    return FocalLoss(mode="softmax", gamma=train.focal_gamma, dice_weight=1.0 if train.loss == "focal_dice" else 0.0)


def make_metrics():
    """Dice of each tumour class over the patches seen in the epoch."""
    from tfseg.metrics import DiceScore

    return [DiceScore(num_classes=len(CLASS_NAMES), class_id=i, name=f"dice_{CLASS_NAMES[i]}")
            for i in range(1, len(CLASS_NAMES))] + [DiceScore(num_classes=len(CLASS_NAMES), name="dice")]


def train(config, model, train_ds, val_ds, dist):
    """AdamW + focal loss, ReduceLROnPlateau(val_loss), checkpoint every epoch; returns `(history, seconds)`."""
    import keras

    from tfseg.training import set_seed
    from tfseg.workflows.common import fit_phases, loss_scaled

    set_seed(config.train.seed)
    rate = dist.learning_rate(config.train.learning_rate) if dist is not None else config.train.learning_rate
    optimizer = loss_scaled(keras.optimizers.AdamW(rate, weight_decay=config.train.weight_decay),
                            config.train.mixed_precision)
    monitor = "val_loss" if val_ds is not None else "loss"
    reduce_lr = {"monitor": monitor, "factor": config.train.plateau_factor, "patience": config.train.plateau_patience,
                 "min_lr": 1e-6}
    return fit_phases(dist, model, make_loss(config.train), optimizer, make_metrics(), train_ds, val_ds,
                      epochs=config.train.epochs, output_dir=config.output_dir, monitor=monitor, mode="min",
                      resume=config.resume, verbose=config.train.verbose, reduce_lr=reduce_lr)


def window_predictor(model, settings):
    """`fn(windows (B, p, p, C) raw) -> probabilities`: each window normalized like a training patch."""
    import tensorflow as tf

    from tfseg.data.transforms.compose import preprocess_brats2d

    @tf.function(reduce_retracing=True)
    def predict(batch):
        labels = tf.zeros(tf.shape(batch)[:-1], tf.int32)
        images = tf.map_fn(lambda pair: preprocess_brats2d(pair[0], pair[1], settings)[0], (batch, labels),
                           fn_output_signature=tf.float32)
        return tf.cast(model(images, training=False), tf.float32)

    return lambda batch: predict(tf.constant(batch, tf.float32)).numpy()


def predict_slice(config, predict, image):
    """Class labels `(H, W)` (0-3) of one raw axial slice `(H, W, C)`, tiled in patches and stitched."""
    from tfseg.inference.sliding_window import sliding_window_inference

    probabilities = sliding_window_inference(image, predict, roi_size=config.patches.patch_size,
                                             overlap=config.inference.overlap,
                                             window_batch_size=config.inference.window_batch_size)
    return np.argmax(probabilities, axis=-1).astype(np.uint8)


def predict_case(config, predict, image):
    """Labels `(D, H, W)` (0-3) of a case: every axial slice that holds brain, tiled; empty slices are 0."""
    labels = np.zeros(image.shape[:3], np.uint8)
    for k in range(image.shape[0]):
        if np.any(image[k]):
            labels[k] = predict_slice(config, predict, image[k])
    return labels


def evaluate(config, model, cases, train_seconds=None):
    """Tile every axial slice of the test cases; the per-class report over all test pixels; GIFs.

    Returns:
        The dict written to `metrics.json`: per class precision, recall, accuracy, IoU and Dice,
        the mean Dice over the three tumour classes, the whole-tumour Dice, and counts.
    """
    from tfseg.data.transforms.labels import remap_labels
    from tfseg.errors import DataError
    from tfseg.reports import format_report, report_from_batches
    from tfseg.utils.problems import ProblemLog
    from tfseg.data.slices import read_case
    from tfseg.workflows.common import plot_curves

    predict = window_predictor(model, augmentation(config))
    problems = ProblemLog(config.data.on_error)
    pairs, gif_cases, whole = [], [], np.zeros(3)
    for case in cases.test:
        try:
            image, truth = read_case(case, channels=tuple(config.data.modalities))
        except DataError as error:
            problems.report_error(error)
            continue
        truth = remap_labels(truth, LABEL_REMAP, source=case.label).astype(np.uint8)
        predicted = predict_case(config, predict, image)
        pairs.append((predicted, truth))
        both = np.logical_and(predicted > 0, truth > 0).sum()
        whole += (both, (predicted > 0).sum(), (truth > 0).sum())
        if len(gif_cases) < config.inference.gifs:
            gif_cases.append((case.case_id, image, truth, predicted))
    report = report_from_batches(iter(pairs), num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
    logger.info("test report:\n%s", format_report(report))
    write_gifs(config, gif_cases)
    plot_curves(config.output_dir)
    tumour = [report["classes"][name]["dice"] for name in CLASS_NAMES[1:]]
    metrics = {"test_cases": len(pairs), "test_mean_tumour_dice": float(np.mean(tumour)),
               "test_whole_tumour_dice": float(2 * whole[0] / max(1.0, whole[1] + whole[2])),
               "per_class": report["classes"], "epochs": config.train.epochs,
               "model": f"{config.model.name}_{config.model.encoder}", "params": int(model.count_params()),
               "skipped_test_cases": len(problems)}
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    return metrics


def write_gifs(config, gif_cases):
    """One GIF per chosen test case: FLAIR | truth | prediction over the slices with tumour."""
    from tfseg.viz.gifs import write_slices_gif

    folder = os.path.join(config.output_dir, "gifs")
    for case_id, image, truth, predicted in gif_cases:
        keep = np.flatnonzero((truth > 0).any(axis=(1, 2)) | (predicted > 0).any(axis=(1, 2)))
        if keep.size:
            zoom = max(1, 240 // max(image.shape[1:3]))  # small slices are enlarged for viewing
            write_slices_gif(os.path.join(folder, f"{case_id}.gif"), image[keep][..., 0], truth=truth[keep],
                             prediction=predicted[keep], zoom=zoom)


def serving_spec(config, metrics=None):
    """Whole raw slices in (any size, padded to 32), percentile-stretched in the brain mask, 4 classes out."""
    from tfseg.export.savedmodel import ServingSpec

    return ServingSpec(image_size=None, stride=32, in_channels=len(config.data.modalities),
                       normalization="percentile", activation="softmax", class_names=CLASS_NAMES,
                       extra={"workflow": "brats2d", "modalities": list(config.data.modalities),
                              "label_values": list(LABEL_VALUES),
                              "metrics": {k: v for k, v in (metrics or {}).items() if k != "per_class"}})


def export(config, model, metrics, dist=None):
    """Write `model.keras`, `saved_model/`, `metrics.json` and `config.json` (chief only)."""
    from tfseg.workflows.common import write_run_outputs

    write_run_outputs(config, model, serving_spec(config, metrics), metrics, dist)


def run(config):
    """All steps, in order; returns the metrics written to `metrics.json`."""
    from tfseg.training.distributed import workflow_distribution

    dist = workflow_distribution(config.distribute)
    with dist.chief_first():  # the chief writes the synthetic data and the patch store; the others reuse them
        cases = find_cases(config)
        store = make_patch_store(config, cases)
    train_ds, val_ds = make_datasets(config, store, cases, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist)
    metrics = evaluate(config, model, cases, seconds) if dist.is_chief else {}
    if metrics:
        from tfseg.data.patch_store import case_subset

        metrics.update(train_patches=len(case_subset(store.path, [c.case_id for c in cases.train])),
                       patch_store_reused=bool(store.reused), synthetic_data=cases.synthetic,
                       skipped_records=len(cases.problems), skipped_files=cases.problems.records())
    export(config, model, metrics, dist)
    return metrics


def summary_table(metrics):
    """Per-class figures over the test cases, as in the W3 report."""
    lines = [f"{'class':<15}{'precision':>10}{'recall':>9}{'accuracy':>10}{'IoU':>8}{'Dice':>8}"]
    for name in CLASS_NAMES[1:]:
        row = metrics["per_class"][name]
        lines.append(f"{name:<15}{row['precision']:>10.4f}{row['recall']:>9.4f}{row['accuracy']:>10.4f}"
                     f"{row['iou']:>8.4f}{row['dice']:>8.4f}")
    lines.append(f"mean tumour Dice {metrics['test_mean_tumour_dice']:.4f}, whole-tumour Dice "
                 f"{metrics['test_whole_tumour_dice']:.4f} over {metrics['test_cases']} test cases; "
                 f"{metrics['epochs']} epochs, train {metrics.get('train_seconds', 0):.0f} s")
    return "\n".join(lines)


def add_arguments(parser, defaults):
    """The recipe's flags; each overrides the matching config field."""
    from tfseg.workflows.common import add_common_arguments

    train = defaults.train
    add_common_arguments(parser, train.epochs, train.batch_size, train.learning_rate, defaults.output_dir,
                         train.seed, defaults.data.on_error, defaults.distribute,
                         config_help="JSON config (fields as in Brats2DConfig); flags override it")
    parser.add_argument("--data-dir", help="a BraTS 2018-2021 release folder (default: synthetic data)")
    parser.add_argument("--patch-size", type=int, help=f"patch side, a multiple of 32 ({defaults.patches.patch_size})")
    parser.add_argument("--stride", type=int, help=f"patch stride ({defaults.patches.stride})")
    parser.add_argument("--patch-store", help="the HDF5 patch store (default: <output-dir>/patches.h5)")
    parser.add_argument("--encoder", choices=("resnet18", "resnet34", "resnet50"),
                        help=f"U-Net encoder ({defaults.model.encoder})")
    parser.add_argument("--weights", help="'imagenet' (resnet50) or a weights file")
    parser.add_argument("--loss", choices=("focal", "focal_dice"), help=f"training loss ({train.loss})")
    parser.add_argument("--mixed-precision", action="store_true", default=None, help="float16 compute (GPU)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    return parser


def config_from_args(args, defaults):
    """`defaults` (or the `--config` file) with the given flags applied."""
    from tfseg.workflows.common import load_with_overrides

    return load_with_overrides(args, defaults, Brats2DConfig, {
        "data.data_dir": args.data_dir, "patches.patch_size": args.patch_size, "patches.stride": args.stride,
        "patches.store": args.patch_store, "model.encoder": args.encoder, "model.weights": args.weights,
        "train.loss": args.loss, "train.mixed_precision": args.mixed_precision,
        "augment.enabled": False if args.no_augment else None})
