"""Bruker / Veeco / Digital Instruments **Nanoscope** files (``.spm``, ``.000``-``.999``, ``.pfc``).

Layout (NanoScope III .. 9.x):

* A text header of ``\\key: value`` lines (CR LF), grouped in sections that start with
  ``\\*Section name``: ``\\*File list`` (``Version``, ``Data length`` = header size),
  ``\\*Scanner list`` (the ``\\@Sens. Xxx`` soft scales), ``\\*Ciao scan list`` (global
  ``Samps/line``/``Lines``), one ``\\*Ciao image list`` per channel, ``\\*File list end``.
  The first bytes are ``\\*File list`` (binary), ``?*File list`` (pixel data as text),
  ``\\*EC File list`` (electrochemistry) or ``\\*Force file list`` (force curves).
* Binary pixel data at each channel's ``Data offset``/``Data length``: little-endian signed
  integers, bottom row first. ``Bytes/pixel`` sets the LSB divisor ``256**Bytes/pixel``; the
  stored type is 16 bit before version 9.2 and 32 bit from 9.2 on (Gwyddion's rule; when the
  ``Data length`` matches only the other width exactly, that width is used).
* Values (as Gwyddion ``nanoscope.c`` scales them)::

      value = raw / 256**bpp * HardValue(@2:Z scale) * Sens

  where ``\\@2:Z scale: V [Sens. Zsens] (0.0067 V/LSB) 439.9 V`` names the soft scale
  ``Sens. Zsens`` whose value (``\\@Sens. Zsens: V 33.5 nm/V``) is looked up in the scanner
  list, then the scan list. The unit is Sens' unit times the hard value's unit
  (``nm/V * V = nm``); a soft scale without unit leaves the hard value's unit (``V``).
  Pre-4.3 files use ``\\Z scale: <value> <unit>``, NanoScope III v3 files ``Z scale height``
  etc. with controller/scanner constants.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .scan import Channel, ReaderError, Scan, array_from, check_shape, clean_name, decode, role_for
from .units import display_unit, parse_unit

FORMAT = "nanoscope"
EXTENSIONS = (".spm", ".000", ".txt", ".pfc")

_MAGIC_BIN = b"\\*File list"
_MAGIC_TXT = b"?*File list"
_MAGIC_EC = b"\\*EC File list"
_MAGIC_FORCE = b"\\*Force file list"
_MAGICS = (_MAGIC_BIN, _MAGIC_TXT, _MAGIC_EC, _MAGIC_FORCE)

#: From this version on the raw data are 32-bit integers whatever ``Bytes/pixel`` says.
_VERSION_32BIT = 0x09200000

_SCANNER_LISTS = ("scanner list", "microscope list")
_SCAN_LISTS = ("ciao scan list", "afm list", "stm list", "nc afm list")
_IMAGE_LISTS = ("ciao image list", "afm image list", "stm image list", "ncafm image list", "image list")
_FORCE_IMAGE_LISTS = ("ciao force image list",)

_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    """A Nanoscope file starts with its ``\\*File list`` header line (or a variant of it)."""
    try:
        return bool(head) and head.startswith(_MAGICS)
    except Exception:
        return False


# --------------------------------------------------------------------------------------
# Header parsing
# --------------------------------------------------------------------------------------


class _Section:
    """One ``\\*Name`` header section: raw values in file order, looked up case-insensitively."""

    __slots__ = ("name", "raw", "_lower")

    def __init__(self, name: str):
        self.name = name
        self.raw: dict[str, str] = {}
        self._lower: dict[str, str] | None = None

    def get(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if self._lower is None:
                self._lower = {k.lower(): v for k, v in self.raw.items()}
            value = self._lower.get(key.lower())
        return value

    @property
    def kind(self) -> str:
        return self.name.lower()


def _header_length(buf: bytes) -> int | None:
    """``Data length`` of the ``File list`` section: the size of the header in bytes."""
    m = re.search(rb"\\Data length:\s*(\d+)", buf[:4096])
    return int(m.group(1)) if m else None


#: One header line: ``\*Section`` or ``\key: value`` (the key ends at the first colon that is
#: followed by blank space; ``\@2:Z scale`` keeps its ``@2:`` group prefix).
_HEADER_LINE = re.compile(r"^\\(?:\*([^\r\n]*)|((?:@\d:)?[^\r\n]*?):(?=[ \t\r]|$)[ \t]*([^\r\n]*))", re.M)


def _parse_header(text: str) -> tuple[list[_Section], bool]:
    """Split the header text into sections. Returns (sections, saw ``\\*File list end``)."""
    sections: list[_Section] = []
    current: dict[str, str] | None = None
    for name, key, value in _HEADER_LINE.findall(text):
        if key:
            if current is not None:
                current[key.strip()] = value.rstrip()
        elif name or not value:
            name = name.strip()
            if name.lower() == "file list end":
                return sections, True
            section = _Section(name)
            sections.append(section)
            current = section.raw
    return sections, False


def _leading_float(text: str) -> tuple[float | None, str]:
    m = _NUMBER.match(text)
    if not m:
        return None, text
    try:
        return float(m.group(1)), text[m.end() :]
    except ValueError:
        return None, text


class _Value:
    """A parsed header value.

    New style: ``\\@Key: V [SoftScale] (HardScale unit/LSB) HardValue unit``;
    old style: ``\\Key: HardValue unit (HardScale)``.
    """

    __slots__ = ("type", "soft", "hard_scale", "hard_scale_units", "hard_value", "hard_str", "units")

    def __init__(self) -> None:
        self.type = ""
        self.soft: str | None = None
        self.hard_scale: float | None = None
        self.hard_scale_units: str | None = None
        self.hard_value: float | None = None
        self.hard_str = ""
        self.units: str | None = None


def _parse_value(key: str, text: str) -> _Value | None:
    val = _Value()
    text = text.strip()
    if not key.startswith("@"):
        val.type = "old"
        val.hard_str = text
        num, rest = _leading_float(text)
        val.hard_value = num
        if num is not None and rest.startswith(" "):
            rest = rest.strip()
            paren = rest.find("(")
            if paren >= 0:
                hs, tail = _leading_float(rest[paren + 1 :])
                val.hard_scale = hs if tail.strip().startswith(")") else None
                rest = rest[:paren].strip()
            val.units = rest
        return val

    if len(text) < 1 or text[0] not in "VSC" or (len(text) > 1 and not text[1].isspace()):
        return None
    val.type = text[0]
    rest = text[1:].lstrip()
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None
        val.soft = rest[1:end].strip() or None
        rest = rest[end + 1 :].lstrip()
    if rest.startswith("("):
        depth, end = 0, -1
        for i, ch in enumerate(rest):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end < 0:
            return None
        hs, tail = _leading_float(rest[1:end])
        val.hard_scale = hs
        tail = tail.strip()
        if tail.endswith("/LSB"):
            tail = tail[:-4]
        val.hard_scale_units = tail or None
        rest = rest[end + 1 :].lstrip()
    if val.type == "S":
        if len(rest) >= 2 and rest[0] == '"' and rest[-1] == '"':
            rest = rest[1:-1]
        val.hard_str = rest
    else:
        val.hard_str = rest
        num, tail = _leading_float(rest)
        val.hard_value = num
        if val.type == "V" and num is not None:
            tokens = tail.split()
            if len(tokens) == 0:
                val.units = ""
            elif len(tokens) == 1 and tail[:1].isspace():
                val.units = tokens[0]
    return val


def _value(section: _Section | None, key: str) -> _Value | None:
    if section is None:
        return None
    raw = section.get(key)
    if raw is None:
        return None
    return _parse_value(key, raw)


def _number(section: _Section | None, key: str) -> float | None:
    val = _value(section, key)
    return None if val is None else val.hard_value


# --------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------


def _unit_terms(text: str, sign: int, terms: dict[str, int]) -> float:
    """Add the base units of ``text`` (``nm/V``, ``N/m*Arb``) to ``terms``; return the prefix factor."""
    factor = 1.0
    text = text.replace("\xba", "deg").replace("\u00b0", "deg").strip()
    parts = text.split("/")
    for i, part in enumerate(parts):
        power_sign = sign if i == 0 else -sign
        for token in part.replace("·", "*").split("*"):
            token = token.strip()
            if not token or token == "1":
                continue
            power = 1
            if "^" in token:
                token, _, exp = token.partition("^")
                try:
                    power = int(exp)
                except ValueError:
                    power = 1
            f, base = parse_unit(token)
            factor *= f ** (power * power_sign)
            if base:
                terms[base] = terms.get(base, 0) + power * power_sign
    return factor


def _unit_product(*factors: tuple[str, int]) -> tuple[float, str]:
    """Multiply unit strings (``("nm/V", 1), ("V", 1)`` -> ``(1e-9, "m")``), SI factor and unit."""
    terms: dict[str, int] = {}
    factor = 1.0
    for text, sign in factors:
        factor *= _unit_terms(text, sign, terms)

    def fmt(base: str, power: int) -> str:
        return base if power == 1 else f"{base}^{power}"

    num = [fmt(b, p) for b, p in terms.items() if p > 0]
    den = [fmt(b, -p) for b, p in terms.items() if p < 0]
    unit = "*".join(num)
    if den:
        unit = f"{unit or '1'}/{'*'.join(den)}"
    return factor, unit


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


class _Context:
    """The global sections seen so far (Gwyddion resolves them in file order)."""

    def __init__(self) -> None:
        self.scanner: _Section | None = None
        self.scan: _Section | None = None
        self.controller: _Section | None = None
        self.gxres = 0
        self.gyres = 0
        self.g_nonsquare = False


def _nonsquare_aspect(section: _Section | None) -> bool:
    raw = section.get("Aspect ratio") if section is not None else None
    if raw is None or raw.strip() == "1:1":
        return False
    ar, _ = _leading_float(raw)
    return ar is not None and ar > 0 and ar != 1.0


def _channel_name(section: _Section) -> str | None:
    for key in ("@2:Image Data", "@3:Image Data", "@4:Image Data"):
        val = _value(section, key)
        if val is not None:
            return val.soft or val.hard_str or None
    raw = section.get("Image data")
    return raw.strip().strip('"') if raw else None


def _scan_size(path: Path, section: _Section) -> tuple[float, float, str]:
    raw = section.get("Scan size")
    if raw is None:
        raise ReaderError(path, "an image section has no 'Scan size'")
    tokens = raw.split()
    try:
        xreal = float(tokens[0])
        try:
            yreal = float(tokens[1])
            unit = tokens[2]
        except (ValueError, IndexError):
            yreal = xreal  # old files give one size: a square scan
            unit = tokens[1]
    except (ValueError, IndexError):
        raise ReaderError(path, f"cannot parse the scan size {raw!r}") from None
    return xreal, yreal, unit


def _physical_scale(path: Path, section: _Section, ctx: _Context, name: str) -> tuple[float, str]:
    """SI factor per ``raw / 256**bpp`` and the SI unit of a channel (Gwyddion's rules)."""
    # NanoScope 4.2: "\Z scale: 0.0125 ~m" -- the full-scale value in its own unit.
    old = _value(section, "Z scale")
    if old is not None and old.hard_value is not None:
        f, unit = _unit_product((old.units or "", 1))
        return old.hard_value * f, unit

    # NanoScope >= 4.3: "\@2:Z scale: V [Sens. Zsens] (0.0067 V/LSB) 439.9 V".
    val = _value(section, "@4:Z scale") or _value(section, "@2:Z scale")
    if val is not None and val.hard_value is not None:
        hard_units = val.units or ""
        if val.soft:
            key = "@" + val.soft
            sens = _value(ctx.scanner, key) or _value(ctx.scan, key)
            if sens is None or sens.hard_value is None:
                # The soft scale is missing: all we know is the hard value (in its own unit).
                f, unit = _unit_product((hard_units, 1))
                return val.hard_value * f, unit
            sens_units = sens.units or ""
            if not sens_units.strip():
                # A soft scale without unit (Sens. Amplitude: V 1.0) keeps the hard value's unit.
                if val.soft.lower() == "sens. phase":
                    f, unit = _unit_product((hard_units, 1))
                    return val.hard_value * sens.hard_value * f, "deg" if unit in ("", "V") else unit
                f, unit = _unit_product((hard_units or "V", 1))
                return val.hard_value * sens.hard_value * f, unit
            f, unit = _unit_product((sens_units, 1), (hard_units or "V", 1))
            return val.hard_value * sens.hard_value * f, unit
        f, unit = _unit_product((hard_units, 1))
        return val.hard_value * f, unit

    # NanoScope III (no version): per-quantity constants spread over the header.
    kind = (section.get("Image data") or "").strip().strip('"')
    rules: dict[str, tuple[str, float, list[tuple[_Section | None, str, int]]]] = {
        "Height": ("m", 1e-9 * 2 / 65536, [(section, "Z scale height", 1), (ctx.controller, "Z max", 1),
                                          (ctx.scanner, "Z sensitivity", 1)]),
        "Deflection": ("m", 1e-9 * 2 / 65536, [(section, "Z scale defl", 1), (ctx.controller, "In1 max", 1),
                                              (ctx.scanner, "In sensitivity", 1), (ctx.scan, "Detect sens.", -1)]),
        "Amplitude": ("m", 1e-9 * 2 / 65536, [(section, "Z scale ampl", 1), (ctx.controller, "In1 max", 1),
                                             (ctx.scanner, "In sensitivity", 1), (ctx.scan, "Detect sens.", -1)]),
        "Frequency": ("Hz", 25e6 / 32768, [(section, "Z scale freq", 1)]),
        "Current": ("A", 1e-9 * 2 / 32768, [(section, "Z scale amplitude", 1), (ctx.controller, "In1 max", 1),
                                           (ctx.scanner, "In sensitivity", 1)]),
        "Phase": ("deg", 180 / 65536, [(section, "Z scale phase", 1)]),
    }  # fmt: skip
    if kind not in rules:
        raise ReaderError(path, f"channel {name!r} has no 'Z scale': cannot scale its values")
    unit, scale, needs = rules[kind]
    for where, key, power in needs:
        number = _number(where, key)
        if number is None or (power < 0 and number == 0):
            raise ReaderError(path, f"channel {name!r} lacks the header value {key!r} needed to scale it")
        scale = scale * number if power > 0 else scale / number
    return scale, unit


def _image_channel(
    path: Path,
    buf: bytes,
    section: _Section,
    ctx: _Context,
    version: int,
    text_mode: bool,
    text_values: list | None,
    index: int,
) -> tuple[np.ndarray, float, dict]:
    """``(raw, factor, fields)``: the raw integers (row 0 = top), the factor that turns them into
    values, and the other :class:`Channel` fields; :func:`_scaled` makes the values."""
    label = _channel_name(section) or f"Channel {index + 1}"
    name = clean_name(label) or f"Channel {index + 1}"

    xres_f = _number(section, "Samps/line")
    yres_f = _number(section, "Number of lines")
    if yres_f is None:  # Nanoscope E: "Samps/line: 512 512"
        raw = section.get("Samps/line") or ""
        parts = raw.split()
        if len(parts) >= 2:
            yres_f, _ = _leading_float(parts[1])
    for key, v in (("Samps/line", xres_f), ("Number of lines", yres_f)):
        if v is None:
            raise ReaderError(path, f"image {name!r} has no {key!r} in its header section")
        if not math.isfinite(v) or v < 1 or v > 2**31:
            raise ReaderError(path, f"image {name!r} declares an invalid {key!r} ({section.get(key)})")
    assert xres_f is not None and yres_f is not None  # the loop above raised otherwise
    xres, yres = int(xres_f), int(yres_f)
    check_shape(path, (yres, xres), f"image {name!r}", count=False)  # counted where it is read

    qbpp_f = _number(section, "Bytes/pixel")
    qbpp = int(qbpp_f) if qbpp_f is not None and qbpp_f in (1.0, 2.0, 4.0) else 2
    if qbpp_f is not None and qbpp_f not in (1.0, 2.0, 4.0):
        raise ReaderError(path, f"image {name!r} declares {section.get('Bytes/pixel')} bytes per pixel")

    xreal, yreal, xy_text = _scan_size(path, section)

    if text_mode:
        assert text_values is not None  # the caller passes the parsed text data in text mode
        check_shape(path, (yres, xres), f"image {name!r}")
        n = xres * yres
        start = text_values[0]
        tokens = text_values[1]
        if start + n > len(tokens):
            raise ReaderError(
                path,
                f"file is truncated: image {name!r} needs {n} values, the text data holds {len(tokens) - start}",
            )
        try:
            raw_values = np.array(tokens[start : start + n], dtype=np.int64).reshape(yres, xres)
        except ValueError:
            raise ReaderError(path, f"image {name!r}: the text pixel data holds non-integer values") from None
        text_values[0] = start + n
        raw_image = raw_values
    else:
        offset_f = _number(section, "Data offset")
        size_f = _number(section, "Data length")
        if offset_f is None or size_f is None:
            raise ReaderError(
                path, f"image {name!r} has no 'Data offset'/'Data length' in its header section"
            )
        if offset_f < 0 or size_f < 0 or not (math.isfinite(offset_f) and math.isfinite(size_f)):
            raise ReaderError(path, f"image {name!r} declares an invalid data offset/length")
        offset, size = int(offset_f), int(size_f)
        if offset >= len(buf):
            raise ReaderError(
                path,
                f"header only: the pixel data of image {name!r} should start at byte {offset}, "
                f"but the file ends at byte {len(buf)} (pixel data truncated away)",
            )
        if offset + size > len(buf):
            raise ReaderError(
                path,
                f"file is truncated: image {name!r} needs bytes {offset}..{offset + size}, "
                f"but the file holds only {len(buf)} bytes",
            )
        gxres = ctx.gxres or xres
        gyres = ctx.gyres or yres
        # Gwyddion: 32-bit raw data from version 9.2 on, 16-bit before. Use the other width
        # only when the data length fits it exactly and does not fit Gwyddion's choice.
        bpp = 4 if version >= _VERSION_32BIT else 2
        other = 2 if bpp == 4 else 4
        if size not in (bpp * xres * yres, bpp * gxres * gyres) and size in (
            other * xres * yres,
            other * gxres * gyres,
        ):
            bpp = other
        local, glob = xres * yres, gxres * gyres
        use_global = False
        if size == bpp * local:
            pass
        elif size == bpp * glob:
            use_global = True
        elif size > bpp * max(local, glob):
            use_global = local < glob
        elif size > bpp * min(local, glob):
            use_global = local > glob
        else:
            raise ReaderError(
                path,
                f"image {name!r}: data length {size} bytes does not match "
                f"{xres}x{yres} pixels of {bpp} bytes",
            )
        if use_global:
            xreal *= gxres / xres
            yreal *= gyres / yres
            xres, yres = gxres, gyres
        elif _nonsquare_aspect(section):
            # Gwyddion: with a non-square aspect ratio the scan size is that of the full frame.
            if ctx.g_nonsquare:
                yreal = yreal * yres / xres
            else:
                yreal = yreal * yres / gyres
        check_shape(path, (yres, xres), f"image {name!r}")
        raw_image = array_from(
            path, buf, offset, "<i4" if bpp == 4 else "<i2", (yres, xres), f"image {name!r}"
        )

    scale, si_unit = _physical_scale(path, section, ctx, name)
    shown, z_unit = display_unit(si_unit)
    factor = scale * shown / float(256**qbpp)

    xreal, yreal = abs(xreal) or 1.0, abs(yreal) or 1.0
    f_xy, xy_si = parse_unit(xy_text.replace("\xb5", "u"))
    if xy_si == "m":
        xy_unit, f_xy = "nm", f_xy * 1e9
    else:
        xy_unit, f_xy = xy_si, f_xy
    pixel = (yreal * f_xy / yres, xreal * f_xy / xres)

    line_dir = (section.get("Line direction") or "").strip().lower()
    direction = line_dir if line_dir in ("trace", "retrace") else None

    header = dict(section.raw)  # str -> str: JSON-ready as it is
    header["#section"] = section.name
    header["#quantity"] = label
    # Nanoscope stores the bottom row first: flip so row 0 is the top row (as Gwyddion shows it).
    role = role_for(label, z_unit)  # the quantity in brackets: [Height], [ZSensor], [AmplitudeError] ...
    fields = {
        "name": name,
        "role": role,
        "direction": direction,
        "z_unit": z_unit,
        "pixel_size": pixel,
        "xy_unit": xy_unit,
    }
    return raw_image[::-1], factor, {**fields, "offset": (0.0, 0.0), "header": header}


def _scaled(found: list[tuple[np.ndarray, float, dict]]) -> list[np.ndarray]:
    """``raw * factor`` of every channel as float64, written into one block when all channels
    have the same shape: one large allocation instead of one per channel (fresh memory is
    page-faulted in 4 kB pages; numpy asks for huge pages from 4 MB on)."""
    shapes = {raw.shape for raw, _, _ in found}
    block = np.empty((len(found), *found[0][0].shape)) if len(shapes) == 1 else None
    out = []
    for i, (raw, factor, _) in enumerate(found):
        data = block[i] if block is not None else np.empty(raw.shape)
        np.copyto(data, raw)  # int -> float64, then scaled in place: faster than one mixed-type multiply
        data *= factor
        out.append(data)
    return out


def _header_dict(sections: list[_Section]) -> dict:
    """Sections by name; a name that occurs several times (the image lists) maps to a list."""
    out: dict = {}
    counts: dict[str, int] = {}
    for s in sections:
        counts[s.name] = counts.get(s.name, 0) + 1
    for s in sections:
        if counts[s.name] > 1:
            out.setdefault(s.name, []).append(dict(s.raw))
        else:
            out[s.name] = dict(s.raw)
    return out  # str -> str (or lists of such dicts): JSON-ready as it is


def read(path: Path) -> Scan:
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ReaderError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if not buf:
        raise ReaderError(path, "file is empty (0 bytes)")
    if not buf.startswith(_MAGICS):
        raise ReaderError(path, "not a Nanoscope file (no '\\*File list' header)")
    if buf.startswith(_MAGIC_FORCE):
        raise ReaderError(path, "force curve, not an image (Nanoscope force file)")

    text_mode = buf.startswith(_MAGIC_TXT)
    first_line_end = buf.find(b"\n", 0, 256)
    crlf = first_line_end > 0 and buf[first_line_end - 1 : first_line_end] == b"\r"

    header_len = _header_length(buf)
    if text_mode:
        end = buf.find(b"\\*File list end")
        if end < 0:
            raise ReaderError(path, "text Nanoscope file without '\\*File list end': header is truncated")
        nl = buf.find(b"\n", end)
        data_start = len(buf) if nl < 0 else nl + 1
        header_bytes = buf[:end]
    else:
        if header_len is None:
            raise ReaderError(
                path, "the header has no 'Data length' (header size): not a readable Nanoscope file"
            )
        header_bytes = buf[: min(header_len, len(buf))]
        ctrl_z = header_bytes.find(b"\x1a")
        if ctrl_z >= 0:
            header_bytes = header_bytes[:ctrl_z]
        data_start = 0

    text = decode(header_bytes)
    text = "\\" + text[1:]  # "?*File list" -> "\*File list"
    sections, complete = _parse_header(text)
    if not sections:
        raise ReaderError(path, "the Nanoscope header holds no sections")

    version = 0
    start_context = ""
    file_type = "image"
    for s in sections:
        if s.kind in ("file list", "ec file list", "force file list"):
            raw_version = (s.get("Version") or "").strip()
            try:
                version = int(raw_version, 16) if raw_version else 0
            except ValueError:
                version = 0
            start_context = (s.get("Start context") or "").strip()
        mode = (s.get("Operating mode") or "").strip().lower()
        if mode == "force volume":
            file_type = "force volume"
        elif mode == "force":
            file_type = "force"
        elif mode == "image" and file_type != "force volume":
            file_type = "image"
    if start_context == "FVOL" and file_type == "image":
        file_type = "force volume"
    if start_context == "FOL" and file_type == "force volume":
        file_type = "force"
    elif start_context.endswith("VAR") and file_type == "image":
        file_type = "profiles"
    if file_type == "force":
        raise ReaderError(path, "force curve, not an image (Nanoscope force spectroscopy file)")
    if file_type == "profiles":
        raise ReaderError(path, "a set of unevenly spaced profiles (Deep Trench mode), not an image")

    if not text_mode and header_len is not None and header_len > len(buf):
        raise ReaderError(
            path,
            f"header only: the header alone declares {header_len} bytes but the file holds {len(buf)}; "
            "the pixel data was truncated away",
        )

    if not text_mode and not crlf:
        raise ReaderError(
            path,
            "the file's line endings were changed (it was copied or mailed as text), "
            "which corrupts the binary pixel data",
        )

    text_values = None
    if text_mode:
        text_values = [0, buf[data_start:].replace(b"\x1a", b" ").split()]

    ctx = _Context()
    found: list[tuple[np.ndarray, float, dict]] = []
    n_images = 0
    for s in sections:
        kind = s.kind
        if kind in _SCANNER_LISTS:
            ctx.scanner = s
            continue
        if kind == "controller list":
            ctx.controller = s
            continue
        if kind in _SCAN_LISTS or kind == "ciao force list":
            gx, gy = _number(s, "Samps/line"), _number(s, "Lines")
            if gx is not None and math.isfinite(gx) and 0 < gx < 2**31:
                ctx.gxres = int(gx)
            if gy is not None and math.isfinite(gy) and 0 < gy < 2**31:
                ctx.gyres = int(gy)
            ctx.g_nonsquare = _nonsquare_aspect(s)
            if kind in _SCAN_LISTS:
                ctx.scan = s
            continue
        if kind in _FORCE_IMAGE_LISTS:
            continue  # force-volume curves: not images
        if kind not in _IMAGE_LISTS:
            continue
        if not s.raw:
            if not complete:
                raise ReaderError(path, "the header is truncated (an image section is empty)")
            continue
        found.append(_image_channel(path, buf, s, ctx, version, text_mode, text_values, n_images))
        n_images += 1

    if not found:
        if file_type == "force volume":
            raise ReaderError(
                path, "force volume file without an image channel (force curves are not images)"
            )
        raise ReaderError(path, "the Nanoscope header describes no image channel")

    channels = [Channel(data=data, **fields) for data, (_, _, fields) in zip(_scaled(found), found)]
    header = _header_dict(sections)
    header["#version"] = f"0x{version:08x}" if version else None
    header["#file_type"] = ("text " if text_mode else "") + file_type
    return Scan(path=str(path), format=FORMAT, channels=channels, header=header)
