"""Drift correction of movies (``(t, y, x)``, numpy or lazy dask): :func:`register`.

Each frame's translation against a reference is measured by phase correlation: the whole
pixel from the correlation's peak on the frame binned 4 x 4, then -- the full frame moved back
by it -- the fraction from the exact top of the correlation surface (the DFT of the
cross-power spectrum at any shift, as the upsampled DFT of Guizar-Sicairos et al., Opt. Lett.
33, 156, 2008, samples it), found by Newton steps on its gradient and curvature. The drift is
taken out by bilinear interpolation; pixels the frame did not see become NaN. What makes it
fit scanning probe movies:

* frames are read in blocks, transformed in float32 (only the frequencies the correlation
  uses) and forgotten; the reference's spectra are computed once, and a running mean is kept
  as the mean of its frames' spectra, so a 10,000-frame movie is measured without being
  loaded whole, and the corrected movie of a dask input is lazy (frame by frame, as napari
  shows it);
* the spectrum's ``kx = 0`` column (whatever depends on the scan line alone: line offsets) and
  its lowest and highest frequencies (tilt and bow; noise) are left out of the correlation,
  and a Tukey window keeps the image borders (where drift brings in new ground) from
  dominating;
* the correlation is mostly whitened (see :data:`WHITENING`), so a tall feature that appears
  or vanishes weighs little more than the rest of the frame; a frame whose correlation peak
  collapses (object lost, feedback error, tip change) is flagged, kept, and given the drift
  interpolated between its unflagged neighbours -- it never stops the series;
* ``per_line=True`` also measures the x offset of bands of scan lines against the reference
  (creep, scan-direction drift within a frame) and takes out a smooth (quadratic) profile.

The shift table is in the movie's lateral unit (nm) when a pixel size is given.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn.loop import time_left
from .common import Progress, as_image, is_dask, run_to_end

#: Reference choices (besides a frame index).
REFERENCES = ("first", "mean")
#: The whole-pixel shift is found on frames binned 4 x 4 (or 2 x 2) where this leaves this
#: many lines and columns at least.
COARSE_MIN = 32
#: Newton steps at most to the subpixel top of the correlation (it takes 2 or 3).
NEWTON_STEPS = 8
#: Spatial frequencies above this (cycles per pixel) are left out of the correlation (noise).
CUTOFF = 0.2
#: The cross-power spectrum is divided by its magnitude to this power: 1 is phase correlation
#: (every frequency counts alike, noise too), 0.75 keeps a little of the signal's weight.
WHITENING = 0.75
#: Frames whose correlation peak is below this fraction of the series' typical peak (its
#: upper quartile, the reference frame left out) are flagged.
MIN_QUALITY = 0.5
#: Bytes of frames read at once while measuring.
BLOCK_BYTES = 16 * 2**20
#: The largest frame registered (pixels): a few float32 copies of it are made per frame.
MAX_FRAME_PIXELS = 4096 * 4096
#: The most frames a running mean holds (they are kept in memory).
MAX_WINDOW = 1000
#: Threads measuring frames against a fixed reference.
THREADS = min(4, os.cpu_count() or 1)
#: Scan lines per band for the per-line correction.
LINE_BAND = 16


@dataclass
class Registration:
    """What :func:`register` gives.

    ``movie``: the corrected movie (lazy for dask input), NaN where a frame saw nothing.
    ``shifts``: ``(t, 2)`` drift ``(dy, dx)`` of each frame against the reference, in pixels:
    the content of frame ``i`` sits at ``reference position + shifts[i]`` (the correction moves
    it back). ``line_shifts``: ``(t, y)`` extra x offset of each scan line in pixels
    (``per_line``), or None. ``quality``: the correlation peak height (1 = identical up to the
    shift). ``flagged``: frames whose correlation collapsed (their shift is interpolated).
    ``pixel_size``: ``(dy, dx)`` in ``unit`` per pixel.
    """

    movie: Any
    shifts: np.ndarray
    quality: np.ndarray
    flagged: np.ndarray
    line_shifts: np.ndarray | None = None
    pixel_size: tuple[float, float] = (1.0, 1.0)
    unit: str = "px"
    reference: str | int = "first"

    def table(self) -> dict[str, list]:
        """The shift table, one row per frame: ``frame``, ``dy``/``dx`` (in ``unit``),
        ``quality``, ``flagged`` (and ``line_dx_range``: the spread of per-line offsets)."""
        dy, dx = self.pixel_size
        out: dict[str, list] = {
            "frame": list(range(len(self.shifts))),
            f"dy_{self.unit}": [float(v) for v in self.shifts[:, 0] * dy],
            f"dx_{self.unit}": [float(v) for v in self.shifts[:, 1] * dx],
            "quality": [float(v) for v in self.quality],
            "flagged": [bool(v) for v in self.flagged],
        }
        if self.line_shifts is not None:
            spread = self.line_shifts.max(axis=1) - self.line_shifts.min(axis=1)
            out[f"line_dx_range_{self.unit}"] = [float(v) for v in spread * dx]
        return out

    def step(self) -> dict:
        """The options to record in ``metadata["processing"]`` (and replay in a recipe)."""
        return {"reference": self.reference, "per_line": self.line_shifts is not None}


def _check_reference(reference: Any, frames: int) -> str | int:
    if isinstance(reference, str) and reference.strip().isdigit():  # a frame number, as recipe text
        reference = int(reference)
    if isinstance(reference, str) and reference in REFERENCES:
        return reference
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        if not -frames <= int(reference) < frames:
            raise ValueError(f"reference: frame {reference} is outside the movie's {frames} frames")
        return int(reference) % frames
    raise ValueError(f"reference: expected 'first', 'mean' or a frame number, got {reference!r}")


def _check_pixel_size(pixel_size: Any) -> tuple[float, float]:
    if pixel_size is None:
        return (1.0, 1.0)
    size = np.broadcast_to(np.asarray(pixel_size, dtype=float), (2,))
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise ValueError(f"pixel_size: expected a positive size per pixel, got {pixel_size!r}")
    return float(size[0]), float(size[1])


class _Correlator:
    """Phase correlation on one pixel grid: the windowed spectrum of a frame at the frequencies
    the correlation uses, the top of the correlation surface on a coarse grid, and its exact
    subpixel top."""

    def __init__(self, shape: tuple[int, int], cutoff: float = CUTOFF):
        ny, nx = shape
        self.shape = shape
        from scipy.signal.windows import tukey

        self.window = np.outer(tukey(ny, 0.25), tukey(nx, 0.25)).astype(np.float32)
        fy = np.fft.fftfreq(ny)[:, None]
        fx = np.fft.rfftfreq(nx)[None, :]
        radius = np.hypot(fy, fx)
        # a smooth low-pass (noise) to zero at the cut-off; kx = 0 (line offsets) and the lowest
        # frequencies (tilt, bow: under two cycles per image) left out
        weight = np.cos(0.5 * np.pi * np.minimum(radius / cutoff, 1.0)) ** 2
        weight[(fx == 0) | (radius <= 1.5 / max(ny, nx))] = 0.0
        # the frequencies below the cut-off (all the correlation needs), ky in increasing order
        ky = np.fft.fftfreq(ny) * ny
        rows = np.flatnonzero(np.abs(fy[:, 0]) < cutoff)
        self.rows = rows[np.argsort(ky[rows])]
        self.cols = int(np.count_nonzero(fx[0] < cutoff))  # kx = 0, 1, ... cols - 1
        self.weight = weight[self.rows, : self.cols].astype(np.float32)
        # kx = 0 weighs nothing and Nyquist is beyond the cut-off: each frequency kept stands
        # for its mirror too, and the surface from these is half the whole one, same shape.
        # d(phase)/d(shift) of each frequency: a shift (dy, dx) multiplies the spectrum by
        # exp(-(dy * to_y + dx * to_x))
        self.to_y = 2j * np.pi * ky[self.rows] / ny
        self.to_x = 2j * np.pi * np.arange(self.cols) / nx
        self.powers_y = np.stack([np.ones_like(self.to_y), self.to_y, self.to_y**2])
        self.powers_x = np.stack([np.ones_like(self.to_x), self.to_x, self.to_x**2])
        # the whole-pixel search on a coarser grid: the correlation holds no frequency above
        # the cut-off, so half as many samples per axis show it without aliasing
        self.surface = tuple(n // 2 if n // 2 > 2 * cutoff * n + 1 else n for n in shape)
        self.surface_rows = ky[self.rows].astype(np.intp) % self.surface[0]

    def spectrum(self, frame: np.ndarray, level: float, dy: int = 0, dx: int = 0) -> np.ndarray:
        """The windowed spectrum of a frame (float32, no NaN) less ``level``, moved back by
        whole pixels ``(dy, dx)`` (what it did not see: ``level``), at the frequencies the
        correlation uses (:attr:`rows` x the first :attr:`cols`): complex64."""
        from scipy import fft

        f = _roll_back(frame, dy, dx, fill=0.0, minus=level)
        f *= self.window
        # along x, then along y for the columns kept only
        return fft.fft(fft.rfft(f, axis=1)[:, : self.cols], axis=0)[self.rows]

    def cross(self, spec: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """The (mostly) whitened, weighted cross-power spectrum of a frame and its reference."""
        cross = spec * np.conj(ref)
        cross *= self.weight / (np.abs(cross) + np.float32(1e-12)) ** np.float32(WHITENING)
        return cross

    def peak(self, cross: np.ndarray) -> tuple[float, float]:
        """Where the correlation surface peaks, in pixels (within half a frame of zero), from
        the surface on :attr:`surface` samples and a parabola through its top."""
        from scipy import fft

        ny, nx = self.shape
        my, mx = self.surface
        full = np.zeros((my, mx // 2 + 1), np.complex64)
        full[self.surface_rows, : self.cols] = cross
        surface = fft.irfft2(full, s=self.surface)
        qy, qx = divmod(int(np.argmax(surface)), mx)
        top = float(surface[qy, qx])
        py = (qy + _vertex(float(surface[qy - 1, qx]), top, float(surface[(qy + 1) % my, qx]))) * ny / my
        px = (qx + _vertex(float(surface[qy, qx - 1]), top, float(surface[qy, (qx + 1) % mx]))) * nx / mx
        return (py - ny if py > ny / 2 else py), (px - nx if px > nx / 2 else px)

    def top(self, cross: np.ndarray, start: tuple[float, float]) -> tuple[float, float, float]:
        """``(dy, dx, quality)``: the subpixel top of the correlation surface
        ``c(d) = Re sum(cross * exp(d . to))`` near ``start`` (within a pixel), and its height
        against the peak if every frequency agreed.

        Newton steps on the surface's exact gradient and curvature find the top to 1/1000
        pixel in two or three steps; where ``start`` is not on the peak's cap (the surface is
        not concave there), they start from the highest point of the surface sampled every
        half pixel around it.
        """
        perfect = float(np.abs(cross).sum())
        if perfect <= 0:
            return float(start[0]), float(start[1]), 0.0
        dy, dx, height, on_cap = self._climb(cross, float(start[0]), float(start[1]))
        if not on_cap:
            steps = np.arange(-2, 3) / 2.0
            ey = np.exp(np.outer(start[0] + steps, self.to_y))
            ex = np.exp(np.outer(self.to_x, start[1] + steps))
            j, i = divmod(int(np.argmax((ey @ cross @ ex).real)), len(steps))
            dy, dx, height, _ = self._climb(cross, float(start[0] + steps[j]), float(start[1] + steps[i]))
        return dy, dx, height / perfect

    def _climb(self, cross: np.ndarray, dy: float, dx: float) -> tuple[float, float, float, bool]:
        """Newton steps up the correlation surface from ``(dy, dx)``: ``(dy, dx, height,
        on_cap)``; where the surface is not concave, they stop there (``on_cap`` False)."""
        height = 0.0
        for _ in range(NEWTON_STEPS):
            ey = self.powers_y * np.exp(self.to_y * dy)
            ex = self.powers_x * np.exp(self.to_x * dx)
            # m[a][b]: the surface's derivative a times along y, b times along x
            m = (ey @ cross @ ex.T).real.tolist()
            height, gy, gx = m[0][0], m[1][0], m[0][1]
            hyy, hxy, hxx = m[2][0], m[1][1], m[0][2]
            det = hyy * hxx - hxy * hxy
            if not (hyy < 0 and det > 0):
                return dy, dx, height, False
            sy = min(max((hxy * gx - hxx * gy) / det, -0.5), 0.5)
            sx = min(max((hxy * gy - hyy * gx) / det, -0.5), 0.5)
            dy, dx = dy + sy, dx + sx
            if max(abs(sy), abs(sx)) < 1e-2:  # then within 1/1000 pixel
                break
        return dy, dx, height, True

    def moved(self, spec: np.ndarray, dy: float, dx: float) -> np.ndarray:
        """The spectrum of the frame of ``spec`` moved back by ``(dy, dx)`` pixels."""
        ramp = np.outer(np.exp(self.to_y * dy), np.exp(self.to_x * dx))
        return (spec * ramp).astype(np.complex64)

    def line_shifts(self, frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Extra x offset of each line of the (corrected) ``frame`` against ``reference``: the
        offsets of bands of :data:`LINE_BAND` lines, fitted by a quadratic in y."""
        from scipy import fft

        ny, nx = self.shape
        a = _fill(frame)
        b = _fill(reference)
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        from scipy.signal.windows import tukey

        taper = tukey(nx, 0.25).astype(np.float32)
        cross = fft.rfft(a * taper, axis=1) * np.conj(fft.rfft(b * taper, axis=1))
        bands = ny // LINE_BAND
        if bands < 3:
            return np.zeros(ny)
        cross = cross[: bands * LINE_BAND].reshape(bands, LINE_BAND, -1).sum(axis=1)
        cross /= (np.abs(cross) + 1e-12) ** WHITENING
        f = np.fft.rfftfreq(nx)
        cross *= np.where(f > 0, np.cos(0.5 * np.pi * np.minimum(f / CUTOFF, 1.0)) ** 2, 0.0)
        fine = 8  # the correlation on 1/8 pixel, then a parabola through its peak
        corr = fft.irfft(cross, n=nx * fine, axis=1)
        k = np.argmax(corr, axis=1)
        rows = np.arange(bands)
        left, mid, right = corr[rows, k - 1], corr[rows, k], corr[rows, (k + 1) % corr.shape[1]]
        den = left - 2 * mid + right
        frac = np.where(den < 0, 0.5 * (left - right) / np.where(den < 0, den, -1), 0.0)
        offsets = (k + frac) / fine
        offsets = np.where(offsets > nx / 2, offsets - nx, offsets)
        perfect = np.abs(cross).sum(axis=1) * 2 / (nx * fine)
        weights = np.clip(mid / np.maximum(perfect, 1e-30), 0, None)
        centres = rows * LINE_BAND + (LINE_BAND - 1) / 2
        if weights.sum() <= 0:
            return np.zeros(ny)
        # robust: bands far from the median offset (lost correlation) get no weight
        spread = np.median(np.abs(offsets - np.median(offsets))) * 1.4826 + 0.25
        weights = np.where(np.abs(offsets - np.median(offsets)) <= 3 * spread, weights, 0)
        if np.count_nonzero(weights) < 3:
            return np.zeros(ny)
        coef = np.polyfit(centres / ny, offsets, 2, w=np.sqrt(weights))
        profile = np.polyval(coef, np.arange(ny) / ny)
        return profile - profile.mean()  # the mean offset belongs to the frame's shift


