"""Viewer attributes that moved between napari releases (we support napari >= 0.7)."""

from __future__ import annotations

import functools


def grid_of(viewer):
    """The grid settings: ``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def _canvas_overlay(viewer, name: str, old_name: str):
    """``viewer.canvas.overlays.<name>`` from napari 0.9, ``viewer.<old_name>`` before."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None and hasattr(overlays, name):
        return getattr(overlays, name)
    return getattr(viewer, old_name)


def scale_bar_of(viewer):
    """The scale bar overlay: ``viewer.canvas.overlays.scale_bar`` from 0.9, ``viewer.scale_bar`` before."""
    return _canvas_overlay(viewer, "scale_bar", "scale_bar")


def text_overlay_of(viewer):
    """The canvas text overlay: ``viewer.canvas.overlays.text`` from 0.9, ``viewer.text_overlay`` before."""
    return _canvas_overlay(viewer, "text", "text_overlay")


def _image_accepts(name: str) -> bool:
    import inspect

    from napari.layers import Image

    return name in inspect.signature(Image.__init__).parameters


#: Image layers take ``auto_contrast`` (limits that follow the slice shown) from napari 0.9 on.
IMAGE_AUTO_CONTRAST = _image_accepts("auto_contrast")


@functools.cache
def _tile_label_class():
    """A text overlay napari draws in its layer's own grid tile (napari >= 0.9), else None.

    napari has such an overlay only for the layer's name; this one shows any text. It uses
    napari's private vispy classes, hence the guard: without them the layer name is shown.
    """
    try:
        from napari._vispy.overlays.text import _VispyLayerTextOverlay
        from napari._vispy.utils.visual import overlay_to_visual
        from napari.components.overlays import TextOverlay
    except ImportError:
        return None

    class TileLabel(TextOverlay):
        """The label of a layer's grid tile."""

    class VispyTileLabel(_VispyLayerTextOverlay):
        def _connect_events(self):
            self.overlay.events.text.connect(self._on_text_change)

        def _on_text_change(self):
            self.node.text = self.overlay.text
            self._on_position_change()

    overlay_to_visual[TileLabel] = VispyTileLabel
    return TileLabel


def set_tile_label(layer, text: str | None) -> bool:
    """Show ``text`` in the top-left corner of ``layer``'s own grid tile (None: hide it).

    Falls back on napari's layer-name overlay; False when neither exists (napari < 0.9).
    """
    overlays = getattr(layer, "_overlays", None)
    label = _tile_label_class() if overlays is not None else None
    if label is None:
        if not hasattr(layer, "name_overlay"):
            return False
        layer.name_overlay.visible = text is not None
        return True
    key = "scanprobe_tile_label"
    if text is None:
        if key in overlays:
            overlays[key].visible = False
        return True
    if key not in overlays:
        overlays[key] = label(position="top_left", font_size=10, box=True, visible=True, text=text)
    else:
        overlays[key].text = text
        overlays[key].visible = True
    return True
