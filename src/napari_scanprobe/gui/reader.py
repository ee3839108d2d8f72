"""npe2 reader contribution: sniff the content, then read every channel as a layer.

napari offers a file to every reader whose name pattern matches, and asks the user to choose
when several do. The manifest therefore claims only extensions that are ours alone: TIFF, text
and ``.dat`` files (:data:`SHARED_EXTENSIONS`) stay with napari's own reader, with no dialog;
scanning probe files with those extensions (Park TIFF, our float32 TIFF, Nanoscope text
exports, Nanonis spectra) open through the Scan browser's "Open scans…" button or
:func:`open_scan` in a script, which sniff the content.
"""

from __future__ import annotations

from pathlib import Path

from ..io import find_format, read
from .layers import scan_to_layers

#: Extensions other software reads too: not claimed in the manifest (see the module's text).
SHARED_EXTENSIONS = (".tif", ".tiff", ".txt", ".dat")


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


def open_scan(viewer, path) -> list:
    """Add every channel of ``path`` to ``viewer`` as layers, whatever its extension (napari's
    ``viewer.open(..., plugin=)`` only takes the extensions the manifest claims). Raises
    ReaderError naming the file when it is not one this plugin reads."""
    from napari.layers import Layer

    return [viewer.add_layer(Layer.create(*layer)) for layer in read_layers(path)]
