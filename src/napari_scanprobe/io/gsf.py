"""Gwyddion Simple Field files (``.gsf``): one image, a text header and float32 pixels.

Layout::

    Gwyddion Simple Field 1.0\\n
    Key = Value\\n ...            (XRes, YRes required; XReal, YReal, XOffset, YOffset,
                                  XYUnits, ZUnits, Title optional; other keys are metadata)
    \\0 x 1..4                    NUL padding so the data start at a multiple of 4 bytes
    float32 little-endian        XRes * YRes values, row 0 = top

Units are base SI units (Gwyddion ignores a prefix written there), as in .gwy files.

:func:`write` writes one 2-D channel: lengths in metres (``XYUnits = m``; nm heights are stored
as metres, ``ZUnits = m``), the title ``"<name> (<direction>)"`` and the channel's ``header``
as further ``Key = Value`` lines (text as it is, other values as one line of JSON; a key that
clashes with a standard key gets the prefix ``"Meta "``). Values are float32, the format's
only type: a value scaled from nm to m reads back within one float32 step of what was
written, an unscaled one (``V``, ``A``, no unit ...) reads back exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .gwy import gwyddion_unit, make_channel
from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable
from .write import check_channel, write_errors

FORMAT = "gsf"
EXTENSIONS = (".gsf",)

MAGIC = b"Gwyddion Simple Field 1.0\n"

#: Header keys with a defined meaning; any other key is channel metadata.
STANDARD_KEYS = ("XRes", "YRes", "XReal", "YReal", "XOffset", "YOffset", "XYUnits", "ZUnits", "Title")


def sniff(path: Path, head: bytes) -> bool:
    return head.startswith(MAGIC)


def parse_header(text: str) -> dict[str, str]:
    """``Key = Value`` lines -> dict (whitespace around key and value stripped; other lines ignored)."""
    header = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            header[key.strip()] = value.strip()
    return header


def _resolution(path: Path, header: dict[str, str], key: str) -> int:
    if key not in header:
        raise ReaderError(path, f"GSF header lacks {key}")
    try:
        return int(header[key])
    except ValueError:
        raise ReaderError(path, f"GSF header has an invalid {key} = {header[key]!r}") from None


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not buf.startswith(MAGIC):
        raise ReaderError(path, "not a Gwyddion Simple Field file (no 'Gwyddion Simple Field 1.0' line)")
    nul = buf.find(b"\0", len(MAGIC))
    if nul < 0:
        raise ReaderError(path, "file is truncated: the GSF header never ends (no NUL padding, no data)")
    header = parse_header(decode(buf[len(MAGIC) : nul]))
    xres, yres = _resolution(path, header, "XRes"), _resolution(path, header, "YRes")
    check_shape(path, (yres, xres))
    data_start = nul + 4 - nul % 4  # 1..4 NULs pad the header to a multiple of 4 bytes
    raw = array_from(path, buf, data_start, "<f4", (yres, xres))

    channel = make_channel(
        raw,
        header.get("Title", ""),
        0,
        header.get("XYUnits", ""),
        header.get("ZUnits", ""),
        (header.get("XReal"), header.get("YReal")),
        (header.get("XOffset"), header.get("YOffset")),
        {k: v for k, v in header.items() if k not in STANDARD_KEYS},
    )
    return Scan(path=str(path), format=FORMAT, channels=[channel], header=jsonable(header))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _header_key(key: object) -> str:
    """A metadata key usable in a ``Key = Value`` line that cannot pass for a standard key."""
    text = clean_name(str(key).replace("=", " "))
    return text if text and text not in STANDARD_KEYS else f"Meta {text}".strip()


def _header_value(value: object) -> str:
    """One line of text: a plain one-line string as it is, anything else as ASCII JSON."""
    if isinstance(value, str) and "\0" not in value and len(value.splitlines()) <= 1:
        return value.strip()
    return json.dumps(jsonable(value), ensure_ascii=True, separators=(",", ":"))


def _number(value: float) -> str:
    return repr(float(value))


def to_bytes(channel: Channel) -> bytes:
    """The GSF file for one 2-D channel (see the module notes for units and metadata)."""
    data = np.asarray(channel.data)
    yres, xres = data.shape
    xy_factor, xy_unit = gwyddion_unit(channel.xy_unit)
    z_factor, z_unit = gwyddion_unit(channel.z_unit)
    dy, dx = channel.pixel_size
    y0, x0 = channel.offset
    fields = {
        "XRes": str(xres),
        "YRes": str(yres),
        "XReal": _number(dx * xres * xy_factor),
        "YReal": _number(dy * yres * xy_factor),
        "XOffset": _number(x0 * xy_factor),
        "YOffset": _number(y0 * xy_factor),
        "XYUnits": xy_unit,
        "ZUnits": z_unit,
        "Title": clean_name(channel.title),
    }
    lines = [f"{key} = {value}" for key, value in fields.items() if value != ""]
    lines += [f"{_header_key(k)} = {_header_value(v)}" for k, v in (channel.header or {}).items()]
    header = MAGIC + "".join(f"{line}\n" for line in lines).encode("utf-8")
    padding = b"\0" * (4 - len(header) % 4)  # 1..4 NULs: the data start at a multiple of 4
    if z_factor == 1.0:
        values = data.astype("<f4", copy=False)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.multiply(data, z_factor, dtype=np.float64).astype("<f4")
    return header + padding + np.ascontiguousarray(values).tobytes()


def write(path: str | Path, channel: Channel) -> Path:
    """Write one 2-D ``channel`` to ``path`` as a Gwyddion Simple Field file, atomically.

    Raises ``ValueError`` for data a GSF file cannot hold (a movie, several channels' worth,
    non-real values) and ``OSError`` naming the file when it cannot be written.
    """
    path = Path(path)
    check_channel(path, channel)
    content = to_bytes(channel)
    with write_errors(path):
        atomic_write(path, content)
    return path
