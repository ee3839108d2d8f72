"""Helpers shared by tests of several packages."""

from __future__ import annotations

import json
import subprocess
import sys


def imported_by(modules: str, watched: tuple[str, ...]) -> list[str]:
    """Which of the ``watched`` modules a fresh Python has loaded after importing ``modules``
    (comma-separated), sorted."""
    code = (
        f"import json, sys, {modules}; print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def untrained_denoise_network(image, mask, method, o, seed):
    """Stands in for ``process.denoise._cnn_steps`` (monkeypatch it) where a test needs denoise
    ``auto``'s plumbing, not a trained network: returns the image itself as the result and as the
    blind-spot estimate."""
    import numpy as np

    from napari_scanprobe.process.common import Progress

    yield Progress(1, 1, None, "n2v")

    def blind(frame):
        yield Progress(1, 1, None, "blind-spot estimate")
        return np.asarray(frame, dtype=np.float64)

    return np.asarray(image, dtype=np.float64), blind
