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
