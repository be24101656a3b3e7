"""Tests for tfseg.io.contours: Sunnybrook contour files and polygon rasterization."""
import numpy as np
import pytest
from skimage.draw import polygon2mask

from tfseg.errors import DataError
from tfseg.io.contours import polygon_area, polygon_to_mask, read_contour, write_contour


def _write(tmp_path, data, name="IM-0001-0048-icontour-manual.txt"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("ascii"))
    return path


def _skimage_mask(points, shape):
    return polygon2mask(shape, np.asarray(points, dtype=np.float64)[:, ::-1])


def _star(rng, n, centre, r_min, r_max):
    """A star-shaped polygon around `centre`: sorted angles, random radii, float vertices."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(r_min, r_max, n)
    return np.c_[centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)]


# --- read_contour: accepted files -------------------------------------------------------------

def test_read_plain_file(tmp_path):
    path = _write(tmp_path, "120.50 98.00\n121.00 99.50\n119.00 100.00\n")
    points = read_contour(path)
    assert points.dtype == np.float64
    np.testing.assert_array_equal(points, [[120.5, 98.0], [121.0, 99.5], [119.0, 100.0]])


@pytest.mark.parametrize("text", [
    "1\t2\n3\t4\n5\t6\n",                       # tabs
    "  1   2  \n\n3 4\n   \n\n5 6\n\n",           # extra spaces, blank lines, whitespace-only line
    "1 2\r\n3 4\r\n5 6\r\n",                      # CRLF
    "1 2\r3 4\r5 6",                              # old Mac CR, no final newline
    "1e0 2.0E0\n.3e1 +4\n5. 6e+0\n",              # scientific notation and short forms
    "\ufeff1 2\n3 4\n5 6\n",                      # UTF-8 byte order mark
])
def test_read_tolerated_whitespace_and_notation(tmp_path, text):
    path = _write(tmp_path, text.encode("utf-8"))
    np.testing.assert_array_equal(read_contour(path), [[1, 2], [3, 4], [5, 6]])


def test_read_negative_and_large_values(tmp_path):
    path = _write(tmp_path, "-1.5 2\n1.2e2 -3e-1\n0 0\n")
    np.testing.assert_array_equal(read_contour(path), [[-1.5, 2], [120, -0.3], [0, 0]])


# --- read_contour: rejected files name the file and the line ----------------------------------

@pytest.mark.parametrize("text, line, words", [
    ("1 2\n3\n5 6\n", 2, "expected two numbers"),          # one number
    ("1 2\n3 4\n5 6 7\n", 3, "expected two numbers"),      # three numbers
    ("1 2\n3 4\nx 6\n", 3, "'x' is not a number"),         # not a number
    ("1 2\n3 abc\n5 6\n", 2, "'abc' is not a number"),
    ("1 2\n3 4\n5 1.2.3\n", 3, "'1.2.3' is not a number"),  # number characters, malformed
    ("1 2\n3 1e\n5 6\n", 2, "'1e' is not a number"),
    ("1 2\n3 4\nnan 6\n", 3, "not a finite number"),       # NaN
    ("1 2\ninf 4\n5 6\n", 2, "not a finite number"),       # infinity
    ("1 2\n3 4\n5 1e999\n", 3, "not a finite number"),     # overflows to infinity
    ("1 2\r\n3 4\r\n5;6\r\n", 3, "not a number"),          # CRLF keeps line numbers right
    ("\n\n1 2\n3 4\n1_000 6\n", 5, "not a number"),        # blank lines still count
])
def test_read_rejects_bad_line(tmp_path, text, line, words):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_contour(path)
    assert info.value.line == line
    assert info.value.path == str(path)
    assert words in info.value.reason
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("text, words", [
    ("", "no points"),
    ("\n  \n\t\n", "no points"),
    ("1 2\n3 4\n", "at least 3 points, found 2"),
])
def test_read_rejects_too_few_points(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=words) as info:
        read_contour(path)
    assert info.value.path == str(path)


def test_read_rejects_undecodable_bytes_with_line(tmp_path):
    path = _write(tmp_path, b"1 2\n3 4\n5 \xff6\n")
    with pytest.raises(DataError, match="not ASCII") as info:
        read_contour(path)
    assert info.value.line == 3
    assert str(path) in str(info.value)


def test_read_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="file not found") as info:
        read_contour(tmp_path / "missing.txt")
    assert "missing.txt" in str(info.value)
    with pytest.raises(DataError, match="folder"):
        read_contour(tmp_path)


# --- write_contour ----------------------------------------------------------------------------

def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    points = _star(rng, 80, (128.0, 110.0), 10, 25)
    path = write_contour(tmp_path / "c.txt", points, decimals=3)
    back = read_contour(path)
    assert back.shape == points.shape
    np.testing.assert_allclose(back, points, atol=0.5e-3 + 1e-12)
    np.testing.assert_array_equal(back, np.array([[float(f"{v:.3f}") for v in p] for p in points]))


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("old content")
    write_contour(path, [[1, 2], [3, 4.25], [5, 2]])
    assert path.read_text().splitlines() == ["1.00 2.00", "3.00 4.25", "5.00 2.00"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]  # no temporary left behind


def test_write_rejects_bad_points(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        write_contour(tmp_path / "c.txt", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least 3"):
        write_contour(tmp_path / "c.txt", [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="point 1"):
        write_contour(tmp_path / "c.txt", [[0, 0], [np.nan, 1], [2, 0]])
    with pytest.raises(ValueError, match="decimals"):
        write_contour(tmp_path / "c.txt", [[0, 0], [1, 1], [2, 0]], decimals=-1)
    assert not (tmp_path / "c.txt").exists()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match="cannot write") as info:
        write_contour(tmp_path / "a_file" / "c.txt", [[0, 0], [1, 1], [2, 0]])
    assert "a_file" in str(info.value)


def test_write_creates_missing_folders(tmp_path):
    path = write_contour(tmp_path / "case" / "expert" / "c.txt", [[0, 0], [1, 1], [2, 0]])
    assert read_contour(path).shape == (3, 2)


# --- polygon_to_mask: exact areas -------------------------------------------------------------

def test_half_integer_rectangle_covers_its_area():
    # x in [1.5, 5.5] -> columns 2..5, y in [2.5, 4.5] -> rows 3..4
    rect = np.array([[1.5, 2.5], [5.5, 2.5], [5.5, 4.5], [1.5, 4.5]])
    mask = polygon_to_mask(rect, (8, 9))
    expected = np.zeros((8, 9), bool)
    expected[3:5, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == polygon_area(rect) == 8.0


def test_integer_rectangle_is_closed():
    # Edges through pixel centres are in: x in [1, 5] covers the 5 columns 1..5.
    rect = np.array([[1.0, 1.0], [5.0, 1.0], [5.0, 3.0], [1.0, 3.0]])
    expected = np.zeros((6, 7), bool)
    expected[1:4, 1:6] = True
    np.testing.assert_array_equal(polygon_to_mask(rect, (6, 7)), expected)


def test_right_triangle():
    # Legs along x = -0.5 and y = -0.5, hypotenuse x + y = 9: centre (j, i) is inside when
    # i + j <= 9 (on the hypotenuse counts), so row i holds 10 - i pixels.
    tri = np.array([[-0.5, -0.5], [9.5, -0.5], [-0.5, 9.5]])
    mask = polygon_to_mask(tri, (12, 12))
    rows, cols = np.indices(mask.shape)
    np.testing.assert_array_equal(mask, rows + cols <= 9)
    assert mask.sum() == 55


def test_polygon_wholly_outside_gives_empty_mask():
    for offset in [(-50, 0), (50, 0), (0, -50), (0, 50)]:
        square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float) + offset
        assert not polygon_to_mask(square, (20, 20)).any()


def test_polygon_clipped_at_the_border():
    # The rectangle x in [-3.5, 2.5], y in [6.5, 12.5] on a 10x10 image: cols 0..2, rows 7..9.
    rect = np.array([[-3.5, 6.5], [2.5, 6.5], [2.5, 12.5], [-3.5, 12.5]])
    mask = polygon_to_mask(rect, (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[7:, :3] = True
    np.testing.assert_array_equal(mask, expected)
    # A polygon covering the whole image fills it.
    huge = np.array([[-1e6, -1e6], [1e6, -1e6], [1e6, 1e6], [-1e6, 1e6]])
    assert polygon_to_mask(huge, (7, 5)).all()


def test_degenerate_polygons_give_empty_mask():
    line = np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])
    assert not polygon_to_mask(line, (12, 12)).any()
    back_and_forth = np.array([[1.0, 2.0], [7.5, 2.0], [3.0, 2.0], [1.0, 2.0]])
    assert not polygon_to_mask(back_and_forth, (5, 9)).any()
    point = np.array([[3.0, 3.0]] * 4)
    assert not polygon_to_mask(point, (6, 6)).any()


# --- polygon_to_mask: even-odd ----------------------------------------------------------------

def test_bowtie_is_two_triangles():
    # Edges x = 0.25, y = x, x = 10.25, x + y = 10.5, crossing at (5.25, 5.25) (not a pixel
    # centre): the even-odd fill is the left and the right triangle, not the top and bottom ones.
    # Centres on the diagonal y = x lie on an edge, so they are in.
    bowtie = np.array([[0.25, 0.25], [10.25, 10.25], [10.25, 0.25], [0.25, 10.25]])
    mask = polygon_to_mask(bowtie, (12, 12))
    rows, cols = np.indices(mask.shape)
    left = (cols >= 1) & (rows >= cols) & (rows + cols <= 10)
    right = (cols <= 10) & (rows <= cols) & (rows + cols >= 11)
    np.testing.assert_array_equal(mask, left | right)
    np.testing.assert_array_equal(mask, _skimage_mask(bowtie, (12, 12)))
    assert polygon_area(bowtie) == 0.0  # the two loops have opposite orientation


def test_two_nested_loops_make_a_ring():
    # One polyline: the outer square, a jump to the inner square, the inner square, and back.
    outer = [[0.5, 0.5], [9.5, 0.5], [9.5, 9.5], [0.5, 9.5], [0.5, 0.5]]
    inner = [[3.5, 3.5], [3.5, 6.5], [6.5, 6.5], [6.5, 3.5], [3.5, 3.5]]
    mask = polygon_to_mask(np.array(outer + inner), (11, 11))
    expected = np.zeros((11, 11), bool)
    expected[1:10, 1:10] = True
    expected[4:7, 4:7] = False
    np.testing.assert_array_equal(mask, expected)


# --- polygon_to_mask: the same rule as scikit-image -------------------------------------------

def test_matches_skimage_on_random_star_polygons():
    rng = np.random.default_rng(2024)
    for _ in range(50):
        n = int(rng.integers(5, 120))
        centre = rng.uniform(-5, 69, 2)
        points = _star(rng, n, centre, 2.0, 30.0)  # some cross the border
        shape = tuple(int(v) for v in rng.integers(20, 80, 2))
        np.testing.assert_array_equal(polygon_to_mask(points, shape), _skimage_mask(points, shape))


def test_matches_skimage_on_ties():
    # Vertices on the pixel lattice (and on thirds, not representable in binary) put many pixel
    # centres exactly on edges and vertices: the boundary rule must agree pixel for pixel.
    rng = np.random.default_rng(7)
    for denominator in (1, 2, 3):
        for _ in range(300):
            n = int(rng.integers(3, 9))
            points = rng.integers(-4, 16 * denominator, size=(n, 2)) / denominator
            if polygon_area(points) == 0.0:  # may be degenerate, where tfseg returns empty
                continue
            shape = tuple(int(v) for v in rng.integers(1, 14, 2))
            np.testing.assert_array_equal(polygon_to_mask(points, shape),
                                          _skimage_mask(points, shape),
                                          err_msg=str(points.tolist()))


def test_vertex_on_pixel_centre_is_inside():
    # The apex (3, 5) of a V is a vertex on a pixel centre: neither ray crosses an edge there.
    v_shape = np.array([[1.0, 1.0], [3.0, 5.0], [5.0, 1.0]])
    mask = polygon_to_mask(v_shape, (7, 7))
    assert mask[5, 3]
    np.testing.assert_array_equal(mask, _skimage_mask(v_shape, (7, 7)))


# --- input validation -------------------------------------------------------------------------

@pytest.mark.parametrize("points, words", [
    (np.zeros((5,)), r"shape \(N, 2\)"),
    (np.zeros((4, 3)), r"shape \(N, 2\)"),
    ([[0, 0], [1, 1]], "at least 3"),
    ([[0, 0], [1, np.inf], [2, 0]], "point 1"),
    ([[0, 0], [1, 1], [np.nan, 0]], "point 2"),
    ([["a", "b"], [1, 1], [2, 0]], "numbers"),
    ([[0, 0], [1e13, 0], [0, 5]], "within"),
])
def test_polygon_to_mask_rejects_bad_points(points, words):
    with pytest.raises(ValueError, match=words):
        polygon_to_mask(points, (4, 4))


@pytest.mark.parametrize("shape", [(0, 4), (4,), (4, 4, 4), (4.5, 4), "44", None])
def test_polygon_to_mask_rejects_bad_shape(shape):
    with pytest.raises(ValueError, match="shape"):
        polygon_to_mask([[0, 0], [2, 0], [0, 2]], shape)


def test_polygon_area():
    assert polygon_area([[0, 0], [4, 0], [0, 3]]) == 6.0
    assert polygon_area([[0, 0], [0, 3], [4, 0]]) == 6.0  # orientation does not matter
    far = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float) + 1e6
    assert polygon_area(far) == 16.0
    with pytest.raises(ValueError, match="at least 3"):
        polygon_area([[0, 0], [1, 1]])
