"""The ``knob_membranes`` sample data in a real napari viewer (under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.gui.sample_data import knob_membranes
from napari_scanprobe.learn.synthetic import DEFAULT_PIXEL_SIZE_NM

PLUGIN = "napari-scanprobe"
NAMES = [f"{c} {i}" for c in ("healthy", "infected") for i in range(1, 5)]


@pytest.mark.slow
def test_knob_membranes_open_as_eight_height_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    opened = viewer.open_sample(PLUGIN, "knob_membranes")
    knobs = [f"infected {i} | knobs" for i in range(1, 5)]
    assert [layer.name for layer in opened] == knobs + NAMES
    assert viewer.layers.selection.active.name == "infected 4", "an image is selected, not a labels layer"
    layers = opened[4:]
    px = DEFAULT_PIXEL_SIZE_NM
    offsets = {tuple(layer.translate) for layer in layers}
    assert len(offsets) == 8  # side by side, none on top of another
    for name in knobs:  # the true knob pixels, hidden, under their image
        mask, image = viewer.layers[name], viewer.layers[name.split(" |")[0]]
        assert mask.visible is False and mask.data.shape == image.data.shape and 0 < mask.data.mean() < 0.1
        np.testing.assert_allclose(mask.translate, image.translate)
    for layer in layers:
        category = layer.name.split()[0]
        assert layer.data.shape == (128, 128) and layer.data.dtype == np.float32
        assert np.isfinite(layer.data).all()
        np.testing.assert_allclose(layer.scale, [px, px])
        np.testing.assert_allclose(layer.translate, layer.metadata["offset"])
        assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
        assert layer.colormap.name == "afmhot"
        lo, hi = layer.contrast_limits
        assert lo == pytest.approx(float(layer.data.min())) and hi == pytest.approx(float(layer.data.max()))
        meta = layer.metadata
        assert meta["category"] == category
        assert meta["channel"] == "Height" and meta["z_unit"] == "nm" and meta["xy_unit"] == "nm"
        assert meta["pixel_size"] == pytest.approx([px, px])
        assert meta["processing"] == [] and meta["source"] == "synthetic"
    # the images are all different, and repeatable
    assert len({layer.data.tobytes() for layer in layers}) == 8
    again = knob_membranes()
    for layer, (data, kwargs, kind) in zip(layers, again[4:], strict=True):
        assert kind == "image" and kwargs["name"] == layer.name
        np.testing.assert_array_equal(data, layer.data)
