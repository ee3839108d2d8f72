"""Prediction: per image, per movie frame, on real files, batched; clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe import read
from napari_scanprobe.learn.data import Example
from napari_scanprobe.learn.predict import predict, predict_many

from .conftest import SIZE, blob_data, blob_image

pytestmark = pytest.mark.slow  # every test here trains a network (or uses one trained here)


def test_probabilities_sum_to_one_and_label_is_the_most_probable(blob_model):
    result = predict(blob_model, blob_data(1, seed=5)["blob"][0])
    assert set(result.probabilities) == {"plain", "blob"}
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.as_dict()["label"] == result.label


def test_movie_gets_one_prediction_per_frame(blob_model):
    rng = np.random.default_rng(3)
    movie = np.stack([blob_image(rng, i % 2 == 1) for i in range(6)])
    result = predict(blob_model, movie)
    assert [f["frame"] for f in result.frames] == list(range(6))
    assert sum(f["label"] == ("blob" if f["frame"] % 2 else "plain") for f in result.frames) >= 5


def test_lazy_movie_is_read_frame_by_frame(blob_model):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(4)
    movie = da.from_array(np.stack([blob_image(rng, True) for _ in range(4)]), chunks=(1, SIZE, SIZE))
    assert len(predict(blob_model, movie).frames) == 4


def test_larger_images_are_tiled_and_batching_does_not_change_results(blob_model):
    rng = np.random.default_rng(6)
    big = np.tile(blob_image(rng, True), (2, 3))  # 96 x 144: 2 x 3 tiles, a blob in each
    images = [big] + blob_data(5, seed=7)["plain"]
    one_by_one = [predict(blob_model, im) for im in images]
    batched = predict_many(blob_model, images, batch_size=4)
    assert batched[0].label == "blob"
    for a, b in zip(one_by_one, batched, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_resampling_to_the_model_scale(blob_model):
    from dataclasses import replace

    scaled = replace(blob_model, pixel_size=10.0)
    rng = np.random.default_rng(8)
    image = blob_image(rng, True)
    fine = np.kron(image, np.ones((2, 2)))  # the same area at 5 nm/px
    a = predict(scaled, Example([image], ["h"], (10.0, 10.0)))
    b = predict(scaled, Example([fine], ["h"], (5.0, 5.0)))
    assert a.label == b.label == "blob"
    from napari_scanprobe.learn.data import model_input

    va = model_input([image.astype(float)], (10.0, 10.0), scaled.spec)
    vb = model_input([fine], (5.0, 5.0), scaled.spec)
    assert va.shape == vb.shape == (1, 48, 48)
    assert np.corrcoef(va.ravel(), vb.ravel())[0, 1] > 0.9  # the same picture (the finer one anti-aliased)
    with pytest.raises(
        ValueError, match=r"48×48 px \(19×19 px at the model's 10 nm/px\); the network needs at least 24 px"
    ):
        predict(scaled, Example([image], ["h"], (4.0, 4.0)))
    half = predict(scaled, Example([image], ["h"], (5.0, 5.0)))  # 24 px: mirrored up to 48
    assert half.label in scaled.categories


def test_real_file_uses_its_first_channel_and_physical_scale(blob_model, sample):
    from dataclasses import replace

    path = sample("nanonis_sxm/test.sxm")
    scan = read(path)
    model = replace(blob_model, pixel_size=scan.channels[0].pixel_size[0] * 2)  # the 256 px file -> 128 px
    result = predict(model, path)
    assert result.source == str(path)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_a_channel_the_file_lacks_is_named(blob_model, sample):
    from dataclasses import replace

    model = replace(blob_model, channels=["Height"])
    with pytest.raises(ValueError, match=r"test.sxm: no channel 'Height'; the file has 'Z \(forward\)'"):
        predict(model, sample("nanonis_sxm/test.sxm"))


def test_on_error_reports_and_continues(blob_model, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_text("junk")
    seen = []
    results = predict_many(
        blob_model,
        [bad, blob_data(1, seed=1)["plain"][0]],
        on_error=lambda obj, exc: seen.append((obj, str(exc))),
    )
    assert results[0] is None and results[1] is not None
    assert seen[0][0] == bad and "bad.npy" in seen[0][1]


def test_bad_model_argument(blob_model):
    with pytest.raises(ValueError, match="model: expected a model file path"):
        predict(42, np.zeros((SIZE, SIZE)))
