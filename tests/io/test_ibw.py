"""Asylum Research / Igor binary wave (.ibw) reader.

Expected values come from ground_truth.json (Gwyddion), from the igor2 library (an independent
parser of the same files) and from the Igor format specification (PTN003) for the synthetic
files built here.
"""

from __future__ import annotations

import json
import re
import shutil
import struct

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, ibw, read
from tests.io.helpers import declined, write_file

IMAGES = ["asylum_ibw/AR_20211011.ibw", "asylum_ibw/IgorIBWReader_P0089OP0027.ibw"]
GENERIC = ["asylum_ibw/mac-version2.ibw", "asylum_ibw/win-version5.ibw"]
FORCE = "asylum_ibw/IgorIBWReader_ForceCurve.ibw"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _fix_checksum(data: bytearray, order: str = "<", size: int = 384) -> bytearray:
    """Recompute the v5 header checksum (the 16-bit sum of the first 384 bytes must be 0)."""
    struct.pack_into(order + "h", data, 2, 0)
    total = int(np.frombuffer(bytes(data[:size]), order + "u2").sum()) & 0xFFFF
    struct.pack_into(order + "H", data, 2, (-total) & 0xFFFF)
    return data


def _igor_v5(data: np.ndarray, *, order="<", labels=(), note=b"", units=b"m", dim_units=b"m", sfa=1e-9):
    """A minimal Igor v5 wave laid out as PTN003 describes. ``data`` is (nchan, y, x)."""
    nchan, yres, xres = data.shape
    codes = {"f4": 2, "f8": 4, "i2": 0x10, "i4": 0x20, "u2": 0x50, "c8": 3}
    kind = data.dtype.kind + str(data.dtype.itemsize)
    # Igor is column-major: x fastest, then y, then channel
    body = np.ascontiguousarray(data).astype(data.dtype.newbyteorder(order)).tobytes()
    label_bytes = b"".join(name.encode().ljust(32, b"\0") for name in ("", *labels)) if labels else b""
    wh = bytearray(320)
    struct.pack_into(order + "I", wh, 12, data.size)
    struct.pack_into(order + "h", wh, 16, codes[kind])
    wh[28:36] = b"testwave"
    struct.pack_into(order + "4i", wh, 68, xres, yres, nchan, 0)
    struct.pack_into(order + "4d", wh, 84, sfa, sfa, 1.0, 1.0)
    wh[148 : 148 + len(units)] = units
    wh[152 : 152 + len(dim_units)] = dim_units
    wh[156 : 156 + len(dim_units)] = dim_units
    bh = bytearray(64)
    struct.pack_into(order + "h", bh, 0, 5)
    struct.pack_into(order + "I", bh, 4, 320 + len(body))
    struct.pack_into(order + "I", bh, 12, len(note))
    struct.pack_into(order + "I", bh, 36 + 8, len(label_bytes))  # labels of dimension 2
    head = _fix_checksum(bh + wh, order)
    return bytes(head) + body + note + label_bytes


# ---------------------------------------------------------------------------------------------
# Real samples
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", IMAGES)
def test_channel_names_directions_and_units(relpath, sample, ground_truth):
    scan = read(sample(relpath))
    refs = ground_truth[relpath]["channels"]
    assert scan.format == "ibw" and scan.path == str(sample(relpath))
    assert [_norm(c.name + (c.direction or "")) for c in scan.channels] == [_norm(r["title"]) for r in refs]
    for ch, ref in zip(scan.channels, refs):
        assert ch.direction == "retrace"
        assert not ch.name.endswith("Retrace")
        assert ch.z_unit == ("nm" if ref["unit_z"] == "m" else ref["unit_z"])
        assert ch.data.dtype == np.float64 and ch.data.ndim == 2


