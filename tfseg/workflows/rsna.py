"""MGMT promoter methylation from brain MR series, in two stages (workflow W5, RSNA-MICCAI 2021), step by step.

Stage 1 segments: UNet++ (DenseNet121 encoder) trained on BraTS task-1 volumes, on single-series
slices pooled over the four MRI types, each fed as 3 identical channels, with WT and ET sigmoid
outputs and the encoder frozen for the first epochs (`tfseg.workflows.brats_slices` does the
training; `tfseg.data.slices.single_series_slices` pools the slices). Stage 2 classifies: every
task-2 series of a patient goes through the stage-1 model; the slices whose predicted tumour
covers more than 2.5% of the brain in at most 5 separate regions are kept, each as [image, WT,
ET]; chunks of consecutive kept slices (35, every 5) go to a CNN + BiLSTM classifier
(`tfseg.models.sequence`), one per MRI type, trained after a warm-up; a patient's probability is
the mean over its chunks (with zoom-in TTA), averaged over the MRI types.

    config = CPU_DEFAULTS                                         # or RsnaConfig(): the seed's sizes
    stage1 = train_stage1(config)                                 # model, serving function, patients used
    patients = find_data(config, stage1.patients)                 # task-2 records, split by patient
    chunks = prepare(config, patients, stage1.serve)              # chunks per MRI type and split
    models = {}
    for mri_type, (train_ds, val_ds) in make_datasets(config, chunks).items():
        models[mri_type] = build(config)
        train(config, models[mri_type], train_ds, val_ds, mri_type=mri_type)
    metrics, rows = evaluate(config, models, chunks)              # chunk_auc, patient_auc
    write_submission(config, models, chunks)                      # submission.csv
    export(config, models, metrics, rows=rows)                    # a SavedModel per stage

The workflow follows `tfseg.workflows.protocol` (`tfseg train rsna`, `recipes/rsna_two_stage.py`);
its `find_data`, `make_datasets`, `train`, `evaluate` and `export` work on the stage-2 data, one
model per MRI type.

Metrics: `chunk_auc` is the ROC AUC over every validation chunk (each with its patient's label,
all MRI types pooled); `patient_auc` is the ROC AUC over validation patients of the patient
probability (mean of the per-type patient means). `chunk_auc_<type>` and `patient_auc_<type>`
give the same per MRI type.

Example:
    >>> RsnaConfig().sequence.chunk_length, RsnaConfig().stage1.model.encoder
    (35, 'densenet121')
"""
import dataclasses
import logging
import os

import numpy as np

from tfseg.datasets.rsna import MRI_TYPES
from tfseg.training.config import choice
from tfseg.workflows import sections
from tfseg.workflows.brats_slices import ModelSection as SegmenterModel
from tfseg.workflows.brats_slices import SliceSection, SlicesConfig, SlicesSource
from tfseg.workflows.brats_slices import TrainSection as SegmenterTrain

logger = logging.getLogger(__name__)

#: `--paper`: the seed's sizes (224x224, ImageNet weights, 10 frozen epochs then > 180 for stage 1;
#: chunks of 35 slices every 5, 5 warm-up epochs for stage 2).
PAPER = {
    "stage1.slices.image_size": 224, "stage1.slices.planes": ["axial", "coronal", "sagittal"],
    "stage1.model.encoder": "densenet121", "stage1.model.weights": "imagenet", "stage1.model.freeze_epochs": 10,
    "stage1.model.options": {}, "stage1.slices.min_ratio": 0.01,
    "stage1.train.epochs": 200, "stage1.train.batch_size": 16, "stage1.train.learning_rate": 1e-4,
    "sequence.image_size": 224, "sequence.chunk_length": 35, "sequence.chunk_stride": 5,
    "model.encoder": "resnet50v2", "model.weights": "imagenet", "model.freeze_epochs": 5, "model.options": {},
    "train.epochs": 30, "train.warmup_epochs": 5, "train.batch_size": 4, "train.learning_rate": 1e-4,
}


def _stage1_default():
    return SlicesConfig(data=SlicesSource(modalities=("t1", "t1ce", "t2", "flair")),
                        slices=SliceSection(), model=SegmenterModel(), train=SegmenterTrain(epochs=200))


