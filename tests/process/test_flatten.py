"""Plane flattening / levelling: known synthetic truths, NaN and constant images, stacks, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage, stats

from napari_scanprobe.process.flatten import (
    FLATTEN_METHODS,
    FLATTEN_OPTIONS,
    background_mask,
    flatten,
)
from napari_scanprobe.process.steps import FLATTEN
from tests.helpers import imported_by

NY, NX = 64, 80
YY, XX = np.mgrid[0:NY, 0:NX].astype(float)


def particles_scene(shape=(128, 128), seed=0, coverage=0.2, noise=0.1):
    """Flat background with round particles (2-8 nm), plus tilt, bow, line offsets and noise."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    truth = np.zeros(shape)
    while (truth > 0).mean() < coverage:
        cy, cx, radius = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(4, 10)
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
        truth = np.maximum(truth, rng.uniform(2, 8) * np.clip(1 - r2, 0, None) ** 1.5)
    u, v = xx / (nx - 1) - 0.5, yy / (ny - 1) - 0.5
    background = 12 * u - 7 * v + 3 * (4 * u**2 + 2 * v**2 - 1.5 * u * v)
    lines = rng.normal(0, 0.5, ny)[:, None]
    white = rng.normal(0, noise, shape)
    return truth + background + lines + white, truth, white


# ---------------------------------------------------------------------------------------------
# The GUI description


def test_methods_and_options_are_described():
    assert FLATTEN_METHODS[0] == "auto"
    assert set(FLATTEN_METHODS) == set(FLATTEN_OPTIONS) == set(FLATTEN.method_names)
    for method, options in FLATTEN_OPTIONS.items():
        assert FLATTEN.method(method).help
        for option in FLATTEN.method(method).options:
            assert option.help and option.label
        assert FLATTEN.check(method, options) == options  # the defaults are within their ranges
        # the defaults pass validation when given explicitly, and every method runs on them
        out = flatten(np.random.default_rng(1).normal(size=(16, 16)), method, **options)
        assert out.shape == (16, 16) and np.isfinite(out).all()


# ---------------------------------------------------------------------------------------------
# Known truths


def test_plane_removes_a_tilted_plane_exactly():
    image = 3.0 + 0.25 * XX - 0.7 * YY
    out = flatten(image, "plane")
    assert np.abs(out).max() < 1e-9


def test_plane_fit_ignores_masked_features_and_nans():
    image = 1.0 - 0.02 * XX + 0.05 * YY
    block = (slice(10, 30), slice(20, 50))
    image[block] += 50.0
    image[5, 7] = np.nan
    mask = np.zeros(image.shape, bool)
    mask[block] = True
    out = flatten(image, "plane", mask=mask)
    assert np.isnan(out[5, 7]) and np.isfinite(out).sum() == out.size - 1
    background = ~mask & np.isfinite(image)
    assert np.abs(out[background]).max() < 1e-9
    np.testing.assert_allclose(out[block], 50.0, atol=1e-9)
    # without the mask the block pulls the plane away
    assert np.nanmax(np.abs(flatten(image, "plane")[background])) > 1.0


def test_polynomial_removes_its_degrees_exactly():
    u, v = XX / NX, YY / NY
    image = 2 + u - 3 * v + 4 * u**2 * v - 5 * u**3 + 0.5 * u**3 * v**2 + 2 * v**2
    out = flatten(image, "polynomial", degree_x=3, degree_y=2)
    assert np.abs(out).max() < 1e-9
    assert np.abs(flatten(image, "polynomial", degree_x=2, degree_y=2)).max() > 1e-3
    # degree 1 x 1 is a plane plus the xy twist
    twisted = 1 + u + v + 3 * u * v
    assert np.abs(flatten(twisted, "polynomial", degree_x=1, degree_y=1)).max() < 1e-9
    assert np.abs(flatten(twisted, "plane")).max() > 0.1


