"""The data model every reader returns: a :class:`Scan` holding :class:`Channel` objects.

Conventions (one place, so every format agrees):

* ``Channel.data`` is ``(y, x)`` for an image, ``(t, y, x)`` for a movie (a dask array for
  movies, read frame by frame). Row 0 is the top row as Gwyddion displays the file.
* Lateral sizes are in ``xy_unit`` -- ``"nm"`` for every file that states a lateral unit.
  Only a file without any lateral unit (a bare Gwyddion field, say) keeps its own numbers
  with ``xy_unit == ""``.
* Values: length channels in nm, every other channel in the SI unit the file states
  (``V``, ``A``, ``deg``, ``Hz``, ``N`` ...), named by ``z_unit``.
* ``header`` dicts are JSON-serialisable (see :func:`jsonable`).
* Each channel of a scan has a title of its own (:func:`number_repeated_titles`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DIRECTIONS = ("forward", "backward", "trace", "retrace")

#: Refuse any channel above this many pixels (per frame): no real scan comes near it and it
#: keeps a corrupt header from asking for terabytes.
MAX_PIXELS_PER_FRAME = 2**28


class ReaderError(Exception):
    """A file could not be read. The message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(self.path).name}: {reason} (file: {self.path})")


@dataclass
class Channel:
    """One channel of a scan: a 2-D image or a 3-D ``(t, y, x)`` movie with its physical frame."""

    data: Any
    name: str
    direction: str | None = None
    z_unit: str = ""
    pixel_size: tuple[float, float] = (1.0, 1.0)  # (dy, dx) in xy_unit
    xy_unit: str = "nm"
    offset: tuple[float, float] = (0.0, 0.0)  # (y0, x0) of the top-left pixel, in xy_unit
    frame_time_s: float | None = None
    header: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS} or None, not {self.direction!r}")
        self.pixel_size = (float(self.pixel_size[0]), float(self.pixel_size[1]))
        self.offset = (float(self.offset[0]), float(self.offset[1]))

    @property
    def is_movie(self) -> bool:
        return self.data.ndim == 3

    @property
    def title(self) -> str:
        """``"Height (retrace)"``: the channel name with its direction, as shown to users."""
        return f"{self.name} ({self.direction})" if self.direction else self.name

    def facts(self) -> dict:
        """What describes the channel besides its pixels, as plain JSON values: name, direction,
        units, pixel size, offset, frame time (for ``scanprobe info``, layer metadata, file headers)."""
        return {
            "name": self.name,
            "direction": self.direction,
            "z_unit": self.z_unit,
            "xy_unit": self.xy_unit,
            "pixel_size": list(self.pixel_size),
            "offset": list(self.offset),
            "frame_time_s": self.frame_time_s,
        }


@dataclass
class Scan:
    """Everything read from one file."""

    path: str
    format: str
    channels: list[Channel]
    header: dict = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return Path(self.path).stem


def number_repeated_titles(channels: list[Channel]) -> None:
    """Give channels that share a title (name and direction, in any case) names of their own:
    the second, third ... in file order get ``" #2"``, ``" #3"`` ... after their name.

    A title then names one channel: a layer, a recipe's or a model's channel, an output file.
    (A JPK QI image can hold "Height (measured)" twice: the default result and a user-defined
    reference-force height; NT-MDT files can hold several frames of one name.)
    """
    taken = {ch.title.lower() for ch in channels}
    seen: set[str] = set()
    for ch in channels:
        if ch.title.lower() in seen:
            base, k = ch.name, 2
            ch.name = f"{base} #{k}"
            while ch.title.lower() in taken:
                k += 1
                ch.name = f"{base} #{k}"
            taken.add(ch.title.lower())
        seen.add(ch.title.lower())


# --------------------------------------------------------------------------------------
# Helpers shared by the format modules
# --------------------------------------------------------------------------------------


def decode(raw: bytes, encodings: tuple[str, ...] = ("utf-8", "latin-1")) -> str:
    """Decode header text, trying each encoding in turn; never raises.

    Latin-1 maps every byte, so it is a safe last resort. NUL bytes are dropped.
    """
    raw = raw.replace(b"\x00", b"")
    for enc in encodings:
        try:
            return raw.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1")


def clean_name(text: str) -> str:
    """A channel name without padding, control characters or junk bytes."""
    text = "".join(ch for ch in text if ch.isprintable())
    return " ".join(text.split())


def check_shape(path: str | Path, shape: tuple[int, ...], what: str = "image") -> tuple[int, ...]:
    """Validate dimensions from a header before anything is allocated."""
    shape = tuple(int(n) for n in shape)
    if any(n <= 0 for n in shape):
        raise ReaderError(path, f"{what} has invalid dimensions {shape}")
    if math.prod(shape[-2:]) > MAX_PIXELS_PER_FRAME:
        raise ReaderError(path, f"{what} declares absurd dimensions {shape}")
    return shape


def array_from(
    path: str | Path,
    buffer: bytes | memoryview | np.ndarray,
    offset: int,
    dtype: Any,
    shape: tuple[int, ...],
    what: str = "image",
) -> np.ndarray:
    """``np.frombuffer`` with the checks a corrupt header needs.

    Raises :class:`ReaderError` when the buffer holds fewer bytes than the header declares,
    so a truncated file is reported, never read past its end or silently padded.
    """
    shape = check_shape(path, shape, what)
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    need = count * dtype.itemsize
    size = len(buffer) if not isinstance(buffer, np.ndarray) else buffer.nbytes
    if offset < 0 or offset + need > size:
        raise ReaderError(
            path,
            f"file is truncated: {what} needs {need} bytes at offset {offset}, "
            f"but the file holds {max(size - offset, 0)}",
        )
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)


def jsonable(obj: Any) -> Any:
    """Turn a parsed header (bytes, numpy scalars, tuples, nested dicts) into plain JSON types."""
    kind = type(obj)
    if kind is str or kind is int or kind is bool or obj is None:  # the common leaves first
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): v if type(v) is str else jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return decode(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist()) if obj.size <= 4096 else f"<array {obj.shape} {obj.dtype}>"
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, (str, int, float)):  # subclasses (np.str_ is a str, IntEnum an int ...)
        return _plain(obj)
    return str(obj)


def _plain(obj: Any) -> Any:
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    return jsonable(float(obj))
