"""A small reader for the structure of TIFF files, for the vendor formats built on TIFF.

JPK and Park Systems store a scan as a TIFF file whose directories carry private tags. Those
readers need the directory chain, the tag values and the pixels of uncompressed pages -- this
module gives exactly that, from the file's bytes read once, with numpy and the standard
library only (no ``tifffile`` import on the normal path: it costs more than the whole read).

Layout (TIFF 6.0; BigTIFF in brackets)::

    header   2 bytes byte order: b"II" little-endian, b"MM" big-endian
             u16 magic 42 [43], [u16 offset size 8, u16 0]
             u32 [u64] offset of the first image file directory (IFD)
    IFD      u16 [u64] number of entries n
             n entries of 12 [20] bytes:
                 u16 tag code, u16 field type, u32 [u64] number of values,
                 4 [8] bytes: the value itself when it fits, else the offset of the value
             u32 [u64] offset of the next IFD, 0 ends the chain

Checks: every IFD and every tag value stored outside its entry must lie inside the file
(else "file is truncated"), and a chain that comes back to an IFD it has visited is refused
instead of followed forever. All problems raise :class:`ReaderError` naming the file.

Tag values are decoded on demand (:meth:`Ifd.value`): ASCII -> ``str``; BYTE/UNDEFINED ->
``bytes``; a single number -> a Python ``int``/``float`` (a RATIONAL -> ``(numerator,
denominator)``); several numbers -> a read-only numpy view on the file bytes (RATIONALs as
``(count, 2)`` rows of numerator and denominator). Tags of an unknown field type are skipped.

Pixels (:meth:`Ifd.image`): an uncompressed, strip-organised page of 8/16/32/64-bit unsigned,
signed or floating-point samples is returned as a numpy view on the file bytes (a copy only
when its strips are not stored one after the other). Anything else -- a compressed or tiled
page, a predictor, bit-reversed fill order, sub-byte or complex samples -- is handed to
``tifffile``, imported only then; tifffile's failures become a :class:`ReaderError`.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .scan import ReaderError, array_from, check_shape, decode

#: Field types: code -> (name, struct code of one number, numbers per value).
#: BYTE, ASCII and UNDEFINED are strings of bytes; a RATIONAL is a numerator and a denominator.
TYPES: dict[int, tuple[str, str, int]] = {
    1: ("BYTE", "B", 1),
    2: ("ASCII", "B", 1),
    3: ("SHORT", "H", 1),
    4: ("LONG", "I", 1),
    5: ("RATIONAL", "I", 2),
    6: ("SBYTE", "b", 1),
    7: ("UNDEFINED", "B", 1),
    8: ("SSHORT", "h", 1),
    9: ("SLONG", "i", 1),
    10: ("SRATIONAL", "i", 2),
    11: ("FLOAT", "f", 1),
    12: ("DOUBLE", "d", 1),
    13: ("IFD", "I", 1),
    16: ("LONG8", "Q", 1),
    17: ("SLONG8", "q", 1),
    18: ("IFD8", "Q", 1),
}
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL, LONG8 = 1, 2, 3, 4, 5, 7, 10, 16
#: Types whose values :meth:`Ifd.number` reads as integers.
_INTEGER_TYPES = frozenset((1, 3, 4, 6, 8, 9, 13, 16, 17, 18))
#: Types whose single value decodes as one Python number (not bytes, text or a fraction).
_SINGLE_NUMBER_TYPES = frozenset((3, 4, 6, 8, 9, 11, 12, 13, 16, 17, 18))

#: Bytes per value of each field type.
_SIZES = {code: struct.calcsize("<" + char) * n for code, (_, char, n) in TYPES.items()}

#: One value of each numeric type, in each byte order.
_SCALARS = {
    (bo, code): struct.Struct(f"{bo}{n}{char}") for bo in "<>" for code, (_, char, n) in TYPES.items()
}

# Baseline tags used for the pixels
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
FILL_ORDER = 266
STRIP_OFFSETS = 273
SAMPLES_PER_PIXEL = 277
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
PLANAR_CONFIG = 284
PREDICTOR = 317
TILE_WIDTH = 322
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
SAMPLE_FORMAT = 339

#: SampleFormat -> numpy kind (1 unsigned, 2 signed, 3 IEEE float).
_KINDS = {1: "u", 2: "i", 3: "f"}


class _Layout(NamedTuple):
    """Sizes that differ between classic TIFF and BigTIFF."""

    bigtiff: bool
    header: int  # bytes of the file header
    entry_count: str  # struct code of an IFD's entry count
    offset: str  # struct code of an offset (the first/next IFD)
    entry: int  # bytes per IFD entry
    value_at: int  # where the value (or its offset) starts in an entry
    inline: int  # value bytes that fit in an entry


_CLASSIC = _Layout(False, 8, "H", "I", 12, 8, 4)
_BIG = _Layout(True, 16, "Q", "Q", 20, 12, 8)


def _header(head: bytes | memoryview) -> tuple[str, _Layout] | None:
    """(byte order "<"/">", layout) of a TIFF header, or None when ``head`` is no TIFF."""
    order = bytes(head[:2])
    bo = "<" if order == b"II" else ">" if order == b"MM" else None
    if bo is None or len(head) < 8:
        return None
    (magic,) = struct.unpack_from(bo + "H", head, 2)
    if magic == 42:
        return bo, _CLASSIC
    if magic == 43 and len(head) >= 16 and struct.unpack_from(bo + "HH", head, 4) == (8, 0):
        return bo, _BIG
    return None


def is_tiff(head: bytes | memoryview) -> bool:
    """Whether ``head`` (the first bytes of a file) starts with a TIFF or BigTIFF header."""
    return _header(head) is not None


def _entry_dtype(bo: str, layout: _Layout) -> np.dtype:
    n = "u8" if layout.bigtiff else "u4"
    return np.dtype([("code", bo + "u2"), ("type", bo + "u2"), ("count", bo + n), ("value", bo + n)])


def _decode(buf: bytes, bo: str, type_: int, count: int, pos: int):
    """The value of one tag: ``count`` values of field type ``type_`` at byte ``pos``."""
    if type_ == ASCII:  # text; trailing NULs (string ends) and blanks dropped
        raw = buf[pos : pos + count].rstrip(b"\x00")
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return _legacy_text(raw)
    if type_ == BYTE or type_ == UNDEFINED:
        return buf[pos : pos + count]
    if count == 1:
        value = _SCALARS[bo, type_].unpack_from(buf, pos)
        return value if type_ == RATIONAL or type_ == SRATIONAL else value[0]
    _, char, n = TYPES[type_]
    values = np.frombuffer(buf, bo + char, n * count, pos)
    return values if n == 1 else values.reshape(count, n)  # (S)RATIONAL: (numerator, denominator) rows


def _legacy_text(raw: bytes) -> str:
    """Text that is not UTF-8: Windows-1252 as tifffile reads it, else :func:`decode` (Latin-1)."""
    try:
        return raw.decode("cp1252").strip()
    except UnicodeDecodeError:
        return decode(raw)


class Tag(NamedTuple):
    """One IFD entry: field type, number of values and the byte position of the value.

    (:attr:`Ifd.tags` holds these as plain ``(type, count, pos)`` tuples -- cheaper to make
    by the hundred; :meth:`Ifd.tag` gives one as a ``Tag``.)
    """

    type: int
    count: int  # type: ignore[assignment]  # the TIFF spec's name; hides tuple.count, unused here
    pos: int  # in the entry itself when the value fits there, else where the entry points

    @property
    def nbytes(self) -> int:
        return self.count * _SIZES[self.type]


class Ifd:
    """One image file directory: its tags, decoded on demand, and the page's pixels."""

    def __init__(self, tiff: Tiff, index: int, offset: int, tags: dict[int, tuple[int, int, int]]):
        self.tiff = tiff
        self.index = index
        self.offset = offset
        self.tags = tags

    def __contains__(self, code: int) -> bool:
        return code in self.tags

    def __repr__(self) -> str:
        return f"<Ifd {self.index} at byte {self.offset}: {len(self.tags)} tags>"

    def tag(self, code: int) -> Tag | None:
        """The entry of tag ``code``, None when the directory does not have it."""
        entry = self.tags.get(code)
        return None if entry is None else Tag._make(entry)

    def value(self, code: int, default=None):
        """The decoded value of tag ``code`` (see the module notes), or ``default``."""
        tag = self.tags.get(code)
        if tag is None:
            return default
        return _decode(self.tiff.buf, self.tiff.byteorder, *tag)

    def values(self, start: int = 0, stop: int = 2**16) -> dict[int, object]:
        """``{code: value}`` of the tags with ``start <= code < stop``, in file order.

        The same values as :meth:`value`; text and single numbers, most of a vendor's private
        tags, are decoded here in the loop (a call per tag would double the time).
        """
        buf, bo = self.tiff.buf, self.tiff.byteorder
        out: dict[int, object] = {}
        for code, (type_, count, pos) in self.tags.items():
            if not start <= code < stop:
                continue
            if type_ == ASCII:
                raw = buf[pos : pos + count].rstrip(b"\x00")
                try:
                    out[code] = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    out[code] = _legacy_text(raw)
            elif count == 1 and type_ in _SINGLE_NUMBER_TYPES:
                out[code] = _SCALARS[bo, type_].unpack_from(buf, pos)[0]
            else:
                out[code] = _decode(buf, bo, type_, count, pos)
        return out

    def number(self, code: int, default: int = 0) -> int:
        """An integer tag's (first) value, e.g. BitsPerSample; ``default`` when absent or not a number."""
        type_, count, pos = self.tags.get(code, (0, 0, 0))
        if count < 1 or type_ not in _INTEGER_TYPES:
            return default
        return _SCALARS[self.tiff.byteorder, type_].unpack_from(self.tiff.buf, pos)[0]

    def _integers(self, code: int) -> list[int] | None:
        """An unsigned tag's values as a list (StripOffsets, StripByteCounts); None when absent."""
        type_, count, pos = self.tags.get(code, (0, 0, 0))
        if count < 1 or type_ not in (BYTE, SHORT, LONG, LONG8):
            return None
        if count == 1:
            return [_SCALARS[self.tiff.byteorder, type_].unpack_from(self.tiff.buf, pos)[0]]
        return np.frombuffer(self.tiff.buf, self.tiff.byteorder + TYPES[type_][1], count, pos).tolist()

    # The page's image properties (TIFF defaults when the tag is absent)
    @property
    def width(self) -> int:
        return self.number(IMAGE_WIDTH)

    @property
    def height(self) -> int:
        return self.number(IMAGE_LENGTH)

    @property
    def bits_per_sample(self) -> int:
        return self.number(BITS_PER_SAMPLE, 1)

    @property
    def samples_per_pixel(self) -> int:
        return self.number(SAMPLES_PER_PIXEL, 1)

    @property
    def sample_format(self) -> int:
        return self.number(SAMPLE_FORMAT, 1)

    @property
    def photometric(self) -> int:
        return self.number(PHOTOMETRIC, 0)

    @property
    def compression(self) -> int:
        return self.number(COMPRESSION, 1)

    @property
    def dtype(self) -> np.dtype | None:
        """The numpy type of one sample in the file's byte order, None when not whole bytes."""
        kind, bits = _KINDS.get(self.sample_format), self.bits_per_sample
        if kind is None or bits not in (8, 16, 32, 64) or (kind == "f" and bits == 8):
            return None
        return np.dtype(f"{self.tiff.byteorder}{kind}{bits // 8}")

    def image(self, what: str = "image") -> np.ndarray:
        """The page's pixels, ``(rows, columns)`` or ``(rows, columns, samples)``, in file row order.

        ``what`` names the page in error messages (``"channel 'Height'"``).
        """
        path, buf, number = self.tiff.path, self.tiff.buf, self.number
        spp = number(SAMPLES_PER_PIXEL, 1)
        shape = check_shape(path, (number(IMAGE_LENGTH), number(IMAGE_WIDTH)), what) + (
            (spp,) if spp > 1 else ()
        )
        dtype = self.dtype
        if (
            dtype is None
            or number(COMPRESSION, 1) != 1
            or TILE_WIDTH in self.tags
            or number(PREDICTOR, 1) != 1
            or number(FILL_ORDER, 1) != 1
            or (spp > 1 and number(PLANAR_CONFIG, 1) != 1)
        ):
            return self._tifffile_image(what)
        offsets = self._integers(STRIP_OFFSETS)
        if offsets is None:
            raise ReaderError(path, f"{what} has no image data")
        row = shape[1] * spp * dtype.itemsize
        need = shape[0] * row
        counts = self._integers(STRIP_BYTE_COUNTS)
        if counts is None:  # required, but the size of uncompressed strips is known
            counts = [max(1, min(number(ROWS_PER_STRIP, 2**32 - 1), shape[0])) * row] * len(offsets)
        if len(counts) != len(offsets):
            raise ReaderError(
                path,
                f"corrupt TIFF directory {self.index}: {len(offsets)} strips but {len(counts)} strip sizes",
            )
        stored = sum(counts)
        if stored < need:
            raise ReaderError(
                path,
                f"{what} declares {shape[1]} x {shape[0]} pixels ({need} bytes) but stores only {stored} bytes",
            )
        if all(o + n == following for o, n, following in zip(offsets, counts, offsets[1:])):  # one block
            return array_from(path, buf, offsets[0], dtype, shape, what)
        self._check_strips(offsets, counts, what)
        joined = b"".join(buf[o : o + n] for o, n in zip(offsets, counts))
        return np.frombuffer(joined, dtype, need // dtype.itemsize).reshape(shape)

    def _check_strips(self, offsets: list[int] | None, counts: list[int] | None, what: str) -> None:
        """Raise when a strip (or tile) of the page lies beyond the end of the file."""
        if offsets is None or counts is None or not offsets or len(counts) != len(offsets):
            return
        end = max(o + n for o, n in zip(offsets, counts))
        if end > len(self.tiff.buf):
            raise ReaderError(
                self.tiff.path,
                f"file is truncated: {what} ends at byte {end}, the file holds {len(self.tiff.buf)}",
            )

    def _tifffile_image(self, what: str) -> np.ndarray:
        """Decode a page this module does not handle itself (compressed, tiled ...) with tifffile."""
        if TILE_WIDTH in self.tags:
            self._check_strips(self._integers(TILE_OFFSETS), self._integers(TILE_BYTE_COUNTS), what)
        else:
            self._check_strips(self._integers(STRIP_OFFSETS), self._integers(STRIP_BYTE_COUNTS), what)
        import tifffile

        try:
            with (
                quiet_tifffile(),
                tifffile.TiffFile(io.BytesIO(self.tiff.buf), name=self.tiff.path.name) as tif,
            ):
                data = tif.pages[self.index].asarray()
        except Exception as exc:
            raise ReaderError(self.tiff.path, f"cannot decode {what} ({type(exc).__name__}: {exc})") from None
        return np.asarray(data)


class Tiff:
    """A parsed TIFF file: byte order, layout and the chain of directories (:attr:`ifds`)."""

    def __init__(self, path: Path, buf: bytes, byteorder: str, bigtiff: bool):
        self.path = path
        self.buf = buf
        self.byteorder = byteorder
        self.bigtiff = bigtiff
        self.ifds: list[Ifd] = []

    def __repr__(self) -> str:
        kind = "BigTIFF" if self.bigtiff else "TIFF"
        order = "little" if self.byteorder == "<" else "big"
        return f"<{kind} {self.path.name}: {order}-endian, {len(self.ifds)} IFDs>"


def read_tiff(path: str | Path, buf: bytes | None = None) -> Tiff:
    """Parse the header and the whole directory chain of ``path`` (its bytes ``buf`` if given).

    Raises :class:`ReaderError` for anything that is not a TIFF file, a directory or tag value
    beyond the end of the file (a truncated file), no or an empty directory, a chain that loops.
    """
    path = Path(path)
    buf = path.read_bytes() if buf is None else bytes(buf)  # (no copy when given bytes)
    size = len(buf)
    found = _header(buf[:16])
    if found is None:
        raise ReaderError(path, "not a TIFF file")
    bo, layout = found
    tiff = Tiff(path, buf, bo, layout.bigtiff)
    entry_dtype = _entry_dtype(bo, layout)
    count_fmt, offset_fmt = bo + layout.entry_count, bo + layout.offset
    count_size = struct.calcsize(count_fmt)
    (offset,) = struct.unpack_from(offset_fmt, buf, layout.header - struct.calcsize(offset_fmt))
    seen: set[int] = set()
    while offset:
        k = len(tiff.ifds)
        if offset in seen:
            raise ReaderError(path, "corrupt TIFF file: its directory chain loops back on itself")
        if offset < layout.header or offset + count_size > size:
            raise ReaderError(
                path,
                f"file is truncated: TIFF directory {k} at byte {offset} lies beyond its end ({size} bytes)",
            )
        (n,) = struct.unpack_from(count_fmt, buf, offset)
        table = offset + count_size
        if n == 0 or table + layout.entry * n + struct.calcsize(offset_fmt) > size:
            raise ReaderError(
                path,
                f"file is truncated or corrupt: TIFF directory {k} ({n} tags at byte {offset}) does not fit",
            )
        tags = _tags(path, buf, k, np.frombuffer(buf, entry_dtype, n, table).tolist(), table, layout)
        seen.add(offset)
        tiff.ifds.append(Ifd(tiff, k, offset, tags))
        if len(tiff.ifds) > size // (count_size + layout.entry):  # more than the file can hold
            raise ReaderError(path, "corrupt TIFF file: too many directories")
        (offset,) = struct.unpack_from(offset_fmt, buf, table + layout.entry * n)
    if not tiff.ifds:
        raise ReaderError(path, "TIFF file holds no directory")
    return tiff


def _tags(
    path: Path, buf, k: int, entries: list, table: int, layout: _Layout
) -> dict[int, tuple[int, int, int]]:
    """``{code: (type, count, pos)}`` of one directory's ``(code, type, count, value)`` entries.

    Every value stored outside its entry is checked to lie inside the file. Tags of a field
    type this module does not know are skipped (their size is unknown).
    """
    size, sizes, inline, step = len(buf), _SIZES, layout.inline, layout.entry
    tags = {}
    pos = table + layout.value_at  # of the first entry's value field
    for code, type_, count, value in entries:
        item = sizes.get(type_)
        if item:
            nbytes = item * count
            if nbytes <= inline:
                tags[code] = (type_, count, pos)
            elif value + nbytes <= size:
                tags[code] = (type_, count, value)
            else:
                raise ReaderError(
                    path,
                    f"file is truncated: tag 0x{code:04X} of TIFF directory {k} "
                    f"lies beyond the end of the file ({size} bytes)",
                )
        pos += step
    return tags


def _first_ifd_table(path: str | Path, head: bytes):
    """``(byteorder, layout, chunk, n, count_size)``: the first directory's table (``chunk``
    starts at its entry count and holds ``n`` whole entries), read from ``head`` when it lies
    there, else from the file; None when ``head`` is not a TIFF header. May raise."""
    found = _header(head)
    if found is None:
        return None
    bo, layout = found
    count_fmt = bo + layout.entry_count
    count_size = struct.calcsize(count_fmt)
    (offset,) = struct.unpack_from(
        bo + layout.offset, head, layout.header - struct.calcsize(bo + layout.offset)
    )
    if offset < layout.header:
        return None
    chunk = head[offset:]
    n = struct.unpack_from(count_fmt, chunk)[0] if len(chunk) >= count_size else None
    if n is None or len(chunk) < count_size + layout.entry * n:  # the table goes on beyond head
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(count_size)
            if len(chunk) < count_size:
                return None
            (n,) = struct.unpack_from(count_fmt, chunk)
            chunk += fh.read(layout.entry * min(n, 2**16))
    n = min(n, (len(chunk) - count_size) // layout.entry)
    return bo, layout, chunk, n, count_size


def first_ifd_entries(path: str | Path, head: bytes) -> dict[int, tuple[int, int, object]] | None:
    """``{code: (type, count, value)}`` of the first directory, for sniffers; never raises.

    ``value`` is the decoded value when it is stored in the entry itself, else None. The table
    is read from ``head`` (the first bytes of the file) when it lies there, else from the file.
    A table cut short by the end of the file yields the entries it holds, so that a truncated
    file is still recognised (and ``read`` can say that it is truncated). None: not a TIFF.
    """
    try:
        found = _first_ifd_table(path, head)
        if found is None:
            return None
        bo, layout, chunk, n, count_size = found
        entries = np.frombuffer(chunk, _entry_dtype(bo, layout), n, count_size)
        out = {}
        for i, (code, type_, count, _) in enumerate(entries.tolist()):
            nbytes = count * _SIZES.get(type_, 0)
            pos = count_size + layout.entry * i + layout.value_at
            out[code] = (
                type_,
                count,
                _decode(chunk, bo, type_, count, pos) if 0 < nbytes <= layout.inline else None,
            )
        return out
    except Exception:
        return None


def first_ifd_text(path: str | Path, head: bytes, code: int, size: int | None = None) -> bytes:
    """The first ``size`` bytes (None: all) of ASCII tag ``code`` of the first directory, from
    ``head`` when they lie there, else from the file; ``b""`` when the tag is absent, not text or
    shorter than ``size``. Never raises."""
    try:
        found = _first_ifd_table(path, head)
        if found is None:
            return b""
        bo, layout, chunk, n, count_size = found
        entries = np.frombuffer(chunk, _entry_dtype(bo, layout), n, count_size)
        for i, (code_, type_, count, value) in enumerate(entries.tolist()):
            if code_ != code:
                continue
            size = count if size is None else size
            if type_ != ASCII or count < size:
                return b""
            if count <= layout.inline:  # stored in the entry itself
                pos = count_size + layout.entry * i + layout.value_at
                return bytes(chunk[pos : pos + size])
            if value + size <= len(head):
                return bytes(head[value : value + size])
            with open(path, "rb") as fh:
                fh.seek(value)
                return fh.read(size)
        return b""
    except Exception:
        return b""


# --------------------------------------------------------------------------------------
# tifffile, for the pages this module does not decode itself
# --------------------------------------------------------------------------------------

_quiet = threading.local()


class _QuietFilter(logging.Filter):
    """Drops tifffile's log records raised while this thread decodes a page for us."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


@contextmanager
def quiet_tifffile():
    """Silence tifffile's complaints about a corrupt file: our ReaderError says it instead."""
    logger = logging.getLogger("tifffile")
    if not any(isinstance(f, _QuietFilter) for f in logger.filters):
        logger.addFilter(_QuietFilter())
    previous = getattr(_quiet, "on", False)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = previous
