"""The network's view of an input: channels, resampling, normalisation, tiles; metrics."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe import read
from napari_scanprobe.learn.data import (
    as_example,
    list_folder,
    model_input,
    model_shape,
    pick_channels,
    resize,
    tile_starts,
    tiles,
)
from napari_scanprobe.learn.metrics import classification_report, roc_auc


def test_pick_channels_by_title_then_name(sample):
    scan = read(sample("nanonis_sxm/test.sxm"))
    assert [c.title for c in pick_channels(scan, [])] == [scan.channels[0].title]
    assert pick_channels(scan, ["z (backward)"])[0].direction == "backward"
    assert pick_channels(scan, ["Current"])[0].name == "Current"
    with pytest.raises(ValueError, match="no channel 'Phase'"):
        pick_channels(scan, ["Phase"])


def test_example_from_a_real_file_has_nm_pixel_size(sample):
    example = as_example(sample("nanonis_sxm/test.sxm"), ["Z (forward)", "Current (forward)"])
    assert example.names == ["Z (forward)", "Current (forward)"] and example.pixel_size[0] > 0
    assert example.shape == (256, 256) and not example.is_movie


def test_resize_keeps_area_and_mean():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(64, 80))
    small = resize(image, (32, 40))
    assert small.shape == (32, 40)
    assert small.mean() == pytest.approx(image.mean(), abs=0.02)
    ramp = np.add.outer(np.arange(64.0), np.zeros(80))
    np.testing.assert_allclose(resize(ramp, (128, 80))[::2, 0][1:-1] + 0.25, ramp[1:-1, 0], atol=1e-9)


def test_model_input_resamples_normalises_and_fills_nans():
    image = np.random.default_rng(1).normal(5, 3, (100, 100))
    image[3, 4] = np.nan
    view = model_input([image], (4.0, 4.0), {"pixel_size": 8.0, "input_size": 32, "preprocessing": []})
    assert view.shape == (1, 50, 50) and view.dtype == np.float32
    assert np.isfinite(view).all()
    assert view.mean() == pytest.approx(0, abs=1e-5) and view.std() == pytest.approx(1, abs=1e-4)
    assert model_shape((100, 60), (4.0, 2.0), 8.0) == (50, 15)
    constant = model_input(
        [np.full((40, 40), 7.0)], None, {"pixel_size": None, "input_size": 32, "preprocessing": []}
    )
    assert np.all(constant == 0)


def test_preprocessing_steps_are_applied():
    yy, xx = np.mgrid[:40, :40]
    tilted = 3.0 * xx + 2.0 * yy + np.random.default_rng(2).normal(0, 0.01, (40, 40))
    spec = {"pixel_size": None, "input_size": 32, "preprocessing": [{"step": "flatten", "method": "plane"}]}
    raw = model_input([tilted], None, {**spec, "preprocessing": []})
    flat = model_input([tilted], None, spec)
    # after plane removal only the noise is left: no correlation with the ramp any more
    assert (
        abs(np.corrcoef(flat[0].ravel(), xx.ravel())[0, 1])
        < 0.2
        < abs(np.corrcoef(raw[0].ravel(), xx.ravel())[0, 1])
    )


def test_tiles_cover_the_image():
    assert tile_starts(48, 48) == [0]
    assert tile_starts(100, 48) == [0, 26, 52]
    image = np.arange(2 * 100 * 60, dtype=np.float32).reshape(2, 100, 60)
    cut, starts = tiles(image, 48)
    assert cut.shape == (6, 2, 48, 48)
    covered = np.zeros((100, 60), bool)
    for y, x in starts:
        covered[y : y + 48, x : x + 48] = True
    assert covered.all()


def test_list_folder_ignores_hidden_and_underscore_entries(tmp_path):
    for name in ("b", "a", "_masks", ".git"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.npy").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    categories, files = list_folder(tmp_path)
    assert categories == ["a", "b"] and [c for _, c in files] == ["a", "b"]


def test_metrics_against_hand_counts():
    truth = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    r = classification_report(truth, probs, ["a", "b"])
    assert r["confusion_matrix"] == [[2, 1], [1, 1]]
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert r["per_class"]["b"]["precision"] == pytest.approx(1 / 2)
    pairs = [(p, n) for p in probs[truth == 1, 1] for n in probs[truth == 0, 1]]
    assert r["roc_auc"] == pytest.approx(
        np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    )
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))
