"""The small TIFF parser behind the JPK and Park readers (napari_scanprobe.io.tiff).

Files are written with tifffile in tmp_path (or patched / built by hand where tifffile will not
write the corruption), and read back against tifffile's own reading of them.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError
from napari_scanprobe.io.tiff import TYPES, first_ifd_entries, is_tiff, read_tiff

tifffile = pytest.importorskip("tifffile")

#: One private tag of every standard field type tifffile writes: (code, tifffile dtype, count, value).
EXTRATAGS = [
    (65000, "B", 3, b"\x01\x02\xff"),  # BYTE
    (65001, "s", 0, "Grid origin"),  # ASCII
    (65002, "H", 2, (7, 65535)),  # SHORT
    (65003, "I", 1, 4_000_000_000),  # LONG
    (65004, "2I", 1, (3, 4)),  # RATIONAL
    (65005, "b", 2, (-1, 5)),  # SBYTE
    (65006, "h", 1, -300),  # SSHORT
    (65007, "i", 3, (-70000, 0, 70000)),  # SLONG
    (65008, "2i", 2, (-1, 3, 5, -7)),  # SRATIONAL
    (65009, "f", 1, 1.5),  # FLOAT
    (65010, "d", 2, (2.5e-9, -1e300)),  # DOUBLE
    (65011, "Q", 1, 2**40 + 3),  # LONG8
    (65012, "q", 2, (-(2**40), 9)),  # SLONG8
    (65013, 7, 5, b"ab\x00cd"),  # UNDEFINED
    (65014, "d", 1, -0.125),  # DOUBLE, one value
]


def plain(value):
    """A tag value as nested lists / scalars, to compare ours (numpy views) with tifffile's (tuples)."""
    if isinstance(value, (np.ndarray, tuple, list)):
        value = np.asarray(value).ravel().tolist()
        return value[0] if len(value) == 1 else value  # tifffile keeps some 1-tuples (StripOffsets)
    return value


def assert_same_as_tifffile(path):
    """Every directory, tag value, tag position and page of ``path`` as tifffile reads them."""
    tiff = read_tiff(path)
    with tifffile.TiffFile(path) as tif:
        assert tiff.byteorder == tif.byteorder and tiff.bigtiff == tif.is_bigtiff
        assert len(tiff.ifds) == len(tif.pages)
        for ifd, page in zip(tiff.ifds, tif.pages):
            assert ifd.offset == page.offset
            assert set(ifd.tags) == set(page.tags.keys())
            for tag in page.tags.values():
                assert plain(ifd.value(tag.code)) == plain(tag.value), f"tag {tag.code}"
                assert ifd.tag(tag.code).pos == tag.valueoffset
            everything = ifd.values()  # (decodes text and single numbers on its own fast path)
            assert list(everything) == list(ifd.tags)
            assert all(plain(value) == plain(ifd.value(code)) for code, value in everything.items())
            expected = page.asarray()
            got = ifd.image()
            assert got.shape == expected.shape and got.dtype.newbyteorder("=") == expected.dtype.newbyteorder(
                "="
            )
            np.testing.assert_array_equal(got, expected)
    return tiff


# --------------------------------------------------------------------------------------
# Reading back what tifffile wrote
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "u2", "i2", "u4", "i4", "f2", "f4", "u8", "i8", "f8"])
def test_page_reads_back_identically(dtype, byteorder, tmp_path):
    path = tmp_path / "plain.tif"
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((37, 23)) * 100) if dtype[0] == "f" else rng.integers(-100, 100, (37, 23))
    data = data.astype(dtype)
    tifffile.imwrite(path, data, byteorder=byteorder, rowsperstrip=5)  # 8 strips, the last one short
    tiff = assert_same_as_tifffile(path)
    image = tiff.ifds[0].image()
    np.testing.assert_array_equal(image, data)
    assert image.base is not None and not image.flags.owndata  # a view on the file bytes, no copy


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("bigtiff", [False, True])
def test_every_field_type_decodes_as_tifffile_reads_it(byteorder, bigtiff, tmp_path):
    path = tmp_path / "tags.tif"
    tifffile.imwrite(
        path,
        np.arange(12, dtype=np.uint16).reshape(3, 4),
        byteorder=byteorder,
        bigtiff=bigtiff,
        extratags=[(code, dtype, count, value, True) for code, dtype, count, value in EXTRATAGS],
    )
    tiff = assert_same_as_tifffile(path)
    ifd = tiff.ifds[0]
    assert ifd.value(65001) == "Grid origin" and ifd.value(65000) == b"\x01\x02\xff"
    assert ifd.value(65013) == b"ab\x00cd"
    assert ifd.value(65003) == 4_000_000_000 and ifd.value(65006) == -300 and ifd.value(65009) == 1.5
    assert ifd.value(65004) == (3, 4)  # one RATIONAL: (numerator, denominator)
    assert ifd.value(65008).tolist() == [[-1, 3], [5, -7]]
    assert ifd.value(65010).tolist() == [2.5e-9, -1e300] and ifd.value(65014) == -0.125
    assert ifd.value(65011) == 2**40 + 3 and ifd.value(65012).tolist() == [-(2**40), 9]
    assert ifd.value(99, "absent") == "absent"
    assert {tiff.ifds[0].tag(code).type for code, *_ in EXTRATAGS} == set(TYPES) - {13, 18}
    values = ifd.values(65000, 65010)
    assert list(values) == list(range(65000, 65010))


