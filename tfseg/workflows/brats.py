"""3D brain-tumour segmentation on BraTS (workflow W2, the Clara Train recipe), step by step.

    config = BratsConfig()                       # or load_config("cfg.json", BratsConfig)
    data = find_data(config)                     # datalist, BraTS folder, or synthetic data
    train_ds, val_ds = make_datasets(config, data)
    model = build(config)                        # SegResNet, with the VAE branch for training
    history, seconds = train(config, model, train_ds, val_ds)
    metrics = evaluate(config, model, data.val)  # whole volumes: sliding window, NIfTI masks, PNGs
    export(config, model, metrics)

Targets are the three nested BraTS regions as sigmoid channels: whole tumour WT = {1, 2, 4},
tumour core TC = {1, 4}, enhancing tumour ET = {4}. Predicted regions are merged back into one
BraTS label map (1/2/4) and written as NIfTI on the input's affine, ready for ITK-SNAP.

Example:
    >>> BratsConfig().model.name
    'segresnet_vae'
"""
import dataclasses
import logging
import os
import time

import numpy as np

from tfseg.training.config import at_least, choice, in_range, output_folder, positive
from tfseg.training.distributed import DISTRIBUTE_CHOICES, strategy_distribution, workflow_distribution
from tfseg.workflows.recipe import DataSplit

logger = logging.getLogger(__name__)

REGION_NAMES = ("WT", "TC", "ET")


@dataclasses.dataclass
class DataSection:
    """Where the cases are and how training crops are drawn.

    Attributes:
        datalist: a Clara/Decathlon datalist JSON ("training"/"validation" sections).
        base_dir: folder the datalist's relative paths are resolved against (default: its folder).
        data_dir: a BraTS release folder (2018-2021 layouts), split by patient with `val_fraction`.
        synthetic_dir: where the synthetic dataset is written when neither is given
            (default: `<output_dir>/synthetic_data`).
        synthetic_cases: cases of the synthetic dataset.
        synthetic_shape: (x, y, z) size of the synthetic volumes, in NIfTI order.
        crop_size: training crop (D, H, W) in tfseg's memory order (NIfTI z, y, x); each a multiple of 8.
        foreground_probability: chance that a crop is centred to contain tumour.
        crops_per_case: random crops drawn from each training case per epoch.
        val_fraction: patients held out when splitting a `data_dir`.
        on_error: "skip" or "raise" for a bad case.
        cache: keep decoded training volumes in memory (int16).
    """

    datalist: str | None = None
    base_dir: str | None = None
    data_dir: str | None = None
    synthetic_dir: str | None = None
    synthetic_cases: int = at_least(1, default=10)
    synthetic_shape: tuple[int, ...] = positive((64, 64, 48))
    crop_size: tuple[int, ...] = positive((48, 64, 64))
    foreground_probability: float = in_range(0.0, 1.0, default=0.5)
    crops_per_case: int = at_least(1, default=1)
    val_fraction: float = in_range(0.0, 1.0, default=0.2)
    on_error: str = choice("skip", ("skip", "raise"))
    cache: bool = True


@dataclasses.dataclass
class ModelSection:
    """SegResNet settings (Myronenko 2018: 32 initial filters, blocks 1-2-2-4 / 1-1-1, latent 128).

    Attributes:
        pretrained: a `.keras` or `.weights.h5` file to start from (fine-tuning).
        freeze_encoder_epochs: train the decoder only for this many epochs first, then everything.
        prior_probability: the outputs' initial probability (tumour regions are small; see `segresnet`).
    """

    name: str = choice("segresnet_vae", ("segresnet_vae", "segresnet"))
    init_filters: int = 32
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    dropout: float = in_range(0.0, 1.0, default=0.2)
    vae_latent: int = 128
    prior_probability: float | None = 0.01
    pretrained: str | None = None
    freeze_encoder_epochs: int = at_least(0, default=0)


@dataclasses.dataclass
class TrainSection:
    """Adam with polynomial decay, batch 1, as in the paper."""

    epochs: int = at_least(1, default=300)
    batch_size: int = at_least(1, default=1)
    learning_rate: float = positive(1e-4)
    seed: int = at_least(0, default=0)
    verbose: int = in_range(0, 2, default=1)


