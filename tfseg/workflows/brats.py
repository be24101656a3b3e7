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

from tfseg.datasets.splits import DataSplit
from tfseg.errors import DataError
from tfseg.training.config import at_least, choice, in_range, positive
from tfseg.training.distributed import as_distribution, workflow_distribution
from tfseg.workflows import sections
from tfseg.workflows.outputs import headline_metrics, use_best_epoch

logger = logging.getLogger(__name__)

REGION_NAMES = ("WT", "TC", "ET")
CLASS_NAMES = REGION_NAMES


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
        foreground_classes: the label values such crops are centred on in turn (each tumour class
            as often as the others, so small enhancing/necrotic regions are learned); None: any
            tumour voxel.
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
    foreground_classes: tuple[int, ...] | None = (1, 2, 4)
    crops_per_case: int = at_least(1, default=1)
    val_fraction: float = in_range(0.0, 1.0, default=0.2)
    on_error: str = choice("skip", ("skip", "raise"))
    cache: bool = True


@dataclasses.dataclass
class ModelSection(sections.ModelSection):
    """SegResNet settings (Myronenko 2018: 32 initial filters, blocks 1-2-2-4 / 1-1-1, latent 128).

    `init_filters`, `blocks_down`, `blocks_up`, `dropout` and `vae_latent` are arguments of the builder.

    Attributes:
        weights: a `.keras` or `.weights.h5` file to start from (fine-tuning).
        freeze_epochs: train the decoder only for this many epochs first, then everything (fine-tuning).
        prior_probability: the outputs' initial probability (tumour regions are small; see `segresnet`).
    """

    name: str = choice("segresnet_vae", ("segresnet_vae", "segresnet"))
    init_filters: int = 32
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    dropout: float = in_range(0.0, 1.0, default=0.2)
    vae_latent: int = 128
    prior_probability: float | None = 0.01


TrainSection = sections.with_defaults(
    sections.TrainSection, "TrainSection",
    "Adam with polynomial decay, batch 1, as in the paper; soft Dice + BCE on the regions by default.",
    epochs=300, batch_size=1, learning_rate=1e-4, lr_schedule="poly", loss="dice_ce")


@dataclasses.dataclass
class InferenceSection:
    """Whole-volume inference: sliding windows with Gaussian blending, sized for inference.

    Attributes:
        roi_size: the window (D, H, W); None chooses it from `memory_mb`: the whole volume when it
            fits (one forward pass, full context), else the largest window that does. The
            training crop is not used: a network sees far more context at inference, and a
            window as small as the crop loses much of the Dice.
        memory_mb: the memory one window's forward pass may take (the measured model of
            `tfseg.datasets.settings.inference_bytes`; see `inference_window`).
        crop_to_nonzero: predict only inside the brain's bounding box (skull-stripped input is
            zero outside it): the same labels with about half the windows on BraTS volumes.
    """

    roi_size: tuple[int, ...] | None = None
    memory_mb: int = 4096
    overlap: float = 0.5
    window_batch_size: int = at_least(1, default=2)
    tta: bool = False
    crop_to_nonzero: bool = True
    overlays: bool = True


CONFIG_CLASS = BratsConfig = sections.workflow_config(
    "BratsConfig", "The whole BraTS run; every field has a default.",
    data=DataSection, model=ModelSection, train=TrainSection, inference=InferenceSection)


#: The built-in CPU defaults: SegResNet-VAE with 8 initial filters and latent 32, 32x48x48 crops
#: (8 per case and epoch, 70% around tumour) of 12 synthetic 48x64x64 cases, Adam 1e-3, 50 epochs.
CPU_DEFAULTS = BratsConfig(
    data=DataSection(crop_size=(32, 48, 48), synthetic_cases=12, foreground_probability=0.7, crops_per_case=8),
    model=ModelSection(init_filters=8, vae_latent=32, dropout=0.1),
    train=TrainSection(epochs=50, batch_size=2, learning_rate=1e-3),
    inference=InferenceSection(overlap=0.5, window_batch_size=4),
    output_dir="runs/brats_segresnet_vae",
)

