"""JPK Instruments image scans (``.jpk``, ``.jpk-qi-image``).

A JPK image scan is a TIFF file. The first directory (IFD 0) is an 8-bit palette thumbnail
that also carries the scan-wide private tags (``0x8000`` range: grid origin and lengths,
feedback settings, property blocks); every further directory holding a 16- or 32-bit
grey-scale image is one channel, with its own private tags:

* ``0x8050`` channel name, ``0x8052`` fancy (display) name, ``0x8051`` retrace flag,
  ``0x8053`` the channel's property block;
* ``0x8080`` number of calibration *slots*, ``0x8081`` the name of the default slot;
* slot ``n`` at ``0x8090 + 0x30 * n``: ``+0x00`` name, ``+0x01`` type, ``+0x02`` parent,
  ``+0x10`` calibration name, ``+0x11`` encoder name, ``+0x12`` unit, ``+0x13`` scaling type,
  ``+0x14`` multiplier, ``+0x15`` offset. The multiplier/offset of a slot act on the raw
  integers directly (they are already composed along the slot chain).

Rules (after Gwyddion's ``jpkscan.c``): values are ``raw * multiplier + offset`` of the
default slot in that slot's unit; rows are stored bottom-up unless the grid is reflected
(``0x8045``); the pixel size is grid length / pixel count; the offset is the grid origin
(``0x8040``/``0x8041``); channels come in file order, named by the fancy name with
``(retrace)`` for retrace channels.
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable
from .units import value_scale

FORMAT = "jpk"
EXTENSIONS = (".jpk", ".jpk-qi-image")

# Scan-wide tags (IFD 0)
TAG_GRID_X0 = 0x8040
TAG_GRID_Y0 = 0x8041
TAG_GRID_ULENGTH = 0x8042
TAG_GRID_VLENGTH = 0x8043
TAG_GRID_REFLECT = 0x8045
# Channel tags
TAG_CHANNEL = 0x8050
TAG_RETRACE = 0x8051
TAG_FANCY_NAME = 0x8052
TAG_CHANNEL_PROPERTIES = 0x8053
TAG_NR_OF_SLOTS = 0x8080
TAG_DEFAULT_SLOT = 0x8081
SLOT_BASE = 0x8090
SLOT_STRIDE = 0x30
#: A slot's tags relative to its base.
SLOT_FIELDS = {
    0x00: "name",
    0x01: "type",
    0x02: "parent",
    0x10: "calibration",
    0x11: "encoder",
    0x12: "unit",
    0x13: "scaling",
    0x14: "multiplier",
    0x15: "offset",
}
#: No real file has more than a handful; the tag space above 0x8090 holds at most this many.
MAX_SLOTS = (0xFFFF - SLOT_BASE) // SLOT_STRIDE

#: Names of the scan-wide private tags found in IFD 0 (JPK's own tag list).
IFD0_TAG_NAMES = {
    0x8000: "FileFormatVersion", 0x8001: "ProgramVersion", 0x8002: "SavedByProgram",
    0x8003: "StartDate", 0x8004: "Name", 0x8005: "Comment", 0x8006: "EndDate",
    0x8007: "Sample", 0x8008: "UniqueID", 0x8009: "AccountName",
    0x8010: "Cantilever_Comment", 0x8011: "Cantilever_SpringConst",
    0x8012: "Cantilever_Calibrated", 0x8013: "Cantilever_Shape", 0x8014: "Cantilever_Radius",
    0x8015: "ApproachID", 0x801A: "Approach_PGain", 0x801B: "Tipsaver_Setpoint",
    0x801C: "Tipsaver_Active", 0x801D: "Tipsaver_LowerLimit",
    0x8030: "Feedback_Mode", 0x8031: "Feedback_pGain", 0x8032: "Feedback_iGain",
    0x8033: "Feedback_Setpoint", 0x8034: "Feedback_Var1", 0x8035: "Feedback_Var2",
    0x8036: "Feedback_Var3", 0x8037: "Feedback_Var4", 0x8038: "Feedback_Var5",
    0x8039: "Approach_IGain",
    0x8040: "Grid_x0", 0x8041: "Grid_y0", 0x8042: "Grid_uLength", 0x8043: "Grid_vLength",
    0x8044: "Grid_Theta", 0x8045: "Grid_Reflect", 0x8046: "Grid_iLength",
    0x8047: "Grid_jLength", 0x8048: "Lineend", 0x8049: "Scanrate_Frequency",
    0x804A: "Scanrate_Dutycycle", 0x804B: "Motion", 0x804C: "Scanline_Start",
    0x804D: "Scanline_Size",
}  # fmt: skip

#: Names of a channel directory's own tags (the slots are listed separately).
CHANNEL_TAG_NAMES = {
    TAG_CHANNEL: "channel", TAG_RETRACE: "retrace", TAG_FANCY_NAME: "fancy_name",
    TAG_CHANNEL_PROPERTIES: "properties", 0x8060: "calibration_age",
    0x8061: "calibration_operator", TAG_NR_OF_SLOTS: "nr_of_slots", TAG_DEFAULT_SLOT: "default_slot",
}  # fmt: skip

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_DOUBLE = 12


# --------------------------------------------------------------------------------------
# TIFF structure (shared with park.py): cheap checks by hand, before and beside tifffile
# --------------------------------------------------------------------------------------


def tiff_ifd0_entries(path: Path, head: bytes) -> dict[int, tuple[int, int, int]] | None:
    """``{tag code: (type, count, value or offset)}`` of a classic TIFF's first directory.

    Reads the entry table from ``head`` when it lies there, else from the file. A table cut
    short by the end of the file yields the entries it holds (a truncated file is still
    recognised, so that ``read`` can say it is truncated).
    """
    if len(head) < 8 or head[:4] not in _TIFF_MAGIC:
        return None
    bo = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack(bo + "I", head[4:8])
    if ifd < 8:
        return None
    if ifd + 2 <= len(head):
        (n,) = struct.unpack(bo + "H", head[ifd : ifd + 2])
        table = head[ifd + 2 : ifd + 2 + 12 * n]
    else:
        n, table = 0, b""
    if len(table) < 12 * n or ifd + 2 > len(head):
        with open(path, "rb") as fh:
            fh.seek(ifd)
            raw = fh.read(2)
            if len(raw) < 2:
                return None
            (n,) = struct.unpack(bo + "H", raw)
            table = fh.read(12 * n)
    entries = {}
    for i in range(len(table) // 12):
        code, typ, count, value = struct.unpack_from(bo + "HHII", table, 12 * i)
        entries[code] = (typ, count, value)
    return entries


#: Bytes per value of each TIFF field type.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_SIZE_LUT = np.zeros(256, dtype=np.uint64)
for _code, _size in _TYPE_SIZE.items():
    _SIZE_LUT[_code] = _size


def check_tiff_structure(path: Path, buf: bytes | memoryview) -> list[int]:
    """Walk a classic TIFF's directory chain; return the directory offsets.

    Raises :class:`ReaderError` when a directory, or a tag value stored outside its
    directory, lies beyond the end of the file (a truncated file), or the chain loops.
    tifffile would otherwise drop such tags or directories with only a log message.
    """
    size = len(buf)
    if size < 8 or bytes(buf[:4]) not in _TIFF_MAGIC:
        raise ReaderError(path, "not a TIFF file")
    bo = "<" if bytes(buf[:2]) == b"II" else ">"
    entry = np.dtype([("code", bo + "u2"), ("type", bo + "u2"), ("count", bo + "u4"), ("value", bo + "u4")])
    (offset,) = struct.unpack_from(bo + "I", buf, 4)
    offsets: list[int] = []
    seen: set[int] = set()
    while offset:
        k = len(offsets)
        if offset in seen:
            raise ReaderError(path, "corrupt TIFF file: its directory chain loops back on itself")
        if offset < 8 or offset + 2 > size:
            raise ReaderError(
                path, f"file is truncated: TIFF directory {k} at byte {offset} lies beyond its end ({size} bytes)"
            )
        (n,) = struct.unpack_from(bo + "H", buf, offset)
        if n == 0 or offset + 2 + 12 * n + 4 > size:
            raise ReaderError(
                path, f"file is truncated or corrupt: TIFF directory {k} ({n} tags at byte {offset}) does not fit"
            )
        table = np.frombuffer(buf, dtype=entry, count=n, offset=offset + 2)
        types = table["type"]
        nbytes = np.where(types < 256, _SIZE_LUT[np.minimum(types, 255)], 0) * table["count"].astype(np.uint64)
        outside = nbytes > 4
        ends = table["value"].astype(np.uint64) + nbytes
        bad = outside & (ends > size)
        if bad.any():
            code = int(table["code"][bad][0])
            raise ReaderError(
                path,
                f"file is truncated: tag 0x{code:04X} of TIFF directory {k} lies beyond the end of the file ({size} bytes)",
            )
        seen.add(offset)
        offsets.append(offset)
        if len(offsets) > size // 14:  # cannot hold more directories than this
            raise ReaderError(path, "corrupt TIFF file: too many directories")
        (offset,) = struct.unpack_from(bo + "I", buf, offset + 2 + 12 * n)
    return offsets


_quiet = threading.local()


class _QuietFilter(logging.Filter):
    """Drops tifffile's log records raised while this thread parses a file for us."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


