"""From files, scans, arrays and layers to what the network sees.

An :class:`Example` is the chosen channels of one scan (each ``(y, x)``, or ``(t, y, x)`` for a
movie) with its pixel size in nm. :func:`model_input` turns one frame of it into the network's
view, the same way at training, prediction and CAM time:

1. the model's preprocessing steps (e.g. flatten) on every channel;
2. NaN pixels replaced by the channel's median;
3. resampling to the model's pixel size (nm/px; anti-aliased when shrinking), so the network
   always sees the same physical scale;
4. per-image, per-channel normalisation to zero mean and unit standard deviation.

Images larger than the network input are cut into :func:`tiles` (evenly spaced, the last one
flush with the edge). A side shorter than the input (a partial scan, a small crop) is mirrored
at its end up to the input size, down to half the input (:data:`MIN_COVERED`); smaller images
are refused with a message giving both sizes.

Channel names: ``channels=[]`` means "the first channel of each file"; otherwise each name is
matched against a channel's title (``"Height (retrace)"``), then its name (``"Height"``, the
first such channel), both case-insensitively, then its vendor-neutral role (``"topography"``,
or the role the name stands for: "Height (retrace)" finds Nanonis "Z (backward)"); see
``io.scan.find_channel``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import ReaderError, Scan, read
from ..io.scan import Channel, select_channels
from ..process.common import as_image
from ..process.steps import apply_steps
from .images import IMAGE_SUFFIXES, read_image_export

#: A side shorter than the network input is mirrored up to it (a partial scan), down to this share
#: of the input: below it, too little of the image is real.
MIN_COVERED = 0.5

#: Plain-array files a training folder may hold besides SPM files (pictures: see ``images``).
ARRAY_SUFFIXES = (".npy", ".tif", ".tiff", *IMAGE_SUFFIXES)


@dataclass
class Example:
    """One input: the chosen channels of one scan and its pixel size (nm per pixel, or None)."""

    channels: list[Any]
    names: list[str]
    pixel_size: tuple[float, float] | None = None
    source: str = ""
    label: str | None = None  # the category's name, when the input is labelled

    def __post_init__(self):
        shapes = {tuple(c.shape) for c in self.channels}
        if not self.channels:
            raise ValueError(f"{self.source or 'input'}: no channel given")
        if len(shapes) != 1:
            raise ValueError(f"{self.source or 'input'}: the channels differ in shape {sorted(shapes)}")
        if self.channels[0].ndim not in (2, 3):
            raise ValueError(
                f"{self.source or 'input'}: expected 2-D images or (t, y, x) movies, got {self.channels[0].ndim}-D"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.channels[0].shape[-2:])

    @property
    def n_frames(self) -> int:
        """1 for an image, the frame count for a movie."""
        return self.channels[0].shape[0] if self.channels[0].ndim == 3 else 1

    @property
    def is_movie(self) -> bool:
        return self.channels[0].ndim == 3

    def frame(self, index: int) -> list[np.ndarray]:
        """The channels of frame ``index`` as 2-D float arrays (index 0 for an image)."""
        if self.is_movie:
            return [np.asarray(c[index], dtype=np.float64) for c in self.channels]
        return [np.asarray(c, dtype=np.float64) for c in self.channels]


# --------------------------------------------------------------------------------------
# Choosing channels and reading inputs
# --------------------------------------------------------------------------------------


def pick_channels(scan: Scan, wanted: Sequence[str]) -> list[Channel]:
    """The channels of ``scan`` named by ``wanted`` -- titles, names or vendor-neutral roles
    (``io.scan.find_channel``: a model trained on Bruker "Height" finds Nanonis "Z");
    ``[]``: the first channel."""
    return select_channels(scan.channels, wanted, str(scan.path))


def _pixel_size_nm(channel: Channel) -> tuple[float, float] | None:
    return (float(channel.pixel_size[0]), float(channel.pixel_size[1])) if channel.xy_unit == "nm" else None


def example_from_scan(scan: Scan, channels: Sequence[str] = ()) -> Example:
    picked = pick_channels(scan, channels)
    sizes = {_pixel_size_nm(c) for c in picked}
    if len(sizes) > 1:
        raise ValueError(
            f"{scan.path}: the chosen channels have different pixel sizes {sorted(map(str, sizes))}"
        )
    return Example([c.data for c in picked], [c.title for c in picked], sizes.pop(), source=scan.path)


def _read_array_file(path: Path) -> np.ndarray:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        arr = read_image_export(path)
    elif path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ReaderError(path, f"not a readable .npy array ({exc})") from None
    else:
        import tifffile

        try:
            arr = tifffile.imread(path)
        except Exception as exc:
            raise ReaderError(path, f"not a readable TIFF image ({exc})") from None
    if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.number) or min(arr.shape[-2:]) < 2:
        raise ReaderError(
            path,
            f"expected a 2-D image or a (t, y, x) stack of numbers, got {arr.ndim}-D {arr.dtype} {arr.shape}",
        )
    return arr


def read_example(path: str | os.PathLike, channels: Sequence[str] = ()) -> Example:
    """An :class:`Example` from an SPM file (any format the reader opens), a .npy/.tif array or a
    PNG/JPEG picture (``images``); arrays and pictures have no pixel size.

    Raises ReaderError (unreadable file) or ValueError (a wanted channel is missing).
    """
    path = Path(path)
    try:
        return example_from_scan(read(path), channels)
    except ReaderError:
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            raise
    arr = _read_array_file(path)
    if len(channels) > 1:
        raise ValueError(
            f"{path}: a plain array holds one channel, but {len(channels)} channels are wanted ({', '.join(channels)})"
        )
    return Example([arr], [channels[0] if channels else "image"], None, source=str(path))


def as_example(
    obj: Any, channels: Sequence[str] = (), pixel_size: Any = None, name: str = "image"
) -> Example:
    """An :class:`Example` from a path, a Scan, an Example, an array or a dict name -> array.

    ``pixel_size`` (nm per pixel: a number or ``(dy, dx)``) applies to arrays, dicts and
    pictures/array files, which carry none of their own; None means "already at the model's
    pixel size".
    """
    if isinstance(obj, Example):
        return obj
    size = None if pixel_size is None else check_pixel_size(pixel_size, "pixel_size")
    if isinstance(obj, (str, os.PathLike)):
        example = read_example(obj, channels)
        if example.pixel_size is None:  # a picture or plain array: the given pixel size
            example.pixel_size = size
        return example
    if isinstance(obj, Scan):
        return example_from_scan(obj, channels)
    if isinstance(obj, dict):
        if not obj:
            raise ValueError(f"{name}: the dict of channels is empty")
        wanted = list(channels) or [next(iter(obj))]
        missing = [c for c in wanted if c not in obj]
        if missing:
            raise ValueError(f"{name}: no channel {missing[0]!r}; given {', '.join(map(repr, obj))}")
        return Example([as_image(obj[c], f"{name}[{c!r}]") for c in wanted], wanted, size, source=name)
    arr = as_image(obj, name)
    if len(channels) > 1:
        raise ValueError(
            f"{name}: one array is one channel, but the model needs {len(channels)} ({', '.join(channels)}); pass a dict name -> array"
        )
    return Example([arr], [channels[0] if channels else "image"], size, source=name)


def check_pixel_size(value: Any, name: str) -> tuple[float, float]:
    try:
        pair = (float(value), float(value)) if np.ndim(value) == 0 else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number of nm per pixel or (dy, dx), got {value!r}") from None
    if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
        raise ValueError(f"{name}: pixel sizes must be positive numbers of nm, got {value!r}")
    return pair


def list_folder(folder: str | os.PathLike) -> tuple[list[str], list[tuple[Path, str]]]:
    """``(categories, [(file, category), ...])`` of a folder with one sub-folder per category.

    Sub-folders and files whose names start with ``.`` or ``_`` are ignored. ValueError when
    the folder is missing, or has fewer than two category sub-folders with files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder (expected one sub-folder per category)")
    categories, files = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        found = sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        if found:
            categories.append(sub.name)
            files += [(p, sub.name) for p in found]
    if len(categories) < 2:
        raise ValueError(
            f"{root}: training needs at least two category sub-folders with files, found "
            f"{len(categories)}{' (' + categories[0] + ')' if categories else ''}"
        )
    return categories, files


