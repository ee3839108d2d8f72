"""Every real sample file against what Gwyddion (else AFMReader) reads from it.

Image files: channel count and order, pixel counts, physical pixel size, offsets, units,
min/max/mean and the four corner values (rel. tolerance 1e-4 of the channel's range).
Not-an-image files: declined with a ReaderError that names the file.
Movies are checked against AFMReader in their own format tests (test_asd.py, test_h5jpk.py);
here they must open lazily as (t, y, x).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, read
from tests.conftest import SAMPLES_DIR

GT_PATH = SAMPLES_DIR / "ground_truth.json"
GT = json.loads(GT_PATH.read_text()) if GT_PATH.is_file() else {}


#: Where we knowingly differ from the reference, and why. Everything else must match.
KNOWN_DEVIATIONS = {
    "wsxm/WSxM2DReader_jumpingmodeimage_0002_Topography.f.dy.top": {
        "lateral_factor": 1000.0,
        "why": "the header says 'X Amplitude: 15 µm' (Latin-1 µ); Gwyddion 2.62 loses the µ and reports 15 nm",
    },
}


def _files(kind: str) -> list[str]:
    return sorted(k for k, v in GT.items() if v.get("kind") == kind) or ["<no samples>"]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _close(actual: float, expected: float, span: float, what: str):
    tol = 1e-4 * span if span > 0 else 1e-4 * abs(expected) + 1e-300
    assert abs(actual - expected) <= tol, f"{what}: {actual!r} != {expected!r} (tol {tol:g})"


@pytest.mark.parametrize("relpath", _files("image"))
def test_image_matches_reference(relpath, samples_dir, ground_truth):
    expected = ground_truth[relpath]["channels"]
    scan = read(samples_dir / relpath)
    got = scan.channels
    assert len(got) == len(expected), (
        f"{relpath}: {len(got)} channels {[c.title for c in got]}, "
        f"reference has {len(expected)} {[e['title'] for e in expected]}"
    )
    for ch, ref in zip(got, expected):
        label = f"{relpath} [{ref['title'] or ch.title}]"
        if ref["title"]:  # a repeated title is numbered (scan.number_repeated_titles); Gwyddion's is not
            assert _norm(re.sub(r" #\d+$", "", ch.name)) in _norm(ref["title"]), (
                f"{label}: channel named {ch.name!r}"
            )
        assert ch.data.shape == (ref["yres"], ref["xres"]), label
        xy = (1e9 if ref["unit_xy"] == "m" else 1.0) * KNOWN_DEVIATIONS.get(relpath, {}).get(
            "lateral_factor", 1.0
        )
        assert ch.xy_unit == ("nm" if ref["unit_xy"] == "m" else ref["unit_xy"]), label
        _close(ch.pixel_size[0], ref["yreal"] / ref["yres"] * xy, 0, f"{label} dy")
        _close(ch.pixel_size[1], ref["xreal"] / ref["xres"] * xy, 0, f"{label} dx")
        _close(ch.offset[0], ref["yoff"] * xy, abs(ref["yreal"] * xy), f"{label} y offset")
        _close(ch.offset[1], ref["xoff"] * xy, abs(ref["xreal"] * xy), f"{label} x offset")
        z = 1e9 if ref["unit_z"] == "m" else 1.0
        assert ch.z_unit == ("nm" if ref["unit_z"] == "m" else ref["unit_z"]), f"{label} z unit"
        data = np.asarray(ch.data, dtype=np.float64)
        span = (ref["max"] - ref["min"]) * z
        _close(float(np.nanmin(data)), ref["min"] * z, span, f"{label} min")
        _close(float(np.nanmax(data)), ref["max"] * z, span, f"{label} max")
        _close(float(np.nanmean(data)), ref["mean"] * z, span, f"{label} mean")
        corners = (data[0, 0], data[0, -1], data[-1, 0], data[-1, -1])
        for name, value, want in zip(("TL", "TR", "BL", "BR"), corners, ref["corners_TL_TR_BL_BR"]):
            _close(float(value), want * z, span, f"{label} corner {name}")


@pytest.mark.parametrize("relpath", _files("not-an-image"))
def test_not_an_image_is_declined(relpath, samples_dir):
    path = samples_dir / relpath
    with pytest.raises(ReaderError) as info:
        read(path)
    message = str(info.value)
    assert Path(relpath).name in message
    assert info.value.reason, "the error must say why"


@pytest.mark.parametrize("relpath", _files("movie"))
def test_movie_opens_lazily(relpath, samples_dir, ground_truth):
    import dask.array as da

    scan = read(samples_dir / relpath)
    shapes = [tuple(ref["shape"]) for ref in ground_truth[relpath]["channels"]]
    assert len(scan.channels) >= len(shapes)
    for ch in scan.channels:
        assert isinstance(ch.data, da.Array), f"{ch.title} must be a lazy dask array"
        assert ch.data.ndim == 3
        assert ch.data.shape in shapes
