"""Omicron MATRIX reader: an image file (``*.Z_mtrx``) read with its parameter file (``*_0001.mtrx``).

Expected values come from ground_truth.json (Gwyddion) or from the format itself: the block
tags, the ``DESC`` point counts and the ``XYScanner`` settings located by their names.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, matrix, read

IMAGE = "omicron_matrix/20201111--4_1.Z_mtrx"
PARAMS = "omicron_matrix/20201111_0001.mtrx"
IMAGE_NAME = Path(IMAGE).name
PARAMS_NAME = Path(PARAMS).name


@pytest.fixture(autouse=True, params=["omicron_matrix"])
def _sample_dir_id(request):
    """Put the sample folder's name in every test id, so ``-k omicron_matrix`` selects these tests."""
    return request.param


@pytest.fixture(scope="module")
def scan(samples_dir):
    return read(samples_dir / IMAGE)


@pytest.fixture(scope="module")
def image_bytes(samples_dir) -> bytes:
    return (samples_dir / IMAGE).read_bytes()


@pytest.fixture(scope="module")
def param_bytes(samples_dir) -> bytes:
    return (samples_dir / PARAMS).read_bytes()


def _pair(folder: Path, image: bytes, params: bytes | None, name: str = IMAGE_NAME) -> Path:
    """Write an image file (and its parameter file) into ``folder``; return the image path."""
    folder.mkdir(parents=True, exist_ok=True)
    if params is not None:
        (folder / PARAMS_NAME).write_bytes(params)
    path = folder / name
    path.write_bytes(image)
    return path


