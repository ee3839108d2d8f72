"""Plane flattening and levelling of SPM height images: numpy in, numpy out.

::

    from napari_scanprobe.process.flatten import flatten
    flat = flatten(height)                               # "auto": rows + tilt + bow, features ignored
    flat = flatten(height, "polynomial", degree_x=3, degree_y=1, mask=particles)
    flat = flatten(stack, "rows_median")                 # a (t, y, x) stack, frame by frame

Every method subtracts a background fitted on the *valid* pixels: finite and not in ``mask``
(``mask`` True = a feature, left out of every fit; NaN pixels are left out too and stay NaN).
Images are (y, x) with x the fast-scan direction, so a "row" is one scan line.

Methods (their options, ranges and help are the contract ``process.steps.FLATTEN``):

``plane``
    least-squares plane ``a + b x + c y`` subtracted.
``polynomial``
    least-squares polynomial with every term ``x^i y^j``, ``i <= degree_x``, ``j <= degree_y``.
``rows_median``, ``rows_mean``, ``rows_trimmed_mean``
    each scan line's median / mean / trimmed mean (``trim`` = fraction cut off each end)
    subtracted: the line-by-line offset correction.
``rows_median_diff``
    each line shifted by the median of its differences from the line above (robust to features
    that continue from line to line); the result's median is then set to 0.
``rows_polynomial``
    a polynomial of ``degree`` in x fitted to and subtracted from each line.
``scars``
    scar (streak) removal: runs of pixels along a line that jump by more than ``threshold``
    robust sigmas (of the line-to-line differences) relative to BOTH the lines above and below
    (after aligning the lines), by more than the surface steps just outside them (so the crest
    of a small tall particle is not a scar), at least ``min_length`` and at most ``max_length``
    pixels long (0 = any length) and at most ``max_width`` lines tall, are replaced by linear
    interpolation between the neighbour lines. Every other pixel is returned unchanged.
``auto``
    iterative: line offsets and tilt + bow (a polynomial of total ``degree``) fitted together
    (the polynomial by least squares with a free offset per line, then each line's offset as
    its median -- with the line-to-line steps taken from the medians of differences between
    neighbour lines, which do not band on rough surfaces); then the features that stick out by
    more than ``threshold`` robust sigmas (``features``: above, below or both) are marked,
    grown by hysteresis into their connected pixels above 1.5 sigma and dilated by ``dilation``
    pixels, and lines and background are refitted on the background only; ``iterations`` times
    (stops early when the mask no longer changes). ``scars=True`` removes scars first. The
    result's background median is 0. :func:`background_mask` gives the final background.

Rows that the mask covers completely (but which have finite pixels) take their offset from the
nearest aligned line (median of the differences), so they are aligned too.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
from scipy import ndimage

from .common import as_image, as_mask, center_and_sigma, compiled_kernels, is_dask, map_frames, median
from .steps import FLATTEN

__all__ = [
    "FLATTEN_METHODS",
    "FLATTEN_OPTIONS",
    "background_mask",
    "flatten",
]

_GROW_SIGMA = 1.5  # auto: features grow into the connected pixels above this many sigma
_ROW_SMOOTH = 8.0  # lines: auto takes the line level from medians above this scale

#: The method names, "auto" first (their options, ranges and help: ``process.steps.FLATTEN``).
FLATTEN_METHODS: tuple[str, ...] = FLATTEN.method_names
#: Method name -> {option name: default value}, from the contract.
FLATTEN_OPTIONS: dict[str, dict[str, Any]] = {m: FLATTEN.defaults(m) for m in FLATTEN_METHODS}


# ----------------------------------------------------------------------------------------------
# Public API


def flatten(image: Any, method: str = "auto", mask: Any = None, **options: Any) -> Any:
    """Flatten a 2-D height image, or each frame of a ``(t, y, x)`` stack (lazily for dask).

    ``method`` is one of :data:`FLATTEN_METHODS`; ``options`` are that method's options
    (:data:`FLATTEN_OPTIONS` lists them with their defaults). ``mask`` (True = feature,
    excluded from the fits) has the image's (y, x) shape, or the stack's full shape.
    Returns a new float array (float32 stays float32, anything else becomes float64);
    NaN pixels stay NaN. Raises ValueError naming the bad parameter.
    """
    arr = as_image(image)
    opts = FLATTEN.check(method, options)
    m = as_mask(mask, arr.shape)
    out_dtype = np.float32 if arr.dtype == np.float32 else np.float64

    def one(frame: np.ndarray, frame_mask: np.ndarray | None) -> np.ndarray:
        return _flatten_2d(frame, method, frame_mask, opts).astype(out_dtype, copy=False)

    return _apply(one, arr, m, out_dtype)


def background_mask(image: Any, mask: Any = None, **options: Any) -> Any:
    """The background that ``flatten(image, "auto", mask, **options)`` fits: True = background.

    Pixels that are NaN, in ``mask``, or features found by the auto pipeline are False. Takes
    the auto options (:data:`FLATTEN_OPTIONS` ``["auto"]``). Pass ``~background_mask(...)`` as
    the ``mask`` of another method to fit only the background.
    """
    arr = as_image(image)
    opts = FLATTEN.check("auto", options)
    m = as_mask(mask, arr.shape)

    def one(frame: np.ndarray, frame_mask: np.ndarray | None) -> np.ndarray:
        return _auto(frame, frame_mask, **opts)[1]

    return _apply(one, arr, m, bool)


# ----------------------------------------------------------------------------------------------
# Parameters and dispatch


def _apply(func, arr, mask, dtype):
    """``func(frame, frame_mask)`` over a 2-D image or each frame of a stack (mask 2-D or 3-D)."""
    if mask is None or mask.ndim == 2:
        return map_frames(lambda frame: func(frame, mask), arr, dtype=dtype)
    if is_dask(arr):
        import dask.array as da

        frames = arr.rechunk({0: 1, 1: -1, 2: -1})
        masks = da.from_array(mask, chunks=(1, -1, -1))
        return da.map_blocks(
            lambda block, mblock: func(np.asarray(block[0]), np.asarray(mblock[0]))[np.newaxis],
            frames,
            masks,
            dtype=dtype,
        )
    return np.stack([func(np.asarray(arr[i]), mask[i]) for i in range(arr.shape[0])])


@functools.cache
def _blas_threads():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread(func):
    """Run ``func`` with BLAS on one thread: the products here are too small to gain from more,
    and idle BLAS threads spin, taking CPU time from other work (a batch's other workers)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with _blas_threads().limit(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


def _flatten_2d(z: np.ndarray, method: str, mask: np.ndarray | None, opts: dict) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    finite = np.isfinite(z)
    valid = finite if mask is None else finite & ~mask
    if method == "auto":
        return _auto(z, mask, **opts)[0]
    if method == "plane":
        return _minus_poly(z, valid, _plane_terms())
    if method == "polynomial":
        return _minus_poly(z, valid, _tensor_terms(opts["degree_x"], opts["degree_y"]))
    if method == "rows_median":
        return z - _row_offsets(z, valid, "median")[:, None]
    if method == "rows_mean":
        return z - _row_offsets(z, valid, "mean")[:, None]
    if method == "rows_trimmed_mean":
        return z - _row_offsets(z, valid, "trimmed", opts["trim"])[:, None]
    if method == "rows_median_diff":
        return z - _row_offsets_diff(z, valid)[:, None]
    if method == "rows_polynomial":
        return z - _row_polynomials(z, valid, opts["degree"])
    if method == "scars":
        return _remove_scars(z, mask, **opts)[0]
    raise AssertionError(method)  # pragma: no cover - the contract lets only known names through


# ----------------------------------------------------------------------------------------------
# Polynomial surfaces: a least-squares fit through normal equations built from separable
# Legendre bases in x and y (coordinates scaled to [-1, 1]), so no (pixels x terms) matrix is
# ever formed and large images cost little.


def _plane_terms() -> list[tuple[int, int]]:
    return [(0, 0), (1, 0), (0, 1)]


def _tensor_terms(degree_x: int, degree_y: int) -> list[tuple[int, int]]:
    return [(i, j) for j in range(degree_y + 1) for i in range(degree_x + 1)]


def _total_terms(degree: int, with_pure_y: bool = True) -> list[tuple[int, int]]:
    return [(i, j) for j in range(degree + 1) for i in range(degree + 1 - j) if with_pure_y or i > 0]


def _legendre(n: int, degree: int) -> np.ndarray:
    """(n, degree + 1) Legendre polynomials on n points spread over [-1, 1]."""
    t = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return np.ascontiguousarray(np.polynomial.legendre.legvander(t, degree))  # C order: fast BLAS


def _minus_poly(
    z: np.ndarray, valid: np.ndarray, terms: list[tuple[int, int]], free_rows: bool = False
) -> np.ndarray:
    """``z`` less its least-squares surface ``sum c_ij P_i(x) P_j(y)`` over the ``valid`` pixels
    (:func:`_poly_fit`), in ``z``'s float type."""
    if not terms:
        return z.copy()
    rows, cols = _poly_fit(z, valid, terms, free_rows)
    return _minus_surface(z, rows, cols, z.dtype)


def _minus_surface(
    z: np.ndarray, rows: np.ndarray, cols: np.ndarray, dtype: Any, offsets: np.ndarray | None = None
) -> np.ndarray:
    """``z - rows @ cols`` in ``dtype``, less each line's offset (``offsets``, subtracted in
    ``dtype``), in one pass over ``z`` (compiled): the surface summed term by term in float64,
    the difference taken in float64."""
    out = np.empty(z.shape, dtype)
    offsets = np.zeros(z.shape[0], dtype) if offsets is None else np.asarray(offsets, dtype)
    z, cols = np.ascontiguousarray(z), np.ascontiguousarray(cols)
    return compiled_kernels().minus_surface(z, rows, cols, offsets, out)


def _poly_fit(
    z: np.ndarray, valid: np.ndarray, terms: list[tuple[int, int]], free_rows: bool = False, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares surface ``sum c_ij P_i(x) P_j(y)`` over ``valid`` pixels as factors
    ``rows`` (ny, k) and ``cols`` (k, nx) in float64, the surface being ``rows @ cols`` (0 if no
    pixel is valid). Every sum is taken in float64 (the sums along each line compiled).

    ``free_rows``: fit ``z = offset_y + surface`` with a free offset for every row, solved
    exactly by centring each row (over its valid pixels) before the fit; the offsets are not
    returned, so the surface should have no pure-y terms.
    ``stride``: fit on every ``stride``-th pixel of every ``stride``-th line only.
    """
    ny, nx = z.shape
    dx = max(i for i, _ in terms)
    dy = max(j for _, j in terms)
    px_all = _legendre(nx, dx)  # (nx, dx+1)
    py_all = _legendre(ny, dy)  # (ny, dy+1)
    c = np.zeros((dy + 1, dx + 1))
    if not valid.any():
        valid = np.isfinite(z)
        if not valid.any():
            return py_all @ c, px_all.T
    px, py = np.ascontiguousarray(px_all[::stride]), py_all[::stride]
    z, valid = np.ascontiguousarray(z[::stride, ::stride]), np.ascontiguousarray(valid[::stride, ::stride])
    # Gram matrix: G[(i,j),(k,l)] = sum_y Py_j Py_l sum_x W Px_i Px_k (W: 1 on valid pixels)
    t, s = compiled_kernels().line_sums(z, valid, px)  # (rows, dx+1, dx+1); (rows, dx+1): sum_x zW Px_i
    if free_rows:  # centre each row: Px_i -> Px_i - m_i(y), z -> z - zbar(y) over the valid pixels
        n = t[:, 0, 0]  # P_0 = 1: t[:, 0, i] = sum_x W Px_i, s[:, 0] = sum_x zW
        m = t[:, 0, :] / np.maximum(n, 1.0)[:, None]
        t = t - n[:, None, None] * m[:, :, None] * m[:, None, :]
        s = s - s[:, :1] * m
    full = np.einsum("yj,yl,yik->ijkl", py, py, t, optimize=True)  # (dx+1, dy+1, dx+1, dy+1)
    rhs_full = py.T @ s  # (dy+1, dx+1): sum_y Py_j sum_x zW Px_i
    ii = np.array([i for i, _ in terms])
    jj = np.array([j for _, j in terms])
    gram = full[ii[:, None], jj[:, None], ii[None, :], jj[None, :]]
    rhs = rhs_full[jj, ii]
    scale = np.sqrt(np.clip(np.diag(gram), 1e-300, None))
    coef = np.linalg.lstsq(gram / np.outer(scale, scale), rhs / scale, rcond=1e-10)[0] / scale
    c[jj, ii] = coef
    return py_all @ c, px_all.T


# ----------------------------------------------------------------------------------------------
# Line (row) alignment


def _row_medians(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of each row over its ``valid`` values, which are finite (NaN for a row without
    any), in float64 (compiled: a selection per row, no sorting)."""
    return compiled_kernels().row_medians(np.ascontiguousarray(values), np.ascontiguousarray(valid))


def _row_stat(z: np.ndarray, valid: np.ndarray, stat: str, trim: float = 0.25) -> np.ndarray:
    """Per-row statistic over the valid pixels; NaN for rows without any."""
    if stat == "median":
        return _row_medians(z, valid)
    w = np.where(valid, z, np.nan)
    if stat == "mean":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(w, axis=1)
    # trimmed mean: sort (NaN last), drop floor(trim * n) from each end of the n valid values
    s = np.sort(w, axis=1)
    n = valid.sum(axis=1)
    cut = np.floor(trim * n).astype(int)
    lo, hi = cut, n - cut
    csum = np.concatenate([np.zeros((z.shape[0], 1)), np.cumsum(np.nan_to_num(s), axis=1)], axis=1)
    rows = np.arange(z.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[rows, hi] - csum[rows, lo]) / (hi - lo)
    out[n == 0] = np.nan
    return out


def _fill_offsets(z: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Give rows with finite pixels but no offset (fully masked) one from the nearest aligned row."""
    if np.isfinite(offsets).all():
        return offsets
    finite = np.isfinite(z)
    has_data = finite.any(axis=1)
    missing = np.flatnonzero(has_data & ~np.isfinite(offsets))
    if missing.size == 0:
        return offsets
    offsets = offsets.copy()
    known = np.flatnonzero(np.isfinite(offsets))
    if known.size == 0:  # nothing aligned at all: fall back to the plain row medians
        return _row_stat(z, finite, "median")
    # two passes: from the row above (top-down), then from the row below (bottom-up)
    for order, step in ((missing, -1), (missing[::-1], 1)):
        for r in order:
            if np.isfinite(offsets[r]):
                continue
            ref = r + step
            while 0 <= ref < z.shape[0] and not np.isfinite(offsets[ref]):
                ref += step
            if not 0 <= ref < z.shape[0]:
                continue
            offsets[r] = offsets[ref] + _pair_shift(z, r, ref, finite)
    return offsets


def _pair_shift(z: np.ndarray, row: int, ref: int, valid: np.ndarray) -> float:
    """Median of ``z[row] - z[ref]`` over pixels valid in both; median difference if none."""
    both = valid[row] & valid[ref]
    if both.any():
        return float(np.median(z[row, both] - z[ref, both]))
    fr, ff = np.isfinite(z[row]), np.isfinite(z[ref])
    both = fr & ff
    if both.any():
        return float(np.median(z[row, both] - z[ref, both]))
    return float(np.median(z[row, fr]) - np.median(z[ref, ff]))


def _row_offsets(z: np.ndarray, valid: np.ndarray, stat: str, trim: float = 0.25) -> np.ndarray:
    """Per-row offsets (NaN for all-NaN rows); fully masked rows aligned to their neighbours."""
    return _fill_offsets(z, _row_stat(z, valid, stat, trim))


def _row_offsets_diff(z: np.ndarray, valid: np.ndarray, level: bool = True) -> np.ndarray:
    """Offsets from the medians of differences between consecutive lines; median of result 0
    (``level=False``: the first line's offset 0 instead)."""
    ny = z.shape[0]
    z, valid = np.ascontiguousarray(z), np.ascontiguousarray(valid)
    rows = np.flatnonzero(compiled_kernels().rows_with_data(z))
    offsets = np.full(ny, np.nan)
    if rows.size == 0:
        return offsets
    a, b = rows[1:], rows[:-1]
    steps = compiled_kernels().diff_medians(z, valid, a, b)
    for k in np.flatnonzero(~np.isfinite(steps)):
        steps[k] = _pair_shift(z, a[k], b[k], valid)
    offsets[rows] = np.concatenate([[0.0], np.cumsum(steps)])
    if level:
        pick = valid if valid.any() else np.isfinite(z)
        offsets += median(z - offsets[:, None], pick)
    return offsets


def _row_polynomials(z: np.ndarray, valid: np.ndarray, degree: int) -> np.ndarray:
    """Per-row least-squares polynomials of ``degree`` in x; fully masked rows get an offset."""
    ny, nx = z.shape
    px = _legendre(nx, degree)  # (nx, K)
    w = valid.astype(np.float64)
    zw = np.where(valid, z, 0.0)
    k = px.shape[1]
    gram = (w @ np.ascontiguousarray((px[:, :, None] * px[:, None, :]).reshape(nx, -1))).reshape(ny, k, k)
    rhs = zw @ px
    coef = np.einsum("ykl,yl->yk", np.linalg.pinv(gram, rcond=1e-10, hermitian=True), rhs)
    surface = coef @ px.T
    empty = ~valid.any(axis=1)
    if empty.any():
        offsets = np.where(empty, np.nan, 0.0)
        offsets = _fill_offsets(z - surface, offsets)
        surface = surface + np.nan_to_num(offsets)[:, None]
    return surface


# ----------------------------------------------------------------------------------------------
# Scars


def _runs(pixels: np.ndarray, strong: np.ndarray, nx: int, min_length: int, max_length: int) -> np.ndarray:
    """Of the flagged ``pixels`` (sorted flat indices into rows of ``nx``), those in horizontal
    runs of ``min_length`` .. ``max_length`` pixels (0 = any length) with a ``strong`` pixel."""
    if pixels.size == 0:
        return pixels
    new_run = np.ones(pixels.size, dtype=bool)
    new_run[1:] = (np.diff(pixels) != 1) | (pixels[1:] % nx == 0)
    run = np.cumsum(new_run) - 1
    length = np.diff(np.append(np.flatnonzero(new_run), pixels.size))
    has_strong = np.zeros(length.size, dtype=bool)
    has_strong[run[strong]] = True
    keep = has_strong & (length >= min_length) & ((max_length == 0) | (length <= max_length))
    return pixels[keep[run]]


def _scar_flags(
    a: np.ndarray, editable: np.ndarray, width: int, hard: float, soft: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Where each block of ``width`` lines (block ``b`` = lines b+1 .. b+width) jumps up, then
    down, from both the line above and the line below by more than the soft threshold (weak)
    and more than the surface steps just outside the block (a scar jumps by more than those, a
    feature's crest, which also stands above the lines on both sides, does not). NaN
    neighbours: no comparison holds. Weak pixels are editable. For each direction: the weak
    pixels as sorted flat indices into (blocks, x), and whether each also passes the hard
    threshold (strong).

    A jump by more than ``soft`` from the line above the block's first line and from the line
    below its last one is necessary; the full test runs only on those few candidate pixels.
    """
    a, editable = np.ascontiguousarray(a), np.ascontiguousarray(editable)
    number = a.dtype.type
    largest = number(np.finfo(a.dtype).max)
    up, up_strong, down, down_strong = compiled_kernels().scar_candidates(
        a, editable, width, number(soft), number(hard), largest
    )
    return [(up, up_strong), (down, down_strong)]


def _remove_scars(
    z: np.ndarray, mask: np.ndarray | None, threshold: float, min_length: int, max_length: int, max_width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scar-free copy of ``z`` and the scar pixels (their rows and columns, each pixel once, in
    row-major order). Lines are aligned for detection only."""
    ny, nx = z.shape
    finite = np.isfinite(z)
    valid = finite if mask is None else finite & ~mask
    none = np.zeros(0, dtype=np.intp)
    if ny < 3 or not finite.any():
        return z.copy(), none, none
    offsets = np.nan_to_num(_row_offsets_diff(z, valid, level=False))  # differences only: no level
    offsets = offsets.astype(z.dtype)
    a = z - offsets[:, None]
    sigma = center_and_sigma(a[1:] - a[:-1], valid[1:] & valid[:-1])[1]
    if not sigma > 0:
        return z.copy(), none, none
    hard, soft = threshold * sigma, 0.5 * threshold * sigma
    editable = valid.copy()
    repaired = [none]  # flat indices of the interpolated pixels
    for width in range(1, min(max_width, ny - 2) + 1):
        found = [
            _runs(weak, strong, nx, min_length, max_length)
            for weak, strong in _scar_flags(a, editable, width, hard, soft)
        ]
        b, x = np.divmod(np.unique(np.concatenate(found)), nx)
        top, bottom = a[b, x], a[b + width + 1, x]
        for k in range(width):  # linear interpolation between the lines above and below
            a[b + 1 + k, x] = top + (k + 1) / (width + 1) * (bottom - top)
            editable[b + 1 + k, x] = False
            repaired.append((b + 1 + k) * nx + x)
    out = z.copy()  # other pixels bit for bit
    rows, cols = np.divmod(np.unique(np.concatenate(repaired)), nx)  # blocks may overlap
    out[rows, cols] = a[rows, cols] + offsets[rows]
    return out, rows, cols


# ----------------------------------------------------------------------------------------------
# Auto


def _feature_mask(r: np.ndarray, background: np.ndarray, threshold: float, features: str) -> np.ndarray:
    """Pixels sticking out of the background by > threshold sigma, grown into their connected
    pixels above _GROW_SIGMA sigma (hysteresis)."""
    center, sigma = center_and_sigma(r, background)
    if not sigma > 0:
        return np.zeros(r.shape, dtype=bool)
    number = r.dtype.type  # the centre and thresholds in the image's float type, as numpy compares
    return compiled_kernels().grow_features(  # NaN pixels are never features
        np.ascontiguousarray(r),
        number(center),
        ("above", "below", "both").index(features),
        number(threshold * sigma),
        number(min(_GROW_SIGMA, threshold) * sigma),
    )


def _disk_half_widths(radius: int) -> np.ndarray:
    """How far the disk ``y^2 + x^2 <= r^2 + r`` reaches along x on each of its lines |y| = 0 .. r."""
    return np.array([int(np.sqrt(radius**2 + radius - h * h)) for h in range(radius + 1)], dtype=np.int64)


def _background_without(
    features: np.ndarray, valid: np.ndarray, dilation: int, previous: np.ndarray
) -> tuple[np.ndarray, bool, bool]:
    """``valid & ~dilated`` (the features dilated by the disk of radius ``dilation``: the same
    pixels as ``ndimage.binary_dilation``), whether it has any pixel and whether it differs from
    ``previous``, in one compiled pass."""
    out = np.empty(valid.shape, dtype=bool)
    any_background, changed = compiled_kernels().background_without(
        np.ascontiguousarray(features),
        np.ascontiguousarray(valid),
        _disk_half_widths(dilation),
        np.ascontiguousarray(previous),
        out,
    )
    return out, any_background, changed


def _auto_row_offsets(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Line offsets for auto: the line medians' level, the line-to-line steps of the medians of
    differences (:func:`_blend_row_offsets`)."""
    med = _row_offsets(z, valid, "median")
    diff = _row_offsets_diff(z, valid, level=False)  # the medians set the level
    return _blend_row_offsets(med, diff)


def _blend_row_offsets(med: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """The line offsets ``med`` over scales above ``_ROW_SMOOTH`` lines, ``diff`` below.

    Medians of the background alone band on rough surfaces, where the background pixels of
    consecutive lines sit on different grains; the differences between neighbour lines do not,
    but drift over many lines. So the medians are kept over scales above ``_ROW_SMOOTH`` lines
    and the differences below.
    """
    corr = med - diff
    ok = np.isfinite(corr)
    if not ok.any():
        return med
    num = ndimage.gaussian_filter1d(np.where(ok, corr, 0.0), _ROW_SMOOTH, mode="nearest")
    den = ndimage.gaussian_filter1d(ok.astype(np.float64), _ROW_SMOOTH, mode="nearest")
    return diff + num / np.maximum(den, 1e-12)


def _remove_rows_and_bow(
    z: np.ndarray, valid: np.ndarray, degree: int, guesses: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``z`` less its line offsets plus tilt and bow: the polynomial (total ``degree``, its
    x-dependent terms: anything depending on y alone is a line offset) fitted jointly with free
    line offsets by least squares, then the line offsets taken robustly from what is left.

    The line medians and the medians of line differences are taken in one sweep while the
    surface is subtracted line by line, and the result is written once, offsets subtracted.
    Lines with data but no valid pixel, or no valid pixel shared with the line before, take
    the general route (:func:`_auto_row_offsets` on the image less the surface).

    ``guesses``: where the medians are likely to lie (those of the previous call on the same
    image: they bracket the new medians first, which saves work but never changes a median);
    returned for the next call.
    """
    z, valid = np.ascontiguousarray(z), np.ascontiguousarray(valid)
    terms = _total_terms(degree, with_pure_y=False)
    if terms:
        rows, cols = _poly_fit(z, valid, terms, free_rows=True)
    else:
        rows, cols = np.zeros((z.shape[0], 1)), np.zeros((1, z.shape[1]))
    cols = np.ascontiguousarray(cols)
    if guesses is None:
        guesses = np.full((4, z.shape[0]), np.nan)
    medians, steps, has_data, guesses = compiled_kernels().line_medians(z, valid, rows, cols, guesses)
    data = np.flatnonzero(has_data)
    if np.isfinite(medians[data]).all() and np.isfinite(steps[data[1:]]).all():
        diff = np.full(z.shape[0], np.nan)  # as _row_offsets_diff(level=False)
        diff[data] = np.concatenate([[0.0], np.cumsum(steps[data[1:]])])
        offsets = _blend_row_offsets(medians, diff)
    else:
        offsets = _auto_row_offsets(_minus_surface(z, rows, cols, z.dtype), valid)
    return _minus_surface(z, rows, cols, z.dtype, offsets), guesses


def _coarse_residual(z: np.ndarray, valid: np.ndarray, degree: int) -> np.ndarray:
    """``z`` less a coarse background, in float32: the tilt along x (a plane fitted on a
    subsample of about 64 x 64 pixels; none when ``degree`` is 0) and the line offsets (each
    line's median over a subsample of its pixels).

    Auto works on this residual: its fits are linear in the heights (the polynomial) or shift
    with them (the line offsets, medians), and the coarse background is made of terms they fit,
    so they return the same result as on ``z`` itself. Only the dynamic range shrinks, so
    float32 (half the memory traffic of float64) rounds the heights to 1e-7 of what is left:
    the features, the noise and the bow. Stays float64 beyond float32's range.
    """
    stride = max(1, min(z.shape) // 64)
    rows, cols = _poly_fit(z, valid, _plane_terms() if degree >= 1 else [(0, 0)], stride=stride)
    offsets = _row_medians(z[:, ::stride] - rows @ cols[:, ::stride], valid[:, ::stride])
    rows = np.column_stack([rows, np.nan_to_num(offsets)])
    cols = np.vstack([cols, np.ones(z.shape[1])])
    out = _minus_surface(z, rows, cols, np.float32)
    largest = max(abs(float(np.nanmin(out))), abs(float(np.nanmax(out))))
    sample = np.abs(z[::stride, ::stride])
    if largest <= 1e-12 * np.max(sample, where=np.isfinite(sample), initial=0.0):
        np.copyto(out, 0.0, where=np.isfinite(out))  # z is that background to float64 rounding
        return out
    if 1e-30 < largest < 1e30:
        return out
    return _minus_surface(z, rows, cols, z.dtype)


@_one_blas_thread
def _auto(
    z: np.ndarray,
    mask: np.ndarray | None,
    iterations: int,
    threshold: float,
    dilation: int,
    degree: int,
    features: str,
    scars: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened image (float64, background median 0) and the background mask it was fitted on."""
    z = np.asarray(z, dtype=np.float64)
    finite = np.isfinite(z)
    if not finite.any():
        return z.copy(), np.zeros(z.shape, dtype=bool)
    user = None if mask is None else np.asarray(mask, dtype=bool)
    valid = finite if user is None else finite & ~user
    base = _coarse_residual(z, valid, degree)
    background = valid
    guesses: np.ndarray | None
    result, guesses = _remove_rows_and_bow(base, background, degree)
    if scars:
        repaired, rows, cols = _remove_scars(result, user, **FLATTEN_OPTIONS["scars"])
        if rows.size:  # interpolated on the levelled image: put the background back, refit
            base[rows, cols] += repaired[rows, cols] - result[rows, cols]
            result, guesses = _remove_rows_and_bow(base, background, degree, guesses)
    for refit in range(iterations):
        feats = _feature_mask(result, background, threshold, features)
        new_background, any_background, changed = _background_without(feats, valid, dilation, background)
        if not any_background or not changed:
            break
        background = new_background
        if refit == 0:  # the first feature mask moves the line medians too far to guess them
            guesses = None
        result, guesses = _remove_rows_and_bow(base, background, degree, guesses)
    pick = background if background.any() else finite
    return np.subtract(result, median(result, pick), dtype=np.float64), background
