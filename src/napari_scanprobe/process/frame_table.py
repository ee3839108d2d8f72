"""Numbers per movie frame, as a table to plot over time and save as CSV: :func:`frame_table`.

Height statistics (mean, min, max), ISO 25178 roughness (Sa, Sq, from
:mod:`napari_scanprobe.measure`), the drift of a :class:`Registration`
(and its flagged frames) and, for a classifier model, the probability of each category and where
its class activation map (Grad-CAM) peaks. Frames
are read a few at a time, so a long lazy movie is never loaded whole; NaN pixels (what a
corrected frame did not see) are left out of every number.
"""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.loop import time_left
from .common import Progress, as_image, run_to_end

#: Frames read (and classified) at once.
BLOCK_FRAMES = 64


@dataclass
class FrameTable:
    """``columns``: name -> one value per frame, in order; ``units``: name -> unit ("" none)."""

    columns: dict[str, list] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def add(self, name: str, values: Any, unit: str = "") -> None:
        self.columns[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
        self.units[name] = unit

    def heading(self, name: str) -> str:
        """``"mean (nm)"``: the column's name with its unit."""
        return f"{name} ({self.units[name]})" if self.units.get(name) else name

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The table as CSV text (headings with units); written atomically to ``path`` if given."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.heading(name) for name in self.columns])
        writer.writerows(zip(*self.columns.values(), strict=True))
        text = out.getvalue()
        if path is not None:
            from ..atomic import atomic_write

            atomic_write(Path(path), text.encode("utf-8"))
        return text


def _roughness(frame: np.ndarray) -> tuple[float, float]:
    """ISO 25178 Sa and Sq of one frame (:func:`~napari_scanprobe.measure.roughness`); NaN for a
    frame with fewer than two valid pixels."""
    from ..measure import roughness

    if np.count_nonzero(np.isfinite(frame)) < 2:
        return float("nan"), float("nan")
    r = roughness(frame)
    return r.Sa, r.Sq


def frame_table_steps(
    movie: Any,
    z_unit: str = "nm",
    frame_time_s: float | None = None,
    registration: Any = None,
    model: Any = None,
    pixel_size: Any = None,
) -> Generator[Progress, None, FrameTable]:
    """:func:`frame_table` as a generator of :class:`Progress` (one per block of frames)."""
    stack = as_image(movie, "movie")
    if stack.ndim != 3:
        raise ValueError(f"movie: expected a (t, y, x) stack of frames, got a 2-D image {stack.shape}")
    t = stack.shape[0]
    if registration is not None and len(registration.shifts) != t:
        raise ValueError(f"registration: it has {len(registration.shifts)} frames, the movie {t}")
    if model is not None:
        from ..learn.modelfile import load_model

        model = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    stats = {name: np.empty(t) for name in ("mean", "min", "max", "Sa", "Sq")}
    probabilities: list[dict[str, float]] = []
    peaks: list[tuple[int, int]] = []  # (row, column) of each frame's CAM maximum
    started = time.perf_counter()
    for start in range(0, t, BLOCK_FRAMES):
        block = np.asarray(stack[start : start + BLOCK_FRAMES], dtype=np.float64)
        stop = start + len(block)
        with warnings.catch_warnings():  # an all-NaN frame gives NaN, without a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            stats["mean"][start:stop] = np.nanmean(block, axis=(1, 2))
            stats["min"][start:stop] = np.nanmin(block, axis=(1, 2))
            stats["max"][start:stop] = np.nanmax(block, axis=(1, 2))
            for k, frame in enumerate(block):
                stats["Sa"][start + k], stats["Sq"][start + k] = _roughness(frame)
        if model is not None:
            from ..learn.predict import predict_many

            # a corrected frame's unseen border: the frame's median height, as the model needs numbers
            frames = [
                np.where(np.isfinite(f), f, np.nanmedian(f) if np.isfinite(f).any() else 0.0) for f in block
            ]
            from ..learn.cam import cam

            for prediction in predict_many(model, frames, pixel_size):
                assert prediction is not None  # arrays always give a prediction (no on_error here)
                probabilities.append(prediction.probabilities)
            for frame in frames:  # where the model looked: the map has the frame's shape
                heat = cam(model, frame, pixel_size=pixel_size).map
                row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
                peaks.append((int(row), int(col)))
        left = (time.perf_counter() - started) / stop * (t - stop)
        yield Progress(stop, t, message=f"frame {stop} of {t}, {time_left(left)}")
    table = FrameTable()
    table.add("frame", range(t))
    if frame_time_s:
        table.add("time", (np.arange(t) * float(frame_time_s)).tolist(), "s")
    for name, values in stats.items():
        table.add(name, values.tolist(), z_unit)
    if registration is not None:
        for name, values in registration.table().items():
            if name != "frame":
                unit = registration.unit if name.endswith("_" + registration.unit) else ""
                table.add(name.removesuffix("_" + registration.unit), values, unit)
    if model is not None:
        for category in model.categories:
            table.add(f"P({category})", [p[category] for p in probabilities])
        dy, dx = (1.0, 1.0) if pixel_size is None else np.broadcast_to(np.asarray(pixel_size, float), (2,))
        unit = "px" if pixel_size is None else "nm"
        table.add("CAM peak y", [row * dy for row, _ in peaks], unit)
        table.add("CAM peak x", [col * dx for _, col in peaks], unit)
    return table


def frame_table(
    movie: Any,
    z_unit: str = "nm",
    frame_time_s: float | None = None,
    registration: Any = None,
    model: Any = None,
    pixel_size: Any = None,
    progress: Callable[[Progress], Any] | None = None,
) -> FrameTable:
    """Per-frame numbers of a ``(t, y, x)`` movie (numpy or dask), as a :class:`FrameTable`.

    Columns: ``frame``, ``time`` (s, with ``frame_time_s``), ``mean``/``min``/``max`` height,
    ``Sa``/``Sq`` roughness (all in ``z_unit``), the ``registration``'s ``dy``/``dx`` drift,
    ``quality`` and ``flagged`` (a :class:`~napari_scanprobe.process.register.Registration`
    of this movie), and for ``model`` (a classifier or the path of a saved one; ``pixel_size``:
    nm per pixel, what the model resamples from) ``P(category)`` for each category and
    ``CAM peak y``/``CAM peak x``, where the frame's Grad-CAM map is highest (nm from the frame's
    top-left corner with ``pixel_size``, else pixels).
    ``.to_csv(path)`` saves it.
    """
    return run_to_end(
        frame_table_steps(movie, z_unit, frame_time_s, registration, model, pixel_size), progress
    )