def test_polynomial_on_a_large_image_is_accurate():
    yy, xx = np.mgrid[0:700, 0:900] / 700.0
    image = 5 - 2 * xx + xx**2 - 0.3 * yy**2 + 0.1 * xx * yy
    assert np.abs(flatten(image, "polynomial", degree_x=2, degree_y=2)).max() < 1e-9


def test_rows_median_removes_line_offsets_and_ignores_masked_features():
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 2, NY)
    image = offsets[:, None] + np.zeros((NY, NX))
    feature = (slice(20, 40), slice(0, 60))  # covers 3/4 of those lines: would shift the median
    image[feature] += 10.0
    mask = np.zeros(image.shape, bool)
    mask[feature] = True
    out = flatten(image, "rows_median", mask=mask)
    assert np.abs(out[~mask]).max() < 1e-12
    np.testing.assert_allclose(out[feature], 10.0, atol=1e-12)
    assert np.abs(flatten(image, "rows_median")[~mask]).max() > 5.0


def test_rows_mean_and_trimmed_mean_match_their_statistics():
    rng = np.random.default_rng(4)
    image = rng.standard_exponential((NY, NX)) + rng.normal(0, 3, NY)[:, None]
    np.testing.assert_allclose(
        flatten(image, "rows_mean"), image - image.mean(axis=1, keepdims=True), atol=1e-12
    )
    for trim in (0.0, 0.1, 0.25, 0.4):
        expected = image - stats.trim_mean(image, trim, axis=1)[:, None]
        np.testing.assert_allclose(flatten(image, "rows_trimmed_mean", trim=trim), expected, atol=1e-12)
    np.testing.assert_allclose(
        flatten(image, "rows_trimmed_mean", trim=0.499),
        image - np.median(image, axis=1, keepdims=True),
        atol=1e-12,
    )


def test_rows_median_diff_aligns_lines_through_features():
    rng = np.random.default_rng(5)
    offsets = rng.normal(0, 2, NY)
    surface = np.where((YY - 32) ** 2 + (XX - 40) ** 2 < 25**2, 6.0, 0.0)  # a plateau over half the lines
    out = flatten(surface + offsets[:, None], "rows_median_diff")
    np.testing.assert_allclose(out, surface - np.median(surface), atol=1e-9)
    # the plain row median cannot: the plateau shifts the lines it crosses
    assert np.abs(flatten(surface + offsets[:, None], "rows_median") - surface).max() > 1.0


def test_rows_polynomial_removes_per_line_polynomials():
    rng = np.random.default_rng(6)
    coef = rng.normal(size=(NY, 3))
    u = XX / NX
    image = coef[:, :1] + coef[:, 1:2] * u + coef[:, 2:] * u**2
    assert np.abs(flatten(image, "rows_polynomial", degree=2)).max() < 1e-9
    assert np.abs(flatten(image, "rows_polynomial", degree=1)).max() > 1e-3
    # masked features are left out of each line's fit
    bump = image.copy()
    bump[10:20, 30:50] += 5
    mask = np.zeros(image.shape, bool)
    mask[10:20, 30:50] = True
    out = flatten(bump, "rows_polynomial", degree=2, mask=mask)
    assert np.abs(out[~mask]).max() < 1e-9
    np.testing.assert_allclose(out[mask], 5.0, atol=1e-9)


@pytest.mark.parametrize(
    "method", ["rows_median", "rows_mean", "rows_trimmed_mean", "rows_polynomial", "rows_median_diff"]
)
def test_a_fully_masked_line_is_aligned_to_its_neighbour(method):
    offsets = np.random.default_rng(7).normal(0, 2, NY)
    image = offsets[:, None] + 0.0 * XX
    image[30, 10:20] += 4.0  # a feature on the fully masked line
    mask = np.zeros(image.shape, bool)
    mask[30] = True
    out = flatten(image, method, mask=mask)
    assert np.abs(out[~mask]).max() < 1e-9
    assert np.median(np.abs(out[30])) < 1e-9  # aligned to the line above, feature kept
    np.testing.assert_allclose(out[30, 10:20], 4.0, atol=1e-9)


