"""ISO 25178 roughness: real samples against straightforward formulas written here, and
Sp/Sv against what Gwyddion reads from the same files; masks, ROIs, units, histogram, step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_scanprobe.io import read
from napari_scanprobe.io.scan import Channel
from napari_scanprobe.measure import height_histogram, roughness, step_height

#: Real files of different instruments, sizes and a non-square pixel (JPK QI 4.5 x 5.9 nm).
REAL = [
    "asylum_ibw/AR_20211011.ibw",
    "nanonis_sxm/test.sxm",
    "rhk_sm4/topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4",
    "park_tiff/Park_20210916_034.tiff",
    "wsxm/sample_0.top",
]


def reference(z: np.ndarray, dy: float, dx: float) -> dict:
    """The ISO 25178-2 definitions, written out pixel by pixel (independent of the package)."""
    flat = [float(v) for v in z.ravel()]
    n = len(flat)
    mean = sum(flat) / n
    h = [v - mean for v in flat]
    sq = (sum(v * v for v in h) / n) ** 0.5
    ny, nx = z.shape
    total = 0.0
    for i in range(ny - 1):
        row, below = z[i], z[i + 1]
        gx = (row[1:] - row[:-1]) / dx
        gy = (below[:-1] - row[:-1]) / dy
        total += float(np.dot(gx, gx) + np.dot(gy, gy))
    return {
        "Sa": sum(abs(v) for v in h) / n,
        "Sq": sq,
        "Ssk": sum(v**3 for v in h) / n / sq**3,
        "Sku": sum(v**4 for v in h) / n / sq**4,
        "Sp": max(h),
        "Sv": -min(h),
        "Sz": max(h) - min(h),
        "Sdq": (total / ((ny - 1) * (nx - 1))) ** 0.5,
    }


def length_channels(scan):
    return [(i, ch) for i, ch in enumerate(scan.channels) if ch.data.ndim == 2 and ch.z_unit == "nm"]


@pytest.mark.parametrize("relpath", REAL)
def test_roughness_of_real_samples_matches_independent_numbers_within_half_a_percent(
    relpath, sample, samples_dir
):
    scan = read(sample(relpath))
    truth = json.loads((samples_dir / "ground_truth.json").read_text())[relpath]["channels"]
    i, ch = length_channels(scan)[0]
    z = np.asarray(ch.data, dtype=np.float64)
    r = roughness(ch)
    want = reference(z, *ch.pixel_size)
    for name, value in want.items():
        assert getattr(r, name) == pytest.approx(value, rel=0.005), f"{relpath} {ch.title} {name}"
    gwy, scale = truth[i], 1e9
    assert r.Sp == pytest.approx((gwy["max"] - gwy["mean"]) * scale, rel=0.005)  # Gwyddion 2.62
    assert r.Sv == pytest.approx((gwy["mean"] - gwy["min"]) * scale, rel=0.005)
    assert r.units["Sq"] == "nm" and r.units["Ssk"] == "" and r.units["Sdq"] == ""
    assert r.pixels == z.size


def test_sdq_uses_the_physical_pixel_size_of_non_square_pixels():
    dy, dx = 2.0, 0.5
    y = np.arange(30)[:, None] * dy
    x = np.arange(50)[None, :] * dx
    z = 0.2 * x + 0.1 * y  # slopes in nm/nm
    assert roughness(z, pixel_size=(dy, dx)).Sdq == pytest.approx(np.hypot(0.2, 0.1))


def test_mask_roi_and_nan_pixels_limit_the_evaluated_area():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(60, 80))
    z[:, :40] += 100  # a region the mask leaves out
    mask = np.zeros(z.shape, bool)
    mask[10:50, 45:75] = True
    by_mask = roughness(z, mask=mask)
    alone = roughness(z[10:50, 45:75])
    assert by_mask.as_dict() == pytest.approx(alone.as_dict())
    ch = Channel(z, "Height", z_unit="nm", pixel_size=(2.0, 2.0), offset=(10.0, 0.0))
    by_roi = roughness(ch, roi=((10 + 2 * 10, 2 * 45), (10 + 2 * 49, 2 * 74)))
    assert by_roi.as_dict() == pytest.approx(roughness(z[10:50, 45:75], pixel_size=2.0).as_dict())
    holes = z.copy()
    holes[:, :40] = np.nan
    assert roughness(holes).Sq == pytest.approx(roughness(z[:, 40:]).Sq)


def test_too_small_an_area_and_wrong_masks_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        roughness(np.zeros((10, 10)), mask=np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="mask"):
        roughness(np.zeros((10, 10)), mask=np.ones((5, 5)))
    with pytest.raises(ValueError, match="no pixel"):
        roughness(np.zeros((10, 10)), roi=((50, 50), (60, 60)))
    with pytest.raises(ValueError, match="pixel_size"):
        roughness(np.zeros((10, 10)), pixel_size=(0, 1))


def test_histogram_counts_every_valid_pixel_in_the_unit_of_the_channel():
    z = np.arange(100, dtype=float).reshape(10, 10)
    z[0, 0] = np.nan
    h = height_histogram(Channel(z, "Height", z_unit="nm"), bins=11)
    assert h.counts.sum() == 99 and h.unit == "nm" and len(h.edges) == 12
    assert h.edges[0] == 1 and h.edges[-1] == 99
    with pytest.raises(ValueError, match="bins"):
        height_histogram(z, bins=0)


def test_step_height_between_two_masks():
    z = np.zeros((20, 20))
    z[:, 10:] = 3.0
    lower = np.zeros_like(z, bool)
    lower[:, :8] = True
    s = step_height(z, lower, ~lower & (np.arange(20) >= 12)[None, :])
    assert s.height == pytest.approx(3.0) and s.uncertainty == 0
    with pytest.raises(ValueError, match="upper"):
        step_height(z, lower, np.zeros_like(lower))
