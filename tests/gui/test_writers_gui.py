"""Saving layers from a real viewer with the plugin's writers, then opening the files again."""

from __future__ import annotations

import json

import dask.array as da
import napari
import numpy as np
import pytest

from napari_scanprobe.gui.layers import layer_to_channel
from napari_scanprobe.gui.reader import open_scan
from napari_scanprobe.gui.writers import SaveError
from napari_scanprobe.io import read

from .widget_helpers import open_in_file_order

PLUGIN = "napari-scanprobe"


def units_of(layer) -> list[str]:
    return [str(u) for u in layer.units]


def assert_same_layer(got, want, *, rtol: float) -> None:
    assert got.data.shape == want.data.shape
    np.testing.assert_allclose(np.asarray(got.data), np.asarray(want.data), rtol=rtol, atol=0)
    np.testing.assert_allclose(got.scale, want.scale, rtol=1e-12)
    np.testing.assert_allclose(got.translate, want.translate, rtol=1e-12)
    assert units_of(got) == units_of(want)
    assert got.metadata["z_unit"] == want.metadata["z_unit"]


@pytest.mark.parametrize("ext, rtol", [(".gsf", 2**-23), (".tif", 2**-24)])
def test_save_one_layer_and_open_it(make_napari_viewer, sample, tmp_path, ext, rtol):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    current = layers[2]  # "test | Current (forward)", values in A
    current.metadata["processing"] = [
        {"step": "flatten", "method": "rows", "options": {}, "version": "0.1.0"}
    ]
    viewer.layers.selection = {current}
    target = tmp_path / f"current{ext}"
    written = viewer.layers.save(str(target), selected=True, plugin=PLUGIN)
    assert written == [str(target)] and target.is_file()

    (back,) = open_scan(viewer, target)
    assert back.name == "current | test | Current (forward)"
    assert_same_layer(back, current, rtol=rtol)
    assert units_of(back) == ["nanometer", "nanometer"] and back.metadata["z_unit"] == "A"
    saved = back.metadata["channel_header"]  # what we wrote: the layer's metadata
    processing = saved["processing"] if ext == ".tif" else json.loads(saved["processing"])
    assert processing == current.metadata["processing"]


def test_save_all_layers_to_one_gwy(make_napari_viewer, sample, tmp_path):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    target = tmp_path / "all.gwy"
    assert napari.save_layers(str(target), layers, plugin=PLUGIN) == [str(target)]
    back = open_scan(viewer, target)
    assert len(back) == 4
    for got, want in zip(back, layers):
        assert got.name == f"all | {want.name}"
        assert_same_layer(got, want, rtol=1e-12)
    assert [read(target).channels[i].z_unit for i in range(4)] == ["nm", "nm", "A", "A"]


def test_save_movie_layer_to_tif(make_napari_viewer, sample, tmp_path):
    viewer = make_napari_viewer()
    (movie,) = viewer.open(str(sample("hsafm_asd/asd_sample_0.asd")), plugin=PLUGIN)
    target = tmp_path / "movie.tif"
    viewer.layers.selection = {movie}
    viewer.layers.save(str(target), selected=True, plugin=PLUGIN)
    (back,) = open_scan(viewer, target)
    assert isinstance(back.data, da.Array) and back.data.shape == movie.data.shape
    assert units_of(back) == ["second", "nanometer", "nanometer"]
    assert_same_layer(back, movie, rtol=0)
    assert read(target).channels[0].frame_time_s == movie.scale[0]


def test_refusals_reach_the_user(make_napari_viewer, sample, tmp_path):
    """napari hides a writer's ValueError behind "not a valid writer": ours arrive as SaveError."""
    viewer = make_napari_viewer()
    (movie,) = viewer.open(str(sample("hsafm_asd/asd_sample_0.asd")), plugin=PLUGIN)
    viewer.layers.selection = {movie}
    with pytest.raises(SaveError, match="'asd_sample_0 | Height' is a movie.*use .tif"):
        viewer.layers.save(str(tmp_path / "movie.gsf"), selected=True, plugin=PLUGIN)
    rgb = viewer.add_image(np.zeros((4, 5, 3), np.uint8), name="photo", rgb=True)
    viewer.layers.selection = {rgb}
    with pytest.raises(SaveError, match="'photo' is an RGB image"):
        viewer.layers.save(str(tmp_path / "photo.tif"), selected=True, plugin=PLUGIN)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_reaches_the_user(make_napari_viewer, sample, tmp_path):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    target = tmp_path / "missing folder" / "all.gwy"
    with pytest.raises(OSError, match="does not exist") as info:
        napari.save_layers(str(target), layers, plugin=PLUGIN)
    assert str(target) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_layer_in_micrometres_saved_in_nm(make_napari_viewer, tmp_path):
    """A layer made by hand, in µm: the file holds nm (Gwyddion: metres), the frame unchanged."""
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    layer = viewer.add_image(
        data,
        name="hand made",
        scale=(0.02, 0.03),
        translate=(1.5, -2.0),
        units=("µm", "µm"),
        metadata={"z_unit": "nm"},
    )
    target = tmp_path / "hand.gsf"
    viewer.layers.save(str(target), selected=True, plugin=PLUGIN)
    (ch,) = read(target).channels
    assert ch.xy_unit == "nm" and ch.z_unit == "nm" and ch.name == "hand made"
    assert ch.pixel_size == pytest.approx((20.0, 30.0), rel=1e-12)
    assert ch.offset == pytest.approx((1500.0, -2000.0), rel=1e-12)
    (back,) = open_scan(viewer, target)
    np.testing.assert_allclose(back.data, data, rtol=2**-23)
    assert units_of(back) == ["nanometer", "nanometer"]
    np.testing.assert_allclose(back.scale, [20.0, 30.0], rtol=1e-12)
    assert layer.units[0] != back.units[0]  # the µm layer itself is left as it was


def test_layer_to_channel_without_units():
    ch = layer_to_channel(
        np.zeros((3, 4)),
        {"name": "plain", "scale": [1.0, 2.0], "translate": [0, 5], "units": ("pixel", "pixel")},
    )
    assert (ch.xy_unit, ch.z_unit, ch.pixel_size, ch.offset, ch.header) == (
        "",
        "",
        (1.0, 2.0),
        (0.0, 5.0),
        {},
    )
    refused = {
        "RGB": {"rgb": True},
        "multiscale": {"multiscale": True},
        "different units": {"units": ("nm", "s")},
    }
    for words, bad in refused.items():
        with pytest.raises(ValueError, match=words):
            layer_to_channel(np.zeros((3, 4)), {"name": "x", **bad})
