"""Synthetic high-speed-AFM images of red-blood-cell membranes, healthy or malaria-infected.

The benchmark data of the classifier (and the ground truth of the class activation maps): two
categories whose ONLY difference is local -- infected membranes carry "knobs", small dome-shaped
protrusions -- while global statistics of the heights (mean, std, skewness, kurtosis, range,
roughness, histogram) do not tell the classes apart. numpy and scipy only.

Conventions: images are ``(y, x)`` float32 heights in nm, row 0 is the top scan line, x is the fast
scan axis (so a "row" is one scan line). The default pixel size is ``1000 / 128`` nm, so a 128 px
image is 1 µm wide. Every physical size below is in nm, so another pixel size keeps the features'
physical size, and feature counts scale with the imaged area (counts below are per µm²).

The generative model, in the order it is applied:

1. **Membrane** (both classes): a spectrin-mesh-like network -- the edges of a Voronoi tessellation
   of jittered seeds 60-90 nm apart, as ridges 0.8-2 nm high and ~10 nm wide -- on correlated noise
   (Gaussian-filtered white noise, 0.4-0.9 nm, correlation 1.5-3 px) and a slow undulation of the
   membrane (1-3 nm, Gaussian-filtered noise of sigma 75 nm).
2. **Decoys** (both classes, same distribution): 0-3 large smooth Gaussian bumps (150-300 nm
   full width at half maximum, 3-12 nm high), 0-4 pits (40-150 nm across, 2-8 nm deep), 0-8 sharp
   small particles (8-16 nm wide, 4-25 nm high; after tip dilation they take the tip's shape), 0-2
   long curved fibres (200-600 nm long, 15-30 nm wide, 2-6 nm high) and 0-3 short curved fibres
   (drawn like the mimics below).
3. **Knobs** (infected only): 3-10 per µm² (at least one per image), each a smooth dome
   ``h (1 - rho^2)^1.5`` of footprint diameter 70-120 nm and height 5-20 nm, kept apart from each
   other. **Mimics** (healthy only): as many short fibres as the image would have had knobs, with
   heights and footprint areas drawn from the knobs' distribution, but elongated (aspect ratio
   2.5-4.5) and bent: an elliptic dome of the same profile has exactly the height histogram of a
   round one of equal area (and bending it with the area-preserving shear ``v -> v - k u^2`` keeps
   it), so whatever the knobs add to the height histogram the mimics add too. Only the shape tells
   them apart -- which a CNN sees and a histogram does not.
4. **Tip dilation** (everything above): grey dilation with a paraboloid tip of apex radius
   8-16 nm (a structuring element a few pixels across), as a real tip images a surface.
5. **Acquisition** (both classes): a tilted plane (up to ±6 nm per µm in x and y) and an
   arbitrary height offset, a different offset on every scan line (0.3-1.5 nm) plus a slow line
   drift, 0-3 scars (a stretch of one or two lines jumping by 2-8 nm) and white noise (0.2-0.6 nm).

The knob mask is where the knobs add more than 0.5 nm to the tip-dilated surface, i.e. the knob
footprint as the tip images it; it is all False for healthy images.

With ``decoys=False`` (for tests only) the decoys and the mimics are left out: knobs on a bare
membrane, the naive generator whose global statistics DO separate the classes.

Measured (``tests/learn/test_synthetic.py``; 100 + 100 images at 128 px, levelled line by line):
the best single threshold on mean, std, skewness, kurtosis, range, Ra, 99th percentile or mean
slope, and a logistic regression on all of them, classify 0.53-0.62 in-sample (1000 + 1000
images, held out: 0.52); without decoys skewness, kurtosis and range reach 0.92-0.98 and the
logistic fit 0.98. A hand-made local knob detector (top-hat, round blobs of knob size) classifies
0.98-0.99. A small CNN (4 conv blocks, global average pooling, 30 epochs, flips and rotations)
trained on 122 + 109 images classifies 0.98 of a held-out 200.

::

    from napari_scanprobe.learn.synthetic import knob_dataset, membrane_image, write_knob_folder
    data = knob_dataset(122, 109, seed=0)          # images (N, 128, 128) nm, labels, masks
    height, mask = membrane_image(np.random.default_rng(1), infected=True)
    write_knob_folder("train", 122, 109, masks_folder="train_masks")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "CATEGORIES",
    "DEFAULT_PIXEL_SIZE_NM",
    "KnobDataset",
    "knob_dataset",
    "membrane_image",
    "write_knob_folder",
]

#: Category names, in label order: label 0 is healthy, label 1 infected.
CATEGORIES: tuple[str, str] = ("healthy", "infected")

#: 128 px = 1 µm.
DEFAULT_PIXEL_SIZE_NM = 1000.0 / 128

#: Where a knob adds more than this to the (tip-dilated) surface, it is in the knob mask, nm.
KNOB_MASK_THRESHOLD_NM = 0.5

_MIN_SIZE = 16
_KNOBS_PER_UM2 = (3, 10)
_KNOB_DIAMETER_NM = (70.0, 120.0)
_KNOB_HEIGHT_NM = (5.0, 20.0)
_MIMIC_ASPECT = (2.5, 4.5)


# -- shapes -----------------------------------------------------------------------------------


def _dome(rho2: np.ndarray) -> np.ndarray:
    """The knob profile ``(1 - rho^2)^1.5`` inside the unit footprint, 0 outside."""
    return np.clip(1.0 - rho2, 0.0, None) ** 1.5


def _window(shape: tuple[int, int], cy: float, cx: float, reach: float):
    """The slice of the image within ``reach`` px of ``(cy, cx)`` and its pixel coordinates."""
    ny, nx = shape
    y0, y1 = max(int(math.floor(cy - reach)), 0), min(int(math.ceil(cy + reach)) + 1, ny)
    x0, x1 = max(int(math.floor(cx - reach)), 0), min(int(math.ceil(cx + reach)) + 1, nx)
    if y0 >= y1 or x0 >= x1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return (slice(y0, y1), slice(x0, x1)), yy - cy, xx - cx


def _add_dome(img, cy, cx, height, a_px, b_px=None, angle=0.0, bend=0.0) -> None:
    """Add a dome of semi-axes ``a_px`` (along ``angle``) and ``b_px``, bent by ``bend`` (1/px).

    ``bend`` shears the dome across its long axis, ``v -> v - bend u^2`` (area-preserving): a
    banana shape with exactly the height histogram of the straight one.
    """
    b_px = a_px if b_px is None else b_px
    reach = math.hypot(a_px, b_px + abs(bend) * a_px**2) + 1
    win = _window(img.shape, cy, cx, reach)
    if win is None:
        return
    sl, dy, dx = win
    c, s = math.cos(angle), math.sin(angle)
    u = dx * c + dy * s  # along the long axis
    v = -dx * s + dy * c
    v = v - bend * u**2
    img[sl] += height * _dome((u / a_px) ** 2 + (v / b_px) ** 2)


def _add_gaussian(img, cy, cx, height, sigma_px) -> None:
    win = _window(img.shape, cy, cx, 3.5 * sigma_px)
    if win is None:
        return
    sl, dy, dx = win
    img[sl] += height * np.exp(-(dy**2 + dx**2) / (2 * sigma_px**2))


def _count(rng: np.random.Generator, low: int, high: int, area_um2: float) -> int:
    """A count drawn uniformly from ``low..high`` per µm², scaled to the image's area
    (rounded up or down at random, so the mean density holds for any image size)."""
    mean = rng.integers(low, high + 1) * area_um2
    return int(mean) + int(rng.random() < mean - int(mean))


# -- the membrane -----------------------------------------------------------------------------


def _membrane(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    ny, nx = shape
    # spectrin-like mesh: ridges along the edges of the Voronoi cells of jittered lattice seeds
    spacing = rng.uniform(60.0, 90.0) / px
    margin = 2 * spacing
    gy = np.arange(-margin, ny + margin, spacing * math.sqrt(3) / 2)
    gx = np.arange(-margin, nx + margin, spacing)
    sy, sx = np.meshgrid(gy, gx, indexing="ij")
    sx = sx + (np.arange(len(gy))[:, None] % 2) * spacing / 2  # hexagonal lattice
    seeds = np.column_stack([sy.ravel(), sx.ravel()]) + rng.normal(0, 0.22 * spacing, (sy.size, 2))
    yy, xx = np.mgrid[0:ny, 0:nx]
    dist, _ = cKDTree(seeds).query(np.column_stack([yy.ravel(), xx.ravel()]), k=2)
    gap = (dist[:, 1] - dist[:, 0]).reshape(shape)  # 0 on a cell edge
    width = rng.uniform(8.0, 12.0) / px
    mesh = rng.uniform(0.8, 2.0) * np.exp(-((gap / width) ** 2))
    # correlated noise and a slow undulation of the membrane
    fine = ndimage.gaussian_filter(rng.normal(size=shape), rng.uniform(1.5, 3.0), mode="wrap")
    fine *= rng.uniform(0.4, 0.9) / (fine.std() + 1e-12)
    slow = ndimage.gaussian_filter(rng.normal(size=shape), 150.0 / px / 2, mode="wrap")
    slow *= rng.uniform(1.0, 3.0) / (slow.std() + 1e-12)
    return mesh + fine + slow


def _place(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[float, float]:
    return rng.uniform(-0.5, shape[0] - 0.5), rng.uniform(-0.5, shape[1] - 0.5)


def _knob_params(rng: np.random.Generator, px: float) -> tuple[float, float]:
    """Height (nm) and footprint radius (px) of one knob; mimics draw the same."""
    return rng.uniform(*_KNOB_HEIGHT_NM), rng.uniform(*_KNOB_DIAMETER_NM) / 2 / px


def _add_short_fibre(img, rng: np.random.Generator, px: float, cy: float, cx: float) -> None:
    """A mimic: a knob's height and footprint area, stretched 2.5-4.5x and bent."""
    height, r = _knob_params(rng, px)
    aspect = rng.uniform(*_MIMIC_ASPECT)
    a, b = r * math.sqrt(aspect), r / math.sqrt(aspect)
    bend = rng.uniform(-0.3, 0.3) / a  # the ends bend aside by up to 0.3 a
    _add_dome(img, cy, cx, height, a, b, rng.uniform(0, math.pi), bend)