@dataclasses.dataclass
class Stage2Data:
    """The task-2 data: `<data_dir>/train/<id>/<type>/*.dcm`, `<data_dir>/train_labels.csv`, `<data_dir>/test/`.

    Attributes:
        data_dir: the competition folder (default: a synthetic one in `<output_dir>/synthetic_data/rsna`).
        synthetic_train, synthetic_test: labelled / unlabelled synthetic patients.
        synthetic_shape: (x, y, z) of the synthetic series.
        synthetic_overlap: synthetic patients whose ids are also stage-1 BraTS cases.
        mri_types: the series used, one classifier each.
        val_fraction: patients held out for validation (20% in the seed).
        drop_stage1_patients: leave out the patients whose BraTS case trained (or validated) stage 1.
        shuffle_labels: permute the labels among patients (a control run: AUC should be about 0.5).
        on_error: "skip" or "raise" for a bad patient or series.
    """

    data_dir: str | None = None
    synthetic_train: int = 60
    synthetic_test: int = 4
    synthetic_shape: tuple[int, ...] = (64, 64, 32)
    synthetic_overlap: int = 2
    mri_types: tuple[str, ...] = MRI_TYPES
    val_fraction: float = 0.2
    drop_stage1_patients: bool = True
    shuffle_labels: bool = False
    on_error: str = choice("skip", ("skip", "raise"))


@dataclasses.dataclass
class SequenceSection:
    """From a series to chunks: slice filter, [image, WT, ET] channels, size, chunking, TTA.

    Attributes:
        image_size: side the slices are resized to.
        min_ratio: keep slices whose predicted WT/brain area ratio exceeds this.
        max_contours: keep slices with at most this many separate predicted WT regions.
        chunk_length, chunk_stride: slices per chunk and the step between chunks.
        chunk_policy, pad_mode: the end of the stack (`tfseg.data.sequences.CHUNK_POLICIES`, `PAD_MODES`).
        normalize_percentile, normalize_level: the series' intensity scaling (`normalize_series`).
        tta_zoom: zoom-in test-time augmentation factor (1: none).
    """

    image_size: int = 224
    min_ratio: float = 0.025
    max_contours: int = 5
    chunk_length: int = 35
    chunk_stride: int = 5
    chunk_policy: str = choice("shift", ("shift", "pad", "drop"))
    pad_mode: str = choice("edge", ("edge", "zero"))
    normalize_percentile: float = 50.0
    normalize_level: float = 0.25
    tta_zoom: float = 1.2


@dataclasses.dataclass
class ClassifierSection(sections.ModelSection):
    """The slice-sequence classifier (`tfseg.models.sequence.slice_sequence_classifier`).

    `encoder` is its per-slice backbone (a keras.applications name, "resnet18"/"resnet34" or
    "small_cnn"); `freeze_epochs` keeps a pretrained backbone frozen for the first epochs;
    `options` holds `lstm_units`, `dropout`, `backbone_filters`.
    """

    name: str = "slice_sequence_classifier"
    encoder: str | None = "resnet50v2"
    freeze_epochs: int = 5


@dataclasses.dataclass
class ClassifierTrain(sections.TrainSection):
    """Adam on binary cross-entropy (logits), a linear learning-rate warm-up, then cosine decay.

    Attributes:
        warmup_epochs: epochs of the warm-up (5 in the seed): the rate rises from a tenth of
            `learning_rate`; the backbone is frozen meanwhile with pretrained weights
            (`model.freeze_epochs`).
        augment: random left-right flips of whole chunks.
    """

    epochs: int = 30
    batch_size: int = 4
    learning_rate: float = 1e-4
    lr_schedule: str = choice("cosine", ("cosine",))
    loss: str = choice("bce", ("bce",))
    warmup_epochs: int = 5
    augment: bool = True


@dataclasses.dataclass
class RsnaConfig:
    """The whole two-stage run; every field has a default."""

    stage1: SlicesConfig = dataclasses.field(default_factory=_stage1_default)
    data: Stage2Data = dataclasses.field(default_factory=Stage2Data)
    sequence: SequenceSection = dataclasses.field(default_factory=SequenceSection)
    model: ClassifierSection = dataclasses.field(default_factory=ClassifierSection)
    train: ClassifierTrain = dataclasses.field(default_factory=ClassifierTrain)
    output_dir: str = "runs/rsna_two_stage"
    resume: bool = False
    distribute: str = choice("none", ("none",))


