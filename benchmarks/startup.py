"""Start-up cost: ``import napari_scanprobe`` + reading one file, over a bare Python with numpy.

    python benchmarks/startup.py [FILE]

Target: under 0.3 s more than ``python -c "import numpy"`` (peers: pySPM 2.2 s, SciFiReaders 4.5 s,
as measured when the issue was written). Also checks that the reader path imports no torch,
napari or Qt. Prints the medians of several runs, measured side by side in one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "spm-samples" / "nanonis_sxm" / "test.sxm"
RUNS = 7
#: the child processes write and use .pyc files, as an installed package does, even where the
#: shell sets PYTHONDONTWRITEBYTECODE (compiling every module on every run is not start-up cost)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

BARE = "import numpy"
OURS = (
    "import sys, napari_scanprobe; s = napari_scanprobe.read(sys.argv[1]); "
    "[c.data[0] if c.data.ndim == 3 else c.data.sum() for c in s.channels]; "
    "heavy = sorted(m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6') if m in sys.modules); "
    "assert not heavy, f'reader path imported {heavy}'"
)


def wall(code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT)
    wall(OURS, path)  # warm the OS file cache and .pyc files
    bare, ours = [], []
    for _ in range(RUNS):
        bare.append(wall(BARE))
        ours.append(wall(OURS, path))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"file: {path}")
    print(f"python + numpy                      {b * 1000:7.0f} ms")
    print(f"python + napari_scanprobe + read    {o * 1000:7.0f} ms")
    print(f"extra cost                          {(o - b) * 1000:7.0f} ms   (target < 300 ms)")


if __name__ == "__main__":
    main()
