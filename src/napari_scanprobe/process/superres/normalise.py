"""NaN handling and the robust height normalisation the network works in."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PERCENTILES = (1.0, 99.0)


def fill_nans(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A copy with NaN/inf replaced by the nearest finite value, and the bad-pixel mask (or None)."""
    bad = ~np.isfinite(image)
    if not bad.any():
        return np.array(image, dtype=np.float64), None
    if bad.all():
        return np.zeros(image.shape), bad
    from scipy import ndimage

    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return np.asarray(image, dtype=np.float64)[tuple(idx)], bad


def restore_nans(out: np.ndarray, bad: np.ndarray | None, factor: int) -> np.ndarray:
    if bad is not None:
        out[np.kron(bad, np.ones((factor, factor), dtype=bool))] = np.nan
    return out


@dataclass
class Norm:
    """Plane + median + robust range, fitted on a filled input image (pixel coordinates)."""

    a: float = 0.0  # plane: a + by * y + bx * x
    by: float = 0.0
    bx: float = 0.0
    centre: float = 0.0
    scale: float = 1.0
    constant: bool = False

    @classmethod
    def fit(cls, image: np.ndarray) -> Norm:
        ny, nx = image.shape
        y = np.arange(ny) - (ny - 1) / 2
        x = np.arange(nx) - (nx - 1) / 2
        mean = float(image.mean())
        # separable least squares on a centred grid: slopes decouple
        by = float(((image.mean(axis=1) - mean) * y).sum() / max((y * y).sum(), 1e-300)) if ny > 1 else 0.0
        bx = float(((image.mean(axis=0) - mean) * x).sum() / max((x * x).sum(), 1e-300)) if nx > 1 else 0.0
        norm = cls(a=mean, by=by, bx=bx)
        flat = image - norm.plane(image.shape)
        lo, med, hi = np.percentile(flat, [PERCENTILES[0], 50.0, PERCENTILES[1]])
        scale = float(hi - lo)
        if not scale > 0 or not math.isfinite(scale):
            scale = float(np.ptp(flat))
        norm.centre = float(med)
        if not scale > 0 or not math.isfinite(scale) or scale <= 1e-12 * max(1.0, abs(mean)):
            norm.scale, norm.constant = 1.0, True
        else:
            norm.scale = scale
        return norm

    def plane(self, shape: tuple[int, int], factor: int = 1) -> np.ndarray:
        """The plane at the pixel positions of the input (factor 1) or of the ×factor output."""
        ny, nx = shape
        y = (np.arange(ny * factor) + 0.5) / factor - 0.5 - (ny - 1) / 2
        x = (np.arange(nx * factor) + 0.5) / factor - 0.5 - (nx - 1) / 2
        return self.a + self.by * y[:, None] + self.bx * x[None, :]

    def forward(self, image: np.ndarray) -> np.ndarray:
        return (image - self.plane(image.shape) - self.centre) / self.scale

    def inverse(self, normed_up: np.ndarray, in_shape: tuple[int, int], factor: int) -> np.ndarray:
        return normed_up * self.scale + self.centre + self.plane(in_shape, factor)
