"""Super-resolution: grid alignment, baselines, the zero-shot CNN, saved weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

import napari_scanprobe
from napari_scanprobe.process.common import Progress
from napari_scanprobe.process.superres import (
    CNN_METHODS,
    UPSCALE_METHODS,
    UpscalerModel,
    downscale_area,
    load_upscaler,
    train_upscaler,
    upscale,
    upscale_steps,
    upscaled_geometry,
)

torch = pytest.importorskip("torch")

FAST = dict(steps=40, ensemble=False)  # short CNN runs for tests


def psnr(truth, estimate):
    return 10 * np.log10(np.ptp(truth) ** 2 / np.mean((truth - estimate) ** 2))


def blocks(n=64, k=8, seed=0):
    """Flat rectangles on a grid of 8 px: sharp edges that look the same at every octave."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, n))
    for _ in range(k):
        y0, x0 = rng.integers(0, n // 8, 2) * 8
        h, w = rng.integers(1, 5, 2) * 8
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.2, 1.0)
    return img


def smooth(shape=(24, 28), seed=1):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.sin(0.4 * x + rng.uniform()) * np.cos(0.3 * y) + 0.02 * x


# ---------------------------------------------------------------- grid, shapes, baselines


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
@pytest.mark.parametrize("factor", [2, 4])
def test_ramp_is_reproduced_at_documented_positions(method, factor):
    ny, nx = 12, 16
    y, x = np.mgrid[0:ny, 0:nx]
    ramp = 0.7 * y - 1.3 * x + 5.0
    out = upscale(ramp, factor, method=method)
    assert out.shape == (ny * factor, nx * factor)
    pos_y = (np.arange(ny * factor) + 0.5) / factor - 0.5  # output pixel i sits at input (i+.5)/f-.5
    pos_x = (np.arange(nx * factor) + 0.5) / factor - 0.5
    np.testing.assert_allclose(out, 0.7 * pos_y[:, None] - 1.3 * pos_x[None, :] + 5.0, atol=1e-9)


@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_reproduces_a_quadratic_away_from_the_edges(factor):
    # no plane to hide behind: a cubic spline reproduces x² exactly, so any grid shift shows
    n = 40
    x = np.arange(n, dtype=float)
    img = np.tile((x - 20.0) ** 2 / 10.0, (8, 1))
    out = upscale(img, factor, method="bicubic")
    pos = (np.arange(n * factor) + 0.5) / factor - 0.5
    inner = slice(8 * factor, (n - 8) * factor)
    np.testing.assert_allclose(
        out[:, inner], np.tile((pos[inner] - 20.0) ** 2 / 10.0, (8 * factor, 1)), atol=1e-4
    )
    wrong = (np.arange(n * factor)) / factor  # corner-aligned: what a shifted grid would give
    assert np.abs(out[0, inner] - (wrong[inner] - 20.0) ** 2 / 10.0).max() > 0.05


def test_upscaled_geometry_overlays_the_input():
    scale, translate = upscaled_geometry((2.0, 4.0), (10.0, -3.0), 2)
    assert scale == (1.0, 2.0)
    # output pixel 0 sits at input position -0.25: a quarter of an input pixel before its centre
    assert translate == (10.0 - 0.25 * 2.0, -3.0 - 0.25 * 4.0)
    scale, translate = upscaled_geometry((1.0, 2.0, 2.0), (0.0, 0.0, 0.0), 4)
    assert scale == (1.0, 0.5, 0.5) and translate == (0.0, -0.75, -0.75)
    with pytest.raises(ValueError, match="factor"):
        upscaled_geometry((1.0, 1.0), (0.0, 0.0), 3)


def test_lanczos_is_close_to_bicubic_on_smooth_data():
    img = smooth()
    a, b = upscale(img, 2, method="lanczos"), upscale(img, 2, method="bicubic")
    assert np.abs(a - b)[4:-4, 4:-4].max() < 0.02 * np.ptp(img)