@contextmanager
def quiet_tifffile():
    """Silence tifffile's complaints about a corrupt file: our ReaderError says it instead."""
    logger = logging.getLogger("tifffile")
    if not any(isinstance(f, _QuietFilter) for f in logger.filters):
        logger.addFilter(_QuietFilter())
    previous = getattr(_quiet, "on", False)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = previous


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    """A TIFF whose first directory carries JPK's grid lengths and a channel/name tag."""
    try:
        entries = tiff_ifd0_entries(Path(path), head)
        if not entries:
            return False
        return (
            entries.get(TAG_GRID_ULENGTH, (0, 0))[0] == _DOUBLE
            and entries.get(TAG_GRID_VLENGTH, (0, 0))[0] == _DOUBLE
            and (TAG_CHANNEL in entries or TAG_FANCY_NAME in entries)
        )
    except Exception:
        return False


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


def _unescape(value: str) -> str:
    """Java-properties escapes (``\\:``, ``\\u00B5``) -> plain text."""
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else m.group(1), value)


def _properties(text: str) -> dict[str, str]:
    """JPK's ``key : value`` property blocks -> a dict (values stay strings)."""
    props = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            props[key.strip()] = _unescape(value.strip())
    return props


def _tag_values(page) -> dict[int, object]:
    """``{code: value}`` of one TIFF directory, read once; text decoded, 1-element tuples unpacked."""
    values = {}
    for tag in page.tags.values():
        value = tag.value
        if isinstance(value, bytes):
            value = decode(value)
        elif isinstance(value, tuple) and len(value) == 1:
            value = value[0]
        if isinstance(value, np.generic):
            value = value.item()
        values[tag.code] = value
    return values


