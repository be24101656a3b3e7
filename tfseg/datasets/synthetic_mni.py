"""A BraTS-2021-layout dataset built on the MNI152 brain template nilearn ships, for independent checks.

`tfseg.datasets.synthetic.write_brats` draws its heads from tfseg's own model of a brain; a
recipe tuned on those could do well for the wrong reasons. `write_mni_brats` starts instead from
real anatomy, nilearn's skull-stripped MNI152 T1 template at 2 mm (packaged with nilearn, no
download), resampled to a spacing other than BraTS' 1 mm (so volumes have another size and voxel
shape than the synthetic default), in RAS orientation (the BraTS releases are LPS-like), with one
tumour per case of varied size and position:

- whole tumour (WT): a deformed ellipsoid of random radii inside the brain (one, or up to
  `max_lesions`); oedema, label 2;
- tumour core (TC): the inner 55-65 % of it; an enhancing rim, label 4, around necrosis, label 1,
  so the labels nest (ET ⊂ TC ⊂ WT) as in BraTS;
- the four modalities derive from the template's contrast (T1 as is, T2/FLAIR inverted with CSF
  bright or suppressed), with the tumour's own signal per sequence (oedema bright in T2/FLAIR, the
  rim bright in T1ce), a smooth multiplicative bias field, Gaussian noise, a per-case gain, and
  exactly 0 outside the brain, stored as int16.

Files: ``<root>/BraTS2021_<NNNNN>/BraTS2021_<NNNNN>_{t1,t1ce,t2,flair,seg}.nii.gz`` and a Clara
datalist ``<root>/datalist.json`` (80/20 training/validation by case).

Example:
    >>> import tempfile
    >>> from tfseg.datasets.brats import find_brats
    >>> ds = write_mni_brats(tempfile.mkdtemp(), num_cases=2, seed=0, spacing=(8.0, 8.0, 8.0))
    >>> [c.case_id for c in find_brats(ds.root)]
    ['BraTS2021_00000', 'BraTS2021_00001']
    >>> ds.cases[0].label.endswith("BraTS2021_00000_seg.nii.gz")
    True
"""
import functools
import logging
import os

import numpy as np
from scipy import ndimage

from tfseg.datasets.brats import BratsCase
from tfseg.datasets.datalist import datalist_from_cases, write_datalist
from tfseg.datasets.synthetic import SyntheticBrats
from tfseg.errors import ConfigError, DataError
from tfseg.io.nifti import resample, to_memory, write_nifti
from tfseg.io.volume import Volume

logger = logging.getLogger(__name__)

#: Default voxel size in mm, memory order (dz, dy, dx): anisotropic and unlike BraTS' 1 mm.
DEFAULT_SPACING = (3.0, 2.75, 2.75)

_MODALITIES = ("t1", "t1ce", "t2", "flair")


@functools.lru_cache(maxsize=4)
def _template(spacing):
    """The MNI152 template resampled to `spacing` (memory order): (values in [0, 1], brain mask, affine)."""
    try:
        from nilearn.datasets import load_mni152_template
    except ImportError:  # pragma: no cover - nilearn is in the test extra
        raise ConfigError("write_mni_brats needs nilearn (pip install nilearn)") from None
    image = load_mni152_template(resolution=2)
    data = to_memory(np.asarray(image.get_fdata(), np.float32))
    volume = resample(Volume(data, np.asarray(image.affine, np.float64)), spacing, order=1)
    values = np.clip(volume.array / max(float(volume.array.max()), 1e-6), 0.0, 1.0)
    mask = ndimage.binary_fill_holes(values > 0.08)
    return values.astype(np.float32), mask, volume.affine


def _lesion(rng, mask, spacing, radius_mm):
    """A deformed ellipsoid inside `mask`: the normalized distance field (< 1 inside the tumour)."""
    spacing = np.asarray(spacing)
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    radii = rng.uniform(radius_mm[0], radius_mm[1]) * rng.uniform(0.75, 1.25, size=3)
    inside = np.argwhere(depth > radii.max() * 0.9)
    if not len(inside):
        inside = np.argwhere(depth >= depth.max() * 0.8)
    centre = inside[rng.integers(len(inside))]
    grid = np.indices(mask.shape, dtype=np.float32)
    offsets = [(grid[a] - centre[a]) * spacing[a] / radii[a] for a in range(3)]
    distance = np.sqrt(sum(o * o for o in offsets))
    # low-frequency deformation: a few random sinusoids of the position, +-15 %
    wobble = sum(rng.uniform(-0.05, 0.05) * np.sin(rng.uniform(1.5, 3.0) * offsets[a] + rng.uniform(0, 6.3))
                 for a in range(3) for _ in range(2))
    return distance * (1.0 + wobble)


