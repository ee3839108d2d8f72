"""Gwyddion Simple Field files (``.gsf``): one image, a text header and float32 pixels.

Layout::

    Gwyddion Simple Field 1.0\\n
    Key = Value\\n ...            (XRes, YRes required; XReal, YReal, XOffset, YOffset,
                                  XYUnits, ZUnits, Title optional; other keys are metadata)
    \\0 x 1..4                    NUL padding so the data start at a multiple of 4 bytes
    float32 little-endian        XRes * YRes values, row 0 = top

Units are base SI units (Gwyddion ignores a prefix written there), as in .gwy files.
"""

from __future__ import annotations

from pathlib import Path

from .gwy import make_channel
from .scan import ReaderError, Scan, array_from, check_shape, decode, jsonable

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
