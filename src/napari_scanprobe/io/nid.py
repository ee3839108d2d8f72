"""Nanosurf ``.nid`` (and the older ``.ezd``) files.

Layout: an INI-style text header (``[Section]`` lines and ``key=value`` lines, CR-LF, in
Latin-1 or UTF-8) that starts with ``[DataSet]`` and ends with ``#!``; then the binary data of
every data set, back to back, in the order the ``[DataSet]`` section lists them:
``Gr<i>-Ch<j>=DataSet-<i>:<j>`` for group ``i < GroupCount`` and channel ``j < Gr<i>-Count``.

Each data set section (``[DataSet-0:1]`` ...) gives ``Points`` x ``Lines``, ``SaveBits`` (8, 16
or 32), ``SaveSign``, ``SaveOrder`` (``Intel`` = little-endian), ``Frame`` (``Scan forward``
/ ``Scan backward``), and ``Dim0``/``Dim1``/``Dim2`` ``Name``, ``Unit``, ``Min``, ``Range`` for x,
y and the value.

Conventions follow Gwyddion's ``ezdfile`` module (the reference for ground_truth.json):

* value = ``Dim2Min + Dim2Range * (raw + 2**(bits-1)) / 2**bits`` for signed samples (the raw
  range maps onto [Min, Min + Range]); unsigned samples map ``raw / 2**bits`` the same way,
* lines are stored bottom line first, so rows are flipped for display,
* pixel size = ``Dim0Range / Points`` and ``Dim1Range / Lines``; ranges are taken as absolute
  values, a zero value range is taken as 1 (Gwyddion's fix),
* data sets with a single line (spectroscopy, line scans) are not images: they are skipped,
  their bytes still counted so that the following data sets are found.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, role_for
from .units import length_to_nm, parse_unit, value_scale

FORMAT = "nid"
EXTENSIONS = (".nid", ".ezd")

MAGIC = b"[DataSet]"
DATA_MARK = b"#!"

_GROUP_CHANNEL = re.compile(r"Gr(\d+)-Ch(\d+)$")


def sniff(path: Path, head: bytes) -> bool:
    try:
        if not head.startswith(MAGIC):
            return False
        rest = head[len(MAGIC) :]
        if not rest.startswith((b"\r\n", b"\n")):
            return False
        return b"Version=" in head[:256] or b"GroupCount=" in head
    except Exception:
        return False


# --------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------


def parse_header(text: str) -> dict[str, dict[str, str]]:
    """``{section: {key: value}}`` in file order. ``--`` comment lines are dropped."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line[0] == "[" and line[-1] == "]":
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or line.startswith("--"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip()] = value.strip()
    return sections


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(str(text).strip().split()[0])
    except (ValueError, IndexError, TypeError):
        return default


def _float(text: str | None, default: float = 0.0) -> float:
    try:
        value = float(str(text).strip().split()[0])
    except (ValueError, IndexError, TypeError):
        return default
    return value if math.isfinite(value) else default


def _dataset_order(path: Path, dataset: dict[str, str]) -> list[tuple[int, int, str]]:
    """``[(group, channel, section name)]`` in storage order, bounded by the header's size."""
    ngroups = _int(dataset.get("GroupCount"), -1)
    if ngroups <= 0:
        raise ReaderError(path, "invalid or missing GroupCount in the Nanosurf [DataSet] section")
    counts = {}
    entries = []
    for key, value in dataset.items():  # only keys that exist: a corrupt count cannot loop
        m = _GROUP_CHANNEL.match(key)
        if not m:
            continue
        group, channel = int(m.group(1)), int(m.group(2))
        if group >= ngroups:
            continue
        if group not in counts:
            counts[group] = _int(dataset.get(f"Gr{group}-Count"), 0)
        if channel < counts[group]:
            entries.append((group, channel, value))
    entries.sort()
    return entries


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

