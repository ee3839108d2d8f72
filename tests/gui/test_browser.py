"""The Scan browser with several real scans, and the accessor of our layer metadata."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.gui.browser_widget import grid_shape
from napari_scanprobe.gui.compat import grid_of
from napari_scanprobe.gui.layers import LayerMeta, contrast_limits

PLUGIN = "napari-scanprobe"


def test_layer_meta_reads_ours_and_tolerates_others():
    meta = LayerMeta(
        {
            "channel": "Height",
            "direction": "retrace",
            "z_unit": "nm",
            "xy_unit": "nm",
            "pixel_size": [2, 3],
            "source": "/x.ibw",
            "processing": [{"step": "flatten", "method": "plane"}],
        }
    )
    assert meta.title == "Height (retrace)" and meta.is_height and not meta.is_cam
    assert meta.pixel_size_nm == (2.0, 3.0) and meta.source == "/x.ibw"
    assert meta.processing[0]["method"] == "plane"
    other = LayerMeta(object())  # any layer, ours or not
    assert other.title is None and other.processing == [] and other.pixel_size_nm is None and not other.is_cam
    record = {}
    LayerMeta(record).classification = {"label": "a"}
    assert record == {"classification": {"label": "a"}}


def test_grid_shape_makes_the_tiles_largest():
    assert grid_shape(4, 1.0, (600, 600)) == (2, 2)
    assert grid_shape(4, 1.0, (300, 1200)) == (1, 4)
    assert grid_shape(3, 1.0, (1200, 300)) == (3, 1)


def test_movie_limits_come_from_frames_over_the_whole_movie():
    movie = np.stack(
        [np.full((8, 8), -220.0) + np.random.default_rng(f).normal(0, 0.3, (8, 8)) for f in range(20)]
    )
    movie[15:] += 125.0  # a drift
    low, high = contrast_limits(movie)
    assert low < -220 and high > -96


def test_open_scans_names_a_file_it_cannot_read(make_napari_viewer, sample, tmp_path):
    import tifffile

    plain = tmp_path / "photo.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint8))
    viewer = make_napari_viewer()
    _, browser = viewer.window.add_plugin_dock_widget(PLUGIN, "Scan browser")
    added = browser.open_scans([plain, sample("nanonis_sxm/test.sxm")])
    assert len(added) == 4 and "photo.tif" in browser.open_status.text()
    assert browser.scan_box.count() == 1


def test_channels_side_by_side_take_only_the_chosen_scan(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    _, browser = viewer.window.add_plugin_dock_widget(PLUGIN, "Scan browser")
    sxm, jpk = sample("nanonis_sxm/test.sxm"), sample("jpk/sample_0.jpk")
    browser.open_scans([sxm, jpk])
    assert viewer.layers[-1].name == "sample_0 | Height (retrace)", "the height opens on top"
    browser.show_channels(str(sxm))
    tiles = browser.tiles()
    assert len(tiles) == 4 and grid_of(viewer).enabled
    assert [layer for layer in viewer.layers if layer.visible] == tiles
    rows, cols = grid_of(viewer).shape
    assert rows * cols >= 4 and rows * cols < 8
    with pytest.raises(ValueError, match="no open scan"):
        browser.compare("Nothing (forward)")
    browser.compare("Height (trace)")  # only the JPK has it
    assert [LayerMeta(t).source for t in browser.tiles()] == [str(jpk)]
