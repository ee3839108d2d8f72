"""Just enough HDF5, parsed with ``struct`` from the file's bytes: the structures JPK's
high-speed movies (``.h5-jpk``) are written with.

Why: h5py reads attributes one call at a time (~15-20 us each) and a JPK movie has ~900 of
them (363 on the measurement group alone), and it inflates data when a data set is read.
Opening the sample movie through h5py took ~25 ms; parsed here, ~3.5 ms with every attribute
(~1 us each), and a chunk is inflated only when its frame is asked for.

What this module reads (the HDF5 1.8 "earliest" file layout, HDF5 File Format Specification
version 2.0 / 3.0 sections named in brackets):

* superblock version 0 or 1 with 8-byte offsets and lengths [II.A], at byte 0, 512, 1024 ...;
* version 1 object headers with their continuation blocks [IV.A.1.a];
* groups stored as symbol tables: v1 B-tree of group nodes, symbol table nodes and the local
  heap of link names [III.A.1, III.B, III.C, III.D];
* compact attributes, version 1-3 messages [IV.A.2.m], of fixed-length strings, integers and
  IEEE floats, any shape (one value -> a scalar, as h5py's ``attrs`` gives for scalars);
  object references are named, not followed (:data:`OBJECT_REFERENCE`);
* data sets of those number types with a version 3 layout message, contiguous or chunked (v1
  B-tree of chunk nodes) [IV.A.2.i], filtered by shuffle and/or deflate [IV.A.2.l].

Everything else -- version 2/3 superblocks, version 2 object headers, new-style (link
message) groups, dense attribute storage, variable-length strings, compound types, other
filters, missing chunks, external or virtual storage -- raises :class:`Unsupported`: the
caller then reads the file with h5py, which reads them all. A corrupt structure (a bad
signature, an address past the end, a loop) raises :class:`Corrupt` or lets ``struct``/
``IndexError`` through; every loop is bounded, and chunk inflation never produces more
bytes than the chunk holds.

Values: attributes come back as ``str`` (fixed-length strings, by ``scan.decode``), Python
``float``/``int`` (one number), numpy arrays (several) or lists of ``str``; data sets as numpy
arrays in the file's type and byte order.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .scan import decode

MAGIC = b"\x89HDF\r\n\x1a\n"
UNDEFINED = 0xFFFFFFFFFFFFFFFF

#: Object header message types [IV.A.2].
DATASPACE, LINK_INFO, DATATYPE, LINK, LAYOUT, FILTERS, ATTRIBUTE = 0x01, 0x02, 0x03, 0x06, 0x08, 0x0B, 0x0C
CONTINUATION, SYMBOL_TABLE, ATTRIBUTE_INFO = 0x10, 0x11, 0x15
#: Filter ids [IV.A.2.l].
DEFLATE, SHUFFLE = 1, 2

#: Bounds that keep a corrupt file from looping or asking for absurd work.
MAX_MESSAGES = 100_000
MAX_NODES = 1_000_000

_u8 = struct.Struct("<Q").unpack_from
_u32 = struct.Struct("<I").unpack_from


class Unsupported(Exception):
    """A valid HDF5 structure this module does not read (h5py reads it)."""


class Corrupt(Exception):
    """A structure that cannot be what the file claims (a bad signature, a loop ...)."""


def superblock_at(buf) -> int:
    """Offset of the superblock signature (0, 512, 1024, 2048 ...), or -1."""
    at = 0
    while at + 8 <= len(buf):
        if buf[at : at + 8] == MAGIC:
            return at
        at = 512 if at == 0 else at * 2
    return -1


# --------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------


def _dtype(buf, pos: int) -> np.dtype:
    """numpy type of the datatype message at ``pos``: fixed-length string, integer or float."""
    cls, bits, size = buf[pos] & 0x0F, buf[pos + 1], _u32(buf, pos + 4)[0]
    order = ">" if bits & 1 else "<"
    if cls == 0 and size in (1, 2, 4, 8):  # fixed-point
        return np.dtype(f"{order}{'i' if bits & 0x08 else 'u'}{size}")
    if cls == 1 and size in (2, 4, 8) and not bits & 0x40:  # IEEE float (bit 6: VAX order)
        return np.dtype(f"{order}f{size}")
    if cls == 3 and size > 0:  # fixed-length string
        return np.dtype(f"S{size}")
    raise Unsupported(f"HDF5 datatype class {cls} of {size} bytes")


def _dims(buf, pos: int) -> tuple[int, ...]:
    """Dimensions of the dataspace message at ``pos`` (version 1 or 2; () for a scalar)."""
    version, rank = buf[pos], buf[pos + 1]
    if version == 1:
        first = pos + 8
    elif version == 2:
        if buf[pos + 3] == 2:  # null dataspace: no data
            raise Unsupported("null dataspace")
        first = pos + 4
    else:
        raise Unsupported(f"dataspace message version {version}")
    return struct.unpack_from(f"<{rank}Q", buf, first)


# --------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------


class File:
    """An HDF5 file's structures, parsed from ``buf`` (bytes or an mmap of the whole file)."""

    def __init__(self, buf) -> None:
        self.buf = buf
        self.base = superblock_at(buf)
        if self.base < 0:
            raise Corrupt("no HDF5 signature")
        version = buf[self.base + 8]
        if version not in (0, 1):
            raise Unsupported(f"superblock version {version}")
        if buf[self.base + 13] != 8 or buf[self.base + 14] != 8:
            raise Unsupported("offsets or lengths of other than 8 bytes")
        at = self.base + 24 + (4 if version == 1 else 0)
        base_address = _u8(buf, at)[0]
        self.base = base_address if base_address != UNDEFINED else self.base
        self._objects: dict[int, Node] = {}
        # root group symbol table entry: link name offset, object header address, ...
        self.root = self.object(_u8(buf, at + 32 + 8)[0], "/")

    def address(self, relative: int) -> int:
        if relative == UNDEFINED:
            raise Corrupt("undefined address")
        at = self.base + relative
        if not 0 <= at < len(self.buf):
            raise Corrupt(f"address {relative} past the end of the file")
        return at

    def __getitem__(self, path: str):
        node = self.root
        for part in path.strip("/").split("/") if path.strip("/") else ():
            if not isinstance(node, Group):
                raise KeyError(path)
            node = node[part]
        return node

    def object(self, relative: int, name: str):
        """The group or data set whose object header is at ``relative`` (parsed once)."""
        node = self._objects.get(relative)
        if node is None:
            messages = _messages(self, relative)
            kind = Dataset if LAYOUT in messages else Group
            node = self._objects[relative] = kind(self, name, messages)
        return node


