"""Whole-tumour and enhancing-tumour masks on 2D slices of BraTS volumes (workflow W5, stage 1), step by step.

The RSNA-MICCAI 2021 recipe's segmentation stage: slices in the axial, coronal and sagittal planes,
near-duplicate neighbours dropped, only slices whose tumour/brain area ratio exceeds 0.01 kept,
resized to 224x224x3; UNet++ with a DenseNet121 encoder predicting two sigmoid masks (WT, ET); the
encoder frozen for warm-up epochs, then fine-tuned; split by patient (20% held out), optionally
leaving out the patients of the classification stage.

    config = SlicesConfig()
    dist = workflow_distribution(config.distribute)
    cases = find_data(config)
    train_slices, val_slices = extract(config, cases)   # Slice records, decoded once
    train_ds, val_ds = make_datasets(config, train_slices, val_slices, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist)
    metrics = evaluate(config, model, val_slices, seconds)
    export(config, model, metrics, dist)

Example:
    >>> SlicesConfig().model.encoder, REGION_NAMES
    ('densenet121', ('WT', 'ET'))
"""
import dataclasses
import logging

import numpy as np

from tfseg.training.config import choice
from tfseg.training.distributed import DISTRIBUTE_CHOICES
from tfseg.workflows import sections
from tfseg.workflows.brats_cases import CaseSource
from tfseg.workflows.outputs import headline_metrics, use_best_epoch

logger = logging.getLogger(__name__)

REGION_NAMES = ("WT", "ET")
CLASS_NAMES = REGION_NAMES

@dataclasses.dataclass
class SliceSection:
    """Which slices are kept and how they are sized.

    Attributes:
        planes: planes the slices are taken in ("axial", "coronal", "sagittal").
        min_ratio: keep slices whose tumour/brain area ratio exceeds this.
        dedupe: drop a slice whose normalized mean absolute difference to the last kept slice
            of its plane is below this (see `tfseg.data.slices.extract_slices`).
        image_size: side of the square slices are resized to (labels with nearest neighbour).
        augment: random flips and small rotations during training.
    """

    planes: tuple[str, ...] = ("axial", "coronal", "sagittal")
    min_ratio: float = 0.01
    dedupe: float = 0.02
    image_size: int = 224
    augment: bool = True


@dataclasses.dataclass
class ModelSection(sections.ModelSection):
    """UNet++ with a DenseNet121 encoder and a 10-epoch frozen-encoder warm-up (with pretrained weights)."""

    name: str = "unet_plus_plus"
    encoder: str | None = "densenet121"
    freeze_epochs: int = 10


@dataclasses.dataclass
class TrainSection(sections.TrainSection):
    """Adam with cosine decay; batch soft Dice + binary cross-entropy on the two sigmoid masks."""

    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 1e-4
    lr_schedule: str = choice("cosine", tuple(sections.SCHEDULES))
    loss: str = choice("dice_bce", tuple(sections.LOSSES))


