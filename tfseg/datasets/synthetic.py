"""Small, realistic datasets written to disk in the real on-disk layouts: the embedded default data.

`write_sunnybrook` draws short-axis cardiac cine MR images and their expert-style contours from a
seed and writes them exactly as the Sunnybrook challenge ships them (16-bit DICOM images, one
``x y`` text contour per contoured image), so every reader, finder and pipeline runs on it unchanged.

The anatomy is drawn so that the task is the real one: a bright left-ventricle (LV) blood pool inside
a darker myocardial ring, a bright right-ventricle crescent and a bright descending aorta beside it
(brightness alone does not find the LV), lungs, liver, spine, chest wall and subcutaneous fat, a
smooth coil bias field and Rician noise. The LV pool is painted from the very polygon written as the
``icontour`` file, so ``polygon_to_mask(read_contour(icontour))`` is the bright pool; ``ocontour`` is
the epicardium. The LV covers under 2% of the pixels, as in the real data.

`write_brats` draws skull-stripped brain MR cases with a glioma (four NIfTI modalities, T1, T1ce,
T2 and FLAIR, and a label map with the BraTS values 1, 2 and 4) and writes them in the layout of
the BraTS 2021, 2020 or 2018 release, with a Clara-style ``datalist.json``; see its docstring.

Example:
    >>> import tempfile
    >>> ds = write_sunnybrook(tempfile.mkdtemp(), num_cases=2, images_per_case=4,
    ...                       contoured_per_case=2, image_size=64)
    >>> ds.cases
    ('SC-HF-I-1', 'SC-HF-I-2')
    >>> len(ds.find())
    4
"""
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time

import nibabel as nib
import numpy as np
from pydicom.uid import generate_uid

from tfseg.datasets.brats import MODALITIES, BratsCase, find_brats
from tfseg.datasets.datalist import datalist_from_cases, write_datalist
from tfseg.datasets.shapes import Grid, check_int, ellipse, paint, soft_edge
from tfseg.datasets.sunnybrook import (EXPERT_SUBDIR, SAX_SERIES, canonical_case, find_sunnybrook)
from tfseg.errors import ConfigError, DataError
from tfseg.io import contours as contour_io
from tfseg.io import dicom as dicom_io

logger = logging.getLogger(__name__)

MARKER_NAME = "tfseg_synthetic.json"
_FORMAT_VERSION = 1
_MAX_CASES = 500
_MAX_LV_FRACTION = 0.019  # keep the LV pool under 2% of the pixels
_GROUPS = ("SC-HF-I", "SC-HF-NI", "SC-HYP", "SC-N")
_PHASES_PER_SLICE = 4  # image k shows slice k // 4 at cardiac phase k % 4 (phase 0 = end-diastole)


@dataclasses.dataclass(frozen=True)
class SyntheticSunnybrook:
    """Where a synthetic Sunnybrook dataset lies.

    Attributes:
        root: the dataset folder.
        image_dir: ``<root>/images`` (pass to `find_sunnybrook` as image_dir).
        contour_dir: ``<root>/contours`` (pass to `find_sunnybrook` as contour_dir).
        cases: canonical case ids, in writing order.
        series: case -> 4-digit SAX series number, including generated cases beyond `SAX_SERIES`.
    """

    root: str
    image_dir: str
    contour_dir: str
    cases: tuple
    series: dict

    def find(self, contour="icontour", on_error="raise", problems=None):
        """`find_sunnybrook` on this dataset, with its series table (needed for cases beyond 15)."""
        return find_sunnybrook(self.image_dir, self.contour_dir, contour=contour, series=self.series,
                               on_error=on_error, problems=problems)


def synthetic_cases(num_cases):
    """The (case, series) pairs of a synthetic dataset: `SAX_SERIES` in order, then new cases in its style.

    Args:
        num_cases: how many cases.

    Returns:
        A list of ``(case, series)`` string pairs.

    Example:
        >>> synthetic_cases(16)[-2:]
        [('SC-N-40', '0944'), ('SC-HF-I-41', '1000')]
    """
    cases = list(SAX_SERIES.items())[:num_cases]
    k = 0
    while len(cases) < num_cases:
        cases.append((f"{_GROUPS[k % len(_GROUPS)]}-{41 + k // len(_GROUPS)}", f"{1000 + 10 * k:04d}"))
        k += 1
    return cases


def _contour_folder_name(case, index):
    """Zero-pad the trailing number of every other case folder to two digits, as the real contour tree does."""
    prefix, _, number = case.rpartition("-")
    return f"{prefix}-{int(number):02d}" if index % 2 == 0 else case


def _check_args(num_cases, images_per_case, contoured_per_case, image_size, seed):
    check_int("num_cases", num_cases, 1, _MAX_CASES)
    check_int("images_per_case", images_per_case, 1, 9999)
    check_int("image_size", image_size, 32, 4096)
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("contoured_per_case", contoured_per_case, 1, images_per_case)


# ----------------------------------------------------------------------------------------------
# Drawing: all shapes are painted over each other with soft (partial-volume) masks in [0, 1].

def _soft(distance, edge):
    """Soft inside-ness from a signed distance (positive inside), `edge` pixels wide."""
    return soft_edge(distance, 2.0 * edge)


def _blur(mask, sigma):
    """Separable Gaussian blur with a 5-tap kernel (edges replicated): a slightly smooth edge."""
    taps = np.exp(-0.5 * (np.arange(-2, 3) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    out = mask
    for axis in (0, 1):
        padded = np.pad(out, [(2, 2) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        n = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(k, k + n), axis=axis) for k, w in enumerate(taps))
    return out


def _radius(theta, base, harmonics):
    """Radius r(theta) = base * (1 + sum a cos(k theta + phi)) for harmonics [(k, a, phi), ...]."""
    r = np.ones_like(theta)
    for k, a, phi in harmonics:
        r = r + a * np.cos(k * theta + phi)
    return base * r


def _polygon(centre, base, harmonics, rng, start):
    """An irregular closed polyline about 1 px between points, as (N, 2) x/y float64."""
    count = max(12, int(round(2 * math.pi * base)))
    theta = start + 2 * math.pi * np.arange(count) / count
    r = _radius(theta, base, harmonics) + rng.normal(0.0, 0.08, count)  # a hand-drawn wobble
    return np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], axis=1)


