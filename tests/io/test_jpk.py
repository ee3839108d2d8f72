"""JPK image scans (.jpk, .jpk-qi-image): the real samples against Gwyddion's reading, content
sniffing, and corrupt input built by editing the samples' TIFF tags in place."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, jpk, read
from tests.io.helpers import declined, write_file

SAMPLES = ("jpk/sample_0.jpk", "jpk/sample_0.jpk-qi-image")


def tag_position(path, page: int, code: int) -> tuple[int, int, str]:
    """(byte position of the tag's value, its byte count, byte order) in the file."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[page].tags[code]
        return tag.valueoffset, tag.count, tif.byteorder


def edited(src, dst, page: int, code: int, fmt: str, value) -> None:
    """Copy ``src`` to ``dst`` with one numeric tag value replaced."""
    pos, _, bo = tag_position(src, page, code)
    data = bytearray(src.read_bytes())
    struct.pack_into(bo + fmt, data, pos, value)
    dst.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------
# The real samples
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", SAMPLES)
def test_names_and_directions_follow_gwyddion_titles(relpath, sample, ground_truth):
    scan = read(sample(relpath))
    assert scan.format == "jpk" and scan.path.endswith(relpath.split("/")[1])
    titles = [ref["title"] for ref in ground_truth[relpath]["channels"]]
    # Gwyddion titles a channel "<fancy name>" plus " (retrace)" for retrace channels; a title
    # repeated in the file is numbered by us (" #2"), not by Gwyddion.
    named = [c.name + (" (retrace)" if c.direction == "retrace" else "") for c in scan.channels]
    assert [re.sub(r" #\d+$", "", n) for n in named] == titles
    assert {c.direction for c in scan.channels} <= {"trace", "retrace"}
    for ch in scan.channels:
        assert "(retrace)" not in ch.name and "(trace)" not in ch.name


def test_a_repeated_title_is_numbered(sample):
    """The QI image holds "Height (measured)" twice: JPK's default result, then a user-defined
    reference-force height. Each must be a channel of its own name (a layer, a recipe channel,
    an output file)."""
    scan = read(sample("jpk/sample_0.jpk-qi-image"))
    names = [c.name for c in scan.channels]
    assert names.count("Height (measured)") == 1 and names.count("Height (measured) #2") == 1
    assert names.index("Height (measured)") < names.index("Height (measured) #2")  # file order
    second = scan.channels[names.index("Height (measured) #2")]
    assert second.header["properties"]["algorithm.object-name.fancy-name"] == "Ref. Force Height at 40%"
    assert len({c.title for c in scan.channels}) == len(scan.channels)


def test_trace_and_retrace_both_present(sample):
    scan = read(sample("jpk/sample_0.jpk"))
    retrace = [c.name for c in scan.channels if c.direction == "retrace"]
    trace = [c.name for c in scan.channels if c.direction == "trace"]
    assert retrace == trace and "Height" in trace and "Height (measured)" in trace


@pytest.mark.parametrize("relpath", SAMPLES)
def test_frame_units_and_orientation(relpath, sample, ground_truth):
    scan = read(sample(relpath))
    for ch, ref in zip(scan.channels, ground_truth[relpath]["channels"]):
        assert ch.data.dtype == np.float64 and ch.data.shape == (ref["yres"], ref["xres"])
        assert ch.xy_unit == "nm"
        assert ch.pixel_size == pytest.approx(
            (ref["yreal"] / ref["yres"] * 1e9, ref["xreal"] / ref["xres"] * 1e9)
        )
        assert ch.offset == pytest.approx((ref["yoff"] * 1e9, ref["xoff"] * 1e9))
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        assert ch.z_unit == ("nm" if ref["unit_z"] == "m" else ref["unit_z"])
        span = (ref["max"] - ref["min"]) * z
        tl, tr, bl, br = (v * z for v in ref["corners_TL_TR_BL_BR"])
        # Row 0 is the top row as Gwyddion shows it: the file stores rows bottom-up.
        assert ch.data[0, 0] == pytest.approx(tl, abs=1e-6 * span)
        assert ch.data[-1, 0] == pytest.approx(bl, abs=1e-6 * span)
        assert ch.data[0, -1] == pytest.approx(tr, abs=1e-6 * span)
        assert ch.data[-1, -1] == pytest.approx(br, abs=1e-6 * span)


def test_units_of_the_channel_kinds(sample):
    units = {c.title: c.z_unit for c in read(sample("jpk/sample_0.jpk")).channels}
    assert units["Height (retrace)"] == "nm"
    assert units["Lock-In Phase (trace)"] == "deg"
    assert units["Error Signal (trace)"] == "V"
    qi = {c.name: c.z_unit for c in read(sample("jpk/sample_0.jpk-qi-image")).channels}
    assert qi["Vertical Deflection"] == "N" and qi["Adhesion"] == "N" and qi["Slope"] == "N/m"


@pytest.mark.parametrize("relpath", SAMPLES)
def test_headers_are_json_and_carry_the_calibration(relpath, sample):
    scan = read(sample(relpath))
    json.dumps(scan.header)
    assert scan.header["Grid_uLength"] > 0 and "Grid_x0" in scan.header
    for ch in scan.channels:
        json.dumps(ch.header)
        used = ch.header["slot_used"]
        assert used == ch.header["default_slot"]
        slot = next(s for s in ch.header["slots"] if s["name"] == used)
        assert slot["scaling"] == "LinearScaling" and "multiplier" in slot


def test_values_are_the_default_slot_scaling_of_the_raw_integers(sample):
    """Height (retrace) = raw int32 * multiplier + offset of the 'calibrated' slot, in nm."""
    import tifffile

    path = sample("jpk/sample_0.jpk")
    ch = read(path).channels[0]
    slot = next(s for s in ch.header["slots"] if s["name"] == ch.header["default_slot"])
    with tifffile.TiffFile(path) as tif:
        raw = tif.pages[ch.header["tiff_directory"]].asarray().astype(np.float64)
    expected = (raw * slot["multiplier"] + slot["offset"]) * 1e9
    np.testing.assert_allclose(ch.data, expected[::-1], rtol=1e-12)


def test_reading_does_not_import_tifffile(sample):
    """The TIFF structure is parsed by napari_scanprobe.io.tiff: tifffile (slow to import) stays out."""
    code = (
        "import sys, napari_scanprobe\n"
        f"scan = napari_scanprobe.read({str(sample(SAMPLES[0]))!r})\n"
        "assert scan.format == 'jpk', scan.format\n"
        "assert 'tifffile' not in sys.modules, 'tifffile was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", SAMPLES)
def test_recognised_by_content_under_any_name(relpath, sample, tmp_path):
    for name in ("scan.dat", "scan.tif", "noextension"):
        target = tmp_path / name
        shutil.copyfile(sample(relpath), target)
        assert find_format(target) is jpk
        assert read(target).format == "jpk"


def test_other_files_are_not_claimed(sample, tmp_path):
    import tifffile

    plain = tmp_path / "plain.jpk"
    tifffile.imwrite(plain, np.arange(64, dtype=np.uint16).reshape(8, 8))
    private = tmp_path / "private.jpk"  # a TIFF with one 0x8000-range tag is still not JPK
    tifffile.imwrite(private, np.zeros((4, 4), np.float32), extratags=[(0x8000, "s", 0, "6.0", True)])
    random = tmp_path / "random.jpk"
    random.write_bytes(np.random.default_rng(3).bytes(9000))
    for path in (
        plain,
        private,
        random,
        sample("jpk/sample_0.h5-jpk"),
        sample("park_tiff/Park_20210916_034.tiff"),
    ):
        assert not jpk.sniff(path, path.read_bytes()[:4096]), path.name
    for path in (plain, private, random):
        with pytest.raises(ReaderError) as info:
            read(path)
        assert path.name in str(info.value)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.004, 0.3, 0.5, 0.9, 0.9999])
