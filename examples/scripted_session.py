"""A scripted napari session on a real scan: the Preprocess widget driven from code.

Opens SCAN with the plugin's reader, docks the Preprocess widget, flattens (auto) and denoises
(median) the first height channel through the widget, checks that the scripting API gives the
same arrays, exports the recipe, replays it with ``run_recipe``, saves the result with the
plugin's writers and takes a screenshot::

    python examples/scripted_session.py [SCAN] [-o OUTDIR] [--keep-open]

SCAN defaults to the Nanonis sample of the shared samples folder (``../shared/spm-samples``
beside the repository, or ``$SCANPROBE_SAMPLES``); OUTDIR to ``session_output``. Writes
``OUTDIR/session_recipe.yaml``, ``OUTDIR/<scan> flattened.gsf`` and ``OUTDIR/session.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SAMPLES = Path(
    os.environ.get("SCANPROBE_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "spm-samples")
)
DEFAULT_SCAN = SAMPLES / "nanonis_sxm" / "test.sxm"
PLUGIN = "napari-scanprobe"


def wait_for(panel, timeout: float = 300.0) -> None:
    """Let Qt run until the panel's worker thread has finished (and its layer is added)."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while panel.worker is not None:
        QApplication.processEvents()
        time.sleep(0.01)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{panel.op.step} did not finish within {timeout} s")


def run_panel(viewer, panel, method: str, **options):
    """Choose ``method`` and ``options`` in a Preprocess tab, press Run, return the new layer."""
    panel.method.value = method
    for name, value in options.items():
        panel.option_box[name].value = value
    before = len(viewer.layers)
    panel.start()
    wait_for(panel)
    if len(viewer.layers) != before + 1:
        raise RuntimeError(f"{panel.op.step} failed: {panel.status.value}")
    return viewer.layers[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scan", nargs="?", default=str(DEFAULT_SCAN), help=f"an SPM file (default: {DEFAULT_SCAN})"
    )
    parser.add_argument(
        "-o",
        "--output",
        default="session_output",
        help="folder for the recipe, the saved layer and the screenshot",
    )
    parser.add_argument("--keep-open", action="store_true", help="leave the window open at the end")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    import numpy as np

    import napari_scanprobe as sp
    from napari_scanprobe.gui.compat import scale_bar_of

    viewer = napari.Viewer(title="napari-scanprobe: scripted session")
    layers = viewer.open(args.scan, plugin=PLUGIN)
    height = layers[-1]  # the reader puts the first height channel on top (last); else the last channel
    print(f"opened {args.scan}: {len(layers)} layers; processing {height.name!r} {height.data.shape}")

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    widget.input.value = height
    flat_layer = run_panel(viewer, widget.panels["flatten"], "auto")
    widget.input.value = flat_layer
    clean_layer = run_panel(viewer, widget.panels["denoise"], "median", size=3)
    print(f"widget: {flat_layer.name!r}, then {clean_layer.name!r}")

    # the scripting API gives the same arrays
    flat = sp.flatten(height.data, "auto")
    clean = sp.denoise(flat, "median", size=3)
    assert np.array_equal(flat, flat_layer.data) and np.array_equal(clean, clean_layer.data)
    print("scripting API: identical to the widget's layers")

    # the layer's history as a recipe, replayed on the array
    viewer.layers.selection.active = clean_layer
    recipe = widget.export_recipe(out / "session_recipe.yaml")
    replay = sp.run_recipe(recipe, height.data)
    assert np.array_equal(replay.image, clean_layer.data)
    print(f"recipe written to {recipe}; run_recipe reproduces the layer")

    # save with the plugin's writers (Gwyddion Simple Field)
    saved = napari.save_layers(
        str(out / f"{Path(args.scan).stem} flattened.gsf"), [clean_layer], plugin=PLUGIN
    )
    print(f"saved {saved[0]}")

    for layer in viewer.layers:
        layer.visible = layer is clean_layer
    scale_bar_of(viewer).visible = True
    viewer.window.resize(1200, 800)
    viewer.reset_view()
    shot = viewer.screenshot(str(out / "session.png"), canvas_only=True)
    print(f"screenshot {out / 'session.png'} ({shot.shape[1]} x {shot.shape[0]} px)")

    if args.keep_open:
        napari.run()
    else:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
