"""Gwyddion Simple Field (.gsf): the real sample, files built from the format description, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_scanprobe.io import find_format, gsf, read
from tests.io.helpers import declined, write_file

SAMPLE = "gwyddion_gsf/GwiddionReader_chip.gsf"
MAGIC = b"Gwyddion Simple Field 1.0\n"


def gsf_bytes(header_lines: list[str], values: np.ndarray) -> bytes:
    """A GSF file as the specification describes it: header, 1-4 NULs to a multiple of 4, float32 LE."""
    header = MAGIC + "".join(f"{line}\n" for line in header_lines).encode("utf-8")
    padding = 4 - len(header) % 4
    return header + b"\0" * padding + np.asarray(values, dtype="<f4").tobytes()


VALUES = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) * np.float32(1e-10)  # 3 rows x 4 columns


# --------------------------------------------------------------------------------------
# The real sample
# --------------------------------------------------------------------------------------


def test_sample_matches_gwyddion(sample, ground_truth):
    ref = ground_truth[SAMPLE]["channels"][0]
    scan = read(sample(SAMPLE))
    assert scan.format == "gsf"
    (ch,) = scan.channels
    assert (ch.name, ch.direction) == (ref["title"], None)
    assert ch.xy_unit == "nm" and ch.z_unit == "nm"
    assert ch.pixel_size == pytest.approx(
        (ref["yreal"] / ref["yres"] * 1e9, ref["xreal"] / ref["xres"] * 1e9)
    )
    assert ch.offset == pytest.approx((ref["yoff"] * 1e9, ref["xoff"] * 1e9))
    assert ch.data.dtype == np.float64 and ch.data.shape == (ref["yres"], ref["xres"])
    tl, tr, bl, br = ref["corners_TL_TR_BL_BR"]
    assert ch.data[0, 0] == pytest.approx(tl * 1e9, rel=1e-6)  # row 0 = top
    assert ch.data[0, -1] == pytest.approx(tr * 1e9, rel=1e-6)
    assert ch.data[-1, 0] == pytest.approx(bl * 1e9, rel=1e-6)
    assert ch.data[-1, -1] == pytest.approx(br * 1e9, rel=1e-6)


def test_sample_header(sample):
    scan = read(sample(SAMPLE))
    assert scan.header["XRes"] == "300" and scan.header["Title"] == "Topography"
    json.dumps(scan.header)
    json.dumps(scan.channels[0].header)


def test_sniffed_by_content_not_extension(sample, tmp_path):
    renamed = tmp_path / "scan.bin"
    shutil.copy(sample(SAMPLE), renamed)
    assert find_format(renamed) is gsf
    assert read(renamed).channels[0].data.shape == (300, 300)


def test_other_content_not_claimed(sample, tmp_path):
    assert not gsf.sniff(tmp_path / "x.gsf", np.random.default_rng(2).bytes(4096))
    assert not gsf.sniff(tmp_path / "x.gsf", sample("gwyddion_gwy/test.gwy").read_bytes()[:4096])
    assert not gsf.sniff(tmp_path / "x.gsf", b"Gwyddion Simple Field 2.0\nXRes = 1\n")
    text = write_file(tmp_path, "notes.gsf", b"Some notes about a Gwyddion Simple Field\n")
    assert find_format(text) is None


# --------------------------------------------------------------------------------------
# Files built from the specification
# --------------------------------------------------------------------------------------


def test_built_file_with_offsets_units_and_metadata(tmp_path):
    lines = [
        "XRes = 4",
        "YRes = 3",
        "XReal = 4e-06",
        "YReal = 6e-06",
        "XOffset = 1e-06",
        "YOffset = -5e-07",
        "XYUnits = m",
        "ZUnits = A",
        "Title = Current (Backward)",
        "Operator = Ann Ångström",
    ]
    scan = read(write_file(tmp_path, "built.gsf", gsf_bytes(lines, VALUES)))
    (ch,) = scan.channels
    assert (ch.name, ch.direction, ch.z_unit, ch.xy_unit) == ("Current", "backward", "A", "nm")
    assert np.array_equal(ch.data, VALUES.astype(np.float64))
    assert ch.pixel_size == pytest.approx((2000.0, 1000.0))  # non-square pixels kept
    assert ch.offset == pytest.approx((-500.0, 1000.0))
    assert ch.header == {"Operator": "Ann Ångström"}
    assert scan.header["Title"] == "Current (Backward)"


@pytest.mark.parametrize("extra", ["", "X", "XX", "XXX"])
def test_every_padding_length(extra, tmp_path):
    """The header ends with 1..4 NULs, whatever its length."""
    data = gsf_bytes(["XRes = 4", "YRes = 3", f"Comment = {extra}"], VALUES)
    (ch,) = read(write_file(tmp_path, f"pad{len(extra)}.gsf", data)).channels
    assert np.array_equal(ch.data, VALUES.astype(np.float64))


def test_defaults_without_optional_keys(tmp_path):
    """No units: the file's own numbers, xy_unit ''; no XReal/YReal: 1.0 as in Gwyddion."""
    (ch,) = read(write_file(tmp_path, "bare.gsf", gsf_bytes(["XRes = 4", "YRes = 3"], VALUES))).channels
    assert ch.xy_unit == "" and ch.z_unit == ""
    assert ch.pixel_size == pytest.approx((1 / 3, 1 / 4))
    assert ch.offset == (0.0, 0.0)
    assert ch.name == "Channel 0" and ch.direction is None


def test_unit_prefix_is_ignored_like_gwyddion(tmp_path):
    """GSF units are base SI units: Gwyddion drops a prefix, so values stay as stored (metres)."""
    lines = ["XRes = 4", "YRes = 3", "XReal = 4e-06", "YReal = 3e-06", "XYUnits = um", "ZUnits = nm"]
    (ch,) = read(write_file(tmp_path, "prefix.gsf", gsf_bytes(lines, VALUES))).channels
    assert ch.pixel_size == pytest.approx((1000.0, 1000.0))
    assert np.allclose(ch.data, VALUES * 1e9)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_truncated_sample(sample, tmp_path):
    data = sample(SAMPLE).read_bytes()
    for cut in (len(MAGIC), 60, 200, len(data) // 2, len(data) - 1):
        declined(write_file(tmp_path, f"cut{cut}.gsf", data[:cut]), "truncated")


def test_corrupt_dimension_in_sample(sample, tmp_path):
    data = sample(SAMPLE).read_bytes()
    declined(write_file(tmp_path, "more.gsf", data.replace(b"YRes = 300", b"YRes = 301")), "truncated")
    declined(
        write_file(tmp_path, "zero.gsf", data.replace(b"XRes = 300", b"XRes = 000")), "invalid dimensions"
    )
    declined(write_file(tmp_path, "text.gsf", data.replace(b"XRes = 300", b"XRes = abc")), "XRes")
    declined(write_file(tmp_path, "huge.gsf", data.replace(b"XRes = 300", b"XRes = 1000000000")), "absurd")
    declined(write_file(tmp_path, "missing.gsf", data.replace(b"YRes = 300", b"Y    = 300")), "YRes")
