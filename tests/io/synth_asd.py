"""Write synthetic high-speed AFM ``.asd`` movies from the format description.

Written independently of the reader (``napari_scanprobe.io.asd``) from the layout libasd and
AFMReader document, so that tests (and the benchmark) can make movies of any size:

* version 1/2 header: 16 ``int32`` (version, header size, frame header size, text encoding,
  operator name size, comment size, channel kinds, initial/number of frames, scan direction,
  file id, x/y pixels, x/y scan range nm), ``bool`` averaged, ``int32`` window, 6 ``int32``
  date, 2 ``int32`` rounding degrees, ``float32`` frame time (ms), sensor sensitivity,
  phase sensitivity, ``int32`` offset, 12 booked bytes, ``int32`` machine id, AD range code,
  AD bits, 6 ``float32`` (max ranges, x/y/z piezo extension, z piezo gain), then operator
  name and comment (version 2: then extra ``int32`` fields; the data start at the header
  size either way);
* version 0 header: ``int16`` kinds, ``int16`` pixels/ranges, ``uint8`` date fields, operator
  name, then sensitivities and scan direction, then ``comment_offset_size`` bytes and the
  comment; the data start right after it;
* data: all frames of channel 1, then all frames of channel 2; each frame is a 32-byte frame
  header plus ``y * x`` ``int16`` ADC levels.

``frames`` are raw ADC levels (cast to ``int16``). :func:`expected_values` converts them to
physical values by AFMReader's rule, for comparison with what the reader returns.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

KIND_CODES = {"TP": 0x5054, "ER": 0x5245, "PH": 0x4850}

#: AD range code -> (bipolar?, volts)
AD_RANGES = {
    0x1: (False, 1.0), 0x2: (False, 2.5), 0x3: (False, 9.99), 0x4: (False, 5.0),
    0x10000: (True, 1.0), 0x20000: (True, 2.5), 0x40000: (True, 5.0),
}  # fmt: skip


#: The default calibration of :func:`write_asd` (what :func:`expected_values` assumes).
AD_BITS = 12
Z_PIEZO_EXTENSION = 10.0
Z_PIEZO_GAIN = 2.0
SENSOR_SENSITIVITY = 1.5
PHASE_SENSITIVITY = 3.0


def write_asd(
    path,
    frames: np.ndarray,
    *,
    channels: tuple[str, ...] = ("TP",),
    version: int = 1,
    n_frames: int | None = None,
    scan_size_nm: tuple[int, int] | None = None,
    frame_time_ms: float = 100.0,
    ad_range: int = 0x20000,
    ad_bits: int = AD_BITS,
    z_piezo_extension: float = Z_PIEZO_EXTENSION,
    z_piezo_gain: float = Z_PIEZO_GAIN,
    sensor_sensitivity: float = SENSOR_SENSITIVITY,
    phase_sensitivity: float = PHASE_SENSITIVITY,
    operator: str = "Anonymous",
    comment: str = "",
    text_encoding: int = 932,
    scan_direction: int = 1,
    frame_header_size: int = 32,
    comment_offset_size: int = 0,
) -> Path:
    """Write an ``.asd`` movie and return its path.

    ``frames``: ``(t, y, x)`` ADC levels for one channel, ``(channels, t, y, x)`` for several,
    or a single ``(y, x)`` frame. With ``n_frames``, the given frames are cycled to that many
    frames (a 10,000-frame benchmark movie without a 10,000-frame array in memory); each
    frame is streamed to the file, so memory stays at one frame.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] != len(channels):
        raise ValueError(f"frames of shape {frames.shape} do not fit channels {channels}")
    if not 1 <= len(channels) <= 2:
        raise ValueError("an .asd file holds one or two channels")
    if frame_header_size < 32:
        raise ValueError("frame header size must be at least 32")
    n_ch, given, ny, nx = frames.shape
    total = int(n_frames) if n_frames is not None else given
    x_nm, y_nm = scan_size_nm if scan_size_nm is not None else (nx, ny)
    codec = "shift_jis" if text_encoding == 932 else "utf-8"
    name = operator.encode(codec)
    note = comment.encode(codec)
    kind1 = KIND_CODES[channels[0]]
    kind2 = KIND_CODES[channels[1]] if len(channels) > 1 else 0

    if version == 0:
        head = struct.pack(
            "<ihhiiiiihhhhfffIi?ihhBBBBBBffiiiiiih",
            0, kind1, kind2, 0, frame_header_size, len(name), comment_offset_size, len(note),
            nx, ny, x_nm, y_nm, frame_time_ms, z_piezo_extension, z_piezo_gain, ad_range, ad_bits,
            True, 1, 0, 2024, 5, 6, 7, 8, 9, 0, 1000.0, 1000.0, 0, 0, 0, total, total, 2, 7,
        )  # fmt: skip
        head += name + struct.pack("<ffi", sensor_sensitivity, phase_sensitivity, scan_direction)
        head += b"\x00" * comment_offset_size + note
        # real version-0 files carry an unreliable header size: write a wrong one on purpose
        head = head[:8] + struct.pack("<i", len(head) + 99) + head[12:]
    elif version in (1, 2):
        fixed = struct.pack(
            "<iiiiiiiiiiiiiiii?iiiiiiiiifffi12xiIiffffff",
            version, 0, frame_header_size, text_encoding, len(name), len(note), kind1, kind2,
            total, total, scan_direction, 7, nx, ny, x_nm, y_nm, True, 1, 2024, 5, 6, 7, 8, 9, 2, 3,
            frame_time_ms, sensor_sensitivity, phase_sensitivity, 0, 2, ad_range, ad_bits,
            1000.0, 1000.0, 10.0, 10.0, z_piezo_extension, z_piezo_gain,
        )  # fmt: skip
        head = fixed + name + note
        if version == 2:  # number of frames, feed-forward, colour scale, no anchor points
            head += struct.pack("<iiidiiiii", total, 0, 0, 0.0, 255, 0, 0, 0, 0)
        head = head[:4] + struct.pack("<i", len(head)) + head[8:]
    else:
        raise ValueError(f"version {version} is not 0, 1 or 2")

    with open(path, "wb") as fh:
        fh.write(head)
        for c in range(n_ch):
            for t in range(total):
                frame = np.ascontiguousarray(frames[c, t % given], dtype="<i2")
                fh.write(
                    struct.pack(
                        "<ihhhhff?bhii",
                        t + 1,
                        int(frame.max()),
                        int(frame.min()),
                        0,
                        0,
                        0.0,
                        0.0,
                        False,
                        0,
                        0,
                        0,
                        0,
                    )
                )
                fh.write(b"\x00" * (frame_header_size - 32))
                fh.write(frame.tobytes())
    return path


def expected_values(levels: np.ndarray, kind: str = "TP", *, ad_range: int = 0x20000) -> np.ndarray:
    """AFMReader's conversion of ADC levels to nm (TP, ER) or degrees (PH), for a file written
    by :func:`write_asd` with its default calibration."""
    bipolar, volts = AD_RANGES[ad_range]
    resolution = 2.0**AD_BITS
    coef = {
        "TP": np.float32(Z_PIEZO_GAIN) * np.float64(np.float32(Z_PIEZO_EXTENSION)),
        "ER": -np.float64(np.float32(SENSOR_SENSITIVITY)),
        "PH": -np.float64(np.float32(PHASE_SENSITIVITY)),
    }[kind]
    levels = np.asarray(levels, dtype=np.float64)
    if bipolar:
        return (volts - 2.0 * levels * volts / resolution) * coef
    return levels * (-volts / resolution * coef)