def test_big_endian_file(tmp_path):
    path = tmp_path / "big.tif"
    data = np.arange(-600, 600, dtype=np.int32).reshape(30, 40)
    tifffile.imwrite(path, data, byteorder=">", extratags=[(0x8042, "d", 1, 2.5e-6, True)])
    assert path.read_bytes()[:4] == b"MM\x00*"
    tiff = read_tiff(path)
    assert tiff.byteorder == ">"
    ifd = tiff.ifds[0]
    assert ifd.value(0x8042) == 2.5e-6
    assert (ifd.width, ifd.height, ifd.bits_per_sample, ifd.sample_format) == (40, 30, 32, 2)
    image = ifd.image()
    assert image.dtype == np.dtype(">i4")
    np.testing.assert_array_equal(image, data)


def test_several_pages_rgb_and_bigtiff(tmp_path):
    path = tmp_path / "pages.tif"
    rgb = np.random.default_rng(1).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    grey = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(rgb, photometric="rgb")
        tw.write(grey)
    tiff = assert_same_as_tifffile(path)
    assert tiff.bigtiff and len(tiff.ifds) == 2
    np.testing.assert_array_equal(tiff.ifds[0].image(), rgb)
    np.testing.assert_array_equal(tiff.ifds[1].image(), grey)


def test_strips_out_of_order_are_joined(tmp_path):
    """Strips need not follow each other in the file: build one whose strips are stored in reverse."""
    data = np.arange(6 * 4, dtype="<u2").reshape(6, 4)
    strips = [data[0:2].tobytes(), data[2:4].tobytes(), data[4:6].tobytes()]
    path = tmp_path / "reversed.tif"
    path.write_bytes(build_tiff([(256, 4, [4]), (257, 4, [6]), (258, 3, [16]), (278, 4, [2])], strips, True))
    np.testing.assert_array_equal(read_tiff(path).ifds[0].image(), data)
    with tifffile.TiffFile(path) as tif:  # (the hand-built file is a valid TIFF)
        np.testing.assert_array_equal(tif.pages[0].asarray(), data)


def test_compressed_and_tiled_pages_are_decoded_by_tifffile(tmp_path):
    data = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    zipped, tiled = tmp_path / "zlib.tif", tmp_path / "tiled.tif"
    tifffile.imwrite(zipped, data, compression="zlib")
    tifffile.imwrite(tiled, data, tile=(16, 16))
    for path in (zipped, tiled):
        np.testing.assert_array_equal(read_tiff(path).ifds[0].image(), data)
    # Tiles cut off at the end of the file: said before tifffile is asked.
    cut = tmp_path / "cut_tiles.tif"
    cut.write_bytes(tiled.read_bytes()[:-50])
    with pytest.raises(ReaderError, match="truncated: channel 'Z' ends at byte"):
        read_tiff(cut).ifds[0].image("channel 'Z'")
    # A compressed page whose data is garbage: a ReaderError that names the file and the page.
    raw = bytearray(zipped.read_bytes())
    offset = read_tiff(zipped).ifds[0].value(273)
    offset = offset if isinstance(offset, int) else int(offset[0])
    raw[offset : offset + 16] = b"\xff" * 16
    broken = tmp_path / "broken.tif"
    broken.write_bytes(bytes(raw))
    with pytest.raises(ReaderError, match="cannot decode channel 'Z'") as info:
        read_tiff(broken).ifds[0].image("channel 'Z'")
    assert "broken.tif" in str(info.value)


