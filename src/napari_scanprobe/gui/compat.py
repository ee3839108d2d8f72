"""Viewer attributes that moved between napari releases (we support napari >= 0.7)."""

from __future__ import annotations


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