_BITS = {8: "i1", 16: "i2", 32: "i4"}


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not buf.startswith(MAGIC):
        raise ReaderError(path, "not a Nanosurf .nid file (no [DataSet] header)")
    mark = buf.find(DATA_MARK)
    if mark < 0:
        raise ReaderError(
            path, "Nanosurf header has no end (#! marker): the file is truncated or holds no data"
        )
    data_start = mark + len(DATA_MARK)
    sections = parse_header(decode(buf[:mark]))
    dataset = sections.get("DataSet")
    if dataset is None:
        raise ReaderError(path, "Nanosurf header has no [DataSet] section")

    channels: list[Channel] = []
    skipped: list[str] = []
    offset = data_start
    for group, chan, name in _dataset_order(path, dataset):
        sec = sections.get(name)
        if sec is None:
            skipped.append(f"{name} (no such section)")
            continue
        xres, yres = _int(sec.get("Points")), _int(sec.get("Lines"))
        bits = _int(sec.get("SaveBits"))
        if bits not in _BITS:
            raise ReaderError(
                path, f"Nanosurf data set {name} has unsupported SaveBits={sec.get('SaveBits')!r}"
            )
        if xres <= 0 or yres <= 0:
            raise ReaderError(path, f"Nanosurf data set {name} has invalid dimensions {xres} x {yres}")
        nbytes = xres * yres * (bits // 8)
        if sec.get("SaveMode", "Binary") != "Binary":
            raise ReaderError(
                path, f"Nanosurf data set {name} is not stored in binary (SaveMode={sec['SaveMode']!r})"
            )
        here = offset
        offset += nbytes
        if yres < 2:  # spectroscopy / single line: not an image
            skipped.append(f"{name} ({xres} points x {yres} line)")
            if offset > len(buf):
                raise ReaderError(path, f"file is truncated: data set {name} does not fit")
            continue
        check_shape(path, (yres, xres), what=f"data set {name}")

        signed = sec.get("SaveSign", "Signed").lower() != "unsigned"
        order = "<" if sec.get("SaveOrder", "Intel").lower() == "intel" else ">"
        code = _BITS[bits] if signed else _BITS[bits].replace("i", "u")
        raw = array_from(path, buf, here, np.dtype(order + code), (yres, xres), what=f"data set {name}")

        # Value scale: Min + Range * (raw + half) / 2**bits, in our unit, as raw * a + b.
        factor, z_unit = value_scale(sec.get("Dim2Unit", ""))
        zmin = _float(sec.get("Dim2Min"))
        zrange = abs(_float(sec.get("Dim2Range")))
        if not zrange > 0:
            zrange = 1.0
        q = 2.0**bits
        a = zrange / q * factor
        b = (zmin + (zrange / 2 if signed else 0.0)) * factor
        data = raw[::-1] * a + b  # stored bottom line first

        # Lateral scale.
        xy_unit, (dx, x0), (dy, y0) = "nm", (1.0, 0.0), (1.0, 0.0)
        spans = []
        for axis, n in (("Dim0", xres), ("Dim1", yres)):
            span = abs(_float(sec.get(f"{axis}Range")))
            start = _float(sec.get(f"{axis}Min"))
            unit = sec.get(f"{axis}Unit", "m")
            spans.append((span, start, unit, n))
        units = [s[2] for s in spans]
        if all(parse_unit(u)[1] == "m" for u in units) and all(s[0] > 0 for s in spans):
            (sx, x0, ux, _), (sy, y0, uy, _) = spans
            dx, dy = length_to_nm(sx, ux) / xres, length_to_nm(sy, uy) / yres
            x0, y0 = length_to_nm(x0, ux), length_to_nm(y0, uy)
        elif all(s[0] > 0 for s in spans) and units[0] == units[1]:  # a non-length lateral axis
            xy_unit = units[0]
            dx, dy = spans[0][0] / xres, spans[1][0] / yres
            x0, y0 = spans[0][1], spans[1][1]
        else:  # no usable size: pixel units
            xy_unit = ""

        frame = sec.get("Frame", "") or dataset.get(f"Gr{group}-Name", "")
        low = frame.lower()
        direction = "forward" if "forward" in low else "backward" if "backward" in low else None
        channels.append(
            Channel(
                data=data,
                name=clean_name(sec.get("Dim2Name", "")) or name,
                role=role_for(sec.get("Dim2Name", ""), z_unit),
                direction=direction,
                z_unit=z_unit,
                pixel_size=(dy, dx),
                xy_unit=xy_unit,
                offset=(y0, x0),
                header={"section": name, "group": group, "channel": chan, **sec},
            )
        )

    if not channels:
        why = f" (only {', '.join(skipped)})" if skipped else ""
        raise ReaderError(
            path, f"Nanosurf file holds no image data set: spectroscopy or line data, not an image{why}"
        )
    header = {**sections, "skipped_data_sets": skipped}  # str -> {str: str}: JSON as it is
    return Scan(path=str(path), format=FORMAT, channels=channels, header=header)