#: `--paper`: Myronenko 2018 as run by Clara: 160x192x128 crops (x, y, z), SegResNet 32 filters,
#: blocks 1-2-2-4 / 1-1-1, dropout 0.2, VAE latent 128, the paper's soft Dice (squared terms in the
#: denominator), Adam 1e-4 with (1 - epoch/300)^0.9 decay, L2 weight decay 1e-5, 300 epochs, batch 1.
PAPER = {"data.crop_size": (128, 192, 160), "data.foreground_probability": 0.0, "data.crops_per_case": 1,
         "model.name": "segresnet_vae", "model.init_filters": 32,
         "model.blocks_down": (1, 2, 2, 4), "model.blocks_up": (1, 1, 1), "model.vae_latent": 128,
         "model.dropout": 0.2, "train.batch_size": 1, "train.learning_rate": 1e-4, "train.epochs": 300,
         "train.optimizer": "adam", "train.lr_schedule": "poly", "train.weight_decay": 1e-5,
         "train.loss": "dice_squared"}


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


def make_datasets(config, data, dist=None):
    """Training crops (augmented) and validation centre crops, as tf.data pipelines of (image, WT/TC/ET)."""
    from tfseg.data.pipeline3d import brats_dataset

    common = dict(crop_size=tuple(config.data.crop_size), batch_size=config.train.batch_size,
                  seed=config.train.seed, on_error=config.data.on_error, problems=data.problems)
    train_ds = brats_dataset(data.train, training=True, foreground_probability=config.data.foreground_probability,
                             foreground_classes=config.data.foreground_classes, cache=config.data.cache, **common)
    train_ds = train_ds.repeat(config.data.crops_per_case)
    val_ds = brats_dataset(data.val, training=False, cache=config.data.cache, **common) if data.val else None
    if dist is not None:
        train_ds = dist.shard(train_ds)
    return train_ds, val_ds


def build(config, dist=None):
    """SegResNet (with the VAE branch when configured), optionally from pretrained weights."""
    from tfseg.models import build_model
    from tfseg.training.phases import scope

    model = config.model
    spec = {"name": model.name, "input_shape": tuple(config.data.crop_size) + (4,), "num_classes": 3,
            "init_filters": model.init_filters, "blocks_down": tuple(model.blocks_down),
            "blocks_up": tuple(model.blocks_up), "dropout": model.dropout,
            "prior_probability": model.prior_probability}
    if model.name == "segresnet_vae":
        spec["vae_latent"] = model.vae_latent
    with scope(dist):
        built = build_model(spec)
    if model.weights:
        from tfseg.models.weights import load_weights_file

        load_weights_file(built, model.weights)
        logger.info("started from %s", model.weights)
    return built


def train(config, model, train_ds, val_ds, dist=None, val_cases=None):
    """Train on the regions with the configured loss (+ the VAE loss the model adds itself).

    `val_ds` (validation crops) is logged as `crop_val_*`; with `val_cases`, the whole validation
    volumes go through the inference path every few epochs (`val_dice`, which picks `best.keras`).

    Returns `(history, seconds)`. The default, soft Dice + binary cross-entropy, learns the small
    regions in a CPU budget where Dice alone (the paper's loss, `--paper`) is too slow: the
    cross-entropy term gives every voxel a gradient from the start.

    With `freeze_epochs` (usually with `weights`), the encoder is frozen for those epochs, then everything is
    trained (Clara's fine-tuning recipe). One optimizer serves both phases (built on every
    variable first), so checkpoints and `--resume` work across the switch.

    `dist` (a `Distribution`, or the strategy the model was built under) picks the trainer, scales
    the learning rate and adds its warm-up; `train_ds` is then this rank's share (`dist.shard`).
    """
    from tfseg.models.encoder import set_encoder_trainable
    from tfseg.training.determinism import seed_run
    from tfseg.training.config import config_fingerprint
    from tfseg.training.phases import fit_phases
    from tfseg.training.registries import make_loss, make_metrics, make_optimizer

    seed_run(config.train.seed, config.train.deterministic)
    dist = as_distribution(dist)
    rate = dist.learning_rate(config.train.learning_rate)
    optimizer = make_optimizer(config.train, int(train_ds.cardinality()), rate)
    loss = make_loss(config.train.loss, mode="sigmoid")
    if isinstance(model.output, dict):  # the VAE model: Dice on the regions; it adds its own VAE loss
        loss = {"probabilities": loss}
        train_ds = train_ds.map(lambda x, y: (x, {"probabilities": y}))
        val_ds = None if val_ds is None else val_ds.map(lambda x, y: (x, {"probabilities": y}))
    return fit_phases(dist, model, loss, optimizer, make_metrics(("dice",), REGION_NAMES, mode="sigmoid"),
                      train_ds, val_ds, epochs=config.train.epochs, output_dir=config.output_dir,
                      monitor="val_dice" if val_cases else "dice", freeze_epochs=config.model.freeze_epochs,
                      set_encoder_trainable=set_encoder_trainable, resume=config.resume,
                      verbose=config.train.verbose, extra_callbacks=validation_callbacks(config, val_cases),
                      validation_prefix="crop_val_", fingerprint=config_fingerprint(config))


