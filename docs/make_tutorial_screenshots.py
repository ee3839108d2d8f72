"""Make the screenshots of docs/tutorial.md: a real napari session at 1280x800, docks included.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_tutorial_screenshots.py [OUTDIR]

Opens three real scans of different sizes (a Nanonis .sxm, an NT-MDT .mdt and a JPK file from
the shared samples), shows the chosen scan's channels side by side, compares the height of the
scans, flattens a height in the Preprocess dock, saves it as .gwy, and plays a drifting HS-AFM
movie. Writes ``tutorial_*.png`` into OUTDIR (default docs/images). The test suite runs
:func:`session` into a temporary folder and checks the pixels.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("SCANPROBE_SAMPLES", ROOT.parent / "shared" / "spm-samples"))
PLUGIN = "napari-scanprobe"

#: The scans of the tutorial: 5 µm, 3 µm and 0.33 µm wide, far apart on the stage.
SCANS = ("nanonis_sxm/test.sxm", "ntmdt_mdt/test_mdt.mdt", "jpk/sample_0.jpk")
MOVIE = "hsafm_asd/asd_sample_0.asd"

#: The window size of every screenshot: a 1280x800 laptop screen.
WINDOW = (1280, 800)


def _settle(app, rounds: int = 30) -> None:
    for _ in range(rounds):
        app.processEvents()


def _grab(viewer, app, path: Path) -> Path:
    """The whole window, docks included."""
    _settle(app)
    viewer.window._qt_window.grab().save(str(path))
    return path


def session(outdir: Path, samples: Path = SAMPLES, viewer=None) -> dict:
    """Run the tutorial's session; return ``{"shots": {name: png path}, "viewer", "docks", ...}``.

    ``viewer``: a shown napari viewer to use (a test's); None: a new one, closed at the end.
    """
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_scanprobe.gui.compat import scale_bar_of

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    own_viewer = viewer is None
    if own_viewer:
        viewer = napari.Viewer(title="napari-scanprobe tutorial", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(*WINDOW)
    scale_bar_of(viewer).visible = True
    shots: dict[str, Path] = {}
    min_widths: dict[str, int] = {}  # each dock's narrowest width, as napari docks it
    browser_dock, browser = viewer.window.add_plugin_dock_widget(PLUGIN, "Scan browser")
    min_widths["Scan browser"] = browser_dock.minimumSizeHint().width()

    # 1. three scans of different sizes, opened with the plugin: each opens on its height
    browser.open_scans([samples / name for name in SCANS])
    viewer.reset_view()
    shots["open"] = _grab(viewer, app, outdir / "tutorial_1_open.png")

    # 2. the channels of the .sxm side by side, labelled, zoom and pan linked
    sxm = str(samples / SCANS[0])
    browser.show_channels(sxm)
    shots["channels"] = _grab(viewer, app, outdir / "tutorial_2_channels.png")
    channel_tiles = list(browser.tiles())

    # 3. one channel of every scan side by side: compare samples at one nm scale
    browser.compare()
    shots["compare"] = _grab(viewer, app, outdir / "tutorial_3_compare.png")
    compare_tiles = list(browser.tiles())

    # 4. flatten the .sxm height in the Preprocess dock
    browser.show_channels(sxm)
    height = next(layer for layer in browser.tiles() if layer.name.endswith("Z (forward)"))
    dock, preprocess = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    min_widths["Preprocess"] = dock.minimumSizeHint().width()
    preprocess.input.value = height
    panel = preprocess.panels["flatten"]
    panel.method.value = "plane"
    before = len(viewer.layers)
    panel.start()
    for _ in range(600):
        _settle(app, 1)
        if getattr(panel, "worker", None) is None and len(viewer.layers) > before:
            break
        import time

        time.sleep(0.05)
    flattened = viewer.layers[-1]
    browser.show_channels(sxm)  # the flattened height joins the scan's tiles
    viewer.layers.selection.active = flattened
    shots["flatten"] = _grab(viewer, app, outdir / "tutorial_4_flatten.png")

    # 5. measure the flattened height: a line profile in nm, then its roughness (ISO 25178)
    import numpy as np

    viewer.window.remove_dock_widget(preprocess)  # one tool dock at a time on a laptop screen
    measure_dock, measure = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")
    min_widths["Measure"] = measure_dock.minimumSizeHint().width()
    measure.image_box.setCurrentText(flattened.name)
    (y0, x0), (dy, dx) = flattened.translate[-2:], flattened.scale[-2:]
    ny, nx = flattened.data.shape[-2:]
    line = measure.add_shapes()
    line.add_lines(
        np.array([[y0 + 0.3 * ny * dy, x0 + 0.1 * nx * dx], [y0 + 0.7 * ny * dy, x0 + 0.9 * nx * dx]])
    )
    line.mode = "pan_zoom"
    measure.line_width.setValue(3 * dx)
    profile = measure.run_profile()
    shots["profile"] = _grab(viewer, app, outdir / "tutorial_8_profile.png")
    measure.tabs.setCurrentIndex(2)
    roughness = measure.run_roughness()
    shots["roughness"] = _grab(viewer, app, outdir / "tutorial_9_roughness.png")
    viewer.window.remove_dock_widget(measure)
    viewer.layers.remove(line)
    viewer.layers.selection.active = flattened

    # 6. save the flattened height as Gwyddion .gwy (File ▸ Save Selected Layers does the same)
    saved = outdir / "flattened.gwy"
    viewer.layers.save(str(saved), selected=True, plugin=PLUGIN)

    # 7. a drifting HS-AFM movie: contrast follows the frame
    browser.view_box.setCurrentIndex(0)  # all layers stacked
    for layer in list(viewer.layers):
        layer.visible = False
    (movie,) = browser.open_scans([samples / MOVIE])
    viewer.reset_view(layers=[movie])
    viewer.dims.set_current_step(0, 15)
    shots["movie_15"] = _grab(viewer, app, outdir / "tutorial_5_movie_frame15.png")
    movie_limits = {15: tuple(movie.contrast_limits)}
    viewer.dims.set_current_step(0, 31)
    _settle(app)
    movie_limits[31] = tuple(movie.contrast_limits)
    shots["movie_31"] = _grab(viewer, app, outdir / "tutorial_6_movie_frame31.png")

    # 8. the Classifier dock at 1280x800, beside the Scan browser
    classifier_dock, classifier = viewer.window.add_plugin_dock_widget(PLUGIN, "Classifier")
    min_widths["Classifier"] = classifier_dock.minimumSizeHint().width()
    window = viewer.window._qt_window
    window.resizeDocks([browser_dock, classifier_dock], [120, 640], Qt.Orientation.Vertical)
    shots["classifier"] = _grab(viewer, app, outdir / "tutorial_7_classifier.png")

    result = {
        "shots": shots,
        "viewer": viewer,
        "browser": browser,
        "min_widths": min_widths,
        "window_size": (window.width(), window.height()),
        "channel_tiles": channel_tiles,
        "compare_tiles": compare_tiles,
        "flattened": flattened,
        "profile": profile,
        "roughness": roughness,
        "saved": saved,
        "movie": movie,
        "movie_limits": movie_limits,
    }
    if own_viewer:
        viewer.close()
    return result


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images"
    result = session(outdir)
    for path in result["shots"].values():
        print(f"wrote {path}")
    result["saved"].unlink(missing_ok=True)


if __name__ == "__main__":
    main()