def test_downscale_area_is_block_mean_and_inverts_the_grid():
    img = np.arange(6 * 8, dtype=float).reshape(6, 8)
    coarse = downscale_area(img, 2)
    assert coarse.shape == (3, 4)
    assert coarse[0, 0] == np.mean([0, 1, 8, 9])
    assert downscale_area(np.ones((7, 9)), 4).shape == (1, 2)  # leftover rows/columns dropped


@pytest.mark.parametrize("method", ["bicubic", "lanczos", "cnn"])
def test_stack_shape_and_input_untouched(method):
    stack = np.stack([smooth(seed=s) for s in range(2)])
    before = stack.copy()
    out = upscale(stack, 2, method=method, **(FAST if method == "cnn" else {}))
    assert out.shape == (2, 48, 56) and out.dtype == np.float64
    np.testing.assert_array_equal(stack, before)


def test_integer_input_and_methods_table():
    out = upscale(np.arange(64, dtype=np.int16).reshape(8, 8), 2, method="bicubic")
    assert out.dtype.kind == "f" and out.shape == (16, 16)
    assert set(UPSCALE_METHODS) == {"auto", "bicubic", "lanczos", "cnn"}
    assert UPSCALE_METHODS["cnn"]["steps"] > 0 and "training_images" in UPSCALE_METHODS["cnn"]
    assert set(CNN_METHODS) == {"auto", "cnn"}


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(factor=3), "factor"),
        (dict(factor=1), "factor"),
        (dict(factor=True), "factor"),
        (dict(method="foo"), "method"),
        (dict(method="bicubic", steps=5), "steps"),
        (dict(method="cnn", steps=-1), "steps"),
        (dict(method="cnn", patch=2), "patch"),
        (dict(method="cnn", learning_rate=0), "learning_rate"),
        (dict(method="cnn", colour="red"), "colour"),
        (dict(method="cnn", device="nonsense"), "device"),
        (dict(method="lanczos", weights="x.safetensors"), "weights"),
        (dict(method="cnn", weights=42), "weights"),
        (dict(seed=-1), "seed"),
        (dict(method="cnn", features=10**6), "features"),
        (dict(method="cnn", learning_rate=float("inf")), "learning_rate"),
    ],
)
def test_bad_parameters_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        upscale(smooth(), **kwargs)


def test_bad_image():
    with pytest.raises(ValueError, match="image"):
        upscale(np.zeros(5), 2)
    with pytest.raises(ValueError, match="image"):
        upscale(np.zeros((1, 5)), 2)


# ---------------------------------------------------------------- NaN, constant, dask


@pytest.mark.parametrize("method", ["bicubic", "lanczos", "cnn"])
def test_nans_come_back_as_blocks(method):
    img = smooth((32, 32))
    img[5:7, 9] = np.nan
    img[20, 20:23] = np.inf
    before = img.copy()
    out = upscale(img, 2, method=method, **(FAST if method == "cnn" else {}))
    np.testing.assert_array_equal(img, before)
    bad = np.kron(~np.isfinite(img), np.ones((2, 2), bool))
    np.testing.assert_array_equal(np.isnan(out), bad)
    valid = img[np.isfinite(img)]
    margin = 0.2 * np.ptp(valid)  # the holes do not poison their neighbours
    assert valid.min() - margin < out[~bad].min() and out[~bad].max() < valid.max() + margin


@pytest.mark.parametrize("method", ["bicubic", "lanczos", "cnn"])
def test_constant_and_all_nan_images(method):
    opts = FAST if method == "cnn" else {}
    out = upscale(np.full((16, 16), 3.25), 4, method=method, **opts)
    np.testing.assert_allclose(out, 3.25, atol=1e-12)
    assert np.isnan(upscale(np.full((8, 8), np.nan), 2, method=method, **opts)).all()