def _add_decoys(img: np.ndarray, rng: np.random.Generator, px: float, area: float) -> None:
    shape = img.shape
    for _ in range(_count(rng, 0, 3, area)):  # large smooth bumps
        fwhm = rng.uniform(150.0, 300.0)
        _add_gaussian(img, *_place(rng, shape), rng.uniform(3.0, 12.0), fwhm / 2.3548 / px)
    for _ in range(_count(rng, 0, 4, area)):  # pits
        _add_dome(img, *_place(rng, shape), -rng.uniform(2.0, 8.0), rng.uniform(40.0, 150.0) / 2 / px)
    for _ in range(_count(rng, 0, 8, area)):  # sharp small particles, centred on a pixel (never missed)
        cy, cx = (float(round(c)) for c in _place(rng, shape))
        _add_dome(img, cy, cx, rng.uniform(4.0, 25.0), rng.uniform(8.0, 16.0) / 2 / px)
    for _ in range(_count(rng, 0, 2, area)):  # long curved fibres
        a = rng.uniform(200.0, 600.0) / 2 / px
        b = rng.uniform(15.0, 30.0) / 2 / px
        bend = rng.uniform(-0.6, 0.6) / a
        _add_dome(img, *_place(rng, shape), rng.uniform(2.0, 6.0), a, b, rng.uniform(0, math.pi), bend)
    for _ in range(_count(rng, 0, 3, area)):  # short fibres, like the mimics
        _add_short_fibre(img, rng, px, *_place(rng, shape))