def test_tifffile_is_not_imported_for_an_uncompressed_page(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.ones((4, 4), np.float32), extratags=[(0x8050, "s", 0, "height", True)])
    code = (
        "import sys\n"
        "from napari_scanprobe.io.tiff import read_tiff\n"
        f"ifd = read_tiff({str(path)!r}).ifds[0]\n"
        "assert ifd.image().sum() == 16 and ifd.value(0x8050) == 'height'\n"
        "assert 'tifffile' not in sys.modules, 'tifffile was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# Corrupt files: one ReaderError that names the file
# --------------------------------------------------------------------------------------


def two_page_file(tmp_path, byteorder="<"):
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path, byteorder=byteorder) as tw:
        tw.write(np.zeros((8, 8), np.uint16), extratags=[(0x8040, "d", 3, (1.0, 2.0, 3.0), True)])
        tw.write(np.ones((8, 8), np.uint16))
    with tifffile.TiffFile(path) as tif:
        offsets = [page.offset for page in tif.pages]
        value_at = tif.pages[0].tags[0x8040].valueoffset
    return path, offsets, value_at


def declined(path, match: str) -> ReaderError:
    with pytest.raises(ReaderError, match=match) as info:
        read_tiff(path)
    assert path.name in str(info.value)
    return info.value


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_directory_loop_is_declined(byteorder, tmp_path):
    path, (first, second), _ = two_page_file(tmp_path, byteorder)
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack_from(byteorder + "H", data, second)
    struct.pack_into(byteorder + "I", data, second + 2 + 12 * n, first)  # IFD 1 -> IFD 0
    target = tmp_path / "loop.tif"
    target.write_bytes(bytes(data))
    declined(target, "loops back")
    struct.pack_into(byteorder + "I", data, second + 2 + 12 * n, second)  # IFD 1 -> itself
    target.write_bytes(bytes(data))
    declined(target, "loops back")


def test_truncated_files_are_declined(tmp_path):
    path, (first, second), value_at = two_page_file(tmp_path)
    data = path.read_bytes()
    for cut, where in (
        (3, "header"),
        (first + 1, "first directory's entry count"),
        (first + 20, "first directory's entries"),
        (second + 30, "second directory's entries"),
    ):
        target = tmp_path / f"cut{cut}.tif"
        target.write_bytes(data[:cut])
        error = declined(target, "truncated|not a TIFF")
        assert "truncated" in error.reason or where == "header", where
    # A tag value stored outside its entry, cut off: the directory itself is whole.
    target = tmp_path / "tagcut.tif"
    target.write_bytes(data[: value_at + 10])
    declined(target, r"tag 0x8040 of TIFF directory 0 lies beyond the end")


def test_pixels_beyond_the_end_are_declined(tmp_path):
    path = tmp_path / "pixels.tif"
    tifffile.imwrite(path, np.arange(100 * 100, dtype=np.uint16).reshape(100, 100))
    raw = path.read_bytes()
    ifd = read_tiff(path).ifds[0]
    assert ifd.value(273) + ifd.value(279) == len(raw)  # tifffile writes the pixels last
    target = tmp_path / "short.tif"
    target.write_bytes(raw[:-100])
    ifd = read_tiff(target).ifds[0]  # the directory is whole
    with pytest.raises(ReaderError, match="truncated: channel 'Z' needs 20000 bytes") as info:
        ifd.image("channel 'Z'")
    assert "short.tif" in str(info.value)


def test_directory_beyond_the_end_and_empty_directory(tmp_path):
    path, (first, second), _ = two_page_file(tmp_path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 4, len(data) + 100)
    target = tmp_path / "far.tif"
    target.write_bytes(bytes(data))
    declined(target, "TIFF directory 0 at byte .* lies beyond")
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, second, 0)
    target = tmp_path / "empty.tif"
    target.write_bytes(bytes(data))
    declined(target, r"TIFF directory 1 \(0 tags")
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, second, 0xFFFF)  # 65535 entries cannot fit
    target = tmp_path / "many.tif"
    target.write_bytes(bytes(data))
    declined(target, "does not fit")


