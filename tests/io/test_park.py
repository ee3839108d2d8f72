"""Park Systems TIFF files: the real sample against Gwyddion's reading, content sniffing (a plain
TIFF is napari's, not ours), and corrupt input made by editing the sample's private header."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, park, read
from tests.io.helpers import declined, write_file

SAMPLE = "park_tiff/Park_20210916_034.tiff"


def block(path, code: int) -> tuple[int, int]:
    """(offset, byte count) of a private tag's value block."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[code]
        return tag.valueoffset, tag.count


def with_header_field(src, dst, offset: int, fmt: str, value) -> None:
    """Copy ``src`` to ``dst`` with one field of the Park image header (tag 50435) replaced."""
    start, _ = block(src, park.TAG_HEADER)
    data = bytearray(src.read_bytes())
    struct.pack_into("<" + fmt, data, start + offset, value)
    dst.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------
# The real sample
# --------------------------------------------------------------------------------------


def test_channel_frame_and_units(sample, ground_truth):
    scan = read(sample(SAMPLE))
    (ref,) = ground_truth[SAMPLE]["channels"]
    (ch,) = scan.channels
    assert scan.format == "park"
    assert ch.name == ref["title"] == "Topography"
    assert ch.direction == ("forward" if scan.header["forward"] else "backward")
    assert ch.data.dtype == np.float64 and ch.data.shape == (ref["yres"], ref["xres"])
    assert ch.xy_unit == "nm" and ch.z_unit == "nm"
    assert ch.pixel_size == pytest.approx(
        (ref["yreal"] / ref["yres"] * 1e9, ref["xreal"] / ref["xres"] * 1e9)
    )
    # Gwyddion does not place the image at the header's x/y offset; the offset stays in the header.
    assert ch.offset == (ref["yoff"] * 1e9, ref["xoff"] * 1e9) == (0.0, 0.0)
    assert {"xoff_um", "yoff_um"} <= scan.header.keys()


def test_orientation_and_values(sample, ground_truth):
    (ch,) = read(sample(SAMPLE)).channels
    (ref,) = ground_truth[SAMPLE]["channels"]
    span = (ref["max"] - ref["min"]) * 1e9
    tl, tr, bl, br = (v * 1e9 for v in ref["corners_TL_TR_BL_BR"])
    # The file stores rows bottom-up; row 0 here is Gwyddion's top row.
    assert ch.data[0, 0] == pytest.approx(tl, abs=1e-6 * span)
    assert ch.data[0, -1] == pytest.approx(tr, abs=1e-6 * span)
    assert ch.data[-1, 0] == pytest.approx(bl, abs=1e-6 * span)
    assert ch.data[-1, -1] == pytest.approx(br, abs=1e-6 * span)
    assert ch.data.min() == pytest.approx(ref["min"] * 1e9, abs=1e-6 * span)
    assert ch.data.max() == pytest.approx(ref["max"] * 1e9, abs=1e-6 * span)


def test_values_are_raw_times_gain_in_the_z_unit(sample):
    path = sample(SAMPLE)
    scan = read(path)
    h = scan.header
    assert h["z_unit"] == "um" and h["data_type"] == 2  # float32 data in um
    start, count = block(path, park.TAG_DATA)
    raw = np.frombuffer(path.read_bytes(), "<f4", count=count // 4, offset=start).reshape(
        h["yres"], h["xres"]
    )
    expected = (
        raw[::-1].astype(np.float64) * h["data_gain"] * h["z_scale"] * 1e3
        + h["data_gain"] * h["z_offset"] * 1e3
    )
    np.testing.assert_allclose(scan.channels[0].data, expected, rtol=1e-12)


def test_header_is_json(sample):
    scan = read(sample(SAMPLE))
    json.dumps(scan.header)
    json.dumps(scan.channels[0].header)
    assert scan.header["source_name"] == "Topography"
    assert scan.header["version"] == "01000002"
    assert scan.header["software"].startswith("Park Systems")