CONFIG_CLASS = RsnaConfig
#: The model outputs: one probability of MGMT promoter methylation.
CLASS_NAMES = ("MGMT_methylated",)

#: The built-in CPU defaults: stage 1 is UNet++ with a ResNet18 encoder (random weights, narrow
#: decoder; DenseNet121's 426 layers alone take minutes to trace on a shared 2-core machine,
#: `--paper` uses it) on axial single-series slices of 48x48x24 volumes resized to 64x64; stage 2
#: keeps 48x48 slices in chunks of 8 every 2 and a small CNN backbone under the BiLSTM(64).
CPU_DEFAULTS = RsnaConfig(
    stage1=SlicesConfig(
        data=SlicesSource(synthetic_cases=10, synthetic_shape=(48, 48, 24), modalities=("t1", "t1ce", "t2", "flair"),
                        val_fraction=0.2, test_fraction=0.0),
        slices=SliceSection(planes=("axial",), image_size=64),
        model=SegmenterModel(encoder="resnet18", options={"decoder_filters": [32, 32, 16, 16, 8]}),
        train=SegmenterTrain(epochs=5, batch_size=16, learning_rate=1e-3)),
    data=Stage2Data(synthetic_train=60, synthetic_test=4, synthetic_shape=(48, 48, 24), val_fraction=0.3),
    sequence=SequenceSection(image_size=48, chunk_length=8, chunk_stride=2),
    model=ClassifierSection(encoder="small_cnn", options={"backbone_filters": [16, 32, 64]}),
    train=ClassifierTrain(epochs=15, warmup_epochs=3, batch_size=8, learning_rate=1e-3),
    output_dir="runs/rsna_two_stage",
)


@dataclasses.dataclass
class Stage1Result:
    """The trained segmenter, its serving function `fn(images (N, H, W, 3)) -> {"probabilities"}`,
    the BraTS case ids it saw, its metrics and whether its data were synthetic."""

    model: object
    serve: object
    patients: list
    metrics: dict
    synthetic: bool


@dataclasses.dataclass
class Stage2Patients:
    """Task-2 patients: training, validation and unlabelled (submission) records, and the problems met."""

    train: list
    val: list
    test: list
    problems: object
    synthetic: bool


# --------------------------------------------------------------------------------------------
# Stage 1.
# --------------------------------------------------------------------------------------------

def stage1_config(config):
    """The stage-1 `SlicesConfig`: outputs in `<output_dir>/stage1`, synthetic BraTS in `<output_dir>/synthetic_data`."""
    s1 = config.stage1
    data = s1.data
    if data.data_dir is None and data.synthetic_dir is None:
        data = dataclasses.replace(data, synthetic_dir=os.path.join(config.output_dir, "synthetic_data", "brats"))
    return dataclasses.replace(s1, data=data, output_dir=os.path.join(config.output_dir, "stage1"),
                               resume=config.resume or s1.resume, distribute="none")


def train_stage1(config):
    """Train (or, with `resume`, finish) the stage-1 segmenter on pooled single-series slices; export it.

    Returns:
        A `Stage1Result`.
    """
    from tfseg.data.slices import single_series_slices
    from tfseg.export.savedmodel import serving_callable
    from tfseg.training.distributed import workflow_distribution
    from tfseg.workflows import brats_slices as bs
    from tfseg.workflows.outputs import use_best_epoch

    s1 = stage1_config(config)
    dist = workflow_distribution("none")
    cases = bs.find_data(s1)
    train, val = bs.extract(s1, cases)
    train, val = single_series_slices(train), single_series_slices(val)
    logger.info("stage 1: %d training and %d validation single-series slices", len(train), len(val))
    train_ds, val_ds = bs.make_datasets(s1, train, val, dist)
    model = bs.build(s1, dist)
    history, seconds = bs.train(s1, model, train_ds, val_ds, dist, val_slices=val)
    best = use_best_epoch(model, history, s1.output_dir, monitor="val_dice")
    metrics = {**bs.evaluate(s1, model, val, seconds), **best}
    metrics.update(train_slices=len(train), train_cases=len(cases.train), val_cases=len(cases.val),
                   input="single series, 3 identical channels", synthetic_data=cases.synthetic)
    bs.export(s1, model, metrics, dist)
    used = [c.case_id for c in cases.train + cases.val]
    return Stage1Result(model, serving_callable(model, bs.serving_spec(s1)), used, metrics, cases.synthetic)