def _expect_error(path: Path, *fragments: str) -> ReaderError:
    with pytest.raises(ReaderError) as info:
        read(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return info.value


def _setting_offset(params: bytes, name: str, unit: str, kind: bytes) -> int:
    """Offset of the value of an ``EEPA`` setting (``<name> <unit> 0 <kind> value``)."""
    pattern = (
        struct.pack("<I", len(name)) + name.encode("utf-16-le")
        + struct.pack("<I", len(unit)) + unit.encode("utf-16-le")
        + b"\0\0\0\0" + kind[::-1]
    )  # fmt: skip
    at = params.find(pattern)
    assert at > 0, f"setting {name} not found"
    return at + len(pattern)


def _desc_offset(image: bytes) -> int:
    """Payload offset of the image file's DESC block (tag stored reversed: ``CSED``)."""
    at = image.find(b"CSED")
    assert at > 0
    return at + 8


# --------------------------------------------------------------------------------------
# The sample
# --------------------------------------------------------------------------------------


def test_channels_names_and_directions(scan, ground_truth):
    expected = ground_truth[IMAGE]["channels"]
    assert scan.format == "matrix"
    assert [c.name for c in scan.channels] == ["Z", "Z"]
    assert [c.direction for c in scan.channels] == ["trace", "retrace"]
    # the scan direction is kept in the channel header, the title as Gwyddion writes it
    assert [c.header["scan_direction"] for c in scan.channels] == ["up", "up"]
    assert [c.header["title"] for c in scan.channels] == [e["title"].strip() for e in expected]


def test_pixel_size_units_and_offset(scan, ground_truth):
    for ch, ref in zip(scan.channels, ground_truth[IMAGE]["channels"]):
        assert ch.xy_unit == "nm"
        assert ch.z_unit == "nm"
        assert ch.data.shape == (ref["yres"], ref["xres"])
        assert ch.data.dtype == np.float64
        assert ch.pixel_size == pytest.approx(
            (ref["yreal"] / ref["yres"] * 1e9, ref["xreal"] / ref["xres"] * 1e9)
        )
        assert ch.offset == pytest.approx((ref["yoff"] * 1e9, ref["xoff"] * 1e9))


def test_orientation_corners(scan, ground_truth):
    for ch, ref in zip(scan.channels, ground_truth[IMAGE]["channels"]):
        span = (ref["max"] - ref["min"]) * 1e9
        corners = [ch.data[0, 0], ch.data[0, -1], ch.data[-1, 0], ch.data[-1, -1]]
        for got, want in zip(corners, ref["corners_TL_TR_BL_BR"]):
            assert abs(got - want * 1e9) < 1e-4 * span


def test_values_follow_the_transfer_function(scan, image_bytes, param_bytes):
    """Z = raw / Factor (TFF_Linear1D); the first stored line is the bottom one."""
    desc = _desc_offset(image_bytes)
    data_at = image_bytes.find(b"ATAD") + 8
    assert data_at > desc
    xres = scan.channels[0].data.shape[1]
    first_lines = np.frombuffer(image_bytes, "<i4", count=2 * xres, offset=data_at)
    factor = scan.header["channel"]["transfer_function"]["Factor"]
    assert scan.header["channel"]["transfer_function"]["name"] == "TFF_Linear1D"
    trace, retrace = scan.channels
    np.testing.assert_allclose(trace.data[-1], first_lines[:xres] / factor * 1e9, rtol=1e-12)
    np.testing.assert_allclose(retrace.data[-1], first_lines[xres:][::-1] / factor * 1e9, rtol=1e-12)


def test_header_is_json_and_describes_the_scan(scan):
    text = json.dumps(scan.header)
    assert "XYScanner" in scan.header["parameters"]
    assert scan.header["parameter_file"] == PARAMS_NAME
    assert scan.header["parameter_state"].startswith("settings in effect")
    assert scan.header["scan"]["points"] == scan.channels[0].data.shape[1]
    assert scan.header["scan"]["x_retrace"] is True and scan.header["scan"]["y_retrace"] is False
    assert scan.header["channel"]["points_available"] == scan.header["channel"]["points_intended"]
    assert "MATRIX" in text
    for ch in scan.channels:
        json.dumps(ch.header)


def test_parameter_file_alone_is_declined(samples_dir):
    path = samples_dir / PARAMS
    error = _expect_error(path, "parameter file", "image files")
    assert IMAGE_NAME in error.reason  # it points at the images it describes


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def test_sniff_by_content_not_extension(tmp_path, samples_dir):
    for rel, neutral in ((IMAGE, "scan.dat"), (PARAMS, "settings.bin")):
        copy = tmp_path / neutral
        shutil.copyfile(samples_dir / rel, copy)
        module = find_format(copy)
        assert module is not None and module.FORMAT == "matrix"


def test_sniff_declines_other_content(tmp_path, samples_dir, ground_truth):
    rng = np.random.default_rng(7)
    junk = tmp_path / "junk.Z_mtrx"
    junk.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert not matrix.sniff(junk, junk.read_bytes())
    others = [rel for rel in sorted(ground_truth) if not rel.startswith("omicron_matrix/")]
    checked = 0
    for rel in others:
        path = samples_dir / rel
        if path.is_file():
            with open(path, "rb") as fh:
                assert not matrix.sniff(path, fh.read(4096)), rel
            checked += 1
    assert checked > 0


# --------------------------------------------------------------------------------------
# Companion file
# --------------------------------------------------------------------------------------


def test_missing_parameter_file_is_named(tmp_path, image_bytes):
    path = _pair(tmp_path, image_bytes, None)
    _expect_error(path, PARAMS_NAME, "missing")


def test_renamed_image_cannot_find_its_parameters(tmp_path, image_bytes, param_bytes):
    path = _pair(tmp_path, image_bytes, param_bytes, name="my_scan.Z_mtrx")
    _expect_error(path, "parameter file", "--")


def test_image_not_named_in_parameter_file_uses_final_settings(tmp_path, image_bytes, param_bytes):
    """Gwyddion's rule: without a matching reference, the settings at the end of the file."""
    path = _pair(tmp_path, image_bytes, param_bytes, name="20201111--99_1.Z_mtrx")
    scan = read(path)
    assert "does not name this image" in scan.header["parameter_state"]
    assert [c.direction for c in scan.channels] == ["trace", "retrace"]


def test_spectroscopy_channel_is_declined(tmp_path, image_bytes, param_bytes):
    path = _pair(tmp_path, image_bytes, param_bytes, name="20201111--4_1.I(V)_mtrx")
    _expect_error(path, "spectroscopy")


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [14, 20, 40, "desc", "data", "half", -4])
def test_truncated_image_file(tmp_path, image_bytes, param_bytes, cut):
    if cut == "desc":
        cut = _desc_offset(image_bytes) + 10
    elif cut == "data":
        cut = image_bytes.find(b"ATAD") + 8
    elif cut == "half":
        cut = len(image_bytes) // 2
    path = _pair(tmp_path, image_bytes[:cut], param_bytes)
    _expect_error(path, "truncated")