def test_scars_are_replaced_and_nothing_else_changes():
    rng = np.random.default_rng(8)
    surface = 2.0 * np.sin(XX / 9.0) + 0.03 * YY + rng.normal(0, 0.05, (NY, NX))
    surface += rng.normal(0, 0.3, NY)[:, None]  # line offsets: not scars
    peak = (
        5.0 * np.clip(1 - ((YY - 50) ** 2 + (XX - 20) ** 2) / 16.0, 0, None) ** 1.5
    )  # a small tall particle
    clean = surface + peak
    scarred = clean.copy()
    scarred[20, 10:40] += 1.5  # one line tall
    scarred[33:35, 50:70] -= 1.0  # two lines tall, downwards
    scarred[45, 60:62] += 2.0  # too short to count
    truth_scars = np.zeros(clean.shape, bool)
    truth_scars[20, 10:40] = truth_scars[33:35, 50:70] = True
    out = flatten(scarred, "scars")
    assert np.abs(out[truth_scars] - clean[truth_scars]).max() < 0.3  # interpolated between neighbours
    changed = out != scarred
    assert not changed[~truth_scars].any()  # the particle crest and the short blip are untouched
    np.testing.assert_array_equal(out[45, 60:62], scarred[45, 60:62])
    # length limits: with max_length 20 the 30-px scar stays
    limited = flatten(scarred, "scars", max_length=20)
    np.testing.assert_array_equal(limited[20], scarred[20])
    assert not np.array_equal(limited[33:35], scarred[33:35])
    # max_width 1 leaves the two-line scar alone; masked pixels are never edited
    assert np.array_equal(flatten(scarred, "scars", max_width=1)[33:35], scarred[33:35])
    mask = np.zeros(clean.shape, bool)
    mask[20] = True
    np.testing.assert_array_equal(flatten(scarred, "scars", mask=mask)[20], scarred[20])


def test_auto_flattens_within_noise_and_keeps_particle_heights():
    image, truth, white = particles_scene(seed=0, coverage=0.25)
    out = flatten(image)
    background = truth == 0
    residual = out[background] - np.median(out[background])
    assert np.sqrt(np.mean(residual**2)) <= 1.5 * 0.1
    assert abs(np.median(out[background])) < 0.02  # background median at 0
    labels, n = ndimage.label(truth > 0)
    idx = np.arange(1, n + 1)
    measured = np.array(ndimage.maximum(out, labels, idx))
    ideal = np.array(ndimage.maximum(truth + white, labels, idx))
    assert np.max(np.abs(measured - ideal) / np.array(ndimage.maximum(truth, labels, idx))) <= 0.05
    # the particles would have biased a plain fit
    plain = flatten(image, "polynomial", degree_x=2, degree_y=2)
    assert np.std(plain[background]) > 3 * np.sqrt(np.mean(residual**2))


def test_auto_removes_scars_by_default_and_can_leave_them():
    image, truth, _ = particles_scene(seed=1, coverage=0.15)
    image[40, 20:60] += 2.5
    image[90, 70:100] -= 2.0
    background = truth == 0
    with_scars = flatten(image, scars=False)
    without = flatten(image)
    rms = lambda a: np.sqrt(np.mean((a[background] - np.median(a[background])) ** 2))  # noqa: E731
    assert rms(without) <= 1.5 * 0.1 < rms(with_scars)


def test_background_mask_separates_particles():
    image, truth, _ = particles_scene(seed=2, coverage=0.2)
    bg = background_mask(image)
    assert bg.dtype == bool and bg.shape == image.shape
    assert not bg[truth > 1.0].any()  # every tall particle pixel is a feature
    assert bg[truth == 0].mean() > 0.7  # most of the true background is kept
    # the user's mask and NaN pixels are never background
    mask = np.zeros(image.shape, bool)
    mask[:10] = True
    image[50, 50] = np.nan
    bg = background_mask(image, mask=mask, threshold=4.0)
    assert not bg[:10].any() and not bg[50, 50]