# --------------------------------------------------------------------------------------------
# Stage-2 data.
# --------------------------------------------------------------------------------------------

def find_data(config, stage1_cases=()):
    """The task-2 patients, split by patient after leaving out those stage 1 saw (`data.drop_stage1_patients`).

    With `data.shuffle_labels`, the labels are permuted among the labelled patients first (seeded).

    Returns:
        A `Stage2Patients`.
    """
    from tfseg.datasets.rsna import RsnaPatient, check_disjoint, find_rsna, split_patients
    from tfseg.datasets.synthetic_rsna import ensure_rsna
    from tfseg.utils.problems import ProblemLog

    data = config.data
    problems = ProblemLog(data.on_error)
    synthetic = data.data_dir is None
    if synthetic:
        first_id = max(0, config.stage1.data.synthetic_cases - data.synthetic_overlap)
        written = ensure_rsna(os.path.join(config.output_dir, "synthetic_data", "rsna"), num_train=data.synthetic_train,
                              num_test=data.synthetic_test, shape=tuple(data.synthetic_shape), seed=config.train.seed,
                              first_id=first_id)
        root = written.root
    else:
        root = data.data_dir
    mri_types = tuple(data.mri_types)
    labelled = find_rsna(os.path.join(root, "train"), os.path.join(root, "train_labels.csv"), mri_types,
                         data.on_error, problems)
    test_dir = os.path.join(root, "test")
    test = find_rsna(test_dir, None, mri_types, data.on_error, problems) if os.path.isdir(test_dir) and any(
        n.isdigit() for n in os.listdir(test_dir)) else []
    if data.shuffle_labels:
        labels = np.random.default_rng([config.train.seed, 99]).permutation([p.label for p in labelled])
        labelled = [RsnaPatient(p.patient, p.series, int(v)) for p, v in zip(labelled, labels)]
        logger.warning("control run: the MGMT labels are shuffled among the %d patients", len(labelled))
    exclude = list(stage1_cases) if data.drop_stage1_patients else []
    train, val = split_patients(labelled, data.val_fraction, config.train.seed, exclude=exclude)
    check_disjoint(train=train, val=val, test=test)
    logger.info("stage 2: %d training, %d validation and %d unlabelled patients", len(train), len(val), len(test))
    return Stage2Patients(train, val, test, problems, synthetic)


def series_chunks(config, volume, serve, where="series"):
    """One series `(N, H, W)` to its chunks `(K, T, S, S, 3)` of [image, WT, ET] slices.

    The series goes through the stage-1 model slice by slice (as 3 identical channels); the slices
    `keep_tumour_slices` keeps are chunked. When no slice passes the filter, the `chunk_length`
    slices of largest predicted tumour area are used instead (logged), so every series gives at
    least one chunk.

    Returns:
        `(chunks, kept)`: the chunks and the number of slices the filter kept.
    """
    from tfseg.data.sequences import keep_tumour_slices, make_chunks, normalize_series, resize_slices, stack_channels

    seq = config.sequence
    volume = np.asarray(volume, np.float32)
    probabilities = np.concatenate([serve(np.repeat(volume[k:k + 32, ..., None], 3, axis=-1))["probabilities"]
                                    for k in range(0, len(volume), 32)])
    wt, et = probabilities[..., 0], probabilities[..., 1]
    keep = keep_tumour_slices(volume, wt, seq.min_ratio, seq.max_contours)
    kept = len(keep)
    if not kept:
        area = (wt > 0.5).sum(axis=(1, 2))
        keep = np.sort(np.argsort(-area, kind="stable")[:seq.chunk_length])
        logger.info("%s: no slice passed the tumour filter; using the %d slices of largest predicted tumour",
                    where, len(keep))
    image = normalize_series(volume, seq.normalize_percentile, seq.normalize_level)
    stack = resize_slices(stack_channels(image[keep], wt[keep], et[keep]), seq.image_size)
    return make_chunks(stack, seq.chunk_length, seq.chunk_stride, seq.chunk_policy, seq.pad_mode), kept