def _text(values: dict, code: int) -> str | None:
    value = values.get(code)
    return None if value is None else str(value)


def _number(values: dict, code: int) -> float | None:
    value = values.get(code)
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def _private_tags(values: dict, names: dict[int, str], stop: int = 0x10000) -> dict:
    """The private tags ``0x8000 <= code < stop`` of a directory, property blocks parsed."""
    out = {}
    for code, value in values.items():
        if not 0x8000 <= code < stop:
            continue
        if isinstance(value, str) and "\n" in value and " : " in value:
            value = _properties(value)
        out[names.get(code, f"0x{code:04X}")] = value
    return out


def _slots(values: dict) -> list[dict]:
    """The calibration slots of a channel directory."""
    nslots = _number(values, TAG_NR_OF_SLOTS)
    if nslots is None or not nslots > 0:
        return []
    slots = []
    for n in range(min(int(nslots), MAX_SLOTS)):
        base = SLOT_BASE + n * SLOT_STRIDE
        slot = {}
        for rel, field in SLOT_FIELDS.items():
            value = values.get(base + rel)
            if value is not None:
                slot[field] = value
        slots.append(slot)
    return slots


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scaling(path: Path, title: str, slots: list[dict], default: str | None) -> tuple[float, float, str, str]:
    """(multiplier, offset, unit, slot name) of the default slot.

    A ``NullScaling`` slot (the raw integers) scales by 1. A default slot that is missing
    from the list falls back to the raw integers without unit.
    """
    for slot in slots:
        if slot.get("name") == default:
            kind = slot.get("scaling", "")
            if kind == "LinearScaling":
                mult, offset = slot.get("multiplier"), slot.get("offset", 0.0)
                if not (_finite(mult) and _finite(offset)):
                    raise ReaderError(path, f"channel {title!r}: calibration slot {default!r} has no valid multiplier")
                return float(mult), float(offset), str(slot.get("unit", "")), default
            if kind == "NullScaling":
                return 1.0, 0.0, str(slot.get("unit", "")), default
            raise ReaderError(path, f"channel {title!r}: unsupported calibration {kind!r} in slot {default!r}")
    return 1.0, 0.0, "", "raw"