def test_auto_with_features_below_and_both():
    image, truth, _ = particles_scene(seed=3, coverage=0.15)
    holes = -image  # pits instead of particles
    out = flatten(holes, features="below")
    background = truth == 0
    assert np.std(out[background]) <= 1.5 * 0.1
    assert np.std(flatten(holes, features="both")[background]) <= 1.5 * 0.1
    assert np.std(flatten(holes, iterations=0)[background]) > 1.5 * 0.1  # a single unmasked fit is off
    assert np.std(flatten(holes, features="above")[background]) > 1.5 * 0.1  # so is masking the wrong side


# ---------------------------------------------------------------------------------------------
# NaN, constant and degenerate images; input untouched; dtypes


@pytest.mark.parametrize("method", FLATTEN_METHODS)
def test_nan_pixels_and_rows_stay_nan_and_do_not_poison(method):
    image, _, _ = particles_scene(shape=(48, 56), seed=4, coverage=0.1)
    image[5, 7] = image[20, :] = np.nan
    image[30:33, 40:45] = np.nan
    original = image.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = flatten(image, method)
    np.testing.assert_array_equal(image, original)  # input untouched
    assert out is not image and out.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(out), np.isnan(image))


@pytest.mark.parametrize("method", FLATTEN_METHODS)
def test_constant_all_nan_and_tiny_images(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = flatten(np.full((20, 30), 7.5), method)
        np.testing.assert_allclose(out, 0.0 if method != "scars" else 7.5, atol=1e-12)
        assert np.isnan(flatten(np.full((10, 12), np.nan), method)).all()
        assert np.isfinite(flatten(np.arange(4.0).reshape(2, 2), method)).all()
        fully_masked = flatten(np.random.default_rng(0).normal(size=(12, 12)), method, mask=np.ones((12, 12)))
        assert np.isfinite(fully_masked).all()


def test_dtypes():
    image = (np.arange(12 * 16).reshape(12, 16) % 7).astype(np.int16)
    assert flatten(image, "plane").dtype == np.float64
    assert flatten(image.astype(np.float32)).dtype == np.float32
    assert flatten(image.astype(bool), "rows_median").dtype == np.float64


# ---------------------------------------------------------------------------------------------
# Stacks


def test_numpy_stack_is_flattened_frame_by_frame():
    frames = [particles_scene(shape=(40, 48), seed=s, coverage=0.1)[0] for s in range(3)]
    stack = np.stack(frames)
    out = flatten(stack, "auto")
    assert out.shape == stack.shape
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(out[i], flatten(frame, "auto"))
    mask = np.zeros(stack.shape, bool)
    mask[1, :10] = True  # a per-frame mask
    out = flatten(stack, "rows_median", mask=mask)
    np.testing.assert_array_equal(out[1], flatten(frames[1], "rows_median", mask=mask[1]))
    np.testing.assert_array_equal(out[0], flatten(frames[0], "rows_median"))
    assert background_mask(stack).shape == stack.shape


def test_dask_stack_is_flattened_lazily():
    da = pytest.importorskip("dask.array")
    frames = np.stack([particles_scene(shape=(40, 48), seed=s, coverage=0.1)[0] for s in range(4)])
    calls = []

    def load(block):
        calls.append(1)
        return block

    lazy = da.from_array(frames, chunks=(2, 40, 48)).map_blocks(load, dtype=float)
    out = flatten(lazy, "plane")
    assert type(out).__module__.startswith("dask.")
    before = len(calls)
    np.testing.assert_allclose(out[2].compute(), flatten(frames[2], "plane"), atol=1e-12)
    assert len(calls) - before <= 2  # only the chunk holding frame 2 was read
    mask = np.zeros(frames.shape, bool)
    mask[3, 5:9] = True
    masked = flatten(lazy, "rows_median", mask=mask)
    assert type(masked).__module__.startswith("dask.")
    np.testing.assert_allclose(masked.compute(), flatten(frames, "rows_median", mask=mask), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Bad parameters


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(method="foo"), "method"),
        (dict(method=None), "method"),
        (dict(method="plane", degree=2), "degree"),
        (dict(method="polynomial", degree_x=-1), "degree_x"),
        (dict(method="polynomial", degree_y=11), "degree_y"),
        (dict(method="polynomial", degree_x=1.5), "degree_x"),
        (dict(method="rows_trimmed_mean", trim=0.5), "trim"),
        (dict(method="rows_trimmed_mean", trim="a"), "trim"),
        (dict(method="auto", threshold=0.0), "threshold"),
        (dict(method="auto", threshold=float("nan")), "threshold"),
        (dict(method="auto", features="sideways"), "features"),
        (dict(method="auto", scars="yes"), "scars"),
        (dict(method="auto", iterations=True), "iterations"),
        (dict(method="scars", max_width=0), "max_width"),
        (dict(method="auto", mask=np.zeros((3, 3))), "mask"),
    ],
)
def test_bad_parameters_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        flatten(np.zeros((8, 8)), **kwargs)


