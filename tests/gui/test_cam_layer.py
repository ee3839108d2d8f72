"""CAM layers in a real viewer: over a layer opened from a real file, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from napari.layers import Layer

from napari_scanprobe.gui.cam_layer import cam_layer, layer_example
from napari_scanprobe.gui.reader import open_scan
from napari_scanprobe.learn.cam import cam
from napari_scanprobe.learn.modelfile import ClassifierModel
from napari_scanprobe.nn.classifier import build_network, check_architecture

from .widget_helpers import open_in_file_order

PLUGIN = "napari-scanprobe"


def small_model(
    channels, pixel_size, categories=("clean", "dirty"), input_size=32, path=None
) -> ClassifierModel:
    """A small untrained GAP-head classifier (random weights, fixed seed): the geometry is under test."""
    arch = check_architecture({"blocks": 3, "filters": 8}, max(1, len(channels)), len(categories), input_size)
    torch.manual_seed(0)
    net = build_network(arch)
    state = {k: v.numpy() for k, v in net.state_dict().items() if v.is_floating_point()}
    return ClassifierModel(arch, state, list(categories), list(channels), pixel_size, input_size, path=path)


def add(viewer, layer_tuple):
    return viewer.add_layer(Layer.create(*layer_tuple))


def test_cam_layer_overlays_a_real_scan(make_napari_viewer, sample, tmp_path):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    height = layers[0]
    assert height.metadata["channel"] == "Z" and height.metadata["xy_unit"] == "nm"
    # the model sees the 256 px scan (19.5 nm/px) at 40 nm/px: 125 px, 4 x 4 tiles of 32 px
    model = small_model(["Z (forward)"], pixel_size=40.0)
    model.save(tmp_path / "chip_model")
    out = add(viewer, cam_layer(height, model, "gradcam", viewer_layers=viewer.layers))

    assert out.data.shape == height.data.shape
    np.testing.assert_allclose(out.scale, height.scale)
    np.testing.assert_allclose(out.translate, height.translate)
    assert [str(u) for u in out.units] == [str(u) for u in height.units]
    assert tuple(out.axis_labels) == tuple(height.axis_labels)
    data = np.asarray(out.data)
    assert data.dtype == np.float32 and data.min() >= 0 and data.max() == pytest.approx(1.0)
    expected = cam(model, sample("nanonis_sxm/test.sxm"), "gradcam")  # the same map from the file itself
    np.testing.assert_allclose(data, expected.map, atol=1e-6)

    assert out.name == f"{height.name} | CAM {expected.category}"
    assert (
        out.colormap.name == "turbo" and out.blending == "translucent" and out.opacity == pytest.approx(0.5)
    )
    assert list(out.contrast_limits) == [0.0, 1.0]
    meta = out.metadata
    assert meta["model"] == {"name": "chip_model", "path": model.path}
    assert meta["method"] == "gradcam" and meta["layer"] == "block3"
    assert meta["category"] == expected.category and meta["probability"] == pytest.approx(
        expected.probability
    )
    assert meta["source_layer"] == height.name and meta["source"] == height.metadata["source"]
    assert meta["processing"][:-1] == height.metadata["processing"]
    step = meta["processing"][-1]
    assert step["step"] == "cam" and step["method"] == "gradcam" and step["options"]["model"] == model.path
    assert meta["pixel_size"] == height.metadata["pixel_size"]

    # another method, a chosen category and colormap
    other = add(viewer, cam_layer(height, model, "layercam", target="dirty", colormap="magma"))
    assert other.name == f"{height.name} | CAM dirty" and other.colormap.name == "magma"
    assert other.metadata["category"] == "dirty" and other.data.shape == height.data.shape


def test_several_channels_come_from_the_same_scan(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    model = small_model(["Z (forward)", "Current (forward)"], pixel_size=40.0)
    height, current = layers[0], next(layer for layer in layers if layer.name.endswith("Current (forward)"))
    example = layer_example(current, model, viewer.layers)  # either channel's layer will do
    assert example.names == ["Z (forward)", "Current (forward)"]
    assert example.channels[0] is height.data and example.channels[1] is current.data
    assert example.pixel_size == tuple(height.metadata["pixel_size"])
    out = add(viewer, cam_layer(height, model, "gradcam++", viewer_layers=viewer.layers))
    assert (
        out.data.shape == height.data.shape
        and 0 <= np.asarray(out.data).min()
        and np.asarray(out.data).max() <= 1
    )
    # a CAM layer of the same scan is never taken for a channel
    assert layer_example(height, model, viewer.layers).channels[1] is current.data

    viewer.layers.remove(current)
    with pytest.raises(ValueError, match="also needs channel 'Current \\(forward\\)'.*open that channel"):
        cam_layer(height, model, "gradcam", viewer_layers=viewer.layers)
    with pytest.raises(ValueError, match="holds channel 'Z \\(backward\\)'"):
        cam_layer(
            layers[1],
            small_model(["Current (forward)"], pixel_size=40.0),
            "gradcam",
            viewer_layers=viewer.layers,
        )


def test_movie_cam_is_computed_frame_by_frame(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    (movie,) = viewer.open(str(sample("hsafm_asd/asd_sample_0.asd")), plugin=PLUGIN)
    assert movie.data.ndim == 3
    model = small_model([], pixel_size=None)
    out = add(viewer, cam_layer(movie, model, "gradcam"))
    assert type(out.data).__module__.startswith("dask") and out.data.chunks[0] == (1,) * movie.data.shape[0]
    assert out.data.shape == movie.data.shape
    np.testing.assert_allclose(out.scale, movie.scale)
    np.testing.assert_allclose(out.translate, movie.translate)
    assert len(out.metadata["frame_categories"]) == movie.data.shape[0]
    viewer.dims.set_current_step(0, 5)
    frame = np.asarray(out.data[5])
    assert frame.dtype == np.float32 and frame.min() >= 0 and frame.max() == pytest.approx(1.0)
    np.testing.assert_allclose(
        frame,
        cam(model, np.asarray(movie.data[5]), "gradcam", target=out.metadata["frame_categories"][5]).map,
        atol=1e-6,
    )


@pytest.mark.parametrize("suffix", [".gwy", ".tif"])
def test_cam_layer_keeps_its_look_when_saved_and_reopened(make_napari_viewer, sample, tmp_path, suffix):
    """Saved as .gwy/.tif and reopened with the plugin, a CAM is coloured and translucent over
    its height, with the look it had when saved (not grey and opaque)."""
    from napari_scanprobe.gui.layers import LayerMeta

    viewer = make_napari_viewer()
    height = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))[0]
    model = small_model(["Z (forward)"], pixel_size=40.0)
    out = add(viewer, cam_layer(height, model, "gradcam"))
    assert (out.colormap.name, out.opacity, str(out.blending)) == ("turbo", 0.5, "translucent")
    out.opacity = 0.35  # the user's change is what is saved
    target = tmp_path / f"cam{suffix}"
    viewer.layers.selection = {out}
    viewer.layers.save(str(target), selected=True, plugin=PLUGIN)
    (back,) = open_scan(viewer, target)
    assert (back.colormap.name, back.opacity, str(back.blending)) == ("turbo", 0.35, "translucent")
    assert LayerMeta(back).is_cam, "a reopened map is still a CAM (not offered for classification)"
    np.testing.assert_allclose(np.asarray(back.data), np.asarray(out.data), atol=1e-6)
