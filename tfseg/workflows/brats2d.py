"""Brain-tumour 2D segmentation on BraTS axial slices, patch-wise (workflow W3), step by step.

The TorchIO + segmentation_models_pytorch recipe: FLAIR, T1c and T2 axial slices; overlapping
patches that contain tumour, written once to an HDF5 patch store and streamed from it; a U-Net with
a ResNet encoder; multiclass focal loss; Adam with weight decay; ReduceLROnPlateau on the validation
loss; a checkpoint every epoch and resume; whole slices tiled and stitched at test time; per-class
precision, recall, accuracy, IoU and Dice over the test cases; GIFs of input / truth / prediction.

    config = Brats2DConfig()
    dist = workflow_distribution(config.distribute)
    cases = find_data(config)                                                # train / val / test patients
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

from tfseg.training.config import choice
from tfseg.training.distributed import DISTRIBUTE_CHOICES
from tfseg.workflows import sections
from tfseg.workflows.brats_cases import CaseSource
from tfseg.workflows.outputs import headline_metrics, use_best_epoch

logger = logging.getLogger(__name__)

CLASS_NAMES = ("background", "necrotic_core", "edema", "enhancing")
LABEL_REMAP = {0: 0, 1: 1, 2: 2, 4: 3}
LABEL_VALUES = (0, 1, 2, 4)

@dataclasses.dataclass
class PatchSection:
    """The HDF5 patch store: patch size and stride, the tumour filter, where it is written."""

    patch_size: int = 128
    stride: int = 64
    min_foreground: int = 1
    store: str | None = None


@dataclasses.dataclass
class AugmentSection:
    """The W3 augmentation (see `Brats2DAugmentation`).

    Attributes:
        spatial_weights: relative chances of the spatial branches flip, affine, anisotropy, elastic.
        flip_axes: the in-plane axes the flip branch may flip (0: rows, 1: columns).
        flip_probability: chance of flipping each of `flip_axes` when the flip branch runs.
        elastic_max_displacement: the elastic branch's largest displacement per axis, in pixels.
    """

    enabled: bool = True
    spatial_probability: float = 0.95
    spatial_weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    flip_axes: tuple[int, ...] = (1,)
    flip_probability: float = 0.5
    elastic_max_displacement: tuple[float, ...] = (7.5, 7.5)
    degrees: float = 20.0
    intensity_probability: float = 0.95
    noise_std: float = 0.1
    bias_coefficients: float = 0.1
    percentiles: tuple[float, ...] = (0.5, 99.5)


@dataclasses.dataclass
class ModelSection(sections.ModelSection):
    """A registered builder (U-Net with a ResNet encoder by default); see `tfseg.workflows.sections.ModelSection`."""

    name: str = "unet"
    encoder: str | None = "resnet34"


@dataclasses.dataclass
class TrainSection(sections.TrainSection):
    """AdamW, focal loss (optionally + Dice), ReduceLROnPlateau on val_loss, optional mixed precision.

    Attributes:
        focal_gamma: the focusing parameter of the focal loss.
    """

    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-4
    optimizer: str = choice("adamw", tuple(sections.OPTIMIZERS))
    weight_decay: float = 1e-4
    plateau_patience: int = 3
    loss: str = choice("focal", tuple(sections.LOSSES))
    focal_gamma: float = 2.0


@dataclasses.dataclass
class InferenceSection:
    """Tiling of whole slices at test time, and how many test cases get a GIF."""

    overlap: float = 0.5
    window_batch_size: int = 8
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
    output_dir: str = "runs/brats2d"
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


CONFIG_CLASS = Brats2DConfig

#: The built-in CPU defaults: 64x64 patches (stride 32) of 20 synthetic 96x96x40 cases, a U-Net on
#: a ResNet18 encoder with a narrow decoder, AdamW 1e-3, focal + Dice (the small necrotic and
#: enhancing classes learn too slowly from the focal loss alone in a CPU budget), 40 epochs.
CPU_DEFAULTS = Brats2DConfig(
    data=CaseSource(synthetic_cases=20, synthetic_shape=(96, 96, 40)),
    patches=PatchSection(patch_size=64, stride=32),
    model=ModelSection(name="unet", encoder="resnet18", options={"decoder_filters": [64, 32, 32, 16, 16]}),
    train=TrainSection(epochs=40, batch_size=16, learning_rate=1e-3, loss="focal_dice"),
    output_dir="runs/brats_unet2d",
)

#: `--paper`: the TorchIO recipe: 128x128 patches (stride 64), U-Net ResNet34, the multiclass focal
#: loss alone, Adam with weight decay, ReduceLROnPlateau on the validation loss, mixed precision,
#: the W3 augmentation (spatial OneOf .35/.35/.15/.15, flips along both in-plane axes with p=1,
#: elastic maximum displacement (2, 2, 0)), and test slices tiled with stride = patch (no overlap).
PAPER = {"patches.patch_size": 128, "patches.stride": 64, "model.name": "unet", "model.encoder": "resnet34",
         "model.options": {}, "train.batch_size": 32, "train.epochs": 50, "train.learning_rate": 1e-4,
         "train.optimizer": "adamw", "train.loss": "focal", "train.plateau_patience": 3,
         "train.mixed_precision": True, "inference.overlap": 0.0,
         "augment.spatial_weights": (0.35, 0.35, 0.15, 0.15), "augment.flip_axes": (0, 1),
         "augment.flip_probability": 1.0, "augment.elastic_max_displacement": (2.0, 2.0)}


def find_data(config):
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
    from tfseg.training.phases import mixed_precision, scope

    mixed_precision(config.train.mixed_precision)
    spec = {"name": config.model.name, "input_shape": (None, None, len(config.data.modalities)),
            "num_classes": len(CLASS_NAMES), "weights": config.model.weights, "output_activation": "softmax",
            **({"encoder": config.model.encoder} if config.model.name in ("unet", "unet_plus_plus") else {}),
            **config.model.options}
    with scope(dist):
        return build_model(spec)


def train(config, model, train_ds, val_ds, dist=None, val_cases=None):
    """AdamW + focal loss, ReduceLROnPlateau on the validation loss, checkpoint every epoch; returns `(history, seconds)`.

    `val_ds` (validation patches) is logged as `patch_val_*` (its loss drives the plateau); with
    `val_cases`, their whole slices are tiled as at test time every few epochs (`val_dice`, the
    mean of the tumour classes, which picks `best.keras`).
    """
    from tfseg.training import set_seed
    from tfseg.training.phases import fit_phases
    from tfseg.training.registries import make_loss, make_metrics, make_optimizer
    from tfseg.training.validation import whole_image_validation

    train_section = config.train
    set_seed(train_section.seed)
    rate = dist.learning_rate(train_section.learning_rate) if dist is not None else None
    optimizer = make_optimizer(train_section, int(train_ds.cardinality()), rate)
    monitor = "patch_val_loss" if val_ds is not None else "loss"
    validation = [] if not val_cases else whole_image_validation(
        lambda m: validation_scores(config, m, val_cases), every=train_section.validate_every,
        watch=[f"val_dice_{name}" for name in CLASS_NAMES[1:]])
    reduce_lr = ({"monitor": monitor, "factor": train_section.plateau_factor,
                  "patience": train_section.plateau_patience, "min_lr": 1e-6}
                 if train_section.plateau_patience > 0 else None)
    loss = make_loss(train_section.loss, mode="softmax", gamma=train_section.focal_gamma)
    return fit_phases(dist, model, loss, optimizer, make_metrics(("dice",), CLASS_NAMES, mode="softmax"),
                      train_ds, val_ds, epochs=train_section.epochs, output_dir=config.output_dir,
                      monitor="val_dice" if val_cases else monitor, mode="max" if val_cases else "min",
                      resume=config.resume, verbose=train_section.verbose, reduce_lr=reduce_lr,
                      extra_callbacks=validation, validation_prefix="patch_val_")


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


def predicted_cases(config, model, cases, problems):
    """Yield `(case, image, truth, predicted)` for each readable case: every axial slice tiled and stitched.

    `truth` and `predicted` are label maps 0-3 (after the remap); a case that cannot be read is
    reported to `problems` (a `ProblemLog`) and left out.
    """
    from tfseg.data.slices import read_case
    from tfseg.data.transforms.labels import remap_labels
    from tfseg.errors import DataError

    predict = window_predictor(model, augmentation(config))
    for case in cases:
        try:
            image, truth = read_case(case, channels=tuple(config.data.modalities))
        except DataError as error:
            problems.report_error(error)
            continue
        truth = remap_labels(truth, LABEL_REMAP, source=case.label).astype(np.uint8)
        yield case, image, truth, predict_case(config, predict, image)


def class_scores(report, prefix):
    """`<prefix>_<score>_<class>` for the tumour classes of a report, and their means (`<prefix>_<score>`)."""
    scores = {f"{prefix}_{score}_{name}": float(report["classes"][name][score])
              for name in CLASS_NAMES[1:] for score in ("dice", "iou", "precision", "recall")}
    return headline_metrics(scores, CLASS_NAMES[1:], prefix=prefix)


def validation_scores(config, model, cases):
    """`val_dice` (mean of the tumour classes) and per-class figures on whole validation slices, tiled
    as at test time: what validation logs during training."""
    from tfseg.reports import report_from_batches
    from tfseg.utils.problems import ProblemLog

    pairs = [(predicted, truth) for _, _, truth, predicted in
             predicted_cases(config, model, cases, ProblemLog("skip"))]
    if not pairs:
        return {}
    report = report_from_batches(iter(pairs), num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
    return class_scores(report, "val")


def evaluate(config, model, cases, train_seconds=None):
    """Tile every axial slice of the test cases; the per-class report over all test pixels; GIFs.

    Returns:
        The dict written to `metrics.json`: per class precision, recall, accuracy, IoU and Dice,
        the mean Dice over the three tumour classes, the whole-tumour Dice, and counts
        (`test_*`); and the same figures on the validation cases (`val_*`, as validation logged
        them).
    """
    from tfseg.reports import format_report, report_from_batches
    from tfseg.utils.problems import ProblemLog
    from tfseg.viz.curves import plot_run_curves

    problems = ProblemLog(config.data.on_error)
    pairs, gif_cases, whole = [], [], np.zeros(3)
    for case, image, truth, predicted in predicted_cases(config, model, cases.test, problems):
        pairs.append((predicted, truth))
        both = np.logical_and(predicted > 0, truth > 0).sum()
        whole += (both, (predicted > 0).sum(), (truth > 0).sum())
        if len(gif_cases) < config.inference.gifs:
            gif_cases.append((case.case_id, image, truth, predicted))
    report = report_from_batches(iter(pairs), num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
    logger.info("test report:\n%s", format_report(report))
    write_gifs(config, gif_cases)
    plot_run_curves(config.output_dir)
    tumour = [report["classes"][name]["dice"] for name in CLASS_NAMES[1:]]
    metrics = {"test_cases": len(pairs), "test_mean_tumour_dice": float(np.mean(tumour)),
               "test_whole_tumour_dice": float(2 * whole[0] / max(1.0, whole[1] + whole[2])),
               "per_class": report["classes"], "epochs": config.train.epochs,
               "model": f"{config.model.name}_{config.model.encoder}", "params": int(model.count_params()),
               "skipped_test_cases": len(problems), **class_scores(report, "test"),
               **validation_scores(config, model, cases.val)}
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
    from tfseg.workflows.outputs import write_run_outputs

    write_run_outputs(config, model, serving_spec(config, metrics), metrics, dist)


def run(config):
    """All steps, in order; returns the metrics written to `metrics.json`."""
    from tfseg.training.distributed import workflow_distribution

    dist = workflow_distribution(config.distribute)
    with dist.chief_first():  # the chief writes the synthetic data and the patch store; the others reuse them
        cases = find_data(config)
        store = make_patch_store(config, cases)
    train_ds, val_ds = make_datasets(config, store, cases, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist, val_cases=cases.val)
    metrics = {}
    if dist.is_chief:
        best = use_best_epoch(model, history, config.output_dir, monitor="val_dice")
        metrics = {**evaluate(config, model, cases, seconds), **best}
    if metrics:
        from tfseg.data.patch_store import case_subset

        metrics.update(train_patches=len(case_subset(store.path, [c.case_id for c in cases.train])),
                       patch_store_reused=bool(store.reused), synthetic_data=cases.synthetic,
                       skipped_records=len(cases.problems))
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
    """The workflow's own flags (the shared ones come from `tfseg.workflows.entry`)."""
    parser.add_argument("--data-dir", help="a BraTS 2018-2021 release folder (default: synthetic data)")
    parser.add_argument("--patch-size", type=int, help=f"patch side, a multiple of 32 ({defaults.patches.patch_size})")
    parser.add_argument("--stride", type=int, help=f"patch stride ({defaults.patches.stride})")
    parser.add_argument("--patch-store", help="the HDF5 patch store (default: <output-dir>/patches.h5)")
    parser.add_argument("--encoder", choices=("resnet18", "resnet34", "resnet50"),
                        help=f"U-Net encoder ({defaults.model.encoder})")
    parser.add_argument("--weights", help="'imagenet' (resnet50) or a weights file")
    parser.add_argument("--loss", choices=("focal", "focal_dice"), help=f"training loss ({defaults.train.loss})")
    parser.add_argument("--mixed-precision", action="store_true", default=None, help="float16 compute (GPU)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    return parser


def flag_overrides(args):
    """Dotted-path config updates of the workflow's own flags."""
    return {"data.data_dir": args.data_dir, "patches.patch_size": args.patch_size, "patches.stride": args.stride,
            "patches.store": args.patch_store, "model.encoder": args.encoder, "model.weights": args.weights,
            "train.loss": args.loss, "train.mixed_precision": args.mixed_precision,
            "augment.enabled": False if args.no_augment else None}
