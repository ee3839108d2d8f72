"""Drift correction of movies: synthetic drift known to the pixel, and the real HS-AFM samples."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import napari_scanprobe as sp
from napari_scanprobe.process.register import apply_shifts, register, shift_frame
from napari_scanprobe.synthetic import drifting_movie


@pytest.fixture(scope="module")
def drifting():
    return drifting_movie(12, shape=(128, 128), step_nm=6.0, seed=3)


def rms(error: np.ndarray) -> float:
    return float(np.sqrt((error**2).sum(axis=1).mean()))


@pytest.mark.parametrize("reference", ["first", "mean", 4])
def test_known_drift_is_found_to_a_tenth_of_a_pixel(drifting, reference):
    movie, drift = drifting
    result = register(movie, reference=reference)
    origin = drift[reference] if isinstance(reference, int) else drift[0]
    assert rms(result.shifts - (drift - origin)) < 0.1
    assert not result.flagged.any()
    assert result.movie.shape == movie.shape and result.movie.dtype == np.float32


def _periodic_pair(shift: tuple[float, float], size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture and its copy with the content moved by ``shift`` (exactly, in
    Fourier space: the texture is periodic)."""
    from scipy import ndimage

    texture = ndimage.gaussian_filter(np.random.default_rng(7).normal(size=(size, size)), 2, mode="wrap")
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.fftfreq(size)[None, :]
    ramp = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    return texture.astype(np.float32), np.fft.ifft2(np.fft.fft2(texture) * ramp).real.astype(np.float32)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.3, -0.45), (-0.8, 0.6), (0.5, 0.5)])
def test_subpixel_top_is_the_top_of_the_dense_matrix_dft(shift):
    from napari_scanprobe.process.register import _Correlator

    reference, moved = _periodic_pair(shift)
    corr = _Correlator(reference.shape)
    ref = corr.spectrum(reference, float(reference.mean()))
    cross = corr.cross(corr.spectrum(moved, float(moved.mean())), ref)
    dy, dx, quality = corr.top(cross, (0.0, 0.0))
    # the correlation surface by matrix DFT on a 1/100 pixel grid, the brute-force way
    near = cross
    grid = np.arange(-150, 151) / 100
    surface = (np.exp(np.outer(grid, corr.to_y)) @ near @ np.exp(np.outer(corr.to_x, grid))).real
    j, i = np.unravel_index(np.argmax(surface), surface.shape)
    assert abs(dy - grid[j]) <= 0.01 and abs(dx - grid[i]) <= 0.01
    assert quality == pytest.approx(surface.max() / np.abs(near).sum(), rel=1e-3)
    assert abs(dy - shift[0]) < 0.05 and abs(dx - shift[1]) < 0.05


def test_subpixel_top_from_off_the_peak_cap():
    from napari_scanprobe.process.register import _Correlator

    reference, moved = _periodic_pair((0.3, -0.45))
    corr = _Correlator(reference.shape)
    ref = corr.spectrum(reference, float(reference.mean()))
    cross = corr.cross(corr.spectrum(moved, float(moved.mean())), ref)
    start = (2.5, 2.0)  # where the surface is not concave: Newton alone would stop there
    assert not corr._climb(cross, *start)[3]
    assert corr.top(cross, start) == pytest.approx(corr.top(cross, (0.0, 0.0)), abs=1e-3)


def test_whole_pixels_from_the_binned_frame_then_the_fraction():
    from napari_scanprobe.process.register import _Matcher

    reference, moved = _periodic_pair((23.3, -41.7), size=256)
    matcher = _Matcher(reference.shape)
    assert matcher.factor == 4
    dy, dx, quality = matcher.shift(moved, matcher.spectra(reference))
    assert dy == pytest.approx(23.3, abs=0.05) and dx == pytest.approx(-41.7, abs=0.05)
    assert quality > 0.5


def test_typical_quality_is_the_upper_quartile():
    from napari_scanprobe.process.register import _typical

    for n in (1, 2, 5, 32):
        values = np.random.default_rng(n).uniform(size=n)
        assert _typical(np.sort(values)) == pytest.approx(np.percentile(values, 75))