@dataclasses.dataclass
class InferenceSection:
    """Whole-volume inference: sliding windows of `roi_size` (default: the crop), Gaussian blending.

    `crop_to_nonzero` predicts only inside the brain's bounding box (skull-stripped input is zero
    outside it): the same labels with about half the windows on BraTS volumes.
    """

    roi_size: tuple[int, ...] | None = None
    overlap: float = 0.5
    window_batch_size: int = at_least(1, default=2)
    tta: bool = False
    crop_to_nonzero: bool = True
    overlays: bool = True


@dataclasses.dataclass
class BratsConfig:
    """The whole BraTS run; every field has a default."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    inference: InferenceSection = dataclasses.field(default_factory=InferenceSection)
    output_dir: str = output_folder("runs/brats")
    resume: bool = False
    distribute: str = choice("none", DISTRIBUTE_CHOICES)


def find_data(config):
    """The training and validation cases: from the datalist, a BraTS folder, or synthetic data."""
    from tfseg.datasets import brats, datalist, splits, synthetic
    from tfseg.utils.problems import ProblemLog

    data = config.data
    problems = ProblemLog(data.on_error)
    use_synthetic = data.datalist is None and data.data_dir is None
    listing = data.datalist
    if use_synthetic:
        root = data.synthetic_dir or os.path.join(config.output_dir, "synthetic_data")
        written = synthetic.ensure_brats(root, num_cases=data.synthetic_cases, shape=tuple(data.synthetic_shape),
                                         seed=config.train.seed)
        listing = written.datalist
        logger.info("using the synthetic BraTS dataset in %s", root)
    if listing is not None:
        sections = datalist.read_datalist(listing, base_dir=None if use_synthetic else data.base_dir,
                                          on_error=data.on_error, problems=problems)
        train_cases, val_cases = sections.get("training", []), sections.get("validation", [])
    else:
        cases = brats.find_brats(data.data_dir, on_error=data.on_error, problems=problems)
        split = splits.split_by_patient(cases, val_fraction=data.val_fraction, seed=config.train.seed)
        train_cases, val_cases = split.train, split.val
    logger.info("%d training and %d validation cases", len(train_cases), len(val_cases))
    return DataSplit(list(train_cases), list(val_cases), problems, use_synthetic)


def make_datasets(config, data):
    """Training crops (augmented) and validation centre crops, as tf.data pipelines of (image, WT/TC/ET)."""
    from tfseg.data.pipeline3d import brats_dataset

    common = dict(crop_size=tuple(config.data.crop_size), batch_size=config.train.batch_size,
                  seed=config.train.seed, on_error=config.data.on_error, problems=data.problems)
    train_ds = brats_dataset(data.train, training=True, foreground_probability=config.data.foreground_probability,
                             cache=config.data.cache, **common).repeat(config.data.crops_per_case)
    val_ds = brats_dataset(data.val, training=False, cache=config.data.cache, **common) if data.val else None
    return train_ds, val_ds


def build(config, strategy=None):
    """SegResNet (with the VAE branch when configured), optionally from pretrained weights."""
    import contextlib

    from tfseg.models import build_model

    model = config.model
    spec = {"name": model.name, "input_shape": tuple(config.data.crop_size) + (4,), "num_classes": 3,
            "init_filters": model.init_filters, "blocks_down": tuple(model.blocks_down),
            "blocks_up": tuple(model.blocks_up), "dropout": model.dropout,
            "prior_probability": model.prior_probability}
    if model.name == "segresnet_vae":
        spec["vae_latent"] = model.vae_latent
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        built = build_model(spec)
    if model.pretrained:
        from tfseg.models.weights import load_weights_file

        load_weights_file(built, model.pretrained)
        logger.info("started from %s", model.pretrained)
    return built


def make_metrics():
    """Dice of each region over the training crops (the whole-volume figures come from `evaluate`)."""
    from tfseg.metrics import DiceScore

    return [DiceScore(num_classes=3, class_id=i, mode="sigmoid", name=f"dice_{name.lower()}")
            for i, name in enumerate(REGION_NAMES)]


def encoder_layers(model):
    """The layers of the shared encoder: the stem and the `enc*` levels of the SegResNet builders."""
    return [layer for layer in model.layers if layer.name.startswith(("stem", "enc"))]


def train(config, model, train_ds, val_ds, strategy=None, dist=None):
    """Train with soft Dice + binary cross-entropy on the regions (+ the VAE loss the model adds itself).

    Returns `(history, seconds)`. Dice alone (the paper's loss) learns the small regions too
    slowly for a CPU budget; the cross-entropy term gives every voxel a gradient from the start.

    With `freeze_encoder_epochs`, the encoder is frozen for those epochs, then everything is
    trained (Clara's fine-tuning recipe). One optimizer serves both phases (built on every
    variable first), so checkpoints and `--resume` work across the switch.

    `dist` (a `Distribution`, overriding `strategy`) picks the trainer, scales the learning rate
    and adds its warm-up; `train_ds` is then this rank's share (`dist.shard`).
    """
    import keras

    from tfseg.losses import DiceCrossEntropyLoss
    from tfseg.training import set_seed
    from tfseg.training.config import config_fingerprint
    from tfseg.workflows.common import fit_phases

    set_seed(config.train.seed)
    dist = dist or strategy_distribution(strategy)
    steps = int(train_ds.cardinality())
    learning_rate = dist.learning_rate(config.train.learning_rate)
    rate = keras.optimizers.schedules.PolynomialDecay(learning_rate, max(1, config.train.epochs * steps),
                                                      learning_rate * 0.01, power=0.9)
    optimizer = keras.optimizers.Adam(rate)
    loss = DiceCrossEntropyLoss(mode="sigmoid")
    if isinstance(model.output, dict):  # the VAE model: Dice on the regions; it adds its own VAE loss
        loss = {"probabilities": loss}
        train_ds = train_ds.map(lambda x, y: (x, {"probabilities": y}))
        val_ds = None if val_ds is None else val_ds.map(lambda x, y: (x, {"probabilities": y}))
    monitor = "val_dice_wt" if val_ds is not None else "dice_wt"
    return fit_phases(dist, model, loss, optimizer, make_metrics(), train_ds, val_ds, epochs=config.train.epochs,
                      output_dir=config.output_dir, monitor=monitor, freeze_epochs=config.model.freeze_encoder_epochs,
                      set_encoder_trainable=set_encoder_trainable, resume=config.resume,
                      verbose=config.train.verbose, fingerprint=config_fingerprint(config))


def set_encoder_trainable(model, trainable):
    """Freeze (False) or unfreeze (True) the SegResNet encoder layers (`encoder_layers`)."""
    for layer in encoder_layers(model):
        layer.trainable = trainable


def segmentation_network(model):
    """The model to predict with: the segmentation path of a VAE model (any input size), else the model."""
    if isinstance(model.output, dict):
        from tfseg.models.segresnet import inference_model

        return inference_model(model, input_shape=(None, None, None, model.input_shape[-1]))
    return model


def read_case_image(case):
    """The 4 modalities of a case stacked channels-last `(D, H, W, 4)`, and the first one's `Volume` (affine)."""
    from tfseg.errors import DataError
    from tfseg.io.nifti import read_nifti

    volumes = [read_nifti(path) for path in case.images]
    shapes = {v.array.shape for v in volumes}
    if len(shapes) != 1:
        raise DataError(case.images[0], f"the modalities of case {case.case_id} differ in shape: {sorted(shapes)}")
    return np.stack([v.array for v in volumes], axis=-1).astype(np.float32), volumes[0]


def normalize_case(image):
    """Per-channel z-score over non-zero voxels, the same function the pipeline and the SavedModel use."""
    from tfseg.data.transforms.intensity import zscore_nonzero_channels

    return zscore_nonzero_channels(image).numpy()


def predict_case(config, network, case, image):
    """Whole-volume region probabilities `(D, H, W, 3)` of one case's stacked `image` (from `read_case_image`)."""
    from tfseg.inference.sliding_window import predict_volume

    roi = tuple(config.inference.roi_size or config.data.crop_size)
    probabilities = predict_volume(network, normalize_case(image), roi_size=roi, overlap=config.inference.overlap,
                                   window_batch_size=config.inference.window_batch_size, tta=config.inference.tta,
                                   crop_to_nonzero=config.inference.crop_to_nonzero, source=case.images[0])
    return probabilities


def evaluate(config, model, cases, data=None, train_seconds=None):
    """Infer every validation case on the whole volume; write NIfTI label maps and overlays; score them.

    Writes `<output_dir>/predictions/<case>_seg.nii.gz` (BraTS labels 1/2/4 on the input's affine)
    and `<output_dir>/overlays/<case>.png` (three planes: truth and prediction over FLAIR).

    Returns:
        The metrics dict: mean Dice and HD95 (mm) per region, per-case scores, timings.
    """
    from tfseg.data.transforms.labels import regions_to_brats_labels
    from tfseg.io.nifti import read_nifti, write_nifti
    from tfseg.metrics import brats_region_scores, mean_region_scores
    from tfseg.viz.overlays import three_plane_overlay

    network = segmentation_network(model)
    predictions = os.path.join(config.output_dir, "predictions")
    overlays = os.path.join(config.output_dir, "overlays")
    per_case, seconds = {}, []
    cases = cases if data is None else data.problems.usable(cases)  # cases with a bad file were skipped
    for case in cases:
        start = time.perf_counter()
        image, reference = read_case_image(case)
        probabilities = predict_case(config, network, case, image)
        labels = regions_to_brats_labels(probabilities).astype(np.uint8)
        seconds.append(time.perf_counter() - start)
        write_nifti(os.path.join(predictions, f"{case.case_id}_seg.nii.gz"), labels, reference.affine,
                    header=reference.header, dtype=np.uint8)
        if case.label is None:
            continue
        truth = read_nifti(case.label).array
        per_case[case.case_id] = brats_region_scores(labels, truth, spacing=reference.spacing)
        if config.inference.overlays:
            three_plane_overlay(image, os.path.join(overlays, f"{case.case_id}.png"), labels=truth,
                                prediction=labels, spacing=reference.spacing, title=case.case_id)
    metrics = {"val_cases": len(cases), "infer_seconds_per_case": round(float(np.mean(seconds)), 2) if seconds else None,
               "model": config.model.name, "params": int(model.count_params()), "epochs": config.train.epochs}
    if per_case:
        means = mean_region_scores(list(per_case.values()))
        for region in REGION_NAMES:
            metrics[f"val_dice_{region.lower()}"] = _float(means, "dice", region)
            metrics[f"val_hd95_{region.lower()}"] = _float(means, "hd95", region)
        metrics["per_case"] = {case: {region: {k: (round(float(v), 4) if np.isfinite(v) else None)
                                                for k, v in scores.items()} for region, scores in regions.items()}
                               for case, regions in per_case.items()}
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    if data is not None:
        metrics.update(train_cases=len(data.problems.usable(data.train)), skipped_records=len(data.problems),
                       skipped_files=data.problems.records(), synthetic_data=data.synthetic)
    return metrics


def _float(means, score, region):
    value = means.get(region, {}).get(score)
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def export(config, model, metrics):
    """Write `model.keras` (training model), `saved_model/` (segmentation path only), `metrics.json`, `config.json`."""
    from tfseg.export.savedmodel import ServingSpec
    from tfseg.workflows.common import write_run_outputs

    spec = ServingSpec(stride=2 ** (len(config.model.blocks_down) - 1), in_channels=4,
                       normalization="zscore_nonzero", activation="sigmoid", class_names=REGION_NAMES,
                       label_map="brats", extra={"workflow": "brats", "modalities": ["t1", "t1ce", "t2", "flair"],
                                                 "metrics": {k: v for k, v in metrics.items() if k != "per_case"}})
    write_run_outputs(config, model, spec, metrics, serving_model=segmentation_network(model))


def run(config):
    """All steps, in order; returns the metrics written to `metrics.json` (None on non-chief Horovod ranks)."""
    dist = workflow_distribution(config.distribute)  # first: collectives need a fresh TF runtime
    with dist.chief_first():  # the chief writes the synthetic dataset, the other ranks then read it
        data = find_data(config)
    train_ds, val_ds = make_datasets(config, data)
    train_ds = dist.shard(train_ds)
    model = build(config, dist.strategy)
    history, seconds = train(config, model, train_ds, val_ds, dist=dist)
    if not dist.is_chief:  # evaluation writes prediction files: the chief's job
        return None
    metrics = evaluate(config, model, data.val, data, seconds)
    export(config, model, metrics)
    return metrics


def summary_table(metrics):
    """The headline figures: Dice and HD95 per region, times."""
    lines = [f"{'region':<8}{'Dice':>8}{'HD95 mm':>10}"]
    for region in REGION_NAMES:
        dice, hd95 = metrics.get(f"val_dice_{region.lower()}"), metrics.get(f"val_hd95_{region.lower()}")
        lines.append(f"{region:<8}{'-' if dice is None else f'{dice:.4f}':>8}{'-' if hd95 is None else f'{hd95:.2f}':>10}")
    lines.append(f"{metrics.get('val_cases', 0)} validation cases, {metrics.get('epochs')} epochs, "
                 f"train {metrics.get('train_seconds', 0):.0f} s, inference {metrics.get('infer_seconds_per_case')} s/case")
    return "\n".join(lines)


#: `--paper`: Myronenko 2018's sizes (160x192x128 crops, 32 filters, latent 128, Adam 1e-4, batch 1).
PAPER_SIZES = {"data.crop_size": (128, 192, 160), "model.init_filters": 32, "model.vae_latent": 128,
               "model.dropout": 0.2, "train.batch_size": 1, "train.learning_rate": 1e-4, "train.epochs": 300}


def add_arguments(parser, defaults):
    """The recipe's flags; each overrides the matching config field."""
    from tfseg.workflows.common import add_common_arguments

    add_common_arguments(parser, defaults.train.epochs, defaults.train.batch_size, defaults.train.learning_rate,
                         defaults.output_dir, defaults.train.seed, defaults.data.on_error, defaults.distribute,
                         config_help="JSON config (fields of BratsConfig); flags override it")
    parser.add_argument("--datalist", help="Clara/Decathlon datalist JSON with training/validation sections")
    parser.add_argument("--base-dir", help="folder the datalist's relative paths are resolved against")
    parser.add_argument("--data-dir", help="a BraTS 2018-2021 release folder (split by patient)")
    parser.add_argument("--crop-size", type=int, nargs=3, metavar=("D", "H", "W"),
                        help=f"training crop, slices x rows x columns ({defaults.data.crop_size})")
    parser.add_argument("--init-filters", type=int, help=f"filters of the first level ({defaults.model.init_filters})")
    parser.add_argument("--pretrained", help="a .keras or .weights.h5 file to fine-tune")
    parser.add_argument("--freeze-encoder-epochs", type=int, help="train the decoder only for this many epochs")
    parser.add_argument("--no-vae", action="store_true", help="train plain SegResNet (no VAE branch)")
    parser.add_argument("--tta", action="store_true", default=None, help="mirror test-time augmentation")
    return parser


def config_from_args(args, defaults):
    """`defaults` (or the `--config` file) with the given flags applied."""
    from tfseg.workflows.common import load_with_overrides

    return load_with_overrides(args, defaults, BratsConfig, {
        "data.datalist": args.datalist, "data.base_dir": args.base_dir, "data.data_dir": args.data_dir,
        "data.crop_size": list(args.crop_size) if args.crop_size else None,
        "model.init_filters": args.init_filters, "model.pretrained": args.pretrained,
        "model.freeze_encoder_epochs": args.freeze_encoder_epochs,
        "model.name": "segresnet" if args.no_vae else None, "inference.tta": args.tta,
    })