class _Matcher:
    """The drift of frames against a reference: the whole pixels from frames binned
    :attr:`factor` x :attr:`factor` (a small part of the work), then the fraction on the full
    frame moved back by them (which keeps the window on the same content in both images: one
    pass alone is pulled towards zero shift by the window, 0.3 % of the shift)."""

    def __init__(self, shape: tuple[int, int]):
        ny, nx = shape
        self.factor = max((k for k in (4, 2, 1) if min(ny, nx) >= k * COARSE_MIN), default=1)
        self.fine = _Correlator(shape)
        self.coarse = self.fine
        if self.factor > 1:  # half the band is enough for whole pixels
            k = self.factor
            self.coarse = _Correlator((ny // k, nx // k), CUTOFF * k / 2)

    def _binned(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """``(frame, binned, level)``: the frame (NaN: its mean), binned :attr:`factor` x
        :attr:`factor` (sums), and the binned frame's mean."""
        frame = np.asarray(frame, dtype=np.float32)
        binned = self._bin(frame)
        level = float(binned.mean())
        if not np.isfinite(level):  # NaN somewhere (a finite mean has none)
            frame = _fill(frame)
            binned = self._bin(frame)
            level = float(binned.mean())
        return frame, binned, level

    def _bin(self, frame: np.ndarray) -> np.ndarray:
        k = self.factor
        if k == 1:
            return frame
        ny, nx = self.coarse.shape
        rows = frame[0 : k * ny : k] + frame[1 : k * ny : k]
        for i in range(2, k):
            rows += frame[i : k * ny : k]
        binned = rows[:, 0 : k * nx : k] + rows[:, 1 : k * nx : k]
        for j in range(2, k):
            binned += rows[:, j : k * nx : k]
        return binned

    def spectra(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A reference: the spectra of its binned and full frame."""
        frame, binned, level = self._binned(frame)
        return self.coarse.spectrum(binned, level), self.fine.spectrum(frame, level / self.factor**2)

    def shifts(self, frames: np.ndarray, ref: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """``(n, 3)``: :meth:`shift` of each frame (a thread's share of a block)."""
        return np.array([self.shift(frame, ref) for frame in frames]).reshape(-1, 3)

    def shift(self, frame: np.ndarray, ref: tuple[np.ndarray, np.ndarray], moved: bool = False) -> tuple:
        """``(dy, dx, quality)`` of ``frame`` against the reference ``ref`` (:meth:`spectra`);
        ``moved``: also the spectra of the frame moved back by it (a running mean's share)."""
        frame, binned, level = self._binned(frame)  # level: the frame's mean times factor ** 2
        binned = self.coarse.spectrum(binned, level)
        cy, cx = self.coarse.peak(self.coarse.cross(binned, ref[0]))
        py, px = round(cy * self.factor), round(cx * self.factor)
        spec = self.fine.spectrum(frame, level / self.factor**2, py, px)
        fy, fx, quality = self.fine.top(
            self.fine.cross(spec, ref[1]), (cy * self.factor - py, cx * self.factor - px)
        )
        dy, dx = py + fy, px + fx
        if not moved:
            return dy, dx, quality
        k = self.factor
        return dy, dx, quality, (self.coarse.moved(binned, dy / k, dx / k), self.fine.moved(spec, fy, fx))


def _vertex(left: float, mid: float, right: float) -> float:
    """Where a parabola through three equally spaced values peaks, from the middle one (-0.5..0.5)."""
    den = left - 2 * mid + right
    return min(max(0.5 * (left - right) / den, -0.5), 0.5) if den < 0 else 0.0


def _fill(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, dtype=np.float32)
    finite = np.isfinite(f)
    if finite.all():
        return f
    return np.where(finite, f, np.float32(f[finite].mean()) if finite.any() else 0)


def _roll_back(frame: np.ndarray, dy: int, dx: int, fill: float = np.nan, minus: float = 0.0) -> np.ndarray:
    """``frame - minus`` moved back by whole pixels (output ``(y, x)`` = input
    ``(y + dy, x + dx)``); what it did not see is ``fill``. A new float32 array."""
    ny, nx = frame.shape
    if dy == 0 and dx == 0:
        return np.subtract(frame, np.float32(minus), dtype=np.float32)
    out = np.zeros(frame.shape, np.float32) if fill == 0 else np.full(frame.shape, fill, np.float32)
    if abs(dy) < ny and abs(dx) < nx:
        np.subtract(
            frame[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)],
            np.float32(minus),
            out=out[max(-dy, 0) : ny - max(dy, 0), max(-dx, 0) : nx - max(dx, 0)],
        )
    return out


def shift_frame(frame: np.ndarray, dy: float, dx: Any) -> np.ndarray:
    """``frame`` with its content moved back by ``(dy, dx)`` pixels (bilinear): output pixel
    ``(y, x)`` is input position ``(y + dy, x + dx)``; ``dx`` may be one value per input line.
    Pixels whose source lies outside the frame are NaN. float32."""
    a = np.asarray(frame, dtype=np.float32)
    ny, nx = a.shape
    iy = int(np.floor(dy))
    fy = np.float32(dy - iy)
    if np.ndim(dx) == 0:  # one shift for the frame: whole-pixel moves, weighted
        ix = int(np.floor(dx))
        fx = np.float32(dx - ix)

        def lines(y: int) -> np.ndarray:
            """Output lines from input lines ``+ y``, interpolated along x."""
            out = _roll_back(a, y, ix)
            if fx > 0:
                out *= 1 - fx
                out += _roll_back(a, y, ix + 1) * fx
            return out

    else:  # one x shift per input line
        src_dx = np.asarray(dx, dtype=np.float64)[np.clip(np.arange(ny) + iy, 0, ny - 1)]
        ixs = np.floor(src_dx).astype(np.intp)
        fxs = (src_dx - ixs).astype(np.float32)[:, None]
        cols = np.arange(nx)[None, :] + ixs[:, None]

        def lines(y: int) -> np.ndarray:
            r = np.arange(ny) + y
            rr = np.clip(r, 0, ny - 1)[:, None]
            out = a[rr, np.clip(cols, 0, nx - 1)] * (1 - fxs)
            out += a[rr, np.clip(cols + 1, 0, nx - 1)] * fxs
            outside = (r < 0) | (r >= ny)
            out[outside[:, None] | (cols < 0) | (cols >= nx) | ((cols + 1 >= nx) & (fxs > 0))] = np.nan
            return out

    out = lines(iy)
    if fy > 0:
        out *= 1 - fy
        out += lines(iy + 1) * fy
    return out


def _blocks(movie: Any) -> Generator[tuple[int, np.ndarray], None, None]:
    """``(start, frames)`` blocks of a movie, read a few MB at a time."""
    t, ny, nx = movie.shape
    step = max(1, BLOCK_BYTES // (ny * nx * 4))
    for start in range(0, t, step):
        yield start, np.asarray(movie[start : start + step], dtype=np.float32)


def register_steps(
    movie: Any,
    reference: str | int = "first",
    per_line: bool = False,
    pixel_size: Any = None,
    unit: str = "nm",
    window: int = 10,
) -> Generator[Progress, None, Registration]:
    """:func:`register` as a generator of :class:`Progress` (one per block of frames, with the
    time left in ``message``); returns the :class:`Registration`. Stop it to cancel."""
    stack = as_image(movie, "movie")
    if stack.ndim != 3:
        raise ValueError(f"movie: expected a (t, y, x) stack of frames, got a 2-D image {stack.shape}")
    t, ny, nx = stack.shape
    if t < 1:
        raise ValueError("movie: it has no frame")
    if min(ny, nx) < 8:
        raise ValueError(f"movie: frames of {ny} x {nx} pixels are too small to register (8 x 8 at least)")
    if ny * nx > MAX_FRAME_PIXELS:
        raise ValueError(
            f"movie: frames of {ny} x {nx} pixels are too large to register (at most {MAX_FRAME_PIXELS:,} pixels)"
        )
    check_options("phase", {"reference": reference, "per_line": per_line, "window": window})
    reference = _check_reference(reference, t)
    size = _check_pixel_size(pixel_size)
    matcher = _Matcher((ny, nx))
    ref_frame = np.asarray(stack[reference if isinstance(reference, int) else 0], dtype=np.float32)
    ref = matcher.spectra(ref_frame)
    running = _MeanSpectra(int(window), ref)
    # the line offsets of a running mean need its pixels
    running_pixels = _RunningMean(int(window), ref_frame) if per_line and reference == "mean" else None
    shifts = np.zeros((t, 2))
    quality = np.zeros(t)
    lines = np.zeros((t, ny)) if per_line else None
    seen: list[float] = []  # the qualities so far, sorted (what flags a frame: see _flag)
    started = time.perf_counter()
    # frames measured against a fixed reference are independent: measured in threads, a share
    # of each block per thread (the FFTs and array arithmetic release the GIL); a running mean
    # or per-line offsets go in order
    independent = reference != "mean" and not per_line
    with ThreadPoolExecutor(THREADS) if independent else contextlib.nullcontext() as pool:
        for start, block in _blocks(stack):
            if pool is not None:
                shares = [share for share in np.array_split(block, THREADS) if len(share)]
                found = np.concatenate(list(pool.map(matcher.shifts, shares, [ref] * len(shares))))
                shifts[start : start + len(block)] = found[:, :2]
                quality[start : start + len(block)] = found[:, 2]
            for k, frame in enumerate(block if pool is None else ()):
                i = start + k
                dy, dx, q, moved = matcher.shift(frame, ref, moved=True)
                shifts[i], quality[i] = (dy, dx), q
                if reference == "mean" and i:  # the reference frame (0) matches itself
                    bisect.insort(seen, q)
                keep = reference == "mean" and (i == 0 or not q < MIN_QUALITY * _typical(seen))
                if lines is not None:
                    corrected = shift_frame(frame, dy, dx)
                    lines[i] = matcher.fine.line_shifts(
                        corrected, ref_frame if running_pixels is None else running_pixels.mean()
                    )
                    if keep and running_pixels is not None:
                        running_pixels.add(corrected)
                if keep:
                    running.add(moved)
                    ref = running.mean()
            done = start + len(block)
            elapsed = time.perf_counter() - started
            left = elapsed / done * (t - done)
            yield Progress(done, t, message=f"frame {done} of {t}, {time_left(left)}")
    flagged = _flag(quality, reference)
    if flagged.any() and not flagged.all():
        good = np.flatnonzero(~flagged)
        bad = np.flatnonzero(flagged)
        for axis in range(2):
            shifts[bad, axis] = np.interp(bad, good, shifts[good, axis])
        if lines is not None:
            lines[bad] = 0.0
    corrected_movie = apply_shifts(stack, shifts, lines)
    return Registration(
        corrected_movie,
        shifts,
        quality,
        flagged,
        lines,
        size,
        unit if pixel_size is not None else "px",
        reference,
    )


class _MeanSpectra:
    """The mean spectra (:meth:`_Matcher.spectra`) of the last ``window`` corrected frames (sums
    updated per frame); ``fallback`` until the first frame. The spectrum of a mean is the mean
    of the spectra: a running mean costs no Fourier transform and no pixel per frame."""

    def __init__(self, window: int, fallback: tuple[np.ndarray, np.ndarray]):
        self.window, self.fallback = window, fallback
        self.parts: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.total = [np.zeros(part.shape, np.complex128) for part in fallback]

    def add(self, spectra: tuple[np.ndarray, np.ndarray]) -> None:
        if len(self.parts) == self.window:
            for total, part in zip(self.total, self.parts.popleft(), strict=True):
                total -= part
        self.parts.append(spectra)
        for total, part in zip(self.total, spectra, strict=True):
            total += part

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.parts:
            return self.fallback
        coarse, fine = ((total / len(self.parts)).astype(np.complex64) for total in self.total)
        return coarse, fine


class _RunningMean:
    """The mean of the last ``window`` corrected frames, pixel by pixel over the frames that saw
    each pixel (a sum and a count updated per frame); ``fallback`` until the first frame."""

    def __init__(self, window: int, fallback: np.ndarray):
        self.frames: deque[np.ndarray] = deque()
        self.window, self.fallback = window, fallback
        self.total = np.zeros(fallback.shape, np.float64)
        self.count = np.zeros(fallback.shape, np.int64)

    def add(self, frame: np.ndarray) -> None:
        if len(self.frames) == self.window:
            self._update(self.frames.popleft(), -1)
        self.frames.append(frame)
        self._update(frame, 1)

    def _update(self, frame: np.ndarray, sign: int) -> None:
        seen = np.isfinite(frame)
        self.total += sign * np.where(seen, frame, 0.0)
        self.count += sign * seen

    def mean(self) -> np.ndarray:
        if not self.frames:
            return self.fallback
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / self.count, np.nan).astype(np.float32)


def _flag(quality: np.ndarray, reference: str | int) -> np.ndarray:
    """Frames whose correlation peak collapsed against the series' typical one."""
    own = reference if isinstance(reference, int) else 0  # the reference frame matches itself
    others = np.delete(quality, own) if len(quality) > 1 else quality
    flagged = quality < MIN_QUALITY * _typical(np.sort(others))
    flagged[own] = False
    return flagged


def _typical(qualities: Any) -> float:
    """The typical correlation peak of a series: the upper quartile of its sorted
    ``qualities`` (linear between ranks, as numpy's percentile)."""
    rank = 0.75 * (len(qualities) - 1)
    low = int(rank)
    high = min(low + 1, len(qualities) - 1)
    return float(qualities[low] + (qualities[high] - qualities[low]) * (rank - low))


def apply_shifts(movie: Any, shifts: np.ndarray, line_shifts: np.ndarray | None = None) -> Any:
    """``movie`` with each frame's drift ``shifts[i]`` (and per-line x offsets) taken out:
    float32, lazily frame by frame for a dask movie."""
    shifts = np.asarray(shifts, dtype=np.float64)

    def one(frame: np.ndarray, i: int) -> np.ndarray:
        dx = shifts[i, 1] if line_shifts is None else shifts[i, 1] + line_shifts[i]
        return shift_frame(frame, shifts[i, 0], dx)

    if is_dask(movie):
        import dask.array as da

        def block(frames: np.ndarray, block_info=None) -> np.ndarray:
            start = block_info[0]["array-location"][0][0]
            return np.stack([one(f, start + k) for k, f in enumerate(np.asarray(frames))])

        return da.map_blocks(block, movie.rechunk({1: -1, 2: -1}), dtype=np.float32)
    frames = np.asarray(movie)
    out = np.empty(frames.shape, np.float32)
    for i, frame in enumerate(frames):
        out[i] = one(frame, i)
    return out


def register(
    movie: Any,
    reference: str | int = "first",
    per_line: bool = False,
    pixel_size: Any = None,
    unit: str = "nm",
    window: int = 10,
    progress: Callable[[Progress], Any] | None = None,
) -> Registration:
    """Drift correction of a ``(t, y, x)`` movie (numpy or dask) by subpixel phase correlation.

    ``reference``: ``"first"`` (frame 0), ``"mean"`` (the running mean of the last ``window``
    corrected frames: follows a sample that changes slowly) or a frame number. ``per_line``:
    also take out a smooth x offset along the scan lines (creep). ``pixel_size``: ``(dy, dx)``
    or one number, in ``unit`` per pixel, for the shift table (None: pixels). ``progress``
    sees a :class:`Progress` per block of frames. See :class:`Registration` for the result;
    ``register(movie).movie`` is the corrected movie (lazy for a dask movie).
    """
    return run_to_end(register_steps(movie, reference, per_line, pixel_size, unit, window), progress)


#: The options of the ``register`` step (layers, recipes): name -> default.
REGISTER_OPTIONS = {"reference": "first", "per_line": False, "window": 10}


def check_options(method: Any, options: dict) -> dict:
    """The ``register`` step's options checked (ValueError naming the one that is wrong)."""
    if method not in ("phase", "auto"):
        raise ValueError(f"method: unknown {method!r}; register has 'phase' (phase correlation)")
    unknown = sorted(set(options) - set(REGISTER_OPTIONS))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of register (it has {', '.join(REGISTER_OPTIONS)})")
    clean = {**REGISTER_OPTIONS, **options}
    _check_reference(clean["reference"], 2**62)
    if not isinstance(clean["per_line"], (bool, np.bool_)):
        raise ValueError(f"per_line: expected true or false, got {clean['per_line']!r}")
    window = clean["window"]
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"window: expected a number of frames from 1 to {MAX_WINDOW}, got {window!r}")
    return clean


def register_movie(image: Any, method: str = "phase", **options: Any) -> Any:
    """The corrected movie alone: the ``register`` processing step of layers and recipes
    (options: see :data:`REGISTER_OPTIONS` and :func:`register`)."""
    return register(image, **check_options(method, options)).movie
