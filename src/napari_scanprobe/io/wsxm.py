"""WSxM image files (``.top``, ``.stp``, ``.tom``, ``.ch1`` ... ``.f.top``): a text header, one image.

Layout (learned from Gwyddion's ``wsxmfile.c``, the reference)::

    WSxM file copyright <Nanotec Electronica | WSxM solutions | UAM>\\r\\n
    SxM Image file\\r\\n                      (curve files say "IV curve file" etc. here)
    Image header size: N\\r\\n
    [Control]                                 sections of "    Key: Value" lines (Latin-1)
        X Amplitude: 15 µm
    [General Info]
        Acquisition channel: Topography
        Image Data Type: short                (short/integer = int16 [default], double, float)
        Number of columns: 256
        Number of rows: 256
        Z Amplitude: 338.867 nm
    ...
    [Header end]\\r\\n
    pixels, little-endian, right after the end marker

Every WSxM image extension (``.top``, ``.stp``, ``.ch1``, ``.ch2``, ``.ch12`` ...) has this same
layout; Gwyddion 2.62 reads ``.stp`` exactly like ``.top`` (nothing in its reader depends on the
extension), so does this module -- only the ``Image Data Type`` key decides how pixels are stored.

Rules (Gwyddion 2.62's, so that both agree):

* Data start right after the ``[Header end]`` line, not at "Image header size" (Gwyddion: some
  programs miscalculate that size).
* Values: the raw numbers are stretched so their range equals ``Z Amplitude``:
  ``value = raw * Z_Amplitude / (max(raw) - min(raw))`` in the unit written after the amplitude.
  ``a.u.`` is unitless; ``Pi`` is unitless with the amplitude multiplied by pi. Without a valid
  Z Amplitude (or for a flat image) the raw numbers are kept, unitless (Gwyddion multiplies them by
  1e-9 and sets no unit; there is no calibration to apply).
* Orientation: the file stores the image rotated by 180 degrees (last row first, each row
  right to left); both axes are flipped so row 0 is the top row Gwyddion shows.
* Lateral size: ``X Amplitude`` / ``Y Amplitude`` (Y defaults to X) over the number of columns
  / rows, in the X Amplitude's own unit. A file WITHOUT a lateral unit follows Gwyddion 2.62,
  which then takes the unit written after the *Z Amplitude* (nm for topography); with no length
  unit anywhere the bare numbers are kept (``xy_unit == ""``).
  Deliberate difference from Gwyddion 2.62: it also takes the Z Amplitude's unit when the X
  Amplitude HAS a unit it does not parse -- the Latin-1 ``µ`` of ``X Amplitude: 15 µm`` -- and so
  reports a 15 µm scan as 15 nm (the jumping-mode sample). We read the unit the file states; the
  ground-truth test records that one file as a known 1000x deviation from Gwyddion.
  The literal amplitudes stay in the header (``lateral_rule`` says which rule applied).
* Offsets: Gwyddion ignores ``X Offset`` / ``Y Offset`` (the scanner's offset), so offset is
  (0, 0); the header keeps them.
* Name: ``Acquisition channel`` (``"Topography"``); else Gwyddion's unit-based fallback
  (m -> Topography, A -> Current, V -> Voltage, deg -> Phase, N -> Force). Direction:
  ``X scanning direction: Forward/Backward`` -> forward/backward; without that key a
  ``.f.`` / ``.b.`` token in the file name (``image_0002_Topography.f.dy.top``) decides.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable, role_for
from .units import parse_unit, value_scale

FORMAT = "wsxm"
EXTENSIONS = (".top", ".stp", ".tom", ".ch1", ".ch2", ".ch3", ".ch12", ".ch15", ".ch16")

MAGIC = b"WSxM file copyright "
IMAGE_KIND = "SxM Image file"
HEADER_END = b"[Header end]"

#: "Image Data Type" -> numpy dtype. Gwyddion knows short/integer (int16), float and double;
#: the others are spellings other WSxM writers use.
DTYPES = {
    "short": "<i2", "integer": "<i2", "short-data": "<i2", "": "<i2",
    "unsignedshort": "<u2", "unsigned short": "<u2",
    "integer-data": "<i4", "signedinteger": "<i4", "int": "<i4",
    "float": "<f4", "float-data": "<f4",
    "double": "<f8", "double-data": "<f8",
}  # fmt: skip

#: Gwyddion's title for an untitled channel, by its SI value unit.
FALLBACK_TITLES = {"m": "Topography", "A": "Current", "deg": "Phase", "V": "Voltage", "N": "Force"}

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")
_NAME_DIRECTION = re.compile(r"\.([fb])\.", re.IGNORECASE)


def _lines_after_magic(head: bytes) -> list[bytes]:
    return head[len(MAGIC) :].split(b"\n", 3)


def sniff(path: Path, head: bytes) -> bool:
    """Any WSxM file (images and curves: curves are then declined by :func:`read`)."""
    return head.startswith(MAGIC)


def parse_header(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Header text -> (preamble lines, ``{section: {key: value}}``), as Gwyddion splits it."""
    preamble: list[str] = []
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        if current is None:
            preamble.append(line)
            continue
        key, sep, value = line.partition(":")
        if sep and value.strip():
            current[key.strip()] = value.strip()
    return preamble, sections


