"""npe2 reader contribution: sniff the content, then read every channel as a layer."""

from __future__ import annotations

from pathlib import Path

from ..io import find_format, read
from .layers import scan_to_layers


def napari_get_reader(path):
    """A reader function when every path is an SPM file this plugin recognises, else None.

    Never raises: napari asks every plugin, and a file we cannot read must fall through.
    """
    try:
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths or any(find_format(p) is None for p in paths):
            return None
    except Exception:
        return None
    return read_layers


def read_layers(path) -> list[tuple]:
    """Every channel of every file as an image layer tuple. Raises ReaderError on a bad file."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[tuple] = []
    for p in paths:
        layers.extend(scan_to_layers(read(p)))
    return layers