_message_head = struct.Struct("<HHB").unpack_from
_attribute_head = struct.Struct("<BBHHH").unpack_from


def _messages(file: File, relative: int) -> dict[int, list[int]]:
    """Message type -> positions of the bodies, in header order, of a version 1 object header."""
    buf = file.buf
    at = file.address(relative)
    if buf[at : at + 4] == b"OHDR":
        raise Unsupported("version 2 object header")
    if buf[at] != 1:
        raise Corrupt(f"object header version {buf[at]}")
    size = _u32(buf, at + 8)[0]
    blocks, count = [(at + 16, size)], 0
    seen: set[int] = set()
    out: dict[int, list[int]] = {}
    while blocks:
        start, size = blocks.pop()
        if start in seen or start + size > len(buf) or len(seen) > MAX_MESSAGES:
            raise Corrupt("object header continuation loop or overrun")
        seen.add(start)
        pos, end = start, start + size
        while pos + 8 <= end:
            kind, length, flags = _message_head(buf, pos)
            if kind == CONTINUATION:
                offset, csize = struct.unpack_from("<QQ", buf, pos + 8)
                blocks.append((file.address(offset), csize))
            elif flags & 0x02 and kind in (DATATYPE, ATTRIBUTE, DATASPACE):
                raise Unsupported("shared object header message")
            elif kind in (LINK, LINK_INFO):
                raise Unsupported("new-style group (link messages)")
            elif kind == ATTRIBUTE_INFO and _dense_attributes(buf, pos + 8):
                raise Unsupported("dense attribute storage")
            elif kind in out:
                out[kind].append(pos + 8)
            else:
                out[kind] = [pos + 8]
            pos += 8 + length
            count += 1
            if count > MAX_MESSAGES:
                raise Corrupt("too many object header messages")
    return out


