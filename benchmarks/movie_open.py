"""Opening a 10,000-frame 256x256 high-speed AFM movie: time to the first frame, memory growth.

    python benchmarks/movie_open.py [--frames 10000] [--keep DIR]

Writes a synthetic .asd movie (1.3 GB for 10,000 frames; deleted afterwards unless --keep),
then, in a fresh process each time, the time from ``import napari_scanprobe`` to frame 0 as
numpy, and the resident-memory growth:
  * warm: ``dask.array`` already imported (a movie opened before in the same session);
  * napari: napari's viewer modules imported (``napari.components``), as when the first movie is
    dragged into a napari window: napari imports ``dask`` but not ``dask.array``, so the import
    of ``dask.array`` is included;
  * cold: from a bare Python with numpy (the start-up target's baseline), the imports of
    napari_scanprobe and dask included.
Targets (issue #2): first frame < 0.5 s, resident memory growth < 50 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.io.synth_asd import write_asd  # noqa: E402  (the test suite's format writer)

PROBE = r"""
import sys, time
import numpy as np  # the baseline, as for the start-up target: a Python with numpy
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 1e6
mode = sys.argv[2]
if mode == "warm":
    import dask.array, napari_scanprobe
elif mode == "napari":
    import napari.components
start_rss = rss_mb()
t0 = time.perf_counter()
import napari_scanprobe
scan = napari_scanprobe.read(sys.argv[1])
frame = np.asarray(scan.channels[0].data[0])
elapsed = time.perf_counter() - t0
last = np.asarray(scan.channels[0].data[-1])
print(f"{elapsed:.4f} {rss_mb() - start_rss:.1f} {scan.channels[0].data.shape[0]} {frame.shape}")
"""


#: the child processes write and use .pyc files, as an installed package does (see startup.py)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def probe(path: Path, mode: str) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), mode], check=True, capture_output=True, text=True, env=ENV
    )
    seconds, mb, frames, _ = out.stdout.split(maxsplit=3)
    return float(seconds), float(mb), int(frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="scanprobe-movie-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"synthetic_{args.frames}x256x256.asd"
    if not path.exists():
        rng = np.random.default_rng(0)
        base = rng.integers(200, 3800, size=(16, 256, 256)).astype(np.int16)
        write_asd(path, base, n_frames=args.frames)
    size_gb = path.stat().st_size / 1e9
    print(f"movie: {path.name} ({args.frames} frames, {size_gb:.2f} GB)")
    probe(path, "cold")  # writes the .pyc files
    labels = {
        "warm": "dask.array imported",
        "napari": "first movie in napari",
        "cold": "bare Python (imports included)",
    }
    for mode, label in labels.items():
        runs = [probe(path, mode) for _ in range(3)]
        seconds = min(r[0] for r in runs)
        mb = max(r[1] for r in runs)
        print(
            f"  {label:<32} first frame {seconds:6.3f} s  (target < 0.5 s)   RSS growth {mb:5.1f} MB (target < 50 MB)"
        )
    if args.keep is None:
        path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
