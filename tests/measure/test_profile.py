"""Line profiles and kymographs: physical distances, bilinear values, width averaging, a known step."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.io.scan import Channel, Scan
from napari_scanprobe.measure import kymograph, profile, step_height


def ramp(shape=(40, 60), pixel_size=(2.0, 0.5), a=0.3, b=-0.7):
    """z = a * y_nm + b * x_nm on a grid of non-square pixels."""
    y = np.arange(shape[0])[:, None] * pixel_size[0]
    x = np.arange(shape[1])[None, :] * pixel_size[1]
    return a * y + b * x


def test_profile_on_a_plane_is_exact_and_in_nm_with_non_square_pixels():
    z = ramp()
    p = profile(z, [(10.0, 2.0), (50.0, 20.0)], pixel_size=(2.0, 0.5))
    length = np.hypot(40.0, 18.0)
    assert p.distance_unit == "nm"
    assert p.distance[0] == 0 and p.distance[-1] == pytest.approx(length, abs=0.5)
    assert np.allclose(np.diff(p.distance), 0.5)  # the smaller pixel size
    t = p.distance / length
    expected = 0.3 * (10 + 40 * t) - 0.7 * (2 + 18 * t)
    assert np.allclose(p.values["image"], expected)


def test_polyline_distance_runs_on_across_vertices():
    z = ramp(pixel_size=(1.0, 1.0))
    pts = [(5.0, 5.0), (5.0, 25.0), (25.0, 25.0)]
    p = profile(z, pts, pixel_size=1.0)
    assert p.distance[-1] == pytest.approx(40.0)
    assert p.values["image"][-1] == pytest.approx(0.3 * 25 - 0.7 * 25)
    at_corner = np.argmin(abs(p.distance - 20.0))
    assert p.values["image"][at_corner] == pytest.approx(0.3 * 5 - 0.7 * 25)


def test_repeated_vertices_are_ignored():
    z = ramp(pixel_size=(1.0, 1.0))
    once = profile(z, [(5, 5), (5, 25), (25, 25)], pixel_size=1.0)
    for pts in ([(5, 5), (5, 5), (5, 25), (25, 25)], [(5, 5), (5, 25), (5, 25), (25, 25), (25, 25)]):
        again = profile(z, pts, pixel_size=1.0, width=2)
        np.testing.assert_allclose(again.distance, once.distance)
        np.testing.assert_allclose(again.values["image"], once.values["image"])


def test_width_averages_noise_across_the_line_and_outside_is_nan():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(80, 80))
    thin = profile(z, [(40, 0), (40, 79)], pixel_size=1.0)
    wide = profile(z, [(40, 0), (40, 79)], width=20, pixel_size=1.0)
    assert np.std(wide.values["image"]) < np.std(thin.values["image"]) / 3
    outside = profile(z, [(40, 60), (40, 120)], pixel_size=1.0)
    assert np.isnan(outside.values["image"][-1]) and np.isfinite(outside.values["image"][0])


def test_profile_across_a_known_step_of_a_synthetic_scan_gives_its_height_within_1_percent():
    rng = np.random.default_rng(7)
    dy, dx, step = 3.0, 1.5, 4.2  # nm
    shape = (128, 256)
    x = np.arange(shape[1])[None, :] * dx
    edge = 190.0  # nm
    z = np.where(x >= edge, step, 0.0) + rng.normal(scale=0.15, size=shape)  # rms noise 0.15 nm
    ch = Channel(z, "Height", "forward", z_unit="nm", pixel_size=(dy, dx), offset=(100.0, -50.0))
    y_mid = 100.0 + 64 * dy
    p = profile(ch, [(y_mid, -50.0 + 20), (y_mid, -50.0 + 360)], width=60.0)
    values, d = p.values["Height (forward)"], p.distance
    where = d + (-50.0 + 20)  # x of each sample
    low = values[where < edge - 50 - 10].mean()
    high = values[where > edge - 50 + 10].mean()
    assert p.units["Height (forward)"] == "nm"
    assert high - low == pytest.approx(step, rel=0.01)
    rect = step_height(ch, ((110, -40), (400, 120)), ((110, 160), (400, 300)))
    assert rect.height == pytest.approx(step, rel=0.01) and rect.unit == "nm"


def test_every_channel_of_a_scan_gets_a_column_and_csv_names_units():
    z = ramp(pixel_size=(1.0, 1.0))
    scan = Scan(
        "x.sxm",
        "test",
        [
            Channel(z, "Z", "forward", z_unit="nm"),
            Channel(2 * z, "Current", "forward", z_unit="A"),
            Channel(np.zeros((3, 40, 60)), "Movie"),  # movies are left to kymograph()
        ],
    )
    p = profile(scan, [(5, 5), (5, 30)])
    assert list(p.values) == ["Z (forward)", "Current (forward)"]
    assert np.allclose(p.values["Current (forward)"], 2 * p.values["Z (forward)"])
    head = p.to_csv().splitlines()[0]
    assert head == "distance [nm],Z (forward) [nm],Current (forward) [A]"


def test_kymograph_of_a_lazy_movie_is_the_profile_of_each_frame():
    da = pytest.importorskip("dask.array")
    frames = np.stack([ramp(pixel_size=(1.0, 1.0)) + t for t in range(5)])
    movie = Channel(da.from_array(frames, chunks=(1, 40, 60)), "Height", z_unit="nm", frame_time_s=0.1)
    seen = []
    k = kymograph(movie, [(10, 5), (30, 40)], width=3, progress=lambda u: seen.append((u.step, u.total)))
    assert k.data.shape == (5, len(k.distance)) and k.frame_time_s == 0.1 and k.z_unit == "nm"
    for t in range(5):
        assert np.allclose(
            k.data[t], profile(frames[t], [(10, 5), (30, 40)], width=3, pixel_size=1.0).values["image"]
        )
    assert seen[-1] == (5, 5)


@pytest.mark.parametrize(
    "points, width, match",
    [
        ([(1, 1)], 0, "two or more"),
        ([(1, 1), (1, 1)], 0, "zero length"),
        ([(1, 1), (np.nan, 2)], 0, "finite"),
        ([(0, 0), (0, 1e9)], 0, "more than"),
        ([(0, 0), (0, 5)], -1, "width"),
    ],
)
def test_bad_lines_are_refused_with_the_parameter_named(points, width, match):
    with pytest.raises(ValueError, match=match):
        profile(np.zeros((10, 10)), points, width=width)


def test_a_movie_is_not_a_profile_and_an_image_not_a_kymograph():
    with pytest.raises(ValueError, match="kymograph|2-D"):
        profile(np.zeros((3, 10, 10)), [(1, 1), (5, 5)])
    with pytest.raises(ValueError, match="profile"):
        kymograph(np.zeros((10, 10)), [(1, 1), (5, 5)])


def test_a_kymograph_too_large_is_refused_before_any_frame_is_read():
    da = pytest.importorskip("dask.array")
    movie = da.zeros((300_000, 40, 40), chunks=(1, 40, 40))
    with pytest.raises(ValueError, match="frames x"):
        kymograph(movie, [(1, 1), (30, 30)], step=0.01)
