"""The BraTS-2D (workflow W3) augmentation chain and its deterministic preprocessing.

The W3 chain, `augment_brats2d`, on a patch `(H, W, 3)` of raw FLAIR/T1c/T2 intensities (zero
outside the brain) and its label map `(H, W)`:

1. centre pad/crop to `patch_size`;
2. with probability `spatial_probability`, one of (relative chances `spatial_weights`): a flip of
   each of `flip_axes` with probability `flip_probability` (default: left-right, 0.5), affine
   (rotation ±`degrees`, zoom per axis in `scale`), anisotropy (`anisotropy` factor range, H or W
   axis), elastic (`elastic_control_points`, `elastic_max_displacement` pixels);
3. percentile stretch (`percentiles`) of each channel to [-1, 1] inside the brain mask (pixels
   where any channel of the spatially transformed raw image is non-zero); outside is -1;
4. with probability `intensity_probability`, one of: Gaussian noise (std drawn in
   [0, `noise_std`]) or bias field (coefficients in ±`bias_coefficients`), applied inside the
   brain mask only, so the background stays exactly -1.

Label remapping (BraTS 4 -> 3) is not done here (see `tfseg.data.transforms.labels`).

Example:
    >>> import tensorflow as tf
    >>> image = tf.pad(tf.random.stateless_uniform((100, 90, 3), seed=(0, 1)) + 1.0, [[14, 14], [19, 19], [0, 0]])
    >>> label = tf.zeros((128, 128), tf.int32)
    >>> img, lab = augment_brats2d(image, label, seed=(4, 2), config=Brats2DAugmentation(patch_size=96))
    >>> tuple(img.shape), tuple(lab.shape), float(img[0, 0, 0])
    ((96, 96, 3), (96, 96), -1.0)
"""
import dataclasses

import tensorflow as tf

from tfseg.data.transforms.artifacts import random_bias_field, random_noise
from tfseg.data.transforms.compose import one_of
from tfseg.data.transforms.deform import random_affine, random_anisotropy, random_elastic
from tfseg.data.transforms.intensity import brain_mask, percentile_stretch
from tfseg.data.transforms.spatial import check_size_2d, flip, pad_or_crop
from tfseg.errors import ConfigError

__all__ = ["Brats2DAugmentation", "augment_brats2d", "preprocess_brats2d"]