def test_correction_lines_frames_up():
    movie, _ = drifting_movie(12, shape=(128, 128), step_nm=6.0, turnover=0.0, seed=3)
    out = register(movie).movie

    def similarity(frames: np.ndarray) -> float:
        inner = frames[:, 40:88, 40:88]  # seen by every frame
        return float(np.mean([np.corrcoef(inner[0].ravel(), f.ravel())[0, 1] for f in inner[1:]]))

    assert similarity(out) > 0.9 > 0.6 > similarity(movie)
    assert np.isnan(out).any()  # what a frame did not see is NaN, never made up


def test_shift_table_is_in_nm():
    movie, drift = drifting_movie(6, shape=(96, 96), pixel_size_nm=2.0, step_nm=4.0, seed=1)
    result = register(movie, pixel_size=(2.0, 2.0))
    table = result.table()
    assert list(table) == ["frame", "dy_nm", "dx_nm", "quality", "flagged"]
    assert np.allclose(table["dy_nm"], 2.0 * result.shifts[:, 0])
    assert np.allclose(np.array(table["dx_nm"]) / 2.0, drift[:, 1], atol=0.2)


def test_a_lost_frame_is_flagged_kept_and_given_its_neighbours_drift(drifting):
    movie, drift = drifting
    broken = movie.copy()
    broken[5] = np.random.default_rng(0).normal(0, 1, movie.shape[1:])  # tip change: nothing alike
    result = register(broken)
    assert np.flatnonzero(result.flagged).tolist() == [5]
    assert np.allclose(result.shifts[5], (result.shifts[4] + result.shifts[6]) / 2)
    assert result.movie.shape == movie.shape


def test_per_line_creep_is_taken_out():
    movie, _ = drifting_movie(4, shape=(128, 128), step_nm=0.0, noise_nm=0.02, seed=2)
    crept = movie.copy()
    ny = movie.shape[1]
    creep = 3.0 * (np.arange(ny) / ny) ** 2  # x offset growing along the slow scan axis
    crept[2] = shift_frame(movie[2], 0.0, -creep)
    result = register(np.nan_to_num(crept, nan=float(np.median(movie))), per_line=True)
    lines = result.line_shifts[2] + result.shifts[2, 1]
    inner = slice(16, ny - 16)
    assert np.abs(lines[inner] - creep[inner]).max() < 0.35
    assert np.abs(result.line_shifts[1]).max() < 0.3


def test_dask_movie_stays_lazy_and_matches_numpy(drifting):
    movie, _ = drifting
    lazy = da.from_array(movie, chunks=(5, 64, 128))
    result = register(lazy)
    assert isinstance(result.movie, da.Array)
    assert np.allclose(np.asarray(result.movie), register(movie).movie, equal_nan=True)


def test_apply_shifts_moves_content_back():
    frame = np.arange(64.0).reshape(8, 8)
    moved = apply_shifts(frame[None], np.array([[1.0, 2.0]]))[0]
    assert np.allclose(moved[:7, :6], frame[1:, 2:])
    assert np.isnan(moved[7]).all() and np.isnan(moved[:, 6:]).all()


def test_progress_reports_time_left(drifting):
    seen = []
    register(drifting[0], progress=seen.append)
    assert seen[-1].step == seen[-1].total == 12 and "left" in seen[-1].message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reference": "last"}, "reference"),
        ({"reference": 40}, "reference: frame 40"),
        ({"per_line": "yes"}, "per_line"),
        ({"window": 0}, "window"),
        ({"window": 10**6}, "window: expected a number of frames from 1 to 1000"),
        ({"pixel_size": -1}, "pixel_size"),
    ],
)
def test_bad_options_name_the_option(drifting, kwargs, message):
    with pytest.raises(ValueError, match=message):
        register(drifting[0], **kwargs)


def test_a_still_image_and_huge_frames_are_refused():
    with pytest.raises(ValueError, match="movie: expected a \\(t, y, x\\) stack"):
        register(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="movie: frames of 5000 x 5000 pixels are too large"):
        register(da.zeros((2, 5000, 5000), chunks=(1, 5000, 5000)))