def test_int32_data_type(sample, tmp_path):
    """Version-2 data type 1 = little-endian int32: same bytes, read as integers."""
    src = sample(SAMPLE)
    target = tmp_path / "int32.tiff"
    with_header_field(src, target, 348, "I", 1)
    scan = read(target)
    h = scan.header
    start, count = block(src, park.TAG_DATA)
    raw = np.frombuffer(src.read_bytes(), "<i4", count=count // 4, offset=start).reshape(h["yres"], h["xres"])
    np.testing.assert_allclose(scan.channels[0].data, raw[::-1] * h["data_gain"] * 1e3, rtol=1e-12)


def test_reading_does_not_import_tifffile(sample):
    """The TIFF structure is parsed by napari_scanprobe.io.tiff: tifffile (slow to import) stays out."""
    code = (
        "import sys, napari_scanprobe\n"
        f"scan = napari_scanprobe.read({str(sample(SAMPLE))!r})\n"
        "assert scan.format == 'park', scan.format\n"
        "assert 'tifffile' not in sys.modules, 'tifffile was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def test_recognised_by_content_under_any_name(sample, tmp_path):
    for name in ("scan.dat", "scan.tif", "noextension"):
        target = tmp_path / name
        shutil.copyfile(sample(SAMPLE), target)
        assert find_format(target) is park
        assert read(target).format == "park"


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_plain_tiff_is_left_to_napari(byteorder, tmp_path):
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.arange(256, dtype=np.uint16).reshape(16, 16), byteorder=byteorder)
    assert not park.sniff(plain, plain.read_bytes()[:4096])
    assert find_format(plain) is None
    with pytest.raises(ReaderError) as info:
        read(plain)
    assert "plain.tif" in str(info.value)


def test_wrong_magic_is_not_claimed(sample, tmp_path):
    import tifffile

    fake = tmp_path / "fake.tif"  # Park's tag numbers, wrong magic value
    tifffile.imwrite(
        fake,
        np.zeros((4, 4), np.uint8),
        extratags=[(50432, "I", 1, 12345, True), (50433, "I", 1, 0x01000002, True)],
    )
    assert not park.sniff(fake, fake.read_bytes()[:4096])
    for other in ("jpk/sample_0.jpk", "jpk/sample_0.jpk-qi-image"):
        path = sample(other)
        assert not park.sniff(path, path.read_bytes()[:4096])
    random = tmp_path / "random.tiff"
    random.write_bytes(np.random.default_rng(5).bytes(5000))
    assert not park.sniff(random, random.read_bytes()[:4096])


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [200, 1000, 2041 + 1000, 264185 + 100, 264185 - 1])
def test_truncated_file_is_declined(cut, sample, tmp_path):
    """Cuts inside the IFD, the data block (2041..264185) and the header block."""
    data = sample(SAMPLE).read_bytes()
    assert block(sample(SAMPLE), park.TAG_DATA) == (2041, 262144)  # the layout the cuts assume
    declined(write_file(tmp_path, "cut.tiff", data[:cut]), "truncated")


def test_pixel_count_not_matching_the_data_is_declined(sample, tmp_path):
    target = tmp_path / "wide.tiff"
    with_header_field(sample(SAMPLE), target, 100, "I", 257)  # xres
    with pytest.raises(ReaderError, match="257 x 256"):
        read(target)


def test_absurd_dimensions_do_not_allocate(sample, tmp_path):
    import tracemalloc

    target = tmp_path / "huge.tiff"
    with_header_field(sample(SAMPLE), target, 100, "I", 10**6)
    data = bytearray(target.read_bytes())
    start, _ = block(sample(SAMPLE), park.TAG_HEADER)
    struct.pack_into("<I", data, start + 104, 10**6)  # yres
    target.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(ReaderError, match="absurd"):
            read(target)
        assert tracemalloc.get_traced_memory()[1] < 50e6
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0, "I", 1, "line profile"),
        (0, "I", 7, "image type"),
        (348, "I", 9, "data type"),
        (140, "d", 0.0, "scan size"),
        (220, "d", float("nan"), "z calibration"),
    ],
)
def test_bad_header_fields_are_declined(offset, fmt, value, message, sample, tmp_path):
    target = tmp_path / "bad.tiff"
    with_header_field(sample(SAMPLE), target, offset, fmt, value)
    with pytest.raises(ReaderError, match=message) as info:
        read(target)
    assert "bad.tiff" in str(info.value)


def test_short_header_is_declined(sample, tmp_path):
    """The header tag's byte count below the version-2 minimum of 580."""
    import tifffile

    src = sample(SAMPLE)
    with tifffile.TiffFile(src) as tif:
        entry = tif.pages[0].tags[park.TAG_HEADER].offset  # position of the IFD entry
        bo = tif.byteorder
    data = bytearray(src.read_bytes())
    struct.pack_into(bo + "I", data, entry + 4, 300)  # the count field
    declined(write_file(tmp_path, "short.tiff", bytes(data)), match="too short")
