"""Gwyddion native .gwy files: the real samples, files built byte by byte from the format
description (GWYP and the Gwyddion 1.x GWYO variant), and corrupt input."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, gwy, read
from tests.io.helpers import declined, write_file

SAMPLES = (
    "PTO_110_Virgin0001.gwy",
    "GwiddionReader_chip.gwy",
    "file_landscape.gwy",
    "file_square.gwy",
    "test.gwy",
)

# GLib fundamental type ids (G_TYPE_MAKE_FUNDAMENTAL(n) = n << 2) used by GWYO containers.
G_TYPE_BOOLEAN, G_TYPE_INT, G_TYPE_DOUBLE, G_TYPE_STRING, G_TYPE_OBJECT = (
    5 << 2,
    6 << 2,
    15 << 2,
    16 << 2,
    20 << 2,
)


# --------------------------------------------------------------------------------------
# Building files from the format description
# --------------------------------------------------------------------------------------


def cstr(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def obj(name: str, *components: bytes) -> bytes:
    body = b"".join(components)
    return cstr(name) + struct.pack("<I", len(body)) + body


def comp(key: str, code: str, payload: bytes) -> bytes:
    return cstr(key) + code.encode() + payload


def i32(v: int) -> bytes:
    return struct.pack("<i", v)


def f64(v: float) -> bytes:
    return struct.pack("<d", v)


def doubles(values) -> bytes:
    values = np.asarray(values, dtype="<f8").ravel()
    return struct.pack("<I", values.size) + values.tobytes()


def si_unit(unit: str) -> bytes:
    return obj("GwySIUnit", comp("unitstr", "s", cstr(unit)))


def data_field(
    values, xreal, yreal, xoff=0.0, yoff=0.0, unit_xy="m", unit_z="m", xres=None, yres=None
) -> bytes:
    values = np.asarray(values, dtype=float)
    return obj(
        "GwyDataField",
        comp("xres", "i", i32(values.shape[1] if xres is None else xres)),
        comp("yres", "i", i32(values.shape[0] if yres is None else yres)),
        comp("xreal", "d", f64(xreal)),
        comp("yreal", "d", f64(yreal)),
        comp("xoff", "d", f64(xoff)),
        comp("yoff", "d", f64(yoff)),
        comp("si_unit_xy", "o", si_unit(unit_xy)),
        comp("si_unit_z", "o", si_unit(unit_z)),
        comp("data", "D", doubles(values)),
    )


def gwyp(*components: bytes) -> bytes:
    return b"GWYP" + obj("GwyContainer", *components)


def gwyo(*entries: tuple[int, str, bytes]) -> bytes:
    body = b"".join(i32(gtype) + cstr(key) + payload for gtype, key, payload in entries)
    return b"GWYO" + cstr("GwyContainer") + struct.pack("<I", len(body)) + body


IMAGE = np.arange(6, dtype=float).reshape(2, 3) * 1e-9  # 2 rows x 3 columns, metres


# --------------------------------------------------------------------------------------
# Real samples
# --------------------------------------------------------------------------------------


def test_channel_names_and_directions(sample, ground_truth):
    scan = read(sample("gwyddion_gwy/PTO_110_Virgin0001.gwy"))
    assert scan.format == "gwy"
    titles = [ref["title"] for ref in ground_truth["gwyddion_gwy/PTO_110_Virgin0001.gwy"]["channels"]]
    assert [(c.name, c.direction) for c in scan.channels] == [
        (t.removesuffix("Retrace"), "retrace") for t in titles
    ]
    assert [c.title for c in scan.channels][0] == "Height (retrace)"

    square = read(sample("gwyddion_gwy/file_square.gwy")).channels
    assert [(c.name, c.direction) for c in square] == [("Left_Top_Right_Bottom", None)]
    # the Gwyddion 1.x sample has no title at all
    assert [c.name for c in read(sample("gwyddion_gwy/GwiddionReader_chip.gwy")).channels] == ["Channel 0"]


@pytest.mark.parametrize("name", SAMPLES)
def test_frame_units_and_orientation_match_gwyddion(name, sample, ground_truth):
    scan = read(sample(f"gwyddion_gwy/{name}"))
    for ch, ref in zip(scan.channels, ground_truth[f"gwyddion_gwy/{name}"]["channels"], strict=True):
        scale = 1e9 if ref["unit_xy"] == "m" else 1.0
        assert ch.xy_unit == ("nm" if ref["unit_xy"] == "m" else ref["unit_xy"])
        assert ch.pixel_size == pytest.approx(
            (ref["yreal"] / ref["yres"] * scale, ref["xreal"] / ref["xres"] * scale)
        )
        assert ch.offset == pytest.approx((ref["yoff"] * scale, ref["xoff"] * scale))
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        assert ch.z_unit == ("nm" if ref["unit_z"] == "m" else ref["unit_z"])
        assert ch.data.dtype == np.float64 and ch.data.shape == (ref["yres"], ref["xres"])
        top_left, top_right, bottom_left, _ = ref["corners_TL_TR_BL_BR"]
        assert ch.data[0, 0] == pytest.approx(top_left * z, rel=1e-6, abs=1e-12)
        assert ch.data[0, -1] == pytest.approx(top_right * z, rel=1e-6, abs=1e-12)
        assert ch.data[-1, 0] == pytest.approx(bottom_left * z, rel=1e-6, abs=1e-12)


def test_unitless_file_keeps_its_own_numbers(sample, ground_truth):
    ref = ground_truth["gwyddion_gwy/test.gwy"]["channels"][0]
    (ch,) = read(sample("gwyddion_gwy/test.gwy")).channels
    assert ref["unit_xy"] == "" and ch.xy_unit == "" and ch.z_unit == ""
    assert ch.pixel_size == (ref["yreal"] / ref["yres"], ref["xreal"] / ref["xres"])
    assert ch.data.max() == pytest.approx(ref["max"])


def test_headers(sample):
    scan = read(sample("gwyddion_gwy/PTO_110_Virgin0001.gwy"))
    assert scan.header["magic"] == "GWYP"
    assert scan.header["/0/data/title"] == "HeightRetrace"
    for ch in scan.channels:
        assert len(ch.header) > 100  # the /N/meta container (Asylum parameters)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in ch.header.items())
    json.dumps(scan.header)
    json.dumps([c.header for c in scan.channels])
    old = read(sample("gwyddion_gwy/GwiddionReader_chip.gwy"))
    assert old.header["magic"] == "GWYO"
    json.dumps(old.header)


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PTO_110_Virgin0001.gwy", "GwiddionReader_chip.gwy"])
def test_sniffed_by_content_not_extension(name, sample, tmp_path):
    renamed = tmp_path / "scan.dat"
    shutil.copy(sample(f"gwyddion_gwy/{name}"), renamed)
    assert find_format(renamed) is gwy
    assert len(read(renamed).channels) >= 1


def test_other_content_not_claimed(sample, tmp_path):
    rng = np.random.default_rng(1)
    assert not gwy.sniff(tmp_path / "x.gwy", rng.bytes(4096))
    assert not gwy.sniff(
        tmp_path / "x.gwy", sample("gwyddion_gsf/GwiddionReader_chip.gsf").read_bytes()[:4096]
    )
    assert not gwy.sniff(tmp_path / "x.gwy", b"GWYPGwyDataField\0" + bytes(64))  # not a container
    assert not gwy.sniff(tmp_path / "x.gwy", b"GWYQGwyContainer\0")
    junk = write_file(tmp_path, "junk.gwy", rng.bytes(5000))
    assert find_format(junk) is not gwy


# --------------------------------------------------------------------------------------
# Files built from the specification
# --------------------------------------------------------------------------------------


def test_gwyp_built_by_hand(tmp_path):
    path = write_file(
        tmp_path,
        "built.gwy",
        gwyp(
            comp("/5/data", "o", data_field(IMAGE * 2, 6e-6, 4e-6, unit_z="V")),
            comp("/5/data/title", "s", cstr("Current (Backward)")),
            comp(
                "/1/data",
                "o",
                data_field(IMAGE, 3e-6, 2e-6, xoff=1e-6, yoff=-2e-6, unit_xy="µm", unit_z="nm"),
            ),
            comp("/1/data/title", "s", cstr("Z Fwd")),
            comp("/1/meta", "o", obj("GwyContainer", comp("Bias", "s", cstr("1.5 V")))),
            comp("/1/mask", "o", data_field(IMAGE, 3e-6, 2e-6)),  # a mask is no channel
            comp("/0/graph/graph/1", "o", obj("GwyGraphModel", comp("title", "s", cstr("profile")))),
            comp("/filename", "s", cstr("built.gwy")),
            comp("/1/data/visible", "b", b"\1"),
            comp("/numbers", "Q", struct.pack("<I", 2) + struct.pack("<2q", -1, 2**40)),
            comp("/names", "S", struct.pack("<I", 2) + cstr("a") + cstr("b")),
            comp("/flag", "c", b"x"),
            comp("/units", "O", struct.pack("<I", 2) + si_unit("m") + si_unit("V")),
        ),
    )
    scan = read(path)
    assert [(c.name, c.direction) for c in scan.channels] == [("Z", "forward"), ("Current", "backward")]
    z, current = scan.channels
    # Gwyddion stores base SI values and ignores unit prefixes: "nm" data are metres
    assert z.z_unit == "nm" and np.allclose(z.data, IMAGE * 1e9)
    assert z.data[0, 2] == pytest.approx(2.0)  # row 0 = top, stored first
    assert z.xy_unit == "nm" and z.pixel_size == pytest.approx((1000.0, 1000.0))
    assert z.offset == pytest.approx((-2000.0, 1000.0))
    assert z.header == {"Bias": "1.5 V"}
    assert current.z_unit == "V" and np.allclose(current.data, IMAGE * 2)
    assert current.pixel_size == pytest.approx((2000.0, 2000.0))
    assert scan.header["/numbers"] == [-1, 2**40] and scan.header["/names"] == ["a", "b"]
    assert scan.header["/flag"] == "x" and scan.header["/1/data/visible"] is True
    assert "/units" not in scan.header and "/1/mask" not in scan.header  # objects are no header values
    json.dumps(scan.header)


def test_gwyo_built_by_hand(tmp_path):
    """Gwyddion 1.x: the top-level container prefixes each value with its GType number."""
    path = write_file(
        tmp_path,
        "old.gwy",
        gwyo(
            (G_TYPE_STRING, "/0/base/palette", cstr("Gray")),
            (G_TYPE_OBJECT, "/0/data", data_field(IMAGE, 3e-6, 2e-6, unit_z="A")),
            (G_TYPE_STRING, "/0/data/title", cstr("Current")),
            (G_TYPE_STRING, "/meta/Bias", cstr("0.5 V")),
            (G_TYPE_DOUBLE, "/0/scale", f64(2.5)),
            (G_TYPE_INT, "/0/count", i32(7)),
            (G_TYPE_BOOLEAN, "/0/show", b"\0"),
        ),
    )
    assert find_format(path) is gwy
    scan = read(path)
    assert scan.header["magic"] == "GWYO"
    assert scan.header["/0/scale"] == 2.5 and scan.header["/0/count"] == 7 and scan.header["/0/show"] is False
    (ch,) = scan.channels
    assert (ch.name, ch.direction, ch.z_unit) == ("Current", None, "A")
    assert np.array_equal(ch.data, IMAGE)
    assert ch.pixel_size == pytest.approx((1000.0, 1000.0))
    assert ch.header == {"Bias": "0.5 V"}


@pytest.mark.parametrize(
    "title, expected",
    [
        ("HeightRetrace", ("Height", "retrace")),
        ("AmplitudeTrace", ("Amplitude", "trace")),
        ("Z (Forward)", ("Z", "forward")),
        ("Current [bwd]", ("Current", "backward")),
        ("Height_Trace", ("Height", "trace")),
        ("Left_Top_Right_Bottom", ("Left_Top_Right_Bottom", None)),
        ("Phase (deg)", ("Phase (deg)", None)),
        ("Trace", ("Trace", None)),
        ("heightretrace", ("heightretrace", None)),
        ("", ("", None)),
    ],
)
def test_split_direction(title, expected):
    assert gwy.split_direction(title) == expected


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PTO_110_Virgin0001.gwy", "GwiddionReader_chip.gwy"])
def test_truncated_sample(name, sample, tmp_path):
    data = sample(f"gwyddion_gwy/{name}").read_bytes()
    for cut in (4, 20, 300, len(data) // 2, len(data) - 1):
        declined(write_file(tmp_path, f"cut{cut}.gwy", data[:cut]), "truncated")


def test_corrupt_dimension_in_sample(sample, tmp_path):
    data = bytearray(sample("gwyddion_gwy/test.gwy").read_bytes())
    pos = data.index(b"xres\0i") + 6
    data[pos : pos + 4] = i32(129)
    declined(write_file(tmp_path, "xres.gwy", bytes(data)), "129")
    data[pos : pos + 4] = i32(-5)
    declined(write_file(tmp_path, "negative.gwy", bytes(data)), "invalid dimensions")


def test_absurd_dimensions_do_not_allocate(tmp_path):
    field = data_field(IMAGE, 1e-6, 1e-6, xres=10**6, yres=10**6)
    declined(write_file(tmp_path, "huge.gwy", gwyp(comp("/0/data", "o", field))), "absurd")


def test_corrupt_array_length_does_not_allocate(tmp_path):
    good = gwyp(comp("/0/data", "o", data_field(IMAGE, 1e-6, 1e-6)))
    count = good.index(b"data\0D") + 6
    bad = good[:count] + struct.pack("<I", 0xFFFFFFFF) + good[count + 4 :]
    declined(write_file(tmp_path, "count.gwy", bad), "truncated")
    names = gwyp(comp("/names", "S", struct.pack("<I", 0xFFFFFFFF) + cstr("a")))
    declined(write_file(tmp_path, "strings.gwy", names), "truncated")
    objects = gwyp(comp("/objs", "O", struct.pack("<I", 10**9) + si_unit("m")))
    declined(write_file(tmp_path, "objects.gwy", objects), "truncated")


def test_corrupt_structure(tmp_path):
    declined(write_file(tmp_path, "type.gwy", gwyp(comp("/x", "z", b"\0\0\0\0"))), "unknown type")
    declined(write_file(tmp_path, "gtype.gwy", gwyo((99, "/x", b""))), "unknown value type")
    declined(
        write_file(tmp_path, "nodata.gwy", gwyp(comp("/0/data/title", "s", cstr("x")))), "no image channel"
    )
    nested = si_unit("m")
    for _ in range(100):
        nested = obj("GwyContainer", comp("/0/data", "o", nested))
    declined(write_file(tmp_path, "deep.gwy", b"GWYP" + nested), "nested")
    wrong = data_field(IMAGE, 1e-6, 1e-6, xres=4)
    declined(write_file(tmp_path, "mismatch.gwy", gwyp(comp("/0/data", "o", wrong))), "4x2")


def test_gwy_read_refuses_other_files(sample):
    with pytest.raises(ReaderError):
        gwy.read(sample("gwyddion_gsf/GwiddionReader_chip.gsf"))
