"""Gwyddion native files (``.gwy``): a serialised ``GwyContainer`` tree.

File layout (all numbers little-endian)::

    magic      "GWYP" (Gwyddion 2.x) or "GWYO" (Gwyddion 1.x)
    object     name "\\0", uint32 size of the components, components

A component (GWYP) is ``key "\\0"``, one type character (:data:`SCALAR_TYPES`, ``s`` string,
``o`` object; upper case = array: uint32 count, then the items) and the value. The GWYO
top-level container differs only in its own components: ``int32 GType``, ``key "\\0"``, value
(:data:`OLD_GTYPE_CODES`); the objects inside it use the GWYP component layout.

Images are ``GwyDataField`` objects under ``/N/data`` (``xres``, ``yres``, ``xreal``, ``yreal``,
``xoff``, ``yoff``, ``si_unit_xy``/``si_unit_z`` as ``GwySIUnit`` with ``unitstr``, ``data`` as a
``D`` array, row 0 = top), titled by ``/N/data/title``, metadata in the ``/N/meta`` container.
Gwyddion keeps values in base SI units and ignores any prefix written in ``unitstr``.

:func:`write` writes several 2-D channels as ``/0/data``, ``/1/data`` ... (GWYP, float64 values,
lengths in metres), each titled ``"<name> (<direction>)"`` in ``/N/data/title``, with the
channel's ``header`` as the ``/N/meta`` container of strings (text as it is, other values --
``processing``, nested headers -- as JSON text).
"""

from __future__ import annotations

import math
import operator
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from .scan import Channel, ReaderError, Scan, check_shape, clean_name, decode, jsonable, role_for
from .units import display_unit, parse_unit
from .write import check_channel, header_text, write_errors

FORMAT = "gwy"
EXTENSIONS = (".gwy",)

MAGIC_GWYP = b"GWYP"
MAGIC_GWYO = b"GWYO"
CONTAINER = "GwyContainer"

#: Scalar type characters -> (struct format, numpy dtype). The upper-case character is an
#: array of that type: uint32 count followed by the items.
SCALAR_TYPES: dict[str, tuple[str, str]] = {
    "b": ("<?", "?"),  # boolean, one byte
    "c": ("<c", "S1"),  # char, one byte
    "i": ("<i", "<i4"),  # int32
    "q": ("<q", "<i8"),  # int64
    "d": ("<d", "<f8"),  # IEEE double
}
STRING = "s"  # NUL-terminated UTF-8 string
OBJECT = "o"  # nested serialised object

#: GWYO top-level container: GLib fundamental GType number (id << 2) -> type character.
OLD_GTYPE_CODES: dict[int, str] = {16: "c", 20: "b", 24: "i", 40: "q", 60: "d", 64: "s", 80: "o"}

#: Nesting deeper than this is a corrupt file, not data.
MAX_DEPTH = 64

#: Smallest possible serialised object: empty name "\0" + uint32 size.
MIN_OBJECT_BYTES = 5

_DATA_KEY = re.compile(r"/(\d+)/data")
_WANTED_KEY = re.compile(r"/\d+/(data|meta)")
_FIRST, _REST = operator.itemgetter(slice(0, 1)), operator.itemgetter(slice(1, None))


@dataclass
class GwyObject:
    """One deserialised object: its type name and components in file order."""

    type_name: str
    items: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.items.get(key, default)


# --------------------------------------------------------------------------------------
# Deserialisation
# --------------------------------------------------------------------------------------


#: What a read is for, named in its error message: text, or ``(template, *args)`` formatted only
#: when the error is raised (building every component's message up front took a tenth of the read).
What = str | tuple


def _describe(what: What) -> str:
    if isinstance(what, str):
        return what
    template, *args = what
    return template.format(*(_describe(a) if isinstance(a, tuple) else a for a in args))