@dataclasses.dataclass
class ChunkSet:
    """The chunks of one MRI type and split: `x (K, T, S, S, 3)`, the patient of each chunk, its label (or -1)."""

    x: np.ndarray
    patients: list
    labels: np.ndarray


def prepare(config, patients, serve):
    """Chunks of every patient, MRI type and split: `{mri_type: {"train"|"val"|"test": ChunkSet}}`.

    Patients whose series cannot be read are skipped or raise (`data.on_error`).
    """
    from tfseg.datasets.rsna import read_patient_series
    from tfseg.errors import DataError

    seq = config.sequence
    empty = np.zeros((0, seq.chunk_length, seq.image_size, seq.image_size, 3), np.float32)
    data, kept_slices = {}, []
    for mri_type in config.data.mri_types:
        data[mri_type] = {}
        for split in ("train", "val", "test"):
            xs, ids, labels = [], [], []
            for patient in getattr(patients, split):
                try:
                    volume = read_patient_series(patient, mri_type, on_error=config.data.on_error)
                except DataError as error:
                    patients.problems.report_error(error)
                    continue
                chunks, kept = series_chunks(config, volume, serve, f"{patient.patient}/{mri_type}")
                kept_slices.append(kept)
                xs.append(chunks)
                ids += [patient.patient] * len(chunks)
                labels += [-1 if patient.label is None else patient.label] * len(chunks)
            data[mri_type][split] = ChunkSet(np.concatenate(xs) if xs else empty, ids, np.asarray(labels, np.int64))
        logger.info("%s: %s chunks", mri_type, ", ".join(f"{len(s.patients)} {k}" for k, s in data[mri_type].items()))
    logger.info("slices kept by the tumour filter per series: median %s", np.median(kept_slices) if kept_slices else 0)
    return data


# --------------------------------------------------------------------------------------------
# Stage-2 training and inference.
# --------------------------------------------------------------------------------------------

def build(config, dist=None):
    """The slice-sequence classifier of `config.model` for chunks of `config.sequence`'s size (logits out)."""
    from tfseg.models import build_model

    seq = config.sequence
    return build_model({"name": config.model.name,
                        "input_shape": (seq.chunk_length, seq.image_size, seq.image_size, 3),
                        "backbone": config.model.encoder, "weights": config.model.weights, **config.model.options})


def chunk_dataset(chunks, batch_size, training, seed=0, augment=True):
    """`tf.data` of `(chunk, label (1,))` batches; training shuffles and flips whole chunks left-right."""
    import tensorflow as tf

    labels = chunks.labels.astype(np.float32)[:, None]
    ds = tf.data.Dataset.from_tensor_slices((chunks.x, labels))
    if training:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        if augment:
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

            def flip(pair, pair_seed):
                x, y = pair
                flipped = tf.random.stateless_uniform((), tf.cast(pair_seed, tf.int32)) < 0.5
                return tf.cond(flipped, lambda: tf.reverse(x, axis=[2]), lambda: x), y

            ds = tf.data.Dataset.zip((ds, seeds)).map(flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_datasets(config, chunks, dist=None):
    """`{mri_type: (train_ds, val_ds)}`: training chunks shuffled and flipped, validation chunks in order.

    `val_ds` is None when the validation chunks lack one of the labels.

    Raises:
        ConfigError: the training chunks of an MRI type lack one of the labels.
    """
    from tfseg.errors import ConfigError

    cfg = config.train
    datasets = {}
    for mri_type in config.data.mri_types:
        train_set, val_set = chunks[mri_type]["train"], chunks[mri_type]["val"]
        if not len(train_set.labels) or len(set(train_set.labels.tolist())) < 2:
            raise ConfigError(f"{mri_type}: the training chunks need both labels (got {len(train_set.labels)} "
                              "chunks); check the data and the tumour filter (sequence.min_ratio)")
        has_val = len(set(val_set.labels.tolist())) == 2
        datasets[mri_type] = (chunk_dataset(train_set, cfg.batch_size, True, cfg.seed, cfg.augment),
                              chunk_dataset(val_set, cfg.batch_size, False) if has_val else None)
    return datasets


def train(config, model, train_ds, val_ds, dist=None, mri_type="FLAIR"):
    """Train the classifier of one MRI type (validation AUC monitored); returns `(history, seconds)`.

    The learning rate rises linearly from a tenth of `train.learning_rate` over the warm-up
    epochs, then decays (cosine) to a tenth; with pretrained backbone weights the backbone is
    also frozen for `model.freeze_epochs` (`fit_phases`). Outputs go to `<output_dir>/stage2/<type>`.
    """
    import keras

    from tfseg.models.encoder import set_encoder_trainable
    from tfseg.training.determinism import seed_run
    from tfseg.training.distributed import workflow_distribution
    from tfseg.training.phases import fit_phases

    seed_run(config.train.seed, config.train.deterministic)
    cfg = config.train
    steps = max(1, int(train_ds.cardinality()))
    warm = min(cfg.warmup_epochs, cfg.epochs)
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate * 0.1, decay_steps=max(1, (cfg.epochs - warm) * steps), alpha=0.1,
        warmup_target=cfg.learning_rate, warmup_steps=warm * steps)
    freeze = config.model.freeze_epochs if config.model.weights else 0
    return fit_phases(dist or workflow_distribution("none"), model, keras.losses.BinaryCrossentropy(from_logits=True),
                      keras.optimizers.Adam(schedule), [keras.metrics.AUC(from_logits=True, name="auc")], train_ds,
                      val_ds, epochs=cfg.epochs, output_dir=os.path.join(config.output_dir, "stage2", mri_type),
                      monitor="val_auc" if val_ds is not None else "auc", freeze_epochs=freeze,
                      set_encoder_trainable=set_encoder_trainable, resume=config.resume, verbose=cfg.verbose)


