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

The TIFF structure is read by :mod:`.tiff` (the pixels are views on the file bytes).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TypeGuard

import numpy as np

from .scan import Channel, ReaderError, Scan, clean_name, jsonable, role_for
from .tiff import Ifd, first_ifd_entries, is_tiff, read_tiff
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

_DOUBLE = 12  # the TIFF field type of the grid lengths


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    """A TIFF whose first directory carries JPK's grid lengths and a channel/name tag."""
    try:
        entries = first_ifd_entries(path, head)
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


def _finite(value) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scaling(
    path: Path, title: str, slots: list[dict], default: str | None
) -> tuple[float, float, str, str | None]:
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
                    raise ReaderError(
                        path, f"channel {title!r}: calibration slot {default!r} has no valid multiplier"
                    )
                return float(mult), float(offset), str(slot.get("unit", "")), default
            if kind == "NullScaling":
                return 1.0, 0.0, str(slot.get("unit", "")), default
            raise ReaderError(
                path, f"channel {title!r}: unsupported calibration {kind!r} in slot {default!r}"
            )
    return 1.0, 0.0, "", "raw"


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not is_tiff(buf[:16]):
        raise ReaderError(path, "not a JPK image scan (no TIFF header)")
    tiff = read_tiff(path, buf)
    ifds = tiff.ifds
    tags0 = ifds[0].values(0x8000)

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
        "tiff_byteorder": "little" if tiff.byteorder == "<" else "big",
        "directories": len(ifds),
        **_private_tags(tags0, IFD0_TAG_NAMES),
    }

    found = []
    for ifd in ifds[1:]:
        if not _is_channel(ifd):
            continue
        tags = ifd.values(0x8000)
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
        raw = ifd.image(f"channel {title!r}")  # (rows, columns): samples_per_pixel is 1
        if not reflect:  # stored bottom-up
            raw = raw[::-1]
        chan_header = _private_tags(tags, CHANNEL_TAG_NAMES, stop=SLOT_BASE)
        chan_header.update({"tiff_directory": ifd.index, "slots": slots, "slot_used": used_slot})
        found.append((raw, mult * factor, offset * factor, name, direction, z_unit, chan_header))

    if not found:
        raise ReaderError(
            path, "JPK file holds no image channel (only a thumbnail, or the file is truncated)"
        )
    # One float64 block for all channels of one shape: a single allocation, not one per channel.
    shapes = {item[0].shape for item in found}
    block = np.empty((len(found), *found[0][0].shape)) if len(shapes) == 1 else None
    channels = []
    for i, (raw, scale, shift, name, direction, z_unit, chan_header) in enumerate(found):
        data = block[i] if block is not None else np.empty(raw.shape)
        np.copyto(data, raw)  # int -> float64, then scaled in place: faster than one mixed-type multiply
        data *= scale
        if shift:
            data += shift
        height, width = data.shape
        channels.append(
            Channel(
                data=data,
                name=name,
                role=role_for(
                    chan_header.get("channel") or name, z_unit
                ),  # "measuredHeight", "vDeflection" ...
                direction=direction,
                z_unit=z_unit,
                pixel_size=(vlen * 1e9 / height, ulen * 1e9 / width),
                xy_unit="nm",
                offset=(y0 * 1e9, x0 * 1e9),
                header=jsonable(chan_header),
            )
        )

    return Scan(path=str(path), format=FORMAT, channels=channels, header=jsonable(header))


def _is_channel(ifd: Ifd) -> bool:
    """A 16- or 32-bit min-is-black grey-scale page (the thumbnail and anything else are not)."""
    return ifd.photometric == 1 and ifd.bits_per_sample in (16, 32) and ifd.samples_per_pixel == 1