# --------------------------------------------------------------------------------------
# The network's view
# --------------------------------------------------------------------------------------


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resampled onto a grid of ``shape`` covering the same area (pixel edges aligned).

    Linear interpolation, with a Gaussian pre-filter along an axis that shrinks (anti-aliasing).
    """
    from scipy import ndimage

    shape = (int(shape[0]), int(shape[1]))
    if shape == image.shape:
        return image
    zoom = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    sigma = [max(0.0, (1 / z - 1) / 2) for z in zoom]
    if any(sigma):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    return ndimage.zoom(image, zoom, order=1, mode="nearest", grid_mode=True)


def model_shape(
    shape: tuple[int, int], pixel_size: tuple[float, float] | None, target: float | None
) -> tuple[int, int]:
    """The (y, x) size of an image of ``shape`` pixels once resampled to ``target`` nm/px."""
    if pixel_size is None or target is None:
        return (int(shape[0]), int(shape[1]))
    return (
        max(1, round(shape[0] * pixel_size[0] / target)),
        max(1, round(shape[1] * pixel_size[1] / target)),
    )


def normalise(image: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (a constant image becomes zeros)."""
    image = image - image.mean()
    std = image.std()
    return image / std if std > 0 else image


def fill_nans(image: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(image)
    if not bad.any():
        return image
    good = image[~bad]
    return np.where(bad, np.median(good) if good.size else 0.0, image)


def model_input(
    frame: list[np.ndarray], pixel_size: tuple[float, float] | None, spec: dict, source: str = "input"
) -> np.ndarray:
    """One frame's channels as the network sees them: ``(C, H', W')`` float32 (see the module doc).

    ``spec``: ``{"pixel_size": nm | None, "input_size": px, "preprocessing": [steps]}``.
    ValueError naming ``source`` when the result is smaller than the network input.
    """
    out_shape = model_shape(frame[0].shape, pixel_size, spec.get("pixel_size"))
    size = int(spec["input_size"])
    if min(out_shape) < math.ceil(size * MIN_COVERED):
        resampled = ""
        if tuple(out_shape) != tuple(frame[0].shape):
            resampled = f" ({out_shape[0]}×{out_shape[1]} px at the model's {spec['pixel_size']:g} nm/px)"
        raise ValueError(
            f"{source}: the image is {frame[0].shape[0]}×{frame[0].shape[1]} px{resampled}; "
            f"the network needs at least {math.ceil(size * MIN_COVERED)} px on each side "
            f"(smaller sides are mirrored up to {size} px)"
        )
    steps = spec.get("preprocessing") or []
    channels = []
    for image in frame:
        image = fill_nans(np.asarray(image, dtype=np.float64))
        if steps:
            image = fill_nans(np.asarray(apply_steps(image, steps), dtype=np.float64))
        channels.append(normalise(resize(image, out_shape)))
    view = np.stack(channels).astype(np.float32)
    pad = [(0, 0)] + [(0, max(0, size - n)) for n in view.shape[1:]]
    return np.pad(view, pad, mode="symmetric") if any(p[1] for p in pad) else view


def tile_starts(length: int, size: int) -> list[int]:
    """Starts of ``ceil(length / size)`` windows of ``size`` spread evenly over ``length``."""
    count = math.ceil(length / size)
    if count <= 1:
        return [0]
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def tiles(image: np.ndarray, size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``(T, C, size, size)`` tiles covering a ``(C, H, W)`` image, and each tile's (y, x) start."""
    starts = [(y, x) for y in tile_starts(image.shape[1], size) for x in tile_starts(image.shape[2], size)]
    return np.stack([image[:, y : y + size, x : x + size] for y, x in starts]), starts