def predict_chunks(config, model, x):
    """Chunk probabilities: the sigmoid of the logits, averaged with those of the zoomed-in chunks (TTA)."""
    from tfseg.data.sequences import zoom_in
    from tfseg.models.sequence import probability_model

    if not len(x):
        return np.zeros(0, np.float32)
    serve = probability_model(model)
    batch = max(1, config.train.batch_size)
    probabilities = serve.predict(x, batch_size=batch, verbose=0)[:, 0]
    if config.sequence.tta_zoom > 1.0:
        zoomed = serve.predict(zoom_in(x, config.sequence.tta_zoom), batch_size=batch, verbose=0)[:, 0]
        probabilities = (probabilities + zoomed) / 2.0
    return probabilities


def patient_probabilities(config, models, data, split):
    """`({mri_type: chunk probabilities}, {patient: probability})` of a split; a patient's probability is the
    mean over the MRI types of the mean of its chunks."""
    from tfseg.inference.aggregate import mean_by_group

    chunk_probs, per_type = {}, {}
    for mri_type, model in models.items():
        chunks = data[mri_type][split]
        chunk_probs[mri_type] = predict_chunks(config, model, chunks.x)
        per_type[mri_type] = mean_by_group(chunk_probs[mri_type], chunks.patients)
    patients = sorted({p for means in per_type.values() for p in means})
    combined = {p: float(np.mean([m[p] for m in per_type.values() if p in m])) for p in patients}
    return chunk_probs, per_type, combined


def _auc(labels, scores, what):
    from tfseg.metrics import roc_auc

    labels = np.asarray(labels)
    if labels.size == 0 or len(set(labels.tolist())) < 2:
        logger.warning("%s: undefined (the validation set lacks one of the labels)", what)
        return None
    return round(roc_auc(labels, scores), 4)


def evaluate(config, models, data):
    """Validation chunk-level and patient-level ROC AUC, overall and per MRI type.

    Returns:
        `(metrics, rows)`: the metrics dict and one `(patient, label, probability per type...,
        probability)` row per validation patient.
    """
    chunk_probs, per_type, combined = patient_probabilities(config, models, data, "val")
    truth = {}
    for mri_type in models:
        truth.update(zip(data[mri_type]["val"].patients, data[mri_type]["val"].labels.tolist()))
    metrics = {}
    for mri_type in models:
        chunks = data[mri_type]["val"]
        metrics[f"chunk_auc_{mri_type}"] = _auc(chunks.labels, chunk_probs[mri_type], f"chunk AUC of {mri_type}")
        means = per_type[mri_type]
        metrics[f"patient_auc_{mri_type}"] = _auc([truth[p] for p in means], list(means.values()),
                                                  f"patient AUC of {mri_type}")
    all_labels = np.concatenate([data[t]["val"].labels for t in models])
    metrics["chunk_auc"] = _auc(all_labels, np.concatenate([chunk_probs[t] for t in models]), "chunk AUC")
    metrics["patient_auc"] = _auc([truth[p] for p in combined], list(combined.values()), "patient AUC")
    metrics["val_patients"] = len(combined)
    metrics["val_chunks"] = int(all_labels.size)
    rows = [(p, truth[p], *[per_type[t].get(p, "") for t in models], combined[p]) for p in combined]
    return metrics, rows


