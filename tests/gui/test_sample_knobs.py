"""The ``knob_membranes`` sample data in a real napari viewer (under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.gui.sample_data import knob_membranes
from napari_scanprobe.learn.synthetic import DEFAULT_PIXEL_SIZE_NM

PLUGIN = "napari-scanprobe"
NAMES = [f"{c} {i}" for c in ("healthy", "infected") for i in range(1, 5)]


def test_knob_membranes_open_as_eight_height_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "knob_membranes")
    assert [layer.name for layer in layers] == NAMES
    assert [layer.name for layer in viewer.layers] == NAMES
    px = DEFAULT_PIXEL_SIZE_NM
    for layer in layers:
        category = layer.name.split()[0]
        assert layer.data.shape == (128, 128) and layer.data.dtype == np.float32
        assert np.isfinite(layer.data).all()
        np.testing.assert_allclose(layer.scale, [px, px])
        np.testing.assert_allclose(layer.translate, [0, 0])
        assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
        assert layer.colormap.name == "afmhot"
        lo, hi = layer.contrast_limits
        assert lo == pytest.approx(float(layer.data.min())) and hi == pytest.approx(float(layer.data.max()))
        meta = layer.metadata
        assert meta["category"] == category
        assert meta["channel"] == "Height" and meta["z_unit"] == "nm" and meta["xy_unit"] == "nm"
        assert meta["pixel_size"] == pytest.approx([px, px]) and meta["offset"] == [0.0, 0.0]
        assert meta["processing"] == [] and meta["source"] == "synthetic"
    # the images are all different, and repeatable
    assert len({layer.data.tobytes() for layer in layers}) == 8
    again = knob_membranes()
    for layer, (data, kwargs, kind) in zip(layers, again):
        assert kind == "image" and kwargs["name"] == layer.name
        np.testing.assert_array_equal(data, layer.data)
