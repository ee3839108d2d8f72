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
