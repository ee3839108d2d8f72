"""npe2 writer contributions: image layers to .gsf, .tif (one layer) and .gwy (several layers).

Each turns the layers into channels with :func:`~napari_scanprobe.gui.layers.layer_to_channel`
(physical pixel size, offset, units and metadata from the layer) and hands them to the core's
:func:`napari_scanprobe.io.write.write`, which writes atomically.

Errors propagate for napari to show, with one change: napari takes a ``ValueError`` from a
writer for "this writer does not apply" and replaces it by a vague warning, so the core's
``ValueError`` (a movie to .gsf, an RGB layer ...) is raised as :class:`SaveError`, keeping
its message. ``OSError`` (a folder we may not write to, a full disk) passes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..io.scan import Channel
from ..io.write import write
from .layers import layer_to_channel


class SaveError(RuntimeError):
    """A layer cannot be saved in the chosen format; the message says why."""


def _save(path: str, make_channels: Callable[[], list[Channel]]) -> list[str]:
    try:
        return [str(write(path, make_channels()))]
    except ValueError as exc:
        raise SaveError(str(exc)) from None


def write_gsf(path: str, data: Any, attributes: dict) -> list[str]:
    """One image layer -> a Gwyddion Simple Field file."""
    return _save(path, lambda: [layer_to_channel(data, attributes)])


def write_tif(path: str, data: Any, attributes: dict) -> list[str]:
    """One image or movie layer -> a float32 TIFF with resolution tags and metadata JSON."""
    return _save(path, lambda: [layer_to_channel(data, attributes)])


def write_gwy(path: str, layer_data: list[tuple]) -> list[str]:
    """Several image layers -> one Gwyddion .gwy file (``/0/data``, ``/1/data`` ... in layer order)."""
    return _save(path, lambda: [layer_to_channel(data, attributes) for data, attributes, *_ in layer_data])