def write_submission(config, models, data):
    """`<output_dir>/submission.csv` (`BraTS21ID,MGMT_value`) for the unlabelled patients; returns its path."""
    from tfseg.utils.atomic import atomic_write_text

    _, _, combined = patient_probabilities(config, models, data, "test")
    path = os.path.join(config.output_dir, "submission.csv")
    atomic_write_text(path, "BraTS21ID,MGMT_value\n" + "".join(f"{p},{v:.6f}\n" for p, v in combined.items()))
    logger.info("wrote %s (%d patients)", path, len(combined))
    return path


def export_classifier(config, model, path):
    """A SavedModel of the probability model: `serving_default` takes `(B, T, S, S, 3)` chunks, gives `probability`."""
    import keras
    import tensorflow as tf

    from tfseg.export.savedmodel import replace_directory
    from tfseg.models.sequence import probability_model

    seq = config.sequence
    serve = probability_model(model)
    archive = keras.export.ExportArchive()
    archive.track(serve)
    spec = tf.TensorSpec((None, seq.chunk_length, seq.image_size, seq.image_size, 3), tf.float32, name="chunks")
    archive.add_endpoint(name="serving_default", fn=lambda x: {"probability": serve(x, training=False)},
                         input_signature=[spec])
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    import tempfile

    staging = tempfile.mkdtemp(prefix=".tmp-export-", dir=parent)
    archive.write_out(staging, verbose=False)
    replace_directory(staging, os.path.abspath(path))
    return path


def export(config, models, metrics, dist=None, rows=()):
    """Write `stage2/<type>/model.keras` and `saved_model/`, `val_predictions.csv`, `metrics.json`, `config.json`."""
    from tfseg.training.config import to_dict
    from tfseg.utils.atomic import atomic_save_model, atomic_write_json, atomic_write_text

    for mri_type, model in models.items():
        folder = os.path.join(config.output_dir, "stage2", mri_type)
        os.makedirs(folder, exist_ok=True)
        atomic_save_model(model, os.path.join(folder, "model.keras"))
        export_classifier(config, model, os.path.join(folder, "saved_model"))
    header = ",".join(["BraTS21ID", "MGMT_value", *[f"p_{t}" for t in models], "probability"])
    lines = [",".join(str(round(v, 6)) if isinstance(v, float) else str(v) for v in row) for row in rows]
    atomic_write_text(os.path.join(config.output_dir, "val_predictions.csv"), "\n".join([header, *lines]) + "\n")
    atomic_write_json(os.path.join(config.output_dir, "metrics.json"), metrics)
    atomic_write_json(os.path.join(config.output_dir, "config.json"), to_dict(config))


def run(config):
    """Both stages, in order; returns the metrics written to `metrics.json`."""
    import time

    started = time.perf_counter()
    stage1 = train_stage1(config)
    patients = find_data(config, stage1.patients)
    data = prepare(config, patients, stage1.serve)
    models = {}
    train_started = time.perf_counter()
    for mri_type, (train_ds, val_ds) in make_datasets(config, data).items():
        models[mri_type] = build(config)
        train(config, models[mri_type], train_ds, val_ds, mri_type=mri_type)
    train_seconds = time.perf_counter() - train_started
    metrics, rows = evaluate(config, models, data)
    if patients.test:
        write_submission(config, models, data)
    metrics.update({f"stage1_{k}": v for k, v in stage1.metrics.items() if k.startswith("val_")})
    metrics.update(train_patients=len(patients.train), test_patients=len(patients.test),
                   train_chunks=int(sum(len(data[t]["train"].labels) for t in models)),
                   stage2_train_seconds=round(train_seconds, 1), shuffled_labels=config.data.shuffle_labels,
                   synthetic_data=patients.synthetic, skipped_records=len(patients.problems),
                   wall_seconds=round(time.perf_counter() - started, 1))
    export(config, models, metrics, rows=rows)
    return metrics


