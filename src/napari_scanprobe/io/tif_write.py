"""Writing one channel as a float32 TIFF that keeps its physical frame and metadata.

The file, written with ``tifffile`` (imported on first use):

* pixels: float32, little-endian, uncompressed, one page per frame -- a 2-D image is one
  page, a ``(t, y, x)`` movie ``t`` pages (a lazy dask movie is written frame by frame);
* resolution tags for any TIFF reader: ``ResolutionUnit`` = centimetre and ``XResolution``/
  ``YResolution`` = pixels per cm when the lateral unit is a length; unit "none" and pixels
  per unit when the channel has no lateral unit. A rational holds the value only to about 10
  digits and not at all beyond ``4e9`` pixels per unit (pixels under 0.0025 nm): the tags are
  then left at 1 pixel per unit, and the exact frame lives in the description;
* the first page's ``ImageDescription``: one JSON object ``{"napari_scanprobe": {...}}`` with
  ``format_version``, ``name``, ``direction``, ``z_unit``, ``xy_unit``, ``pixel_size``
  ``[dy, dx]``, ``offset`` ``[y0, x0]`` (in ``xy_unit``), ``frame_time_s``, ``frames`` (the
  number of pages of a movie, so a truncated file is noticed; null for an image) and
  ``metadata`` (the channel's header, made JSON-safe by :func:`napari_scanprobe.io.scan.jsonable`).
  :mod:`napari_scanprobe.io.scanprobe_tif` reads it back exactly.

The JSON is pure ASCII, and a key ``"shape"`` anywhere in it is written ``"\\u0073hape"``
(the same key to any JSON parser): tifffile takes a description holding ``"shape":`` for its
own "shaped" metadata and would misread the file.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from .scan import Channel, jsonable
from .units import parse_unit
from .write import check_channel, write_errors

#: The top-level key of the description; :mod:`scanprobe_tif` sniffs files by it.
DESCRIPTION_KEY = "napari_scanprobe"
FORMAT_VERSION = 1

#: Pixels per unit a TIFF rational (two uint32) holds with a useful number of digits.
_RESOLUTION_RANGE = (1e-9, 4e9)
#: Above this many bytes of pixels the file must be a BigTIFF (offsets beyond 4 GiB).
_BIGTIFF_BYTES = 2**32 - 2**25


def description(channel: Channel) -> str:
    """The ImageDescription text for ``channel`` (see the module notes)."""
    info = {
        "format_version": FORMAT_VERSION,
        **channel.facts(),
        "frames": int(channel.data.shape[0]) if channel.data.ndim == 3 else None,
        "metadata": jsonable(channel.header or {}),
    }
    text = json.dumps({DESCRIPTION_KEY: info}, ensure_ascii=True, allow_nan=False)
    return text.replace('"shape":', '"\\u0073hape":')


def _rational(value: float) -> tuple[int, int]:
    """The TIFF RATIONAL (two uint32) nearest ``value``: written by us, not left to the tifffile
    version (2024.1 rounds 1e7 / 4.297 nm to 3e-4 relative error)."""
    top = 2**32 - 1  # a denominator up to top / value keeps the numerator within top too
    best = Fraction(value).limit_denominator(max(1, int(top // max(value, 1.0))))
    return best.numerator, best.denominator


def resolution(channel: Channel) -> tuple[tuple[tuple[int, int], tuple[int, int]] | None, str]:
    """``((x, y) pixels per unit as rationals, unit)`` for the TIFF tags; ``(None, "NONE")`` when
    out of range."""
    factor, si = parse_unit(channel.xy_unit)
    dy, dx = channel.pixel_size
    if channel.xy_unit and si == "m":
        per_unit, unit = (1.0 / (dx * factor * 100.0), 1.0 / (dy * factor * 100.0)), "CENTIMETER"
    else:
        per_unit, unit = (1.0 / dx, 1.0 / dy), "NONE"
    low, high = _RESOLUTION_RANGE
    if not all(low <= v <= high for v in per_unit):
        return None, "NONE"
    return (_rational(per_unit[0]), _rational(per_unit[1])), unit


def _frames(data):
    for t in range(data.shape[0]):
        yield np.asarray(data[t], dtype=np.float32)


def write(path: str | Path, channel: Channel) -> Path:
    """Write ``channel`` (2-D image or ``(t, y, x)`` movie) to ``path`` as a float32 TIFF, atomically.

    Raises ``ValueError`` for data a TIFF page cannot hold and ``OSError`` naming the file
    when it cannot be written.
    """
    import tifffile

    from .. import __version__

    path = Path(path)
    check_channel(path, channel, movie=True)
    data = channel.data
    shape = tuple(int(n) for n in data.shape)
    res, res_unit = resolution(channel)
    options: dict[str, Any] = {
        "photometric": "minisblack",
        "description": description(channel),
        "metadata": None,  # no tifffile JSON: ours is the only description
        "software": f"napari-scanprobe {__version__}",
        "resolutionunit": res_unit,
    }
    if res is not None:
        options["resolution"] = res
    if isinstance(data, np.ndarray) or data.ndim == 2:
        pixels = np.asarray(data, dtype=np.float32)
    else:  # a lazy movie: one frame in memory at a time
        pixels = _frames(data)
        options.update(shape=shape, dtype=np.float32)
    bigtiff = bool(np.prod(shape, dtype=np.int64) * 4 > _BIGTIFF_BYTES)
    with (
        write_errors(path),
        atomic_path(path) as tmp,
        tifffile.TiffWriter(tmp, byteorder="<", bigtiff=bigtiff) as tif,
    ):
        tif.write(pixels, **options)
    return path