def test_dask_stack_is_processed_lazily():
    da = pytest.importorskip("dask.array")
    calls = []
    stack = np.stack([smooth(seed=s) for s in range(3)])
    lazy = da.from_array(stack, chunks=(1, 24, 28)).map_blocks(lambda b: calls.append(1) or b)
    out = upscale(lazy, 2, method="bicubic")
    n_before = len(calls)
    assert type(out).__module__.startswith("dask") and out.shape == (3, 48, 56)
    frame = out[1].compute()
    assert len(calls) - n_before == 1  # one frame read for one frame asked
    np.testing.assert_allclose(frame, upscale(stack[1], 2, method="bicubic"))
    cnn = upscale(da.from_array(stack, chunks=(1, 24, 28)), 2, method="cnn", **FAST)
    assert type(cnn).__module__.startswith("dask")
    np.testing.assert_allclose(cnn[2].compute(), upscale(stack, 2, method="cnn", **FAST)[2], atol=1e-5)


# ---------------------------------------------------------------- the CNN


def test_cnn_beats_bicubic_on_sharp_textured_image():
    truth = blocks(64)
    coarse = downscale_area(truth, 2)
    info = {}
    out = upscale(coarse, 2, method="cnn", progress=lambda p: info.update(p.extra), **FAST)
    base = upscale(coarse, 2, method="cnn", steps=0)  # without the network: back-projected bicubic
    bic = upscale(coarse, 2, method="bicubic")
    assert psnr(truth, out) > psnr(truth, bic) + 3.0
    assert psnr(truth, out) > psnr(truth, base) + 3.0  # the network itself helps
    assert info["weight"] > 0.5


@pytest.mark.parametrize("factor", [2, 4])
def test_cnn_output_averages_back_to_the_input(factor):
    img = smooth((32, 32))
    out = upscale(img, factor, method="cnn", **FAST)
    assert out.shape == (32 * factor, 32 * factor)
    np.testing.assert_allclose(downscale_area(out, factor), img, atol=1e-9 * np.ptp(img))


@pytest.mark.slow
def test_cnn_is_deterministic_and_leaves_torch_alone():
    coarse = downscale_area(blocks(64, seed=3), 2)
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    info = {}
    a = upscale(coarse, 2, method="cnn", seed=5, progress=lambda p: info.update(p.extra), **FAST)
    assert info["weight"] > 0  # the whole pipeline ran, network included
    b = upscale(coarse, 2, method="cnn", seed=5, **FAST)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, upscale(coarse, 2, method="cnn", seed=6, **FAST))
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    assert torch.get_num_threads() == threads
    upscale(coarse, 2, method="cnn", steps=4, ensemble=False, threads=1)
    assert torch.get_num_threads() == threads


