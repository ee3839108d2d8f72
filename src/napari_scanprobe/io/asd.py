"""High-speed AFM movies in the Ando-lab / RIBM ``.asd`` format (Kanazawa HS-AFM, RIBM SS-NEX).

Layout (all little-endian), learned from the public format description as implemented by
libasd (Toru Niina, MIT) and AFMReader:

* a file header whose first ``int32`` is the file version (0, 1 or 2);
* then, channel after channel (all frames of channel 1, then all frames of channel 2), each
  frame = a frame header (``frame_header_size`` bytes, 32 in every known file: ``int32``
  number, ``int16`` max/min data, ``int16`` x/y offset, ``float32`` x/y tilt, ``bool``
  stimulated, booked bytes) followed by ``x_pixel * y_pixel`` ``int16`` ADC levels, row by row.

Header versions:

* **0**: ``int16`` channel kinds, sizes, ``int16`` pixels and scan range (nm), frame time (ms),
  z piezo extension (nm/V) and gain, AD range code, data bits, ... operator name, sensor
  and phase sensitivity, scan direction, ``comment_offset_size`` skipped bytes, comment.
  Its ``file_header_size`` is unreliable in real files: data start right after the comment.
* **1** and **2**: ``int32`` everything (text encoding, 4-byte channel kinds ``"TP"``,
  ``"ER"``, ``"PH"``, pixels, ranges, date, frame acquisition time (ms), sensitivities, AD
  range and resolution, piezo constants), then operator name and comment. Version 2 appends
  feed-forward and colour-map settings. Data start at ``file_header_size``.

Values (follow AFMReader 0.0.7, the reference in ground_truth.json): the ADC level ``L`` is
turned into a voltage and multiplied by a per-channel coefficient ``c``:

* unipolar AD range ``V`` (codes 0x1 = 1 V, 0x2 = 2.5 V, 0x3 = 9.99 V, 0x4 = 5 V):
  ``value = -L * V / R * c``;
* bipolar AD range ``+-V`` (0x10000 = 1 V, 0x20000 = 2.5 V, 0x40000 = 5 V):
  ``value = (V - 2 * L * V / R) * c``;
* libasd's "modified data" code 0x800000 (+-80 V): ``value = (160 * L / R - 80) * c``;

with ``R = 2**bits`` (the header's AD resolution, 12 bits -> 4096 in every known file;
AFMReader always uses 4096) and ``c`` = z piezo gain * z piezo extension (nm/V) for
topography (``"TP"`` -> channel "Height", nm), ``-sensor sensitivity`` (nm/V) for the error
signal (``"ER"`` -> "Error", nm) and ``-phase sensitivity`` (deg/V) for phase (``"PH"`` ->
"Phase", deg). Both the unipolar and the bipolar rule invert the sign (a higher level is a
lower value): a unipolar topography movie comes out with negative heights, as in AFMReader.

Pixel size = scan range (nm) / pixels; rows are kept in file order (AFMReader does not
flip either); ``frame_time_s`` = frame time (ms) / 1000. Header text (operator name, comment)
is Shift-JIS in Japanese-lab files (text encoding 932) and is decoded leniently.

``Channel.data`` is a ``(t, y, x)`` float32 dask array, one frame per chunk (``movie.py``): the
raw bytes of a small movie (at most ``movie.EAGER_BYTES`` as float32, all channels) are read
when the file is opened -- one read for every channel -- and held; frames are converted from
them on demand (one vectorised step for the whole movie with ``np.asarray``). A larger movie is
never loaded: each frame reads only its own bytes (open, seek, read, close).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from pathlib import Path

import numpy as np

from .movie import FrameSource, is_small, lazy_movie
from .scan import Channel, ReaderError, Scan, check_shape, clean_name, decode, jsonable, role_for

FORMAT = "asd"
EXTENSIONS = (".asd",)

#: Channel kind codes: two ASCII letters read as a little-endian integer.
_KINDS = {0x5054: "TP", 0x5245: "ER", 0x4850: "PH"}
#: kind -> (channel name, unit of the converted values)
_KIND_INFO = {"TP": ("Height", "nm"), "ER": ("Error", "nm"), "PH": ("Phase", "deg")}

#: AD range code -> (polarity, volts)
_AD_RANGES = {
    0x00000001: ("unipolar", 1.0),
    0x00000002: ("unipolar", 2.5),
    0x00000003: ("unipolar", 9.99),
    0x00000004: ("unipolar", 5.0),
    0x00010000: ("bipolar", 1.0),
    0x00020000: ("bipolar", 2.5),
    0x00040000: ("bipolar", 5.0),
    0x00800000: ("dummy", 80.0),
}

_TEXT_ENCODINGS = {932: "shift_jis", 1200: "utf-16-le", 20932: "euc_jp", 65001: "utf-8", 20127: "ascii"}
_SCAN_DIRECTIONS = {1: "x forward", 2: "x backward", 4: "y forward", 8: "y backward"}

# Fixed part of the headers: (struct format, field names); booked bytes are skipped ("x").
_V0_FIXED = (
    "<ihhiiiiihhhhfffIi?i2xhBBBBBBff12xiiih",
    (
        "file_version", "kind_1ch", "kind_2ch", "file_header_size", "frame_header_size",
        "operator_name_size", "comment_offset_size", "comment_size", "x_pixels", "y_pixels",
        "x_range_nm", "y_range_nm", "frame_time_ms", "z_piezo_extension_nm_per_V", "z_piezo_gain",
        "ad_range_code", "ad_bits", "is_averaged", "averaging_window", "year", "month",
        "day", "hour", "minute", "second", "rounding_degree", "x_max_range_nm", "y_max_range_nm",
        "initial_frames", "num_frames", "machine_id", "file_id",
    ),
)  # fmt: skip
_V0_TAIL = ("<ffi", ("sensor_sensitivity_nm_per_V", "phase_sensitivity_deg_per_V", "scan_direction"))
_V1_FIXED = (
    "<iiiiiiiiiiiiiiii?iiiiiiiiifffi12xiIiffffff",
    (
        "file_version", "file_header_size", "frame_header_size", "text_encoding",
        "operator_name_size", "comment_size", "kind_1ch", "kind_2ch", "initial_frames",
        "num_frames", "scan_direction", "file_id", "x_pixels", "y_pixels", "x_range_nm",
        "y_range_nm", "is_averaged", "averaging_window", "year", "month", "day", "hour", "minute",
        "second", "x_rounding_degree", "y_rounding_degree", "frame_time_ms",
        "sensor_sensitivity_nm_per_V", "phase_sensitivity_deg_per_V", "offset", "machine_id",
        "ad_range_code", "ad_bits", "x_max_range_nm", "y_max_range_nm",
        "x_piezo_extension_nm_per_V", "y_piezo_extension_nm_per_V", "z_piezo_extension_nm_per_V",
        "z_piezo_gain",
    ),
)  # fmt: skip
_FRAME_HEADER = (
    "<ihhhhff?11x",
    ("number", "max_data", "min_data", "x_offset", "y_offset", "x_tilt", "y_tilt", "is_stimulated"),
)  # fmt: skip

_V0_SIZE = struct.calcsize(_V0_FIXED[0])
_V1_SIZE = struct.calcsize(_V1_FIXED[0])
_FRAME_HEADER_SIZE = struct.calcsize(_FRAME_HEADER[0])  # 32

#: A header larger than this is corrupt (real ones are a few hundred bytes).
_MAX_HEADER = 1 << 24


def sniff(path: Path, head: bytes) -> bool:
    """A version 0/1/2 header with a known first channel kind and sane sizes."""
    try:
        if len(head) < 32:
            return False
        version = struct.unpack_from("<i", head, 0)[0]
        if version == 0:
            kind1, kind2, header_size, frame_header = struct.unpack_from("<hhii", head, 4)
        elif version in (1, 2):
            header_size, frame_header = struct.unpack_from("<ii", head, 4)
            kind1, kind2 = struct.unpack_from("<ii", head, 24)
        else:
            return False
        return (
            kind1 in _KINDS
            and (kind2 == 0 or kind2 in _KINDS)
            and 0 <= frame_header <= 4096
            and 0 <= header_size <= _MAX_HEADER
        )
    except Exception:  # noqa: BLE001 - a sniffer must never raise
        return False


# --------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------


def _text(raw: bytes, encoding: int | None) -> str:
    codec = _TEXT_ENCODINGS.get(encoding or 0)
    if codec == "utf-16-le":
        try:
            return clean_name(raw.decode(codec).replace("\x00", ""))
        except UnicodeDecodeError:
            pass
    order: tuple[str, ...] = ("utf-8", "shift_jis", "latin-1")
    if codec in ("euc_jp",):
        order = ("utf-8", codec, "shift_jis", "latin-1")
    return decode(raw, order).strip()


def _unpack(fmt_names: tuple[str, tuple[str, ...]], buf: bytes, offset: int = 0) -> dict:
    fmt, names = fmt_names
    return dict(zip(names, struct.unpack_from(fmt, buf, offset)))


def _kind_name(code: int) -> str:
    if code in _KINDS:
        return _KINDS[code]
    text = code.to_bytes(4, "little", signed=code < 0).rstrip(b"\x00")
    return text.decode("latin-1") if text and all(32 < b < 127 for b in text) else f"0x{code & 0xFFFFFFFF:x}"


def _header_extent(buf: bytes) -> int:
    """How many bytes the header (with name and comment) spans, from its size fields."""
    try:
        version = struct.unpack_from("<i", buf, 0)[0]
        if version == 0:
            name, skip, comment = struct.unpack_from("<iii", buf, 16)
            sizes = [max(v, 0) for v in (name, skip, comment)]
            return _V0_SIZE + 12 + sum(sizes)
        header_size, _, _, name, comment = struct.unpack_from("<iiiii", buf, 4)
        return max(header_size, _V1_SIZE + max(name, 0) + max(comment, 0)) + 4
    except struct.error:
        return 0


def parse_header(path: Path, buf: bytes, file_size: int) -> tuple[dict, int]:
    """``(header, data_start)`` from the first bytes of the file. ``buf`` must hold the header."""
    version = struct.unpack_from("<i", buf, 0)[0]
    if version not in (0, 1, 2):
        raise ReaderError(path, f"unknown .asd file version {version} (known: 0, 1, 2)")
    fixed = _V0_FIXED if version == 0 else _V1_FIXED
    size = _V0_SIZE if version == 0 else _V1_SIZE
    if len(buf) < size:
        raise ReaderError(path, f"file is truncated inside the header ({len(buf)} of {size} bytes)")
    hdr = _unpack(fixed, buf)
    name_size = hdr["operator_name_size"]
    comment_size = hdr["comment_size"]
    comment_skip = hdr.get("comment_offset_size", 0)
    for key, value in (
        ("operator name", name_size),
        ("comment", comment_size),
        ("comment offset", comment_skip),
    ):
        if not 0 <= value <= _MAX_HEADER:
            raise ReaderError(path, f"corrupt header: {key} size {value}")
    encoding = hdr.get("text_encoding", 932)

    pos = size
    if pos + name_size > len(buf):
        raise ReaderError(path, "file is truncated inside the header (operator name)")
    hdr["operator_name"] = _text(buf[pos : pos + name_size], encoding)
    pos += name_size
    if version == 0:
        tail_size = struct.calcsize(_V0_TAIL[0])
        if pos + tail_size > len(buf):
            raise ReaderError(path, "file is truncated inside the header")
        hdr.update(_unpack(_V0_TAIL, buf, pos))
        pos += tail_size + comment_skip
    if pos + comment_size > len(buf):
        raise ReaderError(path, "file is truncated inside the header (comment)")
    hdr["comment"] = _text(buf[pos : pos + comment_size], encoding)
    pos += comment_size
    if version == 2 and pos + 4 <= len(buf):
        hdr["number_of_frames_v2"] = struct.unpack_from("<i", buf, pos)[0]

    if version == 0:
        data_start = pos  # the v0 header size field is unreliable (libasd)
    else:
        data_start = hdr["file_header_size"]
        if not size <= data_start <= file_size:
            raise ReaderError(path, f"corrupt header: header size {data_start} bytes")

    hdr["kind_1ch"] = _kind_name(hdr["kind_1ch"])
    hdr["kind_2ch"] = _kind_name(hdr["kind_2ch"]) if hdr["kind_2ch"] else ""
    hdr["scan_direction_text"] = _SCAN_DIRECTIONS.get(hdr["scan_direction"], "unknown")
    hdr["text_encoding_name"] = _TEXT_ENCODINGS.get(encoding, "unknown")
    hdr["date"] = (
        f"{hdr['year']:04d}-{hdr['month']:02d}-{hdr['day']:02d} "
        f"{hdr['hour']:02d}:{hdr['minute']:02d}:{hdr['second']:02d}"
    )
    hdr["data_start"] = data_start
    return hdr, data_start


def level_scale(hdr: dict, kind: str) -> tuple[float, float, str, str]:
    """``(a, b, unit, rule)`` with ``value = a * level + b`` for a channel of ``kind``."""
    code = hdr["ad_range_code"]
    if code not in _AD_RANGES:
        raise ValueError(f"unknown AD range code 0x{code:x}")
    polarity, volts = _AD_RANGES[code]
    bits = hdr["ad_bits"]
    resolution = float(2**bits) if 8 <= bits <= 16 else 4096.0
    if kind == "TP":
        coef = hdr["z_piezo_gain"] * hdr["z_piezo_extension_nm_per_V"]
        rule = "z piezo gain * z piezo extension (nm/V)"
    elif kind == "ER":
        coef = -hdr["sensor_sensitivity_nm_per_V"]
        rule = "-sensor sensitivity (nm/V)"
    elif kind == "PH":
        coef = -hdr["phase_sensitivity_deg_per_V"]
        rule = "-phase sensitivity (deg/V)"
    else:
        coef, rule = 1.0, "none (volts)"
    unit = _KIND_INFO.get(kind, (kind, "V"))[1]
    if polarity == "unipolar":
        a, b = -volts / resolution * coef, 0.0
        rule = f"value = -level * {volts} V / {resolution:g} * c, c = {rule}"
    elif polarity == "bipolar":
        a, b = -2.0 * volts / resolution * coef, volts * coef
        rule = f"value = ({volts} V - 2 * level * {volts} V / {resolution:g}) * c, c = {rule}"
    else:
        a, b = 2.0 * volts / resolution * coef, -volts * coef
        rule = f"value = (2 * level * {volts} V / {resolution:g} - {volts} V) * c, c = {rule}"
    return float(a), float(b), unit, rule


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------


def _read_span(path: str, offset: int, nbytes: int, fh=None) -> bytes:
    """The one place frame bytes are read (tests count the calls): from ``fh`` when the file is
    already open, else the file is opened and closed again."""
    if fh is None:
        with open(path, "rb") as own:
            own.seek(offset)
            data = own.read(nbytes)
    else:
        fh.seek(offset)
        data = fh.read(nbytes)
    if len(data) != nbytes:
        raise ReaderError(
            path, f"file is truncated: frame data at offset {offset} is missing (file changed?)"
        )
    return data


class AsdFrames(FrameSource):
    """Array-like ``(t, y, x)`` float32 view of one channel's frames, converted on demand.

    ``held``: the file's bytes from offset ``held_at`` on, read when the file was opened (a small
    movie); without them every ``frames`` call opens the file, reads the bytes of the requested
    frames and closes it. Pickles as path and numbers (``FrameSource``: never the held bytes).
    """

    def __init__(
        self,
        path: str,
        first: int,
        stride: int,
        skip: int,
        shape: tuple[int, int, int],
        a: float,
        b: float,
        held: bytes | None = None,
        held_at: int = 0,
    ):
        super().__init__(path, shape)
        self.first = first  # offset of frame 0's frame header
        self.stride = stride  # frame header + frame data
        self.skip = skip  # frame header size
        self.a = a
        self.b = b
        self.held = held
        self.held_at = held_at

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (contiguous), converted."""
        count = stop - start
        ny, nx = self.shape[1:]
        if count <= 0:
            return np.empty((0, ny, nx), np.float32)
        offset = self.first + start * self.stride
        if self.held is not None:
            buf, offset = self.held, offset - self.held_at
        else:
            buf = _read_span(self.path, offset, (count - 1) * self.stride + self.skip + 2 * ny * nx)
            offset = 0
        raw = np.ndarray(
            (count, ny, nx),
            dtype="<i2",
            buffer=buf,
            offset=offset + self.skip,
            strides=(self.stride, 2 * nx, 2),
        )
        out = raw.astype(np.float32)  # then scaled in place: faster than one mixed-type multiply
        out *= np.float32(self.a)
        if self.b:
            out += np.float32(self.b)
        return out


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------

