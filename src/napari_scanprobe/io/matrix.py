"""Scienta Omicron MATRIX image files (``*.Z_mtrx``, ``*.I_mtrx`` ...) with their parameter file.

A MATRIX experiment writes one *result* (parameter) file ``<prefix>_0001.mtrx`` and one data
file per channel and scan, ``<prefix>--<run>_<cycle>.<channel>_mtrx``. Both start with
``ONTMATRX0101`` followed by tagged blocks: a 4-byte tag stored as a little-endian int (so the
bytes read reversed: ``TLKB`` is ``BKLT``), a uint32 payload length and, for most tags, an
8-byte time stamp before the payload. Strings are a uint32 count of UTF-16LE code units.

The **data file** (``BKLT``) holds ``DESC`` (a reference to the channel, the intended and the
captured number of points) and ``DATA`` (the raw int32 values, in acquisition order). Its sizes
and scaling live only in the **parameter file**: an ``EEPA`` block with the initial settings
(``XYScanner`` Width/Height/Points/Lines/X_Retrace/Y_Retrace ...), ``PMOD`` blocks with every
later change, ``CCSY`` blocks with the channel dictionary (``DICT``: channel id, name, unit)
and the transfer functions (``XFER``), and one ``BREF`` block naming each data file when it was
written. The settings valid for a data file are those in effect at its ``BREF``.

Conventions follow Gwyddion's ``omicronmatrix`` module (the reference for ground_truth.json):

* the parameter file is ``<prefix>_0001.mtrx`` where ``<prefix>`` is the data file name up to
  its last ``--`` (the data file holds no reference to it); it is read up to the ``BREF`` that
  names the data file. If it does not name it, later ``<prefix>_0002.mtrx`` ... files are
  tried, else the settings at the end of ``_0001`` are used (as Gwyddion); a missing
  parameter file is an error, since the data file alone has neither sizes nor units,
* the channel is the one whose ``DICT`` name equals the channel part of the data file name
  (``Z`` in ``--4_1.Z_mtrx``); failing that, the channel reference stored in ``DESC``,
* values: ``TFF_Linear1D`` ``p = (raw - Offset) / Factor``; ``TFF_MultiLinear1D``
  ``p = (raw - Offset) * (Raw_1 - PreOffset) / (NeutralFactor * PreFactor)``; the unit is the
  ``DICT`` unit of the channel,
* frame: ``Width / Zoom`` by ``Height / Zoom``, pixel size = frame / points; the frame offset
  and rotation (``X_Offset``, ``Y_Offset``, ``Angle``) are recorded in the header but not
  applied (Gwyddion reports offset 0),
* the data stream holds, for the up scan, line by line: the trace line, then (``X_Retrace``)
  the retrace line; then the same for the down scan (``Y_Retrace``). Up images are flipped
  vertically for display (the first line is the bottom one), retrace images are mirrored in x.
  Channels come out in the order TraceUp, RetraceUp, TraceDown, RetraceDown,
* an interrupted scan captures fewer points than intended: the missing pixels are NaN.

Spectroscopy files (channel names like ``I(V)``, ``Z(t)``) are declined, as is the parameter
file opened on its own.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .scan import Channel, ReaderError, Scan, check_shape, clean_name, jsonable, role_for
from .units import value_scale

if TYPE_CHECKING:
    import mmap

    _Buffer = bytes | mmap.mmap  # the parsers read a whole file in memory or a memory map

FORMAT = "matrix"
EXTENSIONS = (
    ".z_mtrx",
    ".i_mtrx",
    ".df_mtrx",
    ".aux1_mtrx",
    ".aux2_mtrx",
    ".ext1_mtrx",
    ".ext2_mtrx",
    ".mtrx",
)

MAGIC = b"ONTMATRX0101"
DATA_TAG = b"TLKB"  # "BKLT" reversed: a data (image / curve) file
PARAM_TAG = b"ATEM"  # "META" reversed: the parameter (result) file

#: Blocks written without the 8-byte time stamp after their length.
_NO_TIMESTAMP = frozenset((b"XFER", b"SCAN", b"DICT", b"CHCS", b"INST", b"CNXS", b"GENL"))

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")

#: ``4_1.Z_mtrx`` (also accepted: ``4_1.Z.mtrx``): run, cycle and channel.
_NAME_TAIL = re.compile(r"^(\d+)_(\d+)\.(.+?)[._]mtrx$", re.IGNORECASE)
#: Curve channels: ``I(V)``, ``Aux2(V)``, ``Z(t)``, ``I(Z)``.
_CURVE_CHANNEL = re.compile(r"^[A-Za-z]+\d*\([A-Za-z]+\)$")
#: Units MATRIX leaves empty.
_NO_UNIT = ("", "--", "---")


class _Corrupt(Exception):
    """A block or value runs past its bounds or has an unknown type."""


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    try:
        return head.startswith(MAGIC)
    except Exception:
        return False


# --------------------------------------------------------------------------------------
# Low-level parsing: every read is bounded by ``end`` (the end of the enclosing block)
# --------------------------------------------------------------------------------------


def _u32(buf: _Buffer, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise _Corrupt(f"a number at offset {pos} runs past the end of its block")
    return _U32.unpack_from(buf, pos)[0]


def _string(buf: _Buffer, pos: int, end: int) -> tuple[str, int]:
    n = _u32(buf, pos, end)
    start = pos + 4
    stop = start + 2 * n
    if stop > end:
        raise _Corrupt(f"a text of {n} characters at offset {pos} runs past the end of its block")
    if n == 0:
        return "", stop
    return buf[start:stop].decode("utf-16-le", "replace"), stop


def _value(buf: _Buffer, pos: int, end: int):
    """A typed value: ``LONG`` int32, ``BOOL``, ``DOUB`` float64 or ``STRG`` text."""
    if pos + 4 > end:
        raise _Corrupt(f"a value at offset {pos} runs past the end of its block")
    tag = buf[pos : pos + 4]
    pos += 4
    if tag == b"BUOD":
        if pos + 8 > end:
            raise _Corrupt(f"a number at offset {pos} runs past the end of its block")
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if tag == b"GNOL":
        if pos + 4 > end:
            raise _Corrupt(f"a number at offset {pos} runs past the end of its block")
        return _I32.unpack_from(buf, pos)[0], pos + 4
    if tag == b"LOOB":
        return bool(_u32(buf, pos, end)), pos + 4
    if tag == b"GRTS":
        return _string(buf, pos, end)
    raise _Corrupt(f"unknown value type {tag[::-1]!r} at offset {pos - 4}")


def _checked_value(buf: _Buffer, pos: int, end: int):
    """A parameter value: four zero bytes, then a typed value."""
    if _u32(buf, pos, end) != 0:
        raise _Corrupt(f"unexpected parameter value layout at offset {pos}")
    return _value(buf, pos + 4, end)


def _blocks(buf: _Buffer, pos: int, end: int, stamped: bool = True):
    """Yield ``(tag, payload_start, payload_end, timestamp)`` of the blocks in ``[pos, end)``.

    Tags are returned readable (``b"PMOD"``, the file holds ``DOMP``). ``stamped=False`` for
    the blocks inside a data file, which carry no time stamp.

    Every step advances by at least 8 bytes and every length is checked against ``end``, so a
    corrupt length ends the walk with :class:`_Corrupt` instead of a hang or an overrun.
    """
    while pos + 8 <= end:
        tag = buf[pos : pos + 4][::-1]
        if tag == b"\x00\x00\x00\x00":  # padding after the last block
            return
        length = _U32.unpack_from(buf, pos + 4)[0]
        start = pos + 8
        stamp = None
        if stamped and tag not in _NO_TIMESTAMP:
            if start + 8 > end:
                raise _Corrupt(f"{_tag_name(tag)} block at offset {pos} is cut short")
            stamp = _I64.unpack_from(buf, start)[0]
            start += 8
        stop = start + length
        if stop > end:
            raise _Corrupt(
                f"{_tag_name(tag)} block at offset {pos} declares {length} bytes, "
                f"but only {max(end - start, 0)} follow"
            )
        yield tag, start, stop, stamp
        pos = stop


def _tag_name(tag: bytes) -> str:
    return tag.decode("latin-1") if tag.isalnum() else repr(tag)


# --------------------------------------------------------------------------------------
# The data file
# --------------------------------------------------------------------------------------


class _DataFile:
    timestamp: int | None = None
    channel_ref: int | None = None  # the DICT "CD" number the DESC block points to
    intended = 0
    available = 0
    data_start = -1
    data_stop = -1


def _parse_data_file(path: Path, buf: bytes) -> _DataFile:
    info = _DataFile()
    size = len(buf)
    if size >= len(MAGIC) + 8:  # the image block: tag, length, time stamp, then `length` bytes
        need = len(MAGIC) + 16 + _U32.unpack_from(buf, len(MAGIC) + 4)[0]
        if need > size:
            raise ReaderError(
                path, f"file is truncated: the MATRIX image needs {need} bytes, the file holds {size}"
            )
    try:
        outer = next(_blocks(buf, len(MAGIC), size), None)
        if outer is None or outer[0] != b"BKLT":
            raise _Corrupt("no data block after the MATRIX signature")
        _, start, stop, info.timestamp = outer
        for tag, b_start, b_stop, _stamp in _blocks(buf, start + 4, stop, stamped=False):
            if tag == b"DESC":
                if b_stop - b_start < 28:
                    raise _Corrupt("the data description block is too short")
                if buf[b_start : b_start + 4] == b"C\x00D\x00":
                    info.channel_ref = _U32.unpack_from(buf, b_start + 4)[0]
                info.intended = _U32.unpack_from(buf, b_start + 20)[0]
                info.available = _U32.unpack_from(buf, b_start + 24)[0]
            elif tag == b"DATA":
                info.data_start, info.data_stop = b_start, b_stop
                break
    except _Corrupt as exc:
        raise ReaderError(path, f"corrupt or truncated MATRIX data file: {exc}") from None
    if info.data_start < 0:
        raise ReaderError(path, "MATRIX data file holds no data block (truncated or corrupt)")
    return info


# --------------------------------------------------------------------------------------
# The parameter file
# --------------------------------------------------------------------------------------


class _Params:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}  # (instance, property) -> value
        self.units: dict[tuple[str, str], str] = {}
        self.meta: dict[str, str] = {}
        self.ccsy: tuple[int, int] | None = None  # payload of the last channel-set block
        self.found = False  # the BREF naming the data file was reached
        self.problem: str | None = None  # why the walk stopped early, if it did
        self.image_timestamp: int | None = None
        self.is_param_file = False
        self.channels: dict[int, tuple[str, str]] = {}  # from the channel set in effect
        self.refs: dict[int, int] = {}
        self.transfer: dict[int, tuple[str, str, dict]] = {}
        self.channel_error: str | None = None

    def get(self, inst: str, prop: str, default=None):
        return self.values.get((inst, prop), default)


def _same_file(referenced: str, wanted: str) -> bool:
    name = referenced.replace("\\", "/").rsplit("/", 1)[-1]
    return name.lower() == wanted.lower()


def _read_eepa(buf: bytes, pos: int, end: int, params: _Params) -> None:
    """All settings at the start of the experiment: groups of (property, unit, value).

    This block holds several hundred entries and is read on every image, so the loop is
    written out flat (about 4x faster than calling :func:`_string` and :func:`_value`).
    """
    unpack_u32 = _U32.unpack_from
    unpack_i32 = _I32.unpack_from
    unpack_f64 = _F64.unpack_from
    values = params.values
    units = params.units
    unit_names: dict[bytes, str] = {}
    groups = _u32(buf, pos + 4, end)
    pos += 8
    for _ in range(groups):
        if pos >= end:
            raise _Corrupt("the experiment parameters end early")
        inst, pos = _string(buf, pos, end)
        count = _u32(buf, pos, end)
        pos += 4
        for _ in range(count):
            if pos + 4 > end:
                raise _Corrupt("the experiment parameters end early")
            start = pos + 4
            pos = start + 2 * unpack_u32(buf, pos)[0]
            if pos + 4 > end:
                raise _Corrupt("the experiment parameters end early")
            prop = buf[start:pos].decode("utf-16-le", "replace")
            start = pos + 4
            pos = start + 2 * unpack_u32(buf, pos)[0]
            if pos + 8 > end:
                raise _Corrupt("the experiment parameters end early")
            raw_unit = buf[start:pos]
            unit = unit_names.get(raw_unit)
            if unit is None:
                unit = unit_names[raw_unit] = raw_unit.decode("utf-16-le", "replace")
            kind = buf[pos : pos + 8]
            if kind == b"\x00\x00\x00\x00BUOD" and pos + 16 <= end:
                value = unpack_f64(buf, pos + 8)[0]
                pos += 16
            elif kind == b"\x00\x00\x00\x00GNOL" and pos + 12 <= end:
                value = unpack_i32(buf, pos + 8)[0]
                pos += 12
            elif kind[:4] == b"\x00\x00\x00\x00":
                value, pos = _value(buf, pos + 4, end)
            else:
                raise _Corrupt(f"unexpected parameter value layout at offset {pos}")
            values[inst, prop] = value
            units[inst, prop] = unit


def _read_pmod(buf: bytes, pos: int, end: int, params: _Params) -> None:
    pos += 4
    inst, pos = _string(buf, pos, end)
    prop, pos = _string(buf, pos, end)
    unit, pos = _string(buf, pos, end)
    value, pos = _checked_value(buf, pos, end)
    params.values[inst, prop] = value
    params.units[inst, prop] = unit


def _read_meta(buf: bytes, pos: int, end: int, params: _Params) -> None:
    program, pos = _string(buf, pos, end)
    version, pos = _string(buf, pos, end)
    profile, pos = _string(buf, pos + 4, end)
    user, pos = _string(buf, pos, end)
    params.meta.update(program=program, version=version, profile=profile, user=user)


def _parse_param_file(buf, data_name: str) -> _Params:
    """Walk the parameter file up to the ``BREF`` naming ``data_name``.

    Only the small blocks are decoded on the way (settings, changes, file references); the
    channel-set blocks (``CCSY``, with large curve tables) are only remembered, and the last
    one before the reference is decoded afterwards (:func:`_read_channel_set`).
    """
    params = _Params()
    if buf[:16] != MAGIC + PARAM_TAG:
        params.problem = "it is not a MATRIX parameter file"
        return params
    params.is_param_file = True
    try:
        for tag, start, stop, stamp in _blocks(buf, len(MAGIC), len(buf)):
            if tag == b"PMOD":  # a parameter changed
                try:
                    _read_pmod(buf, start, stop, params)
                except _Corrupt:
                    pass  # one unreadable change: its block length still lets us go on
            elif tag == b"BREF":  # a data file was written
                name, _ = _string(buf, start + 4, stop)
                if _same_file(name, data_name):
                    params.found = True
                    params.image_timestamp = stamp
                    break
            elif tag == b"CCSY":  # channel dictionary and transfer functions
                params.ccsy = (start + 4, stop)
            elif tag == b"EEPA":  # all parameters at the start of the experiment
                _read_eepa(buf, start, stop, params)
            elif tag == b"META":  # program, version, profile, user
                try:
                    _read_meta(buf, start, stop, params)
                except _Corrupt:
                    pass
            elif tag == b"EOED":  # end of the experiment
                break
    except _Corrupt as exc:
        params.problem = str(exc)
    return params


def _read_channel_set(buf: _Buffer, start: int, stop: int) -> tuple[dict, dict, dict]:
    """``CCSY`` -> (channels ``{id: (name, unit)}``, refs ``{cd: id}``, transfer ``{id: (tff, unit, props)}``)."""
    channels: dict[int, tuple[str, str]] = {}
    refs: dict[int, int] = {}
    transfer: dict[int, tuple[str, str, dict]] = {}
    for tag, b_start, b_stop, _stamp in _blocks(buf, start, stop):
        if tag == b"DICT":
            pos = b_start + 8
            count = _u32(buf, pos, b_stop)
            pos += 4
            for _ in range(count):  # axes: not needed
                if pos >= b_stop:
                    raise _Corrupt("the channel dictionary ends early")
                _, pos = _string(buf, pos + 16, b_stop)
                _, pos = _string(buf, pos, b_stop)
            count = _u32(buf, pos, b_stop)
            pos += 4
            for _ in range(count):
                if pos >= b_stop:
                    raise _Corrupt("the channel dictionary ends early")
                number = _u32(buf, pos + 4, b_stop)
                name, pos = _string(buf, pos + 16, b_stop)
                unit, pos = _string(buf, pos, b_stop)
                channels[number] = (name, unit)
            try:  # "CD" references (what a data file's DESC points at) -> channel id
                count = _u32(buf, pos, b_stop)
                pos += 4
                for _ in range(count):
                    if pos >= b_stop:
                        break
                    ref = _u32(buf, pos + 4, b_stop)
                    number = _u32(buf, pos + 12, b_stop)
                    _, pos = _string(buf, pos + 16, b_stop)
                    refs[ref] = number
            except _Corrupt:
                pass
        elif tag == b"XFER":
            pos = b_start
            while pos < b_stop:
                number = _u32(buf, pos + 4, b_stop)
                name, pos = _string(buf, pos + 8, b_stop)
                unit, pos = _string(buf, pos, b_stop)
                count = _u32(buf, pos, b_stop)
                pos += 4
                props: dict[str, object] = {}
                for _ in range(count):
                    if pos >= b_stop:
                        raise _Corrupt("the transfer functions end early")
                    prop, pos = _string(buf, pos, b_stop)
                    props[prop], pos = _value(buf, pos, b_stop)
                transfer[number] = (name, unit, props)
    return channels, refs, transfer


def _transfer(tff: str, props: dict) -> tuple[float, float] | None:
    """``(q, z0)`` with ``physical = raw * q + z0``, or None for an unknown transfer function."""

    def num(key: str) -> float:
        value = props.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise KeyError(key)
        return float(value)

    try:
        if tff == "TFF_Linear1D":
            q = 1.0 / num("Factor")
            return q, -num("Offset") * q
        if tff == "TFF_MultiLinear1D":
            q = (num("Raw_1") - num("PreOffset")) / (num("NeutralFactor") * num("PreFactor"))
            return q, -num("Offset") * q
    except (KeyError, ZeroDivisionError):
        return None
    return None


def _referenced_files(buf: bytes) -> list[str]:
    """The data files a parameter file names (for the message when it is opened on its own)."""
    names: list[str] = []
    try:
        for tag, start, stop, _stamp in _blocks(buf, len(MAGIC), len(buf)):
            if tag == b"BREF":
                names.append(_string(buf, start + 4, stop)[0])
    except _Corrupt:
        pass
    return names


def _decline_param_file(path: Path, buf: bytes) -> None:
    names = _referenced_files(buf)
    images = [n for n in names if not _CURVE_CHANNEL.match(_channel_of(n) or "")]
    reason = "MATRIX parameter file: open its image files (*.Z_mtrx, *.I_mtrx ...) instead"
    if images:
        shown = ", ".join(images[:3]) + (" ..." if len(images) > 3 else "")
        reason += f"; it describes {len(images)} of them, e.g. {shown}"
    elif names:
        reason += f"; it describes {len(names)} spectroscopy files and no image"
    raise ReaderError(path, reason)


# --------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, int | None, int | None, str | None]:
    """``20201111--4_1.Z_mtrx`` -> ``("20201111", 4, 1, "Z")``; prefix ``""`` if not MATRIX-named."""
    prefix, sep, tail = name.rpartition("--")
    if not sep:
        return "", None, None, None
    match = _NAME_TAIL.match(tail)
    if not match:
        return prefix, None, None, None
    return prefix, int(match.group(1)), int(match.group(2)), match.group(3)


def _channel_of(name: str) -> str | None:
    return _split_name(name.replace("\\", "/").rsplit("/", 1)[-1])[3]


def _later_param_files(path: Path, prefix: str, first: Path) -> list[Path]:
    """``<prefix>_0002.mtrx`` ...: MATRIX starts a new result file when one grows large."""
    try:
        pattern = re.compile(re.escape(prefix) + r"_\d{4}\.mtrx", re.IGNORECASE)
        return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.name != first.name)
    except OSError:
        return []


def _scan_param_file(image: Path, candidate: Path) -> _Params:
    """Map a parameter file and read what the image needs: settings and channel tables.

    The file is memory-mapped rather than read: the walk skips the large curve tables, so
    most of the file is never touched.
    """
    import mmap

    try:
        with open(candidate, "rb") as fh:
            if fh.seek(0, 2) < len(MAGIC) + 4:
                params = _Params()
                params.problem = "it is not a MATRIX parameter file"
                return params
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                params = _parse_param_file(buf, image.name)
                if params.ccsy is not None:
                    try:
                        params.channels, params.refs, params.transfer = _read_channel_set(buf, *params.ccsy)
                    except _Corrupt as exc:
                        params.channel_error = str(exc)
                return params
    except (OSError, ValueError) as exc:
        raise ReaderError(image, f"cannot read its MATRIX parameter file {candidate.name} ({exc})") from None


def _find_param_file(path: Path, prefix: str) -> tuple[Path, _Params]:
    """The parameter file that names ``path``: ``<prefix>_0001.mtrx``, else a later one.

    When none names it, the first readable one is used with its final settings (Gwyddion).
    """
    first = path.with_name(f"{prefix}_0001.mtrx")
    fallback = None
    candidates = [first]
    seen_others = False
    while candidates:
        candidate = candidates.pop(0)
        if candidate.is_file():
            params = _scan_param_file(path, candidate)
            if params.found:
                return candidate, params
            if fallback is None and params.is_param_file:
                fallback = (candidate, params)
        if not candidates and not seen_others:
            seen_others = True
            candidates = _later_param_files(path, prefix, first)
    if fallback is not None:
        return fallback
    if first.is_file():
        raise ReaderError(path, f"its MATRIX parameter file {first.name} is not a MATRIX parameter file")
    raise ReaderError(
        path,
        f"the MATRIX parameter file {first.name} is missing: it holds this image's size and "
        f"calibration and must lie in the same folder ({path.parent})",
    )


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _param_header(params: _Params) -> dict:
    """``{instance: {"property [unit]": value}}``, JSON-ready (non-finite numbers as text)."""
    groups: dict[str, dict] = {}
    units = params.units
    for (inst, prop), value in params.values.items():
        unit = units.get((inst, prop), "")
        key = prop if unit in _NO_UNIT else f"{prop} [{unit}]"
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        group = groups.get(inst)
        if group is None:
            group = groups[inst] = {}
        group[key] = value
    return groups


def _utc(stamp: int | None) -> str | None:
    """A MATRIX time stamp (seconds since 1970) as ISO 8601 UTC text."""
    import datetime

    if stamp is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _as_int(value, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _as_float(value, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def read(path: Path) -> Scan:
    """Read a MATRIX image file with the parameter file beside it.

    The image file is memory-mapped: its values are read once, straight into the scaled
    output arrays (no intermediate copy of the file).
    """
    import mmap

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 4096:
                fh.seek(0)
                return _read(path, fh.read())
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise ReaderError(path, f"cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return _read(path, buf)
    finally:
        try:
            buf.close()
        except BufferError:  # an array view is still held by an exception's traceback
            pass


def _read(path: Path, buf) -> Scan:
    if buf[: len(MAGIC)] != MAGIC:
        raise ReaderError(path, "not an Omicron MATRIX file (no ONTMATRX0101 signature)")
    if len(buf) < len(MAGIC) + 20:
        raise ReaderError(path, f"file is truncated: a MATRIX file of only {len(buf)} bytes")
    kind = buf[len(MAGIC) : len(MAGIC) + 4]
    if kind == PARAM_TAG:
        _decline_param_file(path, buf)
    if kind != DATA_TAG:
        raise ReaderError(path, f"MATRIX file of an unknown kind ({_tag_name(kind[::-1])}), not an image")

    data = _parse_data_file(path, buf)
    prefix, run, cycle, name_channel = _split_name(path.name)
    if not prefix:
        raise ReaderError(
            path,
            "cannot find the MATRIX parameter file: the file name does not follow the MATRIX "
            "pattern <prefix>--<run>_<cycle>.<channel>_mtrx (keep the original file names; the "
            "parameter file <prefix>_0001.mtrx holds the image size and calibration)",
        )
    param_path, params = _find_param_file(path, prefix)
    where = f"parameter file {param_path.name}"
    if ("XYScanner", "Points") not in params.values and ("XYScanner", "X_Points") not in params.values:
        problem = f" ({params.problem})" if params.problem else ""
        raise ReaderError(path, f"{where} holds no scan settings (truncated or corrupt){problem}")

    # ---- channel and calibration
    if params.channel_error:
        raise ReaderError(path, f"{where}: corrupt channel table ({params.channel_error})")
    channels, refs, transfer = params.channels, params.refs, params.transfer
    number = None
    if name_channel is not None:
        number = next((n for n, (cname, _u) in channels.items() if cname == name_channel), None)
    if number is None and data.channel_ref is not None:
        number = refs.get(data.channel_ref)
    known = channels.get(number) if number is not None else None
    channel_name, channel_unit = known or (name_channel or "unknown", "")
    if _CURVE_CHANNEL.match(channel_name):
        raise ReaderError(path, f"MATRIX spectroscopy data (channel {channel_name}), not an image")
    tff = transfer.get(number) if number is not None else None
    tff_name, tff_unit, tff_props = tff or ("", "", {})
    scaling = _transfer(tff_name, tff_props)
    calibration = "calibrated"
    if scaling is None:
        q, z0, unit_text = 1.0, 0.0, ""
        if number is None:
            calibration = f"raw values: channel {channel_name} is not listed in the {where}"
            if params.problem:
                calibration += f" (it is corrupt: {params.problem})"
        else:
            calibration = f"raw values: unknown transfer function {tff_name or '(none)'}"
    else:
        q, z0 = scaling
        unit_text = channel_unit or tff_unit
        if unit_text in _NO_UNIT:
            unit_text = ""
    factor, z_unit = value_scale(unit_text)

    # ---- geometry
    xres = _as_int(params.get("XYScanner", "Points", params.get("XYScanner", "X_Points")), 0)
    yres = _as_int(params.get("XYScanner", "Lines", params.get("XYScanner", "Y_Points")), 0)
    check_shape(path, (yres, xres), "MATRIX image (from the parameter file)")
    zoom = _as_int(params.get("XYScanner", "Zoom"), 1)
    zoom = zoom if zoom > 0 else 1
    width = _as_float(params.get("XYScanner", "Width"), 1.0) / zoom
    height = _as_float(params.get("XYScanner", "Height"), 1.0) / zoom
    per_frame = xres * yres
    intended = data.intended
    x_retrace = params.get("XYScanner", "X_Retrace")
    y_retrace = params.get("XYScanner", "Y_Retrace")
    if x_retrace is None or y_retrace is None:  # not recorded: judge by the number of points
        ratio = intended // per_frame if intended % per_frame == 0 else 0
        x_retrace = bool(x_retrace) if x_retrace is not None else ratio in (2, 4)
        y_retrace = bool(y_retrace) if y_retrace is not None else ratio == 4
    x_retrace = x_retrace is True or (isinstance(x_retrace, int) and x_retrace != 0)
    y_retrace = y_retrace is True or (isinstance(y_retrace, int) and y_retrace != 0)
    if per_frame * (2 if x_retrace else 1) * (2 if y_retrace else 1) > intended:
        # the settings ask for more directions than the file holds: keep the ones that fit exactly
        for xr, yr in ((x_retrace, False), (False, y_retrace), (False, False)):
            if per_frame * (2 if xr else 1) * (2 if yr else 1) == intended:
                x_retrace, y_retrace = xr, yr
                break
        else:
            raise ReaderError(
                path,
                f"the image is meant to hold {intended} points, which does not fit the "
                f"{xres} x {yres} scan described by its {where}: the parameter file does not "
                "match this image (or one of them is corrupt)"
                + (" -- a spectroscopy curve?" if intended < per_frame else ""),
            )
    n_x = 2 if x_retrace else 1
    n_y = 2 if y_retrace else 1
    total = per_frame * n_x * n_y

    available = min(data.available, intended, total)
    if available <= 0:
        raise ReaderError(path, "MATRIX image holds no measured points (scan stopped before the first line)")
    if available * 4 > data.data_stop - data.data_start:
        raise ReaderError(
            path,
            f"file is truncated: it declares {available} measured points but its data block "
            f"holds {(data.data_stop - data.data_start) // 4}",
        )

    # ---- values: one vectorised step, NaN for points an interrupted scan never reached
    raw = np.frombuffer(buf, dtype="<i4", count=available, offset=data.data_start)
    k = q * factor
    c = z0 * factor
    if available == total:
        stream = raw.reshape(n_y, yres, n_x, xres)
    else:  # pad the raw stream (as float) with NaN, scale per channel below
        padded = np.full(total, np.nan)
        padded[:available] = raw
        stream = padded.reshape(n_y, yres, n_x, xres)

    if 0 < width < math.inf and 0 < height < math.inf:
        dx, dy, xy_unit = width * 1e9 / xres, height * 1e9 / yres, "nm"
    else:  # no usable frame size: pixel units
        dx, dy, xy_unit = 1.0, 1.0, ""

    base = {
        "channel_id": number,
        "channel": channel_name,
        "unit": unit_text,
        "transfer_function": {"name": tff_name, **tff_props} if tff_name else None,
        "calibration": calibration,
        "run": run,
        "cycle": cycle,
        "points_intended": intended,
        "points_expected": total,
        "points_available": data.available,
    }
    out: list[Channel] = []
    for iy, vertical in enumerate(("Up", "Down")[:n_y]):
        for ix, horizontal in enumerate(("Trace", "Retrace")[:n_x]):
            image = stream[iy, :, ix, :]
            if vertical == "Up":  # the first line is the bottom one
                image = image[::-1]
            if horizontal == "Retrace":  # recorded right to left
                image = image[:, ::-1]
            scaled = np.empty((yres, xres))  # contiguous; multiply reads the strided view fast
            np.multiply(image, k, out=scaled)
            if c:
                scaled += c
            image = scaled
            title = f"{run or 0}-{cycle or 0} {channel_name} {horizontal}{vertical}"  # as Gwyddion
            own = {
                **base,
                "title": title,
                "scan_direction": vertical.lower(),
                "line_direction": horizontal.lower(),
            }
            out.append(
                Channel(
                    data=image,
                    name=clean_name(channel_name) or "unknown",
                    role=role_for(channel_name, z_unit),
                    direction=horizontal.lower(),
                    z_unit=z_unit,
                    pixel_size=(dy, dx),
                    xy_unit=xy_unit,
                    offset=(0.0, 0.0),
                    header=jsonable(own),
                )
            )

    if params.found:
        state = "settings in effect when the image was written"
    else:
        state = "settings at the end of the parameter file (it does not name this image"
        state += f"; {params.problem})" if params.problem else ")"
    raster_time = params.get("XYScanner", "Raster_Time", params.get("XYScanner", "Raster_Period_Time"))
    header = {
        "parameter_file": param_path.name,
        "parameter_state": state,
        "image_timestamp": data.timestamp,
        "image_time_utc": _utc(data.timestamp),
        "reference_timestamp": params.image_timestamp,
        "program": params.meta,
        "channel": base,
        "scan": {
            "width_m": width,
            "height_m": height,
            "points": xres,
            "lines": yres,
            "zoom": zoom,
            "x_retrace": x_retrace,
            "y_retrace": y_retrace,
            "angle_deg": params.get("XYScanner", "Angle"),
            "x_offset_m": params.get("XYScanner", "X_Offset"),
            "y_offset_m": params.get("XYScanner", "Y_Offset"),
            "raster_time_s": raster_time,
        },
    }
    header = jsonable(header)
    header["parameters"] = _param_header(params)  # already JSON-ready: skip jsonable's walk
    return Scan(path=str(path), format=FORMAT, channels=out, header=header)