@dataclasses.dataclass
class _Case:
    """Parameters fixed for a whole case (patient, scanner)."""

    level: float  # stored intensity of blood before bias and rescale
    noise: float  # Rician sigma relative to blood
    myo: float  # myocardium relative to blood (the contrast)
    tissue: float
    fat: float
    liver: float
    pixel_spacing: float
    slope: float
    intercept: float
    body_centre: tuple
    body_axes: tuple
    fat_thickness: float
    heart_centre: tuple
    heart_drift: tuple
    lv_radius: float  # end-diastolic basal radius in pixels
    lv_harmonics: list
    wall: float  # end-diastolic wall thickness in pixels
    wall_harmonic: tuple
    rv_angle: float
    rv_scale: float
    bias: np.ndarray  # coefficients of the log bias field over (x, y, x^2, xy, y^2)
    liver_slices: float  # slices deeper than this fraction show the liver
    lungs: tuple  # ((centre, axes), (centre, axes)): right lung (image left), left lung
    aorta: float  # descending aorta blood relative to LV blood
    vessels: np.ndarray  # (n, 2) positions of lung vessels, in units of their lung's semi-axes


def _case_params(rng, size, index):
    scale = size / 256.0
    half = size / 2.0
    nontrivial = index % 3 == 1  # every third case stores values through a real rescale
    body = (half + rng.normal(0, 0.015) * size, half + rng.normal(0, 0.015) * size)
    return _Case(
        level=float(rng.uniform(250, 1800)),
        noise=float(rng.uniform(0.02, 0.05)),
        myo=float(rng.uniform(0.22, 0.42)),
        tissue=float(rng.uniform(0.36, 0.48)),
        fat=float(rng.uniform(0.72, 0.9)),
        liver=float(rng.uniform(0.45, 0.58)),
        pixel_spacing=round(float(rng.uniform(1.2, 1.5)), 4),
        slope=float(rng.choice([0.25, 0.5, 2.0])) if nontrivial else 1.0,
        intercept=float(rng.choice([-1000.0, -100.0, -50.0])) if nontrivial else 0.0,
        body_centre=body,
        body_axes=(rng.uniform(0.40, 0.46) * size, rng.uniform(0.31, 0.36) * size),
        fat_thickness=float(rng.uniform(0.02, 0.045) * size),
        heart_centre=(half + rng.uniform(0.0, 0.12) * size, half + rng.uniform(-0.08, 0.05) * size),
        heart_drift=(rng.uniform(-0.03, 0.03) * size, rng.uniform(-0.03, 0.03) * size),
        lv_radius=float(rng.uniform(11.0, 18.0) * scale),
        lv_harmonics=[(k, float(rng.uniform(0, a)), float(rng.uniform(0, 2 * math.pi)))
                      for k, a in ((2, 0.07), (3, 0.05), (4, 0.03))],
        wall=float(rng.uniform(5.0, 8.0) * scale),
        wall_harmonic=(float(rng.uniform(0.1, 0.3)), float(rng.uniform(0, 2 * math.pi))),
        rv_angle=float(math.pi + rng.uniform(-0.45, 0.15)),
        rv_scale=float(rng.uniform(0.85, 1.15)),
        bias=rng.normal(0.0, 0.15, 5).astype(np.float32),
        liver_slices=float(rng.uniform(0.4, 0.8)),
        lungs=tuple(((body[0] + side * sx * size, body[1] + rng.normal(0.0, 0.015) * size),
                     (rng.uniform(0.10, 0.13) * size, rng.uniform(0.16, 0.20) * size))
                    for side, sx in ((-1, 0.26), (1, 0.28))),
        aorta=float(rng.uniform(0.85, 1.0)),
        vessels=rng.uniform(-1.0, 1.0, (12, 2)) * 0.8,
    )