def test_not_a_tiff(tmp_path):
    bad_bigtiff = b"II\x2b\x00" + bytes(20)  # BigTIFF magic, offset size 0
    for name, content in (("empty.tif", b""), ("text.tif", b"hello world" * 10), ("magic.tif", bad_bigtiff)):
        path = tmp_path / name
        path.write_bytes(content)
        declined(path, "not a TIFF")
        assert not is_tiff(content[:16])
        assert first_ifd_entries(path, content[:4096]) is None


def test_unknown_field_type_is_skipped(tmp_path):
    path = tmp_path / "unknown.tif"
    tifffile.imwrite(
        path, np.zeros((2, 2), np.uint8), extratags=[(65100, "I", 1, 5, True), (65101, "I", 1, 6, True)]
    )
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[0].tags[65100].offset
    struct.pack_into("<H", raw, entry + 2, 99)  # no such field type
    path.write_bytes(bytes(raw))
    ifd = read_tiff(path).ifds[0]
    assert 65100 not in ifd and ifd.value(65101) == 6


# --------------------------------------------------------------------------------------
# The sniffers' view of the first directory
# --------------------------------------------------------------------------------------


def test_first_ifd_entries_from_head_or_file(tmp_path):
    path = tmp_path / "tags.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), extratags=[(50432, "I", 1, 0x0E031301, True)])
    raw = path.read_bytes()
    entries = first_ifd_entries(path, raw[:4096])
    assert entries[50432] == (4, 1, 0x0E031301)
    assert entries[256] == (3, 1, 4) or entries[256] == (4, 1, 4)
    # A directory that lies beyond the head is read from the file.
    far = tmp_path / "far.tif"
    tags = [(256, 4, [4]), (257, 4, [1]), (258, 3, [8]), (0x8042, 12, [1e-6])]
    far.write_bytes(build_tiff(tags, [bytes(4)], False, pad=9000))
    entries = first_ifd_entries(far, far.read_bytes()[:4096])
    assert entries[0x8042] == (12, 1, None)  # stored outside the entry
    assert entries[256] == (4, 1, 4)
    # A table cut short yields the entries it holds; garbage yields None; nothing raises.
    cut = tmp_path / "cut.tif"
    (ifd,) = struct.unpack_from("<I", far.read_bytes(), 4)
    cut.write_bytes(far.read_bytes()[: ifd + 2 + 12 * 2 + 5])  # two whole entries and a bit
    assert set(first_ifd_entries(cut, cut.read_bytes()[:4096])) == {256, 257}
    assert first_ifd_entries(tmp_path / "missing.tif", b"II*\x00\xff\xff\x00\x00") is None


# --------------------------------------------------------------------------------------
# A minimal classic-TIFF writer for layouts tifffile does not produce
# --------------------------------------------------------------------------------------


def build_tiff(tags, strips, reverse_strips: bool, pad: int = 0) -> bytes:
    """A little-endian one-page TIFF: ``tags`` as (code, type, values); StripOffsets/-ByteCounts added.

    The strips are written after ``pad`` bytes, in reverse order when asked; the IFD follows.
    """
    fmt = {3: "H", 4: "I", 12: "d"}
    body = bytearray(b"II*\x00\x00\x00\x00\x00" + bytes(pad))
    offsets = [0] * len(strips)
    order = list(range(len(strips)))[::-1] if reverse_strips else list(range(len(strips)))
    for i in order:
        offsets[i] = len(body)
        body += strips[i]
    all_tags = sorted(tags + [(273, 4, offsets), (279, 4, [len(s) for s in strips])])
    ifd = len(body) + (len(body) % 2)
    body += bytes(ifd - len(body))
    struct.pack_into("<I", body, 4, ifd)
    extra = ifd + 2 + 12 * len(all_tags) + 4  # out-of-entry values go after the IFD
    table, values = bytearray(struct.pack("<H", len(all_tags))), bytearray()
    for code, type_, vals in all_tags:
        packed = struct.pack(f"<{len(vals)}{fmt[type_]}", *vals)
        if len(packed) <= 4:
            table += struct.pack("<HHI", code, type_, len(vals)) + packed.ljust(4, b"\x00")
        else:
            table += struct.pack("<HHII", code, type_, len(vals), extra + len(values))
            values += packed
    return bytes(body + table + b"\x00\x00\x00\x00" + values)
