"""Compiled single-pass kernels (numba) for :mod:`~napari_scanprobe.process.flatten` and the
robust statistics of :mod:`~napari_scanprobe.process.common`.

Imported on first use by those modules only (``import napari_scanprobe`` stays numpy-only).
Each kernel returns what the numpy expression it replaces returns -- the same selections, float
types and order of operations, so bit for bit -- except :func:`line_sums`, which sums in
float64 where the BLAS product it replaces summed in the image's float type. Single-threaded
and ``nogil``: the target is CPU time, and a batch runs its files in parallel already.

The machine code is cached beside this file or in the user's cache folder (``NUMBA_CACHE_DIR``
chooses another), so the compile cost of the first call is paid once per machine; where no
folder is writable the kernels are compiled once in each process instead.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit


def _compiled(func=None, **options):
    """``njit(nogil=True, **options)`` with an on-disk cache when a cache folder is writable."""
    if func is None:
        return functools.partial(_compiled, **options)
    try:
        return njit(nogil=True, cache=True, **options)(func)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, **options)(func)


@_compiled
def _select(buf, n, k):
    """Partially order ``buf[:n]`` so that ``buf[k]`` holds the k-th smallest value and every
    value before it is no larger (quickselect, median-of-three pivot; no NaN).

    Branch-free Lomuto partitions (no mispredicted branches: ~3x quicker than Hoare's on random
    values); when a partition leaves the values equal to the pivot on one side, a second pass
    gathers them so that repeated values cannot make it quadratic.
    """
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if buf[mid] < buf[lo]:
            buf[mid], buf[lo] = buf[lo], buf[mid]
        if buf[hi] < buf[lo]:
            buf[hi], buf[lo] = buf[lo], buf[hi]
        if buf[mid] < buf[hi]:
            buf[mid], buf[hi] = buf[hi], buf[mid]
        pivot = buf[hi]  # the median of the three
        j = lo
        for i in range(lo, hi):  # buf[lo:j] < pivot <= buf[j:i]
            v = buf[i]
            buf[i] = buf[j]
            buf[j] = v
            j += v < pivot
        buf[hi] = buf[j]
        buf[j] = pivot
        if k < j:
            hi = j - 1
            continue
        if k == j:
            return
        e = j + 1
        if hi - j < 3 * (j - lo) + 8:  # balanced enough: skip the pass
            lo = e
            continue
        for i in range(j + 1, hi + 1):  # buf[j:e] == pivot < buf[e:i]
            v = buf[i]
            buf[i] = buf[e]
            buf[e] = v
            e += v == pivot
        if k < e:
            return
        lo = e


@_compiled
def _median_of(buf, n, lo, hi):
    """The mean of the ``lo``-th and ``hi``-th smallest of ``buf[:n]`` (``hi`` is ``lo`` or
    ``lo + 1``; reorders ``buf``), each taken in float64: the median of all ``n`` values when
    they are ``(n - 1) // 2`` and ``n // 2``."""
    _select(buf, n, hi)
    upper = np.float64(buf[hi])
    if lo == hi:
        return upper
    lower = buf[0]
    for i in range(1, hi):  # the largest value below the upper middle one
        if buf[i] > lower:
            lower = buf[i]
    return 0.5 * (np.float64(lower) + upper)


@_compiled
def _bracketed_median(values, ok, low, high, buf):
    """``(median, True)`` of ``values`` (1-D) over the pixels where ``ok`` (finite) when
    ``[low, high]`` brackets its middle ranks, ``(NaN, False)`` otherwise: one vectorised pass
    counts the values and those below the bracket, one branch-free pass copies those inside to
    ``buf``, and only those are selected from (:func:`_median_of`)."""
    nx = values.size
    n = 0
    below = 0
    for x in range(nx):  # vectorised
        n += ok[x]
        below += ok[x] & (values[x] < low)
    count = 0
    for x in range(nx):
        v = values[x]
        buf[count] = v
        count += ok[x] & (v >= low) & (v <= high)
    lo, hi = (n - 1) // 2 - below, n // 2 - below
    if lo >= 0 and hi < count:
        return _median_of(buf, count, lo, hi), True
    return np.nan, False


