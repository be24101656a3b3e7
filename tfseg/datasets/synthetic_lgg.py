"""A small, realistic stand-in for the Kaggle LGG MRI dataset, written in its exact on-disk layout.

`write_lgg` draws axial brain MR slices with a lower-grade glioma and writes them as the Kaggle
download has them: ``<root>/kaggle_3m/TCGA_<XX>_<NNNN>_<YYYYMMDD>/<patient>_<n>.tif`` (RGB uint8:
pre-contrast, FLAIR, post-contrast) and ``<patient>_<n>_mask.tif`` (uint8 0/255), with a
``data.csv`` and ``README.md`` beside the patient folders, so `tfseg.datasets.lgg.find_lgg` and
everything after it run on it unchanged.

What is drawn, per patient (a 3D head sampled in ``slices_per_patient`` axial slices): a scalp and
a dark skull ring around a brain ellipse whose size follows the slice height; grey/white-matter
texture that changes smoothly from slice to slice, with each channel's own contrast (white matter
brighter than grey in the T1-like channels 0 and 2, darker in FLAIR); CSF-dark ventricles in the
middle slices; a bright scalp in every channel (so brightness alone does not find the lesion); a
few small, faint FLAIR spots that are not lesion; a smooth multiplicative bias field; Rician noise.

The lesion is a 3D blob with an irregular, lobulated outline that drifts from slice to slice: it
appears in a contiguous run of 52-68% of a patient's slices (about 60% over a dataset), small at
the ends of the run and largest in its middle. It is hyperintense in FLAIR (channel 1), slightly
hypointense in channels 0 and 2, heterogeneous inside, with partial-volume edges; the mask is the
blob cross-section (pixels more than half covered).

Example:
    >>> import tempfile
    >>> ds = write_lgg(tempfile.mkdtemp(), num_patients=2, slices_per_patient=4, image_size=64)
    >>> len(ds.patients), len(ds.find())
    (2, 8)
"""
import csv
import dataclasses
import logging
import math
import os
import shutil
import time

import numpy as np
import tifffile
from scipy import ndimage

from tfseg.datasets.lgg import KAGGLE_DIR, MASK_SUFFIX, find_lgg
from tfseg.datasets.shapes import Grid, check_int, ellipse, paint, soft_edge
from tfseg.datasets.synthetic import MARKER_NAME, marker_says_complete, read_marker, reuse_or_write, write_marker
from tfseg.errors import DataError

logger = logging.getLogger(__name__)

_DATASET = "lgg"
_FORMAT_VERSION = 1
_INSTITUTIONS = ("CS", "DU", "EZ", "FG", "HT")  # TCGA tissue-source-site codes of the real data
_LESION_FRACTION = (0.52, 0.68)  # share of a patient's slices showing the lesion
_README = """Synthetic lower-grade glioma MRI slices in the layout of the Kaggle lgg-mri-segmentation data.

Each patient folder holds <patient>_<n>.tif (RGB: pre-contrast, FLAIR, post-contrast) and
<patient>_<n>_mask.tif (FLAIR abnormality, 0/255). Written by tfseg.datasets.synthetic_lgg.
"""


@dataclasses.dataclass(frozen=True)
class SyntheticLgg:
    """Where a synthetic LGG dataset lies.

    Attributes:
        root: the dataset folder (pass to `find_lgg`); it holds ``kaggle_3m/``.
        patients: the patient ids, sorted.
        slices_per_patient: slices written per patient.
        image_size: height and width of every slice.
    """

    root: str
    patients: tuple
    slices_per_patient: int
    image_size: int

    @property
    def kaggle_dir(self):
        """``<root>/kaggle_3m``."""
        return os.path.join(self.root, KAGGLE_DIR)

    def find(self, on_error="raise", problems=None):
        """`find_lgg` on this dataset."""
        return find_lgg(self.root, on_error=on_error, problems=problems)


def _check_args(num_patients, slices_per_patient, image_size, seed):
    return {"num_patients": check_int("num_patients", num_patients, 1, 1000),
            "slices_per_patient": check_int("slices_per_patient", slices_per_patient, 1, 500),
            "image_size": check_int("image_size", image_size, 32, 2048),
            "seed": check_int("seed", seed, 0, 2**63 - 1)}


def patient_ids(num_patients, seed=0):
    """The TCGA-style patient ids of a synthetic dataset, unique, in writing order.

    Example:
        >>> patient_ids(2, seed=0)[0].startswith("TCGA_CS_")
        True
    """
    rng = np.random.default_rng([seed, 7919])
    numbers = rng.choice(9000, size=num_patients, replace=False) + 1000
    ids = []
    for index, number in enumerate(numbers):
        days = int(rng.integers(0, 10 * 365))
        date = np.datetime64("1995-01-01") + np.timedelta64(days, "D")
        ids.append(f"TCGA_{_INSTITUTIONS[index % len(_INSTITUTIONS)]}_{int(number):04d}_"
                   f"{str(date).replace('-', '')}")
    return ids


