"""Reading speed of every real sample: napari-scanprobe vs the Python peers vs the raw-bytes floor.

    python benchmarks/read_speed.py            # run it where the peers are installed:
    pip install -r benchmarks/requirements.txt # AFMReader, pySPM, igor2, gwyfile, SurfaceTopography

For each sample file: the best of several runs of
  * floor  -- ``np.fromfile(path, np.uint8)``, the time to get the file's bytes into numpy,
  * ours   -- ``napari_scanprobe.read(path)`` with EVERY channel's pixels materialised (movies too),
  * each peer that reads that format (most read ONE channel per call; we read all of them).
Targets (issue #2): ours <= the fastest peer, and ours <= max(3 x floor, 2 ms).
Figures are measured side by side in one run on the same machine.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import napari_scanprobe

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "spm-samples"
REPEATS = 15


def best_time(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up: file cache, lazy imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(path: Path):
    """Read and materialise every channel (movies: all frames, in one synchronous dask compute)."""
    scan = napari_scanprobe.read(path)
    lazy = [ch.data for ch in scan.channels if not isinstance(ch.data, np.ndarray)]
    if lazy:
        import dask

        dask.compute(*lazy, scheduler="sync")
    return scan


def _silence_loguru() -> None:
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass


def _peer_calls(relpath: str, ref: dict) -> dict:
    """Peer readers able to read this file, as zero-argument callables (None when not installed)."""
    path = str(SAMPLES / relpath)
    folder, suffix = relpath.split("/")[0], Path(relpath).suffix.lower()
    first = ref["channels"][0]
    calls: dict = {}

    def afm(module: str, fn: str, *args, **kw):
        import importlib

        mod = importlib.import_module(f"AFMReader.{module}")
        _silence_loguru()  # AFMReader adds its log handler on import
        return lambda: getattr(mod, fn)(path, *args, **kw)

    try:
        import AFMReader  # noqa: F401

        if folder == "bruker_nanoscope":
            calls["AFMReader"] = afm("spm", "load_spm", first["title"])
        elif folder == "asylum_ibw":
            calls["AFMReader"] = afm("ibw", "load_ibw", first["title"])
        elif folder == "gwyddion_gwy" and first["title"]:
            calls["AFMReader"] = afm("gwy", "load_gwy", first["title"])
        elif suffix == ".jpk":
            calls["AFMReader"] = afm("jpk", "load_jpk", "height_trace")
        elif suffix == ".h5-jpk":
            calls["AFMReader"] = afm("h5_jpk", "load_h5jpk", "height_trace")
        elif suffix == ".asd":
            calls["AFMReader"] = afm("asd", "load_asd", "TP")
        elif suffix == ".top":
            calls["AFMReader"] = afm("top", "load_top")
    except ImportError:
        calls["AFMReader"] = None
    try:
        import pySPM

        if folder == "bruker_nanoscope":
            calls["pySPM"] = lambda: pySPM.Bruker(path).get_channel()
        elif suffix == ".sxm":
            calls["pySPM"] = lambda: pySPM.SXM(path).get_channel("Z")
    except ImportError:
        calls["pySPM"] = None
    if suffix == ".ibw":
        try:
            from igor2 import binarywave

            calls["igor2"] = lambda: binarywave.load(path)
        except ImportError:
            calls["igor2"] = None
    if suffix == ".gwy":
        try:
            import gwyfile
            from gwyfile.util import get_datafields

            calls["gwyfile"] = lambda: [f.data for f in get_datafields(gwyfile.load(path)).values()]
        except ImportError:
            calls["gwyfile"] = None
    try:
        from SurfaceTopography import open_topography

        calls["SurfaceTopography"] = lambda: open_topography(path).topography(channel_index=0).heights()
    except ImportError:
        calls["SurfaceTopography"] = None
    return calls


def main() -> None:
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.CRITICAL)
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())
    files = [k for k, v in truth.items() if v.get("kind") in ("image", "movie")]
    if len(sys.argv) > 1:
        files = [f for f in files if any(a in f for a in sys.argv[1:])]
    print(f"{'file':<52} {'floor':>8} {'ours':>8} {'x floor':>8} {'fastest peer':>24} {'peer/ours':>9}")
    ratios_floor, ratios_peer, misses = [], [], []
    for relpath in files:
        path = SAMPLES / relpath
        floor = best_time(lambda: np.fromfile(path, np.uint8))
        t_ours = best_time(lambda: ours(path))
        peers = {}
        for name, call in _peer_calls(relpath, truth[relpath]).items():
            if call is None:
                continue
            try:
                peers[name] = best_time(call, repeats=5)
            except Exception as exc:  # a peer that cannot read the file is reported, not timed
                peers[name] = f"fails ({type(exc).__name__})"
        timed = {k: v for k, v in peers.items() if isinstance(v, float)}
        best = min(timed.items(), key=lambda kv: kv[1]) if timed else None
        target = max(3 * floor, 0.002)
        ratios_floor.append(t_ours / floor)
        if t_ours > target:
            misses.append(f"{relpath}: {t_ours * 1e3:.2f} ms > max(3 x floor, 2 ms) = {target * 1e3:.2f} ms")
        peer_text = f"{best[0]} {best[1] * 1e3:.2f} ms" if best else "(none reads it)"
        ratio = ""
        if best:
            ratios_peer.append(best[1] / t_ours)
            ratio = f"{best[1] / t_ours:8.1f}x"
            if best[1] < t_ours:
                misses.append(f"{relpath}: {best[0]} is faster ({best[1] * 1e3:.2f} ms vs {t_ours * 1e3:.2f} ms)")
        print(
            f"{relpath[:52]:<52} {floor * 1e3:6.2f}ms {t_ours * 1e3:6.2f}ms {t_ours / floor:7.1f}x "
            f"{peer_text:>24} {ratio:>9}"
        )
        failing = {k: v for k, v in peers.items() if isinstance(v, str)}
        if failing:
            print(f"{'':<52}   peers that fail on it: {failing}")
    print()
    print(f"median ours / floor: {statistics.median(ratios_floor):.1f}x")
    if ratios_peer:
        print(f"median fastest-peer / ours: {statistics.median(ratios_peer):.1f}x (>1 means we are faster)")
    print("targets missed:" if misses else "all targets met")
    for miss in misses:
        print("  " + miss)


if __name__ == "__main__":
    main()
