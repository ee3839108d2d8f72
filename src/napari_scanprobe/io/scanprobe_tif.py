"""TIFF files written by napari-scanprobe (:mod:`napari_scanprobe.io.tif_write`).

Recognised by content only: a TIFF (or BigTIFF) whose first page's ``ImageDescription``
starts with ``{"napari_scanprobe"`` (:func:`.tiff.first_ifd_text` reads those bytes);
a plain, Park or JPK TIFF has no such description and is never claimed.

The description's JSON gives the channel's name, direction, units, pixel size, offset, frame
time and metadata exactly as written. Pixels are read with ``tifffile``:

* an image (``frames`` null): one page, parsed and read at once by :mod:`.tiff` (float32, as
  written; no tifffile import);
* a movie (``frames`` = t, even 1): a ``(t, y, x)`` movie read lazily like every movie
  (:mod:`.movie`): a float32 dask array with one frame per chunk; each chunk opens the file
  and reads only its page. A file with fewer pages than ``frames`` is refused as truncated.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .movie import FrameSource, lazy_movie
from .scan import DIRECTIONS, ROLES, Channel, ReaderError, Scan, check_shape, clean_name, decode
from .tiff import first_ifd_text, read_tiff

FORMAT = "scanprobe_tif"
EXTENSIONS = (".tif", ".tiff")

DESCRIPTION_KEY = (
    "napari_scanprobe"  # the same as tif_write.DESCRIPTION_KEY (not imported: sniffing stays light)
)
MARK = b'{"' + DESCRIPTION_KEY.encode("ascii") + b'"'

IMAGE_DESCRIPTION = 270


def sniff(path: Path, head: bytes) -> bool:
    return first_ifd_text(path, head, IMAGE_DESCRIPTION, len(MARK)) == MARK


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


class TifFrames(FrameSource):
    """Frames of a multi-page TIFF, read page by page with tifffile (picklable: path and shape)."""

    def frames(self, start: int, stop: int) -> np.ndarray:
        import tifffile

        ny, nx = self.shape[1:]
        count = stop - start
        if count <= 0:
            return np.empty((0, ny, nx), np.float32)
        try:
            with tifffile.TiffFile(self.path) as tif:
                data = tif.asarray(key=range(start, stop))
            return np.asarray(data, dtype=np.float32).reshape(count, ny, nx)
        except (OSError, ValueError, IndexError, struct.error, tifffile.TiffFileError) as exc:
            frames = f"frame {start}" if count == 1 else f"frames {start} to {stop - 1}"
            reason = f"cannot read {frames} ({exc}); truncated or changed since it was opened?"
            raise ReaderError(self.path, reason) from None


def _info(path: Path, text: str) -> dict:
    """The ``napari_scanprobe`` object of the description, checked."""
    try:
        info = json.loads(text)[DESCRIPTION_KEY]
    except (ValueError, KeyError, TypeError):
        raise ReaderError(path, "the TIFF description is not valid napari-scanprobe JSON") from None
    if not isinstance(info, dict):
        raise ReaderError(path, "the TIFF description's napari_scanprobe entry is not a JSON object")
    return info


def _pair(
    path: Path, info: dict, key: str, default: tuple[float, float], positive: bool
) -> tuple[float, float]:
    value = info.get(key, default)
    try:
        pair = (float(value[0]), float(value[1]))
        if len(value) != 2 or not all(math.isfinite(v) and (v > 0 or not positive) for v in pair):
            raise ValueError
    except (TypeError, ValueError, IndexError, KeyError):
        raise ReaderError(path, f"the TIFF description has an invalid {key} {value!r}") from None
    return pair


def _text(info: dict, key: str) -> str:
    value = info.get(key)
    return value if isinstance(value, str) else ""


def _frame_time(info: dict) -> float | None:
    value = info.get("frame_time_s")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _frame_count(path: Path, info: dict) -> int | None:
    """``frames`` of the description: the page count of a movie, None for an image."""
    frames = info.get("frames")
    if frames is None:
        return None
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ReaderError(path, f"the TIFF description has an invalid frame count {frames!r}")
    return frames


def read(path: Path) -> Scan:
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    info = _info(path, decode(first_ifd_text(path, head, IMAGE_DESCRIPTION)))
    frames = _frame_count(path, info)
    if frames is not None:
        return _read_movie(path, info, frames)
    tiff = read_tiff(path)
    if len(tiff.ifds) != 1:
        raise ReaderError(path, f"it holds {len(tiff.ifds)} pages, but its description declares 1")
    image = tiff.ifds[0].image("the image")
    if image.ndim != 2:
        raise ReaderError(path, f"the TIFF page is not a single-channel image (shape {image.shape})")
    return _scan(path, info, np.asarray(image, dtype=np.float32), None)


def _read_movie(path: Path, info: dict, frames: int) -> Scan:
    """A movie: its pages are read lazily with tifffile, never the whole file at once."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            frame_shape = tuple(tif.pages[0].shape)
            pages = len(tif.pages)
    except (tifffile.TiffFileError, ValueError, IndexError, struct.error) as exc:
        raise ReaderError(path, f"corrupt or truncated TIFF file ({exc})") from None
    if len(frame_shape) != 2:
        raise ReaderError(path, f"the TIFF page is not a single-channel image (shape {frame_shape})")
    ny, nx = check_shape(path, frame_shape)
    if pages != frames:
        raise ReaderError(
            path,
            f"file is truncated: it holds {pages} of {frames} frames"
            if pages < frames
            else f"it holds {pages} pages, but its description declares {frames}",
        )
    stat = path.stat()
    token = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return _scan(
        path, info, lazy_movie(TifFrames(str(path), (frames, ny, nx)), f"scanprobe-tif-{token}"), frames
    )


def _scan(path: Path, info: dict, pixels, frames: int | None) -> Scan:
    metadata: Any = info.get("metadata")
    channel = Channel(
        data=pixels,
        name=clean_name(_text(info, "name")) or path.stem,
        direction=info.get("direction") if info.get("direction") in DIRECTIONS else None,
        role=info.get("role") if info.get("role") in ROLES else None,
        z_unit=_text(info, "z_unit"),
        pixel_size=_pair(path, info, "pixel_size", (1.0, 1.0), positive=True),
        xy_unit=_text(info, "xy_unit"),
        offset=_pair(path, info, "offset", (0.0, 0.0), positive=False),
        frame_time_s=_frame_time(info) if frames is not None else None,
        header=metadata if isinstance(metadata, dict) else {},
    )
    header = {k: v for k, v in info.items() if k != "metadata"}
    return Scan(path=str(path), format=FORMAT, channels=[channel], header=header)
