"""Nanonis .sxm scans, and Nanonis spectroscopy (.dat / .3ds) files that must be declined.

Expected values come from ground_truth.json (Gwyddion) or from the format itself: the
header text of the sample and the raw big-endian floats after the ``\\x1a\\x04`` marker.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, nanonis_spectra, read, sxm
from tests.io.helpers import claims, declined, found_by_content, noise, read_as, write_file

SXM_SAMPLES = ("nanonis_sxm/test.sxm", "nanonis_sxm/A151216.123306-02602.sxm")
SPEC_SAMPLES = (
    "nanonis_dat_3ds/Bias-Spectroscopy002.dat",
    "nanonis_dat_3ds/NanonisReader_STS_grid_lockin.3ds",
)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _tag(raw: bytes, tag: str) -> str:
    """The value line(s) of ``:TAG:`` in a raw .sxm header."""
    text = raw[: raw.find(b"\x1a\x04")].decode("latin-1")
    m = re.search(rf"^:{re.escape(tag)}:\r?\n(.*?)(?=^:)", text, re.S | re.M)
    assert m, f"no {tag} in header"
    return m.group(1).strip()


def _raw_images(raw: bytes, xres: int, yres: int) -> np.ndarray:
    start = raw.find(b"\x1a\x04") + 2
    return np.frombuffer(raw, ">f4", offset=start).reshape(-1, yres, xres)


def _split_title(title: str) -> tuple[str, str | None]:
    m = re.match(r"(.*) \((Forward|Backward)\)$", title)
    return (m.group(1), m.group(2).lower()) if m else (title, None)


def _make_sxm(
    values: np.ndarray,
    names=(("Z", "m"),),
    direction="both",
    scan_dir="up",
    scan_range=(4e-9, 2e-9),
    offset=(1e-8, -2e-8),
    extra="",
) -> bytes:
    """A minimal version-2 .sxm file; ``values`` is ``(n_images, yres, xres)`` as stored."""
    _n, yres, xres = values.shape
    info = "".join(f"\t{i}\t{nm}\t{u}\t{direction}\t1.000E+0\t0.000E+0\n" for i, (nm, u) in enumerate(names))
    header = (
        ":NANONIS_VERSION:\n2\n:SCANIT_TYPE:\n              FLOAT            MSBFIRST\n"
        f":SCAN_PIXELS:\n       {xres}       {yres}\n"
        f":SCAN_RANGE:\n           {scan_range[0]:E}           {scan_range[1]:E}\n"
        f":SCAN_OFFSET:\n             {offset[0]:E}         {offset[1]:E}\n"
        f":SCAN_ANGLE:\n            0.000E+0\n:SCAN_DIR:\n{scan_dir}\n{extra}"
        ":DATA_INFO:\n\tChannel\tName\tUnit\tDirection\tCalibration\tOffset\n"
        f"{info}\n:SCANIT_END:\n\n\n"
    )
    return header.encode("latin-1") + b"\x1a\x04" + values.astype(">f4").tobytes()


# --------------------------------------------------------------------------------------
# real samples
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", SXM_SAMPLES)
def test_channels_names_and_directions(relpath, sample, ground_truth):
    scan = read_as(sample(relpath), "sxm")
    expected = [_split_title(c["title"]) for c in ground_truth[relpath]["channels"]]
    assert [(c.name, c.direction) for c in scan.channels] == expected
    for ch in scan.channels:
        assert ch.data.dtype == np.float64 and ch.data.ndim == 2
        assert ch.data.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("relpath", SXM_SAMPLES)
def test_pixel_size_offset_units_from_header(relpath, sample, ground_truth):
    path = sample(relpath)
    raw = path.read_bytes()
    xres, yres = (int(v) for v in _tag(raw, "SCAN_PIXELS").split())
    xreal, yreal = (float(v) for v in _tag(raw, "SCAN_RANGE").split())
    cx, cy = (float(v) for v in _tag(raw, "SCAN_OFFSET").split())
    scan = read(path)
    for ch, ref in zip(scan.channels, ground_truth[relpath]["channels"]):
        assert ch.data.shape == (yres, xres)
        assert ch.xy_unit == "nm"
        assert ch.pixel_size == pytest.approx((yreal * 1e9 / yres, xreal * 1e9 / xres), rel=1e-9)
        # SCAN_OFFSET is the frame centre; the offset is the top-left corner (Gwyddion's rule)
        assert ch.offset == pytest.approx(
            ((cy - yreal / 2) * 1e9, (cx - xreal / 2) * 1e9), rel=1e-9, abs=1e-9
        )
        assert ch.offset == pytest.approx((ref["yoff"] * 1e9, ref["xoff"] * 1e9), rel=1e-5)
        assert ch.z_unit == ("nm" if ref["unit_z"] == "m" else ref["unit_z"])


@pytest.mark.parametrize("relpath", SXM_SAMPLES)
def test_orientation_against_raw_data(relpath, sample):
    """SCAN_DIR up: the first stored line is the bottom row; backward lines are stored mirrored."""
    path = sample(relpath)
    raw = path.read_bytes()
    assert _tag(raw, "SCAN_DIR") == "up"
    xres, yres = (int(v) for v in _tag(raw, "SCAN_PIXELS").split())
    images = _raw_images(raw, xres, yres)
    scan = read(path)
    assert len(scan.channels) == len(images)
    for ch, img in zip(scan.channels, images):
        factor = 1e9 if ch.z_unit == "nm" else 1.0
        expected = img[::-1, ::-1] if ch.direction == "backward" else img[::-1, :]
        np.testing.assert_allclose(ch.data, expected.astype(np.float64) * factor, rtol=1e-12)


def test_corner_values_match_gwyddion(sample, ground_truth):
    relpath = "nanonis_sxm/test.sxm"
    scan = read(sample(relpath))
    for ch, ref in zip(scan.channels, ground_truth[relpath]["channels"]):
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        got = [ch.data[0, 0], ch.data[0, -1], ch.data[-1, 0], ch.data[-1, -1]]
        np.testing.assert_allclose(got, np.array(ref["corners_TL_TR_BL_BR"]) * z, rtol=1e-6)


@pytest.mark.parametrize("relpath", SXM_SAMPLES)
def test_headers_are_json(relpath, sample):
    scan = read(sample(relpath))
    text = json.dumps(scan.header)
    assert "DATA_INFO" in scan.header and "SCAN_PIXELS" in scan.header
    assert isinstance(scan.header["DATA_INFO"], list)
    assert scan.header["DATA_INFO"][0]["Name"] == scan.channels[0].name
    assert "Z-CONTROLLER" in text
    for ch in scan.channels:
        json.dumps(ch.header)
        assert ch.header["Name"] == ch.name and ch.header["direction"] == ch.direction


# --------------------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", SXM_SAMPLES)
def test_sniffed_by_content_not_extension(relpath, sample, tmp_path):
    found_by_content(sample(relpath), tmp_path, sxm, "scan.data")


def test_sniff_refuses_other_content(sample, tmp_path):
    junk = write_file(tmp_path, "junk.sxm", noise(5000, seed=0))
    assert not claims(sxm, junk)
    assert not claims(sxm, sample("nanosurf_nid/NanoSurf_20160301.nid"))
    for relpath in SPEC_SAMPLES:
        assert not claims(sxm, sample(relpath))
    assert not sxm.sniff(junk, b"")


# --------------------------------------------------------------------------------------
# synthetic files: rules from the format
# --------------------------------------------------------------------------------------


def test_synthetic_non_square_layout(tmp_path):
    """SCAN_PIXELS is ``xres yres``; stored row-major; forward then backward per channel."""
    xres, yres = 5, 3
    stored = np.arange(2 * yres * xres, dtype=np.float64).reshape(2, yres, xres) * 1e-9
    path = tmp_path / "a.sxm"
    path.write_bytes(_make_sxm(stored, scan_dir="down"))
    scan = read(path)
    fwd, bwd = scan.channels
    assert fwd.data.shape == (yres, xres)
    assert fwd.pixel_size == pytest.approx((2.0 / yres, 4.0 / xres))
    assert fwd.offset == pytest.approx((-20.0 - 1.0, 10.0 - 2.0))
    # SCAN_DIR down: no vertical flip; backward mirrored in x
    np.testing.assert_allclose(fwd.data, stored[0] * 1e9, rtol=1e-6)
    np.testing.assert_allclose(bwd.data, stored[1, :, ::-1] * 1e9, rtol=1e-6)
    assert (fwd.direction, bwd.direction) == ("forward", "backward")


def test_synthetic_single_direction_and_units(tmp_path):
    stored = np.stack([np.full((2, 2), 1e-12), np.full((2, 2), 0.5)])
    path = tmp_path / "b.sxm"
    path.write_bytes(_make_sxm(stored, names=(("Current", "A"), ("Phase", "deg")), direction="forward"))
    scan = read(path)
    assert [(c.name, c.direction, c.z_unit) for c in scan.channels] == [
        ("Current", "forward", "A"),
        ("Phase", "forward", "deg"),
    ]
    assert scan.channels[0].data[0, 0] == pytest.approx(1e-12)


def test_nan_pixels_of_an_interrupted_scan_stay_nan(tmp_path):
    xres = yres = 8
    stored = np.ones((2, yres, xres))
    stored[:, 5:, :] = np.nan  # the last 3 lines were never scanned
    path = tmp_path / "interrupted.sxm"
    path.write_bytes(_make_sxm(stored, scan_dir="up"))
    fwd, bwd = read(path).channels
    # scanned upwards: the unscanned lines are the top rows
    assert np.isnan(fwd.data[:3]).all() and np.isfinite(fwd.data[3:]).all()
    assert np.isnan(bwd.data[:3]).all()
    assert np.nanmean(fwd.data) == pytest.approx(1e9)  # Z in m -> nm


def test_slice_file_with_bogus_time_holds_one_direction(tmp_path):
    stored = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 2.0)])
    path = tmp_path / "slice.sxm"
    path.write_bytes(_make_sxm(stored, names=(("Z", "m"), ("Current", "A")), extra=":ACQ_TIME:\nN/A\n"))
    scan = read(path)
    assert [(c.name, c.direction) for c in scan.channels] == [("Z", "forward"), ("Current", "forward")]
    assert scan.channels[1].data[0, 0] == pytest.approx(2.0)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.001, 0.005, 0.3, 0.9999])
def test_truncated_sample_is_refused(fraction, sample, tmp_path):
    raw = sample("nanonis_sxm/test.sxm").read_bytes()
    declined(write_file(tmp_path, "cut.sxm", raw[: max(int(len(raw) * fraction), 20)]))


def test_header_only_file_is_refused(sample, tmp_path):
    raw = sample("nanonis_sxm/test.sxm").read_bytes()
    declined(write_file(tmp_path, "header_only.sxm", raw[: raw.find(b"\x1a\x04") + 2]), match="truncated")


@pytest.mark.parametrize(
    "new_pixels, message",
    [
        (b"1000000 1000000", "absurd"),
        (b"512 512", "truncated"),
        (b"abc", "SCAN_PIXELS"),
        (b"0 256", "invalid"),
    ],
)
def test_corrupt_pixel_count_is_refused(new_pixels, message, sample, tmp_path):
    raw = sample("nanonis_sxm/test.sxm").read_bytes()
    bad = re.sub(rb"(:SCAN_PIXELS:\r?\n)[^\n]*", lambda m: m.group(1) + new_pixels, raw, count=1)
    assert bad != raw
    declined(write_file(tmp_path, "badpix.sxm", bad), match=message)


def test_unknown_direction_and_missing_table_are_refused(sample, tmp_path):
    raw = sample("nanonis_sxm/test.sxm").read_bytes()
    path = write_file(tmp_path, "bad.sxm", raw.replace(b"\tboth\t", b"\tsideways\t", 1))
    declined(path, match="direction")
    path.write_bytes(raw.replace(b":DATA_INFO:", b":DATA_NFO:", 1))
    declined(path, match="no channels")


# --------------------------------------------------------------------------------------
# Nanonis spectroscopy (.dat / .3ds): recognised, then declined
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relpath, phrase",
    [
        (SPEC_SAMPLES[0], "Nanonis point spectroscopy, not an image"),
        (SPEC_SAMPLES[1], "Nanonis grid spectroscopy (.3ds), not an image"),
    ],
)
def test_spectroscopy_is_declined_with_reason(relpath, phrase, sample, tmp_path):
    path = sample(relpath)
    assert find_format(path) is nanonis_spectra
    with pytest.raises(ReaderError) as info:
        read(path)
    assert phrase in str(info.value)
    assert path.name in str(info.value)
    neutral = tmp_path / "spectrum.bin"
    shutil.copyfile(path, neutral)
    assert find_format(neutral) is nanonis_spectra
    with pytest.raises(ReaderError) as info:
        read(neutral)
    assert phrase in info.value.reason


def test_grid_reason_gives_its_dimensions(sample):
    path = sample(SPEC_SAMPLES[1])
    head = path.read_bytes()[:4096]
    nx, ny = re.search(rb'Grid dim="(\d+) x (\d+)"', head).groups()
    with pytest.raises(ReaderError) as info:
        nanonis_spectra.read(path)
    assert f"{nx.decode()} x {ny.decode()}" in info.value.reason


@pytest.mark.parametrize(
    "content",
    [
        b"x,y\n1,2\n3,4\n",
        b"Time\tValue\n0\t1\n1\t2\n",
        b"Experiment notes: tip was blunt\nnext day better\n",
        b"Experiment\n",
        b"Grid of values\n1 2 3\n",
        b"\x00\x01\x02\x03" * 100,
    ],
)
def test_spectroscopy_sniff_does_not_claim_other_dat_files(content, tmp_path):
    path = tmp_path / "other.dat"
    path.write_bytes(content)
    assert not nanonis_spectra.sniff(path, content[:4096])


def test_spectroscopy_sniff_refuses_other_samples(sample):
    for relpath in SXM_SAMPLES + ("nanosurf_nid/NanoSurf_20160301.nid",):
        p = sample(relpath)
        assert not nanonis_spectra.sniff(p, p.read_bytes()[:4096])