def test_interrupted_scan_is_padded_with_nan(tmp_path, image_bytes, param_bytes, scan):
    """DESC says 2.5 lines were captured: bottom trace+retrace line, half the next trace line."""
    xres = scan.channels[0].data.shape[1]
    captured = 2 * xres + xres // 2
    data = bytearray(image_bytes)
    struct.pack_into("<I", data, _desc_offset(image_bytes) + 24, captured)
    partial = read(_pair(tmp_path, bytes(data), param_bytes))
    trace, retrace = (c.data for c in partial.channels)
    np.testing.assert_array_equal(trace[-1], scan.channels[0].data[-1])
    np.testing.assert_array_equal(retrace[-1], scan.channels[1].data[-1])
    np.testing.assert_array_equal(trace[-2, : xres // 2], scan.channels[0].data[-2, : xres // 2])
    assert np.isnan(trace[-2, xres // 2 :]).all() and np.isnan(trace[:-2]).all()
    assert np.isnan(retrace[:-1]).all()
    assert partial.channels[0].header["points_available"] == captured


def test_up_and_down_scan(tmp_path, image_bytes, param_bytes, scan):
    """With Y_Retrace the stream continues with the down scan: first line on top, not flipped."""
    params = bytearray(param_bytes)
    struct.pack_into("<I", params, _setting_offset(param_bytes, "Y_Retrace", "--", b"BOOL"), 1)
    desc = _desc_offset(image_bytes)
    data_at = image_bytes.find(b"ATAD") + 8
    n_up = struct.unpack_from("<I", image_bytes, desc + 20)[0]
    up = np.frombuffer(image_bytes, "<i4", count=n_up, offset=data_at)
    down = (up[::-1] + 1000).astype("<i4")  # a distinguishable down scan
    image = bytearray(image_bytes + down.tobytes())
    for at, grow in ((16, 4 * n_up), (data_at - 4, 4 * n_up), (desc + 20, n_up), (desc + 24, n_up)):
        struct.pack_into("<I", image, at, struct.unpack_from("<I", image, at)[0] + grow)
    got = read(_pair(tmp_path, bytes(image), bytes(params)))
    assert [(c.direction, c.header["scan_direction"]) for c in got.channels] == [
        ("trace", "up"), ("retrace", "up"), ("trace", "down"), ("retrace", "down"),
    ]  # fmt: skip
    for mine, ref in zip(got.channels[:2], scan.channels):
        np.testing.assert_array_equal(mine.data, ref.data)
    xres = scan.channels[0].data.shape[1]
    factor = scan.header["channel"]["transfer_function"]["Factor"]
    np.testing.assert_allclose(got.channels[2].data[0], down[:xres] / factor * 1e9, rtol=1e-12)
    np.testing.assert_allclose(
        got.channels[3].data[0], down[xres : 2 * xres][::-1] / factor * 1e9, rtol=1e-12
    )
    np.testing.assert_allclose(got.channels[2].data[-1], down[-2 * xres : -xres] / factor * 1e9, rtol=1e-12)


def test_no_captured_points(tmp_path, image_bytes, param_bytes):
    data = bytearray(image_bytes)
    struct.pack_into("<I", data, _desc_offset(image_bytes) + 24, 0)
    _expect_error(_pair(tmp_path, bytes(data), param_bytes), "no measured points")


def test_more_points_than_the_file_holds(tmp_path, image_bytes, param_bytes):
    data = image_bytes[: len(image_bytes) - 400]
    data = data[:16] + struct.pack("<I", struct.unpack_from("<I", data, 16)[0] - 400) + data[20:]
    at = data.find(b"ATAD") + 4
    data = data[:at] + struct.pack("<I", struct.unpack_from("<I", data, at)[0] - 400) + data[at + 4 :]
    _expect_error(_pair(tmp_path, data, param_bytes), "truncated")


def test_corrupt_block_length(tmp_path, image_bytes, param_bytes):
    data = bytearray(image_bytes)
    struct.pack_into("<I", data, 16, 0xFFFFFFF0)  # the BKLT block claims 4 GiB
    _expect_error(_pair(tmp_path, bytes(data), param_bytes), "truncated")


def test_absurd_dimensions_in_parameter_file(tmp_path, image_bytes, param_bytes):
    params = bytearray(param_bytes)
    for name in ("Points", "Lines"):
        struct.pack_into("<i", params, _setting_offset(param_bytes, name, "Count", b"LONG"), 1_000_000)
    _expect_error(_pair(tmp_path, image_bytes, bytes(params)), "dimensions")


def test_parameter_file_not_matching_the_image(tmp_path, image_bytes, param_bytes):
    params = bytearray(param_bytes)
    struct.pack_into("<i", params, _setting_offset(param_bytes, "Points", "Count", b"LONG"), 401)
    _expect_error(_pair(tmp_path, image_bytes, bytes(params)), "does not match")


def test_parameter_file_without_settings(tmp_path, image_bytes, param_bytes):
    cut = param_bytes.find(b"APEE") + 100  # inside the EEPA block with all settings
    _expect_error(_pair(tmp_path, image_bytes, param_bytes[:cut]), "no scan settings")


def test_corrupt_parameter_block_length_does_not_hang(tmp_path, image_bytes, param_bytes):
    params = bytearray(param_bytes)
    struct.pack_into("<I", params, param_bytes.find(b"APEE") + 4, 0x7FFFFFF0)
    _expect_error(_pair(tmp_path, image_bytes, bytes(params)), PARAMS_NAME)


def test_scaling_survives_a_corrupt_later_part(tmp_path, image_bytes, param_bytes, scan):
    """Cut the parameter file right after the image's reference: nothing needed is lost."""
    ref = param_bytes.find(IMAGE_NAME.encode("utf-16-le"))
    got = read(_pair(tmp_path, image_bytes, param_bytes[: ref + 2 * len(IMAGE_NAME)]))
    np.testing.assert_array_equal(got.channels[0].data, scan.channels[0].data)


def test_unknown_transfer_function_gives_raw_values(tmp_path, image_bytes, param_bytes, scan):
    params = bytearray(param_bytes)
    name = "TFF_Linear1D".encode("utf-16-le")
    start = param_bytes.find(b"REFX")
    for _ in range(param_bytes.count(name, start)):
        at = params.find(name, start)
        params[at : at + len(name)] = "TFF_Unknown1".encode("utf-16-le")
    got = read(_pair(tmp_path, image_bytes, bytes(params)))
    assert got.channels[0].z_unit == ""
    assert got.channels[0].header["calibration"].startswith("raw values")
    factor = scan.header["channel"]["transfer_function"]["Factor"]
    np.testing.assert_allclose(got.channels[0].data, scan.channels[0].data * factor / 1e9, rtol=1e-9)


@pytest.mark.parametrize(
    "content",
    [b"ONTMATRX0101TLKB", b"ONTMATRX0101TLKB" + b"\xff" * 64, b"ONTMATRX0101XXXX" + b"\0" * 64],
)
def test_garbage_after_signature(tmp_path, content):
    path = tmp_path / "20201111--1_1.Z_mtrx"
    path.write_bytes(content)
    _expect_error(path)
