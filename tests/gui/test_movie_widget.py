"""The Movie dock in a real viewer: a real HS-AFM movie registered, its drift, flags and table."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_scanprobe.gui.movie_widget import flagged_text
from napari_scanprobe.process.register import register

PLUGIN = "napari-scanprobe"


@pytest.fixture
def viewer_with_movie(make_napari_viewer, sample):
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(sample("hsafm_asd/asd_sample_0.asd")), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Movie")
    widget.input.value = layers[0]
    return viewer, widget, layers[0]


def drawn_pixels(plot, color: str) -> int:
    """How many pixels of ``plot`` on screen have the colour ``color``."""
    from qtpy.QtGui import QColor

    image = plot.grab().toImage()
    target = QColor(color).rgb() & 0xFFFFFF
    return sum(
        (image.pixel(x, y) & 0xFFFFFF) == target for x in range(image.width()) for y in range(image.height())
    )


def wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_register_adds_the_corrected_movie_and_shows_drift_and_flags(qtbot, viewer_with_movie, tmp_path):
    viewer, widget, source = viewer_with_movie
    widget.reference.value = "running mean"
    assert widget.window.visible and not widget.frame.visible
    widget.start()
    wait_idle(qtbot, widget)
    out = viewer.layers[-1]
    assert out.name == f"{source.name} | registered"
    np.testing.assert_allclose(out.scale, source.scale)
    assert [str(u) for u in out.units] == [str(u) for u in source.units]
    step = out.metadata["processing"][-1]
    assert step["step"] == "register" and step["options"] == {
        "reference": "mean",
        "per_line": False,
        "window": 10,
    }
    expected = register(source.data, reference="mean", pixel_size=(0.5, 0.5))
    np.testing.assert_allclose(np.asarray(out.data[3]), np.asarray(expected.movie[3]), equal_nan=True)
    xs = [y for _, y in widget.drift_plot.points("x")]
    np.testing.assert_allclose(xs, expected.table()["dx_nm"])
    assert widget.flagged.value.startswith("flagged frames: ") and "22–31" in widget.flagged.value
    assert drawn_pixels(widget.drift_plot, widget.drift_plot.colors["x"]) > 100  # the trace is on screen

    # the per-frame table of the corrected movie carries the drift; plotted and saved as CSV
    widget.input.value = out
    widget.start_table()
    wait_idle(qtbot, widget)
    assert widget.table_view.rowCount() == 32
    assert widget.column.value == "mean" and len(widget.table_plot.points("mean")) == 32
    widget.column.value = "Sq"
    assert widget.table_plot.title == "Sq (nm)"
    widget.export_csv(tmp_path / "frames.csv")
    rows = list(csv.reader((tmp_path / "frames.csv").open()))
    assert "dx (nm)" in rows[0] and "flagged" in rows[0] and len(rows) == 33
    assert widget.minimumSizeHint().width() <= 400


def test_cancel_stops_registration(qtbot, make_napari_viewer):
    import dask.array as da

    viewer = make_napari_viewer()
    movie = da.random.random((2000, 256, 256), chunks=(64, 256, 256)).astype(np.float32)
    viewer.add_image(movie, name="long movie")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Movie")
    widget.start()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=30_000)
    widget.cancel()
    wait_idle(qtbot, widget)
    assert widget.status.value == "cancelled" and len(viewer.layers) == 1


def test_flagged_text_shortens_runs():
    assert flagged_text(np.array([0, 1, 0, 1, 1, 1, 0, 1], bool)) == "1, 3–5, 7"
    assert flagged_text(np.zeros(3, bool)) == "none"