def test_frames_without_data_are_flagged_not_fatal(drifting):
    movie = drifting[0].copy()
    movie[3] = np.nan
    result = register(movie)
    assert result.flagged[3] and result.flagged.sum() == 1
    assert np.isnan(result.movie[3]).all()


# -- real movies ---------------------------------------------------------------------------


def test_real_asd_movie(sample):
    channel = sp.read(sample("hsafm_asd/asd_sample_0.asd")).channels[0]
    result = sp.register(channel.data, pixel_size=channel.pixel_size)
    assert result.unit == "nm" and result.movie.shape == channel.data.shape == (32, 200, 200)
    assert isinstance(result.movie, da.Array)  # the reader's lazy movie stays lazy
    # the last ten frames lost the surface (feedback lost): flagged, kept, the series goes on
    assert set(range(22, 32)) <= set(np.flatnonzero(result.flagged))
    assert not result.flagged[:18].any()
    good = ~result.flagged
    assert np.all(np.abs(np.array(result.table()["dx_nm"])[good]) < 5)  # drifts by a few nm


def test_real_h5_jpk_movie(sample):
    scan = sp.read(sample("jpk/sample_0.h5-jpk"))
    channel = next(c for c in scan.channels if c.title == "Height (trace)")
    result = sp.register(channel.data, reference="mean", per_line=True, pixel_size=channel.pixel_size)
    frames = np.asarray(result.movie)
    assert frames.shape == (4, 128, 128) and result.line_shifts.shape == (4, 128)
    assert not result.flagged.any()
    assert np.isfinite(frames[:, 20:-20, 20:-20]).all()


# -- recipes and batch ---------------------------------------------------------------------


def test_recipe_replays_the_register_step(drifting):
    from napari_scanprobe.recipe import load_recipe, recipe_from_history, run_recipe

    movie, _ = drifting
    step = {"step": "register", "method": "phase", "options": {"reference": "mean", "per_line": False}}
    recipe = recipe_from_history([step])
    assert recipe.steps == [{**step, "options": {"reference": "mean", "per_line": False}}]
    replayed = run_recipe(recipe, movie).image
    assert np.array_equal(replayed, register(movie, reference="mean").movie, equal_nan=True)
    with pytest.raises(ValueError, match=r"steps\[0\] \(register\): reference"):
        load_recipe({"steps": [{"step": "register", "options": {"reference": "middle"}}]})


def test_batch_registers_a_movie_with_lost_frames_to_the_end(sample, tmp_path):
    from napari_scanprobe.batch import run_batch
    from napari_scanprobe.recipe import load_recipe

    path = sample("hsafm_asd/asd_sample_0.asd")  # its last ten frames lost the surface
    recipe = load_recipe(
        {"channels": ["Height"], "steps": [{"step": "register"}, {"step": "write", "format": ".tif"}]}
    )
    result = run_batch(recipe, [path], tmp_path / "out", workers=0)
    assert result.failed == 0 and result.results[0].frames == 32
    written = sp.read(result.results[0].outputs[0])
    channel = written.channels[0]
    assert channel.data.shape == (32, 200, 200)
    assert channel.pixel_size == pytest.approx((0.5, 0.5)) and channel.xy_unit == "nm"
    assert [s["step"] for s in channel.header["processing"]] == ["register"]


def test_cli_writes_the_per_frame_table(sample, tmp_path, capsys):
    import csv

    from napari_scanprobe.cli import main

    out = tmp_path / "frames.csv"
    assert (
        main(["movie", str(sample("hsafm_asd/asd_sample_0.asd")), "-o", str(out), "--reference", "mean"]) == 0
    )
    assert "32 frames, " in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 32 and float(rows[0]["Sq (nm)"]) > 0
    assert [r["flagged"] for r in rows[22:]] == ["True"] * 10  # the frames that lost the surface
    assert main(["movie", str(sample("nanonis_sxm/test.sxm")), "-o", str(out)]) == 1
    assert "is an image, not a movie" in capsys.readouterr().err
