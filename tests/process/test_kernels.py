"""The compiled kernels (process/kernels.py) against straightforward numpy references, bit for bit where the
kernel promises it: random values, ties, NaN, fully masked rows, tiny and one-line images."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from napari_scanprobe.process.common import center_and_sigma, compiled_kernels, median
from napari_scanprobe.process.flatten import _feature_mask, _row_medians, flatten
from tests.helpers import imported_by


def _reference_row_medians(values, valid):
    """Each row's median over its valid values by a full sort (NaN for a row without any)."""
    s = np.sort(np.where(valid, values, np.inf), axis=1)
    n = np.count_nonzero(valid, axis=1)
    rows = np.arange(values.shape[0])
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    out = 0.5 * (s[rows, lo].astype(np.float64) + s[rows, hi])
    out[n == 0] = np.nan
    return out


def _images(rng):
    """(values, valid) pairs: wide rows (the bracketed selection), ties, masks, tiny shapes."""
    wide = rng.normal(size=(40, 3001))
    valid = rng.random(wide.shape) > 0.2
    valid[3] = False  # a fully masked row
    valid[4, :1500] = False  # half masked: fewer than 1,024 values left
    ties = rng.integers(0, 4, size=(30, 2500)).astype(float)  # many equal values
    skewed = np.where(rng.random((20, 2048)) < 0.7, 0.0, rng.standard_cauchy((20, 2048)))
    yield wide, valid
    yield wide, np.ones(wide.shape, bool)
    yield ties, rng.random(ties.shape) > 0.1
    yield skewed, np.ones(skewed.shape, bool)  # the row's sample may bracket badly
    yield rng.normal(size=(1, 7)), np.ones((1, 7), bool)  # one line
    yield rng.normal(size=(2, 2)), np.array([[True, False], [False, False]])
    yield rng.normal(size=(5, 1)), np.ones((5, 1), bool)
    yield rng.normal(size=(3, 4)), np.zeros((3, 4), bool)  # nothing valid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_medians_equal_the_sorted_reference(dtype):
    for values, valid in _images(np.random.default_rng(0)):
        values = values.astype(dtype)
        np.testing.assert_array_equal(_row_medians(values, valid), _reference_row_medians(values, valid))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_line_difference_medians_equal_the_reference(dtype):
    rng = np.random.default_rng(1)
    for values, valid in _images(rng):
        values = values.astype(dtype)
        values[rng.random(values.shape) < 0.01] = np.nan  # NaN differences are left out
        ok = valid & np.isfinite(values)
        rows = np.arange(1, values.shape[0])
        refs = rows - 1
        if rows.size > 2:
            rows, refs = rows[::2], refs[::2] - (refs[::2] > 0)  # not only neighbours
        got = compiled_kernels().diff_medians(values, ok, rows, refs)
        with np.errstate(invalid="ignore"):
            diff = values[rows] - values[refs]
        expected = _reference_row_medians(diff, ok[rows] & ok[refs] & np.isfinite(diff))
        np.testing.assert_array_equal(got, expected)


