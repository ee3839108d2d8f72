"""Denoising: classical filters and the self-supervised CNNs, on synthetic truth and a real scan."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from napari_scanprobe.process import denoise as denoise_module
from napari_scanprobe.process.common import Progress
from napari_scanprobe.process.denoise import (
    AUTO_MIN_PIXELS,
    DENOISE_METHODS,
    MAX_NETWORK_WEIGHT,
    NL_MEANS_K,
    auto_choice,
    calibrate_nl_means,
    choose_auto,
    denoise,
    denoise_steps,
    estimate_noise,
    estimate_noise_sigma,
)
from napari_scanprobe.progress import run_to_end
from napari_scanprobe.synthetic import synthetic_surface
from tests.helpers import imported_by

CLASSICAL = ["median", "gaussian", "nl_means", "tv", "bilateral"]
# small and quick: the benchmark does the big runs
FAST_CNN = {"iterations": 150, "patch_size": 32, "batch_size": 4}


def psnr(result, truth):
    return 20 * np.log10(np.ptp(truth) / np.sqrt(np.mean((result - truth) ** 2)))


def line_noise(shape, seed, white=0.25, correlated=0.3):
    """White noise plus noise correlated along x within each line (as after flattening)."""
    rng = np.random.default_rng(seed)
    corr = ndimage.gaussian_filter1d(rng.normal(0, 1, shape), 2.0, axis=1)
    return rng.normal(0, white, shape) + correlated * corr / corr.std()


@pytest.fixture(scope="module")
def surface():
    truth, _ = synthetic_surface((64, 64), 1.5, n_particles=6, seed=3)
    return truth


@pytest.fixture(scope="module")
def noisy(surface):
    return surface + line_noise(surface.shape, 7)


@pytest.fixture(scope="module")
def n2v_result(noisy):
    return denoise(noisy, "n2v", seed=0, **FAST_CNN)


# --------------------------------------------------------------------------------------------------
# classical filters


@pytest.mark.parametrize("method", CLASSICAL)
def test_classical_improves_psnr_and_leaves_input(method, surface):
    noisy = surface + np.random.default_rng(1).normal(0, 0.8, surface.shape)
    before = noisy.copy()
    out = denoise(noisy, method)
    np.testing.assert_array_equal(noisy, before)
    assert out is not noisy and out.shape == noisy.shape and out.dtype == np.float64
    assert psnr(out, surface) > psnr(noisy, surface) + 1.5


@pytest.mark.parametrize("method", CLASSICAL)
def test_classical_is_unit_and_offset_invariant(method, noisy):
    """Parameters act in the working range, so metres + an offset give the same answer as nm."""
    nm = denoise(noisy, method)
    metres = denoise(noisy * 1e-9 - 3e-7, method)
    np.testing.assert_allclose((metres + 3e-7) * 1e9, nm, rtol=0, atol=1e-6 * np.ptp(nm))


@pytest.mark.parametrize("method", CLASSICAL)
def test_nans_stay_nan_and_do_not_poison(method, noisy):
    holey = noisy.copy()
    holey[10:15, 20:40] = np.nan
    holey[0, 0] = np.nan
    out = denoise(holey, method)
    assert np.array_equal(np.isnan(out), np.isnan(holey))
    far = np.ones_like(noisy, bool)
    far[:25, 10:50] = False
    far[:6, :6] = False
    clean = denoise(noisy, method)
    # away from the holes the result is what it is without them (TV and nl_means are slightly global)
    assert np.abs(out - clean)[far].max() < 0.05 * np.ptp(noisy)


@pytest.mark.parametrize("method", CLASSICAL + ["n2v", "n2n"])
def test_constant_image_comes_back_unchanged(method):
    flat = np.full((40, 40), -7.25, dtype=np.float32)
    flat[3, 4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = denoise(flat, method, **({"pair": flat} if method == "n2n" else {}))
    assert out.dtype == np.float32
    assert np.isnan(out[3, 4]) and np.all(out[np.isfinite(flat)] == np.float32(-7.25))


def test_all_nan_image():
    out = denoise(np.full((8, 8), np.nan), "tv")
    assert np.isnan(out).all()


def test_float32_negative_heights(noisy):
    data = (noisy - 500.0).astype(np.float32)
    out = denoise(data, "nl_means")
    assert out.dtype == np.float32
    assert abs(float(np.mean(out)) - float(np.mean(data))) < 0.05


def test_mask_keeps_outliers_out_of_the_statistics(surface, noisy):
    """A masked scar (1000 nm) does not stretch the working range that ``h`` is relative to."""
    scarred = noisy.copy()
    scarred[:, :12] += 1000.0  # 19 % of the pixels: beyond the 99th percentile
    mask = np.zeros(noisy.shape, bool)
    mask[:, :12] = True
    reference = denoise(noisy, "nl_means", h=0.05, mask=mask)
    masked = denoise(scarred, "nl_means", h=0.05, mask=mask)
    unmasked = denoise(scarred, "nl_means", h=0.05)
    far = np.s_[:, 24:]  # nl_means reaches 8 px
    assert np.abs(masked - reference)[far].max() < 1e-3 * np.ptp(surface)
    assert np.abs(unmasked - reference)[far].max() > 0.02 * np.ptp(surface)


def test_numpy_stack_is_frame_by_frame(noisy):
    stack = np.stack([noisy, noisy[::-1] + 3.0, noisy * 2])
    out = denoise(stack, "bilateral", sigma_color=0.1)
    for t in range(3):
        np.testing.assert_allclose(out[t], denoise(stack[t], "bilateral", sigma_color=0.1))


def test_dask_stack_is_lazy():
    da = pytest.importorskip("dask.array")
    import dask

    calls = []
    truth, _ = synthetic_surface((48, 48), 3.9, n_particles=6, seed=1)

    def frame(i):
        calls.append(i)
        return truth + np.random.default_rng(i).normal(0, 0.3, truth.shape)

    stack = da.stack([da.from_delayed(dask.delayed(frame)(i), truth.shape, float) for i in range(4)])
    mask = np.zeros(truth.shape, bool)
    out = denoise(stack, "median", size=3, mask=mask)
    assert type(out).__module__.startswith("dask") and out.shape == stack.shape
    assert set(calls) <= {0}  # map_frames may look at the first frame for the output's type
    calls.clear()
    second = out[2].compute()
    assert calls == [2]
    np.testing.assert_allclose(second, denoise(frame(2), "median", size=3))
    # a per-frame mask stack works lazily too
    out3 = denoise(stack, "gaussian", mask=np.zeros((4, 48, 48), bool))
    assert out3[2].compute().shape == truth.shape


# --------------------------------------------------------------------------------------------------
# parameters and the method table


def test_every_listed_method_runs_with_its_defaults(noisy):
    for method, defaults in DENOISE_METHODS.items():
        if method in ("auto", "n2v", "n2n"):
            continue
        out = denoise(noisy, method, **defaults)
        assert out.shape == noisy.shape and np.isfinite(out).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "foo"}, "method: unknown 'foo'"),
        ({"method": "median", "sigma": 1}, "sigma: not an option of denoise method 'median'"),
        ({"method": "median", "size": 0}, "size: 0 px is outside 1 … 101 px"),
        ({"method": "median", "size": 2.5}, "size: expected a whole number"),
        ({"method": "gaussian", "sigma": -1.0}, "sigma: -1.0 px is outside 0 … 100 px"),
        ({"method": "gaussian", "sigma": float("nan")}, "sigma: expected a finite number"),
        ({"method": "nl_means", "h": 0}, "h: 0.0 fraction of the height range is outside > 0 … 10"),
        ({"method": "tv", "weight": "big"}, "weight: expected a number"),
        ({"method": "bilateral", "sigma_spatial": 0}, "sigma_spatial: 0.0 px is outside > 0 … 25 px"),
        ({"method": "n2v", "iterations": 0}, "iterations: 0 is outside 1 … 100000"),
        ({"method": "n2v", "patch_size": 4}, "patch_size: 4 px is outside 8 … 512 px"),
        ({"method": "n2v", "structured": "yes"}, "structured: expected true or false"),
        ({"method": "n2v", "learning_rate": 0.0}, "learning_rate: 0.0 is outside > 0 … 1"),
        ({"method": "n2v", "device": "warp-drive"}, "device:"),
        ({"method": "n2n"}, "pair: n2n needs a second noisy observation"),
        ({"method": "n2n", "pair": np.zeros((10, 10))}, "pair: shape (10, 10) does not match"),
        ({"method": "auto", "size": 3}, "size: not an option of denoise method 'auto' (its options: none)"),
        ({"method": "tv", "seed": True}, "seed: expected a whole number"),
        ({"method": "tv", "mask": np.zeros((3, 3), bool)}, "mask: shape"),
        ({"method": "tv", "seed": -1}, "seed: -1 is outside 0"),
        ({"method": "nl_means", "patch_size": 1_000_000}, "patch_size: 1000000 px is outside 1 … 31 px"),
        ({"method": "median", "size": 10**400}, "size: 1000000"),
    ],
)
def test_bad_parameters_name_the_parameter(noisy, kwargs, message):
    with pytest.raises(ValueError) as info:
        denoise(noisy, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 2, 2, 2)), np.array([["a", "b"], ["c", "d"]])])
def test_bad_images(bad):
    with pytest.raises(ValueError, match="image:"):
        denoise(bad, "median")


def test_auto_choice():
    assert choose_auto((32, 32)) == "nl_means"
    side = int(np.ceil(np.sqrt(AUTO_MIN_PIXELS)))
    assert choose_auto((side, side)) == "n2v"
    assert choose_auto((5, side, side)) == "n2v"
    small = np.random.default_rng(0).normal(size=(40, 40))
    np.testing.assert_array_equal(denoise(small), denoise(small, "nl_means"))


def _noise_cases(shape=(128, 128), sigma=0.15, seed=5):
    truth, _ = synthetic_surface(shape, 3.9, n_particles=10, seed=seed)
    rng = np.random.default_rng(seed)
    white = rng.normal(0, 1, shape)
    line = ndimage.gaussian_filter1d(rng.normal(0, 1, shape), 1.5, axis=1)
    return truth, truth + sigma * white, truth + sigma * line / line.std()


@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_estimate_noise_tells_white_from_line_correlated_and_measures_the_level(sigma):
    _, white, line = _noise_cases(sigma=sigma)
    w, c = estimate_noise(white), estimate_noise(line)
    assert w["kind"] == "white" and 0.9 < w["line_ratio"] < 1.1
    assert c["kind"] == "line" and c["line_ratio"] < 0.5
    for estimate in (w, c):
        assert estimate["sigma"] == pytest.approx(sigma, rel=0.12)


def test_estimate_noise_is_not_fooled_by_a_corrugated_surface():
    # atomic rows 7 px apart along the scan line, and weak noise half white, half correlated
    # along the lines: the corrugation must not pass for white noise
    truth, _ = synthetic_surface((128, 128), 3.9, n_particles=10, seed=2)
    xx = np.arange(128)[None, :] + 0.3 * np.arange(128)[:, None]
    corrugated = truth + 0.05 * np.ptp(truth) * np.sin(2 * np.pi * xx / 7.0)
    rng = np.random.default_rng(4)
    smooth = ndimage.gaussian_filter1d(rng.normal(size=truth.shape), 1.5, axis=1)
    mixed = np.sqrt(0.5) * rng.normal(size=truth.shape) + np.sqrt(0.5) * smooth / smooth.std()
    level = 0.015 * np.ptp(truth)
    assert estimate_noise(corrugated + level * mixed)["kind"] == "line"
    assert estimate_noise(corrugated + level * rng.normal(size=truth.shape))["kind"] == "white"


def test_estimate_noise_ignores_masked_and_nan_pixels():
    _, white, _ = _noise_cases(sigma=0.1)
    spoiled = white.copy()
    spoiled[40:60, 40:60] = 50.0 * np.random.default_rng(1).normal(size=(20, 20))
    mask = np.zeros(white.shape, dtype=bool)
    mask[38:62, 38:62] = True
    spoiled[0, :10] = np.nan
    assert estimate_noise(spoiled, mask)["sigma"] == pytest.approx(0.1, rel=0.12)
    assert estimate_noise(np.zeros((8, 8))) == {"sigma": 0.0, "line_ratio": 1.0, "kind": "white"}


def test_auto_picks_the_blind_spot_that_matches_the_noise():
    pytest.importorskip("torch")
    _, white, line = _noise_cases()
    assert auto_choice(white)[:2] == ("n2v", {"structured": False})
    assert auto_choice(line)[:2] == ("n2v", {"structured": True})
    assert auto_choice(np.stack([line, line]))[:2] == ("n2v", {"structured": True})
    assert auto_choice(white[:32, :32])[:2] == ("nl_means", {})


def test_auto_reports_its_noise_estimate_and_choice():
    _, white, _ = _noise_cases(shape=(40, 40), sigma=0.2)
    seen = []
    out = denoise(white, progress=seen.append)
    np.testing.assert_array_equal(out, denoise(white, "nl_means"))
    first = seen[0]
    assert first.extra["method"] == "nl_means" and first.extra["noise"]["kind"] == "white"
    assert "white noise" in first.message and "nl_means" in first.message


@pytest.mark.parametrize("kind", ["white", "line"])
def test_nl_means_strength_calibrated_on_the_image_is_near_the_best(kind):
    # at 4x this noise the calibration smooths too much on this flat surface (1-2 dB below the
    # best strength; docs/denoise.md)
    truth, white, line = _noise_cases(sigma=0.05)
    noisy = white if kind == "white" else line
    lo, hi = np.percentile(noisy, (1, 99))
    measured = estimate_noise(noisy)["sigma"] / (hi - lo)  # in the working range
    scores = {k: psnr(denoise(noisy, "nl_means", h=k * measured), truth) for k in NL_MEANS_K}
    calibrated = psnr(denoise(noisy, "nl_means"), truth)
    assert calibrated > max(scores.values()) - 0.5
    assert calibrated > min(scores.values()) + 0.3  # the choice matters and was not the worst


def test_nl_means_calibration_follows_the_noise():
    _, quiet, _ = _noise_cases(sigma=0.05)
    _, loud, _ = _noise_cases(sigma=0.3)
    o = DENOISE_METHODS["nl_means"]
    assert calibrate_nl_means(loud, None, o) > 2 * calibrate_nl_means(quiet, None, o)
    assert calibrate_nl_means(np.zeros((32, 32)), None, o) == 0.0
    valid = np.ones(loud.shape, dtype=bool)
    valid[:, :20] = False  # pixels left out are neither measured nor scored
    assert calibrate_nl_means(loud, valid, o) > 2 * calibrate_nl_means(quiet, valid, o)
    assert calibrate_nl_means(loud[:2, :2], None, o) == 0.0


@pytest.mark.slow
def test_nl_means_calibration_on_a_masked_centre_uses_the_whole_frame():
    _, quiet, _ = _noise_cases(sigma=0.05)
    _, loud, _ = _noise_cases(sigma=0.3)
    o = DENOISE_METHODS["nl_means"]
    big = np.tile(loud, (3, 3))  # 384 x 384: the centred 256 x 256 crop is masked
    masked_centre = np.ones(big.shape, dtype=bool)
    masked_centre[40:344, 40:344] = False
    assert calibrate_nl_means(big, masked_centre, o) > 2 * calibrate_nl_means(quiet, None, o)


def test_blind_fill_matches_the_networks_blind_spot():
    torch = pytest.importorskip("torch")
    from napari_scanprobe.process.n2v import blind_fill, blind_input, blind_phases

    frame = np.random.default_rng(2).normal(size=(12, 10))
    for structured in (True, False):
        for phase, held in enumerate(blind_phases(frame.shape, structured)):
            x = torch.from_numpy(frame)[None, None]
            inputs, masked = blind_input(x, torch.tensor([phase]), structured)
            np.testing.assert_array_equal(masked[0, 0].numpy(), held)
            np.testing.assert_allclose(
                inputs[0, 0].numpy(), np.where(held, blind_fill(frame, structured), frame)
            )


def _fake_network(result, blind_estimate):
    """Stands in for the trained network: ``result`` as its denoised image, ``blind_estimate(frame)``
    as its blind-spot estimate."""

    def fake(image, mask, method, o, seed):
        assert method == "n2v" and o["structured"] is False
        yield Progress(1, 1, None, "n2v")

        def blind(frame):
            yield Progress(1, 1, None, "blind")
            return blind_estimate(frame)

        return np.asarray(result, dtype=np.float64), blind

    return fake


def test_auto_mixes_the_network_with_calibrated_nl_means_by_a_weight_fitted_on_the_image(monkeypatch):
    pytest.importorskip("torch")
    truth, white, _ = _noise_cases()
    nl_means = denoise(white, "nl_means")
    fitted = {}
    calibrate = denoise_module.held_out_nl_means
    for name, blind in {
        "good": lambda frame: truth[:, :],  # predicts held-back pixels as well as anything can
        "poor": lambda frame: ndimage.uniform_filter(frame, 9),  # blurs steps and particles away
    }.items():
        result = truth + 0.01  # the network's denoised image (a stand-in)
        monkeypatch.setattr(denoise_module, "_cnn_steps", _fake_network(result, blind))
        seen, calibrations = [], []

        def counted(*args, calls=calibrations, **kwargs):
            calls.append(1)
            return calibrate(*args, **kwargs)

        monkeypatch.setattr(denoise_module, "held_out_nl_means", counted)
        out = denoise(white, progress=seen.append)
        monkeypatch.setattr(denoise_module, "held_out_nl_means", calibrate)
        assert len(calibrations) == 1  # the strength the weight was fitted against is the one mixed
        chose = [p.extra["auto"] for p in seen if "auto" in p.extra]
        assert len(chose) == 1 and chose[0]["method"] == "n2v" and chose[0]["kind"] == "white"
        weight = fitted[name] = chose[0]["network_weight"]
        assert 0.0 <= weight <= MAX_NETWORK_WEIGHT
        np.testing.assert_allclose(out, weight * result + (1 - weight) * nl_means)
    assert fitted["good"] == MAX_NETWORK_WEIGHT  # the image itself says the network predicts better
    assert fitted["poor"] < 0.3


@pytest.mark.parametrize("structured", [False, True])
def test_the_networks_blind_spot_estimate_never_sees_the_pixels_own_value(structured):
    pytest.importorskip("torch")
    from napari_scanprobe.process import n2v

    frame = np.random.default_rng(3).normal(size=(48, 48)).astype(np.float32)
    net = run_to_end(n2v.train_steps([frame], iterations=5, patch_size=32, structured=structured))
    before = run_to_end(n2v.predict_steps(net, frame, prior=True))
    changed = frame.copy()
    y, x = 20, 17
    where = (y, slice(None)) if structured else (y, x)  # the whole line, or the pixel
    changed[where] += 5.0
    after = run_to_end(n2v.predict_steps(net, changed, prior=True))
    np.testing.assert_allclose(after[where], before[where], atol=1e-5)
    assert not np.allclose(after, before)  # it does see the neighbours
    posterior = run_to_end(n2v.predict_steps(net, changed))
    assert not np.allclose(posterior[where], before[where])  # the posterior uses the pixel itself


def test_network_weight_sees_only_held_back_pixels_and_the_crop_context():
    truth, white, line = _noise_cases(shape=(300, 300))
    frames = []

    def copy_of_noisy(frame):  # not blind: it has seen every pixel's own noise
        frames.append(frame.shape)
        yield Progress(1, 1, None, "blind")
        return frame.copy()

    weight, h = run_to_end(denoise_module.network_weight_steps(white, None, copy_of_noisy, False))
    assert h > 0  # the strength of the non-local means it was fitted against
    assert weight == MAX_NETWORK_WEIGHT  # capped: a copy of the image "predicts" it perfectly
    assert frames == [(300, 300)]  # the 256-px centred crop plus 32 px of context, within the image

    def nothing(frame):
        yield Progress(1, 1, None, "blind")
        return np.full(frame.shape, np.nan)

    flat = np.zeros((64, 64))
    assert run_to_end(denoise_module.network_weight_steps(flat, None, nothing, True)) == (1.0, None)


def test_package_imports_without_torch():
    assert imported_by("napari_scanprobe.process.denoise, napari_scanprobe.process.n2v", ("torch",)) == []


# --------------------------------------------------------------------------------------------------
# CNNs


@pytest.mark.slow
def test_n2v_structured_improves_psnr(surface, noisy, n2v_result):
    assert n2v_result.shape == noisy.shape
    assert psnr(n2v_result, surface) > psnr(noisy, surface) + 2.0


@pytest.mark.slow
def test_n2v_seeded_runs_repeat(noisy, n2v_result):
    torch = pytest.importorskip("torch")
    state = torch.random.get_rng_state()
    again = denoise(noisy, "n2v", seed=0, **FAST_CNN)
    np.testing.assert_array_equal(again, n2v_result)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is left alone
    short = {**FAST_CNN, "iterations": 10}
    assert not np.array_equal(denoise(noisy, "n2v", seed=1, **short), denoise(noisy, "n2v", seed=2, **short))


@pytest.mark.slow
def test_n2v_plain_on_white_noise(surface):
    noisy = surface + np.random.default_rng(5).normal(0, 0.4, surface.shape)
    out = denoise(noisy, "n2v", structured=False, **FAST_CNN)
    assert psnr(out, surface) > psnr(noisy, surface) + 3.0


@pytest.mark.slow
def test_n2n_with_pair_improves_psnr(surface, noisy):
    pair = surface + line_noise(surface.shape, 8)
    before = (noisy.copy(), pair.copy())
    out = denoise(noisy, "n2n", pair=pair, **FAST_CNN)
    np.testing.assert_array_equal(noisy, before[0])
    np.testing.assert_array_equal(pair, before[1])
    # averaging the two observations alone would give +3 dB
    assert psnr(out, surface) > psnr(noisy, surface) + 4.5


@pytest.mark.slow
def test_n2n_on_a_movie_pairs_consecutive_frames(surface):
    movie = np.stack([surface + line_noise(surface.shape, 20 + t) for t in range(2)])
    out = denoise(movie, "n2n", **FAST_CNN)
    assert out.shape == movie.shape
    for t in range(2):
        assert psnr(out[t], surface) > psnr(movie[t], surface) + 1.5


def test_n2v_nans_mask_and_input(noisy):
    holey = noisy.copy()
    holey[5:9, 5:30] = np.nan
    before = holey.copy()
    mask = np.zeros(noisy.shape, bool)
    mask[40:50, 40:50] = True
    out = denoise(holey, "n2v", mask=mask, iterations=20, patch_size=32)
    np.testing.assert_array_equal(holey, before)
    assert np.array_equal(np.isnan(out), np.isnan(holey))


def test_n2v_dask_stack_trains_then_denoises_lazily(surface):
    da = pytest.importorskip("dask.array")
    stack = da.from_array(
        np.stack([surface + line_noise(surface.shape, t) for t in range(3)]), chunks=(1, 64, 64)
    )
    out = denoise(stack, "n2v", iterations=20, patch_size=32)
    assert type(out).__module__.startswith("dask") and out.shape == stack.shape
    frame = out[2].compute()
    assert frame.shape == surface.shape and np.isfinite(frame).all()


def test_steps_yield_progress_and_return_the_result(noisy):
    steps = denoise_steps(noisy, "n2v", iterations=12, patch_size=32)
    seen = []
    result = run_to_end(steps, seen.append)
    assert all(isinstance(update, Progress) for update in seen)
    training = [p for p in seen if p.message.startswith("n2v: step")]
    assert [p.step for p in training] == list(range(1, 13)) and all(p.total == 12 for p in training)
    assert all(np.isfinite(p.loss) for p in training)
    assert result.shape == noisy.shape
    # the widget cancels by closing the generator at a yield
    cancelled = denoise_steps(noisy, "n2v", iterations=1000, patch_size=32)
    next(cancelled)
    cancelled.close()
    calls = []
    denoise(noisy, "tv", progress=calls.append)
    assert calls and calls[-1].fraction == 1.0


# --------------------------------------------------------------------------------------------------
# a real scan


@pytest.mark.slow
def test_real_nanonis_scan(sample):
    import napari_scanprobe

    scan = napari_scanprobe.read(sample("nanonis_sxm/test.sxm"))
    z = scan.channels[0].data  # Z forward, nm, around -500 nm
    crop = np.array(z[64:128, 64:128], dtype=float)
    before = crop.copy()
    for method in ("nl_means", "n2v"):
        out = denoise(crop, method, **({"iterations": 60, "patch_size": 32} if method == "n2v" else {}))
        np.testing.assert_array_equal(crop, before)
        assert out.shape == crop.shape and np.isfinite(out).all()
        # smoother (less pixel noise), but the same surface: offset and relief kept
        span = np.ptp(crop)
        assert estimate_noise_sigma(out / span) < 0.8 * estimate_noise_sigma(crop / span)
        assert abs(out.mean() - crop.mean()) < 0.02 * span
        assert np.corrcoef(out.ravel(), crop.ravel())[0, 1] > 0.9
