"""RHK SM4 (.sm4) reader.

Expected values come from ground_truth.json (Gwyddion) and from the SM4 layout (page index,
page headers, objects) as Gwyddion's rhk-sm4.c documents it.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, read, sm4
from tests.io.helpers import claims, found_by_content, noise

REL = "rhk_sm4/topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4"


def _page_index_entries(data: bytes) -> list[int]:
    """Offsets of the page index entries (the file's own structure, walked independently)."""
    (n_objects,) = struct.unpack_from("<I", data, 42)
    objects = [struct.unpack_from("<3I", data, 58 + 12 * i) for i in range(n_objects)]
    pih = next(o for o in objects if o[0] == 1)
    n_pages, n_pih = struct.unpack_from("<2I", data, pih[1])
    pia = next(struct.unpack_from("<3I", data, pih[1] + 16 + 12 * i) for i in range(n_pih))
    entries, pos = [], pia[1]
    for _ in range(n_pages):
        entries.append(pos)
        (count,) = struct.unpack_from("<I", data, pos + 24)
        pos += pia[2] + 12 * count
    return entries


def _page_objects(data: bytes, entry: int) -> dict[int, tuple[int, int, int]]:
    (count,) = struct.unpack_from("<I", data, entry + 24)
    return {o[0]: o for o in (struct.unpack_from("<3I", data, entry + 32 + 12 * k) for k in range(count))}


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def test_channels_names_directions_units(sample, ground_truth):
    scan = read(sample(REL))
    refs = ground_truth[REL]["channels"]
    assert scan.format == "sm4" and len(scan.channels) == len(refs) == 6
    for ch, ref in zip(scan.channels, refs):
        label, _, scandir = ref["title"].partition(" [")
        assert ch.name == label
        assert ch.direction == {"Left]": "forward", "Right]": "backward"}[scandir]
        assert ch.z_unit == ("nm" if ref["unit_z"] == "m" else ref["unit_z"])
        assert ch.data.shape == (ref["yres"], ref["xres"]) and ch.data.dtype == np.float64


def test_pixel_size_and_offset(sample, ground_truth):
    scan = read(sample(REL))
    for ch, ref in zip(scan.channels, ground_truth[REL]["channels"]):
        assert ch.xy_unit == "nm"
        assert ch.pixel_size == pytest.approx(
            (ref["yreal"] / ref["yres"] * 1e9, ref["xreal"] / ref["xres"] * 1e9)
        )
        assert ch.pixel_size[1] == pytest.approx(abs(ch.header["x_scale"]) * 1e9)
        assert ch.offset == (ref["yoff"] * 1e9, ref["xoff"] * 1e9)


def test_orientation_and_values(sample, ground_truth):
    data = sample(REL).read_bytes()
    scan = read(sample(REL))
    for ch, ref, entry in zip(scan.channels, ground_truth[REL]["channels"], _page_index_entries(data)):
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        span = (ref["max"] - ref["min"]) * z
        for got, want in zip((ch.data[0, 0], ch.data[0, -1], ch.data[-1, 0], ch.data[-1, -1]),
                             ref["corners_TL_TR_BL_BR"]):  # fmt: skip
            assert got == pytest.approx(want * z, abs=1e-4 * span)
        # the file stores lines right-to-left: first stored pixel ends up top-right
        _, offset, _ = _page_objects(data, entry)[4]
        first = struct.unpack_from("<i", data, offset)[0]
        expected = (first * ch.header["z_scale"] + ch.header["z_offset"]) * z
        assert ch.header["y_scale"] < 0  # no vertical flip for this file
        assert ch.data[0, -1] == pytest.approx(expected, rel=1e-6)


def test_headers_are_json(sample):
    scan = read(sample(REL))
    json.dumps(scan.header)
    assert scan.header["signature"].startswith("STiMage 005")
    assert scan.header["page_count"] == 6 and scan.header["skipped_pages"] == []
    for ch in scan.channels:
        json.dumps(ch.header)
        assert ch.header["strings"]["label"] == ch.name
        assert ch.header["x_size"] == ch.data.shape[1] and ch.header["scan_direction"] in ("Left", "Right")


def test_sniffed_by_content(sample, tmp_path):
    target = found_by_content(sample(REL), tmp_path, sm4)
    assert read(target).channels[0].name == "LIA Current"


def test_other_files_are_not_claimed(samples_dir, tmp_path):
    for seed in range(20):
        assert not sm4.sniff(tmp_path / "x.sm4", noise(4096, seed))
    assert not sm4.sniff(tmp_path / "x.sm4", b"\x38\x00" + "STiMage 004.".encode("utf-16-le") + b"\0" * 60)
    assert not sm4.sniff(tmp_path / "x.sm4", b"STiMage 005.")  # plain ASCII, wrong offset
    for other in samples_dir.rglob("*"):
        if other.is_file() and "rhk_sm4" not in other.parts:
            assert not claims(sm4, other), other


@pytest.mark.parametrize("cut", [20, 70, 150, 5300, 10000, 300000, 400000])
def test_truncated_file(cut, sample, tmp_path):
    path = _write(tmp_path, "cut_topo.sm4", sample(REL).read_bytes()[:cut])
    with pytest.raises(ReaderError) as info:
        read(path)
    assert "cut_topo.sm4" in str(info.value)


def test_page_count_beyond_file(sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    pih = next(struct.unpack_from("<3I", data, 58 + 12 * i) for i in range(3))
    struct.pack_into("<I", data, pih[1], 10**9)
    with pytest.raises(ReaderError, match="pages.sm4") as info:
        read(_write(tmp_path, "pages.sm4", data))
    assert "pages" in info.value.reason


def test_object_count_beyond_file(sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    struct.pack_into("<I", data, 42, 2**31)
    with pytest.raises(ReaderError, match="objects.sm4"):
        read(_write(tmp_path, "objects.sm4", data))


def test_data_offset_beyond_file(sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    entry = _page_index_entries(data)[2]
    count = struct.unpack_from("<I", data, entry + 24)[0]
    for k in range(count):
        kind, _, size = struct.unpack_from("<3I", data, entry + 32 + 12 * k)
        if kind == 4:
            struct.pack_into("<3I", data, entry + 32 + 12 * k, kind, len(data) - 10, size)
    with pytest.raises(ReaderError, match="offset.sm4") as info:
        read(_write(tmp_path, "offset.sm4", data))
    assert "truncated" in info.value.reason


@pytest.mark.parametrize("x_size", [0, 10**6, 2**31])
def test_corrupt_dimension(x_size, sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    entry = _page_index_entries(data)[0]
    _, header_offset, _ = _page_objects(data, entry)[3]
    struct.pack_into("<I", data, header_offset + 24, x_size)  # x_size field of the page header
    with pytest.raises(ReaderError, match="dims.sm4"):
        read(_write(tmp_path, "dims.sm4", data))


def test_spectra_only_file_is_declined(sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    for entry in _page_index_entries(data):
        struct.pack_into("<I", data, entry + 16, 1)  # data type: line (spectrum)
    with pytest.raises(ReaderError, match="spectra.sm4") as info:
        read(_write(tmp_path, "spectra.sm4", data))
    assert "no image" in info.value.reason


def test_spectra_pages_are_skipped(sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    entry = _page_index_entries(data)[0]
    struct.pack_into("<I", data, entry + 16, 1)
    scan = read(_write(tmp_path, "mixed.sm4", data))
    assert len(scan.channels) == 5 and scan.channels[0].direction == "backward"
    assert scan.header["skipped_pages"] == [{"page": 0, "data_type": "line"}]


def test_up_scan_is_flipped(sample, tmp_path):
    data = bytearray(sample(REL).read_bytes())
    entry = _page_index_entries(data)[0]
    _, header_offset, _ = _page_objects(data, entry)[3]
    (y_scale,) = struct.unpack_from("<f", data, header_offset + 60)
    struct.pack_into("<f", data, header_offset + 60, -y_scale)  # positive: stored bottom-up
    flipped = read(_write(tmp_path, "up.sm4", data)).channels[0].data
    original = read(sample(REL)).channels[0].data
    np.testing.assert_array_equal(flipped, original[::-1])
