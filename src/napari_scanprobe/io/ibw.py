"""Igor binary waves (``.ibw``), as written by Asylum Research (Oxford Instruments) AFMs.

The file layout is WaveMetrics' Technical Note PTN003 ("Igor binary wave format"); the
Asylum-specific conventions follow Gwyddion's ``igorfile.c`` (the reference the test suite
compares against). The header is parsed here directly -- it is small and fixed -- so no
third-party parser is imported.

Layout of a version-5 file (the only version that can hold images)::

    BinHeader5   64 bytes   version, checksum, wfmSize, sizes of the trailing sections
    WaveHeader5 320 bytes   npnts, type, wave name, nDim[4], sfA[4], sfB[4], units ...
    wave data   wfmSize - 320 bytes, Igor "column-major": dimension 0 varies fastest
    formula, note, extended data units, extended dimension units[4],
    dimension labels[4] (32-byte names; label 0 names the dimension itself), string indices,
    then (Asylum only) a colour palette and a ``key:value;`` footer ending in "MFP3D"/"Force".

Rules (all as Gwyddion 2.62 reads these files):

* Byte order: the low byte of the 16-bit version field is non-zero in little-endian files.
  The checksum -- the 16-bit sum of BinHeader + WaveHeader (v5: 384 bytes; v1/v2/v3:
  8/16/20 + 126 bytes, the first 16 data bytes included) -- must be 0; the sniffer claims
  only files with version 1, 2, 3 or 5 that pass it.
* Images: ``nDim = (xres, yres, nchannels, 0)``. Dimension 0 (Igor "rows") is x and varies
  fastest, so each channel is a block ``(yres, xres)``; Igor's y axis points up, so the block
  is flipped vertically to make row 0 the top row as Gwyddion shows it.
  A 2-D wave with ``nDim[0] == nDim[1]`` is a single-channel image (Gwyddion's rule).
* Pixel size is the wave scaling delta ``sfA`` in the dimension unit (Asylum writes
  ``sfA = ScanSize / (N - 1)``, so the field is ``N * sfA``, a little wider than ScanSize:
  e.g. 128 points over 4 um -> 31.496 nm pixels, 4.0315 um field). Gwyddion does not read the
  offsets ``sfB``; they are kept in the header and the offset is (0, 0), as in Gwyddion.
* Channel names come from the channel-dimension labels ("HeightRetrace" ->
  name "Height", direction "retrace"; "...Trace" -> "trace").
* Value units: the note's ``<Name>Unit`` entry, else a unit implied by the channel name
  (Height/ZSensor/Deflection/Amplitude: m, Phase: deg, Current: A, Frequency: Hz,
  Capacitance: F, Potential: V, anything else: V -- Asylum's ADC channels), else (files
  without a note) the wave's data unit. Count/QFactor channels are dimensionless (Gwyddion
  falls back to the wave's data unit there, typically "m"; that is wrong for a count).
* Declined with a :class:`ReaderError`: 1-D waves and version 1-3 files ("generic Igor
  wave, not an SPM image"), Asylum force curves (2-D waves of curve segments, "force
  curve"), 4-D waves / force maps (volume data), text waves.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, jsonable, role_for
from .units import length_to_nm, value_scale

FORMAT = "ibw"
EXTENSIONS = (".ibw",)

#: Bytes covered by the checksum, per version: BinHeader + WaveHeader (v1-v3 include wData[4]).
_CHECKSUM_SIZE = {1: 8 + 126, 2: 16 + 126, 3: 20 + 126, 5: 64 + 320}
_HEADER5 = 64 + 320  # wave data of a v5 file start here
_LABEL = 32  # MAX_DIM_LABEL_CHARS + 1

#: Igor numeric type codes (without the complex flag 0x01) -> numpy kind and size.
_TYPES = {0x02: "f4", 0x04: "f8", 0x08: "i1", 0x10: "i2", 0x20: "i4", 0x48: "u1", 0x50: "u2", 0x60: "u4"}

#: Asylum channel name prefix -> value unit, used when the note does not state ``<Name>Unit``.
_NAME_UNITS = (
    ("Height", "m"), ("ZSensor", "m"), ("Deflection", "m"), ("Amplitude", "m"), ("Phase", "deg"),
    ("Current", "A"), ("Frequency", "Hz"), ("Capacitance", "F"), ("Potential", "V"),
    ("Count", ""), ("QFactor", ""),
)  # fmt: skip

_DIRECTION = re.compile(r"^(?P<name>.*?)(?P<dir>Retrace|Trace)$")


def _byte_order(head: bytes) -> tuple[str, int] | None:
    """``("<" or ">", version)`` from the first two bytes, or None if no known version."""
    if len(head) < 2:
        return None
    if head[0]:
        order, version = "<", head[0] | head[1] << 8
    else:
        order, version = ">", head[1]
    return (order, version) if version in _CHECKSUM_SIZE else None


def _checksum_ok(head: bytes, order: str, version: int) -> bool:
    size = min(_CHECKSUM_SIZE[version], len(head)) // 2 * 2
    if size < 2:
        return False
    return int(np.frombuffer(head, dtype=order + "u2", count=size // 2).sum()) & 0xFFFF == 0


def sniff(path: Path, head: bytes) -> bool:
    try:
        found = _byte_order(head)
        if found is None:
            return False
        order, version = found
        if version == 5:
            if len(head) < _HEADER5:
                return False
            wtype = struct.unpack_from(order + "h", head, 64 + 16)[0]
            if wtype != 0 and wtype & ~0x01 not in _TYPES:
                return False
        elif len(head) < _CHECKSUM_SIZE[version] - 16:  # header without the wData[4] tail
            return False
        return _checksum_ok(head, order, version)
    except Exception:
        return False


def _text(raw: bytes) -> str:
    return clean_name(decode(raw.split(b"\x00", 1)[0]))


_NOTE_LINE = re.compile(r"([^:\r\n]+):([^\r\n]*)")


def _parse_note(text: str) -> dict[str, str]:
    """Asylum's note: ``Key: value`` lines separated by CR."""
    note = {}
    for key, value in _NOTE_LINE.findall(text):
        key = key.strip()
        if key:
            note[key] = value.strip()
    return note


