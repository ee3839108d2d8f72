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
* ``direction`` is the file's own word, lower-case: ``forward``/``backward`` (Nanonis, RHK,
  NT-MDT, Nanosurf, Park, WSxM) or ``trace``/``retrace`` (Bruker, Asylum, JPK, Omicron), so a
  title reads as in the vendor's software. Trace *is* the forward sweep and retrace the backward
  one: :attr:`Channel.sweep` gives ``forward``/``backward`` for either vocabulary, and channel
  selection by role matches on it.
* ``role`` is what the channel measures in words no vendor owns (:data:`ROLES`), set by each
  format module from what the file says (:func:`role_for`); None when the file does not say.
  Models and recipes select channels by title, by name or by role (:func:`find_channel`), so a
  model trained on Bruker "Height" reads Nanonis "Z" and JPK "height (measured)".
"""

from __future__ import annotations

import bisect
import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DIRECTIONS = ("forward", "backward", "trace", "retrace")
_SWEEP = {"forward": "forward", "trace": "forward", "backward": "backward", "retrace": "backward"}

#: What a channel measures, in words no vendor owns.
ROLES = (
    "topography",  # the surface height: Height, Height Sensor, Z, ZSensor, Z-Axis, Topography ...
    "amplitude",  # oscillation amplitude (tapping / AC modes), lock-in amplitude
    "phase",  # oscillation phase, lock-in phase
    "deflection",  # cantilever deflection (the contact-mode signal)
    "error",  # the feedback error: amplitude error, peak-force error, "Error Signal"
    "current",  # tunnelling or conductive-AFM current
    "frequency",  # frequency shift (FM-AFM, nc-AFM)
    "potential",  # surface / Kelvin-probe potential
    "adhesion",
    "stiffness",  # slope, modulus
)

#: Channel names (lower case, direction removed) -> role, across vendors. A format module passes
#: what its file calls the channel (a Nanoscope "[Height]" quantity, a JPK "measuredHeight" key).
ROLE_NAMES = {
    "topography": (
        "height", "height sensor", "heightsensor", "height (measured)", "measured height", "measuredheight",
        "z", "z-axis", "z axis", "zsensor", "z sensor", "z-axis sensor", "topography", "topo", "z height",
        "z-height", "height trace", "heighttrace", "heightretrace", "capacitive sensor height",
    ),
    "amplitude": ("amplitude", "lock-in amplitude", "amp", "mag", "magnitude", "amplitude1", "ampl"),
    "phase": ("phase", "lock-in phase", "phase1", "nap phase", "napphase"),
    "deflection": ("deflection", "vertical deflection", "vdeflection", "deflection sensor"),
    "error": ("error signal", "error", "amplitude error", "amplitudeerror", "peak force error",
              "peakforceerror", "peakforce error"),
    "current": ("current", "tunneling current", "tunnelling current", "iprobe", "i", "it", "tuna current",
                "c-afm current", "tunnel current"),
    "frequency": ("frequency shift", "frequency_shift", "freq shift", "df", "frequency", "freq"),
    "potential": ("potential", "surface potential", "kpfm", "nap potential", "nappotential", "kelvin potential"),
    "adhesion": ("adhesion",),
    "stiffness": ("slope", "dmtmodulus", "dmt modulus", "modulus", "stiffness", "logdmtmodulus"),
}  # fmt: skip
_ROLE_OF = {word: role for role, words in ROLE_NAMES.items() for word in words}
_LENGTH_UNITS = ("nm", "m", "")


def role_for(name: str, z_unit: str = "", vendor_names: dict[str, str | None] | None = None) -> str | None:
    """The role of a channel the file calls ``name`` (the vendor's own word, any case), or None.

    ``vendor_names`` (lower-case name -> role or None) comes first, for a format's own words.
    A topography channel must hold lengths: "Height" in volts is not a height.
    """
    key = " ".join(str(name).strip().lower().split())
    role = (vendor_names or {}).get(key, _ROLE_OF.get(key))
    if role == "topography" and z_unit not in _LENGTH_UNITS:
        return None
    return role


#: Refuse any channel above this many pixels (per frame): no real scan comes near it and it
#: keeps a corrupt header from asking for terabytes.
MAX_PIXELS_PER_FRAME = 2**28


#: The longest reason a ReaderError gives (one line; junk quoted from a file is cut).
MAX_REASON = 400


class ReaderError(Exception):
    """A file could not be read. The message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        if len(reason) > MAX_REASON:  # a corrupt file's junk quoted in full is no clear message
            reason = reason[: MAX_REASON - 1] + "…"
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
    role: str | None = None  # one of ROLES: what the channel measures, whatever the vendor calls it

    def __post_init__(self):
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS} or None, not {self.direction!r}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES} or None, not {self.role!r}")
        self.pixel_size = (float(self.pixel_size[0]), float(self.pixel_size[1]))
        self.offset = (float(self.offset[0]), float(self.offset[1]))

    @property
    def is_movie(self) -> bool:
        return self.data.ndim == 3

    @property
    def sweep(self) -> str | None:
        """``"forward"`` (forward or trace), ``"backward"`` (backward or retrace) or None."""
        return _SWEEP.get(self.direction or "")

    @property
    def title(self) -> str:
        """``"Height (retrace)"``: the channel name with its direction, as shown to users."""
        return f"{self.name} ({self.direction})" if self.direction else self.name

    def facts(self) -> dict:
        """What describes the channel besides its pixels, as plain JSON values: name, direction,
        role, units, pixel size, offset, frame time (for ``scanprobe info``, layer metadata, file headers)."""
        return {
            "name": self.name,
            "direction": self.direction,
            "role": self.role,
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


def find_channel(channels: list[Channel], wanted: str) -> Channel | None:
    """The channel ``wanted`` names, or None. In this order, case-insensitively:

    1. its title (``"Height (retrace)"``), then its name (``"Height"``: the first such channel);
    2. its role: ``wanted`` is a role (``"topography"``, ``"topography (retrace)"``) or a channel
       name of a known role (``"Height (retrace)"`` in a Nanonis file finds ``"Z (backward)"``).
       The first channel of that role in file order whose sweep matches the direction asked for
       (trace = forward, retrace = backward); without a direction, the first of that role.
    """
    key = " ".join(wanted.strip().lower().split())
    for ch in channels:
        if ch.title.lower() == key:
            return ch
    for ch in channels:
        if ch.name.lower() == key:
            return ch
    role, direction = _role_and_direction(key)
    if role is None:
        return None
    same_role = [ch for ch in channels if ch.role == role]
    if direction is None:
        return same_role[0] if same_role else None
    want = _SWEEP[direction]
    return next((ch for ch in same_role if ch.sweep == want), None) or next(
        (ch for ch in same_role if ch.sweep is None), None
    )


def _role_and_direction(key: str) -> tuple[str | None, str | None]:
    base, direction = key, None
    for word in DIRECTIONS:
        if key.endswith(f"({word})"):
            base, direction = key[: -len(word) - 2].strip(), word
            break
    return (base if base in ROLES else _ROLE_OF.get(base)), direction


def role_of_title(wanted: str) -> str | None:
    """The role a channel title, name or role stands for: ``"Z (forward)"`` -> ``"topography"``."""
    return _role_and_direction(" ".join(wanted.strip().lower().split()))[0]


def select_channels(channels: list[Channel], wanted, where: str = "") -> list[Channel]:
    """The channels named by ``wanted`` (titles, names or roles; see :func:`find_channel`);
    ``[]``: the first channel. ValueError naming what is missing and what the file has."""
    if not wanted:
        return channels[:1]
    picked = []
    for name in wanted:
        match = find_channel(channels, str(name))
        if match is None:
            have = ", ".join(f"{c.title!r} ({c.role or 'no role'})" for c in channels)
            raise ValueError(f"{where + ': ' if where else ''}no channel {name!r}; the file has {have}")
        picked.append(match)
    return picked


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


def check_shape(
    path: str | Path, shape: tuple[int, ...], what: str = "image", count: bool = True
) -> tuple[int, ...]:
    """Validate dimensions from a header before anything is allocated.

    Within :func:`read_budget` the pixels are counted against the file's size: count each
    image a reader will hold once (``count=False`` validates only).
    """
    shape = tuple(int(n) for n in shape)
    if any(n <= 0 for n in shape):
        raise ReaderError(path, f"{what} has invalid dimensions {shape}")
    if math.prod(shape[-2:]) > MAX_PIXELS_PER_FRAME:
        raise ReaderError(path, f"{what} declares absurd dimensions {shape}")
    budget = _BUDGET.get()
    if budget is not None and count:
        budget.declare(shape, what)
    return shape


# --------------------------------------------------------------------------------------
# Bounds on one read: what a header declares against the bytes the file holds
# --------------------------------------------------------------------------------------

#: However small the file, a read may declare this many pixels (a compressed file can hold
#: more pixels than bytes); beyond it, no more pixels than the file has bytes.
MIN_PIXEL_BUDGET = 2**21


class _ReadBudget:
    """What one :func:`napari_scanprobe.io.read` has declared so far (see :func:`read_budget`)."""

    def __init__(self, path: str | Path, file_bytes: int):
        self.path = path
        self.file_bytes = file_bytes
        self.pixels_left = max(file_bytes, MIN_PIXEL_BUDGET)
        self.taken: dict[int, tuple[Any, list[tuple[int, int]]]] = {}  # id(buffer) -> (buffer, ranges)

    def declare(self, shape: tuple[int, ...], what: str) -> None:
        self.pixels_left -= math.prod(shape)
        if self.pixels_left < 0:
            raise ReaderError(
                self.path,
                f"the header declares more pixels than the file's {self.file_bytes} bytes can hold "
                f"(at {what} {shape}): it lists images the file does not contain",
            )

    def take(self, buffer: Any, start: int, stop: int, what: str) -> None:
        """Refuse bytes of ``buffer`` already read into another array: a file holds each image once."""
        # The buffer itself is kept, so its id cannot be reused by another buffer during the read.
        ranges = self.taken.setdefault(id(buffer), (buffer, []))[1]
        k = bisect.bisect_left(ranges, (start, stop))
        before = ranges[k - 1] if k else None
        after = ranges[k] if k < len(ranges) else None
        if (before and before[1] > start) or (after and after[0] < stop):
            raise ReaderError(
                self.path,
                f"the header points {what} at bytes {start}-{stop} that another image was read from: "
                "a file holds each image once, so the header is corrupt",
            )
        ranges.insert(k, (start, stop))


_BUDGET: contextvars.ContextVar[_ReadBudget | None] = contextvars.ContextVar(
    "scanprobe_read_budget", default=None
)


@contextmanager
def read_budget(path: str | Path, file_bytes: int):
    """Within this block, :func:`check_shape` and :func:`array_from` refuse a header that declares
    more pixels than ``file_bytes`` can hold, or the same bytes as two images (a small file must
    not turn into a huge read). ``io.read`` wraps every format module in it."""
    token = _BUDGET.set(_ReadBudget(path, file_bytes))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def check_geometry(path: str | Path, channel: Channel) -> None:
    """Refuse a channel whose pixel size, offset or frame time is not a finite, sensible number
    (1e308 sizes turn into inf after unit conversion; 1e-320 into a pixel size of 0)."""
    dy, dx = channel.pixel_size
    for label, value in (("pixel height", dy), ("pixel width", dx)):
        if not (math.isfinite(value) and MIN_PIXEL_SIZE <= value <= MAX_PIXEL_SIZE):
            unit = channel.xy_unit or "(no unit)"
            raise ReaderError(
                path,
                f"channel {channel.title!r}: {label} {value:g} {unit} is not a finite size between "
                f"{MIN_PIXEL_SIZE:g} and {MAX_PIXEL_SIZE:g}; the header's scan size is corrupt",
            )
    if not all(math.isfinite(v) and abs(v) <= MAX_OFFSET for v in channel.offset):
        raise ReaderError(
            path, f"channel {channel.title!r}: offset {channel.offset} is not a finite position"
        )
    t = channel.frame_time_s
    if t is not None and not (math.isfinite(t) and t >= 0):
        raise ReaderError(path, f"channel {channel.title!r}: frame time {t} s is not a finite time")


#: Pixel sizes a reader accepts (in xy_unit: nm, so 1e-9 nm to 1000 km per pixel).
MIN_PIXEL_SIZE = 1e-9
MAX_PIXEL_SIZE = 1e12
MAX_OFFSET = 1e15


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
    so a truncated file is reported, never read past its end or silently padded. Within
    :func:`read_budget` it refuses bytes already read into another array.
    """
    shape = check_shape(path, shape, what, count=False)
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
    budget = _BUDGET.get()
    if budget is not None and need:
        budget.take(buffer, offset, offset + need, what)
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
