"""Areal roughness parameters of ISO 25178-2 on a 2-D height map, an ROI or a mask.

Heights are taken from the mean of the evaluated area (level the scan first: ``flatten``):
``Sa`` mean absolute height, ``Sq`` root mean square height, ``Ssk`` skewness, ``Sku``
kurtosis, ``Sp`` highest peak, ``Sv`` deepest valley (a positive depth), ``Sz`` = Sp + Sv,
``Sdq`` root mean square gradient ``sqrt(mean((dz/dx)^2 + (dz/dy)^2))``, with forward
differences to the right and lower neighbour divided by the physical pixel size in each
direction (non-square pixels included), over the pixels whose two neighbours are evaluated too
(as SurfaceTopography's ``rms_gradient``).
NaN pixels are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import as_measured, evaluated

ROUGHNESS_PARAMETERS = ("Sa", "Sq", "Ssk", "Sku", "Sp", "Sv", "Sz", "Sdq")


@dataclass
class Roughness:
    """The parameters (floats) with ``units`` per parameter and ``pixels`` evaluated."""

    Sa: float
    Sq: float
    Ssk: float
    Sku: float
    Sp: float
    Sv: float
    Sz: float
    Sdq: float
    units: dict[str, str]
    pixels: int
    name: str = "image"

    def as_dict(self) -> dict[str, float]:
        return {p: getattr(self, p) for p in ROUGHNESS_PARAMETERS}

    def rows(self) -> list[tuple[str, float, str]]:
        """``(parameter, value, unit)`` rows, for a table."""
        return [(p, getattr(self, p), self.units[p]) for p in ROUGHNESS_PARAMETERS]

    def text(self, parameter: str, unit: bool = True) -> str:
        """One parameter as a person reads it: 5 significant digits (and its unit), or ``n/a``
        where it is undefined (the skewness and kurtosis of a perfectly flat area)."""
        value = getattr(self, parameter)
        if not np.isfinite(value):
            return "n/a"
        return f"{value:.5g} {self.units[parameter] if unit else ''}".rstrip()


def _units(z_unit: str, xy_unit: str) -> dict[str, str]:
    if z_unit and z_unit == xy_unit:
        slope = ""  # nm/nm
    elif z_unit or xy_unit:
        slope = f"{z_unit or '1'}/{xy_unit or 'px'}"
    else:
        slope = ""
    return {
        "Sa": z_unit,
        "Sq": z_unit,
        "Ssk": "",
        "Sku": "",
        "Sp": z_unit,
        "Sv": z_unit,
        "Sz": z_unit,
        "Sdq": slope,
    }


def _rms_gradient(z: np.ndarray, dy: float, dx: float) -> float:
    """sqrt(mean((dz/dx)^2 + (dz/dy)^2)) over the pixels whose right and lower neighbours are valid
    (forward differences; NaN marks pixels left out)."""
    grad_y = np.diff(z, axis=0)[:, :-1] / dy
    grad_x = np.diff(z, axis=1)[:-1, :] / dx
    ok = np.isfinite(grad_y) & np.isfinite(grad_x)
    return float(np.sqrt(np.mean(grad_x[ok] ** 2 + grad_y[ok] ** 2))) if ok.any() else float("nan")


def roughness(
    image: Any,
    pixel_size: Any = None,
    mask: Any = None,
    roi: Any = None,
    z_unit: str | None = None,
    xy_unit: str | None = None,
) -> Roughness:
    """ISO 25178 areal roughness of ``image`` (a 2-D array or a Channel).

    ``pixel_size``: ``(dy, dx)`` (for Sdq; a Channel brings its own). ``mask``: a boolean
    array, True = evaluated (e.g. a Labels layer > 0). ``roi``: a rectangle ``((y0, x0), (y1,
    x1))`` in physical coordinates. Both given: their intersection.
    """
    m = as_measured(image, pixel_size, None, z_unit, xy_unit)
    z, inside = evaluated(m, mask, roi)
    n = int(inside.sum())
    if n < 2:
        raise ValueError(f"{m.name}: the evaluated area holds {n} valid pixel(s); roughness needs at least 2")
    heights = z[inside] - z[inside].mean()
    sq = float(np.sqrt(np.mean(heights**2)))
    sp, sv = float(heights.max()), 0.0 - float(heights.min())  # a flat area: 0, not -0
    if sq > 0:
        ssk = float(np.mean(heights**3) / sq**3)
        sku = float(np.mean(heights**4) / sq**4)
    else:
        ssk = sku = float("nan")
    sdq = _rms_gradient(np.where(inside, z, np.nan), *m.pixel_size)
    return Roughness(
        Sa=float(np.mean(np.abs(heights))),
        Sq=sq,
        Ssk=ssk,
        Sku=sku,
        Sp=sp,
        Sv=sv,
        Sz=sp + sv,
        Sdq=sdq,
        units=_units(m.z_unit, m.xy_unit),
        pixels=n,
        name=m.name,
    )
