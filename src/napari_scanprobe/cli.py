"""The ``scanprobe`` command line: the same core the napari plugin uses.

    scanprobe info FILE... [--json]     what each file holds: channels, shapes, pixel sizes, units
    scanprobe demo [--headless]         napari with the sample scan loaded and the widgets docked
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import __version__
from .io import ReaderError, read


def _channel_facts(ch) -> dict:
    shape = tuple(int(n) for n in ch.data.shape)
    return {
        "name": ch.name,
        "direction": ch.direction,
        "title": ch.title,
        "shape": list(shape),
        "frames": shape[0] if len(shape) == 3 else 1,
        "pixel_size": list(ch.pixel_size),
        "xy_unit": ch.xy_unit,
        "offset": list(ch.offset),
        "z_unit": ch.z_unit,
        "frame_time_s": ch.frame_time_s,
    }


def _info_line(facts: dict) -> str:
    ny, nx = facts["shape"][-2:]
    dy, dx = facts["pixel_size"]
    unit = facts["xy_unit"] or "(no unit)"
    text = f"  {facts['title']:<34} {nx:>5} x {ny:<5} px   pixel {dx:.4g} x {dy:.4g} {unit}   values {facts['z_unit'] or '(no unit)'}"
    if facts["frames"] > 1 or len(facts["shape"]) == 3:
        text += f"   {facts['frames']} frames"
        if facts["frame_time_s"]:
            text += f" @ {facts['frame_time_s']:.4g} s"
    return text


def cmd_info(args) -> int:
    failed = 0
    for name in args.files:
        try:
            scan = read(name)
        except ReaderError as exc:
            failed += 1
            if args.json:
                print(json.dumps({"path": str(name), "error": exc.reason}))
            else:
                print(f"scanprobe: error: {exc}", file=sys.stderr)
            continue
        channels = [_channel_facts(ch) for ch in scan.channels]
        if args.json:
            print(json.dumps({"path": scan.path, "format": scan.format, "channels": channels}))
        else:
            print(f"{scan.path}  [{scan.format}, {len(channels)} channels]")
            for facts in channels:
                print(_info_line(facts))
    return 1 if failed else 0


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def cmd_demo(args) -> int:
    headless = args.headless
    if not headless and not _has_display():
        print("scanprobe demo: no display found, running headless (the same pipeline, no window)")
        headless = True
    if headless:
        return _demo_headless(args.files)
    import napari

    from .gui.compat import scale_bar_of

    viewer = napari.Viewer(title="napari-scanprobe demo")
    if args.files:
        for name in args.files:
            viewer.open(name, plugin="napari-scanprobe")
    else:
        viewer.open_sample("napari-scanprobe", "afm_scan")
    for widget in ("Scan browser", "Preprocess"):
        viewer.window.add_plugin_dock_widget("napari-scanprobe", widget)
    scale_bar_of(viewer).visible = True
    napari.run()
    return 0


def _demo_headless(files) -> int:
    """The demo without a window: the plugin's reader/sample data into a napari ViewerModel."""
    from napari.components import ViewerModel

    from .gui.reader import read_layers
    from .gui.sample_data import synthetic_afm_scan

    viewer = ViewerModel(title="napari-scanprobe demo")
    try:
        tuples = read_layers(files) if files else synthetic_afm_scan()
    except ReaderError as exc:
        print(f"scanprobe: error: {exc}", file=sys.stderr)
        return 1
    what = ", ".join(files) if files else "the synthetic AFM sample scan"
    print(f"napari-scanprobe {__version__}: opened {what} headless")
    for data, kwargs, kind in tuples:
        layer = viewer.add_layer(_make_layer(data, kwargs, kind))
        scale = " x ".join(f"{s:.4g}" for s in layer.scale)
        units = ", ".join(str(u) for u in layer.units)
        lo, hi = layer.contrast_limits
        print(
            f"  layer {layer.name!r}: {kind} {tuple(layer.data.shape)}, scale {scale} ({units}), "
            f"values {lo:.4g} .. {hi:.4g} {layer.metadata.get('z_unit', '')}"
        )
    height = next((layer for layer in viewer.layers if layer.metadata.get("z_unit") == "nm"), None)
    if height is not None:  # what the Preprocess widget's default does, without the widget
        from .gui.layers import derived_layer, processing_step
        from .process.flatten import FLATTEN_OPTIONS, flatten

        options = FLATTEN_OPTIONS["auto"]
        data, kwargs, kind = derived_layer(height, flatten(height.data, "auto"), processing_step("flatten", "auto", options), "flatten auto")
        flat = viewer.add_layer(_make_layer(data, kwargs, kind))
        lo, hi = np.nanpercentile(np.asarray(flat.data), [1, 99])
        print(f"  flattened {height.name!r} -> {flat.name!r}: 1-99 % height range {lo:.3g} .. {hi:.3g} nm")
    print(f"{len(viewer.layers)} layers; widgets need a window: run `scanprobe demo` on a desktop to see them docked")
    return 0


def _make_layer(data, kwargs, kind):
    from napari.layers import Layer

    return Layer.create(data, kwargs, kind)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scanprobe", description="Scanning probe microscopy data: read, inspect, view.")
    parser.add_argument("--version", action="version", version=f"napari-scanprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="list the channels, shapes, pixel sizes and units of SPM files")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="one JSON object per file and line")
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser("demo", help="open napari with the sample scan (or FILEs) and the plugin's widgets")
    demo.add_argument("files", nargs="*", metavar="FILE", help="SPM files to open instead of the sample scan")
    demo.add_argument("--headless", action="store_true", help="run the same pipeline without a window and print it")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