def _dense_attributes(buf, pos: int) -> bool:
    """Whether the attribute info message at ``pos`` points at a fractal heap."""
    flags = buf[pos + 1]
    heap_at = pos + 2 + (2 if flags & 0x01 else 0)
    return _u8(buf, heap_at)[0] != UNDEFINED


class Node:
    """An object (group or data set) with its object header messages (type -> positions)."""

    def __init__(self, file: File, name: str, messages: dict[int, list[int]]):
        self.file = file
        self.name = name
        self.messages = messages

    def attrs(self) -> dict:
        """Every attribute by name, in header order."""
        buf, out = self.file.buf, {}
        for pos in self.messages.get(ATTRIBUTE, ()):
            version, flags, nlen, tlen, slen = _attribute_head(buf, pos)
            if version == 1:  # name, type and space each padded to 8 bytes
                name_at = pos + 8
                type_at = name_at + ((nlen + 7) & ~7)
                space_at = type_at + ((tlen + 7) & ~7)
                data_at = space_at + ((slen + 7) & ~7)
            elif version in (2, 3):
                if flags & 0x03:
                    raise Unsupported("attribute with a shared datatype or dataspace")
                name_at = pos + (9 if version == 3 else 8)
                type_at = name_at + nlen
                space_at = type_at + tlen
                data_at = space_at + slen
            else:
                raise Unsupported(f"attribute message version {version}")
            name = buf[name_at : name_at + nlen].rstrip(b"\0").decode("utf-8", "replace")
            out[name] = _attribute_value(buf, type_at, space_at, data_at)
        return out


#: What an object reference attribute reads as (h5py's ``str`` of a ``Reference``).
OBJECT_REFERENCE = "<HDF5 object reference>"

#: Datatype message head (class, bit fields, size: 8 bytes) -> (numpy type, scalar unpacker);
#: ``(None, None)`` for an object reference. Filled as types are met: a file has a handful.
_TYPES: dict[bytes, tuple] = {}
#: numpy (kind, size) -> struct code.
_STRUCT_CODES = {("f", 8): "d", ("f", 4): "f", ("f", 2): "e"}
_STRUCT_CODES.update({("i", n): c for n, c in ((1, "b"), (2, "h"), (4, "i"), (8, "q"))})
_STRUCT_CODES.update({("u", n): c.upper() for n, c in ((1, "b"), (2, "h"), (4, "i"), (8, "q"))})


def _type_of(buf, pos: int) -> tuple:
    head = buf[pos : pos + 8]
    known = _TYPES.get(head)
    if known is None:
        if buf[pos] & 0x0F == 7 and buf[pos + 1] & 0x0F == 0:
            known = (None, None)
        else:
            dtype = _dtype(buf, pos)
            code = _STRUCT_CODES.get((dtype.kind, dtype.itemsize))
            unpack = (
                None
                if code is None
                else struct.Struct(">" + code if buf[pos + 1] & 1 else "<" + code).unpack_from
            )
            known = (dtype, unpack)
        if len(head) == 8:
            _TYPES[head] = known
    return known