def test_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, napari_scanprobe.process.superres as s; s.upscale([[1.0, 2.0], [3.0, 4.0]], 2, method='lanczos'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_steps_generator_yields_progress_and_returns_result():
    gen = upscale_steps(smooth((32, 32)), 2, method="cnn", steps=10, ensemble=False)
    updates = []
    while True:
        try:
            updates.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert result.shape == (64, 64)
    assert all(isinstance(u, Progress) for u in updates)
    assert any(u.message.startswith("training: step") and u.loss is not None for u in updates)
    assert any("s left" in u.message for u in updates)  # the time left is shown
    seen = []
    upscale(smooth((32, 32)), 2, method="cnn", steps=10, ensemble=False, progress=seen.append)
    assert len(seen) == len(updates) and seen[-1].message == updates[-1].message
    gen = upscale_steps(smooth((32, 32)), 2, method="cnn", steps=50)
    next(gen)
    gen.close()  # cancelling mid-training is clean


def test_auto_uses_the_cnn():
    img = smooth((32, 32))
    np.testing.assert_array_equal(
        upscale(img, 2, method="auto", **FAST), upscale(img, 2, method="cnn", **FAST)
    )


@pytest.mark.slow
def test_training_images_are_used():
    coarse = downscale_area(blocks(64, seed=1), 2)
    alone = upscale(coarse, 2, method="cnn", **FAST)
    helped = upscale(coarse, 2, method="cnn", training_images=[blocks(64, seed=7)], **FAST)
    assert not np.array_equal(alone, helped)
    assert psnr(blocks(64, seed=1), helped) > psnr(blocks(64, seed=1), upscale(coarse, 2, method="bicubic"))
    with pytest.raises(ValueError, match="training_images"):
        upscale(coarse, 2, method="cnn", training_images=[np.zeros(3)], **FAST)


# ---------------------------------------------------------------- saved weights


@pytest.fixture(scope="module")
def model():
    return train_upscaler([blocks(64, seed=s) for s in range(2)], 2, steps=30)


def test_save_load_round_trip(model, tmp_path):
    assert isinstance(model, UpscalerModel) and model.factor == 2
    assert 10_000 <= model.n_parameters <= 25_000
    path = model.save(tmp_path / "mine")
    assert path.name == "mine.safetensors" and (tmp_path / "mine.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mine.json",
        "mine.safetensors",
    ]  # no temp files left
    side = json.loads((tmp_path / "mine.json").read_text())
    assert side["factor"] == 2 and side["architecture"]["features"] == 32
    assert side["package_version"] == napari_scanprobe.__version__ and "normalisation" in side
    loaded = load_upscaler(tmp_path / "mine.json")
    for key, value in model.state.items():
        np.testing.assert_array_equal(loaded.state[key], value)
    img = downscale_area(blocks(64, seed=4), 2)
    a = upscale(img, 2, method="cnn", weights=model)
    b = upscale(img, 2, method="cnn", weights=tmp_path / "mine.safetensors")
    c = loaded.upscale(img)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert psnr(blocks(64, seed=4), a) > psnr(blocks(64, seed=4), upscale(img, 2, method="bicubic")) + 3
    tuned = upscale(img, 2, method="cnn", weights=model, finetune=True, finetune_steps=5, ensemble=False)
    assert tuned.shape == (64, 64)


def test_tampered_truncated_and_incompatible_files(model, tmp_path):
    path = model.save(tmp_path / "m.safetensors")
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="m.safetensors"):
        load_upscaler(path)
    path.write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(ValueError, match="truncated"):
        load_upscaler(path)
    model.save(path)
    sidecar = tmp_path / "m.json"
    text = sidecar.read_text()
    sidecar.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="m.json"):
        load_upscaler(path)
    side = json.loads(text)
    side["format_version"] = 99
    sidecar.write_text(json.dumps(side))
    with pytest.raises(ValueError, match="format version"):
        load_upscaler(path)
    side["format_version"] = 1
    side["architecture"]["features"] = 16  # the tensors no longer fit
    sidecar.write_text(json.dumps(side))
    with pytest.raises(ValueError, match="m.safetensors"):
        load_upscaler(path)
    with pytest.raises(FileNotFoundError):
        load_upscaler(tmp_path / "absent")
    model.save(path)
    with pytest.raises(ValueError, match="factor"):
        upscale(smooth(), 4, method="cnn", weights=path)


def test_train_upscaler_bad_input():
    with pytest.raises(ValueError, match="images"):
        train_upscaler([], 2)
    with pytest.raises(ValueError, match="images"):
        train_upscaler([np.ones((64, 64))], 2, steps=2)  # nothing varies: nothing to learn
    with pytest.raises(ValueError, match="factor"):
        train_upscaler([blocks()], 3)


# ---------------------------------------------------------------- a real scan


def test_real_scan(sample):
    img = np.asarray(napari_scanprobe.read(sample("nanonis_sxm/test.sxm")).channels[0].data, dtype=float)
    img = img[:128, :128]
    coarse = downscale_area(img, 2)
    out = upscale(coarse, 2, method="cnn", steps=60)
    bic = upscale(coarse, 2, method="bicubic")
    assert out.shape == img.shape and np.isfinite(out).all()
    assert psnr(img, out) > psnr(img, bic)
    np.testing.assert_allclose(downscale_area(out, 2), coarse, atol=1e-9 * np.ptp(img))