def _raw_image(path: Path, buf: bytes, page, byteorder: str, title: str) -> np.ndarray:
    """The channel's stored integers/floats as a (rows, columns) array, file row order."""
    height, width = check_shape(path, (page.imagelength, page.imagewidth), f"channel {title!r}")
    dtype = np.dtype(page.dtype).newbyteorder(byteorder)
    stored = sum(int(n) for n in page.databytecounts)
    if page.compression == 1 and stored < height * width * dtype.itemsize:
        raise ReaderError(
            path,
            f"channel {title!r} declares {width} x {height} pixels "
            f"({height * width * dtype.itemsize} bytes) but stores only {stored} bytes",
        )
    if page.is_contiguous and page.fillorder == 1 and page.predictor == 1 and page.planarconfig == 1:
        offsets = page.dataoffsets
        if not offsets:
            raise ReaderError(path, f"channel {title!r} has no image data")
        return array_from(path, buf, int(offsets[0]), dtype, (height, width), f"channel {title!r}")
    end = max((int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
    if end > len(buf):
        raise ReaderError(path, f"file is truncated: channel {title!r} ends at byte {end}, the file holds {len(buf)}")
    try:
        data = page.asarray()
    except Exception as exc:
        raise ReaderError(path, f"cannot decode channel {title!r} ({type(exc).__name__}: {exc})") from None
    return np.asarray(data).reshape(height, width)


def read(path: Path) -> Scan:
    with quiet_tifffile():
        return _read(path)


def _read(path: Path) -> Scan:
    import tifffile

    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or buf[:4] not in _TIFF_MAGIC:
        raise ReaderError(path, "not a JPK image scan (no TIFF header)")
    check_tiff_structure(path, buf)
    try:
        tif = tifffile.TiffFile(io.BytesIO(buf), name=path.name)
    except Exception as exc:
        raise ReaderError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from None

    with tif:
        try:
            pages = [tif.pages[i] for i in range(len(tif.pages))]
        except Exception as exc:
            raise ReaderError(path, f"corrupt TIFF directory ({type(exc).__name__}: {exc})") from None
        if not pages:
            raise ReaderError(path, "TIFF file holds no directory")
        tags0 = _tag_values(pages[0])

        ulen = _number(tags0, TAG_GRID_ULENGTH)
        vlen = _number(tags0, TAG_GRID_VLENGTH)
        if ulen is None or vlen is None:
            raise ReaderError(path, "not a JPK image scan: grid dimensions (scan size) are missing")
        ulen, vlen = abs(ulen), abs(vlen)
        if not (ulen > 0 and vlen > 0 and np.isfinite(ulen) and np.isfinite(vlen)):
            raise ReaderError(path, f"invalid scan size {ulen!r} x {vlen!r} m")
        x0 = _number(tags0, TAG_GRID_X0) or 0.0
        y0 = _number(tags0, TAG_GRID_Y0) or 0.0
        reflect = bool(_number(tags0, TAG_GRID_REFLECT) or 0)

        header = {
            "tiff_byteorder": "little" if tif.byteorder == "<" else "big",
            "directories": len(pages),
            **_private_tags(tags0, IFD0_TAG_NAMES),
        }

        found = []
        for index, page in enumerate(pages[1:], start=1):
            if (
                int(page.photometric) != 1  # min-is-black grey scale
                or page.bitspersample not in (16, 32)
                or page.samplesperpixel != 1
            ):
                continue
            tags = _tag_values(page)
            name = _text(tags, TAG_FANCY_NAME) or _text(tags, TAG_CHANNEL)
            if not name:
                continue
            name = clean_name(name)
            retrace = bool(_number(tags, TAG_RETRACE) or 0)
            direction = "retrace" if retrace else "trace"
            title = f"{name} ({direction})"

            slots = _slots(tags)
            mult, offset, unit, used_slot = _scaling(path, title, slots, _text(tags, TAG_DEFAULT_SLOT))
            factor, z_unit = value_scale(unit)
            raw = _raw_image(path, buf, page, tif.byteorder, title)
            if not reflect:  # stored bottom-up
                raw = raw[::-1]
            chan_header = _private_tags(tags, CHANNEL_TAG_NAMES, stop=SLOT_BASE)
            chan_header.update({"tiff_directory": index, "slots": slots, "slot_used": used_slot})
            found.append((raw, mult * factor, offset * factor, name, direction, z_unit, chan_header))

    if not found:
        raise ReaderError(path, "JPK file holds no image channel (only a thumbnail, or the file is truncated)")
    # One float64 block for all channels of one shape: a single allocation, not one per channel.
    shapes = {item[0].shape for item in found}
    block = np.empty((len(found), *found[0][0].shape)) if len(shapes) == 1 else None
    channels = []
    for i, (raw, scale, shift, name, direction, z_unit, chan_header) in enumerate(found):
        data = np.multiply(raw, scale, out=block[i] if block is not None else None, dtype=np.float64)
        if shift:
            data += shift
        height, width = data.shape
        channels.append(
            Channel(
                data=data,
                name=name,
                direction=direction,
                z_unit=z_unit,
                pixel_size=(vlen * 1e9 / height, ulen * 1e9 / width),
                xy_unit="nm",
                offset=(y0 * 1e9, x0 * 1e9),
                header=jsonable(chan_header),
            )
        )

    return Scan(path=str(path), format=FORMAT, channels=channels, header=jsonable(header))
