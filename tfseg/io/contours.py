"""Contour polylines <-> masks: Sunnybrook text files and one pixel-centre convention.

A Sunnybrook contour file holds one ``x y`` pair of floats per line, in pixel units of the image it
belongs to, with ``x`` the column and ``y`` the row. The points form a closed polyline: the last
point joins the first. In memory a contour is a float64 array of shape ``(N, 2)`` with columns
``(x, y)``.

The pixel-centre rule, used by `polygon_to_mask` and everything built on it:

- pixel ``(row i, col j)`` has its centre at ``(x=j, y=i)``; it is in the mask when its centre is
  inside the polygon or on its boundary. Inside is the **even-odd rule**: a ray from the centre
  crosses the polygon an odd number of times. A self-intersecting polyline or one made of nested
  loops therefore alternates inside/outside at every crossing (a "bowtie" gives two triangles, a
  loop inside a loop gives a ring);
- centres exactly on the boundary (the ties) are **in**: the polygon is closed. Precisely, two rays
  are cast from the centre. Towards ``+x``, an edge from ``y0`` to ``y1`` is crossed by the rows
  with ``min(y0, y1) <= y < max(y0, y1)`` (half-open, so a vertex is counted once and horizontal
  edges never) when its crossing ``x_cross > x``; towards ``-x`` the mirror rules hold
  (``min < y <= max`` and ``x_cross < x``). The centre is in the mask when either count is odd,
  which for any centre on an edge is the case, or when it lies on a vertex (within 1e-12);
- consequences: the rectangle ``x in [1.5, 5.5]`` covers exactly the 4 columns 2..5, and a
  rectangle with half-integer corners covers exactly its area in pixels; with integer corners
  ``x in [1, 5]`` it covers the 5 columns 1..5 (its edges run through pixel centres), and two
  polygons sharing an edge both claim the centres on it;
- degenerate polygons (all vertices on one line, within a relative tolerance of 1e-12) give an
  empty mask.

This is scikit-image's rule (``skimage._shared.geometry.point_in_polygon``, where ``EDGE`` and
``VERTEX`` count as inside), so ``polygon_to_mask(points, shape)`` equals
``skimage.draw.polygon2mask(shape, points[:, ::-1])`` (which takes ``(row, col)`` points) pixel for
pixel, ties included: a crossing within rounding distance of a centre is decided by the same
floating-point test scikit-image evaluates for that centre. The one difference is deliberate:
for a degenerate polygon scikit-image keeps the centres on its vertices, tfseg returns an empty
mask. `polygon_to_mask` is a vectorized scanline fill (every edge/row crossing at once, then a
parity prefix sum along each row), about ten times faster than scikit-image's per-pixel test on
left-ventricle-sized contours (see ``benchmarks/bench_contours.py``).

Example:
    >>> import numpy as np
    >>> square = np.array([[1.5, -0.5], [5.5, -0.5], [5.5, 2.5], [1.5, 2.5]])
    >>> polygon_to_mask(square, (4, 8)).astype(int)
    array([[0, 0, 1, 1, 1, 1, 0, 0],
           [0, 0, 1, 1, 1, 1, 0, 0],
           [0, 0, 1, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0, 0, 0]])
    >>> polygon_area(square)
    12.0
"""
import math
import operator
import re
from pathlib import Path

import numpy as np

from tfseg.errors import DataError, shorten
from tfseg.utils.atomic import atomic_path

# One number as the files write it: optional sign, digits with an optional fraction, optional
# exponent. NaN/inf spellings are not numbers here.
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# The shape of a whole valid file, checked in one pass: blank lines and lines of two tokens made
# of number characters (float() then rejects malformed tokens such as "1.2.3").
_TOKEN = r"[-+.\deE]+"
_LINE = rf"[ \t]*(?:{_TOKEN}[ \t]+{_TOKEN}[ \t]*)?"
_FILE_RE = re.compile(rf"(?:{_LINE}(?:\r\n|\n|\r))*{_LINE}")
_NUMBER_RE = re.compile(_NUMBER)
_NEWLINE_RE = re.compile(r"\r\n|\n|\r")
_BOM = b"\xef\xbb\xbf"
_VERTEX_EPS = 1e-12  # scikit-image's tolerance for a centre on a vertex
_EPS = float(np.finfo(np.float64).eps)
_MAX_COORD = 1e12  # beyond this, float64 pixel coordinates lose their fraction
_TIE_TOL = 1e-6  # crossings this close to a pixel centre are re-tested relative to the centre
_FORMAT_HINT = "a contour file holds one 'x y' pair of numbers per line"


