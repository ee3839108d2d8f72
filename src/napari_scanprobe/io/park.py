"""Park Systems (PSIA) TIFF files (``.tiff``, ``.tif``).

A Park file is an ordinary TIFF (an 8-bit palette preview) whose first directory carries
private tags:

* ``50432`` magic number ``0x0E031301``; ``50433`` version ``0x01000001`` or ``0x01000002``;
* ``50434`` the image data (little-endian int16, int32 or float32, see the header);
* ``50435`` the image header (little-endian, packed; strings are UTF-16LE):

  ====  =========================  ====  ===============================
  off   field                      off   field
  ====  =========================  ====  ===============================
  0     image type (u32)           140   x/y scan size, x/y offset (4 f64, um)
  4     source name (32 wchar)     172   scan rate, set point (2 f64)
  68    image mode (8 wchar)       188   set point unit (8 wchar)
  84    low-pass strength (f64)    204   tip bias, sample bias, data gain,
  92    auto flatten, AC track           z scale, z offset (5 f64)
  100   xres, yres (2 u32)         244   z unit (8 wchar)
  108   angle (f64), sine (u32)    260   data min/max/avg, compression,
  120   overscan (f64)                   log scale, square (6 x 32 bit)
  128   forward, scan up, swap xy  284   (v2) z servo gain, z scanner range,
                                         xy/z voltage mode, xy servo mode,
                                         data type (u32) at 348, ...
  ====  =========================  ====  ===============================

* ``50436`` comments; ``50437``-``50439`` line-profile / spectroscopy blocks.

Rules (after Gwyddion's ``psia.c``): value = ``raw * gain * z_scale + gain * z_offset`` in
the header's z unit (``z_scale`` 0 means 1); rows are stored bottom-up; pixel size = scan
size / pixel count. Gwyddion does not apply the header's x/y offset to the image; neither
do we (it is kept in the header).

The TIFF structure is read by :mod:`.tiff`; the image itself lies in tag 50434, not in the
TIFF page (which holds the 8-bit preview).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable, role_for
from .tiff import Tag, first_ifd_entries, is_tiff, read_tiff
from .units import value_scale

FORMAT = "park"
EXTENSIONS = (".tiff", ".tif")

TAG_MAGIC = 50432
TAG_VERSION = 50433
TAG_DATA = 50434
TAG_HEADER = 50435
TAG_COMMENTS = 50436
TAG_LINE_PROFILE_HEADER = 50437
TAG_SPECTROSCOPY_HEADER = 50438

MAGIC = 0x0E031301
VERSION1 = 0x01000001
VERSION2 = 0x01000002
#: Bytes of header each version must hold.
HEADER_SIZE = {VERSION1: 356, VERSION2: 580}

IMAGE_TYPES = {0: "2d-mapped", 1: "line profile", 2: "spectroscopy"}
DATA_TYPES: dict[int, np.dtype] = {0: np.dtype("<i2"), 1: np.dtype("<i4"), 2: np.dtype("<f4")}

#: Header fields that describe the channel itself (the whole header is ``Scan.header``).
CHANNEL_KEYS = (
    "source_name",
    "image_mode",
    "z_unit",
    "data_gain",
    "z_scale",
    "z_offset",
    "data_type",
    "forward",
    "scan_up",
)

_LONG = 4
_U32, _I32, _F64 = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<d")


def sniff(path: Path, head: bytes) -> bool:
    """A TIFF whose first directory holds Park's magic number and a known version."""
    try:
        entries = first_ifd_entries(path, head)
        if not entries:
            return False
        magic, version = entries.get(TAG_MAGIC), entries.get(TAG_VERSION)
        return (
            magic is not None
            and version is not None
            and magic[:2] == (_LONG, 1)
            and version[:2] == (_LONG, 1)
            and magic[2] == MAGIC
            and version[2] in HEADER_SIZE
        )
    except Exception:
        return False


def _wstr(raw: bytes, offset: int, nchars: int) -> str:
    text = raw[offset : offset + 2 * nchars].decode("utf-16-le", errors="replace")
    return clean_name(text.split("\x00", 1)[0])


def parse_header(raw: bytes, version: int) -> dict:
    """The image header (tag 50435) as a dict, lengths in um as in the file."""

    def u32(off: int) -> int:
        return _U32.unpack_from(raw, off)[0]

    def i32(off: int) -> int:
        return _I32.unpack_from(raw, off)[0]

    def f64(off: int) -> float:
        return _F64.unpack_from(raw, off)[0]

    h = {
        "image_type": u32(0),
        "source_name": _wstr(raw, 4, 32),
        "image_mode": _wstr(raw, 68, 8),
        "lpf_strength": f64(84),
        "auto_flatten": u32(92),
        "ac_track": u32(96),
        "xres": u32(100),
        "yres": u32(104),
        "angle": f64(108),
        "sine_scan": u32(116),
        "overscan_rate": f64(120),
        "forward": u32(128),
        "scan_up": u32(132),
        "swap_xy": u32(136),
        "xreal_um": f64(140),
        "yreal_um": f64(148),
        "xoff_um": f64(156),
        "yoff_um": f64(164),
        "scan_rate": f64(172),
        "set_point": f64(180),
        "set_point_unit": _wstr(raw, 188, 8) or "V",
        "tip_bias": f64(204),
        "sample_bias": f64(212),
        "data_gain": f64(220),
        "z_scale": f64(228),
        "z_offset": f64(236),
        "z_unit": _wstr(raw, 244, 8),
        "data_min": i32(260),
        "data_max": i32(264),
        "data_avg": i32(268),
        "compression": u32(272),
        "logscale": u32(276),
        "square": u32(280),
        "data_type": 0,
    }
    if version == VERSION2:
        h.update(
            {
                "z_servo_gain": f64(284),
                "z_scanner_range": f64(292),
                "xy_voltage_mode": _wstr(raw, 300, 8),
                "z_voltage_mode": _wstr(raw, 316, 8),
                "xy_servo_mode": _wstr(raw, 332, 8),
                "data_type": u32(348),
                "ncm_amplitude": f64(360),
                "ncm_frequency": f64(368),
                "cantilever_name": _wstr(raw, 376, 16),
            }
        )
    return h