def _result(root, kwargs):
    ids = patient_ids(kwargs["num_patients"], kwargs["seed"])
    return SyntheticLgg(root=root, patients=tuple(sorted(ids)), slices_per_patient=kwargs["slices_per_patient"],
                        image_size=kwargs["image_size"])


# ----------------------------------------------------------------------------------------------
# Drawing. Intensities are on a 0..1 scale per channel (pre-contrast, FLAIR, post-contrast).

_SCALP = np.array([0.78, 0.55, 0.80], np.float32)
_SKULL = np.array([0.06, 0.05, 0.07], np.float32)
_CSF = np.array([0.14, 0.07, 0.15], np.float32)
_WHITE = np.array([0.56, 0.36, 0.58], np.float32)
_GREY = np.array([0.44, 0.46, 0.47], np.float32)
_LESION_SHIFT = np.array([-0.07, 0.30, -0.05], np.float32)  # added to the tissue under the lesion


def _smooth_noise(rng, size, sigma):
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma, mode="wrap")
    return field / (field.std() + 1e-6)


@dataclasses.dataclass
class _Patient:
    brain_axes: tuple  # semi-axes (x, y) of the largest brain section, pixels
    centre: tuple
    texture: tuple  # two smooth fields blended along z
    texture_turns: float
    channel_gain: np.ndarray
    bias: np.ndarray
    noise: float
    lesion_start: int
    lesion_count: int
    lesion_centre: tuple  # in units of the brain semi-axes
    lesion_radius: float  # pixels, largest section
    lesion_contrast: float
    harmonics: list  # (order, amplitude, phase, phase drift over the run)
    lobe: tuple  # (direction, distance, relative radius) of a second lobe
    spots: np.ndarray  # (n, 4): slice position, x, y (brain units), radius (pixels)


def _patient_params(rng, size, slices):
    s = size / 256.0
    count = int(np.clip(round(rng.uniform(*_LESION_FRACTION) * slices), 1, slices))
    angle = rng.uniform(0, 2 * math.pi)
    distance = rng.uniform(0.15, 0.4)
    return _Patient(
        brain_axes=(rng.uniform(0.33, 0.37) * size, rng.uniform(0.39, 0.43) * size),
        centre=(size / 2 + rng.normal(0, 0.015) * size, size / 2 + rng.normal(0, 0.015) * size),
        texture=(_smooth_noise(rng, size, 3.5 * s + 0.5), _smooth_noise(rng, size, 3.5 * s + 0.5)),
        texture_turns=float(rng.uniform(0.6, 1.2)),
        channel_gain=rng.uniform(0.88, 1.08, 3).astype(np.float32),
        bias=rng.normal(0.0, 0.13, 5).astype(np.float32),
        noise=float(rng.uniform(0.02, 0.035)),
        lesion_start=int(rng.integers(0, slices - count + 1)),
        lesion_count=count,
        lesion_centre=(distance * math.cos(angle), distance * math.sin(angle)),
        lesion_radius=float(rng.uniform(0.055, 0.13) * size),
        lesion_contrast=float(rng.uniform(0.8, 1.15)),
        harmonics=[(k, float(rng.uniform(0.04, a)), float(rng.uniform(0, 2 * math.pi)), float(rng.normal(0, 1.2)))
                   for k, a in ((2, 0.16), (3, 0.12), (4, 0.07), (5, 0.05))],
        lobe=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.55, 0.85)), float(rng.uniform(0.4, 0.65))),
        spots=np.column_stack([rng.uniform(0, 1, 6), rng.uniform(-0.6, 0.6, (6, 2)),
                               rng.uniform(0.8, 2.0, 6) * max(s, 0.5)]),
    )


