"""Make docs/images/measure_profile.png and measure_roughness.png: the Measure dock on a real scan
in a 1280 x 800 window (a line profile of every channel; the roughness table).

xvfb-run -a -s "-screen 0 1280x800x24" python docs/make_measure_screenshot.py [FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "spm-samples" / "nanonis_sxm" / "test.sxm"


def settle() -> None:
    for _ in range(20):
        QApplication.processEvents()


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT)
    viewer = napari.Viewer(title="napari-scanprobe", show=True)
    viewer.window._qt_window.resize(1280, 800)
    layers = viewer.open(path, plugin="napari-scanprobe")
    height = layers[0]
    for layer in layers[1:]:
        layer.visible = False
    _, dock = viewer.window.add_plugin_dock_widget("napari-scanprobe", "Measure")
    dock.image_box.setCurrentText(height.name)
    (y0, x0), (dy, dx) = height.translate, height.scale
    shapes = dock.add_shapes()
    shapes.add_lines(np.array([[y0 + 60 * dy, x0 + 20 * dx], [y0 + 200 * dy, x0 + 230 * dx]]))
    shapes.mode = "pan_zoom"
    dock.line_width.setValue(5 * dx)
    dock.run_profile()
    dock.colorbar.setChecked(True)
    viewer.cursor.position = (y0 + 100 * dy, x0 + 120 * dx)
    dock.update_readout()
    viewer.reset_view()
    settle()
    out = ROOT / "docs" / "images"
    viewer.window._qt_window.grab().save(str(out / "measure_profile.png"))
    dock.tabs.setCurrentIndex(2)
    dock.run_roughness()
    settle()
    viewer.window._qt_window.grab().save(str(out / "measure_roughness.png"))
    viewer.close()


if __name__ == "__main__":
    main()