def _reference_center_and_sigma(values):
    """np.median of the values and 1.4826 x np.median of their absolute deviations (taken in the
    values' float type, as numpy does), the standard deviation if that is 0."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    center = float(np.median(values.astype(np.float64)))
    deviations = np.abs(values - center)  # the centre is cast to the values' type
    sigma = 1.4826 * float(np.median(deviations.astype(np.float64)))
    return center, sigma if sigma > 0 else float(np.std(values))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_robust_statistics_equal_numpy_median_bit_for_bit(dtype):
    rng = np.random.default_rng(2)
    cases = [
        (rng.normal(size=(600, 501)), rng.random((600, 501)) > 0.3),  # > 100,000 values: bracketed
        (rng.standard_cauchy(size=(400, 1000)), np.ones((400, 1000), bool)),
        (np.repeat(rng.normal(size=1000), 300).reshape(300, 1000), np.ones((300, 1000), bool)),  # ties
        (np.where(np.arange(200_000) % 10 == 0, 0.0, 1.0).reshape(400, 500), np.ones((400, 500), bool)),
        (rng.normal(size=(3, 5)), rng.random((3, 5)) > 0.5),
        (rng.normal(size=(1, 2)), np.ones((1, 2), bool)),
        (np.full((200, 600), 2.5), np.ones((200, 600), bool)),  # constant: sigma from the std (0)
        (rng.normal(size=(4, 4)), np.zeros((4, 4), bool)),  # nothing to measure
        # the deviations' bracket: a large offset (rounding of the deviations), integers (ties at
        # the bracket's bounds), a skewed sample whose median guess is off, half the values equal
        (1e6 + rng.normal(size=(300, 400)), np.ones((300, 400), bool)),
        (rng.integers(0, 4, size=(300, 400)).astype(float), rng.random((300, 400)) > 0.2),
        (np.exp(3 * rng.normal(size=(300, 400))), np.ones((300, 400), bool)),
        (np.where(rng.random((300, 400)) < 0.5, 1.0, rng.normal(size=(300, 400))), np.ones((300, 400), bool)),
    ]
    for values, where in cases:
        values = values.astype(dtype)
        values[rng.random(values.shape) < 0.01] = np.nan  # NaN is never counted
        expected = _reference_center_and_sigma(values[where])
        assert center_and_sigma(values, where) == expected
        if where.any():
            assert median(values, where & np.isfinite(values)) == expected[0]


def _reference_grow(side, seed_level, grow_level):
    """Label the pixels above ``grow_level`` (4-neighbours), keep the regions with a seed."""
    labels, n = ndimage.label(side > grow_level)
    keep = np.zeros(n + 1, bool)
    keep[labels[side > seed_level]] = True
    keep[0] = False
    return keep[labels]


@pytest.mark.parametrize("features", ["above", "below", "both"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hysteresis_equals_labelling_the_regions_with_a_seed(features, dtype):
    rng = np.random.default_rng(3)
    r = ndimage.gaussian_filter(rng.normal(size=(150, 170)), 1.5).astype(dtype) * 4
    r[40, 10:30] = np.nan
    for image in (r, r[:1], r[:, :1], r[:2, :3]):
        center = dtype(np.nanmedian(image))
        deviation = image - center
        side = {"above": deviation, "below": -deviation, "both": np.abs(deviation)}[features]
        seed, grow = dtype(0.9), dtype(0.3)
        got = compiled_kernels().grow_features(
            np.ascontiguousarray(image), center, ("above", "below", "both").index(features), seed, grow
        )
        np.testing.assert_array_equal(got, _reference_grow(side, seed, grow))


def test_feature_mask_matches_its_numpy_statement():
    """The whole feature mask: robust centre and spread of the background, hysteresis."""
    rng = np.random.default_rng(4)
    r = rng.normal(size=(300, 260)).astype(np.float32)
    r[100:130, 50:90] += 5
    background = rng.random(r.shape) > 0.1
    center, sigma = _reference_center_and_sigma(r[background])
    side = r - center
    expected = _reference_grow(side, 3.0 * sigma, 1.5 * sigma)
    np.testing.assert_array_equal(_feature_mask(r, background, 3.0, "above"), expected)


@pytest.mark.parametrize("degree", [0, 2, 4])
def test_line_sums_equal_the_products(degree):
    from napari_scanprobe.process.flatten import _legendre

    rng = np.random.default_rng(5)
    for shape in ((50, 301), (1, 9), (3, 1)):
        z = rng.normal(size=shape).astype(np.float32)
        valid = rng.random(shape) > 0.3
        valid[0] = False  # a line without valid pixels sums to 0
        px = _legendre(shape[1], degree)
        gram, moments = compiled_kernels().line_sums(z, valid, px)
        w = valid.astype(np.float64)
        np.testing.assert_allclose(gram, np.einsum("yx,xi,xk->yik", w, px, px), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(moments, (np.where(valid, z, 0.0)) @ px, rtol=1e-12, atol=1e-12)


def test_selection_is_exact_with_ties_and_long_runs_of_equal_values():
    select = compiled_kernels()._select
    rng = np.random.default_rng(6)
    for trial in range(300):
        n = int(rng.integers(1, 400))
        values = [rng.normal(size=n), rng.integers(0, 3, size=n), np.full(n, 2.0)][trial % 3].astype(
            np.float32
        )
        k = int(rng.integers(0, n))
        buf = values.copy()
        select(buf, n, k)
        assert buf[k] == np.sort(values)[k]
        assert (buf[:k] <= buf[k]).all() and (buf[k + 1 :] >= buf[k]).all()
        np.testing.assert_array_equal(np.sort(buf), np.sort(values))  # a permutation
    buf = np.full(300_000, 1.0, np.float32)  # all equal: linear, not quadratic
    select(buf, buf.size, 150_000)
    assert buf[150_000] == 1.0


def test_importing_the_process_modules_does_not_load_numba():
    assert (
        imported_by(
            "napari_scanprobe.process.flatten, napari_scanprobe.process.denoise", ("numba", "llvmlite")
        )
        == []
    )


@pytest.mark.slow  # compiles every kernel in a fresh process
def test_kernels_work_where_no_cache_folder_is_writable(tmp_path):
    """Where numba finds no folder to cache in (a read-only install, no writable home), the
    kernels are compiled in the process instead of failing."""
    code = (
        "import numpy as np\n"
        "from napari_scanprobe.process.flatten import flatten\n"
        "image = np.add.outer(np.arange(40.0), np.arange(50.0)) + np.random.default_rng(0).normal(size=(40, 50))\n"
        "flat = flatten(image)\n"
        "assert np.isfinite(flat).all() and abs(np.median(flat)) < 1\n"
        "print('ok')\n"
    )
    env = dict(os.environ)
    env["NUMBA_CACHE_LOCATOR_CLASSES"] = "ZipCacheLocator"  # finds no place for a .py source file
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
    assert "cannot cache" not in out.stderr


@pytest.mark.slow  # compiles every kernel in a fresh process
def test_auto_result_does_not_depend_on_the_kernels_cache(tmp_path):
    """The same image flattened in a fresh process with its own cache folder gives the same bits."""
    image = np.random.default_rng(7).normal(size=(64, 70)) + np.linspace(0, 5, 70)
    np.save(tmp_path / "image.npy", image)
    code = (
        "import numpy as np\n"
        "from napari_scanprobe.process.flatten import flatten\n"
        f"np.save({str(tmp_path / 'flat.npy')!r}, flatten(np.load({str(tmp_path / 'image.npy')!r})))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "flat.npy"), flatten(image))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_line_medians_equal_the_medians_of_the_image_less_its_surface(dtype):
    """One sweep: each line's median, the median of its differences from the last line with
    data and whether it has data, of ``z - rows @ cols`` as minus_surface makes it."""
    from napari_scanprobe.process.flatten import _minus_surface

    rng = np.random.default_rng(7)
    for values, valid in _images(rng):
        z = values.astype(dtype)
        z[rng.random(z.shape) < 0.01] = np.nan
        if z.shape[0] > 6:
            z[5] = np.nan  # a line without data: the next one steps from the one before
        valid = valid & np.isfinite(z)
        rows, cols = rng.normal(size=(z.shape[0], 3)), rng.normal(size=(3, z.shape[1]))
        f = _minus_surface(z, rows, cols, dtype)
        no_guesses = np.full((4, z.shape[0]), np.nan)
        medians, steps, has_data, guesses = compiled_kernels().line_medians(z, valid, rows, cols, no_guesses)
        np.testing.assert_array_equal(medians, _reference_row_medians(f, valid))
        # guesses never change a median: near ones (the previous fit's), far ones, no reach
        for near in (guesses, guesses + [[0.01], [0.0], [-0.01], [0.0]], guesses * [[1], [1e-9], [1], [0]]):
            again = compiled_kernels().line_medians(z, valid, rows, cols, near)
            np.testing.assert_array_equal(again[0], medians)
            np.testing.assert_array_equal(again[1], steps)
        far = guesses + [[100.0], [0.0], [-100.0], [0.0]]
        np.testing.assert_array_equal(compiled_kernels().line_medians(z, valid, rows, cols, far)[0], medians)
        np.testing.assert_array_equal(has_data, np.isfinite(f).any(axis=1))
        data = np.flatnonzero(has_data)
        with np.errstate(invalid="ignore"):
            diff = f[data[1:]] - f[data[:-1]]
        ok = valid[data[1:]] & valid[data[:-1]] & np.isfinite(diff)
        expected = np.full(z.shape[0], np.nan)
        expected[data[1:]] = _reference_row_medians(diff, ok)
        np.testing.assert_array_equal(steps, expected)
