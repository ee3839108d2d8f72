"""Line profiles along a line or polyline, width-averaged, in physical units; on a movie the
profile of every frame: a kymograph (time x distance).

The path is sampled every ``step`` (default: the smaller pixel size) with bilinear
interpolation; with a ``width`` the values across it (every ``step``, perpendicular to each
segment) are averaged. Distances and widths are physical, so non-square pixels are handled.
Samples outside the image are NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from ..process.common import Progress, run_to_end
from .geometry import Image, as_measured, length_unit

#: Most samples one profile may hold (a path this long is a mistake in its coordinates).
MAX_SAMPLES = 1_000_000
#: Most values a kymograph may hold (frames x samples along the line; 1 GiB of float64).
MAX_KYMOGRAPH = 2**27


@dataclass
class Profile:
    """``distance`` along the path (``distance_unit``); ``values[name]`` per channel, in
    ``units[name]``; ``points`` the path's vertices ``(y, x)``; ``width`` the averaging width."""

    distance: np.ndarray
    values: dict[str, np.ndarray]
    units: dict[str, str]
    distance_unit: str
    points: np.ndarray
    width: float
    processing: list[dict] = field(default_factory=list)

    def to_csv(self) -> str:
        """The profile as CSV text: a distance column and one column per channel (with units)."""
        head = [f"distance [{self.distance_unit}]"] + [
            f"{name} [{self.units[name]}]" if self.units[name] else name for name in self.values
        ]
        rows = [",".join(_quote(h) for h in head)]
        columns = [self.distance, *self.values.values()]
        for i in range(len(self.distance)):
            rows.append(",".join(f"{c[i]:.9g}" for c in columns))
        return "\n".join(rows) + "\n"


@dataclass
class Kymograph:
    """``data`` ``(t, n)``: the profile of each frame; ``distance`` its x axis; ``frame_time_s``."""

    data: np.ndarray
    distance: np.ndarray
    z_unit: str
    distance_unit: str
    frame_time_s: float | None
    points: np.ndarray
    width: float


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def check_path(points: Any) -> np.ndarray:
    """``points``: at least two ``(y, x)`` vertices, finite, not all the same point."""
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise ValueError(f"points: expected two or more (y, x) points of a line, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points: the line has a point that is not a finite number")
    if np.all(np.hypot(*np.diff(pts, axis=0).T) == 0):
        raise ValueError("points: the line has zero length")
    return pts


def sample_path(points: np.ndarray, step: float, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample positions along the polyline: ``distance`` (n,) and ``ys``, ``xs`` (n, m), m
    samples across the width (physical units)."""
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step: expected a positive distance, got {step!r}")
    if not (np.isfinite(width) and width >= 0):
        raise ValueError(f"width: expected zero or a positive distance, got {width!r}")
    points = points[np.r_[True, np.any(np.diff(points, axis=0) != 0, axis=1)]]  # repeated vertices out
    seg = np.diff(points, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    total = float(lengths.sum())
    n = int(np.floor(total / step + 1e-9)) + 1
    across = int(round(width / step)) + 1 if width > 0 else 1
    if n * across > MAX_SAMPLES:
        raise ValueError(
            f"points/width: the line is {total:g} long and {width:g} wide, {n * across} samples at a step of "
            f"{step:g}; more than {MAX_SAMPLES} (check the units of the coordinates)"
        )
    distance = np.arange(n) * step
    starts = np.concatenate([[0.0], np.cumsum(lengths)])
    index = np.clip(np.searchsorted(starts, distance, side="right") - 1, 0, len(seg) - 1)
    frac = (distance - starts[index]) / lengths[index]
    y = points[index, 0] + frac * seg[index, 0]
    x = points[index, 1] + frac * seg[index, 1]
    normal = np.stack([seg[index, 1], -seg[index, 0]], axis=1) / lengths[index, None]
    offsets = np.linspace(-width / 2, width / 2, across) if across > 1 else np.zeros(1)
    ys = y[:, None] + normal[:, 0, None] * offsets[None, :]
    xs = x[:, None] + normal[:, 1, None] * offsets[None, :]
    return distance, ys, xs


def _sample(frame: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear values at fractional pixel positions (n, m), averaged over m; NaN outside."""
    h, w = frame.shape
    eps = 1e-6
    inside = (rows >= -eps) & (rows <= h - 1 + eps) & (cols >= -eps) & (cols <= w - 1 + eps)
    coords = np.stack([np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)])
    frame = np.asarray(frame, dtype=np.float64)
    values = map_coordinates(frame, coords.reshape(2, -1), order=1, mode="nearest").reshape(rows.shape)
    values = np.where(inside & np.isfinite(values), values, np.nan)
    out = np.full(rows.shape[0], np.nan)
    ok = np.isfinite(values).any(axis=1)
    out[ok] = np.nanmean(values[ok], axis=1)
    return out


