"""A second, independently written generator of knobbed vs healthy membrane images.

Written apart from ``napari_scanprobe.learn.synthetic`` and never used to tune anything: the
classifier suite reports on it. It differs on purpose in every knob of the model:

* pixel size drawn per image (5.5-9.5 nm/px) and field of view (1.0-1.5 µm), so images are
  105-270 px and the classifier must resample them;
* background: a fractal (1/f^beta, beta 2.6-3.4) rough surface of 0.4-1.2 nm rms instead of a
  Voronoi mesh, with 3-12 straight cytoskeleton-like ridges per µm² (0.8-2 nm high);
* knobs (infected only, 2-8 per µm²): super-Gaussian bumps ``h exp(-(r/r0)^p)``, p in 1.4-3
  (from cone-like to flat-topped), 50-140 nm across, 3-14 nm high, some slightly elliptic (<= 1.3);
* healthy images get as many rods (aspect 3-5, straight) with heights from the knobs' range;
  both classes: 0-6 sharp particles (2-5 px wide), 0-2 broad bumps (200-400 nm, 2-8 nm);
* acquisition: Gaussian tip blur (0.6-1.4 px), tilt, per-line offsets as a random walk,
  0-2 streaks, white noise 0.1-0.5 nm. No tip dilation.
"""

from __future__ import annotations

import numpy as np


def _fractal(rng, shape, beta, rms):
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) * f ** (-beta / 2)
    surface = np.fft.irfft2(spectrum, s=shape)
    return rms * (surface - surface.mean()) / (surface.std() + 1e-12)


def _bump(img, cy, cx, height, r0y, r0x, angle, power):
    h, w = img.shape
    reach = 3 * max(r0y, r0x)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / r0x, (-s * dx + c * dy) / r0y
    img[y0:y1, x0:x1] += height * np.exp(-(np.hypot(u, v) ** power))


def variant_image(rng: np.random.Generator, infected: bool) -> tuple[np.ndarray, float]:
    """One image (heights in nm) and its pixel size in nm."""
    from scipy import ndimage

    px = rng.uniform(5.5, 9.5)
    fov = rng.uniform(1000, 1500)
    n = int(round(fov / px))
    shape = (n, n)
    area = (n * px / 1000) ** 2
    img = _fractal(rng, shape, rng.uniform(2.6, 3.4), rng.uniform(0.4, 1.2))
    for _ in range(rng.poisson(rng.uniform(3, 12) * area)):
        _bump(
            img,
            *rng.uniform(0, n, 2),
            rng.uniform(0.8, 2),
            5 / px,
            rng.uniform(60, 200) / px,
            rng.uniform(0, np.pi),
            2.0,
        )
    for _ in range(rng.integers(0, 3)):
        _bump(
            img,
            *rng.uniform(0, n, 2),
            rng.uniform(2, 8),
            *(rng.uniform(100, 200, 2) / px),
            rng.uniform(0, np.pi),
            2.0,
        )
    for _ in range(rng.integers(0, 7)):
        r = rng.uniform(1, 2.5)
        _bump(img, *rng.uniform(0, n, 2), rng.uniform(3, 15), r, r, 0.0, 2.0)
    count = max(1, rng.poisson(rng.uniform(2, 8) * area))
    for _ in range(count):
        cy, cx = rng.uniform(0.05 * n, 0.95 * n, 2)
        height = rng.uniform(3, 14)
        radius = rng.uniform(25, 70) / px
        aspect = rng.uniform(1.0, 1.3) if infected else rng.uniform(3, 5)  # knob or rod
        a, b = radius / np.sqrt(aspect), radius * np.sqrt(aspect)
        _bump(img, cy, cx, height, a, b, rng.uniform(0, np.pi), rng.uniform(1.4, 3.0))
    img = ndimage.gaussian_filter(img, rng.uniform(0.6, 1.4))
    yy, xx = np.mgrid[0:n, 0:n] * px / 1000
    img += rng.uniform(-5, 5) * yy + rng.uniform(-5, 5) * xx
    img += np.cumsum(rng.normal(0, rng.uniform(0.1, 0.5), n))[:, None]
    for _ in range(rng.integers(0, 3)):
        row = rng.integers(0, n)
        start = rng.integers(0, n // 2)
        img[row, start : start + rng.integers(n // 8, n // 2)] += rng.uniform(-6, 6)
    img += rng.normal(0, rng.uniform(0.1, 0.5), shape)
    return img.astype(np.float32), float(px)


def variant_dataset(n_healthy: int, n_infected: int, seed: int):
    """``[(image, pixel_size_nm, label)]`` with label 0 healthy, 1 infected, in random order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation([0] * n_healthy + [1] * n_infected)
    return [(*variant_image(rng, bool(lab)), int(lab)) for lab in labels]
