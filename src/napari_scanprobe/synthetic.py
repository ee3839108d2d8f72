"""A synthetic but realistic AFM scan, generated in code (the plugin's sample data).

Height in nm with what a real tapping-mode scan carries: a sample tilt, scanner bow, a
different offset on every scan line, a terrace step, round particles, a few scars and white
noise; trace and retrace differ by their own row offsets and noise; a phase channel in degrees
shows material contrast on the particles. Everything is seeded, so the scan is repeatable.
"""

from __future__ import annotations

import numpy as np

from .io.scan import Channel, Scan


def synthetic_surface(
    shape: tuple[int, int] = (256, 256),
    pixel_size_nm: float = 3.9,
    n_particles: int = 40,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The clean truth: ``(height_nm, particle_mask)`` without tilt, offsets or noise."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx] * pixel_size_nm
    height = np.where(x + 0.3 * y > 0.55 * nx * pixel_size_nm, 1.2, 0.0)  # one atomic-ish terrace step
    mask = np.zeros(shape, dtype=bool)
    for _ in range(n_particles):
        cy, cx = rng.uniform(0, ny * pixel_size_nm), rng.uniform(0, nx * pixel_size_nm)
        radius = rng.uniform(8, 22)
        r2 = (y - cy) ** 2 + (x - cx) ** 2
        inside = r2 < radius**2
        cap = np.sqrt(np.clip(radius**2 - r2, 0, None)) * rng.uniform(0.4, 0.8)
        height = np.where(inside, np.maximum(height, height + cap), height)
        mask |= inside
    return height, mask


def synthetic_scan(shape: tuple[int, int] = (256, 256), pixel_size_nm: float = 3.9, seed: int = 0) -> Scan:
    """A three-channel scan: Height (trace), Height (retrace), Phase (trace)."""
    rng = np.random.default_rng(seed)
    truth, mask = synthetic_surface(shape, pixel_size_nm, seed=seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx] / np.array(shape).reshape(2, 1, 1)
    background = 6.0 * xx - 3.5 * yy + 4.0 * (xx - 0.5) ** 2  # tilt + bow, nm

    def acquire(line_sigma: float) -> np.ndarray:
        rows = rng.normal(0.0, line_sigma, size=(ny, 1))  # per-line offsets
        image = truth + background + rows + rng.normal(0.0, 0.15, size=shape)
        for row in rng.choice(ny, size=3, replace=False):  # scars: a stretch of one line jumps
            start = rng.integers(0, nx // 2)
            image[row, start : start + rng.integers(nx // 8, nx // 3)] += rng.uniform(2, 4)
        return image

    phase = 12.0 + 6.0 * mask + rng.normal(0.0, 0.4, size=shape)
    pixel_size = (pixel_size_nm, pixel_size_nm)
    header = {
        "generator": "napari_scanprobe.synthetic.synthetic_scan",
        "seed": seed,
        "shape": list(shape),
        "pixel_size_nm": pixel_size_nm,
        "scan_size_nm": [ny * pixel_size_nm, nx * pixel_size_nm],
    }
    channels = [
        Channel(
            acquire(0.8),
            "Height",
            "trace",
            "nm",
            header={"mode": "tapping"},
            pixel_size=pixel_size,
            xy_unit="nm",
        ),
        Channel(
            acquire(0.8),
            "Height",
            "retrace",
            "nm",
            header={"mode": "tapping"},
            pixel_size=pixel_size,
            xy_unit="nm",
        ),
        Channel(
            phase, "Phase", "trace", "deg", header={"mode": "tapping"}, pixel_size=pixel_size, xy_unit="nm"
        ),
    ]
    return Scan(path="synthetic_afm_scan", format="synthetic", channels=channels, header=header)
