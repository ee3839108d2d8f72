"""The plugin in a real napari viewer (under Xvfb): open real files, sample data, widgets."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.gui.compat import grid_of, scale_bar_of
from napari_scanprobe.gui.reader import napari_get_reader
from napari_scanprobe.io import read

from .widget_helpers import open_in_file_order

PLUGIN = "napari-scanprobe"


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    junk = tmp_path / "noise.spm"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    empty = tmp_path / "empty.sxm"
    empty.write_bytes(b"")
    assert napari_get_reader(str(junk)) is None
    assert napari_get_reader(str(empty)) is None
    assert napari_get_reader(str(tmp_path / "missing.ibw")) is None
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader([str(junk)]) is None


def test_open_multichannel_file_in_viewer(make_napari_viewer, sample, tmp_path):
    path = sample("nanonis_sxm/test.sxm")
    scan = read(path)
    viewer = make_napari_viewer(show=True)  # a hidden canvas renders nothing under Xvfb
    layers = open_in_file_order(viewer, path)
    assert viewer.layers[-1].name == "test | Z (forward)", "the height opens on top"
    assert len(layers) == len(scan.channels) == 4
    for layer, ch in zip(layers, scan.channels):
        assert layer.name == f"test | {ch.title}"
        np.testing.assert_allclose(layer.scale, ch.pixel_size)
        np.testing.assert_allclose(layer.translate, ch.offset)
        assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
        assert layer.metadata["channel"] == ch.name
        assert layer.metadata["direction"] == ch.direction
        assert layer.metadata["z_unit"] == ch.z_unit
        assert layer.metadata["source"] == str(path)
        assert isinstance(layer.metadata["header"], dict) and layer.metadata["header"]
    for layer in layers[1:]:
        layer.visible = False
    scale_bar_of(viewer).visible = True
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot[..., :3].std() > 1, "the canvas rendered nothing"
    # the scale bar: napari derives its unit from the layers' units (nm) and draws it on the canvas
    scale_bar_of(viewer).visible = False
    without_bar = viewer.screenshot(canvas_only=True, flash=False)
    assert (shot != without_bar).any(), "the scale bar drew nothing"


def test_open_movie_lazily_with_contrast_limits(make_napari_viewer, sample):
    import dask.array as da

    viewer = make_napari_viewer()
    layers = viewer.open(str(sample("hsafm_asd/asd_sample_0.asd")), plugin=PLUGIN)
    layer = layers[0]
    assert isinstance(layer.data, da.Array)
    assert layer.ndim == 3
    assert layer.axis_labels[0] == "t"
    lo, hi = layer.contrast_limits
    assert hi > lo


def test_movie_frames_show_without_a_dask_compute(make_napari_viewer, sample, monkeypatch):
    """napari shows a movie frame by slicing the layer's dask array with ints and slices: the
    frame is read from the file directly (movie.py), never through dask's scheduler."""
    import dask.base

    path = sample("hsafm_asd/asd_sample_0.asd")
    expected = np.asarray(read(path).channels[0].data[7])
    viewer = make_napari_viewer()
    (layer, *_) = viewer.open(str(path), plugin=PLUGIN)

    def no_scheduler(*args, **kwargs):
        raise AssertionError("dask's scheduler ran")

    monkeypatch.setattr(dask.base, "get_scheduler", no_scheduler)
    viewer.dims.set_current_step(0, 7)
    np.testing.assert_array_equal(layer._data_view, expected)


def test_bad_file_gives_one_clear_error(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    path = sample("bruker_nanoscope/bruker_data_header.000")
    with pytest.raises(Exception) as info:
        viewer.open(str(path), plugin=PLUGIN)
    text = str(info.value) + str(getattr(info.value, "__cause__", ""))
    assert "bruker_data_header.000" in text


def test_sample_data_and_browser_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "afm_scan")
    assert [layer.name for layer in layers] == [  # the height last: on top
        "synthetic_afm_scan | Height (retrace)",
        "synthetic_afm_scan | Phase (trace)",
        "synthetic_afm_scan | Height (trace)",
    ]
    assert layers[-1].metadata["z_unit"] == "nm"
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Scan browser")
    assert widget.scan_box.count() == 1
    widget.show_channels()
    assert grid_of(viewer).enabled
    viewer.layers.selection.active = layers[1]
    assert "Phase" in widget.summary.text()
    assert widget.tree.topLevelItemCount() == 2
    widget.view_box.setCurrentIndex(0)  # all layers stacked
    assert not grid_of(viewer).enabled