def _lesion(grid, p, j, brain_axes):
    """Soft lesion cover (H, W) of slice `j` of the lesion run (0 <= j < lesion_count)."""
    t = 2.0 * (j + 0.5) / p.lesion_count - 1.0  # -1 .. 1 over the run
    radius = max(1.5, p.lesion_radius * (0.3 + 0.7 * math.sqrt(max(0.0, 1.0 - t * t))))
    cx = p.centre[0] + p.lesion_centre[0] * brain_axes[0]
    cy = p.centre[1] + p.lesion_centre[1] * brain_axes[1]
    dx, dy = grid.xx - cx, grid.yy - cy
    rho = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(theta)
    for k, amp, phase, drift in p.harmonics:
        outline += amp * np.cos(k * theta + phase + drift * t)
    cover = soft_edge(radius * outline - rho, 0.8)
    direction, distance, relative = p.lobe
    if abs(t) < 0.7:  # the second lobe spans the middle of the run
        lobe_r = max(1.0, relative * radius * math.sqrt(1.0 - (t / 0.7) ** 2))
        lx = cx + distance * radius * math.cos(direction + 0.3 * t)
        ly = cy + distance * radius * math.sin(direction + 0.3 * t)
        cover = np.maximum(cover, ellipse(grid.xx, grid.yy, (lx, ly), (lobe_r, 0.85 * lobe_r), 0.8))
    return cover


def _draw_slice(grid, p, k, slices, rng):
    """The uint8 (H, W, 3) slice and uint8 (H, W) 0/255 mask of slice `k` of a patient."""
    size = grid.size
    z = (k + 0.5) / slices  # 0 inferior .. 1 superior
    scale = math.sqrt(max(0.25, 1.0 - ((z - 0.45) / 0.75) ** 2))
    axes = (p.brain_axes[0] * scale, p.brain_axes[1] * scale)
    edge = max(0.5, size / 256.0 * 0.7)
    image = np.zeros((size, size, 3), np.float32)
    # head: scalp, skull, CSF rim, brain
    for extra, value in ((0.07, _SCALP), (0.045, _SKULL), (0.012, _CSF)):
        paint(image, ellipse(grid.xx, grid.yy, p.centre, (axes[0] + extra * size, axes[1] + extra * size), edge),
               value)
    brain = ellipse(grid.xx, grid.yy, p.centre, axes, edge)
    phase = math.pi * p.texture_turns * z
    field = math.cos(phase) * p.texture[0] + math.sin(phase) * p.texture[1]
    white = 0.5 + 0.5 * np.tanh(1.6 * (field + 0.2))  # white-matter share of each pixel
    tissue = _GREY + white[..., None] * (_WHITE - _GREY) + 0.02 * field[..., None]
    image += brain[..., None] * (tissue - image)
    j = k - p.lesion_start
    cover = _lesion(grid, p, j, p.brain_axes) * brain if 0 <= j < p.lesion_count else None
    if 0.3 < z < 0.75:  # lateral ventricles, pushed aside by the lesion
        v = math.sin(math.pi * (z - 0.3) / 0.45)
        for side in (-1, 1):
            centre = (p.centre[0] + side * 0.11 * axes[0], p.centre[1] - 0.05 * axes[1])
            paint(image, ellipse(grid.xx, grid.yy, centre, (max(1.0, 0.07 * axes[0] * v), 0.32 * axes[1] * v),
                                   edge) * (1.0 if cover is None else 1.0 - cover), _CSF)
    for spot_z, sx, sy, r in p.spots:  # small faint FLAIR spots that are not lesion
        if abs(spot_z - z) < 0.08:
            centre = (p.centre[0] + sx * axes[0], p.centre[1] + sy * axes[1])
            paint(image, ellipse(grid.xx, grid.yy, centre, (r, r), edge) * brain,
                   image[int(np.clip(centre[1], 0, size - 1)), int(np.clip(centre[0], 0, size - 1))]
                   + np.array([0.0, 0.13, 0.0], np.float32))
    mask = np.zeros((size, size), np.uint8)
    if cover is not None:
        inner = 1.0 + 0.25 * p.texture[1 - (k % 2)]  # heterogeneous inside
        shift = _LESION_SHIFT * p.lesion_contrast
        image += cover[..., None] * shift * inner[..., None]
        mask = np.where(cover >= 0.5, 255, 0).astype(np.uint8)
    bias = np.exp(np.tensordot(p.bias, grid.terms, axes=1))
    image *= (bias[..., None] * p.channel_gain)
    sigma = p.noise
    image = np.sqrt((image + rng.normal(0, sigma, image.shape)) ** 2 + rng.normal(0, sigma, image.shape) ** 2)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8), mask


def _write_csv(path, patients, rng):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Patient", "histological_type", "neoplasm_histologic_grade", "gender",
                         "age_at_initial_pathologic", "death01"])
        for patient in patients:
            writer.writerow([patient[:12], int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3)),
                             int(rng.integers(20, 75)), int(rng.integers(0, 2))])


