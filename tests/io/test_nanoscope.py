"""Bruker/Veeco Nanoscope reader: real samples, sniffing, the text and 32-bit variants, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, nanoscope, read
from tests.io.helpers import claims, declined, found_by_content, noise, read_as, write_file

IMAGE = "bruker_nanoscope/full_multiple_images.txt"
OLD = "bruker_nanoscope/old_bruker.002"
FORCE = "bruker_nanoscope/BrukerReader_ForceCurve_Sapphire_TAP525.001"
HEADER_ONLY = [f"bruker_nanoscope/bruker_data_header.00{i}" for i in range(4)]


def _header_end(raw: bytes) -> int:
    """End of the header text (Ctrl-Z), where the padding up to the first image begins."""
    return raw.index(b"\x1a")


def _patch(raw: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    """Edit the header text, keeping the padded header block (and so every data offset) in place."""
    size = int(re.search(rb"\\Data length: (\d+)", raw).group(1))  # the File list's: header size
    header = raw[: _header_end(raw)]
    assert header.count(old) >= count, old
    header = header.replace(old, new, count)
    assert len(header) < size
    return header + b"\x1a" + b"\x00" * (size - len(header) - 1) + raw[size:]


def _expected(ground_truth, relpath):
    return ground_truth[relpath]["channels"]


# --------------------------------------------------------------------------------------
# Real samples
# --------------------------------------------------------------------------------------


def test_channels_names_directions_units(sample, ground_truth):
    scan = read_as(sample(IMAGE), "nanoscope")
    ref = _expected(ground_truth, IMAGE)
    assert [c.name for c in scan.channels] == [r["title"] for r in ref]  # "@2:Image Data: S [Height]"
    # "\Line direction: Retrace" in both image sections.
    assert [c.direction for c in scan.channels] == ["retrace", "retrace"]
    assert [c.z_unit for c in scan.channels] == ["nm" if r["unit_z"] == "m" else r["unit_z"] for r in ref]
    for ch, r in zip(scan.channels, ref):
        assert ch.data.dtype == np.float64 and ch.data.shape == (r["yres"], r["xres"])
        assert ch.xy_unit == "nm"
        # "\Scan size: 2 2 ~m" over 512 x 512 samples.
        assert ch.pixel_size == pytest.approx((r["yreal"] * 1e9 / r["yres"], r["xreal"] * 1e9 / r["xres"]))
        assert ch.offset == (r["yoff"] * 1e9, r["xoff"] * 1e9)


def test_old_file_single_scan_size_and_trace(sample, ground_truth):
    scan = read(sample(OLD))
    (ch,) = scan.channels
    ref = _expected(ground_truth, OLD)[0]
    assert ch.name == "Height" and ch.direction == "trace" and ch.z_unit == "nm"
    assert ch.pixel_size == pytest.approx(
        (ref["yreal"] * 1e9 / ref["yres"], ref["xreal"] * 1e9 / ref["xres"])
    )


@pytest.mark.parametrize("relpath", [IMAGE, OLD])
def test_orientation_bottom_row_stored_first(relpath, sample, ground_truth):
    scan = read(sample(relpath))
    for ch, ref in zip(scan.channels, _expected(ground_truth, relpath)):
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        span = (ref["max"] - ref["min"]) * z
        tl, tr, bl, br = (v * z for v in ref["corners_TL_TR_BL_BR"])
        assert ch.data[0, 0] == pytest.approx(tl, abs=1e-4 * span)
        assert ch.data[0, -1] == pytest.approx(tr, abs=1e-4 * span)
        assert ch.data[-1, 0] == pytest.approx(bl, abs=1e-4 * span)
        assert ch.data[-1, -1] == pytest.approx(br, abs=1e-4 * span)


def test_soft_scale_lookup(sample):
    """Height = raw / 65536 * hard value (V) * Sens. Zscan (nm/V), from the header itself."""
    path = sample(IMAGE)
    raw = path.read_bytes()
    head = raw[: _header_end(raw)].decode("latin-1")
    sens = float(re.search(r"\\@Sens\. Zscan: V ([-\d.]+) nm/V", head).group(1))
    hard = float(re.search(r"\\@2:Z scale: V \[Sens\. Zscan\] \([^)]*\) ([-\d.]+) V", head).group(1))
    offset = int(re.search(r"\\Data offset: (\d+)", head).group(1))
    stored = np.frombuffer(raw, "<i2", count=512 * 512, offset=offset).reshape(512, 512)
    height = read(path).channels[0]
    np.testing.assert_allclose(height.data, stored[::-1] / 65536.0 * hard * sens, rtol=1e-12)


def test_headers_are_json(sample):
    scan = read(sample(IMAGE))
    text = json.dumps(scan.header)
    assert "Ciao image list" in scan.header and len(scan.header["Ciao image list"]) == 2
    assert scan.header["File list"]["Version"] == "0x05120130"
    assert "Scanner list" in text
    for ch in scan.channels:
        json.dumps(ch.header)
        assert ch.header["Samps/line"] == "512"
        assert "@2:Z scale" in ch.header


@pytest.mark.parametrize("relpath", HEADER_ONLY)
def test_header_only_declined(relpath, sample):
    with pytest.raises(ReaderError) as info:
        read(sample(relpath))
    assert Path(relpath).name in str(info.value)
    assert "header only" in info.value.reason


def test_force_curve_declined(sample):
    path = sample(FORCE)
    assert find_format(path) is nanoscope  # claimed, so the message is the clear one
    with pytest.raises(ReaderError) as info:
        read(path)
    assert path.name in str(info.value)
    assert "force curve, not an image" in info.value.reason


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".dat", ".bin", ""])
def test_sniffed_by_content_not_extension(suffix, sample, tmp_path):
    dst = found_by_content(sample(IMAGE), tmp_path, nanoscope, f"renamed{suffix}")
    assert [c.name for c in read(dst).channels] == ["Height", "Amplitude"]


def test_random_and_other_vendors_not_claimed(samples_dir, tmp_path):
    assert not claims(nanoscope, write_file(tmp_path, "junk.spm", noise(8192, seed=1)))
    text = b"File list\r\nVersion: 0x05120130\r\n* not a nanoscope header\r\n"
    assert not claims(nanoscope, write_file(tmp_path, "notes.txt", text))
    others = [p for p in samples_dir.rglob("*") if p.is_file() and "bruker_nanoscope" not in p.parts]
    others = [p for p in others if p.suffix not in (".md", ".json")]
    assert others
    for p in others:
        assert not claims(nanoscope, p), p


# --------------------------------------------------------------------------------------
# Variants built from the real sample
# --------------------------------------------------------------------------------------


def test_text_variant_matches_binary(sample, tmp_path):
    """'?*File list' files carry the pixel values as text after '\\*File list end'."""
    raw = sample(IMAGE).read_bytes()
    head = raw[: _header_end(raw)]
    offsets = [int(v) for v in re.findall(rb"\\Data offset: (\d+)", head)]
    values = b"".join(
        b" ".join(str(v).encode() for v in np.frombuffer(raw, "<i2", count=512 * 512, offset=o)) + b"\r\n"
        for o in offsets
    )
    text_file = tmp_path / "text.spm"
    text_file.write_bytes(b"?" + head[1:] + values)
    assert find_format(text_file) is nanoscope
    want = read(sample(IMAGE))
    got = read(text_file)
    assert [c.title for c in got.channels] == [c.title for c in want.channels]
    for g, w in zip(got.channels, want.channels):
        np.testing.assert_allclose(g.data, w.data, rtol=1e-12)
        assert g.z_unit == w.z_unit and g.pixel_size == w.pixel_size
    # Fewer values than the header declares: a clear error.
    declined(write_file(tmp_path, "short.spm", b"?" + head[1:] + values[: len(values) // 3]))


def test_32bit_variant(sample, tmp_path):
    """From version 9.2 on pixels are int32 and 'Bytes/pixel: 4' divides by 2**32."""
    raw = sample(IMAGE).read_bytes()
    end = _header_end(raw)
    head = raw[:end]
    offsets = [int(v) for v in re.findall(rb"\\Data offset: (\d+)", head)]
    first = offsets[0]
    n = 512 * 512
    new_offsets = [first + 4 * n * i for i in range(len(offsets))]
    head = head.replace(b"\\Version: 0x05120130", b"\\Version: 0x09200000")
    head = head.replace(b"\\Bytes/pixel: 2", b"\\Bytes/pixel: 4")
    head = head.replace(b"\\Data length: 524288", b"\\Data length: %d" % (4 * n))
    for old, new in zip(offsets, new_offsets):
        head = head.replace(b"\\Data offset: %d\r" % old, b"\\Data offset: %d\r" % new)
    block = head + b"\x1a" + b"\x00" * (first - len(head) - 1)
    data = b"".join(
        (np.frombuffer(raw, "<i2", count=n, offset=o).astype("<i4") * 65536).tobytes() for o in offsets
    )
    path = tmp_path / "v92.spm"
    path.write_bytes(block + data)
    want = read(sample(IMAGE))
    got = read(path)
    for g, w in zip(got.channels, want.channels):
        np.testing.assert_allclose(g.data, w.data, rtol=1e-12)


def test_non_square_scan_size(sample, tmp_path):
    raw = sample(IMAGE).read_bytes()
    path = tmp_path / "rect.spm"
    path.write_bytes(_patch(raw, b"\\Scan size: 2 2 ~m", b"\\Scan size: 2 1 ~m", count=2))
    for ch in read(path).channels:
        assert ch.pixel_size == pytest.approx((1000 / 512, 2000 / 512))


def test_line_endings_changed(sample, tmp_path):
    raw = sample(IMAGE).read_bytes()
    declined(write_file(tmp_path, "mailed.000", raw.replace(b"\r\n", b"\n")), "line endings")


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [30, 120, 9000, 40960 + 1000, -10])
def test_truncated(cut, sample, tmp_path):
    raw = sample(IMAGE).read_bytes()
    reason = declined(write_file(tmp_path, f"cut{cut}.spm", raw[:cut]))
    assert reason


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            b"\\Samps/line: 512\r\n\\Number of lines: 512",
            b"\\Samps/line: 512\r\n\\Number of lines: 0  ",
            "invalid",
        ),
        (
            b"\\Samps/line: 512\r\n\\Number of lines: 512",
            b"\\Samps/line: 9999999\r\n\\Number of lines: 9999999",
            "absurd",
        ),
        (b"\\Data offset: 40960", b"\\Data offset: 99940960", "header only"),
        (b"\\Data length: 524288", b"\\Data length: 9524288", "truncated"),
        (b"\\Bytes/pixel: 2", b"\\Bytes/pixel: 3", "bytes per pixel"),
        (b"\\Scan size: 2 2 ~m", b"\\Scan size: big   ", "scan size"),
    ],
)
def test_corrupt_header(old, new, words, sample, tmp_path):
    raw = sample(IMAGE).read_bytes()
    declined(write_file(tmp_path, "corrupt.spm", _patch(raw, old, new)), words)


def test_magic_only(tmp_path):
    path = tmp_path / "stub.spm"
    path.write_bytes(b"\\*File list\r\n")
    assert find_format(path) is nanoscope
    with pytest.raises(ReaderError, match="stub.spm"):
        read(path)