def test_bad_images():
    with pytest.raises(ValueError, match="image"):
        flatten(np.zeros(8))
    with pytest.raises(ValueError, match="image"):
        flatten(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="image"):
        flatten(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="threshold"):
        background_mask(np.zeros((8, 8)), threshold=-1)
    with pytest.raises(ValueError, match="degree_x"):
        background_mask(np.zeros((8, 8)), degree_x=1)


def test_importing_flatten_loads_no_torch_or_gui():
    assert imported_by("napari_scanprobe.process.flatten", ("torch", "napari", "qtpy", "magicgui")) == []


# ---------------------------------------------------------------------------------------------
# A real scan


def test_real_nanonis_scan(sample):
    import napari_scanprobe

    data = napari_scanprobe.read(sample("nanonis_sxm/test.sxm")).channels[0].data
    image = np.array(data, dtype=float)
    original = image.copy()
    plane = flatten(image, "plane")
    # after plane levelling a refitted plane is flat
    assert np.abs(plane - flatten(plane, "plane")).max() < 1e-9
    auto = flatten(image)
    np.testing.assert_array_equal(image, original)
    assert np.isfinite(auto).all() and auto.shape == image.shape
    bg = background_mask(image)
    assert 0.2 < bg.mean() < 0.95
    assert abs(np.median(auto[bg])) < 1e-9
    assert np.std(auto) < 0.5 * np.std(image)  # the tilt is gone
    # line alignment adds no more line-to-line steps than the lines carry after a plane fit x 3
    steps = lambda a: np.sqrt(np.mean(np.median(np.diff(a, axis=0), axis=1) ** 2))  # noqa: E731
    assert steps(auto) < 3 * steps(plane)


# ----------------------------------------------------------------------------------------------
# The fast paths at instrument size, against straightforward references


def test_fast_median_is_numpy_median_bit_for_bit():
    from napari_scanprobe.process.common import median

    rng = np.random.default_rng(0)
    cases = [
        rng.normal(size=300_001),
        rng.standard_cauchy(size=400_000),
        np.repeat(rng.normal(size=1000), 300),  # many ties
        np.where(np.arange(200_000) % 10 == 0, 0.0, 1.0),  # the strided sample sees only zeros
        rng.normal(size=5),
    ]
    for values in cases:
        assert median(values) == np.median(values)