def _bias_field(rng, shape, strength):
    """A smooth multiplicative field around 1 (a random linear-plus-quadratic polynomial)."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    grid = np.meshgrid(*axes, indexing="ij")
    field = sum(rng.uniform(-1, 1) * g + 0.5 * rng.uniform(-1, 1) * g * g for g in grid)
    return 1.0 + strength * field / 3.0


_RANK = {0: 0, 2: 1, 4: 2, 1: 3}  # where lesions overlap, the inner label wins: necrosis > rim > oedema


def _labels(rng, mask, spacing, radius_mm, max_lesions):
    """The label map of 1 to `max_lesions` nested tumours (oedema 2, enhancing rim 4, necrosis 1)."""
    label = np.zeros(mask.shape, np.uint8)
    for _ in range(int(rng.integers(1, max_lesions + 1))):
        distance = _lesion(rng, mask, spacing, radius_mm)
        core = rng.uniform(0.55, 0.65)
        necrosis = core * rng.uniform(0.4, 0.6)
        lesion = np.zeros(mask.shape, np.uint8)
        lesion[distance < 1.0] = 2
        lesion[distance < core] = 4
        lesion[distance < necrosis] = 1
        ranks = np.vectorize(_RANK.get, otypes=[np.uint8])
        label = np.where(ranks(lesion) > ranks(label), lesion, label).astype(np.uint8)
    label[~mask] = 0
    return label


def _case(rng, values, mask, spacing, radius_mm, noise, bias, max_lesions=1, soft_border=0.0, jitter=0.0):
    """One case: ({modality: int16 array}, uint8 label map)."""
    label = _labels(rng, mask, spacing, radius_mm, max_lesions)
    csf = mask & (values < 0.35)
    inverted = np.where(mask, 1.15 - values, 0.0)
    tissue = {
        "t1": values.copy(),
        "t1ce": values.copy(),
        "t2": inverted.copy(),
        "flair": np.where(csf, 0.2, inverted * 0.9),
    }
    signal = {  # (oedema, enhancing rim, necrosis) intensities per sequence
        "t1": (0.55, 0.6, 0.3), "t1ce": (0.6, 1.3, 0.3), "t2": (1.25, 0.9, 1.4), "flair": (1.3, 1.0, 0.7)}
    # each class's share of a voxel's signal: hard edges, or blurred into the neighbours (soft borders)
    weights = [(label == value).astype(np.float32) for value in (2, 4, 1)]
    if soft_border > 0:
        weights = [ndimage.gaussian_filter(w, soft_border) * mask for w in weights]
    tumour = np.clip(sum(weights), 0.0, 1.0)
    images = {}
    for name in _MODALITIES:
        levels = [level * (1.0 + rng.uniform(-jitter, jitter)) if jitter else level for level in signal[name]]
        image = tissue[name] * (1.0 - tumour) + sum(w * level for w, level in zip(weights, levels))
        image = image * _bias_field(rng, mask.shape, bias)
        image = image + rng.normal(0.0, noise, size=mask.shape)
        image = np.clip(image, 0.0, None) * rng.uniform(600.0, 1400.0)
        image[~mask] = 0
        images[name] = np.round(image).astype(np.int16)
    return images, label


def write_mni_brats(root, num_cases=6, seed=0, spacing=DEFAULT_SPACING, radius_mm=(12.0, 30.0), noise=0.04,
                    bias=0.25, val_fraction=0.2, max_lesions=1, soft_border=0.0, intensity_jitter=0.0):
    """Write a BraTS-2021-layout dataset from the MNI152 template: four modalities and labels per case.

    Args:
        root: the dataset folder, created if needed; it must not already hold files other than a
            dataset written here (which is then replaced case by case).
        num_cases: number of cases, 1 to 99999.
        seed: integer seed; the same arguments give identical files, and case k is the same
            whatever `num_cases`.
        spacing: voxel size in mm, memory order `(dz, dy, dx)` (one number: isotropic); the
            template's 198 x 234 x 190 mm field of view gives the shape (e.g. 3 x 2.75 x 2.75 mm:
            63 x 85 x 72 voxels in memory order).
        radius_mm: range of the whole tumour's mean radius in mm.
        noise: Gaussian noise, as a fraction of the white-matter intensity.
        bias: strength of the multiplicative bias field (0: none).
        val_fraction: share of the cases in the datalist's ``"validation"`` section.
        max_lesions: each case gets 1 to this many tumours (overlaps keep the inner label).
        soft_border: Gaussian sigma in voxels blurring the tumour's signal into its surroundings
            (0: sharp edges); the labels stay sharp, so the image no longer shows them exactly.
        intensity_jitter: each case's tumour intensities vary by up to this fraction.

    For a harder set (small lesions, about a hundred to a few hundred voxels of TC/ET at the default
    spacing; soft borders; varied intensities; strong bias and noise) pass e.g.
    ``radius_mm=(10, 20), max_lesions=2, soft_border=1.0, intensity_jitter=0.25, bias=0.4, noise=0.08``.

    Returns:
        A `tfseg.datasets.synthetic.SyntheticBrats` (root, layout "2021", case folders, `BratsCase`
        records, datalist path).

    Raises:
        ConfigError: an argument out of range, or nilearn missing.
        DataError: `root` holds files that are not BraTS cases written here.

    Example:
        >>> import tempfile, nibabel
        >>> ds = write_mni_brats(tempfile.mkdtemp(), num_cases=1, spacing=8.0)
        >>> nibabel.load(ds.cases[0].images[0]).shape, nibabel.aff2axcodes(nibabel.load(ds.cases[0].label).affine)
        ((25, 29, 24), ('R', 'A', 'S'))
    """
    if isinstance(num_cases, bool) or not isinstance(num_cases, (int, np.integer)) or not 1 <= num_cases <= 99999:
        raise ConfigError(f"num_cases must be an integer from 1 to 99999, got {num_cases!r}")
    spacing_values = np.broadcast_to(np.asarray(spacing, np.float64), (3,))
    if not np.all(np.isfinite(spacing_values)) or np.any(spacing_values < 0.5) or np.any(spacing_values > 16):
        raise ConfigError(f"spacing must be one or three sizes from 0.5 to 16 mm, got {spacing!r}")
    if not (len(radius_mm) == 2 and 0 < radius_mm[0] <= radius_mm[1]):
        raise ConfigError(f"radius_mm must be (low, high) with 0 < low <= high, got {radius_mm!r}")
    if isinstance(max_lesions, bool) or not isinstance(max_lesions, (int, np.integer)) or not 1 <= max_lesions <= 8:
        raise ConfigError(f"max_lesions must be an integer from 1 to 8, got {max_lesions!r}")
    if not (soft_border >= 0 and 0 <= intensity_jitter < 1 and noise >= 0 and bias >= 0):
        raise ConfigError("soft_border, noise and bias must be >= 0 and intensity_jitter in [0, 1)")
    root = os.path.abspath(os.fspath(root))
    os.makedirs(root, exist_ok=True)
    stray = [n for n in os.listdir(root) if not n.startswith(".") and n != "datalist.json"
             and not n.startswith("BraTS2021_")]
    if stray:
        raise DataError(root, f"holds {', '.join(sorted(stray)[:3])}; write_mni_brats needs an empty folder")
    values, mask, affine = _template(tuple(float(s) for s in spacing_values))
    cases, case_dirs = [], []
    for index in range(num_cases):
        case_id = f"BraTS2021_{index:05d}"
        rng = np.random.default_rng([int(seed), index])
        images, label = _case(rng, values, mask, spacing_values, radius_mm, noise, bias, max_lesions, soft_border,
                              intensity_jitter)
        folder = os.path.join(root, case_id)
        os.makedirs(folder, exist_ok=True)
        paths = tuple(write_nifti(os.path.join(folder, f"{case_id}_{name}.nii.gz"), images[name], affine)
                      for name in _MODALITIES)
        label_path = write_nifti(os.path.join(folder, f"{case_id}_seg.nii.gz"), label, affine, dtype=np.uint8)
        cases.append(BratsCase(case_id, paths, label_path))
        case_dirs.append(folder)
    datalist = os.path.join(root, "datalist.json")
    sections = (datalist_from_cases(cases, val_fraction=val_fraction, seed=seed) if num_cases > 1
                else {"training": cases})
    write_datalist(datalist, sections)
    logger.info("wrote %d MNI152-based BraTS cases of shape %s at %s mm to %s", num_cases, values.shape,
                tuple(spacing_values), root)
    return SyntheticBrats(root=root, layout="2021", case_dirs=tuple(case_dirs), cases=tuple(cases),
                          datalist=datalist)