@pytest.mark.parametrize("relpath", IMAGES)
def test_pixel_size_follows_wave_scaling(relpath, sample, ground_truth):
    import igor2.binarywave as bw

    wave = bw.load(str(sample(relpath)))["wave"]["wave_header"]
    scan = read(sample(relpath))
    ref = ground_truth[relpath]["channels"][0]
    note = scan.header["note"]
    points = int(note["ScanPoints"])
    for ch in scan.channels:
        assert ch.xy_unit == "nm"
        assert ch.pixel_size[1] == pytest.approx(wave["sfA"][0] * 1e9, rel=1e-12)
        assert ch.pixel_size[0] == pytest.approx(wave["sfA"][1] * 1e9, rel=1e-12)
        assert ch.pixel_size[1] == pytest.approx(ref["xreal"] / ref["xres"] * 1e9, rel=1e-9)
        # Asylum's rule: delta = ScanSize / (points - 1), not ScanSize / points
        assert ch.pixel_size[1] == pytest.approx(float(note["ScanSize"]) / (points - 1) * 1e9, rel=1e-6)
        assert ch.offset == (0.0, 0.0)


@pytest.mark.parametrize("relpath", IMAGES)
def test_orientation_against_igor2_and_gwyddion(relpath, sample, ground_truth):
    import igor2.binarywave as bw

    wdata = bw.load(str(sample(relpath)))["wave"]["wData"]  # (x, y, channel)
    scan = read(sample(relpath))
    for k, (ch, ref) in enumerate(zip(scan.channels, ground_truth[relpath]["channels"])):
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        # row 0 is the highest y index (Igor's y axis points up); column 0 is x index 0
        expected = wdata[:, ::-1, k].T.astype(np.float64) * z
        np.testing.assert_allclose(ch.data, expected, rtol=1e-12)
        span = (ref["max"] - ref["min"]) * z
        assert ch.data[0, 0] == pytest.approx(ref["corners_TL_TR_BL_BR"][0] * z, abs=1e-4 * span)
        assert ch.data[-1, -1] == pytest.approx(ref["corners_TL_TR_BL_BR"][3] * z, abs=1e-4 * span)


def test_headers_are_json(sample):
    scan = read(sample(IMAGES[1]))
    text = json.dumps(scan.header)
    assert "ScanSize" in scan.header["note"] and "MFP3D" in text
    assert scan.header["labels"][1:] == [
        "HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace", "UserIn0Retrace",
    ]  # fmt: skip
    for ch in scan.channels:
        json.dumps(ch.header)
        assert ch.header["label"].startswith(ch.name)
    user = scan.channels[-1]
    assert user.header["unit_source"] == "note" and user.header["note"]["UserIn0Unit"] == "V"


@pytest.mark.parametrize("relpath", IMAGES + GENERIC + [FORCE])
def test_sniffed_by_content_under_any_name(relpath, sample, tmp_path):
    target = tmp_path / "renamed.dat"
    shutil.copyfile(sample(relpath), target)
    assert find_format(target) is ibw


def test_other_files_are_not_claimed(sample, samples_dir, tmp_path):
    rng = np.random.default_rng(0)
    for _i in range(20):
        junk = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        assert not ibw.sniff(tmp_path / "junk.ibw", junk)
    # version field right but checksum wrong
    bad = bytearray(sample(IMAGES[0]).read_bytes()[:4096])
    bad[300] ^= 0xFF
    assert not ibw.sniff(tmp_path / "x.ibw", bytes(bad))
    # other vendors' samples
    for other in samples_dir.rglob("*"):
        if other.is_file() and "asylum_ibw" not in other.parts:
            with open(other, "rb") as fh:
                assert not ibw.sniff(other, fh.read(4096)), other


@pytest.mark.parametrize("relpath", GENERIC)
def test_generic_waves_are_declined(relpath, sample):
    with pytest.raises(ReaderError) as info:
        read(sample(relpath))
    assert "generic Igor wave" in info.value.reason and "not an SPM image" in info.value.reason
    assert sample(relpath).name in str(info.value)


def test_force_curve_is_declined(sample):
    with pytest.raises(ReaderError) as info:
        read(sample(FORCE))
    assert "force curve" in info.value.reason
    assert "IgorIBWReader_ForceCurve.ibw" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 100, 383, 384 + 1000, 262528 + 500, 262528 + 22627 + 40])
def test_truncated_file(cut, sample, tmp_path):
    data = sample(IMAGES[0]).read_bytes()
    declined(write_file(tmp_path, "cut_AR.ibw", data[:cut]))