def _disk_dilation(flags, radius):
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ndimage.binary_dilation(flags, structure=(yy**2 + xx**2) <= radius**2 + radius)


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 12])
def test_background_without_the_dilated_features_matches_ndimage(radius):
    from napari_scanprobe.process.flatten import _background_without

    rng = np.random.default_rng(radius)
    flags = rng.random((97, 131)) > 0.995
    flags[0, 0] = flags[-1, 5] = flags[40, -1] = True  # at the borders too
    valid = rng.random(flags.shape) > 0.05
    shapes = [
        (slice(None), slice(None)),
        (slice(0, 1), slice(None)),
        (slice(None), slice(0, 1)),
        (slice(0, 3), slice(0, 2)),
    ]
    for rows, cols in shapes:  # tiny images: one line, one column, fewer lines than the disk
        f, v = flags[rows, cols], valid[rows, cols]
        expected = v & ~_disk_dilation(f, radius)
        for previous in (expected, ~expected, np.zeros_like(v)):
            got, any_background, changed = _background_without(f, v, radius, previous)
            np.testing.assert_array_equal(got, expected)
            assert any_background == expected.any()
            assert changed == (not np.array_equal(expected, previous))
    nothing = np.zeros((4, 5), bool)
    assert _background_without(nothing, nothing, radius, nothing)[1:] == (False, False)


def _dense_scar_flags(a, editable, width, hard, soft):
    """The scar test written out on every pixel (the previous implementation), as a reference."""
    ny, nx = a.shape
    n_blocks = ny - width - 1
    above, below = a[:n_blocks], a[width + 1 : width + 1 + n_blocks]
    outer = np.zeros((n_blocks, nx))
    outer[1:] = np.abs(a[1:n_blocks] - a[: n_blocks - 1])
    outer[:-1] = np.fmax(outer[:-1], np.abs(below[:-1] - a[width + 2 : width + 1 + n_blocks]))
    outer = np.nan_to_num(outer)
    flags = [np.ones((n_blocks, nx), dtype=bool) for _ in range(4)]
    with np.errstate(invalid="ignore"):
        for k in range(width):
            line = a[1 + k : 1 + k + n_blocks]
            up, down = line - above, line - below
            lo = np.where(np.minimum(up, down) > outer, np.minimum(up, down), np.nan)
            hi = np.where(-np.maximum(up, down) > outer, np.maximum(up, down), np.nan)
            ed = editable[1 + k : 1 + k + n_blocks]
            flags[0] &= (lo > soft) & ed
            flags[1] &= lo > hard
            flags[2] &= (hi < -soft) & ed
            flags[3] &= hi < -hard
    return flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [1, 2, 3])
def test_scar_candidates_match_the_dense_test(width, dtype):
    from napari_scanprobe.process.flatten import _scar_flags

    rng = np.random.default_rng(width)
    a = rng.normal(0, 1, (300, 257))
    a[100 : 100 + width, 30:60] += 6.0  # scars up and down, and NaNs
    a[200 : 200 + width, 90:140] -= 6.0
    a[50, 10:20] = np.nan
    a[150:153, 5] = np.nan  # NaN inside a block and on the lines beside it
    a = a.astype(dtype)
    editable = rng.random(a.shape) > 0.01
    weak, strong, weak_neg, strong_neg = _dense_scar_flags(a, editable, width, 4.0, 2.0)
    (up_px, up_strong), (down_px, down_strong) = _scar_flags(a, editable, width, 4.0, 2.0)
    for pixels, strong_at, dense_weak, dense_strong in (
        (up_px, up_strong, weak, strong),
        (down_px, down_strong, weak_neg, strong_neg),
    ):
        np.testing.assert_array_equal(pixels, np.flatnonzero(dense_weak))
        np.testing.assert_array_equal(strong_at, dense_strong.reshape(-1)[pixels])