def _note_for(note: dict[str, str] | None, name: str) -> dict[str, str]:
    """The note entries that belong to one channel (``PhaseOffset``, ``UserIn0Unit`` ...)."""
    if not note or not name:
        return {}
    return {key: value for key, value in note.items() if key.startswith(name)}


def _split_title(title: str) -> tuple[str, str | None]:
    """``"HeightRetrace"`` -> ``("Height", "retrace")``."""
    m = _DIRECTION.match(title)
    if m and m.group("name"):
        return m.group("name"), m.group("dir").lower()
    return title, None


def _unit_for(name: str, note: dict[str, str] | None, wave_unit: str) -> tuple[str, str]:
    """The value unit of a channel and where it came from."""
    if note is None:
        return wave_unit, "wave"
    stated = note.get(f"{name}Unit")
    if stated:
        return stated, "note"
    bare = name[3:] if name.startswith(("DAC", "Nap")) else name
    for prefix, unit in _NAME_UNITS:
        if bare.startswith(prefix):
            return unit, "name"
    return "V", "name"


def _footer(buf: bytes) -> dict[str, str]:
    """Asylum's trailing ``key:value;`` footer: the printable text run ending the file."""
    tail = buf[-4096:]
    if not (tail.endswith(b"MFP3D") or tail.endswith(b"Force")):
        return {}
    printable = re.search(rb"[\x20-\x7e]*\Z", tail)  # always matches, if only the empty run
    text = printable.group().decode("ascii") if printable else ""
    out: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition(":")
        key = key.strip()
        if sep and key and len(key) < 64 and key.replace("_", "").replace(" ", "").isalnum():
            out[key] = value.strip()
    out["variant"] = tail[-5:].decode("ascii")
    return out


