"""The preprocessing dock widget in a real viewer: real file in, new layers out, history kept."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_scanprobe.process.flatten import flatten
from napari_scanprobe.process.superres import upscale

from .widget_helpers import open_in_file_order, run_and_wait

PLUGIN = "napari-scanprobe"


@pytest.fixture
def viewer_with_scan(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    widget.input.value = layers[0]
    return viewer, widget, layers


def previewing(qtbot, widget, step: str, method: str):
    """The ``step`` panel with ``method`` chosen and its live preview on and shown."""
    panel = widget.panels[step]
    panel.method.value = method
    panel.preview.value = True
    qtbot.waitUntil(lambda: widget._preview_layer is not None, timeout=5000)
    return panel


def test_flatten_adds_a_layer_with_scale_and_history(qtbot, viewer_with_scan):
    viewer, widget, layers = viewer_with_scan
    panel = widget.panels["flatten"]
    panel.method.value = "plane"
    source = layers[0]
    original = np.array(source.data, copy=True)
    out = run_and_wait(qtbot, viewer, panel)
    assert out.name == f"{source.name} | flatten plane"
    np.testing.assert_allclose(out.scale, source.scale)
    np.testing.assert_allclose(out.translate, source.translate)
    assert [str(u) for u in out.units] == [str(u) for u in source.units]
    np.testing.assert_array_equal(source.data, original)  # input untouched
    np.testing.assert_allclose(out.data, flatten(original, "plane"))
    history = out.metadata["processing"]
    assert history[-1]["step"] == "flatten" and history[-1]["method"] == "plane"
    assert out.metadata["source"] == source.metadata["source"]
    # a second step extends the history
    widget.input.value = out
    panel.method.value = "rows_median"
    out2 = run_and_wait(qtbot, viewer, panel)
    assert [h["method"] for h in out2.metadata["processing"]] == ["plane", "rows_median"]


def test_live_preview_follows_the_parameters(qtbot, viewer_with_scan):
    viewer, widget, layers = viewer_with_scan
    panel = previewing(qtbot, widget, "flatten", "polynomial")
    first = np.array(widget._preview_layer.data)
    np.testing.assert_allclose(first, flatten(np.asarray(layers[0].data), "polynomial"))
    panel.option_box["degree_x"].value = 0
    qtbot.waitUntil(lambda: not np.allclose(widget._preview_layer.data, first), timeout=5000)
    panel.preview.value = False
    assert widget._preview_layer is None
    assert all("preview" not in layer.name for layer in viewer.layers)


def test_upscale_overlays_the_input(qtbot, viewer_with_scan):
    viewer, widget, layers = viewer_with_scan
    panel = widget.panels["upscale"]
    panel.method.value = "bicubic"
    panel.extras["factor"].value = 2
    source = layers[0]
    out = run_and_wait(qtbot, viewer, panel)
    assert out.data.shape == (512, 512)
    np.testing.assert_allclose(out.scale, np.asarray(source.scale) / 2)
    # output pixel i lies at input position (i + 0.5) / 2 - 0.5
    np.testing.assert_allclose(out.translate, np.asarray(source.translate) - np.asarray(source.scale) / 4)
    np.testing.assert_allclose(out.data, upscale(np.asarray(source.data), 2, "bicubic"))
    assert out.metadata["processing"][-1]["options"]["factor"] == 2


def test_cnn_training_reports_progress_and_cancels_within_a_second(qtbot, viewer_with_scan):
    viewer, widget, layers = viewer_with_scan
    panel = widget.panels["upscale"]
    panel.method.value = "cnn"
    panel.option_box["steps"].value = 100000  # far more than the test waits for
    before = len(viewer.layers)
    panel.start()
    qtbot.waitUntil(lambda: panel.progress.value > 0 or "step" in panel.status.value, timeout=60_000)
    t0 = time.perf_counter()
    panel.cancel()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=5_000)
    assert time.perf_counter() - t0 < 1.0
    assert len(viewer.layers) == before
    assert panel.status.value == "cancelled"
    assert panel.run_button.enabled


def test_bad_parameter_is_reported_not_raised(qtbot, viewer_with_scan):
    viewer, widget, layers = viewer_with_scan
    panel = widget.panels["flatten"]
    panel.method.value = "rows_trimmed_mean"
    panel.option_box["trim"].value = 0.5  # outside [0, 0.5)
    before = len(viewer.layers)
    panel.start()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=10_000)
    assert len(viewer.layers) == before
    assert "trim" in panel.status.value


def test_classical_denoise_previews_and_runs(qtbot, viewer_with_scan):
    from napari_scanprobe.process.denoise import denoise

    viewer, widget, layers = viewer_with_scan
    panel = previewing(qtbot, widget, "denoise", "median")
    out = run_and_wait(qtbot, viewer, panel)
    assert out.name.endswith("| denoise median")
    np.testing.assert_allclose(out.data, denoise(np.asarray(layers[0].data), "median", size=3))


def test_n2n_pairs_trace_with_retrace_and_trains_in_a_worker(qtbot, viewer_with_scan):
    viewer, widget, layers = viewer_with_scan
    panel = widget.panels["denoise"]
    panel.method.value = "n2n"
    assert not panel.pair.native.isHidden()
    assert panel.pair.value is layers[1]  # "Z (backward)" is the twin of "Z (forward)"
    panel.option_box["iterations"].value = 20
    panel.option_box["tta"].value = False
    out = run_and_wait(qtbot, viewer, panel, timeout=120_000)
    step = out.metadata["processing"][-1]
    assert step["method"] == "n2n" and step["options"]["pair"] == layers[1].name
    assert out.data.shape == layers[0].data.shape and np.isfinite(out.data).all()


def test_denoise_auto_records_what_it_chose(qtbot, viewer_with_scan, monkeypatch):
    from napari_scanprobe.process import denoise as denoise_module
    from tests.helpers import untrained_denoise_network

    monkeypatch.setattr(denoise_module, "_cnn_steps", untrained_denoise_network)
    viewer, widget, layers = viewer_with_scan
    panel = widget.panels["denoise"]
    panel.method.value = "auto"
    out = run_and_wait(qtbot, viewer, panel, timeout=60_000)
    step = out.metadata["processing"][-1]
    assert step["method"] == "auto" and step["options"] == {}
    chosen = step["auto"]
    assert chosen["method"] == "n2v" and chosen["kind"] in ("white", "line")
    assert 0.0 <= chosen["network_weight"] <= 1.0 and chosen["sigma"] > 0


def test_movie_is_flattened_lazily_frame_by_frame(qtbot, make_napari_viewer, sample):
    import dask.array as da

    viewer = make_napari_viewer()
    (movie,) = viewer.open(str(sample("hsafm_asd/asd_sample_0.asd")), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    widget.input.value = movie
    panel = widget.panels["flatten"]
    panel.method.value = "rows_median"
    out = run_and_wait(qtbot, viewer, panel)
    assert isinstance(out.data, da.Array) and out.data.shape == movie.data.shape
    np.testing.assert_allclose(out.scale, movie.scale)  # frame time and pixel size kept
    np.testing.assert_allclose(
        np.asarray(out.data[5]), flatten(np.asarray(movie.data[5]), "rows_median"), rtol=1e-5, atol=1e-4
    )


def test_controls_are_built_from_the_step_contract(viewer_with_scan):
    from qtpy.QtCore import Qt

    from napari_scanprobe.process.steps import STEPS

    viewer, widget, layers = viewer_with_scan
    for step, panel in widget.panels.items():
        contract = STEPS[step]
        assert list(panel.method.choices) == list(contract.method_names)
        for method in contract.methods:
            panel.method.value = method.name
            assert panel.method.tooltip == method.help
            index = panel.method.native.findData(method.name)
            assert panel.method.native.itemData(index, Qt.ToolTipRole) == method.help
            shown = {w.name: w for w in panel.option_box}
            assert set(shown) == {o.name for o in method.options if not o.script_only}
            for option in method.options:
                if option.script_only:
                    continue
                control = shown[option.name]
                assert control.label == option.title  # words and units, not the option's code name
                assert control.tooltip.startswith(option.help)
    denoise = widget.panels["denoise"]
    denoise.method.value = "n2v"
    labels = {w.label for w in denoise.option_box}
    assert "Average flips" in labels and "Patch side (px)" in labels and "tta" not in labels
    # non-local means' strength: auto (from the noise) at its lowest value, else the number set
    denoise.method.value = "nl_means"
    strength = denoise.option_box["h"]
    assert strength.label == "Strength (fraction of the height range)"
    assert denoise.params()["h"] is None
    strength.value = 0.2
    assert denoise.params()["h"] == pytest.approx(0.2)


def test_the_dock_fits_a_laptop_and_long_messages_wrap(qtbot, viewer_with_scan):
    from napari_scanprobe.gui.preprocess_widget import DOCK_WIDTH

    viewer, widget, layers = viewer_with_scan
    assert widget.minimumSizeHint().width() <= 400 and DOCK_WIDTH <= 400
    for panel in widget.panels.values():
        for method in panel.op.contract.method_names:
            panel.method.value = method
            assert panel.native.minimumSizeHint().width() <= DOCK_WIDTH, (panel.op.step, method)
    panel = widget.panels["flatten"]
    panel.status.value = "preview: " + "a very long message about a bad parameter " * 20
    qtbot.wait(50)
    assert widget.width() <= DOCK_WIDTH
    assert panel.status.native.minimumSizeHint().width() <= DOCK_WIDTH


def test_the_flatten_preview_runs_in_a_worker_not_in_the_gui_thread(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (512, 512)) + np.linspace(0, 50, 512)
    layer = viewer.add_image(image, name="big")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    widget.input.value = layer
    panel = widget.panels["flatten"]
    panel.method.value = "auto"
    panel.preview.value = True
    panel._preview_timer.stop()
    panel.update_preview()  # returns at once: the work is in a thread
    assert panel.preview_worker is not None and widget._preview_layer is None
    qtbot.waitUntil(lambda: widget._preview_layer is not None, timeout=30_000)
    np.testing.assert_allclose(widget._preview_layer.data, flatten(image, "auto"))
    # a preview overtaken by a newer one is dropped, not shown
    panel.option_box["degree"].value = 0
    panel._preview_timer.stop()
    panel.update_preview()
    stale = panel._preview_generation
    panel.option_box["degree"].value = 1
    panel._preview_timer.stop()
    panel.update_preview()
    assert panel._preview_generation == stale + 1
    qtbot.waitUntil(lambda: panel.preview_worker is None, timeout=30_000)
    np.testing.assert_allclose(widget._preview_layer.data, flatten(image, "auto", degree=1))
