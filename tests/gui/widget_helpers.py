"""What several widget tests share: run a Preprocess panel and wait for its result layer."""

from __future__ import annotations


def result_layers(viewer) -> list:
    """The viewer's layers without the live-preview layer."""
    return [layer for layer in viewer.layers if not layer.metadata.get("preview")]


def run_and_wait(qtbot, viewer, panel, timeout: int = 60_000):
    """Start ``panel`` and return the one layer it adds."""
    before = len(result_layers(viewer))
    panel.start()
    qtbot.waitUntil(
        lambda: panel.worker is None and len(result_layers(viewer)) == before + 1, timeout=timeout
    )
    return result_layers(viewer)[-1]


def open_in_file_order(viewer, path) -> list:
    """Open ``path`` with the plugin; its layers in the file's channel order (the reader puts
    the height last, on top)."""
    from napari_scanprobe.gui.layers import LayerMeta
    from napari_scanprobe.io import read

    order = [ch.title for ch in read(path).channels]
    layers = viewer.open(str(path), plugin="napari-scanprobe")
    return sorted(layers, key=lambda layer: order.index(LayerMeta(layer).title))