def read(path: Path) -> Scan:
    path = Path(path)
    buf = path.read_bytes()
    size = len(buf)
    found = _byte_order(buf[:2])
    if found is None:
        raise ReaderError(path, "not an Igor binary wave (unknown version field)")
    order, version = found
    if size < min(_CHECKSUM_SIZE[version], _HEADER5) - 16 or (version == 5 and size < _HEADER5):
        raise ReaderError(path, f"file is truncated: {size} bytes cannot hold an Igor wave header")
    if not _checksum_ok(buf[: _CHECKSUM_SIZE[version]], order, version):
        raise ReaderError(path, "not an Igor binary wave (header checksum mismatch)")
    if version != 5:
        raise ReaderError(
            path, f"generic Igor wave (binary wave version {version} holds only 1-D data), not an SPM image"
        )

    # ---- BinHeader5 + WaveHeader5 ----
    (_, _, wfm_size, formula_size, note_size, data_eunits_size) = struct.unpack_from(order + "hhIIII", buf, 0)
    dim_eunits_size = struct.unpack_from(order + "4I", buf, 20)
    dim_labels_size = struct.unpack_from(order + "4I", buf, 36)
    indices_size = struct.unpack_from(order + "I", buf, 52)[0]
    w = 64
    npnts, wtype = struct.unpack_from(order + "Ih", buf, w + 12)
    wave_name = _text(buf[w + 28 : w + 60])
    n_dim = struct.unpack_from(order + "4i", buf, w + 68)
    sf_a = struct.unpack_from(order + "4d", buf, w + 84)
    sf_b = struct.unpack_from(order + "4d", buf, w + 116)
    data_units = _text(buf[w + 148 : w + 152])
    dim_units = [_text(buf[w + 152 + 4 * i : w + 156 + 4 * i]) for i in range(4)]

    header = {
        "version": version,
        "byte_order": "little" if order == "<" else "big",
        "wave_name": wave_name,
        "npnts": npnts,
        "type": wtype,
        "n_dim": list(n_dim),
        "sfA": list(sf_a),
        "sfB": list(sf_b),
        "data_units": data_units,
        "dim_units": dim_units,
        "wfm_size": wfm_size,
    }

    # ---- shape: image, curve, volume ----
    if any(n < 0 for n in n_dim):
        raise ReaderError(path, f"corrupt Igor header: negative dimension {tuple(n_dim)}")
    if n_dim[0] == 0:
        raise ReaderError(path, "Igor wave holds no data points")
    footer = _footer(buf)
    is_force = footer.get("variant") == "Force" or footer.get("IsForce") == "1"
    if n_dim[3]:
        raise ReaderError(
            path, f"Igor wave is 4-D volume data {tuple(n_dim)} (e.g. a force map), not an image"
        )
    if n_dim[1] == 0:
        raise ReaderError(path, f"generic Igor wave (1-D, {n_dim[0]} points), not an SPM image")
    if n_dim[2] == 0:
        if is_force:
            raise ReaderError(path, f"force curve ({n_dim[1]} curves of {n_dim[0]} points), not an image")
        if n_dim[0] != n_dim[1]:
            raise ReaderError(
                path, f"generic Igor wave ({n_dim[1]} curves of {n_dim[0]} points), not an SPM image"
            )
        n_dim = (n_dim[0], n_dim[1], 1, 0)  # Gwyddion: a square 2-D wave is one image
    if is_force:
        raise ReaderError(path, "force curve data, not an image")
    xres, yres, nchan = n_dim[0], n_dim[1], n_dim[2]
    check_shape(path, (nchan, yres, xres), "Igor image")

    base = wtype & ~0x01
    if wtype == 0:
        raise ReaderError(path, "Igor text wave, not an SPM image")
    if base not in _TYPES:
        raise ReaderError(path, f"unsupported Igor data type 0x{wtype:02x}")
    is_complex = bool(wtype & 0x01)
    dtype = np.dtype(order + _TYPES[base])
    item = dtype.itemsize * (2 if is_complex else 1)
    if npnts != xres * yres * nchan:
        raise ReaderError(
            path, f"corrupt Igor header: {npnts} points do not match dimensions {xres}x{yres}x{nchan}"
        )
    data_bytes = npnts * item
    if wfm_size < 320 + data_bytes:
        raise ReaderError(path, f"corrupt Igor header: wave size {wfm_size} is too small for {npnts} points")

    # the pixel data (array_from raises a ReaderError when the file is too short)
    raw = array_from(path, buf, _HEADER5, dtype, (npnts * (2 if is_complex else 1),), "Igor wave data")

    # ---- trailing sections, each bounds-checked against the file size ----
    pos = 64 + wfm_size
    sections: dict[str, bytes] = {}
    names = ["formula", "note", "data_eunits", *(f"dim_eunits{i}" for i in range(4))]
    names += [*(f"dim_labels{i}" for i in range(4)), "indices"]
    sizes = [formula_size, note_size, data_eunits_size, *dim_eunits_size, *dim_labels_size, indices_size]
    for name, n in zip(names, sizes):
        if n > size - pos:
            what = name.rstrip("0123").replace("_", " ")
            raise ReaderError(
                path, f"file is truncated: the Igor {what} section needs {n} bytes at offset {pos}"
            )
        sections[name] = buf[pos : pos + n]
        pos += n

    note_text = decode(sections["note"]) if sections["note"] else ""
    note = _parse_note(note_text) if note_text else None
    if sections["data_eunits"]:
        data_units = _text(sections["data_eunits"]) or data_units
    for i in range(4):
        if sections[f"dim_eunits{i}"]:
            dim_units[i] = _text(sections[f"dim_eunits{i}"]) or dim_units[i]
    labels_raw = sections["dim_labels2"]
    labels = [_text(labels_raw[k : k + _LABEL]) for k in range(0, len(labels_raw) // _LABEL * _LABEL, _LABEL)]
    header.update(
        {
            "data_units": data_units,
            "dim_units": dim_units,
            "formula": decode(sections["formula"]),
            "labels": labels,
            "footer": footer,
        }
    )
    header = jsonable(header)
    header["note"] = note or {}  # str -> str already

    # ---- lateral calibration: the wave scaling delta sfA ----
    xy_unit = "nm"
    try:
        dx = length_to_nm(abs(sf_a[0]), dim_units[0] or None)
        dy = length_to_nm(abs(sf_a[1]), dim_units[1] or dim_units[0] or None)
    except ValueError:  # no lateral length unit: keep the wave's own numbers
        xy_unit, dx, dy = "", abs(sf_a[0]), abs(sf_a[1])
    if not (np.isfinite(dx) and dx > 0):
        dx = 1.0
    if not (np.isfinite(dy) and dy > 0):
        dy = 1.0

    # ---- channels ----
    metas = []
    for k in range(nchan):
        title = labels[k + 1] if k + 1 < len(labels) and labels[k + 1] else ""
        if not title:
            title = wave_name if nchan == 1 else f"{wave_name or 'Channel'} {k + 1}"
        name, direction = _split_title(title)
        unit_text, unit_source = _unit_for(name, note, data_units)
        factor, z_unit = value_scale(unit_text)
        own = _note_for(note, name)
        metas.append((title, name, direction, unit_text, unit_source, factor, z_unit, own))

    # one vectorised conversion for all layers: (layer, y, x), flipped to top-row-first, scaled
    factors = np.array([m[5] for m in metas], dtype=np.float64)[:, None, None]
    parts = [("", raw[0::2] if is_complex else raw)]
    if is_complex:
        parts.append((" (imaginary)", raw[1::2]))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf pixels stay NaN/inf, silently
        converted = [
            (suffix, np.multiply(values.reshape(nchan, yres, xres)[:, ::-1], factors, dtype=np.float64))
            for suffix, values in parts
        ]
    channels = []
    for k, (title, name, direction, unit_text, unit_source, _, z_unit, own) in enumerate(metas):
        for suffix, layers in converted:
            channels.append(
                Channel(
                    data=layers[k],
                    name=name + suffix,
                    role=role_for(name, z_unit) if not suffix else None,
                    direction=direction,
                    z_unit=z_unit,
                    pixel_size=(dy, dx),
                    xy_unit=xy_unit,
                    offset=(0.0, 0.0),
                    header={
                        "label": title,
                        "layer": k,
                        "unit": unit_text,
                        "unit_source": unit_source,
                        "note": own,
                    },
                )
            )
    return Scan(path=str(path), format=FORMAT, channels=channels, header=header)
