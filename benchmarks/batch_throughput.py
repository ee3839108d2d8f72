"""Batch throughput: ``scanprobe batch`` on a folder of real-size scans with 1 and with 2 workers.

    python benchmarks/batch_throughput.py                 # 200 scans of 512 x 512, 1 and 2 workers
    python benchmarks/batch_throughput.py --files 40      # a quicker run

The scans are synthetic AFM height images (``napari_scanprobe.synthetic.synthetic_scan``:
tilt, bow, line offsets, scars, particles, noise) written as Gwyddion ``.gsf`` files into a
temporary folder (removed afterwards; nothing is written in the repository). The recipe is
``examples/recipes/flatten_denoise_gsf.yaml``: auto flatten, non-local-means denoise, write
``.gsf``. Each worker count runs batches from scratch through
:func:`napari_scanprobe.batch.run_batch` (a local ``dask.distributed`` cluster of worker
processes, one thread each): the wall time includes starting the cluster. "Steady" is the
throughput between the first and the last finished file of each batch, without the start-up.

The files are split into ``--rounds`` subsets (default 2); each round runs its subset with
every worker count, in alternating order (1, 2, then 2, 1 ...), so that other work on a shared
machine weighs on both counts alike. The figures sum all rounds: every worker count processes
every file once.

Target (issue #6): 2 workers at least 1.7x as fast as 1 on 2 cores. The figure needs cores that
are otherwise idle: other work on the same cores shows up directly in it (the load average
before and after is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "recipes" / "flatten_denoise_gsf.yaml"


def make_scans(folder: Path, count: int, size: int) -> list[Path]:
    from napari_scanprobe.io.write import write
    from napari_scanprobe.synthetic import synthetic_scan

    paths = []
    for i in range(count):
        scan = synthetic_scan((size, size), seed=i)
        paths.append(write(folder / f"scan_{i:04d}.gsf", scan.channels[0]))  # Height (trace)
    return paths


def run(recipe, inputs: list[Path], outdir: Path, workers: int) -> dict:
    from napari_scanprobe.batch import run_batch

    finished: list[float] = []
    start = time.perf_counter()
    result = run_batch(
        recipe, inputs, outdir, workers=workers, progress=lambda update: finished.append(time.perf_counter())
    )
    wall = time.perf_counter() - start
    if result.failed:
        bad = next(r for r in result.results if r.status == "failed")
        raise SystemExit(f"{result.failed} file(s) failed, e.g. {bad.error}")
    return {
        "files": len(result.results),
        "wall": wall,
        "steady_files": len(result.results) - 1,
        "steady_s": finished[-1] - finished[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="scanprobe batch throughput with 1 and 2 workers")
    parser.add_argument("--files", type=int, default=200, help="number of scans (default 200)")
    parser.add_argument("--size", type=int, default=512, help="scan side in pixels (default 512)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare (default 1 2)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="subsets run with every worker count in turn (default 2)"
    )
    args = parser.parse_args()

    from napari_scanprobe import __version__
    from napari_scanprobe.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"napari-scanprobe {__version__} batch benchmark: {args.files} scans of {args.size} x {args.size} px (.gsf), "
        f"recipe {RECIPE.relative_to(REPO)}; {os.cpu_count()} CPUs, load average {load:.2f} before the run"
    )
    with tempfile.TemporaryDirectory(prefix="scanprobe-batch-bench-") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "scans"
        inputs.mkdir()
        t0 = time.perf_counter()
        make_scans(inputs, args.files, args.size)
        print(f"generated {args.files} scans in {time.perf_counter() - t0:.1f} s")
        paths = sorted(inputs.glob("*.gsf"))
        totals = {w: {"files": 0, "wall": 0.0, "steady_files": 0, "steady_s": 0.0} for w in args.workers}
        for k in range(args.rounds):
            subset = paths[k :: args.rounds]
            for workers in args.workers if k % 2 == 0 else args.workers[::-1]:
                outdir = tmp / f"out_{k}_{workers}"
                r = run(recipe, subset, outdir, workers)
                shutil.rmtree(outdir)
                for key in totals[workers]:
                    totals[workers][key] += r[key]
                print(
                    f"  round {k + 1}: {workers} worker(s), {r['files']} files in {r['wall']:.1f} s",
                    flush=True,
                )
        rows = {}
        for workers, t in totals.items():
            rows[workers] = {
                "wall": t["wall"],
                "rate": t["files"] / t["wall"],
                "steady": t["steady_files"] / t["steady_s"],
            }
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    base = rows[args.workers[0]]
    print()
    print(f"{'workers':>8} {'wall s':>8} {'files/s':>8} {'speed-up':>9} {'steady/s':>9} {'speed-up':>9}")
    for workers, r in rows.items():
        print(
            f"{workers:>8} {r['wall']:>8.1f} {r['rate']:>8.2f} {r['rate'] / base['rate']:>8.2f}x {r['steady']:>9.2f} {r['steady'] / base['steady']:>8.2f}x"
        )
    if 1 in rows and 2 in rows:
        speedup = rows[2]["rate"] / rows[1]["rate"]
        verdict = "met" if speedup >= 1.7 else "NOT met"
        print(
            f"\n2 workers vs 1: {speedup:.2f}x overall, {rows[2]['steady'] / rows[1]['steady']:.2f}x steady (target >= 1.7x: {verdict}); "
            f"load average {load:.2f} before, {load_after:.2f} after"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