def read_contour(path):
    """Read a Sunnybrook contour file into an `(N, 2)` float64 array of `(x, y)` points.

    Tabs, repeated spaces, leading/trailing whitespace, blank lines, CRLF or CR line ends and
    scientific notation (`1.2e2`) are accepted. Anything else is rejected with a `DataError` naming
    the file and, where one line is at fault, its 1-based number.

    Args:
        path: the contour text file.

    Returns:
        A float64 array of shape `(N, 2)`, columns `(x, y)` = (column, row) in pixels, N >= 3.

    Raises:
        DataError: the file is missing, not ASCII text, empty, has a line that is not two finite
            numbers within +-1e12 pixels, or holds fewer than 3 points.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "IM-0001-0048-icontour-manual.txt"
        >>> _ = p.write_text("120.5 98.0\\n121.0 99.5\\n119.0 100.0\\n")
        >>> read_contour(p)
        array([[120.5,  98. ],
               [121. ,  99.5],
               [119. , 100. ]])
    """
    data = _read_bytes(path)
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = len(_NEWLINE_RE.findall(data[:exc.start].decode("ascii"))) + 1
        raise DataError(path, f"byte 0x{data[exc.start]:02x} is not ASCII text; {_FORMAT_HINT}",
                        line=line) from None
    values = None
    if _FILE_RE.fullmatch(text):
        # Fast path: the whole file has the right shape, parse every number in one call.
        try:
            values = np.array(text.split(), dtype=np.float64)
        except ValueError:
            values = None  # a malformed token: the line-by-line pass below names it
    if values is not None and np.isfinite(values).all() and np.abs(values).max(initial=0.0) <= _MAX_COORD:
        points = values.reshape(-1, 2)
        if len(points) >= 3:
            return points
        if len(points) == 0:
            raise DataError(path, f"no points (empty file); {_FORMAT_HINT}")
        raise DataError(path, f"a closed contour needs at least 3 points, found {len(points)}")
    _raise_first_bad_line(path, text)
    raise DataError(path, f"could not be parsed; {_FORMAT_HINT}")  # pragma: no cover


def write_contour(path, points, decimals=2):
    """Write points as a Sunnybrook contour file (`x y` per line), atomically.

    The file is written to a temporary file in the same folder and then renamed over `path`, so
    readers never see a half-written file.

    Args:
        path: the output text file (missing parent folders are created).
        points: `(N, 2)` array of `(x, y)` points, N >= 3, finite.
        decimals: digits after the decimal point.

    Returns:
        The path written, as a `pathlib.Path`.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.txt"
        >>> _ = write_contour(p, [[1, 2], [3, 4.25], [5, 2]])
        >>> p.read_text().splitlines()
        ['1.00 2.00', '3.00 4.25', '5.00 2.00']
    """
    points = _check_points(points)
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool) or decimals < 0:
        raise ValueError(f"decimals must be an integer >= 0, got {decimals!r}")
    fmt = f"{{:.{int(decimals)}f}} {{:.{int(decimals)}f}}\n"
    text = "".join(fmt.format(x, y) for x, y in points.tolist())
    path = Path(path)
    _atomic_write_bytes(path, text.encode("ascii"))
    return path