def _number_and_unit(text: str | None) -> tuple[float, str] | None:
    """``"15 µm"`` -> ``(15.0, "µm")``; None when there is no positive number."""
    if not text:
        return None
    match = _NUMBER.match(text)
    if not match:
        return None
    value = float(match.group(1))
    if not math.isfinite(value) or value <= 0:
        return None
    return value, match.group(2)


def _is_length(unit: str) -> bool:
    return bool(unit) and parse_unit(unit)[1] == "m"


def _lateral(x_amp: tuple[float, str] | None, y_amp: tuple[float, str] | None, z_unit_text: str | None):
    """(x size, y size, xy_unit, rule) of the image, see the module notes."""
    if x_amp is None:
        return None
    xnum, xunit = x_amp
    ynum = y_amp[0] if y_amp else xnum
    if _is_length(xunit):
        factor, _ = value_scale(xunit)
        return xnum * factor, ynum * factor, "nm", "X Amplitude unit"
    if xunit:
        factor, unit = value_scale(xunit)
        return xnum * factor, ynum * factor, unit, "X Amplitude unit (not a length)"
    if z_unit_text is not None and _is_length(z_unit_text):
        factor, _ = value_scale(z_unit_text)
        return (
            xnum * factor,
            ynum * factor,
            "nm",
            f"no lateral unit: Gwyddion's rule, the Z Amplitude's unit ({z_unit_text})",
        )
    return xnum, ynum, "", "no lateral unit"