#: Bytes read first: every known header fits (a longer name or comment is read after).
_HEAD_BYTES = 4096


def read(path: Path) -> Scan:
    path = Path(path)
    stat = path.stat()
    file_size = stat.st_size
    with open(path, "rb") as fh:
        buf = fh.read(min(file_size, _HEAD_BYTES))
        if len(buf) < 4:
            raise ReaderError(path, "file is too short for an .asd header")
        want = _header_extent(buf)  # a long name/comment: read the whole header (bounded)
        if len(buf) < want:
            buf += fh.read(min(want, file_size, _MAX_HEADER) - len(buf))
        hdr, data_start = parse_header(path, buf, file_size)

        nx, ny, nframes = hdr["x_pixels"], hdr["y_pixels"], hdr["num_frames"]
        if nframes <= 0:
            raise ReaderError(path, f"the movie holds no frame (header declares {nframes} frames)")
        check_shape(path, (ny, nx), "frame")
        frame_header = hdr["frame_header_size"]
        if not 0 <= frame_header <= 4096:
            raise ReaderError(path, f"corrupt header: frame header size {frame_header} bytes")
        kinds = [hdr["kind_1ch"]] + ([hdr["kind_2ch"]] if hdr["kind_2ch"] else [])
        stride = frame_header + 2 * nx * ny
        need = data_start + len(kinds) * nframes * stride
        if need > file_size:
            whole = (file_size - data_start) // stride if file_size > data_start else 0
            raise ReaderError(
                path,
                f"file is truncated: the header declares {len(kinds)} channel(s) x {nframes} frames of "
                f"{ny} x {nx} pixels ({need} bytes) but the file holds {file_size} bytes "
                f"({whole} complete frames)",
            )
        held = None
        if is_small(
            len(kinds) * nframes * ny * nx * 4
        ):  # every channel's frames in one read, held (movie.py)
            held = _read_span(str(path), data_start, need - data_start, fh)
        # frame 0's frame header of each channel (tilt, offsets): a few bytes
        first_headers = []
        for c in range(len(kinds)):
            info = {}
            if frame_header >= _FRAME_HEADER_SIZE:
                at = data_start + c * nframes * stride
                if held is not None:
                    info = _unpack(_FRAME_HEADER, held, at - data_start)
                else:
                    fh.seek(at)
                    info = _unpack(_FRAME_HEADER, fh.read(_FRAME_HEADER_SIZE))
            first_headers.append(info)

    x_nm, y_nm = hdr["x_range_nm"], hdr["y_range_nm"]
    if x_nm > 0 and y_nm > 0:
        pixel_size, xy_unit = (y_nm / ny, x_nm / nx), "nm"
    else:  # no usable scan size: keep pixels
        pixel_size, xy_unit = (1.0, 1.0), ""
    frame_ms = hdr["frame_time_ms"]
    frame_time_s = frame_ms / 1000.0 if math.isfinite(frame_ms) and frame_ms > 0 else None

    base = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    header = jsonable(hdr)
    channels = []
    for c, kind in enumerate(kinds):
        try:
            a, b, unit, rule = level_scale(hdr, kind)
        except ValueError as exc:
            raise ReaderError(path, f"cannot convert the {kind} data: {exc}") from None
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ReaderError(path, f"corrupt header: non-finite conversion factors for {kind}")
        name = _KIND_INFO.get(kind, (clean_name(kind) or f"Channel {c + 1}",))[0]
        first = data_start + c * nframes * stride
        source = AsdFrames(str(path), first, stride, frame_header, (nframes, ny, nx), a, b, held, data_start)
        token = hashlib.sha1(f"{base}|{c}".encode()).hexdigest()[:16]
        channels.append(
            Channel(
                data=lazy_movie(source, f"asd-{token}"),
                name=name,
                role=role_for(name, unit),
                direction=None,
                z_unit=unit,
                pixel_size=pixel_size,
                xy_unit=xy_unit,
                offset=(0.0, 0.0),
                frame_time_s=frame_time_s,
                header={
                    "channel": c + 1,
                    "kind": kind,
                    "conversion": rule,
                    "scale_per_level": a,
                    "offset": b,
                    "data_offset": first,
                    "frame_stride_bytes": stride,
                    "first_frame_header": jsonable(first_headers[c]),
                },
            )
        )
    return Scan(path=str(path), format=FORMAT, channels=channels, header=header)
