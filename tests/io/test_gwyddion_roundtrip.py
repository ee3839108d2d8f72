"""Gwyddion as the reference reader: what we write, Gwyddion reads identically.

Each test writes a file with our writers, lets Gwyddion load it and save it as .gwy
(``gwyddion --no-splash --disable-gl --convert-to-gwy=OUT IN``, under ``xvfb-run`` when there
is one) and reads Gwyddion's .gwy with OUR reader: values, shape, physical size, offsets, units
and titles must be what we wrote. Gwyddion (2.62) reads our float32 TIFF values but not its
resolution tags (it gives every TIFF a 1 x 1 field without units), so for TIFF only values and
shape are compared; our own reader gets the physical frame from the TIFF's JSON description.

Skips when ``gwyddion`` is not on PATH; fails when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from napari_scanprobe import Channel, read
from napari_scanprobe.io.write import write

TIMEOUT_S = 120


def _gwyddion_command() -> list[str]:
    exe = shutil.which("gwyddion")
    if exe is None:
        reason = (
            "Gwyddion, the reference reader for the writer tests, is not on PATH "
            "(apt-get install gwyddion; listed in ci/apt-packages.txt)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    xvfb = shutil.which("xvfb-run")
    return [xvfb, "-a", exe] if xvfb else [exe]


@pytest.fixture
def gwyddion(tmp_path):
    """``convert(path)`` -> the .gwy file Gwyddion saves after loading ``path``."""
    command = _gwyddion_command()
    home = tmp_path / "gwyddion-home"  # Gwyddion keeps settings in ~/.gwyddion: not the user's
    home.mkdir()

    def convert(path):
        out = path.with_name(f"{path.name}.by-gwyddion.gwy")
        result = subprocess.run(
            [*command, "--no-splash", "--disable-gl", f"--convert-to-gwy={out}", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={**os.environ, "HOME": str(home)},
        )
        assert result.returncode == 0 and out.is_file(), (
            f"Gwyddion could not load {path.name} (exit {result.returncode}): {result.stdout}{result.stderr}"
        )
        return out

    return convert


def height(seed: int = 0) -> Channel:
    rng = np.random.default_rng(seed)
    data = (rng.normal(0.0, 2.0, (12, 17)) + np.linspace(-5, 30, 17)).astype(np.float32)
    return Channel(
        data=data,
        name="Height",
        direction="retrace",
        z_unit="nm",
        pixel_size=(7.8125, 4.296875),
        xy_unit="nm",
        offset=(-250.0, 1234.5),
        header={"processing": [{"step": "flatten", "method": "rows"}], "operator": "Anna"},
    )


def phase() -> Channel:
    data = np.linspace(-30.0, 45.0, 12 * 17).reshape(12, 17)
    return Channel(
        data, "Phase", "trace", "deg", (7.8125, 4.296875), "nm", (-250.0, 1234.5), header={"gain": 3}
    )


def bias() -> Channel:
    data = (np.arange(6 * 5, dtype=np.float32).reshape(6, 5) - 7.25) / np.float32(3)
    return Channel(data=data, name="Bias", z_unit="V", pixel_size=(0.5, 0.25), xy_unit="", offset=(2.0, -1.0))


def assert_same_frame(got: Channel, want: Channel) -> None:
    assert got.data.shape == want.data.shape
    assert got.pixel_size == pytest.approx(want.pixel_size, rel=1e-12)
    assert got.offset == pytest.approx(want.offset, rel=1e-12, abs=1e-12)
    assert (got.xy_unit, got.z_unit) == (want.xy_unit, want.z_unit)
    assert got.title == want.title


def test_gsf_read_by_gwyddion(gwyddion, tmp_path):
    for want in (height(), bias()):
        path = write(tmp_path / f"{want.name}.gsf", want)
        ours = read(path).channels[0]
        (got,) = read(gwyddion(path)).channels
        assert_same_frame(got, want)
        np.testing.assert_array_equal(got.data, ours.data)  # Gwyddion holds the same float32 values
        np.testing.assert_array_max_ulp(got.data.astype(np.float32), want.data, maxulp=1)
        for key, value in want.header.items():  # extra GSF keys become Gwyddion metadata
            assert got.header[key] == (
                value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            )


def test_gwy_read_by_gwyddion(gwyddion, tmp_path):
    channels = [height(), phase(), bias()]
    path = write(tmp_path / "several.gwy", channels)
    back = read(gwyddion(path))
    assert len(back.channels) == 3
    for got, want in zip(back.channels, channels):
        assert_same_frame(got, want)
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=0)
        assert {
            k: json.loads(v) if k in ("processing", "gain") else v for k, v in got.header.items()
        } == want.header


def test_tif_values_read_by_gwyddion(gwyddion, tmp_path):
    want = height()
    (got,) = read(gwyddion(write(tmp_path / "height.tif", want))).channels
    assert got.data.shape == want.data.shape
    np.testing.assert_array_equal(got.data, want.data)  # float32 values unchanged, no unit scaling


def test_real_sample_read_by_gwyddion(gwyddion, sample, tmp_path):
    scan = read(sample("nanonis_sxm/test.sxm"))
    back = read(gwyddion(write(tmp_path / "test.gwy", scan)))
    assert len(back.channels) == len(scan.channels) == 4
    for got, want in zip(back.channels, scan.channels):
        assert_same_frame(got, want)
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=0)
    (got,) = read(gwyddion(write(tmp_path / "z.gsf", scan.channels[0]))).channels
    assert_same_frame(got, scan.channels[0])
    np.testing.assert_allclose(got.data, scan.channels[0].data, rtol=2**-23, atol=0)