def test_truncated_file_is_declined(fraction, sample, tmp_path):
    data = sample("jpk/sample_0.jpk").read_bytes()
    reason = declined(write_file(tmp_path, "cut.jpk", data[: int(len(data) * fraction)]))
    assert "truncated" in reason or "not a scanning probe" in reason


def test_truncated_in_the_last_channel_names_the_channel(sample, tmp_path):
    data = sample("jpk/sample_0.jpk").read_bytes()
    target = tmp_path / "short.jpk"
    target.write_bytes(data[:-10])
    with pytest.raises(ReaderError, match="truncated.*Error Signal"):
        jpk.read(target)


@pytest.mark.parametrize("width", [257, 10**6])
def test_image_width_beyond_the_stored_pixels_is_declined(width, sample, tmp_path):
    target = tmp_path / "wide.jpk"
    edited(sample("jpk/sample_0.jpk"), target, 1, 256, "I", width)  # ImageWidth of channel 1
    with pytest.raises(ReaderError) as info:
        read(target)
    assert "wide.jpk" in str(info.value)


def test_absurd_dimensions_do_not_allocate(sample, tmp_path):
    import tracemalloc

    src = sample("jpk/sample_0.jpk")
    target = tmp_path / "huge.jpk"
    edited(src, target, 1, 256, "I", 10**6)
    data = bytearray(target.read_bytes())
    pos, _, bo = tag_position(src, 1, 257)  # ImageLength
    struct.pack_into(bo + "I", data, pos, 10**6)
    target.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(ReaderError, match="absurd|pixels"):
            read(target)
        assert tracemalloc.get_traced_memory()[1] < 100e6
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("value", [0.0, float("nan")])
def test_zero_or_nan_scan_size_is_declined(value, sample, tmp_path):
    target = tmp_path / "nosize.jpk"
    edited(sample("jpk/sample_0.jpk"), target, 0, jpk.TAG_GRID_ULENGTH, "d", value)
    with pytest.raises(ReaderError, match="scan size"):
        read(target)


