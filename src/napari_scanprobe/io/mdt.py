"""NT-MDT ``.mdt`` files (Nova, Nova Px): a chain of frames, 2-D scans among them.

Layout (all little-endian; learned from Gwyddion's ``nt-mdt.c``, which is the reference)::

    file header, 33 bytes   magic 01 b0 93 ff, u32 size of the rest of the file (file size - 33),
                            4 reserved, u16 number of frames - 1, reserved
    frame i                 u32 frame size (header included), u16 frame type,
                            2 bytes version (major, minor), 6 x u16 date/time,
                            u16 size of the frame's variable block    -- 22 bytes in all
      type 0  "scanned"     axis scales: 3 x (f32 offset, f32 step, i16 unit code) for x, y, z;
                            scan variables (ADC mode, resolution, bias, setpoint ...);
                            frame mode (u16 mode, nx, ny, number of dots) after the variable
                            block; optional dots; int16 image nx*ny; u32 + cp1251 title;
                            u32 + UTF-16LE XML comment
      type 106 "MDA"        (Nova Px) record with a cp1251 title, a UTF-16LE XML comment and
                            a calibration per dimension and per measurand (unit, scale, bias,
                            index range, data type); the cells follow the calibrations
      others                spectroscopy (1), text (3), old MDA (105), palette (107),
                            new curves (190), curves (201) -- no images, skipped

Rules (Gwyddion's, so that both agree):

* Channels: every type-0 frame and every MDA frame with 2 dimensions and 1 measurand, in file
  order. Spectroscopy, curves, text, palettes and 3-D (Raman) MDA bricks are skipped and listed
  in ``Scan.header["skipped_frames"]``.
* Values: ``offset + step * raw`` in the z unit of the frame (MDA: ``bias + scale * raw``).
* Lateral size: scanned frames ``|step| * n`` (the x unit serves both axes, as in Gwyddion);
  MDA frames ``scale * (n - 1)`` -- Nova Px writes the scan size over ``n - 1`` intervals,
  Gwyddion spans the field over exactly that size, so a pixel is ``scale * (n - 1) / n``.
* Offsets: Gwyddion ignores the axis offsets (the scanner position), so offset is (0, 0); the
  raw offsets stay in the channel header.
* Orientation: the file stores the bottom row first; rows are flipped so row 0 is the top.
* Names: Nova titles read ``"<pass><F|B>:<signal>"`` (``"1F:Iprobe"``): the name is the signal
  (``"Iprobe"``), F/B give the direction forward/backward, the pass number and the full title
  (Gwyddion shows ``"1F:Iprobe (2)"``, the 2 being the frame number) stay in the header. An
  untitled frame is named after its unit as Gwyddion does (m -> Topography, A -> Current ...),
  else after its ADC mode.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable, role_for
from .units import value_scale

FORMAT = "mdt"
EXTENSIONS = (".mdt",)

MAGIC = b"\x01\xb0\x93\xff"
FILE_HEADER_SIZE = 33  # documented as 32, but frame 0 starts at byte 33 in every file
FRAME_HEADER_SIZE = 22
AXIS_SCALES_SIZE = 30
SCAN_VARS_MIN_SIZE = 77
FRAME_MODE_SIZE = 8
MDA_CALIBRATION_FIXED = 76  # bytes of fixed fields in an MDA calibration record

FRAME_SCANNED, FRAME_SPECTROSCOPY, FRAME_TEXT = 0, 1, 3
FRAME_OLD_MDA, FRAME_MDA, FRAME_PALETTE, FRAME_CURVES_NEW, FRAME_CURVES = 105, 106, 107, 190, 201
FRAME_TYPE_NAMES = {
    FRAME_SCANNED: "scanned",
    FRAME_SPECTROSCOPY: "spectroscopy",
    FRAME_TEXT: "text",
    FRAME_OLD_MDA: "old MDA",
    FRAME_MDA: "MDA",
    FRAME_PALETTE: "palette",
    FRAME_CURVES_NEW: "new curves",
    FRAME_CURVES: "curves",
}

#: NT-MDT unit codes (axis scales of scanned frames).
UNIT_CODES = {
    -10: "1/cm", -5: "m", -4: "cm", -3: "mm", -2: "µm", -1: "nm", 0: "Å", 1: "nA", 2: "V",
    3: "", 4: "kHz", 5: "deg", 6: "%", 7: "°C", 8: "V", 9: "s", 10: "ms", 11: "µs", 12: "ns",
    13: "", 14: "px", 20: "A", 21: "mA", 22: "µA", 23: "nA", 24: "pA", 25: "V", 26: "mV",
    27: "µV", 28: "nV", 29: "pV", 30: "N", 31: "mN", 32: "µN", 33: "nN", 34: "pN",
}  # fmt: skip

#: MDA calibrations without a unit string carry an SI code instead.
MDA_SI_CODES = {0x1: "", 0x101: "m", 0x100001: "A", 0xFFFD010200: "V", 0x1000001: "s"}

#: MDA cell data types -> numpy dtypes (48/80-bit and fixed-point floats are not supported).
MDA_DTYPES = {
    -1: "i1", 1: "u1", -2: "<i2", 2: "<u2", -4: "<i4", 4: "<u4", -8: "<i8", 8: "<u8",
    -(4 + 23 * 256): "<f4", -(8 + 52 * 256): "<f8",
}  # fmt: skip

#: ADC mode (``s_mode``) of a scanned frame.
ADC_MODES = {
    -1: "Off", 0: "Height", 1: "DFL", 2: "Lateral F", 3: "Bias V", 4: "Current", 5: "FB-Out",
    6: "MAG", 7: "MAG*Sin", 8: "MAG*Cos", 9: "RMS", 10: "CalcMag", 11: "Phase1", 12: "Phase2",
    13: "CalcPhase", 14: "Ex1", 15: "Ex2", 16: "HvX", 17: "HvY", 18: "Snap Back",
}  # fmt: skip

#: Gwyddion's title for an untitled channel, by its SI value unit.
FALLBACK_TITLES = {"m": "Topography", "A": "Current", "deg": "Phase", "V": "Voltage", "N": "Force"}

_TITLE_RE = re.compile(r"^\s*(\d*)\s*([FB])\s*:\s*(.+?)\s*$")

_SCALES = struct.Struct("<ffhffhffh")
_SCAN_VARS = struct.Struct("<BBHHHfHBBBBBBfffBxiiB")
_FRAME_HEAD = struct.Struct("<IH2B6HH")
_MDA_HEAD = struct.Struct("<II36x6I4xI")
_MDA_STRUCT = struct.Struct("<QIII")
_MDA_CAL = struct.Struct("<IIIIIQd8xddQQiI")


def sniff(path: Path, head: bytes) -> bool:
    return head[:4] == MAGIC


def _frame_date(fields) -> str:
    year, month, day, hour, minute, sec = fields
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{sec:02d}"


def _split_title(title: str) -> tuple[str, str | None, str | None]:
    """``"1F:Iprobe"`` -> ``("Iprobe", "forward", "1")``; other titles are kept whole."""
    match = _TITLE_RE.match(title)
    if not match:
        return clean_name(title), None, None
    passno, fb, signal = match.groups()
    return clean_name(signal), ("forward" if fb == "F" else "backward"), passno or None


def _name_for(title: str, z_unit_si: str, adc_mode: str | None) -> tuple[str, str | None, str | None]:
    name, direction, passno = _split_title(title) if title else ("", None, None)
    if not name:
        name = FALLBACK_TITLES.get(z_unit_si) or adc_mode or "Unknown channel"
    return name, direction, passno


def _si_of(unit: str) -> str:
    """The SI unit Gwyddion would report for a file unit (metres stay metres here)."""
    factor, shown = value_scale(unit)
    return "m" if shown == "nm" else shown


def _trailing_strings(buf: bytes, p: int, end: int) -> tuple[str, str]:
    """The title (cp1251) and the XML comment (UTF-16LE) that may follow a scanned image."""
    title = xml = ""
    if end - p > 4:
        (tlen,) = struct.unpack_from("<I", buf, p)
        p += 4
        if tlen and end - p >= tlen:
            title = decode(buf[p : p + tlen], ("cp1251", "latin-1"))
            p += tlen
    if end - p > 4:
        (xlen,) = struct.unpack_from("<I", buf, p)
        p += 4
        if xlen and end - p >= xlen:
            xml = buf[p : p + xlen].decode("utf-16-le", errors="replace").lstrip("\ufeff")
    return title, xml


def _scanned_frame(path: Path, buf: bytes, fstart: int, fend: int, var_size: int, number: int, info: dict):
    if var_size < AXIS_SCALES_SIZE + SCAN_VARS_MIN_SIZE:
        raise ReaderError(path, f"frame {number} is too short for a scanned-data header (corrupt file)")
    p = fstart + FRAME_HEADER_SIZE
    xo, xs, xu, yo, ys, yu, zo, zs, zu = _SCALES.unpack_from(buf, p)
    v = _SCAN_VARS.unpack_from(buf, p + AXIS_SCALES_SIZE)
    (adc, dev, s_nx, s_ny, ndacq, step_len, adt, adc_gain, adc_index, s16, s17, scan_dir, pow2, velocity,
     setpoint, bias, draw, xoff, yoff, nl_corr) = v  # fmt: skip

    p = fstart + FRAME_HEADER_SIZE + var_size
    if p + FRAME_MODE_SIZE > fend:
        raise ReaderError(path, f"frame {number} is too short for its frame-mode block (corrupt file)")
    fm_mode, nx, ny, ndots = struct.unpack_from("<4H", buf, p)
    p += FRAME_MODE_SIZE
    if ndots:
        p += 14 + 16 * ndots
    check_shape(path, (ny, nx), f"scanned frame {number}")
    image_at = p
    p += 2 * nx * ny
    if p > fend:
        raise ReaderError(
            path,
            f"file is truncated or corrupt: frame {number} declares a {nx} x {ny} image larger than the frame",
        )
    title, xml = _trailing_strings(buf, p, fend)

    x_unit, y_unit, z_unit = UNIT_CODES.get(xu, ""), UNIT_CODES.get(yu, ""), UNIT_CODES.get(zu, "")
    xs = abs(xs) or 1.0  # Gwyddion: a zero step becomes 1
    ys = abs(ys) or 1.0
    zs = zs or 1.0
    fxy, xy_unit = value_scale(x_unit)  # Gwyddion uses the x unit for both axes
    fz, z_shown = value_scale(z_unit)

    raw = array_from(path, buf, image_at, "<i2", (ny, nx), f"scanned frame {number}")
    data = raw[::-1] * (zs * fz) + zo * fz  # bottom row first in the file

    adc_mode = ADC_MODES.get(adc if adc < 128 else adc - 256)
    name, direction, passno = _name_for(title, _si_of(z_unit), adc_mode)
    header = dict(info)
    header.update(
        title=title,
        gwyddion_title=f"{title} ({number})" if title else None,
        scan_pass=passno,
        axis_scales={
            "x": {"offset": xo, "step": xs, "unit": x_unit, "unit_code": xu},
            "y": {"offset": yo, "step": ys, "unit": y_unit, "unit_code": yu},
            "z": {"offset": zo, "step": zs, "unit": z_unit, "unit_code": zu},
        },
        adc_mode=adc_mode,
        adc_index=adc_index + 1,
        mode="AFM" if dev == 1 else "STM" if dev == 0 else dev,
        resolution_vars=[s_nx, s_ny],
        step_dac=ndacq,
        step_length_nm=step_len * 0.1,
        adt=adt,
        adc_gain_log10=adc_gain,
        s16=s16,
        s17=s17,
        scan_direction=(
            f"{'Horizontal' if scan_dir & 1 else 'Vertical'}, {'Left' if scan_dir & 2 else 'Right'} "
            f"{'Bottom' if scan_dir & 4 else 'Top'}{' (double pass)' if scan_dir & 0x80 else ''}"
        ),
        power_of_2=bool(pow2),
        velocity_nm_per_s=velocity * 0.1,
        setpoint_nA=setpoint,
        bias_voltage_V=bias,
        draw=bool(draw),
        offset_dac=[xoff, yoff],
        nonlinearity_correction=bool(nl_corr),
        frame_mode=fm_mode,
        dots=ndots,
        data_offset=image_at,
        xml_comment=xml,
    )
    return _channel(data, name, direction, z_shown, (ys * fxy, xs * fxy), xy_unit, header)


def _mda_calibration(path: Path, buf: bytes, p: int, fend: int, number: int) -> tuple[dict, int]:
    if p + 8 + MDA_CALIBRATION_FIXED > fend:
        raise ReaderError(path, f"file is truncated or corrupt: MDA frame {number} ends inside a calibration")
    (tot_len, struct_len, name_len, comment_len, unit_len, si_code, accuracy, bias, scale, min_index,
     max_index, data_type, author_len) = _MDA_CAL.unpack_from(buf, p)  # fmt: skip
    q = p + 8 + struct_len
    if tot_len < 8 + MDA_CALIBRATION_FIXED or p + tot_len > fend or struct_len < MDA_CALIBRATION_FIXED:
        raise ReaderError(path, f"MDA frame {number} has a corrupt calibration record")
    texts = []
    for length in (name_len, comment_len, unit_len, author_len):
        if q + length > p + tot_len:
            raise ReaderError(path, f"MDA frame {number} has a corrupt calibration record")
        texts.append(decode(buf[q : q + length], ("utf-8", "cp1251")) if length else "")
        q += length
    name, comment, unit, author = texts
    if not unit:
        unit = MDA_SI_CODES.get(si_code, "")
    cal = {
        "name": name,
        "comment": comment,
        "unit": unit,
        "author": author,
        "si_code": si_code,
        "accuracy": accuracy,
        "bias": bias,
        "scale": scale,
        "min_index": min_index,
        "max_index": max_index,
        "data_type": data_type,
    }
    return cal, p + tot_len


def _mda_frame(path: Path, buf: bytes, fstart: int, fend: int, number: int, info: dict):
    """The channel of a 2-D MDA frame, or a string saying why the frame is no image."""
    r = fstart + FRAME_HEADER_SIZE
    if r + _MDA_HEAD.size > fend:
        raise ReaderError(
            path, f"file is truncated or corrupt: MDA frame {number} is too short for its header"
        )
    head_size, _tot, name_size, comm_size, view_size, spec_size, source_size, var_size, data_size = (
        _MDA_HEAD.unpack_from(buf, r)
    )
    p = r + head_size
    title = xml = ""
    if name_size and fend - p >= name_size:
        title = decode(buf[p : p + name_size], ("cp1251", "latin-1"))
        p += name_size
    if comm_size and fend - p >= comm_size:
        xml = buf[p : p + comm_size].decode("utf-16-le", errors="replace").lstrip("\ufeff")
        p += comm_size
    p += spec_size + view_size + source_size
    p += 4  # total size of the variables block
    if p + 4 + _MDA_STRUCT.size > fend:
        raise ReaderError(
            path, f"file is truncated or corrupt: MDA frame {number} ends before its data description"
        )
    (struct_len,) = struct.unpack_from("<I", buf, p)
    p += 4
    array_size, cell_size, ndims, nmeas = _MDA_STRUCT.unpack_from(buf, p)
    p += struct_len
    if ndims != 2 or nmeas != 1:
        kind = (
            "spectrum"
            if ndims + nmeas <= 2
            else "3-D data (Raman/volume)"
            if ndims == 3
            else "non-image data"
        )
        return f"MDA frame with {ndims} dimensions and {nmeas} measurands ({kind})"
    cals = []
    for _ in range(3):
        cal, p = _mda_calibration(path, buf, p, fend, number)
        cals.append(cal)
    xcal, ycal, zcal = cals
    dtype = MDA_DTYPES.get(zcal["data_type"])
    if dtype is None:
        raise ReaderError(
            path, f"MDA frame {number} uses an unsupported cell data type ({zcal['data_type']})"
        )
    nx = xcal["max_index"] - xcal["min_index"] + 1
    ny = ycal["max_index"] - ycal["min_index"] + 1
    if not (0 < nx < 2**31 and 0 < ny < 2**31):
        raise ReaderError(path, f"MDA frame {number} has invalid dimensions ({nx} x {ny})")
    check_shape(path, (ny, nx), f"MDA frame {number}")
    if p + nx * ny * np.dtype(dtype).itemsize > fend:
        raise ReaderError(
            path,
            f"file is truncated or corrupt: MDA frame {number} declares a {nx} x {ny} image larger than the frame",
        )
    raw = array_from(path, buf, p, dtype, (ny, nx), f"MDA frame {number}")

    fxy, xy_unit = value_scale(xcal["unit"])  # Gwyddion uses the x unit for both axes
    fz, z_shown = value_scale(zcal["unit"])
    # Gwyddion: field size = scale * (n - 1), spread over n pixels
    dx = abs(xcal["scale"]) * fxy * ((nx - 1) / nx if nx > 1 else 1.0)
    dy = abs(ycal["scale"]) * fxy * ((ny - 1) / ny if ny > 1 else 1.0)
    data = raw[::-1] * (zcal["scale"] * fz) + zcal["bias"] * fz  # bottom row first in the file

    name, direction, passno = _name_for(title, _si_of(zcal["unit"]), None)
    header = dict(info)
    header.update(
        title=title,
        gwyddion_title=f"{title} ({number})" if title else None,
        scan_pass=passno,
        calibrations={"x": xcal, "y": ycal, "z": zcal},
        array_size=array_size,
        cell_size=cell_size,
        data_size=data_size,
        var_size=var_size,
        data_offset=p,
        xml_comment=xml,
    )
    return _channel(data, name, direction, z_shown, (dy, dx), xy_unit, header)


def _channel(
    data: np.ndarray,
    name: str,
    direction: str | None,
    z_unit: str,
    pixel_size: tuple[float, float],
    xy_unit: str,
    header: dict,
) -> Channel:
    """An MDT image (scan or MDA frame) as a Channel, its header kept."""
    return Channel(
        data=data,
        name=name,
        role=role_for(name, z_unit),
        direction=direction,
        z_unit=z_unit,
        pixel_size=pixel_size,
        xy_unit=xy_unit,
        offset=(0.0, 0.0),
        header=jsonable(header),
    )


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    size = len(buf)
    if buf[:4] != MAGIC:
        raise ReaderError(path, "not an NT-MDT .mdt file (no 01 b0 93 ff signature)")
    if size < FILE_HEADER_SIZE:
        raise ReaderError(
            path, f"file is truncated: {size} bytes, shorter than the 33-byte NT-MDT file header"
        )
    (declared,) = struct.unpack_from("<I", buf, 4)
    (last_frame,) = struct.unpack_from("<H", buf, 12)
    if declared + FILE_HEADER_SIZE > size:
        raise ReaderError(
            path,
            f"file is truncated: the header declares {declared + FILE_HEADER_SIZE} bytes, the file holds {size}",
        )

    frames: list[dict] = []
    skipped: list[dict] = []
    channels: list[Channel] = []
    p = FILE_HEADER_SIZE
    for i in range(last_frame + 1):  # u16 count; every frame advances p by >= 22 bytes
        number = i + 1
        if p + FRAME_HEADER_SIZE > size:
            raise ReaderError(
                path, f"file is truncated: it ends in the header of frame {number} of {last_frame + 1}"
            )
        fsize, ftype, vmaj, vmin, *date, var_size = _FRAME_HEAD.unpack_from(buf, p)
        if fsize < FRAME_HEADER_SIZE:
            raise ReaderError(
                path, f"frame {number} declares an impossible size of {fsize} bytes (corrupt file)"
            )
        fend = p + fsize
        if fend > size:
            raise ReaderError(
                path,
                f"file is truncated: frame {number} needs {fsize} bytes, {size - p} are left in the file",
            )
        if var_size + FRAME_HEADER_SIZE > fsize:
            raise ReaderError(
                path, f"frame {number} declares a variable block larger than the frame (corrupt file)"
            )
        info = {
            "frame": number,
            "frame_type": FRAME_TYPE_NAMES.get(ftype, f"unknown ({ftype})"),
            "frame_version": f"{vmaj}.{vmin}",
            "date": _frame_date(date),
            "frame_size": fsize,
        }
        frames.append(info)
        if ftype == FRAME_SCANNED:
            channels.append(_scanned_frame(path, buf, p, fend, var_size, number, info))
        elif ftype == FRAME_MDA:
            result = _mda_frame(path, buf, p, fend, number, info)
            if isinstance(result, Channel):
                channels.append(result)
            else:
                skipped.append({**info, "reason": result})
        else:
            skipped.append({**info, "reason": f"{info['frame_type']} frame, not an image"})
        p = fend

    if not channels:
        kinds = sorted({f["frame_type"] for f in frames})
        raise ReaderError(
            path,
            f"NT-MDT file holds no 2-D scan, only {', '.join(kinds) or 'no'} frame(s) (spectroscopy/curves/text)",
        )
    header = {"file_size_declared": declared + FILE_HEADER_SIZE, "frame_count": last_frame + 1, "frames": frames,
              "skipped_frames": skipped}  # fmt: skip
    return Scan(path=str(path), format=FORMAT, channels=channels, header=jsonable(header))
