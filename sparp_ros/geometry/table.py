"""The table around the object, seen from above: what one RGB-D view shows of the support plane
near its object, resampled onto a metric grid in that plane, so that two views' tables can be
compared under a candidate relative pose.

Why: a robot's object stands on something, and the table's print, grain and the shadows cast on
it are fixed in the world like the object itself. They measure what the object's own surfaces
cannot: the turn about up of a surface of revolution, the flip of a box whose two halves have the
same shape, two views that share little of the object's surface. The object's registration
proposes placements; the table says which of them puts the table where both cameras saw it
(``registration.register_pair``). On the photograph-like captures, at the true relative pose the
two views' tables agree with a normalised correlation of 0.6–0.99 wherever the table has texture,
and a wrong placement that the object's surfaces accept (a boot or a cereal box turned 180°) drops
it below 0.3 (README "The table measures the turn").

A view's table (``table_view``): a square grid of ``TABLE_CELLS``² cells, ``TABLE_EXTENT`` object
sizes either side of the point of the plane below the object's centre (the neighbourhood
``support.support_plane`` measured the plane in). A cell holds the image's grey value where the
camera sees the plane there: its ray reaches the plane inside the image, the measured depth there
lies on the plane (not on a distractor or the object), and it is clear of the object's mask. The
image is blurred to the cell's size first so that a cell averages its pixels instead of sampling
one (fine grain would otherwise alias differently in every view); the grid is smoothed once
more, alike in every view, so that a shift by a fraction of a cell changes the agreement little
(``BLUR_CELLS``).

Two tables agree (``table_agreement``) by the normalised cross-correlation of their grey values
where both saw the table under the placement: brightness and gain cancel out. A plain table
(``MIN_CONTRAST``) agrees 0: it measures nothing.

ROS-free; numpy and OpenCV. Frames: camera frames in metres; a table's own frame has its origin
on the plane below the object's centre and z along the plane's normal.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import PinholeCamera
from ..conventions import invert_rigid
from .support import SupportPlane

TABLE_CELLS = 96
"""Cells per side of a table's grid: 96 over four object sizes is a cell of 4 % of the object's
size (8 mm for a 20 cm object), about the detail a 640×480 camera resolves on a table at a metre."""
TABLE_EXTENT = 2.0
"""The grid reaches this many object sizes either side of the object (``support.NEAR_OBJECT``:
the neighbourhood the plane was measured in)."""
MASK_MARGIN_PX = 5
"""Pixels this near the object's mask are not table (its rim's mixed depths and colours)."""
ON_PLANE_M = 0.01
ON_PLANE_SHARE = 0.02
"""A cell's measured depth lies on the plane when it is within ``ON_PLANE_M`` plus this share of
the depth of the plane there (a stereo camera's noise grows with depth)."""
BLUR_CELLS = 0.7
"""The grid is smoothed by this many cells (one standard deviation; within the table): the grids
then change little with a shift of a fraction of a cell, so that a placement ICP moved by a
millimetre or two agrees about as well as the table's own (unsmoothed, grain at the cell's scale
halved the agreement of a half-cell shift on the brass bell's table)."""
MIN_CONTRAST = 2.0
"""Grey values (of 255) that vary less than this (standard deviation over the overlap) are a plain
table: its correlation is noise, and it agrees 0 (measures nothing)."""
MIN_OVERLAP_CELLS = 50
MIN_OVERLAP_SHARE = 0.1
"""Two tables are compared only where at least this many cells, and this share of the smaller
table, lie on each other: fewer say nothing about a placement (``table_agreement`` is None)."""


@dataclass(frozen=True)
class TableView:
    """One view's table from above: ``grey`` (cells × cells, float32) valid where ``valid``, on a
    grid of ``half_extent_m`` either side of the origin of ``T_camera_table`` (table frame ->
    camera; z is the plane's normal)."""

    grey: np.ndarray
    valid: np.ndarray
    T_camera_table: np.ndarray
    half_extent_m: float

    @property
    def cells(self) -> int:
        return int(self.grey.shape[0])

    @property
    def cell_m(self) -> float:
        return 2.0 * self.half_extent_m / self.cells

    def cell_centres(self) -> np.ndarray:
        """The cells' centres in the table frame, x along columns, y along rows (cells², 2)."""
        g = (np.arange(self.cells) + 0.5) * self.cell_m - self.half_extent_m
        x, y = np.meshgrid(g, g)
        return np.column_stack([x.ravel(), y.ravel()])


def table_frame(plane: SupportPlane, centre: np.ndarray) -> np.ndarray:
    """The table frame in the camera: origin the plane's point below ``centre`` (the object's
    centre, camera frame), z the plane's normal, x and y any orthonormal pair in the plane."""
    n = np.asarray(plane.normal, float)
    n = n / np.linalg.norm(n)
    c = np.asarray(centre, float)
    origin = c - plane.height(c) * n
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(n, helper)
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, np.cross(n, x), n, origin
    return T


def _blur_within(values: np.ndarray, inside: np.ndarray, sigma: float) -> np.ndarray:
    """``values`` blurred by a Gaussian of ``sigma`` (cells or pixels) over the ``inside`` ones
    only (normalised convolution: what lies outside does not bleed in), float32."""
    weight = np.asarray(inside, np.float32)
    num = cv2.GaussianBlur(np.where(inside, values, 0.0).astype(np.float32) * weight, (0, 0),
                           sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    return num / np.maximum(den, 1e-3)


def table_view(image: np.ndarray, depth: np.ndarray, mask: np.ndarray, camera: PinholeCamera,
               plane: SupportPlane, centre: np.ndarray, object_size: float,
               cells: int = TABLE_CELLS) -> TableView | None:
    """The table around the object from above (module docstring): ``image`` HxWx3 uint8 RGB,
    ``depth`` HxW metres (0 unknown) of the whole view, not only the object, ``mask`` the object,
    ``plane`` its support plane and ``centre`` its centre (camera frame), ``object_size`` its
    diagonal in metres. None when no cell sees the table."""
    if not (np.isfinite(object_size) and object_size > 0):
        raise ValueError(f"object_size must be positive, got {object_size}")
    depth = np.asarray(depth)
    if depth.shape != mask.shape or image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]}, depth {depth.shape} and mask {mask.shape} differ")
    T = table_frame(plane, centre)
    half = TABLE_EXTENT * float(object_size)
    grid = TableView(np.zeros((cells, cells), np.float32), np.zeros((cells, cells), bool), T, half)
    xy = grid.cell_centres()
    points = np.column_stack([xy, np.zeros(len(xy))]) @ T[:3, :3].T + T[:3, 3]
    ahead = points[:, 2] > 1e-3
    uv = np.full((len(points), 2), -1.0)
    uv[ahead] = camera.project(points[ahead])
    H, W = mask.shape
    u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    inside = ahead & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    u, v = np.where(inside, u, 0), np.where(inside, v, 0)
    kernel = np.ones((2 * MASK_MARGIN_PX + 1,) * 2, np.uint8)
    near_object = cv2.dilate(np.asarray(mask, np.uint8), kernel) > 0
    measured = depth[v, u]
    expected = points[:, 2]
    on_plane = (measured > 0) & (np.abs(measured - expected) < ON_PLANE_M + ON_PLANE_SHARE * expected)
    valid = inside & ~near_object[v, u] & on_plane
    if not valid.any():
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    # a cell spans this many pixels at the object's distance: blur to it (anti-aliasing), within
    # the table only (normalised convolution), so that the object's colours do not bleed out
    z = max(float(np.median(expected[valid])), 1e-3)
    cell_px = float(camera.K[0, 0]) * grid.cell_m / z
    if cell_px > 1.0:
        grey = _blur_within(grey, ~near_object, 0.5 * cell_px)
    maps = uv.reshape(cells, cells, 2).astype(np.float32)
    values = cv2.remap(grey, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    valid = valid.reshape(cells, cells)
    # smoothed on the grid too, alike in every view (the image's blur is stretched along each
    # camera's line of sight): the grids then change little with a fraction of a cell's shift
    values = _blur_within(values, valid, BLUR_CELLS)
    return TableView(np.where(valid, values, 0.0).astype(np.float32), valid, T, half)


def table_agreement(a: TableView | None, b: TableView | None, T_ca_cb: np.ndarray) -> float | None:
    """How well two views' tables agree when view b's camera sits at ``T_ca_cb`` in view a's: the
    normalised cross-correlation of b's valid cells, moved into a's table grid, with a's grey
    values there (bilinear), over the cells valid in both. None without both tables or with too
    little overlap (``MIN_OVERLAP_CELLS``, ``MIN_OVERLAP_SHARE``): the tables then say nothing."""
    if a is None or b is None:
        return None
    from scipy.ndimage import map_coordinates
    xy = b.cell_centres()[b.valid.ravel()]
    P = np.column_stack([xy, np.zeros(len(xy)), np.ones(len(xy))]).T
    Q = invert_rigid(a.T_camera_table) @ np.asarray(T_ca_cb, float) @ b.T_camera_table @ P
    # a's grid: cell (row, col) centred at ((col + 0.5) cell - half, (row + 0.5) cell - half)
    col = (Q[0] + a.half_extent_m) / a.cell_m - 0.5
    row = (Q[1] + a.half_extent_m) / a.cell_m - 0.5
    c, r = np.rint(col).astype(int), np.rint(row).astype(int)
    ok = (c >= 0) & (c < a.cells) & (r >= 0) & (r < a.cells)
    ok[ok] &= a.valid[r[ok], c[ok]]
    n = int(ok.sum())
    if n < MIN_OVERLAP_CELLS or n < MIN_OVERLAP_SHARE * min(int(a.valid.sum()), int(b.valid.sum())):
        return None
    x = map_coordinates(a.grey, [row[ok], col[ok]], order=1, mode="nearest")
    y = b.grey[b.valid][ok]
    if x.std() < MIN_CONTRAST or y.std() < MIN_CONTRAST:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / norm if norm > 1e-6 else 0.0


SEARCH_STEP_DEG = 6.0
"""The turn search tries every turn this far apart on grids of half the cells, then refines the
best ones by degrees on the full grids."""
SEARCH_SHIFT = 0.35
"""... and every shift within this many object sizes: two views' table frames sit below the
centres of the object's visible parts, which differ by a fraction of its size (a wider window
lets a table that repeats every tile, a tiled floor, match itself a tile away)."""
SEARCH_PEAKS = 3
"""The search returns this many best turns at least ``PEAK_SEPARATION_DEG`` apart: a wood grain
or a tile pattern alike after a half or quarter turn leaves more than one, and the object's
surfaces choose among them (``registration.register_pair``)."""
PEAK_SEPARATION_DEG = 20.0


def _correlate(a_fft: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """sum_x a(x + s) b(x) for every shift s (circular over ``shape``), a given by its FFT."""
    from scipy import fft
    return fft.irfft2(a_fft * np.conj(fft.rfft2(b, shape)), shape)


def _turned(table: TableView, angle_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """``table``'s grey values and validity turned by ``angle_rad`` about its origin (the grid's
    centre), on the same grid: cell p of the result shows the table at R^T p."""
    n = table.cells
    c = (n - 1) / 2.0
    R = np.array([[np.cos(angle_rad), -np.sin(angle_rad)], [np.sin(angle_rad), np.cos(angle_rad)]])
    inverse = np.column_stack([R.T, np.array([c, c]) - R.T @ np.array([c, c])]).astype(np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    grey = cv2.warpAffine(table.grey, inverse, (n, n), flags=flags)
    valid = cv2.warpAffine(table.valid.astype(np.float32), inverse, (n, n),
                           flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0.5
    return grey, valid


def _halved(table: TableView) -> TableView:
    """``table`` on a grid of half as many cells a side (2 x 2 cells averaged; a cell is valid
    where at least three of its four were): the coarse turn search's grid."""
    n = table.cells // 2
    valid = table.valid[:2 * n, :2 * n].reshape(n, 2, n, 2)
    grey = np.where(table.valid, table.grey, 0.0)[:2 * n, :2 * n].reshape(n, 2, n, 2)
    count = valid.sum(axis=(1, 3))
    out = np.where(count > 0, grey.sum(axis=(1, 3)) / np.maximum(count, 1), 0.0)
    keep = count >= 3
    return TableView(np.where(keep, out, 0.0).astype(np.float32), keep, table.T_camera_table,
                     table.half_extent_m)


class _Matcher:
    """Masked normalised cross-correlation of table a with table b turned by any angle, for every
    shift within a window at once (FFT; a's transforms made once)."""

    def __init__(self, a: TableView, b: TableView, window_m: float) -> None:
        from scipy import fft
        self.b = b
        self.shape = (2 * a.cells, 2 * a.cells)
        fa = np.where(a.valid, a.grey, 0.0).astype(np.float64)
        self.A = [fft.rfft2(x, self.shape) for x in (a.valid.astype(np.float64), fa, fa * fa)]
        window = int(np.ceil(window_m / a.cell_m))
        self.shifts = np.arange(-window, window + 1)
        self.index = np.ix_(self.shifts % self.shape[0], self.shifts % self.shape[1])
        self.least = max(MIN_OVERLAP_CELLS * (a.cells / TABLE_CELLS) ** 2,
                         MIN_OVERLAP_SHARE * min(a.valid.sum(), b.valid.sum()))

    def best_at(self, angle_deg: float) -> tuple[float, float, float]:
        """The best correlation with b turned by ``angle_deg`` and its shift (rows, columns)."""
        grey, valid = _turned(self.b, np.radians(angle_deg))
        mb = valid.astype(np.float64)
        fb = np.where(valid, grey, 0.0).astype(np.float64)
        A, shape, index = self.A, self.shape, self.index
        count = np.rint(_correlate(A[0], mb, shape))[index]
        sa = _correlate(A[1], mb, shape)[index]
        saa = _correlate(A[2], mb, shape)[index]
        sb = _correlate(A[0], fb, shape)[index]
        sbb = _correlate(A[0], fb * fb, shape)[index]
        sab = _correlate(A[1], fb, shape)[index]
        m = np.maximum(count, 1.0)
        cov = sab - sa * sb / m
        var = np.maximum(saa - sa * sa / m, 0.0) * np.maximum(sbb - sb * sb / m, 0.0)
        ncc = np.where((count >= self.least) & (var > 1e-9),
                       cov / np.sqrt(np.maximum(var, 1e-18)), -1.0)
        k = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        return float(ncc[k]), float(self.shifts[k[0]]), float(self.shifts[k[1]])


def table_search(a: TableView, b: TableView, object_size: float,
                 peaks: int = SEARCH_PEAKS) -> list[tuple[float, np.ndarray]]:
    """The placements of view b's camera in view a's that lay b's table best on a's: every turn
    about the table's normal (every ``SEARCH_STEP_DEG`` on grids of half the cells, then by
    degrees about the best turns on the full grids) and every shift within ``SEARCH_SHIFT``
    object sizes, scored by the masked normalised cross-correlation of the two grids over their
    overlap (FFT, for all shifts at once; a plain table, ``MIN_CONTRAST``, finds nothing).
    Returns up to ``peaks`` (correlation, ``T_ca_cb``), best first, at least
    ``PEAK_SEPARATION_DEG`` apart. Both tables must share one grid (``table_view`` with the same
    object size)."""
    if a.grey.shape != b.grey.shape or not np.isclose(a.half_extent_m, b.half_extent_m):
        raise ValueError("table_search needs two tables on the same grid")
    if a.grey[a.valid].std() < MIN_CONTRAST or b.grey[b.valid].std() < MIN_CONTRAST:
        return []
    window = SEARCH_SHIFT * object_size
    coarse = _Matcher(_halved(a), _halved(b), window)
    turns = sorted(((coarse.best_at(d)[0], d) for d in np.arange(0.0, 360.0, SEARCH_STEP_DEG)),
                   reverse=True)
    fine = _Matcher(a, b, window)
    found: list[tuple[float, float, float, float]] = []
    for score, d in turns:
        if len(found) == peaks or score <= -1.0:
            break
        if all(abs((d - f[1] + 180.0) % 360.0 - 180.0) >= PEAK_SEPARATION_DEG for f in found):
            half = SEARCH_STEP_DEG / 2.0
            best = max(((fine.best_at(d + e), d + e) for e in np.arange(-half, half + 0.5, 1.0)),
                       key=lambda x: x[0][0])
            (s2, rows, cols), d2 = best
            if s2 > -1.0:
                found.append((s2, d2, rows, cols))
    found.sort(key=lambda f: -f[0])
    out = []
    for score, d, rows, cols in found:
        t = np.radians(d)
        P = np.eye(4)
        P[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
        P[:2, 3] = np.array([cols, rows]) * a.cell_m
        out.append((score, a.T_camera_table @ P @ invert_rigid(b.T_camera_table)))
    return out


__all__ = ["TableView", "table_frame", "table_view", "table_agreement", "table_search",
           "TABLE_CELLS", "TABLE_EXTENT"]
