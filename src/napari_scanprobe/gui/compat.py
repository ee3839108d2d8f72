"""Viewer attributes that moved between napari releases (we support napari >= 0.7)."""

from __future__ import annotations


def grid_of(viewer):
    """The grid settings: ``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def scale_bar_of(viewer):
    """The scale bar overlay: ``viewer.canvas.overlays.scale_bar`` from 0.9, ``viewer.scale_bar`` before."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and hasattr(overlays, "scale_bar"):
        return overlays.scale_bar
    return viewer.scale_bar


def text_overlay_of(viewer):
    """The canvas text overlay: ``viewer.canvas.overlays.text`` from 0.9, ``viewer.text_overlay`` before."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and hasattr(overlays, "text"):
        return overlays.text
    return viewer.text_overlay
