"""Per-frame numbers of a movie: statistics, drift, classifier probabilities, CSV."""

from __future__ import annotations

import csv

import dask.array as da
import numpy as np
import pytest

import napari_scanprobe as sp
from napari_scanprobe.process.frame_table import frame_table
from napari_scanprobe.process.register import register


def test_statistics_per_frame_ignore_unseen_pixels():
    movie = np.zeros((3, 4, 4))
    movie[1] = np.arange(16).reshape(4, 4)
    movie[2, :2] = 2.0
    movie[2, 2:] = np.nan
    table = frame_table(da.from_array(movie, chunks=(1, 4, 4)), frame_time_s=0.5)
    assert table.columns["time"] == [0.0, 0.5, 1.0]
    assert table.columns["mean"] == [0.0, 7.5, 2.0]
    assert table.columns["min"][1] == 0 and table.columns["max"][1] == 15
    dev = np.arange(16) - 7.5
    assert table.columns["Sa"][1] == pytest.approx(np.abs(dev).mean())
    assert table.columns["Sq"][1] == pytest.approx(np.sqrt((dev**2).mean()))
    assert table.columns["Sq"][2] == 0.0
    assert table.units["Sq"] == "nm" and table.units["time"] == "s"


def test_registration_columns_and_csv(sample, tmp_path):
    channel = sp.read(sample("hsafm_asd/asd_sample_0.asd")).channels[0]
    reg = register(channel.data, pixel_size=channel.pixel_size)
    table = frame_table(reg.movie, registration=reg, frame_time_s=channel.frame_time_s)
    assert len(table) == 32
    assert table.columns["flagged"] == reg.flagged.tolist()
    assert table.units["dx"] == "nm"
    text = table.to_csv(tmp_path / "frames.csv")
    rows = list(csv.reader((tmp_path / "frames.csv").open()))
    assert text.splitlines()[0] == ",".join(rows[0])
    assert rows[0][:7] == ["frame", "time (s)", "mean (nm)", "min (nm)", "max (nm)", "Sa (nm)", "Sq (nm)"]
    assert "dx (nm)" in rows[0] and "flagged" in rows[0] and len(rows) == 33


def test_a_2d_image_is_refused():
    with pytest.raises(ValueError, match="movie: expected a \\(t, y, x\\) stack"):
        frame_table(np.zeros((8, 8)))


def test_classifier_probabilities_per_frame(tmp_path):
    from napari_scanprobe.learn.predict import predict
    from tests.test_batch import save_model

    model = save_model(tmp_path / "knobs", [], None)
    movie = np.random.default_rng(0).normal(0, 1, (3, 32, 32))
    table = frame_table(movie, model=model)
    assert list(table.columns)[-4:] == ["P(clean)", "P(dirty)", "CAM peak y", "CAM peak x"]
    expected = predict(model, movie[1]).probabilities
    assert table.columns["P(dirty)"][1] == pytest.approx(expected["dirty"], abs=1e-6)
    assert np.allclose(np.add(table.columns["P(clean)"], table.columns["P(dirty)"]), 1.0)


def test_the_cam_peak_is_where_each_frames_map_is_highest(tmp_path):
    from napari_scanprobe.learn.cam import cam
    from tests.test_batch import save_model

    model = save_model(tmp_path / "knobs", [], None)
    rng = np.random.default_rng(1)
    movie = rng.normal(0, 0.1, (3, 32, 32))
    for t, (y, x) in enumerate([(5, 6), (20, 9), (12, 25)]):  # a bump that moves
        movie[t, y - 2 : y + 3, x - 2 : x + 3] += 5.0
    table = frame_table(movie, model=model, pixel_size=2.0)
    assert table.units["CAM peak y"] == "nm"
    for t in range(3):
        heat = cam(model, movie[t], pixel_size=2.0).map
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        assert (table.columns["CAM peak y"][t], table.columns["CAM peak x"][t]) == (2.0 * row, 2.0 * col)
