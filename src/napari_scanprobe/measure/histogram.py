"""The height (value) histogram of an image, an ROI or a mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import as_measured, evaluated

MAX_BINS = 100_000


@dataclass
class Histogram:
    """``counts`` per bin between ``edges`` (``len(counts) + 1``, in ``unit``)."""

    counts: np.ndarray
    edges: np.ndarray
    unit: str

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def height_histogram(
    image: Any,
    bins: int = 256,
    mask: Any = None,
    roi: Any = None,
    value_range: tuple[float, float] | None = None,
    z_unit: str | None = None,
    pixel_size: Any = None,
) -> Histogram:
    """Counts of the finite values of a 2-D image (array or Channel) in ``bins`` equal bins.

    ``mask``/``roi`` as for :func:`~napari_scanprobe.measure.roughness.roughness`;
    ``value_range``: ``(low, high)``, default the data's range.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 1 <= bins <= MAX_BINS:
        raise ValueError(f"bins: expected a whole number from 1 to {MAX_BINS}, got {bins!r}")
    m = as_measured(image, pixel_size, None, z_unit)
    z, inside = evaluated(m, mask, roi)
    values = z[inside]
    if values.size == 0:
        raise ValueError(f"{m.name}: no valid pixel to count")
    if value_range is not None:
        low, high = (float(v) for v in value_range)
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f"value_range: expected (low, high) with low < high, got {value_range!r}")
    else:
        low, high = float(values.min()), float(values.max())
        if high <= low:
            low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=int(bins), range=(low, high))
    return Histogram(counts, edges, m.z_unit)