def polygon_to_mask(points, shape):
    """Rasterize a closed polygon into a boolean mask with the module's pixel-centre rule.

    Equal to `skimage.draw.polygon2mask(shape, points[:, ::-1])` except for degenerate polygons;
    see the module docstring for the rule (even-odd interior plus the boundary). Parts of the
    polygon outside the image are clipped.

    Args:
        points: `(N, 2)` array of `(x, y)` = (column, row) vertices, N >= 3, finite; the last
            vertex joins the first.
        shape: `(H, W)` of the mask.

    Returns:
        A bool array of shape `(H, W)`, True for pixels whose centres are inside or on the boundary.

    Example:
        >>> tri = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
        >>> polygon_to_mask(tri, (5, 6)).astype(int)
        array([[1, 1, 1, 1, 1, 0],
               [1, 1, 1, 1, 0, 0],
               [1, 1, 1, 0, 0, 0],
               [1, 1, 0, 0, 0, 0],
               [1, 0, 0, 0, 0, 0]])
    """
    pts = _as_points(points)
    height, width = _check_shape(shape)
    mask = np.zeros((height, width), dtype=bool)
    n = len(pts)
    # Work rows: x, y, previous x, previous y (edge k runs from vertex k - 1 to vertex k), scratch.
    work = np.empty((5, n))
    xy, prev = work[:2], work[2:4]
    xy[...] = pts.T
    (xmin, ymin), (xmax, ymax) = xy.min(axis=1).tolist(), xy.max(axis=1).tolist()
    if not math.isfinite(xmin + xmax + ymin + ymax):  # NaN and inf show in the extremes
        _check_finite(pts)
    if max(-xmin, xmax, -ymin, ymax) > _MAX_COORD:
        raise ValueError(f"points must lie within +-{_MAX_COORD:.0e} pixels of the origin, "
                         f"got x in [{xmin:g}, {xmax:g}], y in [{ymin:g}, {ymax:g}]")
    # The pixels that can hold an inside centre: the polygon's bounding box within the image.
    col0, col1 = max(0, math.ceil(xmin)), min(width - 1, math.floor(xmax))
    row0, row1 = max(0, math.ceil(ymin)), min(height - 1, math.floor(ymax))
    prev[:, 1:] = xy[:, :-1]
    prev[:, 0] = xy[:, -1]
    x, y, x_prev, y_prev = work[0], work[1], work[2], work[3]
    if col0 > col1 or row0 > row1:
        # No centre strictly inside the box, but one may lie within 1e-12 of a vertex.
        if not _is_degenerate(x, y, x_prev, y_prev, max(abs(xmin), abs(xmax)), max(abs(ymin), abs(ymax))):
            _mark_vertices(mask, pts)
        return mask
    if _is_degenerate(x, y, x_prev, y_prev, max(abs(xmin), abs(xmax)), max(abs(ymin), abs(ymax))):
        return mask
    # A vertex on (within 1e-12 of) an integer row brings the tie cases: rows through a vertex,
    # horizontal edges on a row, centres on a vertex. They take the slower exact path below.
    dist = np.rint(y)
    np.subtract(y, dist, out=dist)
    special = float(np.abs(dist, out=dist).min()) < _VERTEX_EPS
    # Rows each edge can cross: integers in [lo, hi], clipped to the box.
    lo, hi = np.minimum(y, y_prev), np.maximum(y, y_prev)
    first = np.ceil(lo)
    counts = np.floor(hi)
    clipped = ymin < 0 or ymax > height - 1
    if clipped:
        np.maximum(first, row0, out=first)
        np.minimum(counts, row1, out=counts)
    counts -= first
    counts += 1
    if special:
        counts[lo == hi] = 0  # a horizontal edge crosses no row
    if clipped or special:
        np.maximum(counts, 0, out=counts)
    ends = np.cumsum(counts)
    total = int(ends[-1])
    if total:
        # One entry per (edge, row) crossing, all edges at once, in coordinates relative to the
        # box corner (exact: integer shifts of values of the same magnitude).
        edge = np.repeat(np.arange(n), counts.astype(np.intp))
        first -= ends
        first += counts
        np.subtract(first, row0, out=work[4])
        np.subtract(prev, xy, out=prev)  # rows 2, 3 now hold the edge vector (dx, dy)
        work[0] -= col0
        work[1] -= row0
        crossing = work[:, edge]
        rows = np.arange(total, dtype=np.float64)
        rows += crossing[4]
        x_cross = rows - crossing[1]
        x_cross *= crossing[2]
        x_cross /= crossing[3]
        x_cross += crossing[0]
        cols = np.ceil(x_cross)
        frac = cols - x_cross
        tie = float(frac.min()) < _TIE_TOL or float(frac.max()) > 1.0 - _TIE_TOL
        n_rows, w1 = row1 - row0 + 1, col1 - col0 + 2  # one spare column catches clipped marks
        if special or tie:
            inside = _two_ray_parity(pts, lo, hi, edge, rows, x_cross, cols, row0, col0, n_rows, w1)
        else:
            # Generic position: no centre is on the boundary, both rays agree, one parity pass.
            # A crossing counts for the centres left of it; mark it at the first column it does
            # not count for, ceil(x_cross); the prefix parity of the marks equals the parity of
            # the crossings to the right because each row is crossed an even number of times.
            if xmin < 0 or xmax > width - 1:
                np.clip(cols, 0, w1 - 1, out=cols)
            rows *= w1
            rows += cols
            marks = np.bincount(rows.astype(np.intp), minlength=n_rows * w1)
            marks &= 1
            inside = np.bitwise_xor.accumulate(marks.reshape(n_rows, w1), axis=1)
        mask[row0:row1 + 1, col0:col1 + 1] = inside[:, :-1]
    if special:
        _mark_vertices(mask, pts)
    return mask


