"""Soft-edged shapes for the synthetic datasets: a pixel grid, ellipses, painting with partial volume.

Shapes are soft masks in [0, 1] (the fraction of a pixel inside the shape), so painted images
have the partial-volume edges of a real scan. Shared by `tfseg.datasets.synthetic` (Sunnybrook,
BraTS) and `tfseg.datasets.synthetic_lgg`.

Example:
    >>> grid = Grid(5)
    >>> mask = ellipse(grid.xx, grid.yy, (2.0, 2.0), (1.5, 1.5), width=0.5)
    >>> image = np.zeros((5, 5), np.float32)
    >>> paint(image, mask, 10.0)
    >>> [round(float(v), 1) for v in image[2]]
    [1.2, 8.8, 10.0, 8.8, 1.2]
"""
import math

import numpy as np

from tfseg.errors import ConfigError

__all__ = ["Grid", "check_int", "ellipse", "paint", "soft_edge"]


def check_int(name, value, low, high):
    """`value` as an int when it is an integer in `[low, high]`, else ConfigError naming `name`.

    Example:
        >>> check_int("num_cases", 3, 1, 10)
        3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


class Grid:
    """Pixel-centre coordinates (x = column, y = row) and bias-field terms for one square image size.

    Attributes:
        size: the image side in pixels.
        xx, yy: float32 `(size, size)` column and row coordinates.
        terms: float32 `(5, size, size)`: x, y, x², xy, y² with x and y scaled to [-1, 1).
    """

    def __init__(self, size):
        self.size = size
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32)
        x = self.xx / (size / 2.0) - 1.0
        y = self.yy / (size / 2.0) - 1.0
        self.terms = np.stack([x, y, x * x, x * y, y * y])


def soft_edge(distance, width):
    """Soft inside-ness `0.5 + 0.5 tanh(distance / width)` of a signed distance (positive inside).

    Example:
        >>> soft_edge(np.array([-10.0, 0.0, 10.0]), 1.0).round(3).tolist()
        [0.0, 0.5, 1.0]
    """
    return 0.5 + 0.5 * np.tanh(distance / width)


def ellipse(xx, yy, centre, axes, width, angle=0.0):
    """Soft mask of an ellipse (an approximate signed distance through `soft_edge`).

    Args:
        xx, yy: pixel coordinates (`Grid.xx`, `Grid.yy`).
        centre: `(x, y)` in pixels.
        axes: semi-axes `(a, b)` in pixels, along x and y before the rotation.
        width: edge width passed to `soft_edge`.
        angle: rotation in radians.

    Returns:
        The soft mask, the shape of `xx`.
    """
    dx, dy = xx - centre[0], yy - centre[1]
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = dx * c + dy * s, dy * c - dx * s
    u = dx / axes[0]
    v = dy / axes[1]
    rho = np.sqrt(u * u + v * v)
    return soft_edge((1.0 - rho) * math.sqrt(axes[0] * axes[1]), width)


def paint(image, weight, value):
    """Paint `value` over `image` in place, where the soft `weight` says: `image += weight * (value - image)`.

    Args:
        image: float32 array, `(H, W)`, `(H, W, C)` or a volume.
        weight: soft mask of the image's shape, or of its spatial shape when `value` is per channel.
        value: a number (taken as float32) or a per-channel array.
    """
    weight = np.asarray(weight)
    if weight.ndim < image.ndim:
        weight = weight[..., None]
    value = np.float32(value) if np.ndim(value) == 0 else value
    image += weight * (value - image)