def profile(
    images: Any,
    points: Any,
    width: float = 0.0,
    step: float | None = None,
    pixel_size: Any = None,
    offset: Any = None,
) -> Profile:
    """The profile along ``points`` (a line or polyline, ``(y, x)`` vertices in physical units)
    of one image or of every channel of a scan.

    ``images``: a 2-D array (with ``pixel_size``/``offset``), a Channel, a Scan (every 2-D
    channel), or a list of Channels (e.g. every channel of a scan). ``width``: the band across
    the line that is averaged (physical units; 0 = the line itself). ``step``: the sample
    spacing (default: the smallest pixel size of the images). Values outside an image are NaN.
    """
    pts = check_path(points)
    measured = _many(images, pixel_size, offset)
    if step is None:
        step = min(min(m.pixel_size) for m in measured)
    distance, ys, xs = sample_path(pts, float(step), float(width))
    values, units = {}, {}
    for m in measured:
        rows, cols = m.to_pixels(ys, xs)
        values[m.name] = _sample(m.data, rows, cols)
        units[m.name] = m.z_unit
    step_record = {"step": "profile", "points": pts.tolist(), "width": float(width), "step_size": float(step)}
    return Profile(distance, values, units, length_unit(measured[0]), pts, float(width), [step_record])


def _many(images: Any, pixel_size: Any, offset: Any) -> list[Image]:
    channels = getattr(images, "channels", None)
    if channels is not None:  # a Scan
        chosen = [ch for ch in channels if ch.data.ndim == 2]
        if not chosen:
            raise ValueError("images: the scan has no 2-D channel; use kymograph() for a movie")
        images = chosen
    items = images if isinstance(images, (list, tuple)) and not _is_numbers(images) else [images]
    measured = [as_measured(item, pixel_size, offset) for item in items]
    units = {m.xy_unit for m in measured}
    if len(units) > 1:
        raise ValueError(f"images: the channels have different lateral units {sorted(units)}")
    names: dict[str, int] = {}
    for m in measured:  # one column per channel, even where names repeat
        names[m.name] = names.get(m.name, 0) + 1
        if names[m.name] > 1:
            m.name = f"{m.name} #{names[m.name]}"
    return measured


def _is_numbers(items: Any) -> bool:
    return len(items) > 0 and not hasattr(items[0], "data")


def kymograph_steps(
    movie: Any,
    points: Any,
    width: float = 0.0,
    step: float | None = None,
    pixel_size: Any = None,
    offset: Any = None,
) -> Generator[Progress, None, Kymograph]:
    """:func:`kymograph` as long work: yields a :class:`Progress` after each frame (stop
    iterating to cancel) and returns the :class:`Kymograph`."""
    pts = check_path(points)
    m = as_measured(movie, pixel_size, offset, movie=True)
    if m.data.ndim != 3:
        raise ValueError(f"movie: expected a (t, y, x) stack, got a 2-D image {m.data.shape}; use profile()")
    step = min(m.pixel_size) if step is None else float(step)
    distance, ys, xs = sample_path(pts, step, float(width))
    rows, cols = m.to_pixels(ys, xs)
    total = m.data.shape[0]
    if total * len(distance) > MAX_KYMOGRAPH:
        raise ValueError(
            f"points: {total} frames x {len(distance)} samples along the line is more than {MAX_KYMOGRAPH} values; "
            "use a shorter line or a larger step"
        )
    out = np.empty((total, len(distance)))
    for t in range(total):
        out[t] = _sample(np.asarray(m.data[t]), rows, cols)
        yield Progress(t + 1, total, message=f"frame {t + 1}/{total}")
    return Kymograph(out, distance, m.z_unit, length_unit(m), m.frame_time_s, pts, float(width))


def kymograph(
    movie: Any,
    points: Any,
    width: float = 0.0,
    step: float | None = None,
    pixel_size: Any = None,
    offset: Any = None,
    progress: Callable[[Progress], Any] | None = None,
) -> Kymograph:
    """The profile along ``points`` in every frame of a ``(t, y, x)`` movie: ``(t, distance)``.

    ``movie``: an array (with ``pixel_size``/``offset``) or a movie Channel. Frames are read one
    at a time (a dask movie is never loaded whole); ``progress`` sees a :class:`Progress` per frame.
    """
    return run_to_end(kymograph_steps(movie, points, width, step, pixel_size, offset), progress)