@_compiled
def _masked_median(values, ok, buf, guess, reach):
    """Median of ``values`` (1-D) over the pixels where ``ok`` (finite), NaN if none, in float64
    (:func:`_median_of`), and a reach for the next guess. ``buf``: scratch space for
    ``2 * values.size`` values.

    Where a ``guess`` of the median and its ``reach`` are given (not NaN: the median of the
    same line in the previous fit, say), ``guess +- reach`` brackets the middle ranks first
    (:func:`_bracketed_median`). Otherwise, or where that misses, long rows are bracketed by two
    values of a strided sample of the row (when it holds 64 valid ones), a sixth of whose width
    is returned as the reach (else the given one). A bracket that misses (rarely) selects from
    all.
    """
    nx = values.size
    if reach > 0:
        median, found = _bracketed_median(
            values, ok, values.dtype.type(guess - reach), values.dtype.type(guess + reach), buf
        )
        if found:
            return median, reach
    if nx > 1024:
        sample = buf[nx:]
        m = 0
        step = nx // 128
        for x in range(0, nx, step):
            sample[m] = values[x]
            m += ok[x]
        margin = int(1.25 * np.sqrt(m)) + 1  # 2.5 standard deviations of the sample median's rank
        if m >= 64:
            _select(sample, m, m // 2 + margin)
            high = sample[m // 2 + margin]
            _select(sample, m // 2 + margin, m // 2 - margin)
            low = sample[m // 2 - margin]
            median, found = _bracketed_median(values, ok, low, high, buf)
            if found:
                return median, (np.float64(high) - np.float64(low)) / 6.0
    n = 0
    for x in range(nx):  # branch-free gather
        buf[n] = values[x]
        n += ok[x]
    if n == 0:
        return np.nan, reach
    return _median_of(buf, n, (n - 1) // 2, n // 2), reach


@_compiled
def row_medians(values, valid):
    """Median of each row of ``values`` over its ``valid`` pixels (finite), NaN for a row
    without any, in float64."""
    ny, nx = values.shape
    valid = valid.view(np.uint8)  # bytes: numba's booleans make the branch-free copy slower
    out = np.empty(ny)
    buf = np.empty(2 * nx, values.dtype)
    for y in range(ny):
        out[y] = _masked_median(values[y], valid[y], buf, np.nan, np.nan)[0]
    return out


@_compiled
def rows_with_data(z):
    """Whether each row of ``z`` has a finite value (each row read up to its first one)."""
    ny, nx = z.shape
    out = np.zeros(ny, np.bool_)
    for y in range(ny):
        for x in range(nx):
            if np.isfinite(z[y, x]):
                out[y] = True
                break
    return out


@_compiled
def diff_medians(z, valid, rows, refs):
    """For each pair k, the median of ``z[rows[k]] - z[refs[k]]`` (in ``z``'s float type) over
    the pixels valid in both rows whose difference is finite; NaN where there is none."""
    nx = z.shape[1]
    valid = valid.view(np.uint8)  # bytes: see row_medians
    out = np.empty(rows.size)
    buf = np.empty(2 * nx, z.dtype)
    diff = np.empty(nx, z.dtype)
    ok = np.empty(nx, np.uint8)
    for k in range(rows.size):
        line, ref, valid_line, valid_ref = z[rows[k]], z[refs[k]], valid[rows[k]], valid[refs[k]]
        for x in range(nx):
            diff[x] = line[x] - ref[x]
            ok[x] = valid_line[x] & valid_ref[x] & np.isfinite(diff[x])
        out[k] = _masked_median(diff, ok, buf, np.nan, np.nan)[0]
    return out


@_compiled
def line_sums(z, valid, px):
    """The least-squares sums along each line over its ``valid`` pixels, in float64:
    ``gram[y, i, k] = sum_x px[x, i] px[x, k]`` and ``moments[y, i] = sum_x z[y, x] px[x, i]``.

    Each sum runs over a line held in the cache, vectorised (summed in several partial sums:
    the only place where the order of additions is left to the compiler)."""
    ny, nx = z.shape
    terms = px.shape[1]
    basis = np.empty((terms, nx))
    products = np.empty((terms, terms, nx))
    for i in range(terms):
        for x in range(nx):
            basis[i, x] = px[x, i]
    for i in range(terms):
        for k in range(terms):
            for x in range(nx):
                products[i, k, x] = basis[i, x] * basis[k, x]
    gram = np.empty((ny, terms, terms))
    moments = np.empty((ny, terms))
    for y in range(ny):
        for i in range(terms):
            for k in range(i, terms):
                gram[y, i, k] = gram[y, k, i] = _sum_where(products[i, k], valid[y])
            moments[y, i] = _dot_where(z[y], basis[i], valid[y])
    return gram, moments


@_compiled(fastmath={"reassoc"})
def _sum_where(values, ok):
    total = 0.0
    for x in range(values.size):
        total += values[x] if ok[x] else 0.0
    return total


@_compiled(fastmath={"reassoc"})
def _dot_where(values, weights, ok):
    total = 0.0
    for x in range(values.size):
        total += np.float64(values[x]) * weights[x] if ok[x] else 0.0
    return total


@_compiled
def _surface_line(rows, cols, y, surface):
    """``surface = rows[y] @ cols``, summed term by term in float64."""
    for x in range(surface.size):
        surface[x] = rows[y, 0] * cols[0, x]
    for k in range(1, rows.shape[1]):
        for x in range(surface.size):
            surface[x] += rows[y, k] * cols[k, x]


@_compiled
def minus_surface(z, rows, cols, offsets, out):
    """``out = (z - rows @ cols) - offsets[:, None]`` pixel by pixel: the surface summed term by
    term in float64, the difference taken in float64 and rounded to ``out``'s float type, then
    the line's offset (of that type) subtracted in it."""
    ny, nx = z.shape
    surface = np.empty(nx)
    for y in range(ny):
        _surface_line(rows, cols, y, surface)
        offset = offsets[y]
        line, target = z[y], out[y]
        for x in range(nx):
            target[x] = out.dtype.type(line[x] - surface[x]) - offset
    return out


@_compiled
def line_medians(z, valid, rows, cols, guesses):
    """Of the image ``f = z - rows @ cols`` (each line as :func:`minus_surface` makes it, in
    ``z``'s float type, never stored): each line's median over its ``valid`` pixels (finite; NaN
    where none), the median of its differences from the line before it that has a finite pixel
    (over the pixels valid in both whose difference is finite; NaN where none, and on the first
    such line), and whether it has a finite pixel. Bit for bit :func:`row_medians` and
    :func:`diff_medians` of ``f`` and :func:`rows_with_data`, in one sweep.

    ``guesses`` (4, lines): a guess of each line's median and its reach, and of each line's
    median difference and its reach (NaN: none; see :func:`_masked_median`). Returned too are
    the guesses for the next sweep: these medians and their reaches."""
    ny, nx = z.shape
    valid = valid.view(np.uint8)  # bytes: see row_medians
    medians = np.full(ny, np.nan)
    steps = np.full(ny, np.nan)
    has_data = np.zeros(ny, np.bool_)
    reaches = np.full((2, ny), np.nan)
    lines = np.empty((2, nx), z.dtype)  # this line of f and the last one with data
    surface = np.empty(nx)
    buf = np.empty(2 * nx, z.dtype)
    diff = np.empty(nx, z.dtype)
    ok = np.empty(nx, np.uint8)
    current, previous = 0, -1
    for y in range(ny):
        f, line, valid_line = lines[current], z[y], valid[y]
        _surface_line(rows, cols, y, surface)
        for x in range(nx):
            f[x] = line[x] - surface[x]
        medians[y], reaches[0, y] = _masked_median(f, valid_line, buf, guesses[0, y], guesses[1, y])
        for x in range(nx):
            if np.isfinite(f[x]):
                has_data[y] = True
                break
        if not has_data[y]:
            continue
        if previous >= 0:
            before, valid_before = lines[1 - current], valid[previous]
            for x in range(nx):
                diff[x] = f[x] - before[x]
                ok[x] = valid_line[x] & valid_before[x] & np.isfinite(diff[x])
            steps[y], reaches[1, y] = _masked_median(diff, ok, buf, guesses[2, y], guesses[3, y])
        previous, current = y, 1 - current
    next_guesses = np.empty((4, ny))
    next_guesses[0], next_guesses[1], next_guesses[2], next_guesses[3] = (
        medians,
        reaches[0],
        steps,
        reaches[1],
    )
    return medians, steps, has_data, next_guesses


@_compiled
def _side(value, center, features):
    """How far ``value`` sticks out of ``center`` on the features' side (0 above, 1 below,
    2 both), in the value's float type."""
    deviation = value - center
    if features == 0:
        return deviation
    if features == 1:
        return -deviation
    return abs(deviation)


@_compiled
def _root(parent, k):
    """The root of ``k``'s tree in the union-find forest ``parent`` (paths halved on the way)."""
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


@_compiled
def grow_features(r, center, features, seed_level, grow_level):
    """The pixels connected (4-neighbours) through pixels sticking out by more than
    ``grow_level`` (:func:`_side`) to a seed, a pixel sticking out by more than ``seed_level``
    (``grow_level <= seed_level``); NaN is never either. ``center`` and the levels are of
    ``r``'s float type.

    The same pixels as labelling the pixels above ``grow_level`` and keeping the regions with a
    seed, labelled by runs: one pass along the lines finds the runs of pixels above
    ``grow_level`` (and whether each holds a seed) and joins each run to the overlapping runs
    of the line above (union-find); the runs whose region holds a seed are then filled in.
    """
    ny, nx = r.shape
    found = np.zeros((ny, nx), dtype=np.bool_)
    most = ny * ((nx + 1) // 2)  # runs are separated by at least one pixel
    starts = np.empty(most, np.int64)
    ends = np.empty(most, np.int64)
    parent = np.empty(most, np.int64)
    seeded = np.empty(most, np.bool_)
    first = np.empty(ny + 1, np.int64)  # the runs of line y: first[y] .. first[y + 1] - 1
    above = np.zeros(nx + 2, np.uint8)  # the line's pixels above grow_level, at 1 .. nx
    seeds = np.empty(nx, np.uint8)
    edges = np.empty(nx + 2, np.int64)
    n = 0
    for y in range(ny):
        first[y] = n
        line = r[y]
        for x in range(nx):  # vectorised
            deviation = _side(line[x], center, features)
            above[x + 1] = deviation > grow_level
            seeds[x] = deviation > seed_level
        count = 0
        for x in range(nx + 1):  # branch-free: where a run starts or ends
            edges[count] = x
            count += above[x] ^ above[x + 1]
        for k in range(0, count, 2):
            starts[n], ends[n], parent[n] = edges[k], edges[k + 1], n
            seeded[n] = False
            for x in range(edges[k], edges[k + 1]):
                if seeds[x]:
                    seeded[n] = True
                    break
            n += 1
        if y == 0:
            continue
        i, j = first[y - 1], first[y]  # runs sharing a column are connected
        while i < first[y] and j < n:
            if ends[i] <= starts[j]:
                i += 1
            elif ends[j] <= starts[i]:
                j += 1
            else:
                a, b = _root(parent, i), _root(parent, j)
                if a != b:
                    a, b = min(a, b), max(a, b)
                    parent[b] = a
                    seeded[a] |= seeded[b]
                if ends[i] < ends[j]:
                    i += 1
                else:
                    j += 1
    first[ny] = n
    for y in range(ny):
        for k in range(first[y], first[y + 1]):
            if seeded[_root(parent, k)]:
                for x in range(starts[k], ends[k]):
                    found[y, x] = True
    return found


@_compiled
def background_without(found, valid, half_widths, previous, out):
    """``out = valid & ~dilated``, ``dilated`` being ``found`` dilated by the disk whose row
    ``dy`` spans ``half_widths[|dy|]`` pixels either side (pixels outside the image are never
    found). Returns whether ``out`` has a background pixel and whether it differs from
    ``previous``.

    Each row of the disk is a horizontal run, so a pixel is covered from line ``y + dy`` when
    that line holds a found pixel within ``half_widths[|dy|]`` of it: the difference of two
    running counts of found pixels along that line (kept for the disk's lines only, in a ring
    of rows). One vectorised pass per disk row, whatever its width.
    """
    ny, nx = found.shape
    found, valid = found.view(np.uint8), valid.view(np.uint8)
    previous, out = previous.view(np.uint8), out.view(np.uint8)
    radius = half_widths.size - 1
    widest = half_widths[0]
    lines = 2 * radius + 1
    counts = np.zeros((lines, nx + 2 * widest + 1), np.int32)  # counts[j] = found in x < j - widest
    covered = np.empty(nx, np.int32)
    any_background = 0
    changed = 0
    for y in range(-radius, ny):
        fill = y + radius  # the line that enters the ring
        if fill < ny:
            row, line = counts[fill % lines], found[fill]
            total = 0
            for x in range(nx):
                total += line[x]
                row[widest + 1 + x] = total
            for j in range(widest + 1 + nx, row.size):
                row[j] = total
        if y < 0:
            continue
        covered[:] = 0
        for dy in range(-radius, radius + 1):
            if 0 <= y + dy < ny:
                row = counts[(y + dy) % lines]
                w = half_widths[abs(dy)]
                ahead = row[widest + w + 1 : widest + w + 1 + nx]  # found in x' <= x + w
                behind = row[widest - w : widest - w + nx]  # found in x' < x - w
                for x in range(nx):  # vectorised: counts never decrease, so OR is "any"
                    covered[x] |= ahead[x] - behind[x]
        valid_row, previous_row, out_row = valid[y], previous[y], out[y]
        for x in range(nx):
            b = valid_row[x] & np.uint8(covered[x] == 0)
            out_row[x] = b
            any_background |= b
            changed |= b ^ previous_row[x]
    return any_background != 0, changed != 0


@_compiled
def masked_median(values, ok, center, deviations):
    """Median of the finite ``values`` (1-D) where ``ok`` -- of ``|values - center|`` (in the
    values' float type) when ``deviations`` -- in float64; NaN if there is none.

    The two middle ranks are bracketed by a strided sample of ~40,000 values (+-1.2 % in rank,
    5 standard deviations of the sample median's rank); a vectorised pass counts the values
    below and inside the bracket, a branch-free one copies the ~2.4 % inside, and only those are selected
    from. A bracket that misses selects from all.
    """
    size = values.size
    ok = ok.view(np.uint8)  # bytes: see row_medians
    step = max(1, size // 40_000)
    sample = np.empty((size + step - 1) // step, values.dtype)
    m = 0
    for i in range(0, size, step):
        v = values[i]
        sample[m] = abs(v - center) if deviations else v
        m += ok[i] & np.isfinite(v)
    low = high = center
    if m > 1000:
        high_rank, low_rank = int(0.512 * m), int(0.488 * m)
        _select(sample, m, high_rank)
        high = sample[high_rank]
        _select(sample, high_rank, low_rank)
        low = sample[low_rank]
    n = 0
    below = 0
    inside = 0
    for i in range(size):  # vectorised
        v = values[i]
        take = ok[i] & np.isfinite(v)
        if deviations:
            v = abs(v - center)
        n += take
        below += take & (v < low)
        inside += take & (v >= low) & (v <= high)
    if n == 0:
        return np.nan
    lo, hi = (n - 1) // 2, n // 2
    if m > 1000 and below <= lo and hi < below + inside:
        buf = np.empty(inside + 1, values.dtype)
        count = 0
        for i in range(size):  # branch-free: the values inside are scattered at random
            v = values[i]
            if deviations:
                v = abs(v - center)
            buf[count] = v
            count += ok[i] & (v >= low) & (v <= high)
        return _median_of(buf, count, lo - below, hi - below)
    buf = np.empty(n, values.dtype)
    count = 0
    for i in range(size):
        v = values[i]
        buf[count] = abs(v - center) if deviations else v
        count += ok[i] & np.isfinite(v)
    return _median_of(buf, count, lo, hi)


@_compiled
def _steps_past(line_above, first, last, line_below, soft, out):
    """``out``: 1 where ``first`` steps from ``line_above`` and ``last`` from ``line_below`` by
    more than ``soft`` in the same direction (some NaN steps pass too), else 0; vectorised: the
    scar candidates (~0.2 % of the pixels), which the full test then checks."""
    for x in range(out.size):
        step, back = first[x] - line_above[x], last[x] - line_below[x]
        out[x] = np.uint8(min(step, back) > soft) | np.uint8(max(step, back) < -soft)


@_compiled
def scar_candidates(a, editable, width, soft, hard, largest):
    """The scar test of ``flatten._scar_flags`` for one block ``width``, pixel by pixel, in both
    directions (0: up then down, 1: down then up). Block ``b`` is lines ``b + 1 .. b + width``;
    a pixel is weak when every line of the block jumps by more than ``soft`` and more than the
    surface steps just outside the block from both the line above and the line below it (all
    editable), strong when it jumps by more than ``hard`` too. Returns, for each direction, the
    weak pixels as flat indices into (blocks, x), in order, and whether each is strong.
    ``soft``, ``hard`` and ``largest`` (the largest finite number) are of ``a``'s float type, and
    so is the arithmetic; NaN passes no test."""
    ny, nx = a.shape
    n_blocks = max(ny - width - 1, 0)
    found = np.empty((2, n_blocks * nx), np.int64)
    strong = np.empty((2, n_blocks * nx), np.bool_)
    counts = np.zeros(2, np.int64)
    zero = soft - soft
    one = zero + 1
    candidate = np.empty(nx, np.uint8)
    for b in range(n_blocks):
        line_above, first, last, line_below = a[b], a[b + 1], a[b + width], a[b + width + 1]
        _steps_past(line_above, first, last, line_below, soft, candidate)
        for x in range(nx):
            if candidate[x]:
                above = a[b, x]
                step = a[b + 1, x] - above
                if step > soft:
                    direction, sign = 0, one
                elif -step > soft:
                    direction, sign = 1, -one
                else:
                    continue
                below = a[b + width + 1, x]
                if not sign * (a[b + width, x] - below) > soft:  # the last line steps back
                    continue
                ok = True
                for k in range(width):
                    ok &= editable[b + 1 + k, x]
                if not ok:
                    continue
                # the steps outside the block: line above vs the one above it, line below vs beyond
                out_above = abs(above - a[b - 1, x]) if b >= 1 else zero
                if b <= n_blocks - 2:
                    beyond = abs(below - a[b + width + 2, x])
                    outer = out_above if np.isnan(beyond) or beyond < out_above else beyond
                else:
                    outer = out_above
                if np.isnan(outer):
                    outer = zero
                elif np.isinf(outer):
                    outer = largest
                weak_level = outer if outer > soft else soft
                strong_level = outer if outer > hard else hard
                is_weak = True
                is_strong = True
                for k in range(width):
                    line = a[b + 1 + k, x]
                    up, down = sign * (line - above), sign * (line - below)
                    is_weak &= (up > weak_level) & (down > weak_level)
                    is_strong &= (up > strong_level) & (down > strong_level)
                if is_weak:
                    found[direction, counts[direction]] = b * nx + x
                    strong[direction, counts[direction]] = is_strong
                    counts[direction] += 1
    return (
        found[0, : counts[0]].copy(),
        strong[0, : counts[0]].copy(),
        found[1, : counts[1]].copy(),
        strong[1, : counts[1]].copy(),
    )
