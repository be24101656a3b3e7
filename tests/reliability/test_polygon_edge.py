"""Pixel centres on a vertex at the edge of the clipped box, coordinates beyond 1e12, long tokens."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import polygon2mask

from tfseg.errors import DataError
from tfseg.io.contours import polygon_to_mask, read_contour


def _skimage(points, shape):
    return polygon2mask(shape, np.asarray(points, dtype=np.float64)[:, ::-1])


def test_vertex_centre_when_the_clipped_box_is_empty():
    points = np.array([[3.0000000000000004, 1.0], [10.0, 0.0], [10.0, 2.0]])
    mask = polygon_to_mask(points, (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[1, 3] = True  # the centre (x=3, y=1) is within 1e-12 of the first vertex
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(mask, _skimage(points, (4, 4)))


def test_vertex_centre_just_below_the_box_rows():
    points = np.array([[1.0, 2.0 + 4e-16], [3.0, 9.0], [0.5, 9.0]])
    np.testing.assert_array_equal(polygon_to_mask(points, (3, 4)), _skimage(points, (3, 4)))
    assert polygon_to_mask(points, (3, 4))[2, 1]


_NUDGE = st.sampled_from([0.0, 4.4e-16, -4.4e-16, 8.9e-16, -8.9e-16, 1e-13, -1e-13])


@st.composite
def _near_lattice_polygons(draw):
    """Triangles/quads with vertices on or within rounding distance of pixel centres, often off the image."""
    n = draw(st.integers(3, 5))
    points = []
    for _ in range(n):
        x = draw(st.integers(-3, 9)) + draw(_NUDGE)
        y = draw(st.integers(-3, 9)) + draw(_NUDGE)
        points.append([x, y])
    return np.array(points)


@settings(max_examples=400, deadline=None)
@given(_near_lattice_polygons(), st.integers(1, 6), st.integers(1, 6))
def test_matches_skimage_near_vertices_and_edges(points, height, width):
    dx, dy = points[:, 0] - points[0, 0], points[:, 1] - points[0, 1]
    far = int(np.argmax(np.abs(dx) + np.abs(dy)))
    if np.abs(dx * dy[far] - dy * dx[far]).max() <= 2e-12 * (dx[far] ** 2 + dy[far] ** 2 + 1e-300):
        return  # degenerate polygons are empty in tfseg by design (see the module docstring)
    np.testing.assert_array_equal(polygon_to_mask(points, (height, width)), _skimage(points, (height, width)))


@pytest.mark.parametrize("token", ["1e13", "-2e12", "1000000000001"])
def test_read_contour_rejects_coordinates_beyond_1e12_with_file_and_line(tmp_path, token):
    path = tmp_path / "c.txt"
    path.write_text(f"1 2\n3 4\n{token} 5\n6 7\n")
    with pytest.raises(DataError, match=r"beyond \+-1e\+12 pixels") as info:
        read_contour(path)
    assert info.value.path == str(path) and info.value.line == 3


@pytest.mark.parametrize("token", ["9" * 400, "x" * 5000, "1" + "e" * 300])
def test_long_tokens_are_quoted_short(tmp_path, token):
    path = tmp_path / "c.txt"
    path.write_text(f"1 2\n3 {token}\n5 6\n")
    with pytest.raises(DataError) as info:
        read_contour(path)
    assert info.value.line == 2
    quoted = info.value.reason.split("'")[1]
    assert len(quoted) <= 80 and quoted.endswith("...")
    assert len(str(info.value)) < len(str(path)) + 200