def _mark_vertices(mask, pts):
    """Set the pixels whose centres lie on a vertex (within 1e-12): inside whatever the rays say."""
    height, width = mask.shape
    vx, vy = np.rint(pts[:, 0]), np.rint(pts[:, 1])
    hit = ((np.abs(pts[:, 0] - vx) < _VERTEX_EPS) & (np.abs(pts[:, 1] - vy) < _VERTEX_EPS)
           & (vx >= 0) & (vx < width) & (vy >= 0) & (vy < height))
    if hit.any():
        mask[vy[hit].astype(np.intp), vx[hit].astype(np.intp)] = True


def _two_ray_parity(pts, lo, hi, edge, rows, x_cross, cols, row0, col0, n_rows, w1):
    """Inside/boundary test with both rays, for polygons with centres on (or at rounding distance
    from) the boundary. Returns the `(n_rows, w1)` box, True inside or on the boundary.

    Ray towards +x: rows r with lo <= r < hi, crossing counted when x < x_cross (mark at ceil).
    Ray towards -x: rows r with lo < r <= hi, crossing counted when x_cross < x (mark at the first
    column counting it, floor(x_cross) + 1). A crossing within rounding error of a centre is
    decided by scikit-image's own floating-point test for that one centre, so ties come out the
    same way.
    """
    cols_left = np.floor(x_cross) + 1
    nearest = np.rint(x_cross)
    tie = np.abs(x_cross - nearest) < _TIE_TOL
    rows_abs = rows + row0
    if tie.any():
        j = nearest[tie] + col0
        r = rows_abs[tie]
        k = edge[tie]
        x0, y0 = pts[k, 0] - j, pts[k, 1] - r
        x1, y1 = pts[k - 1, 0] - j, pts[k - 1, 1] - r
        signed = (x0 * y1 - x1 * y0) / (y1 - y0)  # x_cross - j, evaluated relative to the centre
        cols[tie] = nearest[tie] + (signed > 0)
        cols_left[tie] = nearest[tie] + (signed >= 0)
    right = rows_abs < hi[edge]
    left = rows_abs > lo[edge]
    plane_rows = np.concatenate([rows[right], rows[left] + n_rows])
    plane_cols = np.clip(np.concatenate([cols[right], cols_left[left]]), 0, w1 - 1)
    index = (plane_rows * w1 + plane_cols).astype(np.intp)
    marks = np.bincount(index, minlength=2 * n_rows * w1) & 1
    parity = np.bitwise_xor.accumulate(marks.reshape(2, n_rows, w1), axis=2)
    # Inside when either ray sees an odd count: the interior plus the boundary.
    return parity[0] | parity[1]


