"""The Measure dock in a real viewer: profiles of every channel in nm, kymograph layer, step
height, roughness of a layer / shape / Labels mask, histogram, colour bar, readout, width."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_scanprobe import measure
from napari_scanprobe.gui.layers import scan_to_layers
from napari_scanprobe.io.scan import Channel, Scan

PLUGIN = "napari-scanprobe"
DY, DX, STEP = 3.0, 1.5, 4.2  # nm
EDGE = 190.0  # x of the step edge, nm


def step_scan() -> Scan:
    """A synthetic scan of a 4.2 nm step with noise, non-square pixels and a second channel."""
    rng = np.random.default_rng(7)
    x = np.arange(256)[None, :] * DX
    height = np.where(x >= EDGE, STEP, 0.0) + rng.normal(scale=0.15, size=(128, 256))
    phase = np.where(x >= EDGE, 10.0, 20.0) + 0 * height
    channels = [
        Channel(height, "Height", "forward", z_unit="nm", pixel_size=(DY, DX)),
        Channel(phase, "Phase", "forward", z_unit="deg", pixel_size=(DY, DX)),
    ]
    return Scan("/data/step.sxm", "test", channels)


@pytest.fixture
def dock(make_napari_viewer):
    from napari.layers import Layer

    viewer = make_napari_viewer(show=True)
    for data, kwargs, kind in scan_to_layers(step_scan()):
        viewer.add_layer(Layer.create(data, kwargs, kind))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")
    widget.image_box.setCurrentText("step | Height (forward)")
    return viewer, widget


def test_profile_of_every_channel_in_nm_finds_the_step_within_1_percent(dock, tmp_path):
    viewer, widget = dock
    shapes = widget.add_shapes()
    shapes.add_lines(np.array([[190.0, 20.0], [190.0, 360.0]]))
    widget.line_width.setValue(60.0)
    p = widget.run_profile()
    assert list(p.values) == ["Height (forward)", "Phase (forward)"]
    assert p.distance_unit == "nm" and p.distance[-1] == pytest.approx(340.0, abs=DX)
    x = 20.0 + p.distance
    h = p.values["Height (forward)"]
    assert h[x > EDGE + 10].mean() - h[x < EDGE - 10].mean() == pytest.approx(STEP, rel=0.01)
    assert widget.profile_plot.series["Height (forward)"][0]  # drawn
    assert "nm" in widget.profile_plot.title and "nm" in widget.profile_plot.x_label
    with open(widget.save_csv(str(tmp_path / "p.csv")), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["distance [nm]", "Height (forward) [nm]", "Phase (forward) [deg]"]
    assert len(rows) == len(p.distance) + 1
    png = widget.save_png(str(tmp_path / "p.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the plot follows the line when it is edited
    shapes.data = [np.array([[100.0, 50.0], [100.0, 150.0]])]
    assert widget.last_profile.distance[-1] == pytest.approx(100.0, abs=DX)
    widget.follow.setChecked(False)
    shapes.data = [np.array([[100.0, 50.0], [100.0, 250.0]])]
    assert widget.last_profile.distance[-1] == pytest.approx(100.0, abs=DX)


def test_step_height_between_two_rectangles(dock):
    viewer, widget = dock
    shapes = widget.add_shapes()
    shapes.add_rectangles(np.array([[[30, 30], [30, 180], [350, 180], [350, 30]]], float))
    shapes.add_rectangles(np.array([[[30, 200], [30, 370], [350, 370], [350, 200]]], float))
    shapes.selected_data = {0, 1}
    s = widget.run_step()
    assert s.height == pytest.approx(STEP, rel=0.01) and s.unit == "nm"
    assert "nm" in widget.step_result.text()


def test_roughness_and_histogram_of_layer_shape_and_labels(dock):
    viewer, widget = dock
    height = viewer.layers["step | Height (forward)"]
    r = widget.run_roughness()
    want = measure.roughness(np.asarray(height.data), pixel_size=(DY, DX))
    assert r.as_dict() == pytest.approx(want.as_dict())
    assert widget.table.item(1, 0).text() == "Sq" and widget.table.item(1, 2).text() == "nm"
    assert float(widget.table.item(1, 1).text()) == pytest.approx(want.Sq, rel=1e-4)
    # a rectangle on the lower level only: no step inside, so Sq is the noise (0.15 nm)
    shapes = widget.add_shapes()
    shapes.add_rectangles(np.array([[[30, 30], [30, 150], [350, 150], [350, 30]]], float))
    widget.region_box.setCurrentText("selected shape")
    assert widget.run_roughness().Sq == pytest.approx(0.15, rel=0.1)
    labels = np.zeros(height.data.shape, np.int32)
    labels[10:100, 140:250] = 1  # all on the upper level
    viewer.add_labels(labels, name="mask", scale=height.scale)
    widget.region_box.setCurrentText("Labels: mask")
    r = widget.run_roughness()
    assert r.pixels == labels.sum()
    assert r.Sq == pytest.approx(measure.roughness(height.data, mask=labels > 0, pixel_size=(DY, DX)).Sq)
    h = widget.run_histogram()
    assert h.counts.sum() == labels.sum() and h.unit == "nm"
    assert "nm" in widget.histogram_plot.x_label


def test_kymograph_of_a_movie_is_a_new_layer_in_seconds_and_nm(make_napari_viewer, qtbot):
    from napari.layers import Layer

    viewer = make_napari_viewer()
    frames = np.stack([np.tile(np.arange(40.0) * DX + 5 * t, (30, 1)) for t in range(6)])
    movie = Channel(frames, "Height", z_unit="nm", pixel_size=(DY, DX), frame_time_s=0.25)
    for data, kwargs, kind in scan_to_layers(Scan("/data/m.asd", "test", [movie])):
        viewer.add_layer(Layer.create(data, kwargs, kind))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")
    shapes = widget.add_shapes()
    shapes.add_lines(np.array([[0, 45.0, 3.0], [0, 45.0, 50.0]]))
    widget.run_kymograph()
    qtbot.waitUntil(lambda: widget.worker is None and len(viewer.layers) == 3, timeout=20_000)
    kymo = viewer.layers[-1]
    assert kymo.name.endswith("| kymograph") and kymo.data.shape[0] == 6
    assert list(kymo.scale) == pytest.approx([0.25, DX])
    assert [str(u) for u in kymo.units] == ["second", "nanometer"]
    np.testing.assert_allclose(kymo.data[:, 0], 3.0 + 5 * np.arange(6))  # x = 3 nm, +5 nm per frame
    assert kymo.metadata["processing"][-1]["step"] == "kymograph"


def test_colour_bar_with_unit_readout_and_dock_width(dock, qtbot):
    viewer, widget = dock
    height = viewer.layers["step | Height (forward)"]
    viewer.window._qt_window.resize(1280, 800)
    before = viewer.screenshot(canvas_only=True, flash=False)
    widget.colorbar.setChecked(True)
    assert height.colorbar.visible and not viewer.layers["step | Phase (forward)"].colorbar.visible
    from napari_scanprobe.gui.compat import text_overlay_of

    assert "(nm)" in text_overlay_of(viewer).text
    after = viewer.screenshot(canvas_only=True, flash=False)
    w = after.shape[1]
    assert np.abs(after[:, w // 2 :].astype(int) - before[:, w // 2 :]).sum() > 0  # drawn on the right
    viewer.cursor.position = (60.0, 300.0)
    widget.update_readout()
    assert widget.readout.text().startswith("x 300 nm, y 60 nm; Height (forward)")
    assert widget.readout.text().endswith("nm")
    assert widget.minimumSizeHint().width() <= 400
    qtbot.wait(50)
    from qtpy.QtWidgets import QScrollArea

    parent = widget.parentWidget()
    while parent is not None:  # napari may wrap a dock in a scroll area: no horizontal scrollbar
        if isinstance(parent, QScrollArea):
            assert not parent.horizontalScrollBar().isVisible()
        parent = parent.parentWidget()


def test_profile_of_a_real_scan_has_every_channel(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    layers = viewer.open(str(sample("nanonis_sxm/test.sxm")), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")
    widget.image_box.setCurrentText(layers[0].name)
    (y0, x0), (dy, dx) = layers[0].translate, layers[0].scale
    shapes = widget.add_shapes()
    shapes.add_lines(np.array([[y0 + 100 * dy, x0 + 10 * dx], [y0 + 150 * dy, x0 + 200 * dx]]))
    p = widget.run_profile()
    assert len(p.values) == len(layers) and all(np.isfinite(v).all() for v in p.values.values())
    assert p.distance_unit == "nm"


def test_a_closed_dock_lets_go_of_the_viewer(make_napari_viewer):
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer()
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")

    def holders(emitter) -> list:  # napari keeps methods as (weakref to the object, name)
        return [
            cb[0]() if isinstance(cb, tuple) else getattr(cb, "__self__", None) for cb in emitter.callbacks
        ]

    assert any(h is widget for h in holders(viewer.layers.events.inserted))
    viewer.window.remove_dock_widget(dock_widget)
    widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    viewer.add_image(np.zeros((8, 8)))  # the handler finds its widgets gone and disconnects
    viewer.cursor.position = (1.0, 1.0)
    assert not any(h is widget for h in holders(viewer.layers.events.inserted))
    assert not any(h is widget for h in holders(viewer.cursor.events.position))