def validation_callbacks(config, val_cases):
    """Whole-volume validation every few epochs (`val_dice`, `val_dice_<region>`) and a warning for a
    region stuck at Dice 0; none without validation cases."""
    from tfseg.training.validation import whole_image_validation

    if not val_cases:
        return []
    return whole_image_validation(lambda model: validation_scores(config, model, val_cases),
                                  every=config.train.validate_every,
                                  watch=[f"val_dice_{region.lower()}" for region in REGION_NAMES])


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
    from tfseg.data.transforms.intensity import zscore_nonzero

    return zscore_nonzero(image).numpy()


def inference_window(shape, config):
    """The sliding window for a volume of spatial `shape`: the whole volume if it fits the memory budget.

    Args:
        shape: the volume's spatial shape `(D, H, W)` (after the crop to the brain, if any).
        config: the run's config (`inference.roi_size`, `inference.memory_mb`, the model's
            `init_filters` and depth).

    Returns:
        `(D, H, W)`, each a multiple of the network's stride.

    Example:
        >>> inference_window((40, 50, 60), CPU_DEFAULTS)          # fits: one window, padded to 8
        (40, 56, 64)
        >>> import dataclasses
        >>> small = dataclasses.replace(CPU_DEFAULTS, inference=InferenceSection(memory_mb=256))
        >>> inference_window((155, 240, 240), small)
        (56, 56, 56)
    """
    if config.inference.roi_size:
        return tuple(int(v) for v in config.inference.roi_size)
    from tfseg.datasets.settings import INFERENCE_BYTES_PER_VOXEL_FILTER

    stride = 2 ** (len(config.model.blocks_down) - 1)
    padded = tuple(-(-int(n) // stride) * stride for n in shape)
    per_voxel = INFERENCE_BYTES_PER_VOXEL_FILTER * int(config.model.init_filters)
    budget = int(config.inference.memory_mb) * 2 ** 20 // per_voxel
    if np.prod(padded) <= budget:
        return padded
    side = max(stride, int(round(budget ** (1 / 3))) // stride * stride)
    return tuple(min(side, n) for n in padded)


def predict_case(config, network, case, image, tta=None):
    """Whole-volume region probabilities `(D, H, W, 3)` of one case's stacked `image` (from `read_case_image`).

    `case` may be anything with `.images` (its first path names the input in errors); `tta`
    overrides `config.inference.tta`.
    """
    from tfseg.inference.sliding_window import nonzero_box, predict_volume

    shape = image.shape[:3]
    if config.inference.crop_to_nonzero:
        box = nonzero_box(image)
        shape = tuple(part.stop - part.start for part in box) if box is not None else shape
    roi = inference_window(shape, config)
    probabilities = predict_volume(network, normalize_case(image), roi_size=roi, overlap=config.inference.overlap,
                                   window_batch_size=config.inference.window_batch_size,
                                   tta=config.inference.tta if tta is None else tta,
                                   crop_to_nonzero=config.inference.crop_to_nonzero, source=case.images[0])
    return probabilities


def predict_fn(config, model):
    """`fn(image (D, H, W, 4), item, tta=False) -> (BraTS labels 0/1/2/4, region probabilities)` for `tfseg predict`.

    The same path as the evaluation: z-score per modality on the brain, sliding windows sized for
    inference over the brain's bounding box, regions merged into one label map. The input's
    channels are the modalities in the order of `tfseg.datasets.brats.MODALITIES` (t1, t1ce, t2,
    flair), as a BraTS case folder or a datalist entry gives them.
    """
    from tfseg.data.transforms.labels import regions_to_brats_labels

    network = segmentation_network(model)

    def predict(image, item, tta=False):
        if image.ndim != 4 or image.shape[-1] != 4:
            raise DataError(item.paths[0], f"expected 4 co-registered modalities (t1, t1ce, t2, flair), got an "
                                           f"input of shape {image.shape}")
        probabilities = predict_case(config, network, item_as_case(item), image, tta=tta or None)
        return regions_to_brats_labels(probabilities).astype(np.uint8), probabilities

    return predict


def item_as_case(item):
    """A `BratsCase` without label for a predictor input item (its paths are the modalities)."""
    from tfseg.datasets.brats import BratsCase

    return BratsCase(case_id=item.case_id, images=tuple(item.paths), label=None)


def case_scores(config, network, case, image, reference, with_hd95=True):
    """Predict one labelled case and score its regions; returns `(labels, {region: {score: value}})`."""
    from tfseg.data.transforms.labels import regions_to_brats_labels
    from tfseg.io.nifti import read_nifti
    from tfseg.workflows.brats_regions import brats_region_scores

    labels = regions_to_brats_labels(predict_case(config, network, case, image)).astype(np.uint8)
    if case.label is None:
        return labels, None
    truth = read_nifti(case.label).array
    scores = brats_region_scores(labels, truth, spacing=reference.spacing if with_hd95 else None)
    if not with_hd95:
        for region in scores.values():
            region.pop("hd95", None)
    return labels, scores


def validation_scores(config, model, cases):
    """`val_dice` (mean of the regions) and `val_dice_<region>` on the whole validation volumes.

    The same path as `evaluate` (sliding window on the whole volume, regions merged into labels
    and scored per case, then averaged), without writing files or computing HD95: what
    `PeriodicValidation` logs during training.
    """
    from tfseg.metrics import mean_region_scores

    network = segmentation_network(model)
    per_case = []
    for case in cases:
        if case.label is None:
            continue
        image, reference = read_case_image(case)
        per_case.append(case_scores(config, network, case, image, reference, with_hd95=False)[1])
    if not per_case:
        return {}
    means = mean_region_scores(per_case)
    scores = {f"val_dice_{region.lower()}": _float(means, "dice", region) for region in REGION_NAMES}
    return headline_metrics(scores, REGION_NAMES, scores=("dice",))


def evaluate(config, model, cases, data=None, train_seconds=None):
    """Infer every validation case on the whole volume; write NIfTI label maps and overlays; score them.

    Writes `<output_dir>/predictions/<case>_seg.nii.gz` (BraTS labels 1/2/4 on the input's affine)
    and `<output_dir>/overlays/<case>.png` (three planes: truth and prediction over FLAIR).

    Returns:
        The metrics dict: mean Dice and HD95 (mm) per region, per-case scores, timings.
    """
    from tfseg.io.nifti import read_nifti, write_nifti
    from tfseg.metrics import mean_region_scores
    from tfseg.utils.paths import output_path
    from tfseg.viz.overlays import three_plane_overlay

    network = segmentation_network(model)
    predictions = os.path.join(config.output_dir, "predictions")
    overlays = os.path.join(config.output_dir, "overlays")
    per_case, seconds = {}, []
    cases = cases if data is None else data.problems.usable(cases)  # cases with a bad file were skipped
    for case in cases:
        start = time.perf_counter()
        image, reference = read_case_image(case)
        labels, scores = case_scores(config, network, case, image, reference)
        seconds.append(time.perf_counter() - start)
        write_nifti(output_path(predictions, case.case_id, "_seg.nii.gz"), labels, reference.affine,
                    header=reference.header, dtype=np.uint8)
        if scores is None:
            continue
        per_case[case.case_id] = scores
        if config.inference.overlays:
            truth = read_nifti(case.label).array
            three_plane_overlay(image, output_path(overlays, case.case_id, ".png"), labels=truth,
                                prediction=labels, spacing=reference.spacing, title=case.case_id)
    metrics = {"val_cases": len(cases), "infer_seconds_per_case": round(float(np.mean(seconds)), 2) if seconds else None,
               "model": config.model.name, "params": int(model.count_params()), "epochs": config.train.epochs}
    if per_case:
        means = mean_region_scores(list(per_case.values()))
        for region in REGION_NAMES:
            for score in ("dice", "iou", "precision", "recall", "hd95"):
                value = _float(means, score, region)
                if value is not None or score in ("dice", "hd95"):
                    metrics[f"val_{score}_{region.lower()}"] = value
        metrics["per_case"] = {case: {region: {k: (round(float(v), 4) if np.isfinite(v) else None)
                                                for k, v in scores.items()} for region, scores in regions.items()}
                               for case, regions in per_case.items()}
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    if data is not None:
        metrics.update(train_cases=len(data.problems.usable(data.train)), skipped_records=len(data.problems),
                       skipped_files=data.problems.records(), synthetic_data=data.synthetic)
    return headline_metrics(metrics, REGION_NAMES)


def _float(means, score, region):
    value = means.get(region, {}).get(score)
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def export(config, model, metrics):
    """Write `model.keras` (training model), `saved_model/` (segmentation path only), `metrics.json`, `config.json`."""
    from tfseg.export.savedmodel import ServingSpec
    from tfseg.workflows.outputs import write_run_outputs

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
    train_ds, val_ds = make_datasets(config, data, dist)
    model = build(config, dist)
    history, seconds = train(config, model, train_ds, val_ds, dist=dist, val_cases=data.val)
    if not dist.is_chief:  # evaluation writes prediction files: the chief's job
        return None
    best = use_best_epoch(model, history, config.output_dir, monitor="val_dice")
    metrics = {**evaluate(config, model, data.val, data, seconds), **best}
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


def adjust_config(config, explicit=()):
    """Sizes that follow the data: with a user's dataset and no size chosen, plan them from its fingerprint.

    Given `data.datalist` or `data.data_dir` (not the synthetic default), the dataset is
    fingerprinted (`tfseg.datasets.fingerprint`: shapes, brain and tumour boxes) and
    `tfseg.datasets.settings.suggest_settings` picks, within `train.memory_mb`, the training crop
    (as large as fits, covering at least the median tumour box), the batch size, the network depth
    that fits the crop, and the crops per case that cover each brain once per epoch. A field the
    user set (`--crop-size`, `--batch-size`, `--paper`, the config file) is kept. The choices and
    the reasons are logged.
    """
    data = config.data
    if data.datalist is None and data.data_dir is None:
        return config
    wanted = ("data.crop_size", "train.batch_size", "model.blocks_down", "data.crops_per_case")
    if all(key in explicit for key in wanted) or "data.crop_size" in explicit:
        return config
    from tfseg.datasets.fingerprint import fingerprint
    from tfseg.datasets.settings import suggest_settings
    from tfseg.training.config import override

    found = fingerprint(data.datalist or data.data_dir, intensity_cases=8, workers=2)
    vae = 1 if config.model.name == "segresnet_vae" else 0  # the VAE branch halves the encoder's end once more
    settings = suggest_settings(found, memory_budget_bytes=int(config.train.memory_mb) * 2 ** 20, spatial_dims=3,
                                channels=4, init_filters=int(config.model.init_filters),
                                max_levels=len(config.model.blocks_down) + vae)
    updates = {"data.crop_size": tuple(settings.crop)}
    if "train.batch_size" not in explicit:
        updates["train.batch_size"] = settings.batch_size
    levels = settings.levels - vae
    if "model.blocks_down" not in explicit and levels < len(config.model.blocks_down):
        updates["model.blocks_down"] = tuple(config.model.blocks_down)[:levels]
        updates["model.blocks_up"] = tuple(config.model.blocks_up)[:levels - 1]
    if "data.crops_per_case" not in explicit:
        train_items = max(1, round(found.num_items * (1 - data.val_fraction))) if data.datalist is None else None
        per_case = settings.steps_per_epoch * updates.get("train.batch_size", config.train.batch_size)
        updates["data.crops_per_case"] = max(1, -(-per_case // (train_items or max(1, found.num_items))))
    logger.info("sizes planned from the dataset (%d cases) within %d MB:\n%s", found.num_items,
                config.train.memory_mb, settings.describe())
    return override(config, updates)


def add_arguments(parser, defaults):
    """The workflow's own flags (the shared ones come from `tfseg.workflows.entry`)."""
    parser.add_argument("--datalist", help="Clara/Decathlon datalist JSON with training/validation sections")
    parser.add_argument("--base-dir", help="folder the datalist's relative paths are resolved against")
    parser.add_argument("--data-dir", help="a BraTS 2018-2021 release folder (split by patient)")
    parser.add_argument("--crop-size", type=int, nargs=3, metavar=("D", "H", "W"),
                        help=f"training crop, slices x rows x columns ({defaults.data.crop_size})")
    parser.add_argument("--init-filters", type=int, help=f"filters of the first level ({defaults.model.init_filters})")
    parser.add_argument("--weights", "--pretrained", dest="weights", help="a .keras or .weights.h5 file to fine-tune")
    parser.add_argument("--freeze-epochs", "--freeze-encoder-epochs", dest="freeze_epochs", type=int,
                        help="with --weights: train the decoder only for this many epochs first")
    parser.add_argument("--no-vae", action="store_true", help="train plain SegResNet (no VAE branch)")
    parser.add_argument("--tta", action="store_true", default=None, help="mirror test-time augmentation")
    return parser


def flag_overrides(args):
    """Dotted-path config updates of the workflow's own flags."""
    return {"data.datalist": args.datalist, "data.base_dir": args.base_dir, "data.data_dir": args.data_dir,
            "data.crop_size": list(args.crop_size) if args.crop_size else None,
            "model.init_filters": args.init_filters, "model.weights": args.weights,
            "model.freeze_epochs": args.freeze_epochs, "model.name": "segresnet" if args.no_vae else None,
            "inference.tta": args.tta}