def _clear(root, marker):
    present = sorted(n for n in os.listdir(root) if not n.startswith(".") and n != MARKER_NAME)
    if not present:
        return
    if not marker or marker.get("dataset") != _DATASET:
        raise DataError(root, f"already holds {', '.join(present[:3])}{' ...' if len(present) > 3 else ''} "
                              f"not written by write_lgg (no LGG {MARKER_NAME}); choose an empty folder")
    stray = [n for n in present if n != KAGGLE_DIR]
    if stray:
        raise DataError(root, f"holds {', '.join(stray[:3])} beside a synthetic LGG dataset; choose an empty folder")
    shutil.rmtree(os.path.join(root, KAGGLE_DIR))


def write_lgg(root, num_patients=12, slices_per_patient=16, image_size=256, seed=0):
    """Write a synthetic LGG dataset in the Kaggle layout (see the module docstring), from a seed.

    Args:
        root: the dataset folder; created if needed. It must be empty or hold an earlier
            synthetic LGG dataset (which is replaced).
        num_patients: patients (folders) to write.
        slices_per_patient: slices per patient, numbered 1..N as in the real data.
        image_size: height and width of every slice in pixels (the real data is 256).
        seed: integer seed; the same arguments give identical files.

    Returns:
        A `SyntheticLgg`.

    Raises:
        ConfigError: an argument out of range.
        DataError: `root` holds other files.

    Example:
        >>> import tempfile
        >>> from tfseg.io.images import read_image, read_mask
        >>> ds = write_lgg(tempfile.mkdtemp(), num_patients=1, slices_per_patient=2, image_size=64)
        >>> record = ds.find()[0]
        >>> read_image(record.image).shape, read_mask(record.mask).shape
        ((64, 64, 3), (64, 64))
    """
    kwargs = _check_args(num_patients, slices_per_patient, image_size, seed)
    root = os.path.abspath(os.fspath(root))
    os.makedirs(root, exist_ok=True)
    _clear(root, read_marker(root))
    content = {"dataset": _DATASET, "version": _FORMAT_VERSION, "kwargs": kwargs, "entries": [KAGGLE_DIR]}
    write_marker(root, {**content, "complete": False})
    started = time.perf_counter()
    size, slices = kwargs["image_size"], kwargs["slices_per_patient"]
    grid = Grid(size)
    ids = patient_ids(kwargs["num_patients"], kwargs["seed"])
    folder = os.path.join(root, KAGGLE_DIR)
    os.makedirs(folder)
    for index, patient in enumerate(ids):
        rng = np.random.default_rng([kwargs["seed"], index])
        params = _patient_params(rng, size, slices)
        patient_dir = os.path.join(folder, patient)
        os.makedirs(patient_dir)
        for k in range(slices):
            image, mask = _draw_slice(grid, params, k, slices, rng)
            tifffile.imwrite(os.path.join(patient_dir, f"{patient}_{k + 1}.tif"), image, photometric="rgb")
            tifffile.imwrite(os.path.join(patient_dir, f"{patient}_{k + 1}{MASK_SUFFIX}.tif"), mask,
                             photometric="minisblack")
    _write_csv(os.path.join(folder, "data.csv"), ids, np.random.default_rng([kwargs["seed"], 104729]))
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(_README)
    write_marker(root, {**content, "complete": True})
    logger.info("wrote synthetic LGG dataset to %s: %d patients x %d slices at %dx%d in %.1f s", root,
                kwargs["num_patients"], slices, size, size, time.perf_counter() - started)
    return _result(root, kwargs)


def _is_complete(root, kwargs):
    if not marker_says_complete(root, _DATASET, _FORMAT_VERSION, kwargs):
        return False
    for patient in patient_ids(kwargs["num_patients"], kwargs["seed"]):
        patient_dir = os.path.join(root, KAGGLE_DIR, patient)
        for n in range(1, kwargs["slices_per_patient"] + 1):
            for name in (f"{patient}_{n}.tif", f"{patient}_{n}{MASK_SUFFIX}.tif"):
                if not os.path.isfile(os.path.join(patient_dir, name)):
                    return False
    return True


def ensure_lgg(root, num_patients=12, slices_per_patient=16, image_size=256, seed=0):
    """Make sure `root` holds the synthetic LGG dataset of these arguments; write it only if not.

    Reused when ``<root>/tfseg_synthetic.json`` (written last) records the same arguments and
    every slice and mask file is present; otherwise (re)written by `write_lgg`.

    Args:
        root, num_patients, slices_per_patient, image_size, seed: as in `write_lgg`.

    Returns:
        A `SyntheticLgg`, the same as `write_lgg` returns.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> a = ensure_lgg(root, num_patients=1, slices_per_patient=2, image_size=32)
        >>> ensure_lgg(root, num_patients=1, slices_per_patient=2, image_size=32) == a
        True
    """
    kwargs = _check_args(num_patients, slices_per_patient, image_size, seed)
    return reuse_or_write("LGG", root, kwargs, _is_complete, _result, write_lgg)