def test_empty_file(tmp_path):
    declined(write_file(tmp_path, "empty.ibw", b""))


def _patched(sample, tmp_path, name, **dims):
    data = bytearray(sample(IMAGES[0]).read_bytes())
    nd = list(struct.unpack_from("<4i", data, 64 + 68))
    for key, value in dims.items():
        nd["xyzt".index(key)] = value
    struct.pack_into("<4i", data, 64 + 68, *nd)
    path = tmp_path / name
    path.write_bytes(bytes(_fix_checksum(data)))
    return path


def test_absurd_dimensions(sample, tmp_path):
    path = _patched(sample, tmp_path, "huge.ibw", x=10**6, y=10**6)
    assert find_format(path) is ibw
    with pytest.raises(ReaderError, match="huge.ibw") as info:
        read(path)
    assert "absurd" in info.value.reason


def test_dimensions_not_matching_points(sample, tmp_path):
    path = _patched(sample, tmp_path, "mismatch.ibw", x=129)
    with pytest.raises(ReaderError, match="mismatch.ibw") as info:
        read(path)
    assert "do not match" in info.value.reason


def test_volume_is_declined(sample, tmp_path):
    path = _patched(sample, tmp_path, "volume.ibw", t=2)
    with pytest.raises(ReaderError, match="volume.ibw"):
        read(path)


def test_note_size_past_end(sample, tmp_path):
    data = bytearray(sample(IMAGES[0]).read_bytes())
    struct.pack_into("<I", data, 12, 10**9)  # noteSize
    declined(write_file(tmp_path, "bignote.ibw", bytes(_fix_checksum(data))), "truncated")


# ---------------------------------------------------------------------------------------------
# Synthetic waves: byte orders and data types from the specification
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("dtype", ["f4", "f8", "i2", "i4", "u2"])
def test_synthetic_byte_orders_and_types(order, dtype, tmp_path):
    rng = np.random.default_rng(1)
    values = (
        rng.integers(-100, 100, (2, 3, 5)).astype(dtype)
        if dtype != "u2"
        else rng.integers(0, 200, (2, 3, 5)).astype(dtype)
    )
    note = b"ScanSize: 5e-09\rHeightUnit: m\rNapPhaseUnit: deg\r"
    raw = _igor_v5(values, order=order, labels=("HeightTrace", "NapPhaseRetrace"), note=note)
    path = tmp_path / f"synthetic_{dtype}.bin"
    path.write_bytes(raw)
    assert find_format(path) is ibw
    scan = read(path)
    height, phase = scan.channels
    assert (height.name, height.direction, height.z_unit) == ("Height", "trace", "nm")
    assert (phase.name, phase.direction, phase.z_unit) == ("NapPhase", "retrace", "deg")
    assert height.data.shape == (3, 5)
    np.testing.assert_allclose(height.data, values[0, ::-1].astype(np.float64) * 1e9)
    np.testing.assert_allclose(phase.data, values[1, ::-1].astype(np.float64))
    assert height.pixel_size == pytest.approx((1.0, 1.0))


def test_synthetic_complex_gives_real_and_imaginary(tmp_path):
    values = (np.arange(12).reshape(1, 3, 4) + 1j * np.arange(12, 24).reshape(1, 3, 4)).astype("c8")
    path = tmp_path / "complex.ibw"
    path.write_bytes(_igor_v5(values, labels=("AmplitudeRetrace",), note=b"x: 1\r"))
    re_, im = read(path).channels
    np.testing.assert_allclose(re_.data, values[0, ::-1].real * 1e9)
    np.testing.assert_allclose(im.data, values[0, ::-1].imag * 1e9)
    assert im.name.startswith("Amplitude") and im.name != re_.name


def test_synthetic_without_note_uses_wave_units(tmp_path):
    values = np.ones((1, 4, 4), dtype="f4")
    path = tmp_path / "plain.ibw"
    path.write_bytes(_igor_v5(values, units=b"V", dim_units=b"um", sfa=0.5))
    (ch,) = read(path).channels
    assert ch.z_unit == "V" and ch.name == "testwave" and ch.direction is None
    assert ch.pixel_size == pytest.approx((500.0, 500.0)) and ch.xy_unit == "nm"
