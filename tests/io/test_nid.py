"""Nanosurf .nid files.

Expected values come from ground_truth.json (Gwyddion) or from the format itself: the INI
header of the sample and the raw integers after the ``#!`` marker.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from napari_scanprobe.io import nid, read
from tests.io.helpers import claims, declined, found_by_content, noise, read_as, write_file

NID_SAMPLES = ("nanosurf_nid/NanoSurf_20160301.nid", "nanosurf_nid/afm-nanosurf-nid.nid")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _section(raw: bytes, name: str) -> dict[str, str]:
    text = raw[: raw.find(b"#!")].decode("latin-1")
    m = re.search(rf"^\[{re.escape(name)}\]\r?\n(.*?)(?:\r?\n\r?\n|\Z)", text, re.S | re.M)
    assert m, f"no [{name}] section"
    return dict(line.split("=", 1) for line in m.group(1).splitlines() if "=" in line)


def _split_title(title: str) -> tuple[str, str | None]:
    m = re.match(r"(.*) (forward|backward)$", title)
    return (m.group(1), m.group(2)) if m else (title, None)


def _make_nid(datasets: list[dict], raws: list[np.ndarray], groups: int | None = None) -> bytes:
    """A minimal .nid: one group per data set (``Gr<i>-Ch0``), the given section keys."""
    groups = len(datasets) if groups is None else groups
    lines = ["[DataSet]", "Version=2", f"GroupCount={groups}"]
    for i in range(len(datasets)):
        lines += [f"Gr{i}-Name=Scan forward", f"Gr{i}-Count=1", f"Gr{i}-Ch0=DataSet-{i}:0"]
    lines.append("")
    for i, keys in enumerate(datasets):
        lines.append(f"[DataSet-{i}:0]")
        lines += [f"{k}={v}" for k, v in keys.items()]
        lines.append("")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n#!" + b"".join(r.tobytes() for r in raws)


def _image_keys(points, lines, **extra) -> dict:
    keys = {
        "Version": 2, "Points": points, "Lines": lines, "Frame": "Scan forward",
        "Dim0Name": "X*", "Dim0Unit": "m", "Dim0Range": 4e-6, "Dim0Min": 0,
        "Dim1Name": "Y*", "Dim1Unit": "m", "Dim1Range": 2e-6, "Dim1Min": 0,
        "Dim2Name": "Z-Axis", "Dim2Unit": "m", "Dim2Range": 2e-6, "Dim2Min": -1e-6,
        "SaveMode": "Binary", "SaveBits": 16, "SaveSign": "Signed", "SaveOrder": "Intel",
    }  # fmt: skip
    keys.update(extra)
    return keys


# --------------------------------------------------------------------------------------
# real samples
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", NID_SAMPLES)
def test_channels_names_and_directions(relpath, sample, ground_truth):
    scan = read_as(sample(relpath), "nid")
    expected = [_split_title(c["title"]) for c in ground_truth[relpath]["channels"]]
    assert [(c.name, c.direction) for c in scan.channels] == expected
    assert [c.name for c in scan.channels] == ["Z-Axis", "Amplitude", "Z-Axis", "Amplitude"]
    for ch in scan.channels:
        assert ch.data.dtype == np.float64 and ch.data.ndim == 2


@pytest.mark.parametrize("relpath", NID_SAMPLES)
def test_pixel_size_units_offset_from_header(relpath, sample, ground_truth):
    raw = sample(relpath).read_bytes()
    scan = read(sample(relpath))
    names = ["DataSet-0:1", "DataSet-0:2", "DataSet-1:1", "DataSet-1:2"]
    for ch, name, ref in zip(scan.channels, names, ground_truth[relpath]["channels"]):
        sec = _section(raw, name)
        points, lines = int(sec["Points"]), int(sec["Lines"])
        assert ch.data.shape == (lines, points)
        assert sec["Dim0Unit"] == sec["Dim1Unit"] == "m"
        assert ch.xy_unit == "nm"
        assert ch.pixel_size == pytest.approx(
            (float(sec["Dim1Range"]) * 1e9 / lines, float(sec["Dim0Range"]) * 1e9 / points)
        )
        assert ch.offset == pytest.approx((ref["yoff"] * 1e9, ref["xoff"] * 1e9))
        assert ch.z_unit == {"m": "nm", "V": "V"}[sec["Dim2Unit"]]


@pytest.mark.parametrize("relpath", NID_SAMPLES)
def test_values_and_orientation_against_raw_data(relpath, sample):
    """Stored bottom line first; value = Min + Range * (raw + 2**15) / 2**16 for signed 16 bit."""
    raw = sample(relpath).read_bytes()
    scan = read(sample(relpath))
    offset = raw.find(b"#!") + 2
    for ch, name in zip(scan.channels, ["DataSet-0:1", "DataSet-0:2", "DataSet-1:1", "DataSet-1:2"]):
        sec = _section(raw, name)
        assert (sec["SaveBits"], sec["SaveSign"], sec["SaveOrder"]) == ("16", "Signed", "Intel")
        points, lines = int(sec["Points"]), int(sec["Lines"])
        ints = np.frombuffer(raw, "<i2", count=points * lines, offset=offset).reshape(lines, points)
        offset += ints.nbytes
        factor = 1e9 if sec["Dim2Unit"] == "m" else 1.0
        values = (float(sec["Dim2Min"]) + float(sec["Dim2Range"]) * (ints + 32768.0) / 65536.0) * factor
        np.testing.assert_allclose(ch.data, values[::-1], rtol=1e-12)
    assert offset == len(raw)


def test_corner_values_match_gwyddion(sample, ground_truth):
    relpath = NID_SAMPLES[0]
    scan = read(sample(relpath))
    for ch, ref in zip(scan.channels, ground_truth[relpath]["channels"]):
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        got = [ch.data[0, 0], ch.data[0, -1], ch.data[-1, 0], ch.data[-1, -1]]
        np.testing.assert_allclose(got, np.array(ref["corners_TL_TR_BL_BR"]) * z, rtol=1e-9)


@pytest.mark.parametrize("relpath, size", [(NID_SAMPLES[0], "10µm"), (NID_SAMPLES[1], "7µm")])
def test_header_is_json_and_decoded(relpath, size, sample):
    """The first sample's header is Latin-1, the second's UTF-8: both give a real µ."""
    scan = read(sample(relpath))
    json.dumps(scan.header)
    assert scan.header["DataSet-Info"]["Image size"] == size
    assert scan.header["DataSet"]["GroupCount"] == "2"
    for ch in scan.channels:
        json.dumps(ch.header)
        assert ch.header["Dim2Name"] == ch.name


# --------------------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", NID_SAMPLES)
def test_sniffed_by_content_not_extension(relpath, sample, tmp_path):
    found_by_content(sample(relpath), tmp_path, nid, "scan.txt")


def test_sniff_refuses_other_content(sample, tmp_path):
    assert not nid.sniff(tmp_path / "x.nid", noise(5000, seed=1))
    for relpath in ("nanonis_sxm/test.sxm", "nanonis_dat_3ds/Bias-Spectroscopy002.dat"):
        assert not claims(nid, sample(relpath))
    assert not nid.sniff(tmp_path / "x.ini", b"[Settings]\r\nVersion=2\r\n")
    assert not nid.sniff(tmp_path / "x.ini", b"[DataSetup]\r\nVersion=2\r\n")
    assert not nid.sniff(tmp_path / "x.ini", b"")


# --------------------------------------------------------------------------------------
# synthetic files: rules from the format
# --------------------------------------------------------------------------------------


def test_synthetic_32bit_non_square(tmp_path):
    ints = np.array([[-(2**31), 0, 2**31 - 1], [1, 2, 3]], dtype="<i4")
    path = tmp_path / "a.nid"
    path.write_bytes(
        _make_nid([_image_keys(3, 2, SaveBits=32, Dim2Unit="V", Dim2Range=10, Dim2Min=-5)], [ints])
    )
    (ch,) = read(path).channels
    assert ch.data.shape == (2, 3)
    assert ch.pixel_size == pytest.approx((1000.0, 4000.0 / 3))
    assert ch.z_unit == "V"
    expected = -5 + 10 * (ints.astype(np.float64) + 2**31) / 2**32
    np.testing.assert_allclose(ch.data, expected[::-1])
    assert ch.data[-1, 0] == pytest.approx(-5.0) and ch.data[-1, 2] == pytest.approx(5.0, abs=1e-8)


def test_single_line_data_set_is_skipped_but_counted(tmp_path):
    spectrum = np.arange(7, dtype="<i2")
    image = np.arange(6, dtype="<i2").reshape(2, 3)
    keys = [_image_keys(7, 1, Dim2Name="Deflection"), _image_keys(3, 2, Dim2Name="Phase", Dim2Unit="°")]
    path = tmp_path / "mixed.nid"
    path.write_bytes(_make_nid(keys, [spectrum, image]))
    scan = read(path)
    (ch,) = scan.channels
    assert (ch.name, ch.z_unit) == ("Phase", "deg")
    expected = -1e-6 + 2e-6 * (image.astype(np.float64) + 32768) / 65536
    np.testing.assert_allclose(ch.data, expected[::-1])
    assert scan.header["skipped_data_sets"]


def test_spectroscopy_only_file_is_declined(tmp_path):
    declined(
        write_file(tmp_path, "spec.nid", _make_nid([_image_keys(50, 1)], [np.zeros(50, "<i2")])),
        match="not an image",
    )


def test_huge_group_count_does_not_hang(tmp_path):
    image = np.zeros((2, 2), "<i2")
    path = tmp_path / "groups.nid"
    path.write_bytes(_make_nid([_image_keys(2, 2)], [image], groups=10**12))
    assert len(read(path).channels) == 1


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.96, 0.9999])
def test_truncated_sample_is_refused(fraction, sample, tmp_path):
    raw = sample(NID_SAMPLES[0]).read_bytes()
    declined(write_file(tmp_path, "cut.nid", raw[: int(len(raw) * fraction)]))


@pytest.mark.parametrize(
    "old, new, message",
    [
        (b"Points=128\r\n", b"Points=1000000000\r\n", "absurd|truncated"),
        (b"Lines=128\r\n", b"Lines=129\r\n", "truncated"),
        (b"Points=128\r\n", b"Points=-5\r\n", "invalid"),
        (b"SaveBits=16\r\n", b"SaveBits=12\r\n", "SaveBits"),
        (b"GroupCount=2\r\n", b"GroupCount=x\r\n", "GroupCount"),
        (b"#!", b"##", "#!"),
    ],
)
def test_corrupt_header_is_refused(old, new, message, sample, tmp_path):
    raw = sample(NID_SAMPLES[0]).read_bytes()
    head, sep, data = raw.partition(b"#!")
    bad = (head + sep).replace(old, new, 1) + data
    assert bad != raw
    declined(write_file(tmp_path, "corrupt.nid", bad), match=message)


def test_no_referenced_data_set_is_refused(sample, tmp_path):
    raw = sample(NID_SAMPLES[0]).read_bytes()
    bad = raw.replace(b"Gr0-Count=21", b"Gr0-Count=0", 1).replace(b"Gr1-Count=21", b"Gr1-Count=0", 1)
    declined(write_file(tmp_path, "empty.nid", bad), match="no image")
