"""Step height between two regions: the difference of their mean heights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import as_measured, region_mask


@dataclass
class StepHeight:
    """``height`` = mean(upper) - mean(lower), in ``unit``; each region's mean, standard
    deviation and pixel count; ``uncertainty`` the standard error of the difference."""

    height: float
    unit: str
    lower_mean: float
    upper_mean: float
    lower_std: float
    upper_std: float
    lower_pixels: int
    upper_pixels: int

    @property
    def uncertainty(self) -> float:
        return float(np.sqrt(self.lower_std**2 / self.lower_pixels + self.upper_std**2 / self.upper_pixels))


def step_height(
    image: Any, lower: Any, upper: Any, pixel_size: Any = None, offset: Any = None, z_unit: str | None = None
) -> StepHeight:
    """The height of ``upper`` above ``lower`` on a 2-D image (array or Channel).

    ``lower``/``upper``: boolean masks or rectangles ``((y0, x0), (y1, x1))`` in physical
    coordinates (see :mod:`napari_scanprobe.measure.geometry`). NaN pixels are left out.
    """
    m = as_measured(image, pixel_size, offset, z_unit)
    z = np.asarray(m.data, dtype=np.float64)
    stats = []
    for name, region in (("lower", lower), ("upper", upper)):
        values = z[region_mask(m, region, name) & np.isfinite(z)]
        if values.size == 0:
            raise ValueError(f"{name}: the region holds no valid pixel of {m.name}")
        stats.append((float(values.mean()), float(values.std()), int(values.size)))
    (lo, slo, nlo), (up, sup, nup) = stats
    return StepHeight(up - lo, m.z_unit, lo, up, slo, sup, nlo, nup)