class _Deserializer:
    """Reads values from ``buf``; every read is bounded by an ``end`` it is given."""

    def __init__(self, path: Path, buf: bytes):
        self.path = path
        self.buf = buf
        self.seen_strings: dict[bytes, dict[str, str]] = {}

    def corrupt(self, reason: str) -> ReaderError:
        return ReaderError(self.path, f"corrupt Gwyddion file: {reason}")

    def truncated(self, what: What, pos: int) -> ReaderError:
        reason = f"file is truncated: {_describe(what)} at byte {pos} runs past the end of its data"
        return ReaderError(self.path, reason)

    def cstring(self, pos: int, end: int, what: What) -> tuple[str, int]:
        nul = self.buf.find(b"\0", pos, end)
        if nul < 0:
            raise self.truncated(what, pos)
        raw = self.buf[pos:nul]
        try:  # nearly always UTF-8 (ASCII): decode's other encodings only when it is not
            return raw.decode("utf-8"), nul + 1
        except UnicodeDecodeError:
            return decode(raw), nul + 1

    def unpack(self, fmt: str, pos: int, end: int, what: What) -> tuple[Any, int]:
        size = struct.calcsize(fmt)
        if pos + size > end:
            raise self.truncated(what, pos)
        return struct.unpack_from(fmt, self.buf, pos)[0], pos + size

    def object(self, pos: int, end: int, depth: int = 0, keep: Callable[[str], bool] | None = None):
        """An object at ``pos``; components of type ``o`` whose key ``keep`` rejects are skipped."""
        if depth > MAX_DEPTH:
            raise self.corrupt(f"objects nested deeper than {MAX_DEPTH} levels")
        name, pos = self.cstring(pos, end, "object name")
        size, pos = self.unpack("<I", pos, end, ("size of {!r}", name))
        body_end = pos + size
        if body_end > end:
            raise self.truncated(f"object {name!r} ({size} bytes)", pos)
        obj = GwyObject(name)
        if (
            name == CONTAINER
            and keep is None
            and (strings := self.string_container(pos, body_end)) is not None
        ):
            obj.items = strings
            return obj, body_end
        while pos < body_end:  # every component consumes >= 2 bytes, so this ends
            key, pos = self.cstring(pos, body_end, ("component name in {!r}", name))
            if pos >= body_end:
                raise self.truncated(f"component {key!r} of {name!r}", pos)
            code = chr(self.buf[pos])
            if keep is not None and code == OBJECT and not keep(key):
                pos = self.skip_object(pos + 1, body_end)
                continue
            obj.items[key], pos = self.value(code, pos + 1, body_end, depth, ("{!r} of {!r}", key, name))
        return obj, body_end

    def string_container(self, pos: int, end: int) -> dict[str, str] | None:
        """Fast path for a container of strings only (metadata): ``key\\0 s value\\0 ...``.

        Returns None when any component is not a string; the caller then parses it item by item.
        Channels of one scan often repeat the same metadata: an identical body is parsed once.
        """
        body = self.buf[pos:end]
        if (seen := self.seen_strings.get(body)) is not None:
            return dict(seen)
        parts = body.split(b"\0")
        if len(parts) % 2 != 1 or parts[-1] or set(map(_FIRST, parts[1::2])) - {b"s"}:
            return None
        try:  # one UTF-8 pass over the whole body; NUL never occurs inside a UTF-8 sequence
            text = body.decode("utf-8").split("\0")
        except UnicodeDecodeError:
            text = [decode(p) for p in parts]
        self.seen_strings[body] = strings = dict(zip(text[0:-1:2], map(_REST, text[1::2])))
        return dict(strings)

    def old_container(self, pos: int, end: int, keep: Callable[[str], bool] | None = None):
        """The GWYO top-level container: components are ``int32 GType, key, value``."""
        name, pos = self.cstring(pos, end, "object name")
        if name != CONTAINER:
            raise self.corrupt(f"top-level object is {name!r}, not a {CONTAINER}")
        size, pos = self.unpack("<I", pos, end, "container size")
        body_end = pos + size
        if body_end > end:
            raise self.truncated(f"container ({size} bytes)", pos)
        obj = GwyObject(name)
        while pos < body_end:
            gtype, pos = self.unpack("<i", pos, body_end, "value type")
            code = OLD_GTYPE_CODES.get(gtype)
            if code is None:
                raise self.corrupt(f"unknown value type #{gtype} at byte {pos - 4}")
            key, pos = self.cstring(pos, body_end, "container key")
            if keep is not None and code == OBJECT and not keep(key):
                pos = self.skip_object(pos, body_end)
                continue
            obj.items[key], pos = self.value(code, pos, body_end, 0, ("{!r}", key))
        return obj, body_end

    def skip_object(self, pos: int, end: int) -> int:
        name, pos = self.cstring(pos, end, "object name")
        size, pos = self.unpack("<I", pos, end, ("size of {!r}", name))
        if pos + size > end:
            raise self.truncated(f"object {name!r} ({size} bytes)", pos)
        return pos + size

    def value(self, code: str, pos: int, end: int, depth: int, what: What) -> tuple[Any, int]:
        if code in SCALAR_TYPES:
            value, pos = self.unpack(SCALAR_TYPES[code][0], pos, end, what)
            return (decode(value, ("latin-1",)) if code == "c" else value), pos
        if code == STRING:
            return self.cstring(pos, end, what)
        if code == OBJECT:
            return self.object(pos, end, depth + 1)
        item = code.lower()
        if code.isupper() and (item in SCALAR_TYPES or item in (STRING, OBJECT)):
            count, pos = self.unpack("<I", pos, end, ("length of {}", what))
            if item in SCALAR_TYPES:
                dtype = np.dtype(SCALAR_TYPES[item][1])
                need = count * dtype.itemsize
                if pos + need > end:
                    raise self.truncated(("array {} ({} items)", what, count), pos)
                if item == "c":
                    return self.buf[pos : pos + need], pos + need
                return np.frombuffer(self.buf, dtype, count, pos), pos + need
            # each string needs >= 1 byte and each object >= MIN_OBJECT_BYTES: bound the count first
            if count * (1 if item == STRING else MIN_OBJECT_BYTES) > end - pos:
                raise self.truncated(("array {} ({} items)", what, count), pos)
            values = []
            for _ in range(count):
                if item == STRING:
                    value, pos = self.cstring(pos, end, what)
                else:
                    value, pos = self.object(pos, end, depth + 1)
                values.append(value)
            return values, pos
        raise self.corrupt(f"unknown type {code!r} for {_describe(what)}")