def _knob_centres(
    rng: np.random.Generator, shape: tuple[int, int], radii: list[float]
) -> list[tuple[float, float]]:
    """Knob centres inside the image, no two knobs overlapping by more than 10 % of their radii."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(200):
            cy, cx = rng.uniform(0, shape[0] - 1), rng.uniform(0, shape[1] - 1)
            if all(math.hypot(cy - y, cx - x) > 0.9 * (r + rr) for (y, x), rr in zip(centres, radii)):
                break
        centres.append((cy, cx))
    return centres


def _tip(rng: np.random.Generator, px: float, depth_nm: float = 25.0) -> np.ndarray:
    """A paraboloid tip (apex radius 8-16 nm) as a grey structuring element: 0 at the apex."""
    radius = rng.uniform(8.0, 16.0)
    reach = max(int(math.ceil(math.sqrt(2 * radius * depth_nm) / px)), 1)
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1] * px
    return -(yy**2 + xx**2) / (2 * radius)


def _dilate(surface: np.ndarray, tip: np.ndarray) -> np.ndarray:
    return ndimage.grey_dilation(surface, structure=tip, mode="nearest")


def _acquire(img: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    ny, nx = img.shape
    yy, xx = np.mgrid[0:ny, 0:nx] * (px / 1000.0)  # µm
    out = img + rng.uniform(-6, 6) * xx + rng.uniform(-6, 6) * yy + rng.uniform(-20, 20)
    rows = rng.normal(0.0, rng.uniform(0.3, 1.5), ny) + np.cumsum(rng.normal(0.0, 0.08, ny))
    out += rows[:, None]
    for _ in range(int(rng.integers(0, 4))):  # scars: a stretch of one or two lines jumps
        row = int(rng.integers(0, ny))
        length = int(rng.integers(max(nx // 12, 2), max(nx // 2, 3)))
        start = int(rng.integers(0, max(nx - length, 1)))
        jump = rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 8.0)
        out[row : row + int(rng.integers(1, 3)), start : start + length] += jump
    out += rng.normal(0.0, rng.uniform(0.2, 0.6), img.shape)
    return out


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ValueError(f"size must be an integer of at least {_MIN_SIZE} pixels, not {size!r}")
    return int(size)


def membrane_image(
    rng: np.random.Generator,
    infected: bool,
    size: int = 128,
    pixel_size_nm: float = DEFAULT_PIXEL_SIZE_NM,
    *,
    decoys: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic HS-AFM membrane image and its knob mask (see the module docstring).

    Returns ``(height, mask)``: ``height`` a ``(size, size)`` float32 image in nm, row 0 the top
    scan line; ``mask`` a bool image, True on the knob footprint (all False when not infected).
    ``decoys=False`` leaves out the decoys and mimics (a naive generator, for tests).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
    size = _check_size(size)
    if not (
        isinstance(pixel_size_nm, (int, float, np.number))
        and math.isfinite(pixel_size_nm)
        and pixel_size_nm > 0
    ):
        raise ValueError(f"pixel_size_nm must be a positive number, not {pixel_size_nm!r}")
    px = float(pixel_size_nm)
    shape = (size, size)
    area = (size * px / 1000.0) ** 2  # µm²

    surface = _membrane(rng, shape, px)
    if decoys:
        _add_decoys(surface, rng, px, area)
    n_knobs = max(_count(rng, *_KNOBS_PER_UM2, area), 1)
    params = [_knob_params(rng, px) for _ in range(n_knobs)]
    tip = _tip(rng, px)
    mask = np.zeros(shape, dtype=bool)
    if infected:
        knobs = np.zeros(shape)
        for (cy, cx), (height, r) in zip(_knob_centres(rng, shape, [r for _, r in params]), params):
            _add_dome(knobs, cy, cx, height, r)
        without = _dilate(surface, tip)
        surface = _dilate(surface + knobs, tip)
        mask = surface - without > KNOB_MASK_THRESHOLD_NM
    else:
        if decoys:  # mimics: the knobs' heights and areas, elongated and bent
            for _ in params:
                _add_short_fibre(surface, rng, px, *_place(rng, shape))
        surface = _dilate(surface, tip)
    return _acquire(surface, rng, px).astype(np.float32), mask


# -- datasets ---------------------------------------------------------------------------------


@dataclass
class KnobDataset:
    """Images ``(N, H, W)`` float32 nm, labels ``(N,)`` (index into ``categories``), knob masks."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    categories: tuple[str, ...] = CATEGORIES
    pixel_size_nm: float = DEFAULT_PIXEL_SIZE_NM

    def __len__(self) -> int:
        return len(self.labels)


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


