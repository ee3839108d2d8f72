"""Make docs/screenshot.png: napari with a real multi-channel file open through the plugin.

xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py [FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_scanprobe.gui.compat import scale_bar_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "spm-samples" / "nanonis_sxm" / "test.sxm"


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT)
    viewer = napari.Viewer(title="napari-scanprobe", show=True)
    viewer.window.resize(1500, 900)
    viewer.open(path, plugin="napari-scanprobe")
    _, browser = viewer.window.add_plugin_dock_widget("napari-scanprobe", "Scan browser")
    browser.show_channels()
    viewer.layers.selection.active = viewer.layers[0]
    scale_bar_of(viewer).visible = True
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    out = ROOT / "docs" / "screenshot.png"
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"wrote {out}")
    viewer.close()


if __name__ == "__main__":
    main()