def _slice_geometry(case, k, images_per_case, rng, size):
    """LV centre, endocardial radius/harmonics and wall thickness of image k (0-based) of a case."""
    num_slices = max(1, -(-images_per_case // _PHASES_PER_SLICE))
    slice_index, phase = divmod(k, _PHASES_PER_SLICE)
    depth = slice_index / (num_slices - 1) if num_slices > 1 else 0.3  # 0 = base, 1 = apex
    contraction = 1.0 - 0.28 * math.sin(math.pi * phase / _PHASES_PER_SLICE) ** 2  # 1 at ED, 0.72 at ES
    radius = case.lv_radius * (1.0 - 0.4 * depth ** 1.5) * contraction
    radius = max(radius, 1.6)
    harmonics = [(h, a * rng.uniform(0.8, 1.2), phi + rng.normal(0, 0.15)) for h, a, phi in case.lv_harmonics]
    wall = max(1.5, case.wall / contraction ** 0.7 * (1.0 - 0.2 * depth))
    jitter = rng.normal(0.0, 0.008 * size, 2)
    centre = (case.heart_centre[0] + depth * case.heart_drift[0] + jitter[0],
              case.heart_centre[1] + depth * case.heart_drift[1] + jitter[1])
    return centre, radius, harmonics, wall, depth, slice_index, contraction


def _background(grid, case, with_liver):
    """Everything but the heart, fixed for a case: body, fat, lungs, liver, spine, aorta (relative to blood)."""
    size, xx, yy = grid.size, grid.xx, grid.yy
    edge = max(0.6, size / 256.0 * 0.8)
    image = np.zeros((size, size), np.float32)
    bc, ba = case.body_centre, case.body_axes
    # body: subcutaneous fat outside, soft tissue (muscle) inside
    paint(image, ellipse(xx, yy, bc, ba, 2.0 * edge), case.fat)
    inner = (ba[0] - case.fat_thickness, ba[1] - case.fat_thickness)
    paint(image, ellipse(xx, yy, bc, inner, 2.0 * edge), case.tissue)
    # lungs (dark), liver on deeper slices, spine, descending aorta (bright blood)
    for side, (centre, axes) in zip((-1, 1), case.lungs):
        paint(image, ellipse(xx, yy, centre, axes, 2.0 * edge, side * 0.2), 0.05)
        for u, v in case.vessels[::2] if side < 0 else case.vessels[1::2]:  # a few pulmonary vessels
            spot = (centre[0] + u * axes[0] * 0.8, centre[1] + v * axes[1] * 0.8)
            r = max(0.8, 0.006 * size * (1.5 - abs(u)))
            paint(image, ellipse(xx, yy, spot, (r, r), 2.0 * edge), 0.3)
    if with_liver:
        paint(image, ellipse(xx, yy, (bc[0] - 0.12 * size, bc[1] + 0.14 * size),
                              (0.22 * size, 0.13 * size), 2.0 * edge, -0.3), case.liver)
    paint(image, ellipse(xx, yy, (bc[0], bc[1] + 0.26 * size), (0.05 * size, 0.045 * size), 2.0 * edge), 0.22)
    aorta_r = 0.032 * size * case.rv_scale
    paint(image, ellipse(xx, yy, (bc[0] + 0.06 * size, bc[1] + 0.20 * size), (aorta_r, aorta_r), 2.0 * edge),
           case.aorta)
    return image


def _draw(grid, case, background, rng, centre, lv_mask, radius, harmonics, wall, contraction):
    """The stored-intensity image (float, before rescale) of one slice, blood = `case.level`."""
    size = grid.size
    edge = max(0.6, size / 256.0 * 0.8)
    image = background.copy()
    # the heart, drawn in a window around it: epicardial disc and RV wall as myocardium, then the
    # RV blood crescent, then the LV pool from its mask
    epi_mean = radius + wall
    reach = int(math.ceil(2.7 * epi_mean * case.rv_scale + 4 * edge + 3))
    y0, y1 = max(0, int(centre[1]) - reach), min(size, int(centre[1]) + reach + 1)
    x0, x1 = max(0, int(centre[0]) - reach), min(size, int(centre[0]) + reach + 1)
    window = image[y0:y1, x0:x1]
    xx, yy = grid.xx[y0:y1, x0:x1], grid.yy[y0:y1, x0:x1]
    dx, dy = xx - centre[0], yy - centre[1]
    rho = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    amp, phi = case.wall_harmonic
    epi_r = _radius(theta, radius, harmonics) + wall * (1.0 + amp * np.cos(theta - phi))
    myo = case.myo * rng.uniform(0.93, 1.07)
    rv_dir = (math.cos(case.rv_angle), math.sin(case.rv_angle))
    rv_centre = (centre[0] + 0.8 * epi_mean * rv_dir[0], centre[1] + 0.8 * epi_mean * rv_dir[1])
    rv_axes = (0.95 * epi_mean * case.rv_scale * contraction ** 0.5, 1.55 * epi_mean * case.rv_scale)
    rv_wall = max(1.2, 0.35 * wall)
    paint(window, ellipse(xx, yy, rv_centre, (rv_axes[0] + rv_wall, rv_axes[1] + rv_wall), 2.0 * edge, case.rv_angle),
           myo)
    paint(window, _soft(epi_r - rho, edge), myo)
    septum_gap = max(1.2, 0.3 * wall)
    crescent = ellipse(xx, yy, rv_centre, rv_axes, 2.0 * edge, case.rv_angle) * _soft(rho - epi_r - septum_gap, edge)
    paint(window, crescent, rng.uniform(0.9, 1.05))
    pool = lv_mask[y0:y1, x0:x1]
    paint(window, _blur(pool.astype(np.float32), sigma=max(0.6, edge)), 1.0)
    if radius > 4.0:  # papillary muscles: small darker blobs inside the pool, near the wall
        for angle in (case.rv_angle + 2.3, case.rv_angle - 2.1):
            spot = (centre[0] + 0.68 * radius * math.cos(angle), centre[1] + 0.68 * radius * math.sin(angle))
            spot_r = 0.17 * radius
            paint(window, ellipse(xx, yy, spot, (spot_r, spot_r), 2.0 * edge) * pool, 0.6)
    # smooth coil bias field, scanner scale, Rician noise
    bias = np.exp(np.tensordot(case.bias + rng.normal(0.0, 0.02, 5).astype(np.float32), grid.terms, axes=1))
    level = case.level * rng.uniform(0.95, 1.05)
    signal = image * bias * np.float32(level)
    sigma = np.float32(case.noise * level)
    real = signal + sigma * rng.standard_normal((size, size), dtype=np.float32)
    imag = sigma * rng.standard_normal((size, size), dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def _lv_polygon(centre, radius, harmonics, rng, size):
    """The endocardial polygon, shrunk if needed so the pool stays under the LV area budget."""
    start = rng.uniform(0, 2 * math.pi)
    state = rng.bit_generator.state
    budget = _MAX_LV_FRACTION * size * size
    while True:
        rng.bit_generator.state = state  # same wobble whatever the shrinking
        points = np.round(_polygon(centre, radius, harmonics, rng, start), 2)
        mask = contour_io.polygon_to_mask(points, (size, size))
        if mask.sum() <= budget or radius <= 1.6:
            return points, mask, radius
        radius *= 0.95


def _epi_polygon(centre, radius, harmonics, wall, case, rng):
    start = rng.uniform(0, 2 * math.pi)
    epi_mean = radius + wall
    count = max(12, int(round(2 * math.pi * epi_mean)))
    theta = start + 2 * math.pi * np.arange(count) / count
    amp, phi = case.wall_harmonic
    r = _radius(theta, radius, harmonics) + wall * (1.0 + amp * np.cos(theta - phi)) + rng.normal(0, 0.08, count)
    return np.round(np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], axis=1), 2)


def _write_case(index, case_id, series, contour_folder, image_dir, contour_dir, images_per_case,
                contoured_per_case, grid, seed):
    size = grid.size
    case = _case_params(np.random.default_rng([seed, index]), size, index)
    contoured = set(np.random.default_rng([seed, index, 1 << 20]).choice(
        np.arange(1, images_per_case + 1), contoured_per_case, replace=False).tolist())
    case_images = os.path.join(image_dir, case_id)
    expert = os.path.join(contour_dir, contour_folder, EXPERT_SUBDIR)
    os.makedirs(case_images, exist_ok=True)
    os.makedirs(expert, exist_ok=True)
    study_uid = generate_uid(entropy_srcs=["tfseg-synthetic-sunnybrook", str(seed), case_id, "study"])
    series_uid = generate_uid(entropy_srcs=["tfseg-synthetic-sunnybrook", str(seed), case_id, series])
    spacing = case.pixel_spacing
    backgrounds = {}
    for k in range(images_per_case):
        number = k + 1
        rng = np.random.default_rng([seed, index, number])
        centre, radius, harmonics, wall, depth, slice_index, contraction = _slice_geometry(
            case, k, images_per_case, rng, size)
        lv_points, lv_mask, radius = _lv_polygon(centre, radius, harmonics, rng, size)
        epi_points = _epi_polygon(centre, radius, harmonics, wall, case, rng)
        if number in contoured:
            stem = os.path.join(expert, f"IM-0001-{number:04d}")
            contour_io.write_contour(f"{stem}-icontour-manual.txt", lv_points, decimals=2)
            contour_io.write_contour(f"{stem}-ocontour-manual.txt", epi_points, decimals=2)
            # paint from exactly what a reader will get back from the file
            lv_mask = contour_io.polygon_to_mask(contour_io.read_contour(f"{stem}-icontour-manual.txt"), (size, size))
        with_liver = depth >= case.liver_slices
        if with_liver not in backgrounds:
            backgrounds[with_liver] = _background(grid, case, with_liver)
        real = _draw(grid, case, backgrounds[with_liver], rng, centre, lv_mask, radius, harmonics, wall,
                     contraction)
        stored = np.clip(np.rint((real - case.intercept) / case.slope), 0, 65535).astype(np.uint16)
        dicom_io.write_image(
            os.path.join(case_images, f"IM-{series}-{number:04d}.dcm"), stored,
            pixel_spacing=(spacing, spacing), rescale_slope=case.slope, rescale_intercept=case.intercept,
            modality="MR", patient_id=case_id, study_instance_uid=study_uid, series_instance_uid=series_uid,
            series_number=int(series), instance_number=number,
            image_position=(-size / 2 * spacing, -size / 2 * spacing, 10.0 * slice_index),
            image_orientation=(1, 0, 0, 0, 1, 0), slice_thickness=8.0,
            description="tfseg synthetic short-axis cine")


def marker_says_complete(root, dataset, version, kwargs):
    """Whether `root`'s marker records a finished write of `dataset` at format `version` with these `kwargs`.

    Example:
        >>> import tempfile
        >>> marker_says_complete(tempfile.mkdtemp(), "brats", 1, {})
        False
    """
    marker = read_marker(root)
    return bool(marker) and marker.get("dataset") == dataset and marker.get("version") == version \
        and bool(marker.get("complete")) and marker.get("kwargs") == kwargs


def read_marker(root):
    """The completion marker of a synthetic dataset folder (`MARKER_NAME`, JSON), or None if missing or unreadable."""
    try:
        with open(os.path.join(root, MARKER_NAME), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_marker(root, content):
    """Write the completion marker of `root` atomically (a temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=".marker-", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(root, MARKER_NAME))


def _result(root, cases):
    return SyntheticSunnybrook(root=root, image_dir=os.path.join(root, "images"),
                               contour_dir=os.path.join(root, "contours"),
                               cases=tuple(canonical_case(c) for c, _ in cases),
                               series={canonical_case(c): s for c, s in cases})


def write_sunnybrook(root, num_cases=15, images_per_case=24, contoured_per_case=20, image_size=256, seed=0):
    """Write a synthetic Sunnybrook-layout dataset (16-bit DICOM + expert contours) from a seed.

    Images go to ``<root>/images/<case>/IM-<series>-<NNNN>.dcm``, contours to
    ``<root>/contours/<case folder>/contours-manual/IRCCI-expert/IM-0001-<NNNN>-{i,o}contour-manual.txt``
    for the contoured images only; every other case's contour folder is zero-padded
    (``SC-HF-I-01``) as in the real download. Cases are those of `SAX_SERIES` in order, then new
    ones in the same style (``SC-HF-I-41`` ...) with series from 1000. Image ``k`` shows slice
    ``(k-1) // 4`` (base to apex) at cardiac phase ``(k-1) % 4``. Pixel spacing (1.2-1.5 mm),
    intensity scale, contrast, noise, heart position and size vary per case; every third case
    stores values through a non-trivial RescaleSlope/RescaleIntercept.

    Args:
        root: folder to write to; its ``images``/``contours`` sub-folders must be absent, empty,
            or written by an earlier call (they are then replaced).
        num_cases: number of cases (1-500).
        images_per_case: images per case.
        contoured_per_case: how many of them have contours (chosen at random from the seed).
        image_size: rows = columns of each image (at least 32).
        seed: non-negative integer; the same seed gives the same pixels and contours.

    Returns:
        A `SyntheticSunnybrook` with the paths, cases and series table.

    Raises:
        ConfigError: an argument out of range.
        DataError: `root` already holds image or contour folders that tfseg did not write.

    Example:
        >>> import tempfile
        >>> ds = write_sunnybrook(tempfile.mkdtemp(), num_cases=1, images_per_case=2,
        ...                       contoured_per_case=1, image_size=48)
        >>> sorted(os.listdir(os.path.join(ds.image_dir, "SC-HF-I-1")))
        ['IM-0004-0001.dcm', 'IM-0004-0002.dcm']
    """
    _check_args(num_cases, images_per_case, contoured_per_case, image_size, seed)
    kwargs = dict(num_cases=int(num_cases), images_per_case=int(images_per_case),
                  contoured_per_case=int(contoured_per_case), image_size=int(image_size), seed=int(seed))
    root = os.path.abspath(os.fspath(root))
    os.makedirs(root, exist_ok=True)
    image_dir, contour_dir = os.path.join(root, "images"), os.path.join(root, "contours")
    existing = [d for d in (image_dir, contour_dir) if os.path.isdir(d) and os.listdir(d)]
    if existing:
        if read_marker(root) is None:
            raise DataError(root, f"already holds {' and '.join(os.path.basename(d) + '/' for d in existing)} "
                                  f"not written by tfseg (no {MARKER_NAME}); choose an empty folder")
        for d in existing:
            shutil.rmtree(d)
    write_marker(root, {"dataset": "sunnybrook", "version": _FORMAT_VERSION, "kwargs": kwargs, "complete": False})
    started = time.perf_counter()
    cases = synthetic_cases(num_cases)
    grid = Grid(int(image_size))
    for index, (case_id, series) in enumerate(cases):
        _write_case(index, case_id, series, _contour_folder_name(case_id, index), image_dir, contour_dir,
                    int(images_per_case), int(contoured_per_case), grid, int(seed))
    write_marker(root, {"dataset": "sunnybrook", "version": _FORMAT_VERSION, "kwargs": kwargs, "complete": True})
    logger.info("wrote synthetic Sunnybrook dataset to %s: %d cases x %d images (%d contoured) at %dx%d in %.1f s",
                root, num_cases, images_per_case, contoured_per_case, image_size, image_size,
                time.perf_counter() - started)
    return _result(root, cases)


def _is_complete(root, kwargs):
    if not marker_says_complete(root, "sunnybrook", _FORMAT_VERSION, kwargs):
        return False
    for case_id, series in synthetic_cases(kwargs["num_cases"]):
        folder = os.path.join(root, "images", case_id)
        if not os.path.isdir(folder) or len(os.listdir(folder)) != kwargs["images_per_case"]:
            return False
    return True


def reuse_or_write(name, root, kwargs, is_complete, result, write):
    """The synthetic dataset at `root`: reused when `is_complete(root, kwargs)`, else `write(root, **kwargs)`.

    Args:
        name: the dataset's name, for the log line.
        root: the dataset folder (made absolute).
        kwargs: the writer's keyword arguments, as recorded in the marker file.
        is_complete: `fn(root, kwargs) -> bool`, the marker and files check.
        result: `fn(root, kwargs)`, the description returned for a reused dataset.
        write: the writer.
    """
    root = os.path.abspath(os.fspath(root))
    if is_complete(root, kwargs):
        logger.info("reusing synthetic %s dataset in %s", name, root)
        return result(root, kwargs)
    return write(root, **kwargs)


def ensure_sunnybrook(root, num_cases=15, images_per_case=24, contoured_per_case=20, image_size=256, seed=0):
    """Make sure `root` holds the synthetic Sunnybrook dataset of these arguments; write it only if not.

    The dataset is reused when ``<root>/tfseg_synthetic.json`` (written last, atomically) records
    the same arguments and the image folders are complete; otherwise it is (re)written.

    Args:
        root: the dataset folder.
        num_cases, images_per_case, contoured_per_case, image_size, seed: as in `write_sunnybrook`.

    Returns:
        A `SyntheticSunnybrook`, the same as `write_sunnybrook` returns.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> a = ensure_sunnybrook(root, num_cases=1, images_per_case=2, contoured_per_case=1, image_size=48)
        >>> ensure_sunnybrook(root, num_cases=1, images_per_case=2, contoured_per_case=1, image_size=48) == a
        True
    """
    _check_args(num_cases, images_per_case, contoured_per_case, image_size, seed)
    kwargs = dict(num_cases=int(num_cases), images_per_case=int(images_per_case),
                  contoured_per_case=int(contoured_per_case), image_size=int(image_size), seed=int(seed))
    return reuse_or_write("Sunnybrook", root, kwargs, _is_complete,
                          lambda folder, _: _result(folder, synthetic_cases(num_cases)), write_sunnybrook)


# ----------------------------------------------------------------------------------------------
# BraTS: four skull-stripped MR modalities and a label map per case, in the releases' layouts.

#: Layouts `write_brats` can produce: the BraTS 2021, 2020 and 2018 (HGG/LGG) releases.
BRATS_LAYOUTS = ("2021", "2020", "2018")
BRATS_DATALIST = "datalist.json"
_BRATS_FORMAT_VERSION = 1
_BRATS_MAX_CASES = 999
_BRATS_MIN_SIZE, _BRATS_MAX_SIZE = 16, 512
_NAME_MAPPING_COLUMNS = ("Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
                         "BraTS_2019_subject_ID", "BraTS_2020_subject_ID")

# Relative signal of each tissue per modality (WM of T1 = 1), before gain, bias and noise.
#             csf   gm    wm    oedema necrosis enhancing non-enhancing(LGG core)
_CONTRAST = {
    "t1":    (0.25, 0.72, 1.00, 0.62, 0.30, 0.58, 0.48),
    "t1ce":  (0.25, 0.74, 1.00, 0.62, 0.30, 1.65, 0.50),
    "t2":    (1.60, 0.62, 0.45, 1.20, 1.45, 0.90, 1.30),
    "flair": (0.12, 0.72, 0.55, 1.50, 0.85, 1.10, 1.35),
}


@dataclasses.dataclass(frozen=True)
class SyntheticBrats:
    """Where a synthetic BraTS dataset lies.

    Attributes:
        root: the dataset folder (pass to `tfseg.datasets.brats.find_brats`).
        layout: the release layout written, one of `BRATS_LAYOUTS`.
        case_dirs: the case folders, in case order.
        cases: the `BratsCase` records, sorted by case id (what `find_brats(root)` returns).
        datalist: path of ``<root>/datalist.json`` (80/20 training/validation split by case).
    """

    root: str
    layout: str
    case_dirs: tuple
    cases: tuple
    datalist: str

    @property
    def case_ids(self):
        """The case ids, sorted."""
        return tuple(c.case_id for c in self.cases)

    def find(self, modalities=MODALITIES, on_error="raise", problems=None):
        """`find_brats` on this dataset."""
        return find_brats(self.root, modalities=modalities, on_error=on_error, problems=problems)


def brats_is_lgg(index):
    """Every fourth case is LGG-like: a non-enhancing tumour, no label 4."""
    return index % 4 == 3


def _brats_names(layout, index):
    """(grade folder or "", case id, extension) of case `index` in a layout, as the release names it."""
    if layout == "2021":
        return "", f"BraTS2021_{index:05d}", ".nii.gz"
    if layout == "2020":
        return "", f"BraTS20_Training_{index + 1:03d}", ".nii"
    lgg = brats_is_lgg(index)
    return ("LGG" if lgg else "HGG"), f"Brats18_{'TCIA09' if lgg else 'TCIA01'}_{index + 1:03d}_1", ".nii.gz"


def _brats_case_record(root, layout, index):
    grade_dir, case_id, ext = _brats_names(layout, index)
    folder = os.path.join(root, grade_dir, case_id)
    grade = None if layout == "2021" else ("LGG" if brats_is_lgg(index) else "HGG")
    images = tuple(os.path.join(folder, f"{case_id}_{m}{ext}") for m in MODALITIES)
    return folder, BratsCase(case_id, images, os.path.join(folder, f"{case_id}_seg{ext}"), grade)


def _check_brats_args(num_cases, shape, seed, layout):
    check_int("num_cases", num_cases, 1, _BRATS_MAX_CASES)
    check_int("seed", seed, 0, 2**63 - 1)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 3:
        raise ConfigError(f"shape must be three sizes (x, y, z), got {shape!r}")
    for size in shape:
        check_int("each size of shape", size, _BRATS_MIN_SIZE, _BRATS_MAX_SIZE)
    layout = str(layout)
    if layout not in BRATS_LAYOUTS:
        raise ConfigError(f"layout must be one of {BRATS_LAYOUTS}, got {layout!r}")
    return dict(num_cases=int(num_cases), shape=[int(s) for s in shape], seed=int(seed), layout=layout)


def _erode(mask):
    """Binary erosion by the 6-neighbourhood (voxels outside the grid count as outside)."""
    padded = np.pad(mask, 1)
    out = mask.copy()
    for axis in range(3):
        for start in (0, 2):
            index = [slice(1, -1)] * 3
            index[axis] = slice(start, start + mask.shape[axis])
            out &= padded[tuple(index)]
    return out


def _random_bumps(rng, count, amplitude, frequency):
    """Parameters of a smooth radial deformation: unit directions, frequencies, amplitudes, phases."""
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    amplitudes = rng.dirichlet(np.ones(count)) * amplitude  # the amplitudes sum to `amplitude`
    return [(directions[k], float(rng.uniform(*frequency)), float(amplitudes[k]), float(rng.uniform(0, 2 * math.pi)))
            for k in range(count)]


def _blob(grid, centre, axes, bumps):
    """Signed distance (voxels, positive inside) to a low-frequency deformed ellipsoid.

    The surface lies at normalized radius ``1 + sum a cos(f (d . v) + phi)`` along direction d, so
    the radius never strays more than the summed amplitudes from the ellipsoid's.
    """
    p = [(g - c) / a for g, c, a in zip(grid, centre, axes)]
    rho = np.sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) + np.float32(1e-6)
    radius = np.ones_like(rho)
    for direction, frequency, amplitude, phase in bumps:
        cosine = (p[0] * direction[0] + p[1] * direction[1] + p[2] * direction[2]) / rho
        radius += np.float32(amplitude) * np.cos(np.float32(frequency) * cosine + np.float32(phase))
    return (radius - rho) * np.float32(np.mean(axes))


def _smooth_field(grid, shape, rng, amplitude):
    """A smooth random field (second-order polynomial in normalized coordinates), mean about 0."""
    u = [g / np.float32(max(n / 2.0, 1.0)) for g, n in zip(grid, shape)]
    terms = [u[0], u[1], u[2], u[0] * u[0], u[1] * u[1], u[2] * u[2], u[0] * u[1], u[1] * u[2], u[0] * u[2]]
    coefficients = rng.normal(0.0, amplitude, len(terms)).astype(np.float32)
    return sum(c * t for c, t in zip(coefficients, terms))


def brats_case_arrays(shape, rng, lgg, small):
    """Draw one case: ``({modality: int16 (x, y, z)}, uint8 label (x, y, z))``."""
    size = np.asarray(shape, dtype=np.float32)
    axes_vec = [np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2.0) for n in shape]
    grid = np.meshgrid(*axes_vec, indexing="ij", copy=False)
    edge = 0.6

    # Intracranial volume (the skull-stripping mask): a deformed ellipsoid, longest front to back (y).
    brain_axes = size * np.array([0.36, 0.42, 0.40], np.float32) * np.float32(rng.uniform(0.92, 1.0))
    brain_centre = rng.normal(0.0, 0.015, 3) * size
    d_brain = _blob(grid, brain_centre, brain_axes, _random_bumps(rng, 4, 0.06, (1.0, 2.5)))
    brain = d_brain > 0
    brain_soft = _soft(d_brain, edge)
    rim = max(1.0, 0.05 * float(brain_axes.min()))  # subarachnoid CSF between brain surface and mask edge
    cerebrum = _soft(d_brain - rim, edge)
    wm = _soft(_blob(grid, brain_centre, brain_axes * 0.74, _random_bumps(rng, 6, 0.12, (5.0, 9.0))), edge)
    ventricles = np.zeros_like(d_brain)
    for side in (-1.0, 1.0):
        centre = brain_centre + brain_axes * np.array([0.17 * side, 0.05, 0.12], np.float32)
        blob = _blob(grid, centre, brain_axes * np.array([0.10, 0.42, 0.16], np.float32),
                     _random_bumps(rng, 3, 0.15, (1.0, 3.0)))
        ventricles = np.maximum(ventricles, _soft(blob, edge))
    fissure = np.exp(-0.5 * ((grid[0] - brain_centre[0]) / 0.7) ** 2) * _soft(grid[2] - brain_centre[2], 2.0)

    # Tumour: oedema around a core, necrosis inside an enhancing rim (HGG) or a non-enhancing core (LGG).
    side = rng.choice([-1.0, 1.0])
    tumour_centre = brain_centre + brain_axes * np.array(
        [side * rng.uniform(0.2, 0.45), rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3)], np.float32)
    reach = float(brain_axes.min())
    wt_radius = max(3.0, reach * (rng.uniform(0.18, 0.25) if small else rng.uniform(0.35, 0.55)))
    elongation = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    d_wt = _blob(grid, tumour_centre, wt_radius * elongation, _random_bumps(rng, 5, 0.25, (1.5, 4.0)))
    tc_radius = max(2.0, wt_radius * rng.uniform(0.5, 0.65))
    tc_centre = tumour_centre + rng.normal(0.0, 0.08, 3) * wt_radius
    d_tc = _blob(grid, tc_centre, tc_radius * elongation, _random_bumps(rng, 4, 0.15, (1.0, 3.0)))
    nec_radius = max(1.2, tc_radius * rng.uniform(0.55, 0.75))
    d_nec = _blob(grid, tc_centre + rng.normal(0.0, 0.05, 3) * tc_radius, nec_radius * elongation,
                  _random_bumps(rng, 3, 0.12, (1.0, 3.0)))

    def inside(distance, within):
        """Voxels with positive distance inside `within`; at least its deepest one when none is."""
        mask = (distance > 0) & within
        if not mask.any() and within.any():
            mask = within & (distance >= distance[within].max())
        return mask

    wt = inside(d_wt, brain)
    tc = inside(d_tc, _erode(wt))
    label = np.zeros(shape, np.uint8)
    label[wt] = 2
    if lgg:
        label[tc] = 1
    else:
        label[tc] = 4
        label[inside(d_nec, _erode(tc))] = 1

    # Soft tissue masks in painting order (later ones cover earlier ones), and each one's column.
    oedema = _soft(d_wt, edge) * brain_soft
    core = _soft(d_tc, edge) * oedema
    necrosis = _soft(d_nec, edge) * core
    layers = [(cerebrum, 1), (wm, 2), (ventricles * cerebrum, 0), (fissure * cerebrum, 0), (oedema, 3),
              (core, 6 if lgg else 5)]
    if not lgg:
        layers.append((necrosis, 4))

    bias = _smooth_field(grid, shape, rng, 0.08)
    texture = _smooth_field([g * 3.0 for g in grid], shape, rng, 0.02)  # slow tissue inhomogeneity
    noise_level = float(rng.uniform(0.02, 0.04))
    images = {}
    for modality in MODALITIES:
        values = _CONTRAST[modality]
        image = np.full(shape, values[0], np.float32)  # CSF fills the intracranial space
        for mask, column in layers:
            paint(image, mask, values[column])
        image *= brain_soft * np.exp(bias + _smooth_field(grid, shape, rng, 0.02) + texture)
        real = image + rng.normal(0.0, noise_level, shape).astype(np.float32)
        imaginary = rng.normal(0.0, noise_level, shape).astype(np.float32)
        image = np.sqrt(real * real + imaginary * imaginary)  # Rician magnitude noise
        gain = rng.uniform(300.0, 1200.0)
        stored = np.clip(np.rint(image * gain), 1, np.iinfo(np.int16).max).astype(np.int16)
        stored[~brain] = 0  # skull-stripped: exactly zero outside the brain mask
        images[modality] = stored
    return images, label


def brats_affine(shape, spacing=(1.0, 1.0, 1.0)):
    """The voxel-to-world affine of the synthetic BraTS files, laid out as the BraTS releases are.

    BraTS volumes are stored with ``diag(-1, -1, 1)`` axes (nibabel axis codes L, P, S: x runs to
    the patient's left, y to the back, z up), x offset 0 and y offset ``(ny - 1) * spacing``.

    Args:
        shape: the NIfTI array shape ``(x, y, z)``.
        spacing: voxel sizes in mm.

    Returns:
        A 4x4 float64 array.

    Example:
        >>> brats_affine((240, 240, 155))[:3, 3].tolist()
        [0.0, 239.0, 0.0]
    """
    sx, sy, sz = (float(s) for s in spacing)
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[1, 3] = sy * (shape[1] - 1)
    return affine


def _save_nifti(array, affine, path):
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)


def _write_name_mapping(root, records):
    """The 2020 release's ``name_mapping.csv`` (grade per case), with the columns it has."""
    path = os.path.join(root, "name_mapping.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(_NAME_MAPPING_COLUMNS)
        for record in records:
            writer.writerow([record.grade, "NA", "NA", "NA", "NA", record.case_id])


def _brats_datalist(root, records, seed):
    if len(records) < 2:
        sections = {"training": list(records), "validation": []}
    else:
        sections = datalist_from_cases(records, val_fraction=0.2, seed=seed)
    path = os.path.join(root, BRATS_DATALIST)
    write_datalist(path, sections)
    return path


def _brats_result(root, kwargs):
    pairs = [_brats_case_record(root, kwargs["layout"], k) for k in range(kwargs["num_cases"])]
    cases = sorted((record for _, record in pairs), key=lambda c: c.case_id)
    folders = {record.case_id: folder for folder, record in pairs}
    return SyntheticBrats(root=root, layout=kwargs["layout"], case_dirs=tuple(folders[c.case_id] for c in cases),
                          cases=tuple(cases), datalist=os.path.join(root, BRATS_DATALIST))


def write_brats(root, num_cases=8, shape=(64, 64, 48), seed=0, layout="2021"):
    """Write a synthetic BraTS dataset (four int16 NIfTI modalities + a uint8 label per case) from a seed.

    Each case is a skull-stripped head: a deformed-ellipsoid brain (grey matter over white matter
    with gyral folds, subarachnoid CSF at its edge, lateral ventricles, the interhemispheric
    fissure), exactly 0 outside the brain mask in every modality as in BraTS, and a tumour whose
    size (a third of the cases small) and position vary per case: irregular oedema (label 2)
    around a tumour core. In high-grade cases the core is an enhancing rim (4) around necrosis
    (1); every fourth case is LGG-like, its core non-enhancing (1), with no label 4. The regions
    nest by construction: TC lies strictly inside WT, and necrosis strictly inside the rim. The
    contrasts follow the sequences: T1 white matter brighter than grey, CSF dark; T1ce as T1 with
    a bright enhancing rim; T2 CSF and oedema bright; FLAIR oedema bright, CSF suppressed. A
    smooth multiplicative bias field and Rician noise are added, and each modality stored with
    its own gain.

    Files are NIfTI-1 in the release's axis order: the array shape is `shape` = (x, y, z) (in
    tfseg's channels-last memory order that is (z, y, x)), 1 mm isotropic voxels, the affine of
    `brats_affine` (qform and sform codes 1, units mm). Cases are independent of each other:
    case k is the same whatever `num_cases`.

    Layouts (`BRATS_LAYOUTS`): ``"2021"`` ``BraTS2021_00000/BraTS2021_00000_t1.nii.gz``;
    ``"2020"`` ``BraTS20_Training_001/BraTS20_Training_001_t1.nii`` plus ``name_mapping.csv``;
    ``"2018"`` ``HGG/Brats18_TCIA01_001_1/...nii.gz`` and ``LGG/Brats18_TCIA09_004_1/...``. A
    ``datalist.json`` (Clara style, paths relative to `root`) splits the cases 80/20 into
    training and validation.

    Args:
        root: the dataset folder (created if needed). It must be empty or hold a dataset written
            here before, which is replaced.
        num_cases: number of cases, 1 to 999.
        shape: volume size (x, y, z), each 16 to 512 (BraTS itself is 240 x 240 x 155).
        seed: integer seed; the same arguments give identical files.
        layout: ``"2021"``, ``"2020"`` or ``"2018"``.

    Returns:
        A `SyntheticBrats`.

    Raises:
        ConfigError: an argument out of range.
        DataError: `root` holds other files.

    Example:
        >>> import tempfile, nibabel
        >>> ds = write_brats(tempfile.mkdtemp(), num_cases=2, shape=(32, 32, 24))
        >>> ds.case_ids
        ('BraTS2021_00000', 'BraTS2021_00001')
        >>> nibabel.load(ds.cases[0].label).shape
        (32, 32, 24)
    """
    kwargs = _check_brats_args(num_cases, shape, seed, layout)
    root = os.path.abspath(os.fspath(root))
    os.makedirs(root, exist_ok=True)
    marker = read_marker(root)
    present = sorted(n for n in os.listdir(root) if not n.startswith(".") and n != MARKER_NAME)
    if present:
        if not marker or marker.get("dataset") != "brats":
            raise DataError(root, f"already holds {', '.join(present[:3])}{' ...' if len(present) > 3 else ''} "
                                  f"not written by write_brats (no BraTS {MARKER_NAME}); choose an empty folder")
        stray = [n for n in present if n not in marker.get("entries", [])]
        if stray:
            raise DataError(root, f"holds {', '.join(stray[:3])} beside a synthetic BraTS dataset; "
                                  "choose an empty folder")
        for name in present:
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    result = _brats_result(root, kwargs)
    entries = sorted({os.path.relpath(d, root).split(os.sep)[0] for d in result.case_dirs}
                     | {BRATS_DATALIST} | ({"name_mapping.csv"} if kwargs["layout"] == "2020" else set()))
    content = {"dataset": "brats", "version": _BRATS_FORMAT_VERSION, "kwargs": kwargs, "entries": entries}
    write_marker(root, {**content, "complete": False})
    started = time.perf_counter()
    shape = tuple(kwargs["shape"])
    affine = brats_affine(shape)
    for index in range(kwargs["num_cases"]):
        folder, record = _brats_case_record(root, kwargs["layout"], index)
        rng = np.random.default_rng([kwargs["seed"], index])
        images, label = brats_case_arrays(shape, rng, lgg=brats_is_lgg(index), small=index % 3 == 2)
        os.makedirs(folder, exist_ok=True)
        for modality, path in zip(MODALITIES, record.images):
            _save_nifti(images[modality], affine, path)
        _save_nifti(label, affine, record.label)
    if kwargs["layout"] == "2020":
        _write_name_mapping(root, result.cases)
    _brats_datalist(root, result.cases, kwargs["seed"])
    write_marker(root, {**content, "complete": True})
    logger.info("wrote synthetic BraTS %s dataset to %s: %d cases of %s in %.1f s", kwargs["layout"], root,
                kwargs["num_cases"], "x".join(map(str, shape)), time.perf_counter() - started)
    return result


def _brats_is_complete(root, kwargs):
    if not marker_says_complete(root, "brats", _BRATS_FORMAT_VERSION, kwargs):
        return False
    result = _brats_result(root, kwargs)
    files = [result.datalist] + [p for c in result.cases for p in c.images + (c.label,)]
    return all(os.path.isfile(p) for p in files)


def ensure_brats(root, num_cases=8, shape=(64, 64, 48), seed=0, layout="2021"):
    """Make sure `root` holds the synthetic BraTS dataset of these arguments; write it only if not.

    Reused when ``<root>/tfseg_synthetic.json`` (written last) records the same arguments and
    every case file and the datalist are present; otherwise (re)written by `write_brats`.

    Args:
        root, num_cases, shape, seed, layout: as in `write_brats`.

    Returns:
        A `SyntheticBrats`, the same as `write_brats` returns.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> a = ensure_brats(root, num_cases=1, shape=(16, 16, 16))
        >>> ensure_brats(root, num_cases=1, shape=(16, 16, 16)) == a
        True
    """
    kwargs = _check_brats_args(num_cases, shape, seed, layout)
    return reuse_or_write("BraTS", root, kwargs, _brats_is_complete, _brats_result, write_brats)