@dataclasses.dataclass
class SlicesConfig:
    """The whole run; every field has a default. `data.test_fraction` is 0: the held-out 20% is validation."""

    data: CaseSource = dataclasses.field(default_factory=lambda: CaseSource(val_fraction=0.2, test_fraction=0.0))
    slices: SliceSection = dataclasses.field(default_factory=SliceSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    output_dir: str = "runs/brats_slices"
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


CONFIG_CLASS = SlicesConfig

#: The built-in CPU defaults: 96x96 slices of 20 synthetic 96x96x40 cases, the DenseNet121 encoder
#: (random weights, so no frozen warm-up) with a narrow decoder, Adam 1e-3, 16 epochs.
CPU_DEFAULTS = SlicesConfig(
    data=CaseSource(synthetic_cases=20, synthetic_shape=(96, 96, 40), val_fraction=0.2, test_fraction=0.0),
    slices=SliceSection(image_size=96),
    model=ModelSection(options={"decoder_filters": [64, 32, 32, 16, 16]}),
    train=TrainSection(epochs=16, batch_size=16, learning_rate=1e-3),
    output_dir="runs/brats_unetpp_slices",
)

#: `--paper`: the RSNA-MICCAI stage-1 settings: 224x224 slices in three planes with tumour/brain
#: ratio > 0.01, UNet++ DenseNet121 from ImageNet, WT and ET outputs, the encoder frozen for 10
#: epochs then fine-tuned, more than 180 epochs in all, 20% of the patients held out.
PAPER = {"slices.image_size": 224, "slices.min_ratio": 0.01, "slices.planes": ("axial", "coronal", "sagittal"),
         "model.name": "unet_plus_plus", "model.encoder": "densenet121", "model.weights": "imagenet",
         "model.freeze_epochs": 10, "model.options": {}, "train.epochs": 200, "train.batch_size": 16,
         "train.learning_rate": 1e-4, "data.val_fraction": 0.2, "data.test_fraction": 0.0}


def find_data(config):
    """Training and validation cases (FLAIR, T1c, T2), split by patient, excluded patients left out."""
    from tfseg.workflows.brats_cases import find_cases as find

    return find(config.data, config.output_dir, config.train.seed)


def extract(config, cases):
    """The kept slices of the training and validation cases, as lists of `Slice` (decoded arrays)."""
    from tfseg.data.slices import slices_from_cases

    options = dict(channels=tuple(config.data.modalities), planes=tuple(config.slices.planes), min_ratio=config.slices.min_ratio,
                   dedupe=config.slices.dedupe, on_error=config.data.on_error)
    train = slices_from_cases(cases.train, problems=cases.problems, **options)
    val = slices_from_cases(cases.val, problems=cases.problems, **options)
    logger.info("%d training and %d validation slices", len(train), len(val))
    return train, val


def region_targets(label):
    """WT = any tumour label, ET = label 4, as float32 channels `(..., 2)` (tensor in, tensor out)."""
    import tensorflow as tf

    return tf.stack([tf.cast(label > 0, tf.float32), tf.cast(tf.equal(label, 4), tf.float32)], axis=-1)


def make_datasets(config, train, val, dist=None):
    """Per-slice z-score on non-zero pixels, resize, flips/rotations; targets WT and ET."""
    from tfseg.data.pipeline import Augmentation2D, segmentation_dataset
    from tfseg.errors import ConfigError

    if not train:
        raise ConfigError("no training slice passed the tumour/brain filter; lower slices.min_ratio")
    size = config.slices.image_size
    augmentation = Augmentation2D() if config.slices.augment else Augmentation2D(0.0, False, 0.0)
    common = dict(image_size=(size, size), batch_size=config.train.batch_size, normalization="zscore_nonzero",
                  channels=3, seed=config.train.seed)

    def dataset(slices, training):
        ds = segmentation_dataset([s.image for s in slices], [s.label for s in slices], training=training,
                                  augmentation=augmentation if training else None, **common)
        return ds.map(lambda x, y: (x, region_targets(y)))

    train_ds = dataset(train, True)
    val_ds = dataset(val, False) if val else None
    if dist is not None:
        train_ds = dist.shard(train_ds)
    return train_ds, val_ds


def build(config, dist=None):
    """UNet++ (DenseNet121 encoder by default) with two sigmoid outputs."""
    from tfseg.models import build_model
    from tfseg.training.phases import mixed_precision, scope

    mixed_precision(config.train.mixed_precision)
    size = config.slices.image_size
    spec = {"name": config.model.name, "input_shape": (size, size, 3), "num_classes": len(REGION_NAMES),
            "weights": config.model.weights, "output_activation": "sigmoid",
            **({"encoder": config.model.encoder} if config.model.name in ("unet", "unet_plus_plus") else {}),
            **config.model.options}
    with scope(dist):
        return build_model(spec)


def train(config, model, train_ds, val_ds, dist=None, val_slices=None):
    """Warm up the decoder on a frozen encoder (`model.freeze_epochs`, with pretrained weights), then fine-tune.

    `val_ds` (held-out slices resized to the training size) is logged as `resized_val_*`; with
    `val_slices`, they go through the serving path at their original size every few epochs
    (`val_dice`, the mean of WT and ET, which picks `best.keras`).

    Returns `(history, seconds)`. A randomly initialized encoder is never frozen (nothing to keep).
    The Dice is taken over the whole batch (segmentation_models_pytorch's DiceLoss): most slices
    have no ET, and a per-slice Dice of an empty channel gives almost no gradient to clear the
    background.
    """
    from tfseg.models.unet import set_encoder_trainable
    from tfseg.training import set_seed
    from tfseg.training.phases import fit_phases
    from tfseg.training.registries import make_loss, make_metrics, make_optimizer
    from tfseg.training.validation import whole_image_validation

    set_seed(config.train.seed)
    freeze = config.model.freeze_epochs if config.model.weights else 0
    if config.model.freeze_epochs and not config.model.weights:
        logger.info("no pretrained encoder weights: training everything from the first epoch")
    rate = dist.learning_rate(config.train.learning_rate) if dist is not None else None
    optimizer = make_optimizer(config.train, int(train_ds.cardinality()), rate)
    loss = make_loss(config.train.loss, mode="sigmoid", batch_dice=True)
    validation = [] if not val_slices else whole_image_validation(
        lambda m: held_out_scores(config, m, val_slices), every=config.train.validate_every,
        watch=[f"val_dice_{name.lower()}" for name in REGION_NAMES])
    return fit_phases(dist, model, loss, optimizer, make_metrics(("dice", "iou"), REGION_NAMES, mode="sigmoid"),
                      train_ds, val_ds, epochs=config.train.epochs, output_dir=config.output_dir,
                      monitor="val_dice" if val_slices else "dice", freeze_epochs=freeze,
                      set_encoder_trainable=set_encoder_trainable, resume=config.resume,
                      verbose=config.train.verbose, extra_callbacks=validation, validation_prefix="resized_val_")


def serving_spec(config, metrics=None):
    """Raw 3-channel slices in (any size: resized to the training size and back), WT/ET masks out."""
    from tfseg.export.savedmodel import ServingSpec

    size = config.slices.image_size
    return ServingSpec(image_size=(size, size), stride=32, in_channels=3, normalization="zscore_nonzero",
                       activation="sigmoid", class_names=REGION_NAMES,
                       extra={"workflow": "brats_slices", "modalities": list(config.data.modalities),
                              "metrics": metrics or {}})


def held_out_scores(config, model, val):
    """Dice, IoU, precision and recall of WT and ET over all held-out slice pixels, at each slice's original size.

    The slices go through the exported serving function; the figures validation logs and
    `metrics.json` holds (`val_dice` is the mean of WT and ET).
    """
    from tfseg.export.savedmodel import serving_callable
    from tfseg.metrics import segmentation_scores

    serve = serving_callable(model, serving_spec(config))
    counts = {name: [] for name in REGION_NAMES}
    for item in val:
        labels = serve(np.asarray(item.image, np.float32)[None])["labels"][0]
        truth = np.stack([item.label > 0, item.label == 4], axis=-1)
        for i, name in enumerate(REGION_NAMES):
            counts[name].append((labels[..., i].ravel(), truth[..., i].ravel()))
    metrics = {}
    for name in REGION_NAMES:
        pred = np.concatenate([p for p, _ in counts[name]]) if counts[name] else np.zeros(0, np.uint8)
        true = np.concatenate([t for _, t in counts[name]]) if counts[name] else np.zeros(0, np.uint8)
        scores = segmentation_scores(pred.astype(np.uint8), true.astype(np.uint8), num_classes=2)
        for score in ("dice", "iou", "precision", "recall"):
            metrics[f"val_{score}_{name.lower()}"] = float(scores[score][1])
    return headline_metrics(metrics, REGION_NAMES)


def evaluate(config, model, val, train_seconds=None):
    """Validation figures of WT and ET over all held-out slice pixels (`held_out_scores`) and the curves.

    The training loss on the validation batches (`resized_val_loss`, batch soft Dice + BCE) is in
    `history.csv`; a soft Dice summed over the whole validation set is not reported: it is
    dominated by the small probabilities of the many background pixels, not by the masks.
    """
    from tfseg.viz.curves import plot_run_curves

    metrics = {"val_slices": len(val), "epochs": config.train.epochs,
               "model": f"{config.model.name}_{config.model.encoder}", "params": int(model.count_params()),
               **held_out_scores(config, model, val)}
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    plot_run_curves(config.output_dir)
    return metrics


def export(config, model, metrics, dist=None):
    """Write `model.keras`, `saved_model/`, `metrics.json` and `config.json` (chief only)."""
    from tfseg.workflows.outputs import write_run_outputs

    write_run_outputs(config, model, serving_spec(config, metrics), metrics, dist)


def run(config):
    """All steps, in order; returns the metrics written to `metrics.json`."""
    from tfseg.training.distributed import workflow_distribution

    dist = workflow_distribution(config.distribute)
    with dist.chief_first():  # the chief writes the synthetic dataset, if any
        cases = find_data(config)
    train_slices, val_slices = extract(config, cases)
    train_ds, val_ds = make_datasets(config, train_slices, val_slices, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist, val_slices=val_slices)
    metrics = {}
    if dist.is_chief:
        best = use_best_epoch(model, history, config.output_dir, monitor="val_dice")
        metrics = {**evaluate(config, model, val_slices, seconds), **best}
    if metrics:
        metrics.update(train_slices=len(train_slices), train_cases=len(cases.train), val_cases=len(cases.val),
                       synthetic_data=cases.synthetic, skipped_records=len(cases.problems))
    export(config, model, metrics, dist)
    return metrics


def summary_table(metrics):
    """Dice and IoU of WT and ET on the validation slices."""
    from tfseg.reports import format_rows

    rows = [("model", metrics.get("model", "")),
            ("validation slices", str(metrics["val_slices"]))]
    for name in REGION_NAMES:
        key = name.lower()
        rows.append((f"{name}: Dice / IoU", f"{metrics[f'val_dice_{key}']:.4f} / {metrics[f'val_iou_{key}']:.4f}"))
    rows.append(("epochs / train time", f"{metrics['epochs']} / {metrics.get('train_seconds', 0):.0f} s"))
    return format_rows(rows)


def add_arguments(parser, defaults):
    """The workflow's own flags (the shared ones come from `tfseg.workflows.entry`)."""
    parser.add_argument("--data-dir", help="a BraTS 2018-2021 release folder (default: synthetic data)")
    parser.add_argument("--exclude-cases", help="text file of case ids to leave out (e.g. the stage-2 patients)")
    parser.add_argument("--image-size", type=int, help=f"slice side, a multiple of 32 ({defaults.slices.image_size})")
    parser.add_argument("--min-ratio", type=float, help=f"tumour/brain area ratio to keep a slice "
                                                        f"({defaults.slices.min_ratio})")
    parser.add_argument("--encoder", choices=("densenet121", "resnet18", "resnet34", "resnet50"),
                        help=f"encoder ({defaults.model.encoder})")
    parser.add_argument("--weights", help="'imagenet' or a weights file")
    parser.add_argument("--freeze-epochs", type=int, help=f"encoder warm-up epochs with pretrained weights "
                                                          f"({defaults.model.freeze_epochs})")
    parser.add_argument("--mixed-precision", action="store_true", default=None, help="float16 compute (GPU)")
    return parser


def flag_overrides(args):
    """Dotted-path config updates of the workflow's own flags."""
    return {"data.data_dir": args.data_dir, "data.exclude_cases": args.exclude_cases,
            "slices.image_size": args.image_size, "slices.min_ratio": args.min_ratio, "model.encoder": args.encoder,
            "model.weights": args.weights, "model.freeze_epochs": args.freeze_epochs,
            "train.mixed_precision": args.mixed_precision}
