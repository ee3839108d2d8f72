"""Nanonis ``.sxm`` scan files.

Layout: a text header of ``:TAG:`` lines, each followed by its value line(s), from
``:NANONIS_VERSION:`` to ``:SCANIT_END:``; then the two bytes ``\\x1a\\x04``; then the images as
32-bit floats, big-endian, already in the physical unit of the ``DATA_INFO`` table. The
channels are stored in ``DATA_INFO`` order, a ``both`` channel as its forward image followed
by its backward image.

Conventions follow Gwyddion's ``nanonis`` module (the reference for ground_truth.json):

* ``SCAN_PIXELS`` is ``xres yres`` (swapped in version-1 files),
* ``SCAN_RANGE`` is the frame size, pixel size = range / pixels, ``SCAN_OFFSET`` is the
  frame centre, so the top-left offset is ``centre - range / 2``,
* backward images are stored mirrored in x; ``SCAN_DIR`` ``up`` means the first stored
  line is the bottom one, so the image is flipped vertically for display,
* ``SCAN_ANGLE`` is recorded in the header but not applied (as Gwyddion),
* pixels never scanned (an interrupted scan) are NaN in the file and stay NaN here,
* ``SCANIT_TYPE`` says ``FLOAT`` with ``MSBFIRST`` or ``LSBFIRST``, but files are
  big-endian either way,
* slice files written from 3-D data claim ``both`` directions yet hold one image per
  channel; they are recognised by a ``N/A`` acquisition time or ``NaN`` scan time.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable, role_for
from .units import length_to_nm, value_scale

FORMAT = "sxm"
EXTENSIONS = (".sxm",)

MAGIC = b":NANONIS_VERSION:"
HEADER_END = b":SCANIT_END:"
DATA_MARK = b"\x1a\x04"

_DATA_INFO_COLUMNS = ("Channel", "Name", "Unit", "Direction", "Calibration", "Offset")


def sniff(path: Path, head: bytes) -> bool:
    try:
        return head.startswith(MAGIC)
    except Exception:
        return False


# --------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------


def _split_tags(text: str) -> list[tuple[str, list[str]]]:
    """``[(tag, [value lines])]`` in file order (stripped lines; a tag line is ``:TAG:``)."""
    tags: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) >= 3 and line[0] == ":" and line[-1] == ":":
            current = []
            tags.append((line[1:-1], current))
        elif current is not None:
            current.append(line)
        elif line:
            raise ValueError("garbage before the first header tag")
    return tags


def _table(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """A tab-separated table (``Z-CONTROLLER``, ``DATA_INFO``): column names and rows."""
    lines = [ln for ln in lines if ln]
    if not lines:
        return [], []
    columns = lines[0].split()  # the heading row uses tabs or spaces
    rows = []
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.split("\t") if c.strip()]
        if len(cells) < len(columns):
            cells = ln.split()
        rows.append(cells)
    return columns, rows


def _floats(text: str | None, n: int) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(",", " ").split()[:n]]
    except ValueError:
        return None
    return values if len(values) == n else None


def parse_header(path: Path, text: str) -> tuple[dict, list[dict]]:
    """The header as a dict (tables parsed) and the ``DATA_INFO`` rows."""
    try:
        tags = _split_tags(text)
    except ValueError as exc:
        raise ReaderError(path, f"corrupt Nanonis .sxm header ({exc})") from None
    header: dict = {}
    data_info: list[dict] = []
    for tag, lines in tags:
        if tag == "SCANIT_END":
            break
        if tag == "DATA_INFO":
            columns, rows = _table(lines)
            if tuple(columns[:6]) != _DATA_INFO_COLUMNS:
                raise ReaderError(
                    path,
                    f"Nanonis DATA_INFO table lacks the expected columns ({' '.join(_DATA_INFO_COLUMNS)})",
                )
            data_info = []
            for cells in rows:
                if len(cells) < 6:
                    raise ReaderError(
                        path, f"Nanonis DATA_INFO line has fewer than 6 fields: {' '.join(cells)!r}"
                    )
                data_info.append(dict(zip(columns, cells)))
            header[tag] = data_info
        elif tag == "Z-CONTROLLER":
            columns, rows = _table(lines)
            if rows and len(rows[0]) == len(columns):
                header[tag] = dict(zip(columns, rows[0]))
            else:
                header[tag] = "\n".join(ln for ln in lines if ln)
        else:
            value_lines = [ln for ln in lines if ln]
            header[tag] = "\n".join(value_lines)
    return header, data_info


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not buf.startswith(MAGIC):
        raise ReaderError(path, "not a Nanonis .sxm file (no :NANONIS_VERSION: header)")
    end = buf.find(HEADER_END)
    if end < 0:
        raise ReaderError(path, "Nanonis .sxm header is incomplete (no :SCANIT_END:): the file is truncated")
    mark = buf.find(DATA_MARK, end)
    if mark < 0:
        raise ReaderError(
            path, "Nanonis .sxm file has no data after its header (no \\x1a\\x04 marker): truncated"
        )
    data_start = mark + len(DATA_MARK)

    header, data_info = parse_header(path, decode(buf[:mark]))
    if not data_info:
        raise ReaderError(path, "Nanonis .sxm header lists no channels (empty DATA_INFO)")

    # Version (1 swaps the pixel counts).
    try:
        version = int(header.get("NANONIS_VERSION", "0").split()[0])
    except (ValueError, IndexError):
        version = 0

    # Sample type.
    stype = header.get("SCANIT_TYPE", "").split()
    if len(stype) != 2 or stype[0] != "FLOAT" or stype[1] not in ("MSBFIRST", "LSBFIRST"):
        raise ReaderError(path, f"unsupported Nanonis SCANIT_TYPE {' '.join(stype)!r} (only FLOAT is known)")
    dtype = np.dtype(">f4")  # big-endian whatever the header says (as Gwyddion finds)

    # Pixels.
    pixels = header.get("SCAN_PIXELS", "").split()
    try:
        xres, yres = int(pixels[0]), int(pixels[1])
    except (ValueError, IndexError):
        raise ReaderError(path, f"invalid Nanonis SCAN_PIXELS {header.get('SCAN_PIXELS')!r}") from None
    if version < 2:
        xres, yres = yres, xres
    check_shape(path, (yres, xres))

    # Physical frame.
    frame = _floats(header.get("SCAN_RANGE"), 2)
    if frame is None:
        raise ReaderError(path, f"invalid or missing Nanonis SCAN_RANGE {header.get('SCAN_RANGE')!r}")
    xreal, yreal = (abs(v) for v in frame)
    scaled = xreal > 0 and yreal > 0 and math.isfinite(xreal) and math.isfinite(yreal)
    centre = _floats(header.get("SCAN_OFFSET"), 2) or [0.0, 0.0]
    if not all(math.isfinite(v) for v in centre):
        centre = [0.0, 0.0]
    if scaled:
        xy_unit = "nm"
        dx, dy = length_to_nm(xreal, "m") / xres, length_to_nm(yreal, "m") / yres
        x0 = length_to_nm(centre[0] - xreal / 2, "m")
        y0 = length_to_nm(centre[1] - yreal / 2, "m")
    else:  # a zero or NaN frame size: keep pixel units rather than invent a size
        xy_unit, dx, dy, x0, y0 = "", 1.0, 1.0, 0.0, 0.0

    # Slice files of 3-D data say "both" but hold one image per channel.
    bogus_time = header.get("ACQ_TIME", "").strip() == "N/A" or header.get(
        "SCAN_TIME", ""
    ).strip().startswith("NaN")

    images: list[tuple[dict, str]] = []
    for info in data_info:
        d = info["Direction"].lower()
        if d == "both":
            images += [(info, "forward")] if bogus_time else [(info, "forward"), (info, "backward")]
        elif d in ("forward", "backward"):
            images.append((info, d))
        else:
            raise ReaderError(
                path, f"unknown Nanonis scan direction {info['Direction']!r} for channel {info['Name']!r}"
            )

    stack = array_from(path, buf, data_start, dtype, (len(images), yres, xres), what="Nanonis .sxm data")

    scan_dir = header.get("SCAN_DIR", "").strip().lower()
    flip_v = scan_dir == "up"
    try:
        angle = float(header.get("SCAN_ANGLE", "0").split()[0])
    except (ValueError, IndexError):
        angle = 0.0

    native = stack.astype(np.float64)  # one contiguous cast of big-endian f4 (fast)
    channels = []
    for k, (info, direction) in enumerate(images):
        factor, unit = value_scale(info["Unit"])
        # flip and scale in one step, which also leaves a C-contiguous array
        rows = slice(None, None, -1 if flip_v else 1)
        cols = slice(None, None, -1 if direction == "backward" else 1)
        data = native[k, rows, cols] * factor
        channels.append(
            Channel(
                data=data,
                name=clean_name(info["Name"]) or f"channel {info['Channel']}",
                role=role_for(info["Name"], unit),
                direction=direction,
                z_unit=unit,
                pixel_size=(dy, dx),
                xy_unit=xy_unit,
                offset=(y0, x0),
                header=jsonable(
                    {
                        **info,
                        "direction": direction,
                        "file_unit": info["Unit"],
                        "scan_dir": scan_dir,
                        "scan_angle_deg": angle,
                        "index_in_file": k,
                    }
                ),
            )
        )
    return Scan(path=str(path), format=FORMAT, channels=channels, header=jsonable(header))