def polygon_area(points):
    """Area of a closed polygon by the shoelace formula (absolute value, in squared pixels).

    For a self-intersecting polygon this is the absolute signed area, where loops of opposite
    orientation cancel (a symmetric bowtie has area 0); it is not the area of the even-odd mask.

    Args:
        points: `(N, 2)` array of `(x, y)` vertices, N >= 3, finite.

    Returns:
        The area as a Python float.

    Example:
        >>> polygon_area([[0, 0], [4, 0], [0, 3]])
        6.0
    """
    pts = _check_points(points)
    centred = pts - pts.mean(axis=0)  # better conditioned far from the origin
    x, y = centred[:, 0], centred[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0)


def _check_points(points):
    """`points` as a float64 `(N, 2)` array of finite values, or a ValueError saying why not."""
    pts = _as_points(points)
    _check_finite(pts)
    return pts


def _as_points(points):
    """`points` as a float64 `(N, 2)` array with N >= 3 (finiteness not checked), or ValueError."""
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"points must be an (N, 2) array of numbers: {exc}") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) with columns (x, y), "
                         f"got shape {pts.shape}")
    if len(pts) < 3:
        raise ValueError(f"a closed polygon needs at least 3 points, got {len(pts)}")
    return pts


def _check_finite(pts):
    """Raise ValueError naming the first point holding NaN or infinity, if any."""
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"points must be finite; point {index} is {pts[index].tolist()}")


def _check_shape(shape):
    """Return `(H, W)` as Python ints, or raise ValueError."""
    try:
        height, width = shape
        height, width = operator.index(height), operator.index(width)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), two positive integers, got {shape!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"shape must be (H, W), two positive integers, got {shape!r}")
    return height, width


def _is_degenerate(x, y, x_prev, y_prev, x_scale, y_scale):
    """True when all vertices lie on one line (relative tolerance 1e-12): the polygon has no area.

    A shoelace area clearly above its rounding error rules it out at once; only near-zero areas
    (collinear vertices, or loops cancelling as in a symmetric bowtie) get the full test.
    """
    twice_area = abs(float(np.dot(x, y_prev) - np.dot(x_prev, y)))
    if twice_area > 4.0 * len(x) * _EPS * x_scale * y_scale:
        return False
    dx, dy = x - x[0], y - y[0]
    far = int(np.argmax(np.abs(dx) + np.abs(dy)))
    vx, vy = float(dx[far]), float(dy[far])
    if vx == 0.0 and vy == 0.0:
        return True
    return bool(np.abs(dx * vy - dy * vx).max() <= 2e-12 * (vx * vx + vy * vy))


def _read_bytes(path):
    """The bytes of a file, or a DataError saying why they cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a file") from None
    except PermissionError:
        raise DataError(path, "permission denied") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None


def _raise_first_bad_line(path, text):
    """Find the first line that is not two finite numbers and raise a DataError naming it."""
    n_points = 0
    for number, line in enumerate(_NEWLINE_RE.split(text), start=1):
        tokens = line.split()
        if not tokens:
            continue
        for token in tokens:
            if not _NUMBER_RE.fullmatch(token):
                spelled = "not a finite number" if _is_nonfinite(token) else "not a number"
                raise DataError(path, f"{shorten(token)!r} is {spelled}; {_FORMAT_HINT}", line=number)
            value = float(token)
            if not math.isfinite(value):
                raise DataError(path, f"{shorten(token)!r} is not a finite number (overflows float64)",
                                line=number)
            if abs(value) > _MAX_COORD:
                raise DataError(path, f"{shorten(token)!r} is beyond +-{_MAX_COORD:.0e} pixels, not a pixel "
                                      f"coordinate", line=number)
        if len(tokens) != 2:
            raise DataError(path, f"expected two numbers 'x y', found {len(tokens)}", line=number)
        n_points += 1
    if n_points == 0:
        raise DataError(path, f"no points (empty file); {_FORMAT_HINT}")
    if n_points < 3:
        raise DataError(path, f"a closed contour needs at least 3 points, found {n_points}")


def _is_nonfinite(token):
    """True for spellings of NaN or infinity ("nan", "-inf", "Infinity"...)."""
    try:
        return not math.isfinite(float(token))
    except ValueError:
        return False


def _atomic_write_bytes(path, data):
    """Write `data` to `path` atomically (temporary file beside it, fsync, rename)."""
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
    except OSError as exc:
        raise DataError(path, f"cannot write: {exc.strerror or exc}") from None