def deserialize(path: Path, buf: bytes, keep: Callable[[str], bool] | None = None) -> tuple[str, GwyObject]:
    """The magic (``"GWYP"``/``"GWYO"``) and top-level container of a .gwy file held in ``buf``."""
    magic = buf[:4]
    reader = _Deserializer(path, buf)
    if magic == MAGIC_GWYP:
        top, _ = reader.object(4, len(buf), keep=keep)
        if top.type_name != CONTAINER:
            raise reader.corrupt(f"top-level object is {top.type_name!r}, not a {CONTAINER}")
    elif magic == MAGIC_GWYO:
        top, _ = reader.old_container(4, len(buf), keep=keep)
    else:
        raise ReaderError(path, "not a Gwyddion .gwy file (no GWYP/GWYO magic)")
    return magic.decode("ascii"), top


# --------------------------------------------------------------------------------------
# Gwyddion conventions shared with the .gsf reader
# --------------------------------------------------------------------------------------

_DIRECTION_WORDS = {
    "forward": "forward", "fwd": "forward", "backward": "backward", "bwd": "backward",
    "trace": "trace", "retrace": "retrace",
}  # fmt: skip
_BRACKETED = re.compile(r"(.*?)[\s_-]*[(\[]\s*([A-Za-z]+)\s*[)\]]")  # "Z (Forward)"
_SEPARATED = re.compile(r"(.*?)[\s_-]+([A-Za-z]+)")  # "Z fwd", "Height_Trace"
_CAMEL = re.compile(r"(.*?[a-z0-9])(Retrace|Trace|Forward|Backward)")  # "HeightRetrace"


def split_direction(title: str) -> tuple[str, str | None]:
    """``"HeightRetrace"`` -> ``("Height", "retrace")``; a title without direction stays whole."""
    text = clean_name(title)
    for pattern in (_BRACKETED, _SEPARATED, _CAMEL):
        match = pattern.fullmatch(text)
        if match and match.group(2).lower() in _DIRECTION_WORDS:
            name = match.group(1).strip(" _-")
            if name:
                return name, _DIRECTION_WORDS[match.group(2).lower()]
    return text, None


def unit_scale(unitstr: str | None) -> tuple[float, str]:
    """Factor and unit for a value Gwyddion stores in base SI units.

    Gwyddion parses a unit string and drops its power-of-ten prefix (``"nm"`` holds metres), so
    only the base unit counts: metres become nm, everything else stays SI.
    """
    _, si = parse_unit(unitstr)
    return display_unit(si)


def gwyddion_unit(unit: str | None) -> tuple[float, str]:
    """Factor and unit string to store one of our values in a Gwyddion file.

    The inverse of :func:`unit_scale`: ``"nm"`` -> ``(1e-9, "m")`` (values become metres),
    ``"V"`` -> ``(1.0, "V")``, ``""`` -> ``(1.0, "")``.
    """
    return parse_unit(unit)