def _attribute_value(buf, type_at: int, space_at: int, data_at: int):
    dims: tuple[int, ...]
    if buf[space_at + 1] == 0 and not (buf[space_at] == 2 and buf[space_at + 3] == 2):
        dims, count = (), 1  # scalar: the common case, without _dims
    else:
        dims = _dims(buf, space_at)
        count = math.prod(dims)
    dtype, unpack = _type_of(buf, type_at)
    if dtype is None:  # object references: named, not followed
        return OBJECT_REFERENCE if count == 1 else [OBJECT_REFERENCE] * count
    if count * dtype.itemsize > len(buf) - data_at:
        raise Corrupt("attribute data past the end of the file")
    if count == 1:
        if unpack is None:
            return decode(buf[data_at : data_at + dtype.itemsize])
        return unpack(buf, data_at)[0]
    values = np.frombuffer(buf, dtype, count, data_at).reshape(dims)
    return [decode(v) for v in values.ravel()] if dtype.kind == "S" else values.copy()


class Group(Node):
    """A group stored as a symbol table."""

    _members: dict[str, int] | None = None

    def members(self) -> dict[str, int]:
        """Member name -> object header address (relative), in name order as HDF5 stores them."""
        if self._members is not None:
            return self._members
        buf, file = self.file.buf, self.file
        if SYMBOL_TABLE not in self.messages:
            raise Unsupported(f"group {self.name} without a symbol table")
        table = self.messages[SYMBOL_TABLE][0]
        tree, heap = struct.unpack_from("<QQ", buf, table)
        heap_at = file.address(heap)
        if buf[heap_at : heap_at + 4] != b"HEAP":
            raise Corrupt("bad local heap signature")
        names_at = file.address(_u8(buf, heap_at + 24)[0])
        out: dict[str, int] = {}
        for node_at in _btree_leaves(file, tree, node_type=0):
            if buf[node_at : node_at + 4] != b"SNOD":
                raise Corrupt("bad symbol table node signature")
            count = struct.unpack_from("<H", buf, node_at + 6)[0]
            for k in range(count):
                name_offset, header = struct.unpack_from("<QQ", buf, node_at + 8 + 40 * k)
                start = names_at + name_offset
                end = buf.find(b"\0", start, start + 65536)
                if end < 0:
                    raise Corrupt("unterminated link name")
                out[buf[start:end].decode("utf-8", "replace")] = header
        self._members = out
        return out

    def __iter__(self):
        return iter(self.members())

    def __getitem__(self, name: str):
        relative = self.members()[name]
        return self.file.object(relative, f"{self.name.rstrip('/')}/{name}")


def _btree_leaves(file: File, relative: int, node_type: int):
    """Children of the level-0 nodes of a version 1 B-tree (group nodes: symbol table nodes)."""
    buf, stack = file.buf, [relative]
    seen: set[int] = set()
    while stack:
        at = file.address(stack.pop())
        if at in seen or len(seen) > MAX_NODES:
            raise Corrupt("B-tree loop")
        seen.add(at)
        if buf[at : at + 4] != b"TREE" or buf[at + 4] != node_type:
            raise Corrupt("bad B-tree node")
        level, used = buf[at + 5], struct.unpack_from("<H", buf, at + 6)[0]
        children = [_u8(buf, at + 24 + 8 + 16 * k)[0] for k in range(used)]
        if level:
            stack.extend(reversed(children))
        else:
            yield from (file.address(c) for c in children)