def summary_table(metrics):
    """Patient- and chunk-level AUC, per MRI type and overall, and the stage-1 Dice."""
    from tfseg.reports import format_rows

    def show(value):
        return "n/a" if value is None else f"{value:.4f}"

    rows = [("stage 1 Dice WT / ET", f"{metrics.get('stage1_val_dice_wt', 0):.4f} / "
                                      f"{metrics.get('stage1_val_dice_et', 0):.4f}")]
    for key in sorted(k for k in metrics if k.startswith("patient_auc_")):
        mri_type = key[len("patient_auc_"):]
        rows.append((f"{mri_type}: patient / chunk AUC", f"{show(metrics[key])} / "
                                                        f"{show(metrics.get(f'chunk_auc_{mri_type}'))}"))
    rows += [("patient AUC (mean of types)", show(metrics.get("patient_auc"))),
             ("chunk AUC (all types)", show(metrics.get("chunk_auc"))),
             ("validation patients / chunks", f"{metrics['val_patients']} / {metrics['val_chunks']}"),
             ("wall time", f"{metrics.get('wall_seconds', 0):.0f} s")]
    return format_rows(rows, footer="labels shuffled (control run)" if metrics.get("shuffled_labels") else None)


def add_arguments(parser, defaults):
    """The workflow's own flags (the shared ones come from `tfseg.workflows.entry`; `--epochs`,
    `--batch-size` and `--learning-rate` set stage 2)."""
    parser.add_argument("--warmup-epochs", type=int, help=f"stage-2 warm-up epochs ({defaults.train.warmup_epochs})")
    parser.add_argument("--stage1-epochs", type=int, help=f"stage-1 epochs ({defaults.stage1.train.epochs})")
    parser.add_argument("--brats-dir", help="stage 1: a BraTS 2021 task-1 folder (default: synthetic)")
    parser.add_argument("--data-dir", help="stage 2: the RSNA-MICCAI folder with train/, train_labels.csv and "
                                           "test/ (default: synthetic)")
    parser.add_argument("--mri-types", nargs="+", choices=MRI_TYPES, help="series used, one classifier each")
    parser.add_argument("--backbone", help=f"slice backbone ({defaults.model.encoder})")
    parser.add_argument("--weights", help="'imagenet' or a weights file for the slice backbone")
    parser.add_argument("--chunk-length", type=int, help=f"slices per chunk ({defaults.sequence.chunk_length})")
    parser.add_argument("--chunk-stride", type=int, help=f"step between chunks ({defaults.sequence.chunk_stride})")
    parser.add_argument("--tta-zoom", type=float, help=f"zoom-in TTA factor, 1 for none ({defaults.sequence.tta_zoom})")
    parser.add_argument("--keep-stage1-patients", action="store_true", default=None,
                        help="do not leave out the stage-2 patients that stage 1 trained on")
    parser.add_argument("--shuffle-labels", action="store_true", default=None,
                        help="control run: permute the labels among patients (AUC should be about 0.5)")
    return parser


def flag_overrides(args):
    """Dotted-path config updates of the workflow's own flags (the seed and verbosity reach stage 1 too)."""
    return {"train.warmup_epochs": args.warmup_epochs, "stage1.train.epochs": args.stage1_epochs,
            "stage1.train.seed": args.seed, "stage1.data.on_error": args.on_error, "resume": args.resume,
            "stage1.train.verbose": 0 if args.quiet else None, "stage1.data.data_dir": args.brats_dir,
            "data.data_dir": args.data_dir, "data.mri_types": args.mri_types, "model.encoder": args.backbone,
            "model.weights": args.weights, "sequence.chunk_length": args.chunk_length,
            "sequence.chunk_stride": args.chunk_stride, "sequence.tta_zoom": args.tta_zoom,
            "data.drop_stage1_patients": False if args.keep_stage1_patients else None,
            "data.shuffle_labels": args.shuffle_labels}