def _direction(path: Path, general: dict[str, str]) -> str | None:
    value = general.get("X scanning direction", "").strip().lower()
    if value.startswith("forw"):
        return "forward"
    if value.startswith("back"):
        return "backward"
    match = _NAME_DIRECTION.search(path.name)
    if match:
        return "forward" if match.group(1).lower() == "f" else "backward"
    return None


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not buf.startswith(MAGIC):
        raise ReaderError(path, "not a WSxM file (no 'WSxM file copyright' line)")
    lines = _lines_after_magic(buf[:4096])
    if len(lines) < 3:
        raise ReaderError(path, "file is truncated: it ends inside the WSxM preamble")
    kind = decode(lines[1]).strip()
    if kind != IMAGE_KIND:
        if kind.endswith("curve file"):
            raise ReaderError(path, f"WSxM {kind} (spectroscopy / curves), not an image")
        raise ReaderError(path, f"WSxM file of kind {kind!r}, not an image ('{IMAGE_KIND}')")

    end = buf.find(HEADER_END)
    if end < 0:
        raise ReaderError(path, "file is truncated: the WSxM header has no '[Header end]' marker")
    data_start = end + len(HEADER_END)
    if buf[data_start : data_start + 2] == b"\r\n":
        data_start += 2
    elif buf[data_start : data_start + 1] == b"\n":
        data_start += 1
    preamble, sections = parse_header(decode(buf[:end]))
    general = sections.get("General Info", {})
    control = sections.get("Control", {})

    def count(key: str) -> int:
        value = general.get(key)
        try:
            number = int(value.split()[0]) if value else 0
        except ValueError:
            number = 0
        if number <= 0:
            raise ReaderError(path, f"WSxM header has an invalid or missing '{key}' ({value!r})")
        return number

    xres, yres = count("Number of columns"), count("Number of rows")
    check_shape(path, (yres, xres))
    type_name = general.get("Image Data Type", "short").strip().lower()
    dtype = DTYPES.get(type_name)
    if dtype is None:
        raise ReaderError(path, f"WSxM image data type {general.get('Image Data Type')!r} is not supported")
    raw = array_from(path, buf, data_start, dtype, (yres, xres))

    # values: stretch the raw range to Z Amplitude (Gwyddion's rule)
    z_amp_text = general.get("Z Amplitude")
    z_amp = _number_and_unit(z_amp_text)
    if raw.dtype.kind == "f":
        finite = raw[np.isfinite(raw)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    else:
        lo, hi = float(raw.min()), float(raw.max())
    z_unit_text: str | None = None
    if z_amp is not None and hi > lo and math.isfinite(hi - lo):
        amplitude, z_unit_text = z_amp
        if z_unit_text == "a.u.":
            factor, z_unit = 1.0, ""
        elif z_unit_text == "Pi":
            factor, z_unit = math.pi, ""
        else:
            factor, z_unit = value_scale(z_unit_text)
        scale = amplitude * factor / (hi - lo)
        z_rule = "raw * Z Amplitude / (max - min)"
    else:
        scale, z_unit = 1.0, ""
        z_rule = "no valid Z Amplitude: raw numbers"
        if z_amp is not None:
            z_unit_text = z_amp[1]
    data = np.multiply(raw[::-1, ::-1], scale, dtype=np.float64)  # stored rotated by 180 degrees

    lateral = _lateral(
        _number_and_unit(control.get("X Amplitude")),
        _number_and_unit(control.get("Y Amplitude")),
        z_unit_text,
    )
    if lateral is None:
        xsize, ysize, xy_unit, rule = float(xres), float(yres), "", "no X Amplitude: 1 per pixel"
    else:
        xsize, ysize, xy_unit, rule = lateral

    acquisition = clean_name(general.get("Acquisition channel", ""))
    si = "m" if z_unit == "nm" else z_unit
    name = acquisition or FALLBACK_TITLES.get(si) or "Unknown channel"

    channel_header = {
        "X Amplitude": control.get("X Amplitude"),
        "Y Amplitude": control.get("Y Amplitude"),
        "Z Amplitude": z_amp_text,
        "X Offset": control.get("X Offset"),
        "Y Offset": control.get("Y Offset"),
        "Acquisition channel": general.get("Acquisition channel"),
        "Image Data Type": general.get("Image Data Type", "short (default)"),
        "lateral_rule": rule,
        "value_rule": z_rule,
        "raw_min": lo,
        "raw_max": hi,
        "data_offset": data_start,
    }
    channel = Channel(
        data=data,
        name=name,
        role=role_for(name, z_unit),
        direction=_direction(path, general),
        z_unit=z_unit,
        pixel_size=(ysize / yres, xsize / xres),
        xy_unit=xy_unit,
        offset=(0.0, 0.0),
        header=jsonable(channel_header),
    )
    header = {"preamble": preamble, **sections}
    return Scan(path=str(path), format=FORMAT, channels=[channel], header=jsonable(header))
