"""tfseg.datasets.shapes: the soft shapes both synthetic writers draw with."""
import math

import numpy as np
import pytest

from tfseg.datasets.shapes import Grid, check_int, ellipse, paint, soft_edge
from tfseg.errors import ConfigError


def test_grid_and_soft_edge():
    grid = Grid(4)
    assert grid.xx[1].tolist() == [0.0, 1.0, 2.0, 3.0] and grid.yy[:, 2].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert grid.terms.shape == (5, 4, 4) and grid.terms[0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert soft_edge(np.array([0.0]), 2.0)[0] == 0.5
    assert soft_edge(1.0, 2.0) == pytest.approx(0.5 + 0.5 * math.tanh(0.5))


def test_ellipse_by_hand_and_rotation():
    grid = Grid(21)
    centre, axes = (10.0, 10.0), (6.0, 3.0)
    mask = ellipse(grid.xx, grid.yy, centre, axes, width=1.0)
    # on the x axis 3 pixels in: rho = 0.5, distance (1 - 0.5) * sqrt(18)
    assert mask[10, 13] == pytest.approx(0.5 + 0.5 * math.tanh(0.5 * math.sqrt(18.0)), rel=1e-6)
    assert mask[10, 16] == pytest.approx(0.5)            # on the border
    turned = ellipse(grid.xx, grid.yy, centre, axes, width=1.0, angle=math.pi / 2)
    np.testing.assert_allclose(turned, mask.T, atol=1e-6)  # a quarter turn swaps the axes


def test_paint_scalar_and_per_channel():
    gray = np.full((2, 2), 4.0, np.float32)
    paint(gray, np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), 8.0)
    assert gray.tolist() == [[4.0, 6.0], [8.0, 5.0]]
    rgb = np.zeros((1, 2, 3), np.float32)
    paint(rgb, np.array([[1.0, 0.5]], np.float32), np.array([2.0, 4.0, 6.0], np.float32))
    assert rgb.tolist() == [[[2.0, 4.0, 6.0], [1.0, 2.0, 3.0]]]


def test_check_int():
    assert check_int("n", np.int64(3), 1, 5) == 3
    for bad in (True, 2.0, 0, 6, "3"):
        with pytest.raises(ConfigError, match="n must be an integer in"):
            check_int("n", bad, 1, 5)
