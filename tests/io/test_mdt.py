"""NT-MDT .mdt reader: the real Nova Px sample against Gwyddion, synthetic scanned frames built
from the format description, sniffing, and corrupt input."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, mdt, read
from tests.io.helpers import claims, declined, found_by_content, noise, write_file

SAMPLE = "ntmdt_mdt/test_mdt.mdt"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


# --------------------------------------------------------------------------------------
# Synthetic files, written from the format description (see mdt.py)
# --------------------------------------------------------------------------------------


def build_mdt(*frames: bytes) -> bytes:
    body = b"".join(frames)
    head = mdt.MAGIC + struct.pack("<I", len(body)) + b"\0" * 4 + struct.pack("<H", len(frames) - 1)
    return head + b"\0" * (33 - len(head)) + body


def scanned_frame(
    raw: np.ndarray,
    x=(0.0, 1.0, -1),
    y=(0.0, 1.0, -1),
    z=(0.0, 1.0, -1),
    title: bytes = b"",
    ftype: int = 0,
    adc: int = 0,
) -> bytes:
    ny, nx = raw.shape
    scales = struct.pack("<ffhffhffh", *x, *y, *z)
    zeros = (0,) * 16  # step, ADC settings, scan direction, velocity, setpoint, bias, offsets ...
    variables = scales + struct.pack("<BBHHHfHBBBBBBfffBxiiB", adc, 1, nx, ny, *zeros)
    variables += b"\0" * (30 + 77 - len(variables))
    content = variables + struct.pack("<4H", 0, nx, ny, 0) + raw.astype("<i2").tobytes()
    content += struct.pack("<I", len(title)) + title + struct.pack("<I", 0)
    head = struct.pack("<IH2B6HH", 22 + len(content), ftype, 1, 0, 2024, 1, 2, 3, 4, 5, len(variables))
    return head + content


# --------------------------------------------------------------------------------------
# The real sample against Gwyddion
# --------------------------------------------------------------------------------------


def test_sample_channels_match_gwyddion(sample, ground_truth):
    refs = ground_truth[SAMPLE]["channels"]
    scan = read(sample(SAMPLE))
    assert scan.format == "mdt"
    assert len(scan.channels) == len(refs)
    for ch, ref in zip(scan.channels, refs):
        assert _norm(ch.name) in _norm(ref["title"])
        assert ":" not in ch.name and "(" not in ch.name, "name must be the bare signal"
        # Gwyddion's title is "<title> (<frame number>)"; the reader keeps it in the header
        assert ch.header["gwyddion_title"] == ref["title"]
        assert ch.header["title"].startswith(ref["title"].split(":")[0] + ":")
        assert ch.direction == ("forward" if ch.header["title"][1] == "F" else "backward")


def test_sample_scale_units_and_orientation(sample, ground_truth):
    ref = ground_truth[SAMPLE]["channels"][0]
    ch = read(sample(SAMPLE)).channels[0]
    assert ch.data.shape == (ref["yres"], ref["xres"])
    assert ch.data.dtype == np.float64
    assert ch.xy_unit == "nm" and ref["unit_xy"] == "m"
    want = (ref["yreal"] / ref["yres"] * 1e9, ref["xreal"] / ref["xres"] * 1e9)
    assert ch.pixel_size == pytest.approx(want, rel=1e-6)
    assert ch.offset == (ref["yoff"] * 1e9, ref["xoff"] * 1e9)
    assert ch.z_unit == ref["unit_z"]
    span = ref["max"] - ref["min"]
    tl, tr, bl, br = ref["corners_TL_TR_BL_BR"]
    assert ch.data[0, 0] == pytest.approx(tl, abs=1e-6 * span)
    assert ch.data[-1, 0] == pytest.approx(bl, abs=1e-6 * span)
    assert ch.data[0, -1] == pytest.approx(tr, abs=1e-6 * span)
    assert np.nanmean(ch.data) == pytest.approx(ref["mean"], abs=1e-6 * span)


def test_sample_header_is_json_and_lists_frames(sample):
    scan = read(sample(SAMPLE))
    text = json.dumps(scan.header)
    json.dumps(scan.channels[0].header)
    assert scan.header["frame_count"] == len(scan.header["frames"])
    # every frame is either a channel or listed as skipped, with a reason
    assert len(scan.channels) + len(scan.header["skipped_frames"]) == scan.header["frame_count"]
    assert all(f["reason"] for f in scan.header["skipped_frames"])
    assert "1F:Iprobe" in json.dumps(scan.channels[0].header)
    assert "<?xml" in scan.channels[0].header["xml_comment"] or scan.channels[0].header[
        "xml_comment"
    ].startswith("<")
    assert "MDA" in text


# --------------------------------------------------------------------------------------
# Synthetic scanned (type 0) frames
# --------------------------------------------------------------------------------------


def test_scanned_frame_scaling_orientation_and_name(tmp_path):
    raw = np.arange(12, dtype=np.int16).reshape(3, 4) * 100 - 300  # stored bottom row first
    data = build_mdt(
        scanned_frame(raw, x=(5.0, -2.0, -1), y=(7.0, 3.0, -1), z=(10.0, 0.5, 0), title=b"1B:Height"),
    )
    path = tmp_path / "synthetic.mdt"
    path.write_bytes(data)
    scan = read(path)
    assert len(scan.channels) == 1
    ch = scan.channels[0]
    assert (ch.name, ch.direction) == ("Height", "backward")
    assert ch.header["scan_pass"] == "1"
    assert ch.xy_unit == "nm"
    assert ch.pixel_size == (3.0, 2.0)  # |step| of y and x, unit nm (code -1)
    assert ch.offset == (0.0, 0.0)  # Gwyddion ignores the axis offsets
    assert ch.z_unit == "nm"
    expected = (10.0 + 0.5 * raw.astype(float)) * 0.1  # z unit code 0 = Angstrom
    np.testing.assert_allclose(ch.data, expected[::-1])
    assert ch.data[0, 0] == pytest.approx(expected[-1, 0])


def test_untitled_frame_falls_back_to_unit_title_and_units_convert(tmp_path):
    raw = np.array([[1, 2], [3, 4]], dtype=np.int16)
    frames = (
        scanned_frame(raw, x=(0, 1.0, -2), y=(0, 1.0, -2), z=(0.0, 2.0, 26), adc=3),  # µm; mV
        scanned_frame(raw, z=(0.0, 1.0, 24), adc=4),  # pA, untitled
        scanned_frame(raw, z=(0.0, 1.0, 13), adc=1),  # counts: no unit, ADC mode name
    )
    path = tmp_path / "untitled.mdt"
    path.write_bytes(build_mdt(*frames))
    volt, amp, counts = read(path).channels
    assert (volt.name, volt.z_unit, volt.direction) == ("Voltage", "V", None)
    assert volt.pixel_size == (1000.0, 1000.0)
    np.testing.assert_allclose(volt.data, raw[::-1] * 2e-3)
    assert (amp.name, amp.z_unit) == ("Current", "A")
    np.testing.assert_allclose(amp.data, raw[::-1] * 1e-12)
    assert (counts.name, counts.z_unit) == ("DFL", "")


def test_frames_without_images_are_declined(tmp_path):
    raw = np.zeros((1, 8), dtype=np.int16)
    reason = declined(
        write_file(tmp_path, "spectrum.mdt", build_mdt(scanned_frame(raw, ftype=1, title=b"IV")))
    )
    assert "no 2-D scan" in reason


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def test_sniff_by_content_not_extension(sample, tmp_path):
    renamed = found_by_content(sample(SAMPLE), tmp_path, mdt, "renamed.dat")
    assert read(renamed).channels[0].data.shape == read(sample(SAMPLE)).channels[0].data.shape


def test_sniff_rejects_other_content(sample, tmp_path):
    random = noise(4096, seed=7)
    assert not mdt.sniff(tmp_path / "noise.mdt", random)
    assert not mdt.sniff(tmp_path / "zeros.mdt", b"\0" * 4096)
    assert not claims(mdt, sample("wsxm/sample_0.top"))
    assert find_format(write_file(tmp_path, "random.mdt", random)) is not mdt


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [4, 20, 33, 40, 800, 50_000, -5000])
def test_truncated_sample(sample, tmp_path, keep):
    data = sample(SAMPLE).read_bytes()
    cut = data[:keep]
    path = tmp_path / f"cut_{keep}.mdt"
    path.write_bytes(cut)
    declined(path, "truncated", module=mdt)


@pytest.mark.parametrize("keep", [800, 50_000, 400_000, -5000])
def test_truncated_sample_with_consistent_file_size(sample, tmp_path, keep):
    """The file header rewritten to match the cut: the frame bounds must still catch it."""
    cut = bytearray(sample(SAMPLE).read_bytes()[:keep])
    struct.pack_into("<I", cut, 4, len(cut) - 33)
    path = tmp_path / f"cut_consistent_{keep}.mdt"
    path.write_bytes(bytes(cut))
    with pytest.raises(ReaderError) as info:
        mdt.read(path)
    assert path.name in str(info.value)


def test_corrupt_frame_count_and_size(sample, tmp_path):
    data = bytearray(sample(SAMPLE).read_bytes())
    bad_count = bytearray(data)
    struct.pack_into("<H", bad_count, 12, 65535)
    path = tmp_path / "bad_count.mdt"
    path.write_bytes(bytes(bad_count))
    declined(path, "truncated", module=mdt)

    bad_size = bytearray(data)
    struct.pack_into("<I", bad_size, 33, 7)  # frame 1 declares 7 bytes: less than its own header
    path = tmp_path / "bad_size.mdt"
    path.write_bytes(bytes(bad_size))
    declined(path, "frame 1", module=mdt)


@pytest.mark.parametrize("max_index", [1_000_000, 2**40, 2**64 - 1])
def test_corrupt_mda_dimension(sample, ground_truth, tmp_path, max_index):
    ref = ground_truth[SAMPLE]["channels"][0]
    data = bytearray(sample(SAMPLE).read_bytes())
    # the x calibration's index range (min 0, max xres - 1) as written in the MDA frame
    where = data.find(struct.pack("<QQ", 0, ref["xres"] - 1))
    assert where > 0
    struct.pack_into("<Q", data, where + 8, max_index)
    path = tmp_path / "bad_dims.mdt"
    path.write_bytes(bytes(data))
    declined(path, module=mdt)


def test_absurd_scanned_dimensions_do_not_allocate(tmp_path):
    frame = bytearray(scanned_frame(np.zeros((2, 2), dtype=np.int16)))
    var_size = struct.unpack_from("<H", frame, 20)[0]
    struct.pack_into("<4H", frame, 22 + var_size, 0, 65535, 65535, 0)
    path = tmp_path / "absurd.mdt"
    path.write_bytes(build_mdt(bytes(frame)))
    declined(path, module=mdt)


@pytest.mark.parametrize("content", [b"", b"\x01\xb0\x93\xff", b"\x01\xb0\x93\xff" + b"\xff" * 60])
def test_tiny_and_garbage_files(tmp_path, content):
    declined(write_file(tmp_path, "tiny.mdt", content))
