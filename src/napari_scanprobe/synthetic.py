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


def drifting_movie(
    frames: int = 64,
    shape: tuple[int, int] = (256, 256),
    pixel_size_nm: float = 2.0,
    step_nm: float = 5.0,
    noise_nm: float = 0.1,
    line_offset_nm: float = 0.2,
    turnover: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic HS-AFM movie with a known drift: ``(movie_nm, drift_px)``.

    The sample (round molecules of 1-4 nm on a rough membrane) moves by about ``step_nm`` per
    frame: a random walk plus a linear drift of a quarter of it; ``turnover``: the fraction of molecules
    that land or leave at each frame; every frame gets white noise, its own scan-line offsets
    and a tilt. ``drift_px[i]`` is ``(dy, dx)``: where frame ``i`` shows what frame 0 showed
    at the origin (the content moved by it). float32 ``(t, y, x)``.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    ny, nx = shape
    speed = step_nm / pixel_size_nm
    angle = rng.uniform(0, 2 * np.pi)
    linear = 0.25 * speed * np.array([np.sin(angle), np.cos(angle)])
    walk = rng.normal(0, 0.8 * speed / np.sqrt(2), (frames, 2))
    walk[0] = 0
    drift = np.cumsum(walk + linear, axis=0)
    drift -= drift[0]
    margin = int(np.ceil(np.abs(drift).max())) + 8
    cy, cx = ny + 2 * margin, nx + 2 * margin
    membrane = ndimage.gaussian_filter(rng.normal(0, 1, (cy, cx)), 3)
    membrane *= 0.5 / membrane.std()
    count = int(cy * cx / 900)
    centres = rng.uniform(0, 1, (count, 2)) * (cy, cx)
    heights = rng.uniform(1, 4, count)
    radii = rng.uniform(2, 6, count)
    alive = rng.uniform(size=count) < 0.7
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    out = np.empty((frames, ny, nx), np.float32)
    for i in range(frames):
        if i:
            flip = rng.uniform(size=count) < turnover
            alive = alive ^ flip
        canvas = membrane.copy()
        for (py, px), h, r in zip(centres[alive], heights[alive], radii[alive], strict=True):
            y0, y1 = int(max(py - 3 * r, 0)), int(min(py + 3 * r + 1, cy))
            x0, x1 = int(max(px - 3 * r, 0)), int(min(px + 3 * r + 1, cx))
            gy, gx = np.mgrid[y0:y1, x0:x1]
            canvas[y0:y1, x0:x1] += h * np.exp(-((gy - py) ** 2 + (gx - px) ** 2) / (2 * r**2))
        coords = (yy + margin - drift[i, 0], xx + margin - drift[i, 1])
        frame = ndimage.map_coordinates(canvas, coords, order=3, mode="nearest")
        frame += rng.normal(0, line_offset_nm, (ny, 1)) + rng.normal(0, noise_nm, (ny, nx))
        frame += rng.normal(0, 0.002) * xx + rng.normal(0, 0.002) * yy
        out[i] = frame
    return out, drift
