"""RHK Technology SM4 files (``.sm4``, RHK XPMPro / R9).

The layout follows RHK's SM4 description as implemented by Gwyddion's ``rhk-sm4.c`` (the
reference the test suite compares against). Everything is little-endian::

    0   u16      header size
    2   36 B     "STiMage 005.NNN N" in UTF-16LE (the signature the sniffer checks)
    38  5 x u32  page count, object count, object field size, 2 reserved
    58  objects  (type u32, offset u32, size u32) each -- the file's object list

An object of type 1 (page index header) holds the page count and its own object list, in which
type 2 (page index array) points to ``page_count`` page indices stored back to back: a 16-byte
GUID, data type, source, object count, minor version, then that many objects (page header =
3, page data = 4 ...). A page header is 180 bytes of fixed fields (sizes, scan direction,
x/y/z scale and offset ...) followed by its own object list, where type 10 holds the page's
UTF-16 strings (label, path, date, time, x/y/z units ...).

Rules (as Gwyddion 2.62 reads these files):

* Only pages whose index says data type 0 (image) become channels, in file order; spectra
  (line pages) and other pages are ignored and listed in ``Scan.header["skipped_pages"]``.
* Pixels are int32; value = raw * z_scale + z_offset in the page's z unit. RHK stores each line
  right-to-left (its x scale is negative), so every row is mirrored; the image is flipped
  vertically when the y scale is positive (an "up" scan), so row 0 is the top row.
* Pixel size = |x_scale|, |y_scale| in the x unit (Gwyddion uses the x unit for both axes).
  The page's x/y offsets are kept in the channel header; the channel offset is (0, 0) because
  Gwyddion does not apply them.
* Channel name = the page label ("LIA Current"); direction from the page's scan direction:
  Left -> "forward", Right -> "backward" (Gwyddion shows them as "[Left]" / "[Right]"); Up/Down
  give no direction.
* Every count and offset read from the file is checked against the file size before use.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, jsonable, role_for
from .units import length_to_nm, value_scale

FORMAT = "sm4"
EXTENSIONS = (".sm4",)

MAGIC = "STiMage 005.".encode("utf-16-le")
_MAGIC_OFFSET = 2
_OBJECTS_START = 2 + 36 + 5 * 4  # the file's object list
_OBJECT = 12
_PAGE_INDEX = 16 + 4 * 4
_PAGE_HEADER = 180

# object types
_PAGE_INDEX_HEADER, _PAGE_INDEX_ARRAY, _PAGE_HEADER_T, _PAGE_DATA = 1, 2, 3, 4
_STRING_DATA, _PRM, _PRM_HEADER = 10, 13, 15

_DATA_TYPES = {0: "image", 1: "line", 2: "xy data", 3: "annotated line", 4: "text", 5: "annotated text",
               6: "sequential", 7: "movie"}  # fmt: skip
_SCAN_DIRS = {0: "Right", 1: "Left", 2: "Up", 3: "Down"}
_DIRECTION = {"Left": "forward", "Right": "backward"}
_STRINGS = ("label", "system_text", "session_text", "user_text", "path", "date", "time", "x_units",
            "y_units", "z_units", "x_label", "y_label", "status_channel_text", "completed_line_count",
            "oversampling_count", "sliced_voltage", "pll_pro_status")  # fmt: skip
_PAGE_FIELDS = ("page_type", "data_sub_source", "line_type", "x_coord", "y_coord", "x_size", "y_size",
                "image_type", "scan_dir", "group_id", "data_size", "min_z_value", "max_z_value",
                "x_scale", "y_scale", "z_scale", "xy_scale", "x_offset", "y_offset", "z_offset",
                "period", "bias", "current", "angle", "color_info_count", "grid_x_size", "grid_y_size",
                "object_count")  # fmt: skip
_PAGE_STRUCT = struct.Struct("<HH3I2i6I2i11f4I")  # the 116 bytes before the 16 reserved u32
_UNIT_FIX = {"Vrms": "V", "Vp": "V", "N/sec": "s^-1"}


def sniff(path: Path, head: bytes) -> bool:
    try:
        return head[_MAGIC_OFFSET : _MAGIC_OFFSET + len(MAGIC)] == MAGIC
    except Exception:
        return False


def _objects(path, buf: bytes, pos: int, count: int, where: str) -> list[tuple[int, int, int]]:
    """``count`` (type, offset, size) triples at ``pos``, bounds-checked against the file."""
    if count < 0 or pos < 0 or pos + count * _OBJECT > len(buf):
        raise ReaderError(path, f"corrupt or truncated SM4 file: the {where} object list ({count} entries) "
                                "runs past the end of the file")  # fmt: skip
    if count == 0:
        return []
    return [tuple(t) for t in np.frombuffer(buf, "<u4", count * 3, pos).reshape(count, 3).tolist()]


def _find(objects, kind: int) -> tuple[int, int, int] | None:
    for obj in objects:
        if obj[0] == kind:
            return obj
    return None


def _checked(path, buf: bytes, obj, what: str) -> tuple[int, int]:
    _, offset, size = obj
    if offset + size > len(buf):
        raise ReaderError(path, f"file is truncated: the {what} at offset {offset} needs {size} bytes, "
                                f"the file holds {len(buf)}")  # fmt: skip
    return offset, size


def _strings(buf: bytes, offset: int, size: int, count: int) -> list[str]:
    """``count`` length-prefixed UTF-16LE strings; stops at the end of the object."""
    out: list[str] = []
    pos, end = offset, offset + size
    for _ in range(min(count, size // 2)):
        if pos + 2 > end:
            break
        n = buf[pos] | buf[pos + 1] << 8
        pos += 2
        if pos + 2 * n > end:
            break
        out.append(clean_name(buf[pos : pos + 2 * n].decode("utf-16-le", errors="replace")))
        pos += 2 * n
    return out


def _prm(buf: bytes, objects) -> str | None:
    """The PRM text (instrument parameters), zlib-compressed or not; None if absent/unreadable."""
    head, body = _find(objects, _PRM_HEADER), _find(objects, _PRM)
    if not head or not body or head[2] != 12 or not body[2]:
        return None
    if head[1] + 12 > len(buf) or body[1] + body[2] > len(buf):
        return None
    compressed, decompressed_size, _ = struct.unpack_from("<3I", buf, head[1])
    raw = buf[body[1] : body[1] + body[2]]
    if compressed:
        if decompressed_size > 64 * 2**20:
            return None
        try:
            raw = zlib.decompressobj().decompress(raw, decompressed_size)
        except zlib.error:
            return None
    return raw.decode("cp437", errors="replace").replace("\x00", "")


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    size = len(buf)
    if size < _OBJECTS_START or buf[_MAGIC_OFFSET : _MAGIC_OFFSET + len(MAGIC)] != MAGIC:
        if buf[_MAGIC_OFFSET : _MAGIC_OFFSET + len(MAGIC)] == MAGIC[: max(0, size - _MAGIC_OFFSET)]:
            raise ReaderError(path, f"file is truncated: {size} bytes cannot hold the SM4 file header")
        raise ReaderError(path, "not an RHK SM4 file (no 'STiMage 005' signature)")
    signature = buf[_MAGIC_OFFSET : _MAGIC_OFFSET + 36].decode("utf-16-le", errors="replace").strip("\x00 ")
    page_count, object_count, field_size = struct.unpack_from("<3I", buf, 38)
    file_objects = _objects(path, buf, _OBJECTS_START, object_count, "file header")

    pih = _find(file_objects, _PAGE_INDEX_HEADER)
    if pih is None:
        raise ReaderError(path, "corrupt SM4 file: no page index header")
    pih_offset, pih_size = _checked(path, buf, pih, "page index header")
    if pih_size < 16:
        raise ReaderError(path, "corrupt SM4 file: page index header is too short")
    n_pages, n_pih_objects = struct.unpack_from("<2I", buf, pih_offset)
    pih_objects = _objects(path, buf, pih_offset + 16, n_pih_objects, "page index header")
    pia = _find(pih_objects, _PAGE_INDEX_ARRAY)
    if pia is None:
        raise ReaderError(path, "corrupt SM4 file: no page index array")
    pia_offset, pia_size = _checked(path, buf, pia, "page index array")
    if pia_size < _PAGE_INDEX:
        raise ReaderError(path, "corrupt SM4 file: page index entries are too short")
    if n_pages > (size - pia_offset) // _PAGE_INDEX:
        raise ReaderError(path, f"corrupt or truncated SM4 file: {n_pages} pages declared, "
                                "more than the file can hold")  # fmt: skip

    header = {
        "signature": signature,
        "page_count": n_pages,
        "object_count": object_count,
        "object_field_size": field_size,
        "skipped_pages": [],
    }
    prm = _prm(buf, file_objects)
    if prm is not None:
        header["prm"] = prm

    channels = []
    pos = pia_offset
    for i in range(n_pages):
        if pos + _PAGE_INDEX > size:
            raise ReaderError(path, f"file is truncated: page index {i} lies past the end of the file")
        guid = buf[pos : pos + 16].hex()
        data_type, source, n_objects, minor = struct.unpack_from("<4I", buf, pos + 16)
        page_objects = _objects(path, buf, pos + _PAGE_INDEX, n_objects, f"page {i} index")
        pos += pia_size + _OBJECT * n_objects
        if data_type != 0:
            header["skipped_pages"].append({"page": i, "data_type": _DATA_TYPES.get(data_type, data_type)})
            continue

        # ---- page header ----
        ph = _find(page_objects, _PAGE_HEADER_T)
        if ph is None:
            raise ReaderError(path, f"corrupt SM4 file: page {i} has no page header")
        ph_offset, ph_size = _checked(path, buf, ph, f"page {i} header")
        if ph_size < _PAGE_STRUCT.size or ph_offset + _PAGE_HEADER > size:
            raise ReaderError(path, f"file is truncated: page {i} header is too short")
        values = _PAGE_STRUCT.unpack_from(buf, ph_offset)
        string_count = values[1]
        page = dict(zip(_PAGE_FIELDS, values[2:]))
        xres, yres = page["x_size"], page["y_size"]
        check_shape(path, (yres, xres), f"page {i} image")
        sub_objects = _objects(path, buf, ph_offset + _PAGE_HEADER, page["object_count"], f"page {i} header")

        strings: dict[str, str] = {}
        so = _find(sub_objects, _STRING_DATA)
        if so is not None:
            so_offset, so_size = _checked(path, buf, so, f"page {i} strings")
            texts = _strings(buf, so_offset, so_size, string_count)
            strings = {(_STRINGS[k] if k < len(_STRINGS) else f"string_{k}"): t for k, t in enumerate(texts)}

        # ---- data ----
        pd = _find(page_objects, _PAGE_DATA)
        if pd is None:
            raise ReaderError(path, f"corrupt SM4 file: image page {i} has no data")
        pd_offset, pd_size = pd[1], pd[2]
        if pd_size != 4 * xres * yres:
            raise ReaderError(path, f"corrupt SM4 file: page {i} data holds {pd_size} bytes, "
                                    f"a {xres}x{yres} image needs {4 * xres * yres}")  # fmt: skip
        raw = array_from(path, buf, pd_offset, "<i4", (yres, xres), f"page {i} image")

        z_text = strings.get("z_units") or ""
        z_text = _UNIT_FIX.get(z_text, z_text)
        factor, z_unit = value_scale(z_text)
        z_scale = float(page["z_scale"]) * factor
        z_offset = float(page["z_offset"]) * factor
        view = raw[:, ::-1]  # lines are stored right-to-left
        if page["y_scale"] > 0:
            view = view[::-1]
        data = np.multiply(view, z_scale, dtype=np.float64)
        if z_offset:
            data += z_offset

        x_scale = abs(page["x_scale"]) or 1.0
        y_scale = abs(page["y_scale"]) or 1.0
        xy_text = strings.get("x_units") or strings.get("y_units") or ""
        try:
            dx, dy, xy_unit = length_to_nm(x_scale, xy_text), length_to_nm(y_scale, xy_text), "nm"
        except ValueError:
            dx, dy, xy_unit = x_scale, y_scale, ""

        scan_dir = _SCAN_DIRS.get(page["scan_dir"])
        name = strings.get("label") or f"Page {i + 1}"
        chan_header = {
            "page": i,
            "page_id": guid,
            "source": source,
            "minor_version": minor,
            **page,
            "scan_direction": scan_dir,
            "strings": strings,
        }
        channels.append(
            Channel(
                data=data,
                name=name,
                role=role_for(name, z_unit),
                direction=_DIRECTION.get(scan_dir or ""),
                z_unit=z_unit,
                pixel_size=(dy, dx),
                xy_unit=xy_unit,
                offset=(0.0, 0.0),
                header=jsonable(chan_header),
            )
        )

    if not channels:
        kinds = sorted({str(p["data_type"]) for p in header["skipped_pages"]})
        what = ", ".join(kinds) if kinds else "no pages"
        raise ReaderError(path, f"SM4 file holds no image page (only spectroscopy/other pages: {what})")
    return Scan(path=str(path), format=FORMAT, channels=channels, header=jsonable(header))
