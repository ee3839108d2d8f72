"""Hostile files, generated in code from the real samples: each ends in one clear ReaderError
within 2 s of CPU time and under 100 MB of extra memory -- never a hang, a huge read or a
value napari or JSON cannot take.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
import tracemalloc
from pathlib import Path

import pytest

from napari_scanprobe.cli import main
from napari_scanprobe.io import ReaderError, find_format, read
from tests.io.test_bad_input import deadline

MAX_CPU_S = 2.0
MAX_EXTRA_BYTES = 100 * 2**20


def refused(path: Path, match: str) -> ReaderError:
    """Read ``path``; it must raise a ReaderError naming the file and matching ``match``, fast and small."""
    tracemalloc.start()
    cpu = time.process_time()
    try:
        with deadline(10, path.name), pytest.raises(ReaderError, match=match) as info:
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    used = time.process_time() - cpu
    assert path.name in str(info.value)
    assert used < MAX_CPU_S, f"{path.name}: {used:.1f} s of CPU to refuse"
    assert peak < MAX_EXTRA_BYTES, f"{path.name}: {peak / 2**20:.0f} MB allocated to refuse"
    return info.value


# ---------------------------------------------------------------------------------------
# amplification: one image listed many times
# ---------------------------------------------------------------------------------------


def nanoscope_with_copies(original: bytes, copies: int) -> bytes:
    """The first image section of a Nanoscope header repeated ``copies`` times, each pointing at
    the same pixel data (the header grows; the data follows it)."""
    end = original.index(b"\\*File list end")
    header = original[:end]
    sections = header.split(b"\\*Ciao image list")
    first = b"\\*Ciao image list" + sections[1]
    old_start = int(re.search(rb"\\Data offset: (\d+)", first).group(1))
    length = int(re.search(rb"\\Data length: (\d+)", first).group(1))
    pixels = original[old_start : old_start + length]
    body = sections[0] + first * copies + b"\\*File list end\r\n\x1a"
    start = (len(body) // 4096 + 2) * 4096  # room for the longer numbers below
    body = body.replace(b"\\Data offset: %d" % old_start, b"\\Data offset: %d" % start)
    body = re.sub(rb"(\\\*File list\r?\n\\Data length: )\d+", rb"\g<1>%d" % start, body, count=1)
    assert len(body) <= start
    return body.ljust(start, b"\0") + pixels


def test_nanoscope_listing_one_image_400_times_is_refused(sample, tmp_path):
    original = sample("bruker_nanoscope/full_multiple_images.txt").read_bytes()
    good = tmp_path / "once.spm"
    good.write_bytes(nanoscope_with_copies(original, 1))
    assert len(read(good).channels) == 1  # the generator makes a readable file
    bad = tmp_path / "copies.spm"
    bad.write_bytes(nanoscope_with_copies(original, 400))
    refused(bad, "another image was read from|more pixels than")


def sm4_with_page_entries(original: bytes, entries: int) -> bytes:
    """An RHK .sm4 whose page index lists its first image page ``entries`` times (a new page
    index array appended at the end of the file)."""
    object_count = struct.unpack_from("<I", original, 42)[0]
    objects = [struct.unpack_from("<3I", original, 58 + 12 * k) for k in range(object_count)]
    pih_offset = next(o[1] for o in objects if o[0] == 1)
    n_pages, n_objects = struct.unpack_from("<2I", original, pih_offset)
    pia_at = next(
        pih_offset + 16 + 12 * k
        for k in range(n_objects)
        if struct.unpack_from("<I", original, pih_offset + 16 + 12 * k)[0] == 2
    )
    _, pia_offset, pia_size = struct.unpack_from("<3I", original, pia_at)  # size: of an entry's head
    pos = pia_offset
    for _ in range(n_pages):  # the first image page's index entry
        data_type, _, count, _ = struct.unpack_from("<4I", original, pos + 16)
        entry = original[pos : pos + 32 + 12 * count]
        if data_type == 0:
            break
        pos += len(entry)
    out = bytearray(original)
    new_offset = len(out)
    out += entry * entries
    struct.pack_into("<I", out, pih_offset, entries)
    struct.pack_into("<3I", out, pia_at, 2, new_offset, pia_size)
    return bytes(out)


def test_sm4_listing_one_page_3000_times_is_refused(sample, tmp_path):
    original = sample("rhk_sm4/topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4").read_bytes()
    good = tmp_path / "once.sm4"
    good.write_bytes(sm4_with_page_entries(original, 1))
    assert len(read(good).channels) == 1
    bad = tmp_path / "pages.sm4"
    bad.write_bytes(sm4_with_page_entries(original, 3000))
    refused(bad, "another image was read from|more pixels than")


def tiff_with_repeated_page(original: bytes, copies: int) -> bytes:
    """A classic TIFF whose last page (IFD) is chained ``copies`` more times: the copies are
    appended at the end and point at the same strips."""
    bo = {b"II*\x00": "<", b"MM\x00*": ">"}[original[:4]]
    offset, last = struct.unpack_from(bo + "I", original, 4)[0], None
    while offset:
        last = offset
        n = struct.unpack_from(bo + "H", original, offset)[0]
        offset = struct.unpack_from(bo + "I", original, offset + 2 + 12 * n)[0]
    n = struct.unpack_from(bo + "H", original, last)[0]
    ifd = bytearray(original[last : last + 2 + 12 * n + 4])
    out = bytearray(original)
    out += b"\0" * (-len(out) % 2)
    link = last + 2 + 12 * n  # where the chain's next-IFD offset lives
    for _ in range(copies):
        struct.pack_into(bo + "I", out, link, len(out))
        link = len(out) + 2 + 12 * n
        out += ifd
    struct.pack_into(bo + "I", out, link, 0)
    return bytes(out)


@pytest.mark.parametrize(
    "relpath", ["jpk/sample_0.jpk", "park_tiff/Park_20210916_034.tiff", "jpk/sample_0.jpk-qi-image"]
)
def test_tiff_based_file_repeating_one_page_is_refused_or_read_once(relpath, sample, tmp_path):
    """JPK and Park files are TIFFs: a page chained 400 times over the same strips is either refused
    or ignored (readers that take only the pages they know) -- never read 400 times."""
    original = sample(relpath).read_bytes()
    path = tmp_path / ("copies" + Path(relpath).suffix)
    path.write_bytes(tiff_with_repeated_page(original, 400))
    channels_before = len(read(sample(relpath)).channels)
    tracemalloc.start()
    cpu = time.process_time()
    try:
        with deadline(10, path.name):
            try:
                outcome = len(read(path).channels)
            except ReaderError as exc:
                assert path.name in str(exc)
                outcome = "refused"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome in ("refused", channels_before, channels_before + 1)
    assert time.process_time() - cpu < MAX_CPU_S
    assert peak < MAX_EXTRA_BYTES


# ---------------------------------------------------------------------------------------
# geometry: sizes that become inf or 0
# ---------------------------------------------------------------------------------------


def _gwy_with_size(original: bytes, value: float) -> bytes:
    out = bytearray(original)
    for key in (b"xreal\0d", b"yreal\0d"):
        at = original.index(key) + len(key)
        struct.pack_into("<d", out, at, value)
    return bytes(out)


HUGE = {  # relpath -> how to write a 1e308 m scan size into its header
    "gwyddion_gwy/GwiddionReader_chip.gwy": lambda b: _gwy_with_size(b, 1e308),
    "gwyddion_gsf/GwiddionReader_chip.gsf": lambda b: b.replace(b"XReal = 8e-05", b"XReal = 1e308", 1),
    "nanonis_sxm/test.sxm": lambda b: re.sub(rb"(:SCAN_RANGE:\s+)\S+", rb"\g<1>1.0E308", b, count=1),
    "nanosurf_nid/NanoSurf_20160301.nid": lambda b: b.replace(b"Dim0Range=1e-005", b"Dim0Range=1e+308"),
}


@pytest.mark.parametrize("relpath", sorted(HUGE))
def test_a_1e308_scan_size_is_refused(relpath, sample, tmp_path):
    original = sample(relpath).read_bytes()
    mutated = HUGE[relpath](original)
    assert mutated != original
    path = tmp_path / ("huge" + Path(relpath).suffix)
    path.write_bytes(mutated)
    refused(path, "not a finite size")


def test_a_denormal_scan_size_giving_pixel_size_0_is_refused(sample, tmp_path):
    path = tmp_path / "tiny.gwy"
    path.write_bytes(_gwy_with_size(sample("gwyddion_gwy/GwiddionReader_chip.gwy").read_bytes(), 5e-324))
    refused(path, "not a finite size")


def test_info_json_never_prints_infinity(sample, tmp_path, capsys):
    path = tmp_path / "huge.gsf"
    path.write_bytes(
        HUGE["gwyddion_gsf/GwiddionReader_chip.gsf"](
            sample("gwyddion_gsf/GwiddionReader_chip.gsf").read_bytes()
        )
    )
    good = sample("nanonis_sxm/test.sxm")
    assert main(["info", "--json", str(path), str(good)]) != 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2

    def strict(name):
        raise AssertionError(f"not JSON: {name}")

    records = [json.loads(line, parse_constant=strict) for line in lines]
    assert "not a finite size" in records[0]["error"]
    assert records[1]["channels"][0]["pixel_size"][0] > 0


# ---------------------------------------------------------------------------------------
# things that are not files
# ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    from napari_scanprobe.gui.reader import napari_get_reader

    fifo = tmp_path / "scan.spm"
    os.mkfifo(fifo)
    with deadline(5, "FIFO"):  # opening a FIFO for reading blocks until a writer comes
        assert find_format(fifo) is None
        assert napari_get_reader(str(fifo)) is None
        with pytest.raises(ReaderError, match="named pipe"):
            read(fifo)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_refused_without_reading_it():
    with deadline(5, "/dev/zero"):  # reading /dev/zero never ends
        assert find_format("/dev/zero") is None
        with pytest.raises(ReaderError, match="device"):
            read("/dev/zero")


def test_an_empty_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "empty.sxm"
    path.write_bytes(b"")
    refused(path, r"empty \(0 bytes\)")


def test_junk_quoted_from_a_file_is_cut_short(tmp_path):
    """A reader quoting 10,000 junk bytes of a corrupt header still gives a short one-line reason."""
    error = ReaderError(
        tmp_path / "junk.gwy", "corrupt Gwyddion file: unknown type '>' for '" + "\xc8a" * 5000 + "'"
    )
    assert len(error.reason) <= 400 and error.reason.endswith("…")
    assert "junk.gwy" in str(error)