def test_directory_chain_loop_is_declined_not_hung(sample, tmp_path):
    src = sample("jpk/sample_0.jpk")
    data = bytearray(src.read_bytes())
    first = struct.unpack_from(">I", data, 4)[0]
    (n,) = struct.unpack_from(">H", data, first)
    struct.pack_into(">I", data, first + 2 + 12 * n, first)  # IFD 0 -> IFD 0
    declined(write_file(tmp_path, "loop.jpk", bytes(data)), match="loops")


def test_missing_default_slot_falls_back_to_raw_values(sample, tmp_path):
    import tifffile

    src = sample("jpk/sample_0.jpk")
    pos, count, _ = tag_position(src, 1, jpk.TAG_DEFAULT_SLOT)  # "calibrated"
    data = bytearray(src.read_bytes())
    data[pos : pos + count - 1] = b"x" * (count - 1)
    target = tmp_path / "noslot.jpk"
    target.write_bytes(bytes(data))
    ch = read(target).channels[0]
    assert ch.header["slot_used"] == "raw" and ch.z_unit == ""
    with tifffile.TiffFile(src) as tif:
        raw = tif.pages[1].asarray()
    np.testing.assert_array_equal(ch.data, raw[::-1])


def test_unsupported_scaling_is_declined(sample, tmp_path):
    src = sample("jpk/sample_0.jpk")
    slot = 3  # channel 1's default slot "calibrated" is slot 3
    pos, count, _ = tag_position(src, 1, jpk.SLOT_BASE + slot * jpk.SLOT_STRIDE + 0x13)
    data = bytearray(src.read_bytes())
    data[pos : pos + count - 1] = b"CubicScaling".ljust(count - 1, b"_")
    declined(write_file(tmp_path, "cubic.jpk", bytes(data)), match="unsupported calibration")


def test_thumbnail_only_file_is_declined(sample, tmp_path):
    """IFD 0 (the thumbnail) alone: cut the chain after it."""
    src = sample("jpk/sample_0.jpk")
    data = bytearray(src.read_bytes())
    first = struct.unpack_from(">I", data, 4)[0]
    (n,) = struct.unpack_from(">H", data, first)
    struct.pack_into(">I", data, first + 2 + 12 * n, 0)
    declined(write_file(tmp_path, "thumb.jpk", bytes(data)), match="no image channel")