def _large_scene(size, seed=0, noise=0.1):
    """Particles stamped into a size x size background with tilt, bow, line offsets, scars, noise."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size))
    r = 12
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    for _ in range(size * size // 2500):
        cy, cx = rng.integers(r, size - r, 2)
        bump = rng.uniform(2, 8) * np.clip(1 - (yy**2 + xx**2) / rng.uniform(4, r) ** 2, 0, None) ** 1.5
        patch = truth[cy - r : cy + r + 1, cx - r : cx + r + 1]
        np.maximum(patch, bump, out=patch)
    v, u = np.linspace(-0.5, 0.5, size)[:, None], np.linspace(-0.5, 0.5, size)[None, :]
    image = truth + 12 * u - 7 * v + 3 * (4 * u**2 + 2 * v**2 - 1.5 * u * v) + rng.normal(0, 0.5, (size, 1))
    scars = np.zeros_like(truth)
    for _ in range(40):
        row, start = rng.integers(2, size - 3), rng.integers(0, size - 200)
        scars[row, start : start + rng.integers(20, 200)] = rng.choice([-1, 1]) * rng.uniform(1, 3)
    return image + scars + rng.normal(0, noise, truth.shape), truth, scars != 0


@pytest.mark.slow
def test_auto_at_2048_recovers_the_background_and_removes_the_scars():
    from napari_scanprobe.process.flatten import _remove_scars

    image, truth, scars = _large_scene(2048)
    flat = flatten(image)
    bg = (truth == 0) & ~ndimage.binary_dilation(scars, iterations=2)
    residual = flat[bg] - np.median(flat[bg])
    assert np.sqrt(np.mean(residual**2)) < 1.05 * 0.1  # the noise alone is left
    scar_bg = scars & (truth == 0)
    assert np.abs(flat[scar_bg] - np.median(flat[bg])).mean() < 0.3  # scars of 1-3 nm are gone
    # scar removal alone finds the injected scars and little else
    _, rows, cols = _remove_scars(flatten(image, "rows_median"), None, 4.0, 3, 0, 2)
    found = np.zeros(image.shape, bool)
    found[rows, cols] = True
    assert (found & scars).sum() > 0.9 * scars.sum() and (found & ~scars).sum() < 0.001 * found.size


# ----------------------------------------------------------------------------------------------
# Auto works in float32 on the residual from a coarse background: the equivalences it relies on


def _robust_sigma(values):
    return 1.4826 * np.median(np.abs(values - np.median(values)))


def test_auto_in_float32_matches_float64_on_a_real_scan(sample):
    """Heights beyond float32's range are worked in float64: the same scan at both scales gives
    the same background and the same heights to float32 rounding (1e-4 of the noise)."""
    import napari_scanprobe

    scan = napari_scanprobe.read(sample("nanonis_sxm/test.sxm"))
    image = np.array(scan.channels[0].data, dtype=float)
    scale = 1e35  # the residual exceeds float32's range: the float64 path
    in_float32, in_float64 = flatten(image), flatten(image * scale) / scale
    background = background_mask(image)
    np.testing.assert_array_equal(background, background_mask(image * scale))
    sigma = _robust_sigma(in_float32[background])
    assert np.abs(in_float32 - in_float64).max() < 1e-4 * sigma


def test_auto_ignores_a_coarse_background_added_to_the_image():
    """The coarse background auto removes first (an offset, a tilt along x, line offsets) is made
    of terms its fits remove anyway: adding one, however large, changes nothing but rounding."""
    image, _, _ = particles_scene(shape=(300, 280), seed=5)
    ny, nx = image.shape
    x = np.linspace(-1, 1, nx)[None, :]
    lines = np.random.default_rng(1).normal(0, 40, ny)[:, None]
    shifted = image + 1e4 + 800 * x + lines
    np.testing.assert_array_equal(background_mask(image), background_mask(shifted))
    assert np.abs(flatten(image) - flatten(shifted)).max() < 1e-3 * 0.1


def test_subsampled_polynomial_fit_matches_the_full_fit():
    from napari_scanprobe.process.flatten import _poly_fit, _total_terms

    ny, nx = 301, 257  # not multiples of the stride: the subsample keeps the full image's coordinates
    v, u = np.linspace(-1, 1, ny)[:, None], np.linspace(-1, 1, nx)[None, :]
    surface = 3 + 12 * u - 7 * v + 3 * (4 * u**2 + 2 * v**2 - 1.5 * u * v)
    valid = np.random.default_rng(0).random(surface.shape) > 0.3
    terms = _total_terms(2)
    for stride in (1, 2, 5):
        rows, cols = _poly_fit(surface, valid, terms, stride=stride)
        np.testing.assert_allclose(rows @ cols, surface, atol=1e-9)
    noisy = surface + np.random.default_rng(1).normal(0, 0.1, surface.shape)
    full, sub = (np.matmul(*_poly_fit(noisy, valid, terms, stride=s)) for s in (1, 2))
    assert np.abs(full - sub).max() < 0.02  # both within the noise / sqrt(pixels) of the truth


def test_auto_of_a_constant_or_plane_image_has_no_features():
    """Float rounding of an exact plane is not taken for features."""
    v, u = np.mgrid[0:300, 0:260].astype(float)
    for image in (np.full((300, 260), -21.861611188001007), 5.0 + 0.3 * u - 0.2 * v):
        assert background_mask(image).all()
        np.testing.assert_allclose(flatten(image), 0.0, atol=1e-9)


def test_median_of_float32_values_is_exact():
    from napari_scanprobe.process.common import median

    rng = np.random.default_rng(3)
    for values in (rng.normal(size=300_000), rng.normal(size=1000), rng.normal(size=300_001)):
        values = (values * 1e3).astype(np.float32)
        assert median(values) == np.median(values.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_surface_subtracted_is_the_whole_product(dtype):
    """The compiled subtraction gives every line exactly ``z - rows @ cols`` (summed term by
    term in float64) in the requested float type, less the line's offset in that type."""
    from napari_scanprobe.process.flatten import _minus_surface

    rng = np.random.default_rng(5)
    z = rng.normal(size=(37, 29))  # 37 lines: not a whole number of blocks
    rows, cols = rng.normal(size=(37, 4)), rng.normal(size=(4, 29))
    out = _minus_surface(z, rows, cols, dtype)
    surface = sum(rows[:, k : k + 1] * cols[k : k + 1] for k in range(4))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, (z - surface).astype(dtype))
    offsets = rng.normal(size=37) * 1e3  # subtracted in the requested type, after rounding
    offsets[3] = np.nan
    out = _minus_surface(z, rows, cols, dtype, offsets)
    np.testing.assert_array_equal(out, (z - surface).astype(dtype) - offsets.astype(dtype)[:, None])