# --------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Storage:
    """Where a data set's values lie in the file and how they are encoded: plain data that
    pickles (the file is read again through it) -- see :meth:`read`.

    One row per stored chunk in ``starts`` (index of its first element), ``offsets`` (file
    offset), ``sizes`` (bytes stored) and ``masks`` (filters skipped): numpy arrays, so a
    10,000-frame movie's table is small and a frame finds its chunk without a Python loop.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_shape: tuple[int, ...]  # the whole shape for contiguous storage
    starts: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    masks: np.ndarray
    filters: tuple[int, ...] = ()  # filter ids in pipeline order
    contiguous: bool = False  # one unfiltered block (layout class 1), not chunks

    def read(self, get, box=None, out=None) -> np.ndarray:
        """The values in ``box`` (a ``(start, stop)`` pair per axis; None: everything), with
        ``get(offset, size) -> bytes`` reading the file (or bytes held in memory); into
        ``out`` if given (an array of the box's shape: a transposed view will do)."""
        box = tuple((0, n) for n in self.shape) if box is None else tuple(box)
        if out is None:
            out = np.empty(tuple(b - a for a, b in box), self.dtype)
        first, stop = np.array([a for a, _ in box]), np.array([b for _, b in box])
        hit = np.flatnonzero(np.all((self.starts < stop) & (self.starts + self.chunk_shape > first), axis=1))
        for k in hit.tolist():
            src, dst = [], []
            for (lo, hi), f, n in zip(box, self.starts[k].tolist(), self.chunk_shape):
                a, b = max(lo, f), min(hi, f + n)
                src.append(slice(a - f, b - f))
                dst.append(slice(a - lo, b - lo))
            raw = get(int(self.offsets[k]), int(self.sizes[k]))
            out[tuple(dst)] = self.values(raw, int(self.masks[k]), tuple(src))
        return out

    def values(self, raw: bytes, filter_mask: int, where: tuple[slice, ...]) -> np.ndarray:
        """The values at ``where`` in one chunk, from the chunk's stored bytes ``raw``.

        Filters are undone last to first; shuffling (each element's bytes stored byte plane
        by byte plane) is undone for the selected elements only."""
        itemsize = self.dtype.itemsize
        nbytes = math.prod(self.chunk_shape) * itemsize
        shuffled = False
        for k in reversed(range(len(self.filters))):
            if filter_mask & (1 << k):
                continue
            if self.filters[k] == DEFLATE:
                inflater = zlib.decompressobj()
                try:
                    raw = inflater.decompress(raw, nbytes)
                except zlib.error as exc:
                    raise Corrupt(f"a compressed chunk is corrupt ({exc})") from None
                if inflater.unconsumed_tail:
                    raise Corrupt("chunk inflates to more bytes than it holds")
            else:  # SHUFFLE
                shuffled = itemsize > 1
        if len(raw) != nbytes:
            raise Corrupt(f"chunk holds {len(raw)} bytes, not {nbytes}")
        if not shuffled:
            return np.frombuffer(raw, self.dtype).reshape(self.chunk_shape)[where]
        planes = np.frombuffer(raw, np.uint8).reshape(itemsize, *self.chunk_shape)[(slice(None), *where)]
        elements = np.empty((*planes.shape[1:], itemsize), np.uint8)
        for k in range(itemsize):  # one plane at a time: 3x faster than one transposing copy
            elements[..., k] = planes[k]
        return elements.view(self.dtype)[..., 0]


class Dataset(Node):
    """A data set: its shape, type and :class:`Storage`."""

    @property
    def shape(self) -> tuple[int, ...]:
        return _dims(self.file.buf, self._message(DATASPACE))

    @property
    def dtype(self) -> np.dtype:
        return _dtype(self.file.buf, self._message(DATATYPE))

    def _message(self, kind: int) -> int:
        if kind not in self.messages:
            raise Corrupt(f"data set {self.name} without message {kind:#x}")
        return self.messages[kind][0]

    def storage(self) -> Storage:
        buf, file = self.file.buf, self.file
        shape, dtype = self.shape, self.dtype
        filters: tuple[int, ...] = ()
        if FILTERS in self.messages:
            filters = _filters(buf, self.messages[FILTERS][0])
            if any(f not in (DEFLATE, SHUFFLE) for f in filters) or SHUFFLE in filters[1:]:
                raise Unsupported(f"filters {filters}")  # others, or shuffling after compression
        pos = self._message(LAYOUT)
        version, layout = buf[pos], buf[pos + 1]
        if version != 3:
            raise Unsupported(f"layout message version {version}")
        if layout == 1:  # contiguous
            address, size = struct.unpack_from("<QQ", buf, pos + 2)
            if size != math.prod(shape) * dtype.itemsize:
                raise Corrupt(f"contiguous data set {self.name} holds {size} bytes")
            if filters:
                raise Corrupt("filters on contiguous storage")
            starts = np.zeros((1, len(shape)), np.int64)
            table = (starts, np.array([file.address(address)]), np.array([size]), np.zeros(1, np.int64))
            return Storage(shape, dtype, shape, *table, contiguous=True)
        if layout != 2:
            raise Unsupported(f"layout class {layout}")
        rank = buf[pos + 2]  # data set rank + 1 (the last "dimension" is the element size)
        tree = _u8(buf, pos + 3)[0]
        chunk_shape = struct.unpack_from(f"<{rank}I", buf, pos + 11)[:-1]
        if len(chunk_shape) != len(shape) or 0 in chunk_shape:
            raise Corrupt(f"data set {self.name}: chunks of rank {len(chunk_shape)} for shape {shape}")
        starts, offsets, sizes, masks = _chunk_index(file, tree, rank)
        expected = math.prod(math.ceil(n / c) for n, c in zip(shape, chunk_shape))
        if len(offsets) != expected:
            raise Unsupported(f"data set {self.name} with {len(offsets)} of {expected} chunks stored")
        starts = np.array(starts, np.int64).reshape(-1, len(shape))
        if np.any(starts % chunk_shape) or np.any(starts >= shape):
            raise Corrupt(f"data set {self.name}: chunk outside the data set")
        chunks = (np.array(offsets, np.int64), np.array(sizes, np.int64), np.array(masks, np.int64))
        return Storage(shape, dtype, chunk_shape, starts, *chunks, filters)

    def read(self) -> np.ndarray:
        buf = self.file.buf
        return self.storage().read(lambda offset, size: buf[offset : offset + size])


def _filters(buf, pos: int) -> tuple[int, ...]:
    version, count = buf[pos], buf[pos + 1]
    at = pos + (8 if version == 1 else 2)
    out = []
    for _ in range(count):
        fid = struct.unpack_from("<H", buf, at)[0]
        if version == 1:
            name_len, _, nvalues = struct.unpack_from("<HHH", buf, at + 2)
            at += 8 + name_len + 4 * nvalues + (4 if nvalues % 2 else 0)
        elif version == 2:
            if fid >= 256:
                name_len, _, nvalues = struct.unpack_from("<HHH", buf, at + 2)
                at += 8 + name_len + 4 * nvalues
            else:
                _, nvalues = struct.unpack_from("<HH", buf, at + 2)
                at += 6 + 4 * nvalues
        else:
            raise Unsupported(f"filter pipeline message version {version}")
        out.append(fid)
    return tuple(out)


def _chunk_index(file: File, relative: int, rank: int):
    """(starts, offsets, sizes, masks) of every chunk in a version 1 B-tree of chunk nodes."""
    buf, stack = file.buf, [relative]
    seen: set[int] = set()
    key = 8 + 8 * rank  # chunk size, filter mask, one offset per dimension (+ the element one)
    starts: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    masks: list[int] = []
    while stack:
        at = file.address(stack.pop())
        if at in seen or len(seen) > MAX_NODES:
            raise Corrupt("chunk B-tree loop")
        seen.add(at)
        if buf[at : at + 4] != b"TREE" or buf[at + 4] != 1:
            raise Corrupt("bad chunk B-tree node")
        level, used = buf[at + 5], struct.unpack_from("<H", buf, at + 6)[0]
        pos = at + 24
        for _ in range(used):
            child = _u8(buf, pos + key)[0]
            if level:
                stack.append(child)
            else:
                size, mask = struct.unpack_from("<II", buf, pos)
                starts.extend(struct.unpack_from(f"<{rank - 1}Q", buf, pos + 8))
                offsets.append(file.address(child))
                sizes.append(size)
                masks.append(mask)
            pos += key + 8
    return starts, offsets, sizes, masks