def real_size(value: Any) -> float:
    """A physical size as Gwyddion sanitises it: absolute value, 0/NaN/missing -> 1.0."""
    try:
        value = abs(float(value))
    except (TypeError, ValueError):
        return 1.0
    return value if value > 0 and math.isfinite(value) else 1.0


def real_offset(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def make_channel(
    raw: np.ndarray,
    title: str,
    index: int,
    unit_xy: str,
    unit_z: str,
    real: tuple[Any, Any],
    offset: tuple[Any, Any],
    header: dict,
) -> Channel:
    """A Channel from a Gwyddion data field: ``raw`` is ``(yres, xres)``, row 0 = top.

    ``real`` and ``offset`` are ``(xreal, yreal)`` and ``(xoff, yoff)`` in ``unit_xy``.
    """
    name, direction = split_direction(title)
    xy_factor, xy_unit = unit_scale(unit_xy)
    z_factor, z_unit = unit_scale(unit_z)
    yres, xres = raw.shape
    xreal, yreal = real_size(real[0]), real_size(real[1])
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/huge values in a file are its own business
        data = np.multiply(raw, z_factor, dtype=np.float64)
    return Channel(
        data=data,
        name=name or f"Channel {index}",
        role=role_for(name, z_unit),
        direction=direction,
        z_unit=z_unit,
        pixel_size=(yreal / yres * xy_factor, xreal / xres * xy_factor),
        xy_unit=xy_unit,
        offset=(real_offset(offset[1]) * xy_factor, real_offset(offset[0]) * xy_factor),
        header=header if all(type(v) is str for v in header.values()) else jsonable(header),
    )


# --------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    """GWYP/GWYO magic followed by the top-level ``GwyContainer`` name (as much of it as the file holds)."""
    return head[:4] in (MAGIC_GWYP, MAGIC_GWYO) and (CONTAINER.encode() + b"\0").startswith(head[4:17])


def _wanted(key: str) -> bool:
    """Top-level objects a reader needs: data fields and their metadata containers."""
    return _WANTED_KEY.fullmatch(key) is not None


def _plain(value: Any) -> bool:
    """A container value for the file header: anything but (lists of) objects."""
    if isinstance(value, list):
        return not any(isinstance(v, GwyObject) for v in value)
    return not isinstance(value, GwyObject)


def _unitstr(unit: Any) -> str:
    return unit.get("unitstr", "") if isinstance(unit, GwyObject) else ""


def _field_channel(path: Path, index: int, dfield: GwyObject, title: str, meta: dict) -> Channel:
    xres, yres = dfield.get("xres"), dfield.get("yres")
    if not isinstance(xres, int) or not isinstance(yres, int):
        raise ReaderError(path, f"channel {index} ({title!r}) has no pixel dimensions")
    check_shape(path, (yres, xres), f"channel {index}")
    raw = dfield.get("data")
    if not isinstance(raw, np.ndarray) or raw.dtype != np.dtype("<f8"):
        raise ReaderError(path, f"channel {index} ({title!r}) holds no data array")
    if raw.size != xres * yres:
        raise ReaderError(
            path, f"channel {index} ({title!r}) declares {xres}x{yres} pixels but holds {raw.size} values"
        )
    return make_channel(
        raw.reshape(yres, xres),
        title,
        index,
        _unitstr(dfield.get("si_unit_xy")),
        _unitstr(dfield.get("si_unit_z")),
        (dfield.get("xreal"), dfield.get("yreal")),
        (dfield.get("xoff", 0.0), dfield.get("yoff", 0.0)),
        meta,
    )


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not sniff(path, buf[:32]):
        raise ReaderError(path, "not a Gwyddion .gwy file (no GWYP/GWYO magic and GwyContainer)")
    magic, top = deserialize(path, buf, keep=_wanted)
    items = top.items

    ids = sorted(
        int(m.group(1))
        for key, value in items.items()
        if (m := _DATA_KEY.fullmatch(key))
        and isinstance(value, GwyObject)
        and value.type_name == "GwyDataField"
    )
    if not ids:
        raise ReaderError(path, "Gwyddion file holds no image channel (no /N/data data field)")

    # Gwyddion 1.x (GWYO) kept the metadata of its single channel as "/meta/<key>" strings.
    old_meta = {key[len("/meta/") :]: v for key, v in items.items() if key.startswith("/meta/")}
    channels = []
    for n in ids:
        title = items.get(f"/{n}/data/title", "")
        meta = items.get(f"/{n}/meta")
        meta = dict(meta.items) if isinstance(meta, GwyObject) else {}
        if n == ids[0] and old_meta:
            meta = {**old_meta, **meta}
        channels.append(
            _field_channel(path, n, items[f"/{n}/data"], title if isinstance(title, str) else "", meta)
        )

    header = {"magic": magic}
    header.update((key, v) for key, v in items.items() if _plain(v) and not key.startswith("/meta/"))
    return Scan(path=str(path), format=FORMAT, channels=channels, header=jsonable(header))


# --------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------

#: Every size in a GWYP file is a uint32.
MAX_OBJECT_BYTES = 2**32 - 1


def _cstr(text: str) -> bytes:
    return text.replace("\0", "").encode("utf-8") + b"\0"


def _object(name: str, components: list[bytes]) -> bytes:
    body = b"".join(components)
    if len(body) > MAX_OBJECT_BYTES:
        raise ValueError(f"a {name} of {len(body)} bytes is more than a .gwy file can hold (4 GiB)")
    return _cstr(name) + struct.pack("<I", len(body)) + body


def _component(key: str, code: str, payload: bytes) -> bytes:
    return _cstr(key) + code.encode("ascii") + payload


def _si_unit(unitstr: str) -> bytes:
    return _object("GwySIUnit", [_component("unitstr", STRING, _cstr(unitstr))])


def _data_field(channel: Channel) -> bytes:
    data = np.asarray(channel.data)
    yres, xres = data.shape
    xy_factor, xy_unit = gwyddion_unit(channel.xy_unit)
    z_factor, z_unit = gwyddion_unit(channel.z_unit)
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.multiply(data, z_factor, dtype="<f8") if z_factor != 1.0 else data.astype("<f8")
    dy, dx = channel.pixel_size
    y0, x0 = channel.offset
    doubles = {
        "xreal": dx * xres * xy_factor,
        "yreal": dy * yres * xy_factor,
        "xoff": x0 * xy_factor,
        "yoff": y0 * xy_factor,
    }
    return _object(
        "GwyDataField",
        [
            _component("xres", "i", struct.pack("<i", xres)),
            _component("yres", "i", struct.pack("<i", yres)),
            *(_component(key, "d", struct.pack("<d", value)) for key, value in doubles.items()),
            _component("si_unit_xy", OBJECT, _si_unit(xy_unit)),
            _component("si_unit_z", OBJECT, _si_unit(z_unit)),
            _component("data", "D", struct.pack("<I", values.size) + np.ascontiguousarray(values).tobytes()),
        ],
    )


def _meta(header: dict) -> bytes:
    """A GwyContainer of strings: Gwyddion's metadata browser shows it."""
    items = {(str(key).replace("\0", "") or "Meta"): header_text(value) for key, value in header.items()}
    return _object(CONTAINER, [_component(key, STRING, _cstr(value)) for key, value in items.items()])


def to_bytes(channels: list[Channel]) -> bytes:
    """The .gwy file (GWYP) holding ``channels`` as ``/0/data``, ``/1/data`` ..."""
    components = []
    for n, channel in enumerate(channels):
        components.append(_component(f"/{n}/data", OBJECT, _data_field(channel)))
        components.append(_component(f"/{n}/data/title", STRING, _cstr(clean_name(channel.title))))
        if channel.header:
            components.append(_component(f"/{n}/meta", OBJECT, _meta(channel.header)))
    return MAGIC_GWYP + _object(CONTAINER, components)


def write(path: str | Path, channels: Sequence[Channel]) -> Path:
    """Write 2-D ``channels`` to ``path`` as one Gwyddion .gwy file, atomically.

    Raises ``ValueError`` for data a .gwy data field cannot hold (a movie, non-real values,
    no channel) and ``OSError`` naming the file when it cannot be written.
    """
    path = Path(path)
    if isinstance(channels, Channel):
        channels = [channels]
    channels = list(channels)
    if not channels:
        raise ValueError(f"{path}: nothing to write (no channel given)")
    for channel in channels:
        check_channel(path, channel)
    try:
        content = to_bytes(channels)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    with write_errors(path):
        atomic_write(path, content)
    return path
