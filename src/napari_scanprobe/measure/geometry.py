"""What every measurement needs from its input: the values and where each pixel lies.

Coordinates are physical, ``(y, x)`` in ``xy_unit`` as napari's world coordinates of a layer:
pixel ``(i, j)`` has its centre at ``offset + (i * dy, j * dx)``. Regions are boolean masks
(True = inside) or rectangles ``((y0, x0), (y1, x1))`` in those coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.scan import Channel
from ..process.common import as_image


@dataclass
class Image:
    """Values with their frame: ``data`` (2-D, or 3-D ``(t, y, x)``), ``pixel_size`` ``(dy, dx)``,
    ``offset`` ``(y0, x0)``, ``z_unit``, ``xy_unit`` ("" = pixels), ``name``, ``frame_time_s``."""

    data: Any
    pixel_size: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    z_unit: str = ""
    xy_unit: str = ""
    name: str = "image"
    frame_time_s: float | None = None

    def to_pixels(self, y: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Physical ``(y, x)`` -> fractional ``(row, column)``."""
        (dy, dx), (y0, x0) = self.pixel_size, self.offset
        return (np.asarray(y, float) - y0) / dy, (np.asarray(x, float) - x0) / dx


def _pair(value: Any, name: str, positive: bool) -> tuple[float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        need = "one or two positive numbers (dy, dx)" if positive else "two numbers (y, x)"
        raise ValueError(f"{name}: expected {need}, got {value!r}")
    return float(arr[0]), float(arr[1])


def as_measured(
    image: Any,
    pixel_size: Any = None,
    offset: Any = None,
    z_unit: str | None = None,
    xy_unit: str | None = None,
    name: str = "image",
    movie: bool = False,
) -> Image:
    """An :class:`Image` from a Channel (its own frame and units) or an array plus keywords.

    Keywords given explicitly win over the Channel's. A plain array without ``pixel_size`` is
    measured in pixels (``xy_unit`` ""). ``movie``: accept a ``(t, y, x)`` stack, else 2-D only.
    """
    if isinstance(image, Image):
        return image
    if isinstance(image, Channel):
        ch = image
        pixel_size = ch.pixel_size if pixel_size is None else pixel_size
        offset = ch.offset if offset is None else offset
        z_unit = ch.z_unit if z_unit is None else z_unit
        xy_unit = ch.xy_unit if xy_unit is None else xy_unit
        name, frame_time, data = ch.title, ch.frame_time_s, ch.data
    else:
        frame_time, data = None, image
        if xy_unit is None:
            xy_unit = "" if pixel_size is None else "nm"
    data = as_image(data, name)
    if data.ndim == 3 and not movie:
        raise ValueError(f"{name}: expected a 2-D image, got a movie {data.shape}; measure one frame")
    return Image(
        data=data,
        pixel_size=_pair(1.0 if pixel_size is None else pixel_size, "pixel_size", True),
        offset=_pair(0.0 if offset is None else offset, "offset", False),
        z_unit=z_unit or "",
        xy_unit=xy_unit or "",
        name=name,
        frame_time_s=frame_time,
    )


def region_mask(image: Image, region: Any, name: str = "region") -> np.ndarray:
    """A boolean ``(y, x)`` mask from a mask (any array of that shape, nonzero = inside) or a
    rectangle ``((y0, x0), (y1, x1))`` in physical coordinates (pixels whose centre lies in it)."""
    shape = image.data.shape[-2:]
    arr = np.asarray(region)
    if arr.shape == shape:
        return arr.astype(bool)
    if arr.shape == (2, 2) and np.issubdtype(arr.dtype, np.number):
        rows, cols = image.to_pixels(arr[:, 0], arr[:, 1])
        r0, r1 = sorted(rows)
        c0, c1 = sorted(cols)
        yy = np.arange(shape[0])[:, None]
        xx = np.arange(shape[1])[None, :]
        eps = 1e-9
        mask = (yy >= r0 - eps) & (yy <= r1 + eps) & (xx >= c0 - eps) & (xx <= c1 + eps)
        if not mask.any():
            raise ValueError(f"{name}: the rectangle {arr.tolist()} holds no pixel of {image.name}")
        return mask
    raise ValueError(
        f"{name}: expected a mask of shape {shape} or a rectangle ((y0, x0), (y1, x1)), got shape {arr.shape}"
    )


def evaluated(image: Image, mask: Any = None, roi: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The heights as float64 and where they count: finite, inside ``mask`` and ``roi``
    (a mask and/or a rectangle, see :func:`region_mask`; both given: their intersection)."""
    z = np.asarray(image.data, dtype=np.float64)
    inside = np.isfinite(z)
    if mask is not None:
        inside &= region_mask(image, mask, "mask")
    if roi is not None:
        inside &= region_mask(image, roi, "roi")
    return z, inside


def length_unit(image: Image) -> str:
    return image.xy_unit or "px"