def knob_dataset(n_healthy: int, n_infected: int, size: int = 128, seed: int = 0) -> KnobDataset:
    """``n_healthy + n_infected`` images in an order shuffled with ``seed``; the same for a seed."""
    n_healthy = _check_count("n_healthy", n_healthy)
    n_infected = _check_count("n_infected", n_infected)
    size = _check_size(size)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(2), [n_healthy, n_infected]))
    images = np.empty((len(labels), size, size), dtype=np.float32)
    masks = np.zeros(images.shape, dtype=bool)
    for i, label in enumerate(labels):
        images[i], masks[i] = membrane_image(rng, bool(label), size)
    return KnobDataset(images, labels.astype(np.int64), masks)


def write_knob_folder(
    folder: str | Path,
    n_healthy: int,
    n_infected: int,
    size: int = 128,
    seed: int = 0,
    masks_folder: str | Path | None = None,
) -> Path:
    """Write a classifier's training folder: ``folder/healthy/healthy_000.npy``, ``folder/infected/...``.

    The images are float32 heights in nm (pixel size :data:`DEFAULT_PIXEL_SIZE_NM`). With
    ``masks_folder`` the knob masks go to ``masks_folder/<category>/<same name>.npy`` (bool).
    ``folder`` holds nothing but the category sub-folders (a classifier takes every sub-folder
    for a category), so ``masks_folder`` must lie outside it. Returns ``folder``.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder {folder} exists and is not a folder")
    if folder.is_dir():
        extra = sorted(p.name for p in folder.iterdir() if p.name not in CATEGORIES)
        if extra:
            raise ValueError(
                f"folder {folder} holds {', '.join(extra)}: a classifier would take them for categories"
            )
    if masks_folder is not None:
        masks_folder = Path(masks_folder)
        if masks_folder.resolve() == folder.resolve() or folder.resolve() in masks_folder.resolve().parents:
            raise ValueError(f"masks_folder {masks_folder} must not lie inside the data folder {folder}")
    data = knob_dataset(n_healthy, n_infected, size, seed)
    counters = {name: 0 for name in CATEGORIES}
    for name in CATEGORIES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        if masks_folder is not None:
            (masks_folder / name).mkdir(parents=True, exist_ok=True)
    for image, label, mask in zip(data.images, data.labels, data.masks):
        name = CATEGORIES[label]
        stem = f"{name}_{counters[name]:03d}.npy"
        counters[name] += 1
        np.save(folder / name / stem, image)
        if masks_folder is not None:
            np.save(masks_folder / name / stem, mask)
    return folder
