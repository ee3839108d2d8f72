"""TIFF files written by napari-scanprobe (:mod:`napari_scanprobe.io.tif_write`).

Recognised by content only: a TIFF (or BigTIFF) whose first page's ``ImageDescription``
starts with ``{"napari_scanprobe"``. The sniffer reads that tag's first bytes from ``head``
(or, when the tag lies further on, those few bytes from the file) and never imports
tifffile; a plain, Park or JPK TIFF has no such description and is never claimed.

The description's JSON gives the channel's name, direction, units, pixel size, offset, frame
time and metadata exactly as written. Pixels are read with ``tifffile``:

* an image (``frames`` null): one page, read at once (float32, as written);
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
from .scan import DIRECTIONS, ROLES, Channel, ReaderError, Scan, check_shape, clean_name

FORMAT = "scanprobe_tif"
EXTENSIONS = (".tif", ".tiff")

DESCRIPTION_KEY = (
    "napari_scanprobe"  # the same as tif_write.DESCRIPTION_KEY (not imported: sniffing stays light)
)
MARK = b'{"' + DESCRIPTION_KEY.encode("ascii") + b'"'

IMAGE_DESCRIPTION = 270
ASCII = 2
#: A first directory with more entries than this is no file of ours (tifffile writes ~15).
MAX_ENTRIES = 4096


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def _bytes_at(path: Path, head: bytes, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``: from ``head`` when it holds them, else from the file."""
    if offset + size <= len(head):
        return head[offset : offset + size]
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def description_start(path: Path, head: bytes, size: int) -> bytes:
    """The first ``size`` bytes of the first page's ImageDescription; ``b""`` when there is none."""
    order = bytes(head[:2])
    bo = "<" if order == b"II" else ">" if order == b"MM" else None
    if bo is None or len(head) < 16:
        return b""
    (magic,) = struct.unpack_from(bo + "H", head, 2)
    if magic == 42:  # classic TIFF: u16 entry count, 12-byte entries, 4-byte values/offsets
        count_fmt, offset_fmt, entry_size, first_at = "H", "I", 12, 4
    elif magic == 43:  # BigTIFF: u64 entry count, 20-byte entries, 8-byte values/offsets
        count_fmt, offset_fmt, entry_size, first_at = "Q", "Q", 20, 8
    else:
        return b""
    count_size, value_size = struct.calcsize(count_fmt), struct.calcsize(offset_fmt)
    (ifd,) = struct.unpack_from(bo + offset_fmt, head, first_at)
    raw = _bytes_at(path, head, ifd, count_size)
    if ifd < 8 or len(raw) < count_size:
        return b""
    (count,) = struct.unpack_from(bo + count_fmt, raw)
    if not 0 < count <= MAX_ENTRIES:
        return b""
    table = _bytes_at(path, head, ifd + count_size, count * entry_size)
    entry_fmt = bo + "HH" + offset_fmt
    for i in range(len(table) // entry_size):
        code, type_, n = struct.unpack_from(entry_fmt, table, i * entry_size)
        if code != IMAGE_DESCRIPTION:
            continue
        if type_ != ASCII or n < size:
            return b""
        value_at = i * entry_size + 4 + value_size
        if n <= value_size:  # stored in the entry itself
            return table[value_at : value_at + size]
        (offset,) = struct.unpack_from(bo + offset_fmt, table, value_at)
        return _bytes_at(path, head, offset, size)
    return b""


def sniff(path: Path, head: bytes) -> bool:
    try:
        return description_start(path, head, len(MARK)) == MARK
    except Exception:
        return False


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
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
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
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            first = tif.pages[0]
            info = _info(path, first.description)
            frames = _frame_count(path, info)
            frame_shape = tuple(first.shape)
            if len(frame_shape) != 2:
                raise ReaderError(path, f"the TIFF page is not a single-channel image (shape {frame_shape})")
            ny, nx = check_shape(path, frame_shape)
            pages = len(tif.pages)
            if pages != (frames or 1):
                raise ReaderError(
                    path,
                    f"file is truncated: it holds {pages} of {frames or 1} frames"
                    if pages < (frames or 1)
                    else f"it holds {pages} pages, but its description declares {frames or 1}",
                )
            image = first.asarray() if frames is None else None
    except (tifffile.TiffFileError, ValueError, IndexError, struct.error) as exc:
        raise ReaderError(path, f"corrupt or truncated TIFF file ({exc})") from None
    if frames is None:
        pixels = np.asarray(image, dtype=np.float32)
    else:
        stat = path.stat()
        token = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        pixels = lazy_movie(TifFrames(str(path), (frames, ny, nx)), f"scanprobe-tif-{token}")
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