def _block(path: Path, buf: bytes, tag: Tag, what: str) -> tuple[int, int]:
    """(offset, length in bytes) of a tag's value block, checked against the file size."""
    offset, count = tag.pos, tag.nbytes
    if offset < 8 or offset + count > len(buf):
        raise ReaderError(
            path,
            f"file is truncated: the {what} needs {count} bytes at offset {offset}, the file holds {len(buf)}",
        )
    return offset, count


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    if not is_tiff(buf[:16]):
        raise ReaderError(path, "not a Park Systems file (no TIFF header)")
    ifd = read_tiff(path, buf).ifds[0]
    magic = ifd.value(TAG_MAGIC)
    version = ifd.value(TAG_VERSION)
    header_tag = ifd.tag(TAG_HEADER)
    data_tag = ifd.tag(TAG_DATA)
    extra = {
        name: ifd.value(code)
        for code, name in ((TAG_COMMENTS, "comment"), (305, "software"), (306, "datetime"))
    }
    if (
        not (isinstance(magic, int) and isinstance(version, int))
        or magic != MAGIC
        or version not in HEADER_SIZE
    ):
        raise ReaderError(path, "not a Park Systems file (magic number or version tag missing)")
    if header_tag is None:
        raise ReaderError(path, "Park Systems image header (tag 50435) is missing")
    if data_tag is None:
        raise ReaderError(path, "Park Systems image data (tag 50434) is missing")

    hoff, hlen = _block(path, buf, header_tag, "image header")
    if hlen < HEADER_SIZE[version]:
        raise ReaderError(path, f"image header is too short ({hlen} bytes, needs {HEADER_SIZE[version]})")
    header = parse_header(buf[hoff : hoff + hlen], version)

    kind = header["image_type"]
    if kind == 1:
        raise ReaderError(path, "Park Systems line profile, not an image")
    if kind not in IMAGE_TYPES:
        raise ReaderError(path, f"unknown Park Systems image type {kind}")
    if header["data_type"] not in DATA_TYPES:
        raise ReaderError(path, f"unknown Park Systems data type {header['data_type']}")
    dtype = DATA_TYPES[header["data_type"]]
    yres, xres = check_shape(path, (header["yres"], header["xres"]))

    doff, dlen = _block(path, buf, data_tag, "image data")
    need = xres * yres * dtype.itemsize
    if dlen != need:
        raise ReaderError(
            path, f"image data holds {dlen} bytes, but {xres} x {yres} {dtype.name} pixels need {need}"
        )

    xreal, yreal = abs(header["xreal_um"]), abs(header["yreal_um"])
    if not (xreal > 0 and yreal > 0 and np.isfinite(xreal) and np.isfinite(yreal)):
        raise ReaderError(path, f"invalid scan size {header['xreal_um']!r} x {header['yreal_um']!r} um")
    gain, z_scale, z_offset = header["data_gain"], header["z_scale"], header["z_offset"]
    if z_scale == 0:
        z_scale = 1.0
    if not all(np.isfinite(v) for v in (gain, z_scale, z_offset)):
        raise ReaderError(path, "invalid z calibration (gain, scale or offset is not a number)")
    factor, z_unit = value_scale(header["z_unit"] or "um")
    q = factor * gain

    raw = array_from(path, buf, doff, dtype, (yres, xres))
    data = np.multiply(raw[::-1], q * z_scale, dtype=np.float64)  # stored bottom-up
    if z_offset:
        data += q * z_offset

    scan_header = {"version": f"{version:08x}", "image_type_name": IMAGE_TYPES[kind], **header}
    for key, value in extra.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if value:
            scan_header[key] = decode(value) if isinstance(value, bytes) else str(value)

    name = header["source_name"] or "Topography"
    channel = Channel(
        data=data,
        name=name,
        role=role_for(name, z_unit),
        direction="forward" if header["forward"] else "backward",
        z_unit=z_unit,
        pixel_size=(yreal * 1e3 / yres, xreal * 1e3 / xres),
        xy_unit="nm",
        offset=(0.0, 0.0),
        header=jsonable({key: header[key] for key in CHANNEL_KEYS}),
    )
    return Scan(path=str(path), format=FORMAT, channels=[channel], header=jsonable(scan_header))
