"""WSxM reader: the real .top samples against Gwyddion, synthetic files built from the format
description (data types, unit rules, orientation), sniffing and corrupt input."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, read, wsxm
from tests.io.helpers import claims, declined, found_by_content, noise, write_file
from tests.io.test_ground_truth import KNOWN_DEVIATIONS

SAMPLES = ("wsxm/WSxM2DReader_jumpingmodeimage_0002_Topography.f.dy.top", "wsxm/sample_0.top")
JUMPING = SAMPLES[0]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def build_wsxm(
    raw: np.ndarray,
    control: dict[str, str] | None = None,
    general: dict[str, str] | None = None,
    kind: str = "SxM Image file",
    dtype: str = "<i2",
) -> bytes:
    """A WSxM file as the format description says (Latin-1 header, pixels after [Header end])."""
    ny, nx = raw.shape
    control = {"X Amplitude": "100 nm", "Y Amplitude": "100 nm", **(control or {})}
    general = {"Number of columns": str(nx), "Number of rows": str(ny), **(general or {})}
    lines = ["", "[Control]", ""]
    lines += [f"    {k}: {v}" for k, v in control.items() if v is not None]
    lines += ["", "[General Info]", ""]
    lines += [f"    {k}: {v}" for k, v in general.items() if v is not None]
    lines += ["", "[Header end]", ""]
    body = "\r\n".join(lines).encode("latin-1")
    pre = f"WSxM file copyright UAM\r\n{kind}\r\n".encode("latin-1")
    size_line = f"Image header size: {len(pre) + len(body) + 26}\r\n".encode()
    return pre + size_line + body + raw.astype(dtype).tobytes()


# --------------------------------------------------------------------------------------
# Real samples against Gwyddion
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", SAMPLES)
def test_sample_matches_gwyddion(sample, ground_truth, relpath):
    ref = ground_truth[relpath]["channels"][0]
    scan = read(sample(relpath))
    assert scan.format == "wsxm"
    (ch,) = scan.channels
    assert _norm(ch.name) in _norm(ref["title"])
    assert ch.name == "Topography"  # the "Acquisition channel" key
    assert ch.direction == "forward"  # "X scanning direction: Forward"
    assert ch.data.shape == (ref["yres"], ref["xres"])
    assert ch.data.dtype == np.float64
    assert ch.xy_unit == "nm"
    factor = 1e9 * KNOWN_DEVIATIONS.get(relpath, {}).get("lateral_factor", 1.0)
    assert ch.pixel_size == pytest.approx(
        (ref["yreal"] / ref["yres"] * factor, ref["xreal"] / ref["xres"] * factor)
    )
    assert ch.offset == (0.0, 0.0)
    assert ch.z_unit == "nm" and ref["unit_z"] == "m"
    span = (ref["max"] - ref["min"]) * 1e9
    for got, want in zip(
        (ch.data[0, 0], ch.data[0, -1], ch.data[-1, 0], ch.data[-1, -1]), ref["corners_TL_TR_BL_BR"]
    ):
        assert got == pytest.approx(want * 1e9, abs=1e-6 * span)
    assert float(ch.data.max() - ch.data.min()) == pytest.approx(span, rel=1e-9)


def test_header_is_json_and_keeps_the_raw_amplitudes(sample):
    scan = read(sample(JUMPING))
    json.dumps(scan.header)
    json.dumps(scan.channels[0].header)
    assert scan.header["General Info"]["Acquisition channel"] == "Topography"
    assert scan.header["preamble"][1] == "SxM Image file"
    header = scan.channels[0].header
    # the Latin-1 "µm" is decoded and used: 15 µm, not Gwyddion 2.62's 15 nm
    assert header["X Amplitude"] == scan.header["Control"]["X Amplitude"]
    assert "µm" in header["X Amplitude"]
    assert header["lateral_rule"] == "X Amplitude unit"


def test_latin1_micrometre_scan_size_is_read_as_stated(sample, ground_truth):
    ref = ground_truth[JUMPING]["channels"][0]
    ch = read(sample(JUMPING)).channels[0]
    number = float(ch.header["X Amplitude"].split()[0])
    assert ch.pixel_size[1] * ref["xres"] == pytest.approx(number * 1000)  # µm -> nm
    # Gwyddion 2.62 loses the µ and reports the same number in nm: a known 1000x deviation
    assert ref["xreal"] == pytest.approx(number * 1e-9)


def test_no_lateral_unit_takes_the_z_unit_as_gwyddion(tmp_path):
    raw = np.arange(12, dtype=np.int16).reshape(3, 4)
    path = tmp_path / "bare.top"
    path.write_bytes(build_wsxm(raw, {"X Amplitude": "40", "Y Amplitude": "30"}, {"Z Amplitude": "5 nm"}))
    ch = read(path).channels[0]
    assert ch.xy_unit == "nm"
    assert ch.pixel_size == pytest.approx((30 / 3, 40 / 4))
    assert "no lateral unit" in ch.header["lateral_rule"]


# --------------------------------------------------------------------------------------
# Synthetic files
# --------------------------------------------------------------------------------------


def test_int16_values_orientation_and_names(tmp_path):
    raw = np.arange(12, dtype=np.int16).reshape(3, 4) * 10 - 20
    general = {
        "Acquisition channel": "Normal force",
        "Z Amplitude": "2.2 V",
        "X scanning direction": "Backward",
    }
    path = tmp_path / "force.ch1"
    path.write_bytes(build_wsxm(raw, {"X Amplitude": "2 µm", "Y Amplitude": "3 µm"}, general))
    ch = read(path).channels[0]
    assert (ch.name, ch.direction, ch.z_unit) == ("Normal force", "backward", "V")
    assert ch.xy_unit == "nm"
    assert ch.pixel_size == pytest.approx((3000 / 3, 2000 / 4))  # Z is no length: X's own unit
    expected = raw.astype(float) * 2.2 / (raw.max() - raw.min())
    np.testing.assert_allclose(ch.data, expected[::-1, ::-1])  # stored rotated by 180 degrees
    assert ch.header["lateral_rule"] == "X Amplitude unit"


@pytest.mark.parametrize("type_name,dtype", [("double", "<f8"), ("float", "<f4"), ("integer", "<i2")])
def test_data_types_as_in_stp_files(tmp_path, type_name, dtype):
    raw = np.array([[0.5, 1.5, 2.0], [3.0, 4.5, 7.5]]).astype(dtype)
    general = {"Image Data Type": type_name, "Z Amplitude": "14 nm"}
    path = tmp_path / "height.stp"
    path.write_bytes(build_wsxm(raw, general=general, dtype=dtype))
    ch = read(path).channels[0]
    raw64 = raw.astype(np.float64)
    expected = raw64 * 14.0 / (raw64.max() - raw64.min())
    np.testing.assert_allclose(ch.data, expected[::-1, ::-1])
    assert ch.data.dtype == np.float64
    assert (ch.z_unit, ch.name) == ("nm", "Topography")  # no acquisition channel: Gwyddion's unit title


def test_arbitrary_units_pi_and_missing_units(tmp_path):
    raw = np.array([[0, 10], [20, 40]], dtype=np.int16)
    path = tmp_path / "au.top"
    path.write_bytes(build_wsxm(raw, {"X Amplitude": "50", "Y Amplitude": None}, {"Z Amplitude": "3 a.u."}))
    ch = read(path).channels[0]
    assert (ch.z_unit, ch.xy_unit, ch.name) == ("", "", "Unknown channel")
    assert ch.pixel_size == (25.0, 25.0)  # Y Amplitude defaults to X
    np.testing.assert_allclose(ch.data, (raw * 3 / 40)[::-1, ::-1])

    path = tmp_path / "phase.top"
    path.write_bytes(build_wsxm(raw, general={"Z Amplitude": "0.5 Pi", "Acquisition channel": "Phase"}))
    ch = read(path).channels[0]
    assert ch.z_unit == ""
    np.testing.assert_allclose(ch.data.max() - ch.data.min(), 0.5 * math.pi)

    path = tmp_path / "noamp.top"
    path.write_bytes(build_wsxm(raw))
    ch = read(path).channels[0]
    assert ch.z_unit == ""
    np.testing.assert_allclose(ch.data, raw[::-1, ::-1])


def test_direction_from_file_name_when_header_is_silent(tmp_path):
    raw = np.zeros((2, 2), dtype=np.int16)
    for name, want in (
        ("img_0001_Topography.b.uy.top", "backward"),
        ("img.f.top", "forward"),
        ("img.top", None),
    ):
        path = tmp_path / name
        path.write_bytes(build_wsxm(raw, general={"Z Amplitude": "1 nm"}))
        assert read(path).channels[0].direction == want


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def test_sniff_by_content_not_extension(sample, tmp_path):
    for relpath in SAMPLES:
        renamed = found_by_content(sample(relpath), tmp_path, wsxm)
        assert read(renamed).channels[0].name == "Topography"


def test_sniff_rejects_other_content(sample, tmp_path):
    random = noise(4096, seed=11)
    assert not wsxm.sniff(tmp_path / "noise.top", random)
    assert not wsxm.sniff(tmp_path / "text.top", b"WSxM is a program\r\nnothing else\r\n")
    assert not claims(wsxm, sample("ntmdt_mdt/test_mdt.mdt"))
    assert find_format(write_file(tmp_path, "random.top", random)) is not wsxm


def test_curve_files_are_declined(tmp_path):
    path = tmp_path / "iv.cur"
    text = (
        "WSxM file copyright UAM\r\nIV curve file\r\nImage header size: 200\r\n\r\n[General Info]\r\n"
        "    Number of lines: 1\r\n    Number of points: 2\r\n\r\n[Header end]\r\n0 1\r\n1 2\r\n"
    )
    path.write_bytes(text.encode())
    assert find_format(path) is wsxm
    with pytest.raises(ReaderError) as info:
        read(path)
    assert path.name in str(info.value)
    assert "curve" in info.value.reason


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [30, 60, 1000, 3700, -2, -10_000])
def test_truncated_sample(sample, tmp_path, keep):
    data = sample(JUMPING).read_bytes()
    path = tmp_path / f"cut_{keep}.top"
    path.write_bytes(data[:keep])
    declined(path, "truncated", module=wsxm)


@pytest.mark.parametrize(
    "old,new",
    [
        (b"Number of columns: 256", b"Number of columns: 1000000"),
        (b"Number of rows: 256", b"Number of rows: 1000000"),
        (b"Number of rows: 256", b"Number of rows: -256"),
        (b"Number of columns: 256", b"Number of columns: many"),
        (b"Image Data Type: short", b"Image Data Type: complex"),
    ],
)
def test_corrupt_header(sample, tmp_path, old, new):
    data = sample(JUMPING).read_bytes()
    assert old in data
    path = tmp_path / "corrupt.top"
    path.write_bytes(data.replace(old, new))
    declined(path, module=wsxm)


def test_absurd_dimensions_do_not_allocate(tmp_path):
    data = build_wsxm(np.zeros((2, 2), dtype=np.int16))
    data = data.replace(b"Number of columns: 2", b"Number of columns: 1000000")
    data = data.replace(b"Number of rows: 2", b"Number of rows: 1000000")
    path = tmp_path / "absurd.top"
    path.write_bytes(data)
    declined(path, "absurd", module=wsxm)