@pytest.mark.parametrize("case", ["plain", "masked line", "line without data", "nothing shared"])
def test_rows_and_bow_in_one_sweep_equal_the_general_route(case):
    """The surface subtracted, line offsets from the medians taken in one sweep and subtracted
    on writing: bit for bit the image less the surface, less its auto line offsets; lines that
    need the general route (fully masked, without data, nothing shared) take it."""
    from napari_scanprobe.process.flatten import (
        _auto_row_offsets,
        _minus_surface,
        _poly_fit,
        _remove_rows_and_bow,
        _total_terms,
    )

    rng = np.random.default_rng(8)
    z = (rng.normal(size=(60, 1500)) + np.linspace(0, 3, 1500) ** 2).astype(np.float32)
    valid = rng.random(z.shape) > 0.1
    if case == "masked line":
        valid[7] = False
    elif case == "line without data":
        z[12] = np.nan
    elif case == "nothing shared":
        valid[20, ::2] = False
        valid[21, 1::2] = False
    valid &= np.isfinite(z)
    for degree in (0, 2):
        got, guesses = _remove_rows_and_bow(z, valid, degree)
        np.testing.assert_array_equal(_remove_rows_and_bow(z, valid, degree, guesses)[0], got)
        terms = _total_terms(degree, with_pure_y=False)
        if terms:
            rows, cols = _poly_fit(z, valid, terms, free_rows=True)
            flat = _minus_surface(z, rows, cols, z.dtype)
        else:
            flat = z.copy()
        flat -= _auto_row_offsets(flat, valid).astype(flat.dtype)[:, None]
        np.testing.assert_array_equal(got, flat)