@dataclasses.dataclass(frozen=True)
class Brats2DAugmentation:
    """Settings of the W3 augmentation chain (see the module notes; defaults from the workflow).

    Example:
        >>> Brats2DAugmentation(patch_size=64).patch_size
        64
    """

    patch_size: int = 128  # or (height, width)
    spatial_probability: float = 0.95
    degrees: float = 20.0
    scale: tuple = (0.9, 1.1)
    anisotropy: tuple = (1.5, 2.5)
    elastic_control_points: int = 7
    elastic_max_displacement: float | tuple = 7.5  # or (along H, along W)
    flip_probability: float = 0.5
    flip_axes: tuple = (1,)  # 0: up-down, 1: left-right; each flipped with flip_probability
    spatial_weights: tuple = (1.0, 1.0, 1.0, 1.0)  # flip, affine, anisotropy, elastic
    intensity_probability: float = 0.95
    noise_std: float = 0.1
    bias_coefficients: float = 0.1
    bias_order: int = 3
    percentiles: tuple = (0.5, 99.5)

    def __post_init__(self):
        check_size_2d(self.patch_size, "patch_size")
        for name in ("spatial_probability", "intensity_probability", "flip_probability"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        for name in ("degrees", "noise_std", "bias_coefficients"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        displacement = self.elastic_max_displacement
        if min(float(v) for v in (displacement if isinstance(displacement, (tuple, list)) else [displacement])) < 0:
            raise ConfigError(f"elastic_max_displacement must be >= 0, got {displacement!r}")
        if not set(self.flip_axes) <= {0, 1}:
            raise ConfigError(f"flip_axes must be in-plane axes 0 and/or 1, got {self.flip_axes!r}")
        weights = [float(w) for w in self.spatial_weights]
        if len(weights) != 4 or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"spatial_weights must be 4 non-negative numbers (flip, affine, anisotropy, elastic) "
                              f"with a positive sum, got {self.spatial_weights!r}")
        low, high = (float(v) for v in self.scale)
        if not 0 < low <= high:
            raise ConfigError(f"scale must be a range 0 < low <= high, got {self.scale!r}")
        low, high = (float(v) for v in self.anisotropy)
        if not 1.0 <= low <= high:
            raise ConfigError(f"anisotropy must be a range 1 <= low <= high, got {self.anisotropy!r}")
        if int(self.elastic_control_points) < 4:
            raise ConfigError(f"elastic_control_points must be >= 4, got {self.elastic_control_points!r}")
        if int(self.bias_order) < 0:
            raise ConfigError(f"bias_order must be >= 0, got {self.bias_order!r}")
        low, high = (float(v) for v in self.percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles!r}")


def spatial_branches(config):
    """The spatial OneOf's branches `(image, label, seed) -> (image, label)`: flip, affine, anisotropy, elastic."""
    def flip_branch(image, label, seed):
        draws = tf.random.stateless_uniform([2], seed=seed) < config.flip_probability
        vertical = tf.logical_and(draws[0], 0 in config.flip_axes)
        horizontal = tf.logical_and(draws[1], 1 in config.flip_axes)
        return flip(image, label, horizontal, vertical)

    def affine_branch(image, label, seed):
        return random_affine(image, label, seed, degrees=config.degrees, scale=tuple(config.scale))

    def anisotropy_branch(image, label, seed):
        return random_anisotropy(image, label, seed, downsampling=tuple(config.anisotropy))

    def elastic_branch(image, label, seed):
        return random_elastic(image, label, seed, control_points=config.elastic_control_points,
                              max_displacement=tuple(config.elastic_max_displacement)[:2]
                              if isinstance(config.elastic_max_displacement, (tuple, list))
                              else config.elastic_max_displacement)

    return [flip_branch, affine_branch, anisotropy_branch, elastic_branch]


def _intensity_branches(config, mask):
    def noise_branch(image, label, seed):
        return random_noise(image, seed, std=config.noise_std, mask=mask), label

    def bias_branch(image, label, seed):
        return random_bias_field(image, seed, config.bias_coefficients, config.bias_order, mask=mask), label

    return [noise_branch, bias_branch]


def _stretch(image, config):
    """Percentile stretch to [-1, 1] inside the brain mask; returns `(image, mask)`."""
    mask = brain_mask(image)
    low, high = config.percentiles
    return percentile_stretch(image, mask, low, high, -1.0, 1.0), mask


def augment_brats2d(image, label, seed, config=None):
    """The W3 training augmentation of one patch (see the module notes for the chain).

    Args:
        image: float `(H, W, C)`, raw intensities, zero outside the brain.
        label: integer `(H, W)` label map.
        seed: stateless seed, shape `(2,)` (e.g. from `tf.data.Dataset.random(...).batch(2)`).
        config: a `Brats2DAugmentation` (default settings when None).

    Returns:
        `(image float32 (P, P, C), label (P, P))` with `P = config.patch_size`, label dtype kept.
    """
    config = config or Brats2DAugmentation()
    size = check_size_2d(config.patch_size, "patch_size")
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    image, label = pad_or_crop(tf.cast(image, tf.float32), label, size)
    image, label = one_of(image, label, seeds[0], spatial_branches(config), config.spatial_probability,
                          weights=tuple(config.spatial_weights))
    image, mask = _stretch(image, config)
    image, label = one_of(image, label, seeds[1], _intensity_branches(config, mask), config.intensity_probability)
    return image, label


def preprocess_brats2d(image, label=None, config=None):
    """The W3 deterministic preprocessing (validation, inference): pad/crop, then percentile stretch.

    Args:
        image: float `(H, W, C)`, raw intensities.
        label: integer `(H, W)` or None.
        config: a `Brats2DAugmentation` (for `patch_size` and `percentiles`).

    Returns:
        `(image, label)` as `augment_brats2d` returns them, without any randomness.
    """
    config = config or Brats2DAugmentation()
    image, label = pad_or_crop(tf.cast(image, tf.float32), label, check_size_2d(config.patch_size, "patch_size"))
    image, _ = _stretch(image, config)
    return image, label
