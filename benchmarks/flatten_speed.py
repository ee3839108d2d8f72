"""Flatten speed at instrument sizes, side by side with TopoStats, on the accuracy benchmark's scans.

    python benchmarks/flatten_speed.py [--sizes 512 1024 2048 4096] [--seed 0] [--no-topostats]

One synthetic scan per size from ``flatten_accuracy.make_scan`` (particles, tilt, bow, line
offsets, scars, 0.1 nm white noise; particle radii scale with the size). For ``flatten(method=
"auto")`` with its defaults (scar removal on) and TopoStats' ``Filters`` (its default filter
settings, scar removal on, run in its own Python: ``$TOPOSTATS_PYTHON`` or
/tmp/topostats-venv/bin/python) it prints the CPU seconds per image (``time.process_time``:
the machine may be shared, wall time is not comparable), the ratio TopoStats / auto, and the
accuracy of both (residual over the true background / noise RMS, height error: see
flatten_accuracy.py). First, the cost of the first call in a new process: compiling the kernels
(numba, into an empty cache folder) and loading them from that cache, on a 64 x 64 scan.

Targets (issue #20): auto at 2048^2 <= 0.5 s CPU and >= 30x TopoStats; 4096^2 <= 2.5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flatten_accuracy import flatten, make_scan, run_topostats, score  # noqa: E402

_FIRST_CALL = """
import time
t0 = time.process_time()
import numpy as np
from napari_scanprobe.process.flatten import flatten
image = np.add.outer(np.arange(64.0), np.arange(64.0)) + np.random.default_rng(0).normal(size=(64, 64))
t1 = time.process_time()
flatten(image)
print(time.process_time() - t1, t1 - t0)
"""


def first_call_seconds() -> tuple[float, float, float]:
    """CPU seconds of the first flatten in a new process: compiling into an empty cache folder,
    then loading from it; and of the imports."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [
            subprocess.run(
                [sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True
            )
            for _ in range(2)
        ]
    (compiled, imports), (cached, _) = (map(float, run.stdout.split()) for run in runs)
    return compiled, cached, imports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="auto runs per size; the fastest counts")
    parser.add_argument("--no-topostats", action="store_true")
    parser.add_argument("--topostats-max", type=int, default=4096, help="run TopoStats up to this size")
    args = parser.parse_args()

    compiled, cached, imports = first_call_seconds()
    print(
        f"first call in a new process (64x64, CPU s): {compiled:.2f} compiling the kernels (once per machine: "
        f"cached), {cached:.2f} loading them from the cache; imports {imports:.2f}\n",
        flush=True,
    )

    header = (
        f"{'size':>9s} {'auto CPU s':>11s} {'TopoStats CPU s':>16s} {'ratio':>7s} {'auto resid/noise':>17s} "
        f"{'TopoStats resid':>16s} {'auto height err':>16s} {'TopoStats h.err':>16s}"
    )
    print(header)
    print("-" * len(header), flush=True)
    note = "TopoStats: skipped" if args.no_topostats else "TopoStats: not installed"
    for size in args.sizes:
        scan = make_scan(size, args.seed)
        seconds = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            flat = flatten(scan["image"], method="auto")
            seconds = min(seconds, time.process_time() - start)
        res, _, height = score(flat, scan)
        peer = None
        if not args.no_topostats and size <= args.topostats_max:
            peer = run_topostats([scan], scars=(True,))
        if peer is None:
            cells = f"{'-':>16s} {'-':>7s}"
            p_res = p_h = f"{'-':>16s}"
        else:
            flats, peer_seconds, version = peer
            note = f"TopoStats {version}: Filters, default filter settings, scar removal on"
            p_score = score(flats["1"][0], scan)
            cpu = peer_seconds["cpu1"]
            cells = f"{cpu:16.2f} {cpu / seconds:6.1f}x"
            p_res, p_h = f"{p_score[0]:15.2f}x", f"{p_score[2]:16.1%}"
        print(
            f"{size:>4d}x{size:<4d} {seconds:11.2f} {cells} {res:16.2f}x {p_res} {height:16.1%} {p_h}",
            flush=True,
        )
    print(f"\n{note}")
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
